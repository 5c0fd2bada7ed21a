// Tenant point-in-time restore from the change log, and the change log's capture under load
// (issue 19, "Performance"), each as ratios measured in the same run:
//   A. a small tenant restored to a time after N logged changes (its own and as many of another
//      tenant's), as a person meets it: preview + approval → verified, through a worker, the change
//      log streaming in that worker; beside it the same tenant restored from a backup of that same
//      moment (--backup), and the engine's rebuild alone. On two databases ≥ 10× apart in size:
//      targets: about the same time on both; ≤ 3× the restore from a backup, plus time linear in
//      the changes replayed (shown at three N).
//   B. the capture (lib/changeLog/capture.ts, a process of its own) under pgbench at full rate:
//      how far behind the log is (p50/p95), the capture's CPU and peak RSS (≤ 200 MB), pgbench's
//      TPS with and without it, the WAL the slot holds. Target: ≤ 1 s behind, WAL bounded.
// Usage: npx tsx bench/tenantPitr.ts [--quick] [--scale x] [--rounds n]   (BENCH_ONLY=A or B: one part)
//   scale 1: the large database's extra tenant 2M rows, 1,000 changes per comparison, a replay
//   series at 1k/10k/50k changes, pgbench 50 s with the capture (the other runs half as long);
//   5 rounds, 3 per series point (quick: 1 each).
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Client } from 'pg';
import { stringify } from 'yaml';
import { TenantsafeClient } from '../client/client';
import { startChangeLog, stopChangeLog } from '../client/fullBackups';
import { changeLogStream } from '../lib/changeLog/capture';
import type { Catalog } from '../lib/catalog';
import { loadConfig } from '../lib/config';
import { databaseIdentity, workflowScopes } from '../lib/databaseIdentity';
import { Engine } from '../lib/engine';
import { backupLabel } from '../lib/labels';
import { connect } from '../lib/pg';
import { rebuildFromChangeLog } from '../lib/pointInTime/changeLogReplay';
import { pgBin } from '../lib/postgres/tools';
import { parseMicros } from '../lib/time';
import { formatLsn, parseLsn } from '../lib/wal/names';
import {
  benchCluster,
  benchStack,
  cpuSeconds,
  median,
  peakRssMb,
  percentile,
  runCommand,
  sleep,
  timedRestore,
  waitUntil,
  type BenchStack,
  type TimedRestore,
} from './support';
import { atMost, benchRow, ratioAtLeast, ratioAtMost, roundsOf, runScenario, scaled, type BenchOptions, type BenchRow } from './report';

/** the tenant restored: 4.4k rows */
const tenant = 'globex';
/** written as much as the tenant meanwhile: its changes are in the log the rebuild reads too */
const noise = 'acme';
/** What a run measures, from its options. */
function planOf(opts: BenchOptions) {
  return {
    /** restores of each kind per database size: single restores vary by ±20% and more on this shared machine */
    rounds: roundsOf(opts, 5, 1),
    /** restores and rebuilds per point of the replay series */
    seriesRounds: roundsOf(opts, 3, 1),
    /** tenant changes before the target in A's comparison */
    comparedChanges: scaled(opts, 1_000, 100),
    /** tenant changes before the target in the replay series */
    replaySeries: [scaled(opts, 1_000, 100), scaled(opts, 10_000, 200), scaled(opts, 50_000, 500)],
    whaleRows: scaled(opts, 2_000_000, 20_000),
    pgbenchSeconds: scaled(opts, 50, 6),
    warmupSeconds: scaled(opts, 10, 2),
  };
}
type Plan = ReturnType<typeof planOf>;

const seconds = (x: number) => `${x.toFixed(2)} s`;
const list = (xs: number[]) => `[${xs.map((x) => x.toFixed(2)).join(', ')}]`;
const mib = (bytes: number) => `${(bytes / 1048576).toFixed(0)} MiB`;

export async function run(opts: BenchOptions): Promise<BenchRow[]> {
  const only = process.env.BENCH_ONLY;
  const plan = planOf(opts);
  return [...(only === 'B' ? [] : await restoreFromChangeLog(plan)), ...(only === 'A' ? [] : await captureUnderPgbench(plan))];
}

// ---------------------------------------------------------------- A -----------------------------

/** One database size: its stack (worker with the change log streaming), a client, an engine of our own. */
interface Side {
  name: string;
  stack: BenchStack;
  engine: Engine;
  client: TenantsafeClient;
  sql: Client;
  stream: string;
  bytes: number;
  /** rows of the tenant, and of the whole database's owned tables */
  tenantRows: number;
  writer: ChangeWriter;
}

interface Round {
  /** through the worker: from the change log, to the target time */
  changeLog: TimedRestore;
  /** through the worker: from a backup of the tenant taken at the target */
  backup: TimedRestore;
  /** the engine alone: base backup + log → kind-P backup (what the preview does before it stages) */
  rebuild: number;
  transactionsReplayed: number;
}

async function restoreFromChangeLog({ rounds, comparedChanges, whaleRows, ...plan }: Plan): Promise<BenchRow[]> {
  const pg = await benchCluster({ wal_level: 'logical' });
  const sides: Side[] = [];
  try {
    const sizes = [
      { name: 'small', sample: { tenants: 5, rows: 20_000 } },
      { name: 'large', sample: { tenants: 5, rows: 20_000, extraTenants: [{ tenantId: 'whale', rows: whaleRows }] } },
    ];
    // both generated before either log starts: neither slot reads the other's generation
    const dbs = [];
    for (const s of sizes) dbs.push(await pg.sampleDatabase(`pitr_${s.name}`, s.sample));
    for (const [i, s] of sizes.entries()) sides.push(await startSide(s.name, dbs[i]));

    // 1. the comparison, rounds interleaved between the sizes (the VM's speed drifts)
    const results = new Map<string, Round[]>(sides.map((s) => [s.name, []]));
    for (let r = 0; r < rounds; r++) {
      for (const side of sides) results.get(side.name)!.push(await compareRound(side, comparedChanges, r % 2 === 0));
    }
    // 2. replay time against the changes replayed, on the small database
    const series = await replaySeriesOn(sides[0], plan);

    const scenario = 'tenant PITR (change log)';
    const rows: BenchRow[] = [];
    const med = (name: string, f: (r: Round) => number) => median(results.get(name)!.map(f));
    const best = (name: string, f: (r: Round) => number) => Math.min(...results.get(name)!.map(f));
    const split = (name: string, k: 'changeLog' | 'backup') => `${seconds(med(name, (r) => r[k].preview))} + ${seconds(med(name, (r) => r[k].approvalToDone))} ${list(results.get(name)!.map((r) => r[k].total))}`;
    for (const side of sides) {
      const rs = results.get(side.name)!;
      rows.push(
        benchRow(scenario, `${side.name} database: \`--at\` (change log) vs \`--backup\` of the same moment`, {
          ours: med(side.name, (r) => r.changeLog.total),
          baseline: med(side.name, (r) => r.backup.total),
          ratio: med(side.name, (r) => r.changeLog.total / r.backup.total),
          unit: 's',
          target: ratioAtMost(3),
          note:
            `${mib(side.bytes)}, tenant ${tenant} ${side.tenantRows} rows, ${comparedChanges} changes of it + ${comparedChanges} of ${noise} after the base backup; preview + approval → verified, medians of ${rounds}: ` +
            `--at ${split(side.name, 'changeLog')}, --backup ${split(side.name, 'backup')}; ratio: median of per-round ratios ${list(rs.map((r) => r.changeLog.total / r.backup.total))}; engine rebuild alone ${seconds(med(side.name, (r) => r.rebuild))} (${rs[0].transactionsReplayed} transactions)`,
        }),
      );
    }
    const [small, large] = sides.map((s) => s.name);
    rows.push(
      benchRow(scenario, 'database size, large vs small', { ours: sides[1].bytes / 2 ** 20, baseline: sides[0].bytes / 2 ** 20, unit: 'MiB', target: ratioAtLeast(10), note: 'a condition of the comparison below, not a result' }),
      benchRow(scenario, '`--at`, large vs small database (target: about the same)', {
        ours: med(large, (r) => r.changeLog.total),
        baseline: med(small, (r) => r.changeLog.total),
        unit: 's',
        // others' work on the same cores only ever adds time: the best round is the steadiest figure
        note: `of the best rounds ${(best(large, (r) => r.changeLog.total) / best(small, (r) => r.changeLog.total)).toFixed(2)}; engine rebuild ${(med(large, (r) => r.rebuild) / med(small, (r) => r.rebuild)).toFixed(2)}, --backup ${(med(large, (r) => r.backup.total) / med(small, (r) => r.backup.total)).toFixed(2)}`,
      }),
    );
    // linear: each further 1,000 changes (a tenant's and the other's alike) costs about the same
    const steps = series.slice(1).map((s, i) => ({ from: series[i], to: s, ms: ((s.rebuild - series[i].rebuild) / (2 * (s.changes - series[i].changes))) * 1e6 }));
    rows.push(
      benchRow(scenario, 'replay: engine rebuild per 1,000 more changes (target: linear)', {
        ours: steps.at(-1)!.ms,
        unit: 'ms',
        note:
          `${steps.map((x) => `${2 * x.from.changes} → ${2 * x.to.changes} changes: ${x.ms.toFixed(0)} ms`).join('; ')}; rebuild at 0 changes (extrapolated) ${seconds(series[0].rebuild - (steps[0].ms / 1e6) * 2 * series[0].changes)}; ` +
          series.map((s) => `at ${2 * s.changes} changes (${s.transactions} transactions) rebuild ${seconds(s.rebuild)} ${list(s.rebuilds)}, --at ${seconds(s.restore)} ${list(s.restores)}`).join('; '),
      }),
    );
    return rows;
  } finally {
    for (const side of sides) {
      await stopChangeLog(side.client, (await workflowScopes(side.engine)).changeLog).catch(() => undefined);
      await side.client.close().catch(() => undefined);
      await side.sql.end().catch(() => undefined);
      await side.engine.close();
      await side.stack.stop();
    }
    await pg.remove();
  }
}

async function startSide(name: string, db: { url: string; drop(): Promise<void> }): Promise<Side> {
  // the users' settings, but for the slot's name: two databases share the cluster
  const stack = await benchStack(db, { config: { changeLog: { enabled: true, slot: `tenantsafe_changes_${name}`, replicaIdentityFull: true } } });
  const engine = new Engine(stack.config);
  const client = await TenantsafeClient.connect(stack.config.temporal);
  const sql = await connect(stack.dbUrl, 'bench');
  // the change log streams in the worker, as `tenantsafe changelog start` (or `dev`) runs it
  await startChangeLog(client, (await workflowScopes(engine)).changeLog);
  const stream = changeLogStream(await databaseIdentity(engine));
  await waitUntil('the change log to stream', async () => (await sql.query(`SELECT 1 FROM pg_replication_slots WHERE slot_name = $1 AND active`, [stack.config.changeLog.slot])).rowCount === 1);
  const bytes = Number((await sql.query(`SELECT pg_database_size(current_database())::text AS b`)).rows[0].b);
  const writer = await ChangeWriter.create(sql);
  const tenantRows = (await client.backupTenant(tenant, { wait: true })).rows ?? 0;
  return { name, stack, engine, client, sql, stream, bytes, tenantRows, writer };
}

/**
 * Base backup (an exact boundary), N changes of the tenant and N of another, the target time, a
 * backup of the tenant as it is then; then the tenant restored to the target both ways, each
 * after the tenant was changed again (as a person would find it), and the engine's rebuild.
 */
async function compareRound(side: Side, n: number, changeLogFirst: boolean): Promise<Round> {
  const { client, sql } = side;
  const base = await client.backupTenant(tenant, { wait: true });
  await side.writer.write(n);
  const at = await serverTime(sql);
  const atTarget = await client.backupTenant(tenant, { wait: true });
  const fromLog = async () => {
    await damage(side);
    const r = await timedRestore(client, sql, { tenantId: tenant, at });
    const p = r.requested.preview?.pointInTime;
    if (p?.source !== 'changeLog') throw new Error(`the restore to ${at} took ${p?.source ?? 'no point-in-time source'}: ${p?.reason}`);
    // the rebuilt tenant is the backup taken at the target, row for row
    const rebuilt = await side.engine.catalog.getBackup(r.requested.backupId!);
    const reference = await side.engine.catalog.getBackup(atTarget.backupId);
    if (rebuilt.tenantChecksum !== reference.tenantChecksum || rebuilt.rows !== reference.rows) {
      throw new Error(`the change log rebuilt ${rebuilt.rows} rows (${rebuilt.tenantChecksum}), the backup at the target holds ${reference.rows} (${reference.tenantChecksum})`);
    }
    return r;
  };
  const fromBackup = async () => {
    await damage(side);
    return timedRestore(client, sql, { tenantId: tenant, backupId: atTarget.backupId });
  };
  const changeLog = changeLogFirst ? await fromLog() : undefined;
  const backup = await fromBackup();
  const rebuilt = await rebuildAlone(side, base.backupId, at);
  return { changeLog: changeLog ?? (await fromLog()), backup, ...rebuilt };
}

/**
 * Replay time against N: for each N a base backup, N changes (and N of the other tenant), a
 * target, and the tenant restored to it through the worker, each time after the same damage (so
 * every restore undoes the same difference); then the engine's rebuilds, in rounds over the N
 * (the machine's speed drifts; a rebuild reads only the backup and the log). Medians of `seriesRounds`.
 */
async function replaySeriesOn(side: Side, { replaySeries, seriesRounds }: Pick<Plan, 'replaySeries' | 'seriesRounds'>) {
  const points = [];
  for (const n of replaySeries) {
    const base = await side.client.backupTenant(tenant, { wait: true });
    await side.writer.write(n);
    const at = await serverTime(side.sql);
    const restores = [];
    for (let i = 0; i < seriesRounds; i++) {
      await damage(side);
      restores.push((await timedRestore(side.client, side.sql, { tenantId: tenant, at })).total);
    }
    points.push({ changes: n, baseBackupId: base.backupId, at, restores, rebuilds: [] as number[], transactions: 0 });
  }
  for (let i = 0; i < seriesRounds; i++) {
    for (const p of points) {
      const r = await rebuildAlone(side, p.baseBackupId, p.at);
      p.rebuilds.push(r.rebuild);
      p.transactions = r.transactionsReplayed;
    }
  }
  return points.map((p) => ({ ...p, rebuild: median(p.rebuilds), restore: median(p.restores) }));
}

async function rebuildAlone(side: Side, baseBackupId: string, at: string): Promise<{ rebuild: number; transactionsReplayed: number }> {
  const base = await side.engine.catalog.getBackup(baseBackupId);
  await side.sql.query('CHECKPOINT');
  const t0 = performance.now();
  const r = await rebuildFromChangeLog(side.engine, { tenantId: tenant, backupId: backupLabel(new Date(), 'pointInTime', randomBytes(3).toString('hex')), base, stream: side.stream, target: { at }, reason: 'bench' });
  return { rebuild: (performance.now() - t0) / 1000, transactionsReplayed: r.transactionsReplayed };
}

/** The tenant changed after the target (what a restore undoes), and the log caught up with it. */
async function damage(side: Side): Promise<void> {
  await side.sql.query(`UPDATE app.users SET display_name = 'damaged ${Date.now()}' WHERE tenant_id = $1`, [tenant]);
  await side.sql.query(`DELETE FROM app.page_views WHERE tenant_id = $1`, [tenant]);
  await logCaughtUp(side.sql, side.engine.catalog, side.stream);
}

/** The server's clock now, to the microsecond, as `--at` takes it. */
async function serverTime(sql: Client): Promise<string> {
  return (await sql.query(`SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS t`)).rows[0].t;
}

/** How far the log holds every commit: its last stored transaction's end, or where it last caught up (whichever is later). */
async function logReach(catalog: Catalog, stream: string): Promise<bigint> {
  const [end, state] = await Promise.all([catalog.changeLogEnd(stream), catalog.getChangeLogStream(stream)]);
  return [end?.lsn, state?.caughtUpLsn].reduce((a, l) => (l && parseLsn(l) > a ? parseLsn(l) : a), 0n);
}

async function logCaughtUp(sql: Client, catalog: Catalog, stream: string, timeoutMs = 60_000): Promise<void> {
  const now = parseLsn((await sql.query(`SELECT pg_current_wal_lsn()::text AS l`)).rows[0].l);
  await waitUntil('the change log to catch up', async () => (await logReach(catalog, stream)) >= now, timeoutMs);
}

/**
 * Writes N row changes to the tenant and N to the noise tenant, interleaved, 50 a transaction:
 * 20 updates of events (partitioned), 10 of tasks (a child without the tenant column), 16
 * inserts into AuditLog and 4 deletes of rows inserted before (the tenant's size stays put).
 */
class ChangeWriter {
  private round = 0;
  private readonly inserted = new Map<string, number[]>();

  private constructor(
    private readonly sql: Client,
    private readonly tasks: Map<string, number[]>,
    private readonly events: Map<string, number>,
  ) {}

  static async create(sql: Client): Promise<ChangeWriter> {
    const tasks = new Map<string, number[]>();
    const events = new Map<string, number>();
    for (const t of [tenant, noise]) {
      tasks.set(t, (await sql.query(`SELECT task_id::int AS id FROM app.tasks JOIN app.projects USING (project_id) WHERE tenant_id = $1 ORDER BY 1`, [t])).rows.map((r) => r.id));
      events.set(t, (await sql.query(`SELECT max(event_id)::int AS n FROM app.events WHERE tenant_id = $1`, [t])).rows[0].n);
    }
    return new ChangeWriter(sql, tasks, events);
  }

  async write(n: number): Promise<void> {
    for (let done = 0; done < n; done += 50) for (const t of [tenant, noise]) await this.transaction(t);
  }

  private async transaction(t: string): Promise<void> {
    const k = this.round++;
    const events = this.events.get(t)!;
    const from = 1 + ((k * 20) % (events - 20));
    const tasks = this.tasks.get(t)!;
    const someTasks = Array.from({ length: 10 }, (_, i) => tasks[(k * 10 + i) % tasks.length]);
    const mine = this.inserted.get(t) ?? [];
    const gone = mine.length >= 4 ? mine.splice(0, 4) : [];
    const r = await this.sql.query(`
      BEGIN;
      UPDATE app.events SET payload = jsonb_build_object('bench', ${k}, 'note', 'updated by the bench') WHERE tenant_id = '${t}' AND event_id BETWEEN ${from} AND ${from + 19};
      UPDATE app.tasks SET estimate = ${k % 1000} + 0.5, status = 'doing' WHERE task_id IN (${someTasks.join(', ')});
      ${gone.length ? `DELETE FROM app."AuditLog" WHERE "auditId" IN (${gone.join(', ')});` : ''}
      INSERT INTO app."AuditLog" (tenant_id, "Actor", "eventType", "At") SELECT '${t}', 'bench ' || i, 'bench.change', now() FROM generate_series(1, ${gone.length ? 16 : 20}) i RETURNING "auditId";
      COMMIT`);
    const results = r as unknown as { command: string; rows: { auditId: string }[] }[];
    mine.push(...results.find((x) => x.command === 'INSERT')!.rows.map((x) => Number(x.auditId)));
    this.inserted.set(t, mine);
  }
}

// ---------------------------------------------------------------- B -----------------------------

/** How often the slot's restart_lsn moved on: the WAL it holds fell by more than 1 MiB from one sample to the next. */
function restartMoves(held: number[]): number {
  return held.filter((h, i) => i > 0 && h < held[i - 1] - 1048576).length;
}

/**
 * pgbench's own tables and its built-in TPC-B-like script, made tenant-owned the way the product's
 * tenancy needs: pgbench_branches is the tenant table and `bid` the tenant column, which
 * pgbench_tellers, pgbench_accounts and pgbench_history all carry (history has no key: REPLICA
 * IDENTITY FULL, as changeLog.replicaIdentityFull sets it). "pgbench at its full rate" is then
 * exactly the load the phrase names, every change of it in the log.
 * Runs, in this order so that a drift of the machine's speed cancels out: without a consumer,
 * with pg_recvlogical (the raw tool: the same pgoutput stream written to a file, fsynced every
 * second), with the capture (longer: the slot's WAL is kept between its restart points, which
 * move every ~15-30 s), pg_recvlogical again, without again.
 */
async function captureUnderPgbench({ pgbenchSeconds, warmupSeconds }: Plan): Promise<BenchRow[]> {
  const scale = 10;
  const clients = 8;
  const pg = await benchCluster({ wal_level: 'logical' });
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'tenantsafe-bench-capture-'));
  const children: ChildProcess[] = [];
  try {
    await pg.cluster.psql('CREATE DATABASE pgbench');
    const url = pg.cluster.url('pgbench');
    const pgArgs = ['-h', '127.0.0.1', '-p', String(pg.cluster.port), '-U', 'postgres'];
    await runCommand(pgBin('pgbench'), ['-i', '-q', '-s', String(scale), '--foreign-keys', ...pgArgs, 'pgbench']);
    const configFile = path.join(work, 'tenantsafe.yaml');
    fs.writeFileSync(
      configFile,
      stringify({
        database: { url },
        storage: { primary: { kind: 'local', path: path.join(work, 'store') } },
        tenancy: { schemas: ['public'], tenantTable: 'pgbench_branches', tenantColumn: 'bid' },
        changeLog: { enabled: true, replicaIdentityFull: true },
      }),
    );
    const engine = new Engine(loadConfig({ path: configFile }));
    const sql = await connect(url, 'bench');
    const slot = engine.config.changeLog.slot;
    // what the capture's setup does to the tables, done first so that every run sees the same;
    // pg_recvlogical's publication lists the same tables
    await sql.query('ALTER TABLE pgbench_history REPLICA IDENTITY FULL');
    await sql.query('CREATE PUBLICATION bench_raw FOR TABLE pgbench_branches, pgbench_tellers, pgbench_accounts, pgbench_history');
    const pgbench = async (seconds: number) => {
      await sql.query('CHECKPOINT');
      const out = await runCommand(pgBin('pgbench'), ['-M', 'prepared', '-c', String(clients), '-j', '2', '-T', String(seconds), ...pgArgs, 'pgbench']);
      const tps = /tps = ([\d.]+) \(without initial connection time\)/.exec(out);
      if (!tps) throw new Error(`pgbench: no tps in ${out}`);
      return Number(tps[1]);
    };
    const slotActive = (name: string) => waitUntil(`slot ${name} to stream`, async () => (await sql.query(`SELECT 1 FROM pg_replication_slots WHERE slot_name = $1 AND active`, [name])).rowCount === 1);
    const stopChild = async (child: ChildProcess) => {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await exited;
      children.splice(children.indexOf(child), 1);
    };
    /** each consumer starts from a slot of its own made now: none catches up on WAL of the runs before */
    const dropSlot = async (name: string) => {
      await waitUntil(`slot ${name} released`, async () => (await sql.query(`SELECT 1 FROM pg_replication_slots WHERE slot_name = $1 AND active`, [name])).rowCount === 0);
      await sql.query(`SELECT pg_drop_replication_slot($1)`, [name]);
    };

    const rawRun = async (seconds: number) => {
      await sql.query(`SELECT pg_create_logical_replication_slot('bench_raw', 'pgoutput')`);
      const child = spawn(pgBin('pg_recvlogical'), [...pgArgs, '-d', 'pgbench', '-S', 'bench_raw', '--start', '-o', 'proto_version=1', '-o', 'publication_names=bench_raw', '-F', '1', '-f', path.join(work, 'raw.out')], { stdio: 'ignore' });
      children.push(child);
      await slotActive('bench_raw');
      const pid = (await sql.query<{ pid: number }>(`SELECT active_pid AS pid FROM pg_replication_slots WHERE slot_name = 'bench_raw'`)).rows[0].pid;
      const cpu0 = { self: cpuSeconds(child.pid!), walsender: cpuSeconds(pid), t: performance.now() };
      let loaded = true;
      const running = pgbench(seconds).finally(() => (loaded = false));
      const held: number[] = [];
      while (loaded) {
        held.push(Number((await sql.query(`SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint::text AS held FROM pg_replication_slots WHERE slot_name = 'bench_raw'`)).rows[0].held));
        await sleep(100);
      }
      const tps = await running;
      const wall = (performance.now() - cpu0.t) / 1000;
      const cpu = { self: (cpuSeconds(child.pid!) - cpu0.self) / wall, walsender: (cpuSeconds(pid) - cpu0.walsender) / wall };
      await stopChild(child);
      await dropSlot('bench_raw');
      fs.rmSync(path.join(work, 'raw.out'), { force: true });
      return { tps, cpu, held };
    };

    const captureRun = async (seconds: number) => {
      const child = spawn(process.execPath, ['--require', require.resolve('tsx/cjs'), path.join(__dirname, 'captureProcess.ts'), configFile], { stdio: ['ignore', 'pipe', 'inherit'] });
      children.push(child);
      let out = '';
      child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
      await slotActive(slot);
      const stream = changeLogStream(await databaseIdentity(engine));
      await logCaughtUp(sql, engine.catalog, stream);
      const pid = child.pid!;
      const walsender = (await sql.query<{ pid: number }>(`SELECT active_pid AS pid FROM pg_replication_slots WHERE slot_name = $1`, [slot])).rows[0].pid;
      const rssAtStart = peakRssMb(pid);
      // sampled every ~100 ms: the server's WAL position, how far the log holds every commit, the WAL the slot holds
      const positions: { t: number; lsn: bigint }[] = [];
      const reaches: { t: number; lsn: bigint }[] = [];
      const held: number[] = [];
      const unconfirmed: number[] = [];
      const sample = async () => {
        const t = Date.now();
        const r = await sql.query(
          `SELECT pg_current_wal_lsn()::text AS l, pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint::text AS held,
                  pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint::text AS unconfirmed
             FROM pg_replication_slots WHERE slot_name = $1`,
          [slot],
        );
        positions.push({ t, lsn: parseLsn(r.rows[0].l) });
        held.push(Number(r.rows[0].held));
        unconfirmed.push(Number(r.rows[0].unconfirmed));
        reaches.push({ t: Date.now(), lsn: await logReach(engine.catalog, stream) });
      };
      const cpu0 = { self: cpuSeconds(pid), walsender: cpuSeconds(walsender), t: performance.now() };
      let loaded = true;
      const running = pgbench(seconds).finally(() => (loaded = false));
      while (loaded) {
        await sample();
        await sleep(100);
      }
      const tps = await running;
      const wall = (performance.now() - cpu0.t) / 1000;
      const cpu = { self: (cpuSeconds(pid) - cpu0.self) / wall, walsender: (cpuSeconds(walsender) - cpu0.walsender) / wall };
      const underLoad = positions.length;
      // the load is over: how long until the log holds the server's position now, past its last
      // commit (WAL written outside the log's tables, as vacuum, checkpoints or other tables do):
      // only the log's caught-up position can reach it. What a restore to "now" waits for.
      await sql.query(`SELECT pg_logical_emit_message(false, 'tenantsafe-bench', 'not in the log')`);
      await sample();
      const last = positions.at(-1)!;
      while (reaches.at(-1)!.lsn < last.lsn && Date.now() - last.t < 120_000) {
        await sleep(100);
        await sample();
      }
      const drained = (reaches.at(-1)!.t - last.t) / 1000;
      // where the lag comes from: each segment seen in the catalog (first sample past its end)
      // against its first commit (what waits longest: the flush interval, then the write) and its last
      const segments = [];
      for (const seg of await engine.catalog.listChangeSegments(stream, formatLsn(positions[0].lsn))) {
        const seen = reaches.find((r) => r.lsn >= parseLsn(seg.lastEndLsn));
        if (seen) segments.push({ afterFirst: (seen.t - Number(parseMicros(seg.firstCommitTime) / 1000n)) / 1000, afterLast: (seen.t - Number(parseMicros(seg.lastCommitTime) / 1000n)) / 1000 });
      }
      const rssPeak = peakRssMb(pid);
      await stopChild(child);
      await dropSlot(slot);
      const progress = JSON.parse(out.trim().split('\n').at(-1) ?? '{}') as { transactions?: number; segments?: number };
      // each position sampled under load: from when the server had written that far until the log held it
      const lags: number[] = [];
      let j = 0;
      for (const p of positions.slice(0, underLoad)) {
        while (j < reaches.length && (reaches[j].lsn < p.lsn || reaches[j].t < p.t)) j++;
        if (j === reaches.length) break;
        lags.push((reaches[j].t - p.t) / 1000);
      }
      return { tps, cpu, lags, segments, unreached: underLoad - lags.length, drained, rssAtStart, rssPeak, held, unconfirmed, walBytes: Number(last.lsn - positions[0].lsn), progress };
    };

    const short = Math.round(pgbenchSeconds / 2);
    await pgbench(warmupSeconds); // warm-up: caches, and the first autovacuum of the fresh tables
    const none1 = await pgbench(short);
    const raw1 = await rawRun(short);
    const ours = await captureRun(pgbenchSeconds);
    const raw2 = await rawRun(short);
    const none2 = await pgbench(short);
    await sql.end();
    await engine.close();

    const without = (none1 + none2) / 2;
    const raw = (raw1.tps + raw2.tps) / 2;
    const pct = (x: number) => `${(x * 100).toFixed(0)}%`;
    const { lags } = ours;
    const scenario = 'change log under pgbench';
    const load = `pgbench scale ${scale} (${scale} tenants = branches), built-in TPC-B-like script, -M prepared -c ${clients} -j 2, ${os.cpus().length} cores`;
    return [
      benchRow(scenario, 'log behind the server under load, p95', {
        ours: percentile(lags, 95),
        unit: 's',
        target: atMost(1),
        note:
          `${load}; p50 ${percentile(lags, 50).toFixed(2)} s, max ${Math.max(...lags).toFixed(2)} s, ${lags.length} samples${ours.unreached ? `, ${ours.unreached} not reached within 120 s after the load` : ''}; ` +
          `a segment in the catalog after its first / last commit (flushInterval ${engine.config.changeLog.flushIntervalMs} ms): p50 ${percentile(ours.segments.map((x) => x.afterFirst), 50).toFixed(2)} / ${percentile(ours.segments.map((x) => x.afterLast), 50).toFixed(2)} s, ` +
          `max ${Math.max(...ours.segments.map((x) => x.afterFirst)).toFixed(2)} / ${Math.max(...ours.segments.map((x) => x.afterLast)).toFixed(2)} s (${ours.segments.length} segments)`,
      }),
      benchRow(scenario, 'after the load: the log reaches the server position read then, within', { ours: ours.drained, unit: 's', target: atMost(1) }),
      benchRow(scenario, 'TPS with the capture vs without a consumer', {
        ours: ours.tps,
        baseline: without,
        unit: 'TPS',
        note: `${pgbenchSeconds} s with the capture; without: ${none1.toFixed(0)} before, ${none2.toFixed(0)} after (${short} s each)`,
      }),
      benchRow(scenario, 'TPS with the capture vs with pg_recvlogical', { ours: ours.tps, baseline: raw, unit: 'TPS', note: `pg_recvlogical: ${raw1.tps.toFixed(0)} before, ${raw2.tps.toFixed(0)} after (${short} s each), ${pct(raw / without)} of without` }),
      benchRow(scenario, 'consumer CPU under load (% of one core): capture vs pg_recvlogical', {
        ours: ours.cpu.self * 100,
        baseline: ((raw1.cpu.self + raw2.cpu.self) / 2) * 100,
        unit: '%',
        note: `walsenders: the capture's ${pct(ours.cpu.walsender)}, pg_recvlogical's ${pct((raw1.cpu.walsender + raw2.cpu.walsender) / 2)}`,
      }),
      benchRow(scenario, 'capture peak RSS (VmHWM)', { ours: ours.rssPeak, unit: 'MB', target: atMost(200), note: `${ours.rssAtStart} MB at start; ${ours.progress.transactions ?? '?'} transactions logged in ${ours.progress.segments ?? '?'} segments, ${mib(ours.walBytes)} of WAL written meanwhile` }),
      benchRow(scenario, 'WAL the slot held (restart_lsn behind the server), max: capture vs pg_recvlogical', {
        ours: Math.max(...ours.held) / 2 ** 20,
        baseline: Math.max(...raw1.held, ...raw2.held) / 2 ** 20,
        unit: 'MiB',
        note: `median ${mib(median(ours.held))}; restart_lsn moved ${restartMoves(ours.held)} times in ${pgbenchSeconds} s (pg_recvlogical's over ${short} s runs); confirmed_flush_lsn behind: max ${mib(Math.max(...ours.unconfirmed))}`,
      }),
    ];
  } finally {
    for (const child of children) child.kill('SIGKILL');
    await pg.remove();
    fs.rmSync(work, { recursive: true, force: true });
  }
}

if (require.main === module) runScenario(run);
