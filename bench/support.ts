// Shared by the benchmarks: bench databases and the stack around them, medians, RSS, output.
import type { ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { stringify } from 'yaml';
import { loadConfig, type Config } from '../lib/config';
import { withConnection } from '../lib/pg';
import { loadTemporalDevConfig, startTemporalDevServer } from '../client/temporalDevServer';
import { spawnWorkerProcess } from '../workers/process';
import { ensureSampleDatabase, type SampleOptions } from '../sample/generate';

const adminUrl = process.env.BENCH_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

/**
 * A throwaway copy of a database holding the sample: the sample is generated once per option set
 * (kept as a template for later runs) and cloned for this run; drop() removes the clone.
 */
export async function benchDatabase(opts: SampleOptions): Promise<{ url: string; drop(): Promise<void> }> {
  const template = `tenantsafe_bench_${Buffer.from(JSON.stringify(opts)).toString('hex').slice(-12)}`;
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
  config: Config;
  /** the worker, in a process of its own (its memory is measured) */
  worker: ChildProcess;
  stop(): Promise<void>;
}

/** A clone of the bench database, a Temporal dev server in memory, a config and a worker process. */
export async function benchStack(opts: SampleOptions): Promise<BenchStack> {
  const db = await benchDatabase(opts);
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'tenantsafe-bench-'));
  const server = await startTemporalDevServer(loadTemporalDevConfig(undefined, { port: 0, uiPort: 0, httpPort: 0, metricsPort: 0, ui: false, dbFilename: null }));
  const configFile = path.join(work, 'tenantsafe.yaml');
  fs.writeFileSync(configFile, stringify({ database: { url: db.url }, storage: { primary: { kind: 'local', path: path.join(work, 'backups') } }, temporal: { address: server.address, taskQueue: 'bench' } }));
  const stop = async () => {
    await server.stop();
    fs.rmSync(work, { recursive: true, force: true });
    await db.drop();
  };
  try {
    const worker = await spawnWorkerProcess(configFile);
    return {
      dbUrl: db.url,
      config: loadConfig({ path: configFile }),
      worker,
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

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

/** Peak resident set size of a process so far (VmHWM), in MB. */
export function peakRssMb(pid: number): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Math.round(Number(m[1]) / 1024) : NaN;
}

export function printTable(title: string, rows: [string, string][]): void {
  const w = Math.max(...rows.map(([k]) => k.length));
  console.log(`\n${title}\n${'-'.repeat(title.length)}`);
  for (const [k, v] of rows) console.log(`${k.padEnd(w)}  ${v}`);
}
