// Every tenant, every night: `tenantsafe backup all --wait` (batched, packs) against `pg_dump -Fc`
// of the same database, in the same run, on two generated databases: ≥ 1,000 tenants of Zipf
// sizes, and 10,000 tiny tenants.
//   time ratio  = backup all (CLI command start → its end, as the user waits) / pg_dump -Fc; target ≤ 1.0
//   bytes ratio = what the run added to storage (packs, pack index, manifests) / the dump file; target ≤ 1.2
// The machine is shared (2 cores, other test runs): each round runs pg_dump and ours back to back,
// alternating which goes first, after a CHECKPOINT; medians of BENCH_ROUNDS (≥ 3) rounds. The
// worker-side figure (the workflow's run, without the CLI's start) is printed beside.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { withConnection } from '../lib/pg';
import { pgBin } from '../lib/postgres/tools';
import { Client as TemporalClient, Connection } from '@temporalio/client';
import { workflowIds, type TenantBackupsAllResult } from '../workflows/messages';
import { benchStack, median, printTable, runCommand } from './support';
import type { SampleOptions } from '../sample/generate';

const rounds = Math.max(3, Number(process.env.BENCH_ROUNDS ?? 3));
const cli = path.join(__dirname, '..', 'bin', 'tenantsafe');

/** Bytes of every file under a directory. */
function treeBytes(dir: string): number {
  if (!fs.existsSync(dir)) return 0;
  return fs.readdirSync(dir, { recursive: true, withFileTypes: true }).reduce((n, e) => (e.isFile() ? n + fs.statSync(path.join(e.parentPath, e.name)).size : n), 0);
}

async function scenario(name: string, sample: SampleOptions): Promise<[string, string][]> {
  const stack = await benchStack(sample);
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'tenantsafe-bench-dump-'));
  const store = stack.config.storage.primary.kind === 'local' ? stack.config.storage.primary.path : '';
  const dump = { seconds: [] as number[], bytes: 0 };
  const ours = { seconds: [] as number[], workerSeconds: [] as number[], bytes: [] as number[], tenants: 0, packs: 0 };
  const temporal = new TemporalClient({ connection: await Connection.connect({ address: stack.config.temporal.address }) });
  try {
    const facts = await withConnection(stack.dbUrl, async (c) => {
      const r = await c.query<{ tenants: number; rows: number; size: string }>(
        `SELECT (SELECT count(*) FROM app.tenants)::int AS tenants,
                (SELECT sum(reltuples) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE nspname = 'app' AND relkind = 'r')::int AS rows,
                pg_size_pretty(pg_database_size(current_database())) AS size`,
      );
      return r.rows[0];
    });
    console.error(`bench ${name}: ${facts.tenants} tenants, ${facts.rows} rows, database ${facts.size}`);
    const runDump = async () => {
      const file = path.join(work, 'all.dump');
      const t0 = performance.now();
      // the application's data as its owner dumps it: not the catalog tenantsafe keeps in the same database
      await runCommand(pgBin('pg_dump'), ['-Fc', `--exclude-schema=${stack.config.catalog.schema}`, '-f', file, stack.dbUrl]);
      dump.seconds.push((performance.now() - t0) / 1000);
      dump.bytes = fs.statSync(file).size;
      fs.rmSync(file);
    };
    const runOurs = async () => {
      const before = treeBytes(store);
      const t0 = performance.now();
      const out = await runCommand(process.execPath, [cli, '--config', stack.configFile, 'backup', 'all', '--wait', '--json']);
      ours.seconds.push((performance.now() - t0) / 1000);
      const result = JSON.parse(out) as TenantBackupsAllResult & { workflowId?: string };
      if ((result.failedCount ?? result.failed.length) > 0) throw new Error(`bench: ${result.failed.length} tenant backups failed: ${JSON.stringify(result.failed.slice(0, 3))}`);
      ours.tenants = result.succeeded;
      ours.packs = result.batch?.packs ?? 0;
      ours.bytes.push(treeBytes(store) - before);
      const run = await temporal.workflow.getHandle(workflowIds.tenantBackupsAll()).describe();
      ours.workerSeconds.push(((run.closeTime?.getTime() ?? NaN) - run.startTime.getTime()) / 1000);
    };
    for (let i = 0; i < rounds; i++) {
      for (const step of i % 2 === 0 ? [runDump, runOurs] : [runOurs, runDump]) {
        await withConnection(stack.dbUrl, (c) => c.query('CHECKPOINT'));
        await step();
      }
    }
  } finally {
    await temporal.connection.close();
    await stack.stop();
    fs.rmSync(work, { recursive: true, force: true });
  }
  const t = median(ours.seconds);
  const d = median(dump.seconds);
  const b = median(ours.bytes);
  const f = (xs: number[]) => xs.map((x) => x.toFixed(2)).join(', ');
  return [
    [`${name}: tenants backed up`, `${ours.tenants} (${ours.packs} packs per batch)`],
    [`${name}: backup all (CLI), s`, `${t.toFixed(2)} (rounds: ${f(ours.seconds)})`],
    [`${name}: workflow start → close, s`, `${median(ours.workerSeconds).toFixed(2)} (rounds: ${f(ours.workerSeconds)})`],
    [`${name}: pg_dump -Fc, s`, `${d.toFixed(2)} (rounds: ${f(dump.seconds)})`],
    [`${name}: time ratio (target ≤ 1.0)`, (t / d).toFixed(2)],
    [`${name}: bytes ours / dump`, `${(b / 1e6).toFixed(2)} MB / ${(dump.bytes / 1e6).toFixed(2)} MB`],
    [`${name}: bytes ratio (target ≤ 1.2)`, (b / dump.bytes).toFixed(2)],
  ];
}

async function main(): Promise<void> {
  const rows = [
    ...(await scenario('zipf', { tenants: Number(process.env.BENCH_TENANTS ?? 1000), rows: Number(process.env.BENCH_ROWS ?? 500_000) })),
    ...(await scenario('tiny', { tenants: 10_000, rows: 10_000 })),
  ];
  printTable(`All tenants vs pg_dump -Fc (medians of ${rounds} interleaved rounds; shared 2-core machine)`, rows);
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
