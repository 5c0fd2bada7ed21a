// Shared by the benchmarks: their options (scale, rounds, quick), the rows they report and the
// one table those make, bench databases (on the shared server or a private cluster) and the stack
// around them, commands, medians and percentiles, CPU and RSS of a process.
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { stringify } from 'yaml';
import { loadConfig, type Config } from '../lib/config';
import { quoteIdent, withConnection } from '../lib/pg';
import { PrivateCluster } from '../lib/postgres/cluster';
import type { BaseCompression } from '../lib/format/fullManifest';
import type { Client } from 'pg';
import type { RestoreRequested, TenantsafeClient } from '../client/client';
import { loadTemporalDevConfig, startTemporalDevServer } from '../client/temporalDevServer';
import type { TenantRestoreInput, TenantRestoreResult } from '../workflows/messages';
import { spawnWorkerProcess } from '../workers/process';
import { ensureSampleDatabase, sampleDigest, type SampleOptions } from '../sample/generate';
import { fromTable, tenantFilter, type TenancyPlan } from '../lib/tenancy';

export const adminUrl = process.env.BENCH_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

export interface BenchDatabase {
  url: string;
  drop(): Promise<void>;
}

/**
 * A PostgreSQL cluster of this run's own (removed at exit), for what the shared server cannot
 * give: settings such as wal_level = logical, a slot, WAL of its own.
 */
export interface BenchCluster {
  cluster: PrivateCluster;
  /** a directory the postgres OS user may write to */
  dir: string;
  /** the sample, generated into a database of this cluster (nothing to keep it for: no template) */
  sampleDatabase(name: string, opts: SampleOptions): Promise<BenchDatabase>;
  remove(): Promise<void>;
}

export async function benchCluster(settings: Record<string, string> = {}): Promise<BenchCluster> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tenantsafe-bench-pg-'));
  fs.chmodSync(dir, 0o755);
  const cluster = await PrivateCluster.create({ dataDir: path.join(dir, 'pg'), port: 0, ephemeral: true, settings });
  await cluster.start();
  return {
    cluster,
    dir,
    async sampleDatabase(name, opts) {
      const { url, created } = await ensureSampleDatabase(cluster.url(), name, opts);
      if (created) console.error(`bench: generated ${name} (${JSON.stringify(opts)})`);
      return { url, drop: () => withConnection(cluster.url(), (c) => c.query(`DROP DATABASE IF EXISTS ${quoteIdent(name)} WITH (FORCE)`)).then(() => undefined) };
    },
    async remove() {
      await cluster.remove();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * A throwaway copy of a database holding the sample: the sample is generated once per option set
 * (kept as a template for later runs) and cloned for this run; drop() removes the clone.
 */
export async function benchDatabase(opts: SampleOptions): Promise<BenchDatabase> {
  // named by a digest of the options and the generator: two option sets never share a template
  const template = `tenantsafe_bench_${sampleDigest(opts)}`;
  const { created } = await ensureSampleDatabase(adminUrl, template, opts);
  if (created) console.error(`bench: generated ${template} (${JSON.stringify(opts)})`);
  const name = `${template}_run${process.pid}`;
  await withConnection(adminUrl, (c) => c.query(`CREATE DATABASE ${name} TEMPLATE ${template}`));
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    async drop() {
      await withConnection(adminUrl, (c) => c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`));
    },
  };
}

export interface BenchStack {
  dbUrl: string;
  /** the YAML the worker reads */
  configFile: string;
  config: Config;
  /** the worker, in a process of its own (its memory is measured) */
  worker: ChildProcess;
  /** the worker's peak RSS so far (VmHWM), in MB */
  workerPeakRssMb(): number;
  stop(): Promise<void>;
}

/**
 * A bench database (a clone of the sample on the shared server, or one given: e.g. of a private
 * cluster), a Temporal dev server in memory, a config (plus `config`'s sections) and a worker process.
 */
export async function benchStack(source: SampleOptions | BenchDatabase, opts: { config?: Record<string, unknown> } = {}): Promise<BenchStack> {
  const db = 'url' in source ? source : await benchDatabase(source);
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'tenantsafe-bench-'));
  const server = await startTemporalDevServer(loadTemporalDevConfig(undefined, { port: 0, uiPort: 0, httpPort: 0, metricsPort: 0, ui: false, dbFilename: null }));
  const configFile = path.join(work, 'tenantsafe.yaml');
  fs.writeFileSync(
    configFile,
    stringify({ database: { url: db.url }, storage: { primary: { kind: 'local', path: path.join(work, 'backups') } }, temporal: { address: server.address, taskQueue: 'bench' }, ...opts.config }),
  );
  const stop = async () => {
    await server.stop();
    fs.rmSync(work, { recursive: true, force: true });
    await db.drop();
  };
  try {
    const worker = await spawnWorkerProcess(configFile);
    return {
      dbUrl: db.url,
      configFile,
      config: loadConfig({ path: configFile }),
      worker,
      workerPeakRssMb: () => peakRssMb(worker.pid!),
      async stop() {
        worker.kill('SIGKILL');
        await stop();
      },
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

export interface TimedRestore {
  /** request → preview shown (the source rebuilt if a point in time, staged, diffed), in seconds */
  preview: number;
  /** approval → verified (safety backup, apply, verify), in seconds; the person's wait is not counted */
  approvalToDone: number;
  total: number;
  requested: RestoreRequested;
  result: TenantRestoreResult;
}

/**
 * A restore as a person meets it, through the worker: request (preview), approve, wait for the
 * verified result. Starts after a CHECKPOINT, so it does not pay for the dirty pages of what came before.
 */
export async function timedRestore(client: TenantsafeClient, sql: Client, input: Omit<TenantRestoreInput, 'requestedBy'>): Promise<TimedRestore> {
  await sql.query('CHECKPOINT');
  const t0 = performance.now();
  const requested = await client.restores.request({ ...input, requestedBy: 'bench' });
  if (requested.state !== 'awaiting-approval') throw new Error(`restore not awaiting approval: ${requested.error}`);
  const preview = (performance.now() - t0) / 1000;
  const t1 = performance.now();
  const result = (await client.restores.approve({ workflowId: requested.workflowId }, { by: 'bench-approver', digest: requested.previewDigest! }, { wait: true })) as TenantRestoreResult;
  if (result.state !== 'done' || !result.verification?.ok) throw new Error(`restore ${result.state}, verification ${JSON.stringify(result.verification)}`);
  const approvalToDone = (performance.now() - t1) / 1000;
  return { preview, approvalToDone, total: preview + approvalToDone, requested, result };
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

/** The value below which p% of xs lie (nearest rank). */
export function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
}

/** Runs a program to its end; rejects with the end of its stderr when it fails. Resolves to its stdout. */
export function runCommand(cmd: string, args: string[], env: Record<string, string> = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.once('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`${cmd} ${args.join(' ')}: exit ${code}: ${err.slice(-2000)}`))));
  });
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Polls `check` every `everyMs` until it holds; fails after `timeoutMs` naming what it waited for. */
export async function waitUntil(what: string, check: () => Promise<boolean>, timeoutMs = 60_000, everyMs = 50): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`bench: timed out waiting for ${what}`);
    await sleep(everyMs);
  }
}

/** CPU time a process (all its threads) has used so far, user + system, in seconds. */
export function cpuSeconds(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  // fields after the command name (which may hold spaces): state is field 3, utime 14, stime 15
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / clockTicks;
}
/** USER_HZ: 100 on every Linux build that matters here */
const clockTicks = 100;

/** Peak resident set size of a process so far (VmHWM), in MB. */
export function peakRssMb(pid: number): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Math.round(Number(m[1]) / 1024) : NaN;
}

/**
 * Deletes every row of a tenant, children first, in replica mode (no per-row foreign-key checks:
 * comments.reply_to has no index, so each deleted comment would scan comments), and flushes the
 * table statistics at once (as they long are when a person approves a restore: the apply reads them).
 */
export async function wipeTenant(sql: Client, plan: TenancyPlan, tenantId: string): Promise<void> {
  await sql.query('BEGIN; SET LOCAL session_replication_role = replica');
  for (const owned of [...plan.tables].reverse()) await sql.query(`DELETE FROM ${fromTable(owned, 'w')} WHERE ${tenantFilter(plan, owned, 'w', tenantId)}`);
  await sql.query('COMMIT');
  await sql.query('SELECT pg_stat_force_next_flush()');
}

/**
 * A restore as an operator runs it by hand with PostgreSQL's tools: `tar -x` of the stored base
 * backup (decompressed by the tool of its compression: `tar -I zstd|lz4|gzip`) into `dataDir`, recovery.signal, restore_command `cp` from a directory of WAL segments
 * decompressed beforehand (not timed: a lower bound for the hand-run), start, wait for promotion;
 * the cluster is stopped afterwards. Returns where replay ended.
 */
export async function handRunRestore(baseTar: { file: string; compression: BaseCompression }, walDir: string, dataDir: string): Promise<string> {
  fs.mkdirSync(dataDir, { mode: 0o700 });
  await runCommand('tar', ['-x', '-f', baseTar.file, '-I', baseTar.compression.method, '-C', dataDir]);
  fs.mkdirSync(path.join(dataDir, 'pg_wal', 'archive_status'), { recursive: true });
  fs.writeFileSync(path.join(dataDir, 'recovery.signal'), '');
  const c = await PrivateCluster.create({ dataDir, port: 0, settings: { restore_command: `cp ${walDir}/%f "%p"`, recovery_target_action: 'promote', archive_mode: 'off' } });
  await c.start();
  while ((await c.psql<{ r: boolean }>('SELECT pg_is_in_recovery() AS r'))[0].r) await sleep(100);
  const [reached] = await c.psql<{ lsn: string }>('SELECT pg_last_wal_replay_lsn()::text AS lsn');
  await c.stop('fast');
  return reached.lsn;
}
