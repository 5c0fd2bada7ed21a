// Many tenants (docs/scaling.md): the every-tenant run over 100,000 tiny tenants (scale 1; quick:
// 5,000) on the Temporal dev server, from the CLI as a user runs it (`backup all --wait`), with
// the run's history (events, bytes: what Temporal keeps per run, capped at 50 MB / 51,200 events
// by default), its result's size, and the catalog's and the storage's growth. `pg_dump -Fc` of the
// same database in the same run is the baseline. The tenants are tiny on purpose: the figures are
// the per-tenant fixed costs (ids, manifests, catalog rows, history), not the data.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Client as TemporalClient, Connection } from '@temporalio/client';
import { withConnection } from '../lib/pg';
import { pgBin } from '../lib/postgres/tools';
import { workflowIds, type TenantBackupsAllResult } from '../workflows/messages';
import { adminUrl, benchStack, runCommand, type BenchDatabase } from './support';
import { benchRow, ratioAtMost, runScenario, scaled, type BenchOptions, type BenchRow } from './report';
const cli = path.join(__dirname, '..', 'bin', 'tenantsafe');

/** A database of `tenants` tenants, each with two notes and a tag on each (a child table without the tenant column). */
async function tinyTenants(tenants: number): Promise<BenchDatabase> {
  const name = `tenantsafe_bench_scale_${process.pid}`;
  await withConnection(adminUrl, (c) => c.query(`CREATE DATABASE ${name}`));
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  await withConnection(url.toString(), async (c) => {
    await c.query(`
      CREATE SCHEMA app;
      CREATE TABLE app.tenants (tenant_id text PRIMARY KEY, name text NOT NULL);
      CREATE TABLE app.notes (id bigint PRIMARY KEY, tenant_id text NOT NULL REFERENCES app.tenants, body text NOT NULL);
      CREATE TABLE app.note_tags (note_id bigint NOT NULL REFERENCES app.notes, tag text NOT NULL, PRIMARY KEY (note_id, tag));
      INSERT INTO app.tenants SELECT 't' || lpad(i::text, 6, '0'), 'Tenant ' || i FROM generate_series(1, ${tenants}) i;
      INSERT INTO app.notes SELECT n, 't' || lpad(((n + 1) / 2)::text, 6, '0'), 'note ' || n || ' ' || md5(n::text) FROM generate_series(1, ${tenants * 2}) n;
      INSERT INTO app.note_tags SELECT n, CASE WHEN n % 3 = 0 THEN 'urgent' ELSE 'later' END FROM generate_series(1, ${tenants * 2}) n;
    `);
    await c.query('VACUUM ANALYZE');
  });
  return { url: url.toString(), drop: () => withConnection(adminUrl, (c) => c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)).then(() => undefined) };
}

export async function run(opts: BenchOptions): Promise<BenchRow[]> {
  const tenants = scaled(opts, 100_000, 2_000);
  const batchTenants = opts.quick ? 1_000 : 10_000;
  const t0 = performance.now();
  const stack = await benchStack(await tinyTenants(tenants));
  console.error(`bench scale: ${tenants} tenants generated in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'tenantsafe-bench-scale-'));
  const temporal = new TemporalClient({ connection: await Connection.connect({ address: stack.config.temporal.address }) });
  try {
    const dumpFile = path.join(work, 'all.dump');
    const d0 = performance.now();
    await runCommand(pgBin('pg_dump'), ['-Fc', `--exclude-schema=${stack.config.catalog.schema}`, '-f', dumpFile, stack.dbUrl]);
    const dumpSeconds = (performance.now() - d0) / 1000;

    const s0 = performance.now();
    const out = await runCommand(process.execPath, [cli, '--config', stack.configFile, 'backup', 'all', '--wait', '--json', '--batch-tenants', String(batchTenants)]);
    const seconds = (performance.now() - s0) / 1000;
    const result = JSON.parse(out) as TenantBackupsAllResult;
    if (result.succeeded !== tenants) throw new Error(`bench scale: ${result.succeeded} of ${tenants} tenants backed up: ${JSON.stringify(result.failed.slice(0, 3))}`);
    const run = await temporal.workflow.getHandle(workflowIds.tenantBackupsAll()).describe();
    const info = run.raw.workflowExecutionInfo!;
    const catalogBytes = await withConnection(stack.dbUrl, async (c) => {
      const r = await c.query<{ bytes: string }>(`SELECT sum(pg_total_relation_size(c.oid))::bigint AS bytes FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relkind = 'r'`, [stack.config.catalog.schema]);
      return Number(r.rows[0].bytes);
    });
    const storage = stack.config.storage.primary.kind === 'local' ? stack.config.storage.primary.path : '';
    const objects = fs.readdirSync(storage, { recursive: true, withFileTypes: true }).filter((e) => e.isFile()).length;
    const scenario = `scale, ${tenants} tiny tenants`;
    return [
      benchRow(scenario, '`backup all --wait` from the CLI vs `pg_dump -Fc`, time', {
        ours: seconds,
        baseline: dumpSeconds,
        unit: 's',
        target: ratioAtMost(1.0),
        note: `${result.batch?.batches ?? 1} batches of at most ${batchTenants} tenants on one worker; ${objects} objects stored; one round`,
      }),
      benchRow(scenario, 'the run\'s history: events', { ours: Number(info.historyLength), unit: 'events', note: 'Temporal warns at 10,240 events and ends a run at 51,200 (defaults)' }),
      benchRow(scenario, 'the run\'s history: size', { ours: Number(info.historySizeBytes) / 1e3, unit: 'kB', note: 'Temporal warns at 10 MB and ends a run at 50 MB (defaults)' }),
      benchRow(scenario, 'the result (`--json`)', { ours: Buffer.byteLength(out) / 1e3, unit: 'kB', note: 'counts and the first failures, not every id' }),
      benchRow(scenario, 'catalog size after the run', { ours: catalogBytes / 1e6, unit: 'MB', note: 'tables of the catalog schema, indexes and TOAST included' }),
    ];
  } finally {
    await temporal.connection.close();
    await stack.stop();
    fs.rmSync(work, { recursive: true, force: true });
  }
}

if (require.main === module) runScenario(run);
