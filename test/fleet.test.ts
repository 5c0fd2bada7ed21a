// A fleet of databases (docs/fleet.md): three private clusters in one config, the same tenant ids
// in two of them with different data; backups, lists, a restore and schedules per database.
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { stringify } from 'yaml';
import { temporalFacts } from '../client/health';
import { databaseIds, forDatabase, parseConfig, type Config } from '../lib/config';
import { exampleDocument } from '../lib/configReference';
import { configSchema } from '../lib/configSchema';
import { Engine } from '../lib/engine';
import { tenantBackupPrefix } from '../lib/format/tenantManifest';
import { withConnection } from '../lib/pg';
import { damageTenant } from '../sample/damage';
import { ensureSampleDatabase } from '../sample/generate';
import { databaseScoped, scheduleIds, searchAttributes, workflowIds } from '../workflows/messages';
import { startWorker, type StartedWorker } from '../workers/worker';
import { liveRows } from './support/backups';
import { startSourceCluster, type SourceCluster } from './support/cluster';
import { minimal, ctx } from './support/config';
import { runCli } from './support/env';
import { checksumsOf } from './support/restore';
import { testStack } from './support/stack';

// eu and us hold the same tenant ids with different data; ap has fewer tenants
const samples = { eu: { tenants: 4, rows: 2_000 }, us: { tenants: 4, rows: 5_000 }, ap: { tenants: 3, rows: 1_500 } };
type Id = keyof typeof samples;
const ids = Object.keys(samples) as Id[];

describe('a fleet of databases', function () {
  this.timeout(240_000);
  const clusters = new Map<Id, SourceCluster>();
  let dir: string;
  let configFile: string;
  let config: Config;
  let engine: Engine;
  let worker: StartedWorker;
  let temporal: Client;
  let connection: Connection;

  before(async function () {
    const stack = await testStack();
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tenantsafe-fleet-'));
    const databases: Record<string, unknown> = {};
    for (const id of ids) {
      const source = await startSourceCluster(`unused_${id}`);
      clusters.set(id, source);
      const { url } = await ensureSampleDatabase(source.cluster.url('postgres'), 'saas', samples[id]);
      databases[id] = { database: { url } };
    }
    const document = {
      databases,
      storage: { primary: { kind: 'local', path: path.join(dir, 'backups') } },
      temporal: { address: stack.temporalAddress, namespace: stack.namespace, taskQueue: `tenantsafe-fleet-${process.pid}` },
      backup: { parallelism: 2 },
    };
    configFile = path.join(dir, 'tenantsafe.yaml');
    fs.writeFileSync(configFile, stringify(document));
    config = parseConfig(document, { env: process.env, source: configFile, baseDir: dir });
    engine = new Engine(config);
    worker = await startWorker(config, { bundle: stack.bundle });
    connection = await Connection.connect({ address: stack.temporalAddress });
    temporal = new Client({ connection, namespace: stack.namespace });
  });

  after(async () => {
    for (const id of ids) for (const s of [scheduleIds.tenantBackupsAll, scheduleIds.tenantBackup('acme')]) await temporal?.schedule.getHandle(databaseScoped(s, id)).delete().catch(() => undefined);
    await worker?.shutdown();
    await engine?.close();
    await connection?.close();
    for (const c of clusters.values()) await c.remove();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  const cli = (database: string | null, ...args: string[]) => runCli([...(database ? ['--database', database] : []), ...args, '--json'], { configFile });
  const tenantRows = (id: Id, tenantId: string) => liveRows(forDatabase(config, id), tenantId).then(checksumsOf);
  const listOf = async (id: Id) => (await engine.forDatabase(id).catalog.listBackups({})).map((b) => b.backupId).sort();

  it('reads each database as a config of its own: its URL, its catalog in it, its storage folder', () => {
    assert.deepEqual(databaseIds(config), ids);
    assert.equal(config.databaseId, 'eu', 'the config itself is its first database');
    for (const id of ids) {
      const view = forDatabase(config, id);
      assert.equal(view.databaseId, id);
      assert.equal(view.catalog.url, view.database.url);
      assert.deepEqual(view.storage.primary, { kind: 'local', path: path.join(dir, 'backups', id) });
    }
    assert.notEqual(forDatabase(config, 'eu').database.url, forDatabase(config, 'us').database.url);
  });

  it('backs up one tenant id in two databases: two workflows, two storage folders, two catalogs, each its own rows', async () => {
    const eu = await cli('eu', 'backup', 'tenant', 'globex', '--wait');
    assert.equal(eu.code, 0, eu.stderr);
    const us = await cli('us', 'backup', 'tenant', 'globex', '--wait');
    assert.equal(us.code, 0, us.stderr);
    const [a, b] = [eu.json(), us.json()];
    assert.equal(a.workflowId, 'eu/tenant-backup/globex');
    assert.equal(b.workflowId, 'us/tenant-backup/globex');
    assert.ok(b.rows > a.rows, `us's globex (${b.rows} rows) is bigger than eu's (${a.rows})`);
    for (const [id, backup] of [['eu', a], ['us', b]] as const) {
      assert.ok(fs.existsSync(path.join(dir, 'backups', id, tenantBackupPrefix('globex', backup.backupId), 'manifest.json')), `${id}'s backup is in ${id}'s folder`);
      const d = await temporal.workflow.getHandle(backup.workflowId).describe();
      assert.deepEqual(d.typedSearchAttributes.get(searchAttributes.database), id);
    }
    assert.ok(!fs.existsSync(path.join(dir, 'backups', 'us', tenantBackupPrefix('globex', a.backupId))), 'eu\'s backup is not in us\'s folder');
    assert.deepEqual(await listOf('eu'), [a.backupId]);
    assert.deepEqual(await listOf('us'), [b.backupId]);
    assert.deepEqual(await listOf('ap'), []);
  });

  it('backs up every tenant of one database and of no other', async () => {
    const before = { eu: await listOf('eu'), us: await listOf('us') };
    const all = await cli('ap', 'backup', 'all', '--wait');
    assert.equal(all.code, 0, all.stderr);
    assert.equal(all.json().succeeded, samples.ap.tenants);
    const ap = await engine.forDatabase('ap').catalog.listBackups({});
    assert.deepEqual([...new Set(ap.map((x) => x.tenantId))].sort(), ['acme', 'globex', 'initech']);
    assert.deepEqual({ eu: await listOf('eu'), us: await listOf('us') }, before);
  });

  it('lists every database\'s backups with a database column, or one database\'s with --database', async () => {
    const all = await cli(null, 'backups', 'list', '--tenant', 'globex');
    assert.equal(all.code, 0, all.stderr);
    assert.deepEqual(all.json().map((x: { database: string }) => x.database).sort(), ['ap', 'eu', 'us']);
    const us = await cli('us', 'backups', 'list', '--tenant', 'globex');
    assert.deepEqual(us.json().map((x: { database: string; backupId: string }) => [x.database, x.backupId]), [['us', (await listOf('us'))[0]]]);
  });

  it('restores a tenant in one database and leaves the same tenant in the others untouched', async () => {
    const backupId = (await listOf('eu'))[0];
    const backedUp = await tenantRows('eu', 'globex');
    await withConnection(forDatabase(config, 'eu').database.url, (c) => damageTenant(c, 'globex'));
    assert.notDeepEqual(await tenantRows('eu', 'globex'), backedUp);
    const others = { us: await tenantRows('us', 'globex'), ap: await tenantRows('ap', 'globex'), euAcme: await tenantRows('eu', 'acme') };

    const requested = await cli('eu', 'restore', 'tenant', 'globex', '--backup', backupId, '--by', 'alice');
    assert.equal(requested.code, 0, requested.stderr);
    const { restoreId, previewDigest, workflowId } = requested.json();
    assert.equal(workflowId, 'eu/tenant-restore/globex');
    const elsewhere = await cli('us', 'restore', 'status', restoreId);
    assert.notEqual(elsewhere.code, 0, 'the restore is not in us\'s catalog');
    const approved = await cli('eu', 'restore', 'approve', restoreId, '--by', 'bob', '--digest', previewDigest, '--wait');
    assert.equal(approved.code, 0, approved.stderr);
    assert.equal(approved.json().state, 'done');

    assert.deepEqual(await tenantRows('eu', 'globex'), backedUp, 'eu\'s globex is its backup again');
    assert.deepEqual({ us: await tenantRows('us', 'globex'), ap: await tenantRows('ap', 'globex'), euAcme: await tenantRows('eu', 'acme') }, others);
  });

  it('keeps a schedule per database, each starting its runs on its database', async () => {
    for (const [id, every] of [['eu', '24h'], ['us', '12h']] as const) {
      const r = await cli(id, 'schedule', 'tenant-backups', '--every', every);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.json().scheduleId, `schedule/${id}/tenant-backups`);
    }
    const own = await cli('us', 'schedule', 'tenant-backups', '--tenant', 'acme', '--every', '6h');
    assert.equal(own.code, 0, own.stderr);
    const listed = (await cli(null, 'schedule', 'list')).json() as { scheduleId: string; database?: string; every: string }[];
    const mine = listed.filter((s) => s.database).map((s) => [s.scheduleId, s.database, s.every]);
    assert.deepEqual(mine.sort(), [
      ['schedule/eu/tenant-backups', 'eu', '86400s'],
      ['schedule/us/tenant-backup/acme', 'us', '21600s'],
      ['schedule/us/tenant-backups', 'us', '43200s'],
    ]);
    const onlyUs = (await cli('us', 'schedule', 'list')).json() as { scheduleId: string }[];
    assert.deepEqual(onlyUs.map((x) => x.scheduleId).sort(), ['schedule/us/tenant-backup/acme', 'schedule/us/tenant-backups']);
    for (const id of ['eu', 'us']) {
      const d = await temporal.schedule.getHandle(`schedule/${id}/tenant-backups`).describe();
      assert.ok(d.action.type === 'startWorkflow');
      assert.equal(d.action.workflowId, `${id}/${workflowIds.tenantBackupsAll()}`);
      // us's acme has its own schedule: left out of us's all-tenants runs, not of eu's
      assert.deepEqual(d.action.args?.[0], { excludeTenants: id === 'us' ? ['acme'] : [], database: id });
    }
    // the health model judges each database by its own schedules
    const factsOf = async (id: Id) => {
      const facts = await temporalFacts(temporal, forDatabase(config, id));
      assert.ok(facts.reachable && facts.schedules, facts.error);
      // (the DR drill schedule is the namespace's, not a database's: left out)
      const { drillEveryMs: _namespace, ...own } = facts.schedules;
      return own;
    };
    assert.deepEqual(await factsOf('eu'), { tenantBackupEveryMs: 86_400_000 });
    assert.deepEqual(await factsOf('us'), { tenantBackupEveryMs: 43_200_000, perTenantEveryMs: { acme: 21_600_000 } });
    assert.deepEqual(await factsOf('ap'), {});
  });

  it('refuses a --database the config does not name, and a command about one database without it (exit 2, the ids in the HINT)', async () => {
    const before = { eu: await listOf('eu'), us: await listOf('us'), ap: await listOf('ap') };
    const bad = await cli('asia', 'backup', 'tenant', 'globex', '--wait');
    assert.equal(bad.code, 2);
    assert.match(JSON.parse(bad.stderr).error, /There is no database "asia" in the config\. HINT: Pass one of the configured ids: eu, us, ap/);
    const missing = await cli(null, 'backup', 'tenant', 'globex', '--wait');
    assert.equal(missing.code, 2);
    assert.match(JSON.parse(missing.stderr).error, /names 3 databases.*HINT: Pass --database <id>, one of: eu, us, ap\./);
    const worker = await cli('eu', 'worker');
    assert.equal(worker.code, 2);
    assert.match(JSON.parse(worker.stderr).error, /A worker serves every database of the config/);
    assert.deepEqual({ eu: await listOf('eu'), us: await listOf('us'), ap: await listOf('ap') }, before);
  });

  it('refuses disaster recovery\'s commands, which serve one database, on a config naming several (exit 2)', async () => {
    for (const args of [['failover', '--reason', 'primary lost'], ['standby', 'status'], ['drill', 'run']]) {
      const r = await cli('eu', ...args);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(JSON.parse(r.stderr).error, /Disaster recovery .* is not per database yet: .* this config names several under `databases` \(eu, us, ap\); --database does not pick one here\. HINT: Run this command with a config of that one database: `database: \{ url: \.\.\. \}` in place of `databases`/);
    }
  });

  it('runs a workflow started from the Temporal UI with {"database": "<id>"} on that database', async () => {
    const before = { eu: await listOf('eu'), ap: await listOf('ap') };
    const handle = await temporal.workflow.start('tenantBackup', { taskQueue: config.temporal.taskQueue, workflowId: `ui-started-${process.pid}`, args: [{ tenantId: 'umbrella', database: 'us' }] });
    const result = (await handle.result()) as { backupId: string; rows: number };
    const us = await engine.forDatabase('us').catalog.listBackups({ tenantId: 'umbrella' });
    assert.deepEqual(us.map((b) => [b.backupId, b.rows]), [[result.backupId, result.rows]]);
    assert.deepEqual((await handle.describe()).typedSearchAttributes.get(searchAttributes.database), 'us');
    assert.deepEqual({ eu: await listOf('eu'), ap: await listOf('ap') }, before);
  });

  it('fails a run started from the Temporal UI for a database the config does not name, as bad input', async () => {
    const handle = await temporal.workflow.start('tenantBackup', { taskQueue: config.temporal.taskQueue, workflowId: `asia/tenant-backup/globex-${process.pid}`, args: [{ tenantId: 'globex', database: 'asia' }] });
    await assert.rejects(handle.result(), (err: Error & { cause?: { cause?: unknown } }) => {
      const root = (err.cause?.cause ?? err.cause) as { type?: string; message?: string };
      assert.equal(root.type, 'BadInput');
      assert.match(String(root.message), /no database "asia".*eu, us, ap/);
      return true;
    });
  });

  it('reads a single-database config as before: no ids, ids of workflows and schedules unchanged', () => {
    const single = parseConfig(minimal, ctx);
    assert.deepEqual(single.databases, {});
    assert.equal(single.databaseId, undefined);
    assert.equal(forDatabase(single, undefined), single);
    assert.equal(databaseScoped(workflowIds.tenantBackup('acme'), undefined), 'tenant-backup/acme');
    assert.equal(databaseScoped(scheduleIds.tenantBackupsAll, undefined), 'schedule/tenant-backups');
    assert.throws(() => forDatabase(single, 'eu'), /config names one database/);
  });

  it('accepts the reference\'s example of databases in place of database', () => {
    const { database: _one, ...rest } = exampleDocument();
    const doc = { ...rest, databases: configSchema.databases.example };
    const names = new Set([...JSON.stringify(doc).matchAll(/\$\{([A-Z_]+)\}/g)].map((m) => m[1]));
    const env = Object.fromEntries([...names].map((n) => [n, n.endsWith('_URL') ? `https://hooks.example.com/${n}` : `${n.toLowerCase()}-0123456789abcdef0123456789abcdef`]));
    const cfg = parseConfig(doc, { ...ctx, env });
    assert.deepEqual(databaseIds(cfg), ['eu', 'us']);
    // the example's top-level catalog.url is one catalog server for the fleet: a schema each
    assert.deepEqual(Object.values(cfg.databases).map((v) => v.catalog.schema), ['tenantsafe_eu', 'tenantsafe_us']);
    assert.deepEqual(cfg.databases.us.tenancy.schemas, ['app', 'billing']);
  });

  it('refuses two databases sharing a catalog schema or a storage location', () => {
    const two = (extra: Record<string, unknown>) => ({ databases: { a: { database: { url: 'postgres://x@h1/db' }, ...extra }, b: { database: { url: 'postgres://x@h2/db' }, ...extra } }, storage: minimal.storage });
    assert.throws(() => parseConfig(two({ storage: { prefix: 'same' } }), ctx), /databases\.b\.storage: is the same as databases\.a's/);
    assert.throws(() => parseConfig(two({ catalog: { url: 'postgres://x@cat/c', schema: 'one' } }), ctx), /databases\.b\.catalog: is the same as databases\.a's/);
    const shared = parseConfig({ ...two({}), catalog: { url: 'postgres://x@cat/c' } }, ctx);
    assert.deepEqual(Object.values(shared.databases).map((v) => [v.catalog.url, v.catalog.schema]), [['postgres://x@cat/c', 'tenantsafe_a'], ['postgres://x@cat/c', 'tenantsafe_b']]);
    assert.throws(() => parseConfig({ ...two({}), database: { url: 'postgres://x@h/db' } }, ctx), /database: names one database; with `databases`/);
  });
});
