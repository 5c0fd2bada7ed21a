// Every tenant, every night: `tenantsafe backup all --wait` (batched, packs) against `pg_dump -Fc`
// of the same database, in the same run, on two generated databases: the bench dataset
// (bench/dataset.ts: at scale 1, 1,000 tenants of Zipf sizes, ~10M rows, payloads), and 10,000
// tiny tenants (at scale 1; 200 at least).
//   time ratio  = backup all (CLI command start → its end, as the user waits) / pg_dump -Fc; target ≤ 1.0
//   bytes ratio = what the run added to storage (packs, pack index, manifests) / the dump file; target ≤ 1.2
// The machine is shared (2 cores, other test runs): each round runs pg_dump and ours back to back,
// alternating which goes first, after a CHECKPOINT; medians of 3 rounds (quick: 1). The
// worker-side figure (the workflow's run, without the CLI's start) is reported beside, and the
// worker's peak RSS.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { withConnection } from '../lib/pg';
import { pgBin } from '../lib/postgres/tools';
import { Client as TemporalClient, Connection } from '@temporalio/client';
import { workflowIds, type TenantBackupsAllResult } from '../workflows/messages';
import { benchStack, median, runCommand } from './support';
import type { SampleOptions } from '../sample/generate';
import { benchDataset } from './dataset';
import { benchRow, ratioAtMost, roundsOf, runScenario, scaled, type BenchOptions, type BenchRow } from './report';
const cli = path.join(__dirname, '..', 'bin', 'tenantsafe');

/** Bytes of every file under a directory. */
function treeBytes(dir: string): number {
  if (!fs.existsSync(dir)) return 0;
  return fs.readdirSync(dir, { recursive: true, withFileTypes: true }).reduce((n, e) => (e.isFile() ? n + fs.statSync(path.join(e.parentPath, e.name)).size : n), 0);
}

async function dataset(name: string, sample: SampleOptions, rounds: number): Promise<BenchRow[]> {
  const stack = await benchStack(sample);
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'tenantsafe-bench-dump-'));
  const store = stack.config.storage.primary.kind === 'local' ? stack.config.storage.primary.path : '';
  const dump = { seconds: [] as number[], bytes: 0 };
  const ours = { seconds: [] as number[], workerSeconds: [] as number[], bytes: [] as number[], tenants: 0, packs: 0, rssMb: NaN };
  let facts = { tenants: 0, rows: 0, size: '' };
  const temporal = new TemporalClient({ connection: await Connection.connect({ address: stack.config.temporal.address }) });
  try {
    facts = await withConnection(stack.dbUrl, async (c) => {
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
    ours.rssMb = stack.workerPeakRssMb();
  } finally {
    await temporal.connection.close();
    await stack.stop();
    fs.rmSync(work, { recursive: true, force: true });
  }
  const d = median(dump.seconds);
  const f = (xs: number[]) => xs.map((x) => x.toFixed(2)).join(', ');
  const scenario = `all tenants, ${name}`;
  const mb = (x: number) => x / 1e6;
  return [
    benchRow(scenario, '`backup all --wait` from the CLI vs `pg_dump -Fc`, time', {
      ours: median(ours.seconds),
      baseline: d,
      unit: 's',
      target: ratioAtMost(1.0),
      note: `${ours.tenants} tenants backed up (${facts.rows} rows, database ${facts.size}; ${ours.packs} packs per batch); medians of ${rounds}: ours [${f(ours.seconds)}], pg_dump [${f(dump.seconds)}]`,
    }),
    benchRow(scenario, 'workflow start → close vs `pg_dump -Fc`, time', { ours: median(ours.workerSeconds), baseline: d, unit: 's', note: `the engine's figure, without the CLI: [${f(ours.workerSeconds)}]` }),
    benchRow(scenario, 'bytes stored vs the dump file', {
      ours: mb(median(ours.bytes)),
      baseline: mb(dump.bytes),
      unit: 'MB',
      target: ratioAtMost(1.2),
      note: 'packs, the batch\'s shared description, pack index, manifests; the dump leaves out tenantsafe\'s catalog schema',
    }),
    benchRow(scenario, 'worker peak RSS (VmHWM), whole run', { ours: ours.rssMb, unit: 'MB' }),
  ];
}

export async function run(opts: BenchOptions): Promise<BenchRow[]> {
  const rounds = roundsOf(opts, 3, 1);
  return [
    ...(await dataset('zipf', benchDataset(opts.scale), rounds)),
    ...(await dataset('tiny', { tenants: scaled(opts, 10_000, 200), rows: scaled(opts, 10_000, 200) }, rounds)),
  ];
}

if (require.main === module) runScenario(run);
