// The fault suite's rig: a private cluster holding the sample (so PostgreSQL may crash), GCS
// storage on the durable test stack (so the emulator and the Temporal server may restart), and a
// worker in a process of its own (so it may be killed). `inject` causes one fault mid-step and
// brings the system back; `faultCase` times the recovery and checks, after every case, that
// nothing was left behind. The table of every case prints at the end of the run (hooks.ts).
import { strict as assert } from 'node:assert';
import { execFileSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import { withConnection } from '../../lib/pg';
import { scratchSchemaPattern } from '../../lib/restore/mapping';
import { removeIncompleteBackups } from '../../lib/tenantBackup';
import { ensureSampleDatabase, sampleTenants } from '../../sample/generate';
import { spawnWorkerProcess } from '../../workers/process';
import { startSourceCluster, type SourceCluster } from '../support/cluster';
import { defaultSample } from '../support/db';
import { createTestEnv, runCli, type CliResult, type TestEnv } from '../support/env';
import { testStack } from '../support/stack';

export const faults = ['worker kill -9', 'postgres crash', 'storage restart', 'temporal restart'] as const;
export type Fault = (typeof faults)[number];

export interface FaultRow {
  step: string;
  fault: Fault;
  outcome: string;
  recoverSeconds: number | null;
}

export const faultTable: FaultRow[] = [];

/** The table the suite prints: one row per case, how it ended and how long it took to recover. */
export function renderFaultTable(rows: FaultRow[]): string {
  const cells = rows.map((r) => [r.step, r.fault, r.outcome, r.recoverSeconds === null ? '-' : r.recoverSeconds.toFixed(1)]);
  const head = ['step', 'fault', 'outcome', 'recover s'];
  const widths = head.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i].length)));
  const line = (c: string[]) => c.map((x, i) => x.padEnd(widths[i])).join(' | ');
  return [line(head), widths.map((w) => '-'.repeat(w)).join('-|-'), ...cells.map(line)].join('\n');
}

export interface Rig {
  source: SourceCluster;
  env: TestEnv;
  worker: ChildProcess;
  cli(...args: string[]): Promise<CliResult>;
  /**
   * Causes the fault and recovers from it; `meanwhile` runs while the fault holds (the worker
   * dead, the emulator or Temporal stopped; after the crash for PostgreSQL, which starts at once).
   */
  inject(fault: Fault, meanwhile?: () => Promise<void>): Promise<void>;
  /**
   * Runs one case: the body injects the fault and says when the work recovered (the workflow
   * ended, the stream is past the fault), then checks and returns the outcome; then the leak checks.
   */
  faultCase(step: string, fault: Fault, body: (c: CaseControl) => Promise<string>, leaks?: LeakExpectation): Promise<void>;
  /** The slots, scratch schemas, scratch clusters and child processes left now. */
  leftovers(expect?: LeakExpectation): Promise<string[]>;
  close(): Promise<void>;
}

export interface CaseControl {
  inject(meanwhile?: () => Promise<void>): Promise<void>;
  /** the moment the time to recover ends (default: when the body returns) */
  recovered(): void;
}

export interface LeakExpectation {
  /** replication slots that belong (the WAL archiver's, the change log's) */
  slots?: string[];
}

export async function createRig(opts: { configure?: (doc: Record<string, any>, dir: string, source: SourceCluster) => void; settings?: Record<string, string> } = {}): Promise<Rig> {
  const stack = await testStack();
  const source = await startSourceCluster('app', opts.settings);
  const { url } = await ensureSampleDatabase(source.cluster.url(), 'saas', defaultSample);
  const db = { name: 'saas', url, tenants: sampleTenants(defaultSample), drop: async () => undefined };
  const env = await createTestEnv('gcs', { db, configure: (doc, dir) => opts.configure?.(doc, dir, source) });
  const workerExits: string[] = [];
  const spawn = async () => {
    const w = await spawnWorkerProcess(env.configFile);
    let stderr = '';
    w.stderr!.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-3000)));
    w.once('exit', (code, signal) => signal !== 'SIGKILL' && workerExits.push(`worker ${w.pid} exited: code ${code}, signal ${signal}: ${stderr}`));
    return w;
  };
  const rig: Rig = {
    source,
    env,
    worker: await spawn(),
    cli: (...args) => runCli([...args, '--json'], { configFile: env.configFile }),
    async inject(fault, meanwhile) {
      if (fault === 'worker kill -9') {
        const dead = new Promise((resolve) => rig.worker.once('exit', resolve));
        rig.worker.kill('SIGKILL');
        await dead;
        await meanwhile?.();
        rig.worker = await spawn();
      } else if (fault === 'postgres crash') {
        await source.cluster.crash();
        await source.cluster.start();
        await meanwhile?.();
      } else if (fault === 'storage restart') {
        await stack.restartGcs(async () => {
          await meanwhile?.();
          await sleep(3000);
        });
      } else {
        await stack.restartTemporal(async () => {
          await meanwhile?.();
          await sleep(2000);
        });
      }
    },
    async faultCase(step, fault, body, leaks) {
      let injectedAt: number | undefined;
      let recoveredAt: number | undefined;
      const row: FaultRow = { step, fault, outcome: 'test failed', recoverSeconds: null };
      faultTable.push(row);
      // a worker that died in an earlier case failed that case: this one starts with a live one
      if (rig.worker.exitCode !== null || rig.worker.signalCode !== null) rig.worker = await spawn();
      const outcome = await body({
        async inject(meanwhile) {
          injectedAt = Date.now();
          await rig.inject(fault, meanwhile);
        },
        recovered: () => (recoveredAt ??= Date.now()),
      });
      assert.ok(injectedAt, 'the case injected its fault');
      row.recoverSeconds = ((recoveredAt ?? Date.now()) - injectedAt) / 1000;
      assert.deepEqual(workerExits.splice(0), [], 'no worker process died but the one killed');
      assert.deepEqual(await rig.leftovers(leaks), [], 'nothing left behind');
      row.outcome = outcome;
    },
    async leftovers(expect = {}) {
      const left: string[] = [];
      await withConnection(db.url, async (c) => {
        const schemas = await c.query<{ name: string }>(`SELECT nspname AS name FROM pg_namespace WHERE nspname LIKE $1`, [scratchSchemaPattern]);
        left.push(...schemas.rows.map((r) => `scratch schema ${r.name}`));
        const slots = await c.query<{ name: string; temporary: boolean }>(`SELECT slot_name AS name, temporary FROM pg_replication_slots ORDER BY 1`);
        left.push(...slots.rows.filter((s) => s.temporary || !(expect.slots ?? []).includes(s.name)).map((s) => `replication slot ${s.name}`));
      });
      // backups without a manifest: a run that ended must have removed what it wrote
      for (const area of ['tenants', 'full'] as const) {
        const incomplete = await removeIncompleteBackups(env.engine.store, { area, olderThanMs: 0, now: new Date(Date.now() + 3600_000), dryRun: true });
        left.push(...incomplete.map((i) => `orphan objects ${i.prefix} (${i.objects})`));
      }
      // scratch clusters (verification, PITR clones, drills) live in directories below the source's
      const scratch = fs.readdirSync(source.dir).filter((f) => f !== 'source' && (fs.existsSync(`${source.dir}/${f}/PG_VERSION`) || fs.existsSync(`${source.dir}/${f}/data`)));
      left.push(...scratch.map((d) => `scratch cluster ${d}`));
      // child processes the worker ran against this cluster, still alive without it
      const ps = execFileSync('ps', ['-eo', 'pid=,ppid=,args='], { encoding: 'utf8' }).split('\n');
      const port = String(source.cluster.port);
      for (const l of ps) {
        const m = /^\s*(\d+)\s+(\d+)\s+(.*)$/.exec(l);
        if (!m || Number(m[2]) === rig.worker.pid) continue;
        const [args] = [m[3]];
        if (/^(\S*\/)?(pg_basebackup|pg_receivewal|pg_dump|tar|zstd|lz4)\b/.test(args) && (args.includes(`:${port}/`) || args.includes(env.dir) || args.includes(source.dir))) left.push(`process ${m[1]}: ${args.slice(0, 80)}`);
      }
      return left;
    },
    async close() {
      rig.worker.kill('SIGKILL');
      await env.close();
      await source.remove();
    },
  };
  return rig;
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
