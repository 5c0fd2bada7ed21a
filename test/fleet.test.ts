// A fleet of databases (docs/fleet.md): three private clusters in one config, the same tenant ids
// in two of them with different data; backups, lists, a restore and schedules per database.
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { parse, stringify } from 'yaml';
import { TenantsafeClient } from '../client/client';
import { startDevStack } from '../client/dev';
import { temporalFacts } from '../client/health';
import { startDashboardServer, type DashboardServer } from '../client/server';
import { databaseIds, forDatabase, parseConfig, type Config } from '../lib/config';
import { exampleDocument } from '../lib/configReference';
import { configSchema } from '../lib/configSchema';
import { workflowScopes } from '../lib/databaseIdentity';
import { Engine } from '../lib/engine';
import { fullBackupPrefix } from '../lib/format/fullManifest';
import { tenantBackupPrefix } from '../lib/format/tenantManifest';
import { withConnection } from '../lib/pg';
import { freePorts } from '../lib/process';
import { damageTenant } from '../sample/damage';
import { ensureSampleDatabase } from '../sample/generate';
import { databaseScoped, databaseWorkflowIds, scheduleIds, searchAttributes, workflowIds } from '../workflows/messages';
import { startWorker, type StartedWorker } from '../workers/worker';
import { liveRows } from './support/backups';
import { startSourceCluster, type SourceCluster } from './support/cluster';
import { minimal, ctx } from './support/config';
import { runCli } from './support/env';
import { checksumsOf } from './support/restore';
import { testStack } from './support/stack';
import { waitFor } from './support/wait';

// eu and us hold the same tenant ids with different data; ap has fewer tenants
const samples = { eu: { tenants: 4, rows: 2_000 }, us: { tenants: 4, rows: 5_000 }, ap: { tenants: 3, rows: 1_500 } };
type Id = keyof typeof samples;
const ids = Object.keys(samples) as Id[];
const readerToken = 'fleet-reader-token-0123456789abcdef';
const chromiumPath = process.env.TENANTSAFE_CHROMIUM ?? '/usr/bin/chromium';

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
      // logical: the change log (`dev` starts it for every database)
      const source = await startSourceCluster(`unused_${id}`, { wal_level: 'logical' });
      clusters.set(id, source);
      const { url } = await ensureSampleDatabase(source.cluster.url('postgres'), 'saas', samples[id]);
      databases[id] = { database: { url } };
    }
    const [metricsPort] = await freePorts('127.0.0.1', 1);
    process.env.FLEET_READER_TOKEN = readerToken;
    const document = {
      databases,
      storage: { primary: { kind: 'local', path: path.join(dir, 'backups') } },
      temporal: { address: stack.temporalAddress, namespace: stack.namespace, taskQueue: `tenantsafe-fleet-${process.pid}` },
      backup: { parallelism: 2 },
      // full backups of the private clusters (test/support/cluster.ts physicalBackups): WAL uploaded often
      fullBackup: { walPartialInterval: '200ms', walSpoolDir: path.join(dir, 'spool'), archiveWait: '30s' },
      worker: { metricsPort },
      monitoring: { cacheTtl: '200ms' },
      dashboard: { port: 0, users: { reader: { role: 'read-only', token: '${FLEET_READER_TOKEN}' } } },
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
    // the WAL archivers the full backups started
    for (const id of engine ? ids : []) {
      const scope = await workflowScopes(engine.forDatabase(id)).catch(() => null);
      if (!scope || !temporal) continue;
      const archiver = temporal.workflow.getHandle(databaseWorkflowIds.walArchiver(scope.walArchiver));
      await archiver.cancel().catch(() => undefined);
      await archiver.result().catch(() => undefined);
    }
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

  it('lists every database\'s restores and audit entries with a database column, or one database\'s with --database', async () => {
    const all = await cli(null, 'restore', 'list');
    assert.equal(all.code, 0, all.stderr);
    const rows = all.json() as { database: string; tenantId: string; state: string }[];
    assert.deepEqual(rows.map((r) => [r.database, r.tenantId, r.state]), [['eu', 'globex', 'done']]);
    assert.deepEqual((await cli('us', 'restore', 'list')).json(), [], 'us has no restore');
    const text = await runCli(['restore', 'list'], { configFile });
    assert.match(text.stdout.split('\n')[0], /^database\s+restoreId\s+tenantId/);
    const audit = (await cli(null, 'audit', 'list')).json() as { database: string; action: string }[];
    assert.ok(audit.length > 0 && audit.every((e) => e.database === 'eu'), JSON.stringify(audit));
    assert.deepEqual((await cli('ap', 'audit', 'list')).json(), []);
  });

  it('takes a full backup of each of two databases: its own workflow, storage folder and catalog; lists and PITR windows per database', async () => {
    const eu = await cli('eu', 'backup', 'full', '--wait');
    assert.equal(eu.code, 0, eu.stderr);
    const us = await cli('us', 'backup', 'full', '--wait');
    assert.equal(us.code, 0, us.stderr);
    const [a, b] = [eu.json(), us.json()];
    assert.equal(a.workflowId, 'eu/full-backup');
    assert.equal(b.workflowId, 'us/full-backup');
    for (const [id, other, backup] of [['eu', 'us', a], ['us', 'eu', b]] as const) {
      assert.ok(fs.existsSync(path.join(dir, 'backups', id, fullBackupPrefix(backup.backupId), 'manifest.json')), `${id}'s full backup is in ${id}'s folder`);
      assert.ok(!fs.existsSync(path.join(dir, 'backups', other, fullBackupPrefix(backup.backupId))), `${id}'s full backup is not in ${other}'s folder`);
      assert.deepEqual((await engine.forDatabase(id).catalog.listFullBackups()).map((x) => x.backupId), [backup.backupId], `${id}'s catalog holds its own only`);
      const listed = await cli(id, 'full-backups', 'list');
      assert.deepEqual(listed.json().map((x: { database: string; backupId: string }) => [x.database, x.backupId]), [[id, backup.backupId]]);
      const window = await cli(id, 'pitr', 'window');
      assert.equal(window.code, 0, window.stderr);
      assert.ok(window.json().earliest, `${id} is recoverable: ${window.stdout}`);
    }
    assert.deepEqual((await engine.forDatabase('ap').catalog.listFullBackups()), []);
    assert.equal((await cli('ap', 'pitr', 'window')).json().earliest, null, 'ap has no full backup: nothing recoverable');
    const all = (await cli(null, 'full-backups', 'list')).json() as { database: string; backupId: string }[];
    assert.deepEqual(all.map((x) => [x.database, x.backupId]).sort(), [['eu', a.backupId], ['us', b.backupId]]);
  });

  it('serves every database\'s metrics from the worker, each labelled by its id', async () => {
    assert.ok(worker.metricsUrl);
    type Sample = { name: string; labels: Record<string, string>; value: number };
    const scrape = async (): Promise<Sample[]> =>
      (await (await fetch(worker.metricsUrl!)).text())
        .split('\n')
        .filter((l) => l.startsWith('tenantsafe_'))
        .map((l) => {
          const m = /^(\w+)(?:\{(.*)\})? (\S+)$/.exec(l)!;
          return { name: m[1], labels: Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]])), value: Number(m[3]) };
        });
    const of = (samples: Sample[], name: string, labels: Record<string, string>) => samples.filter((x) => x.name === name && Object.entries(labels).every(([k, v]) => x.labels[k] === v)).map((x) => x.value);
    let samples: Sample[] = [];
    // a scrape serves the report at hand while the next is computed (each database's cache lives 200 ms): until each is fresh
    const fresh = () => [of(samples, 'tenantsafe_restore_points', { database: 'ap', kind: 'tenant' })[0], of(samples, 'tenantsafe_restore_points', { database: 'eu', kind: 'full' })[0], of(samples, 'tenantsafe_restore_points', { database: 'us', kind: 'full' })[0]];
    await waitFor('the gauges show each database\'s backups', async () => {
      samples = await scrape();
      return JSON.stringify(fresh()) === '[3,1,1]';
    }, { tries: 50, intervalMs: 200, state: async () => JSON.stringify(fresh()) });
    for (const id of ids) assert.deepEqual(of(samples, 'tenantsafe_health_up', { database: id }), [1], `${id}'s catalog is read`);
    assert.deepEqual([...new Set(samples.filter((x) => x.name === 'tenantsafe_health_status').map((x) => x.labels.database))].sort(), ['ap', 'eu', 'us'], 'the health gauges name the ids, not the databases\' name (all three are saas)');
    assert.deepEqual(of(samples, 'tenantsafe_restore_points', { database: 'ap', kind: 'tenant' }), [3], 'ap\'s three tenant backups');
    assert.deepEqual(of(samples, 'tenantsafe_restore_points', { database: 'eu', kind: 'full' }), [1]);
    assert.deepEqual(of(samples, 'tenantsafe_restore_points', { database: 'ap', kind: 'full' }), [0]);
    // what the worker measured, by the database each activity served
    const rows = (id: Id) => of(samples, 'tenantsafe_backup_rows_total', { kind: 'tenant', database: id });
    assert.ok(rows('us')[0] > rows('eu')[0] && rows('eu')[0] > 0, `rows by database: eu ${rows('eu')}, us ${rows('us')}`);
    assert.equal(of(samples, 'tenantsafe_backup_duration_seconds_count', { kind: 'full', database: 'us' })[0], 1);
    assert.deepEqual(of(samples, 'tenantsafe_backup_duration_seconds_count', { kind: 'full', database: 'ap' }), []);
  });

  it('serves every database on one dashboard: the overview a section each, the other pages the database picked', async () => {
    const client = await TenantsafeClient.connect(config.temporal);
    let server: DashboardServer | undefined;
    try {
      server = await startDashboardServer(config, engine, client, { log: (line) => assert.fail(`the dashboard logged: ${line}`) });
      const get = (p: string, cookie?: string) => fetch(`${server!.url}${p}`, { headers: { authorization: `Bearer ${readerToken}`, ...(cookie ? { cookie } : {}) }, redirect: 'manual' });
      const overview = await (await get('/')).text();
      for (const id of ids) assert.match(overview, new RegExp(`<article class="card \\w+" data-database="${id}">`), `the overview shows ${id}`);
      assert.match(overview, /<nav class="databases" aria-label="database">.*<a href="\/\?database=eu" data-database="eu" class="current"/s);
      const picked = await get('/tenants?database=ap');
      assert.equal(picked.status, 200);
      const cookie = picked.headers.get('set-cookie')!.split(';')[0];
      assert.equal(cookie, 'tenantsafe_database=ap');
      const tenants = await picked.text();
      assert.match(tenants, /data-database="ap" class="current"/);
      // ap's catalog knows initech (backup all); us's only globex
      assert.match(tenants, /href="\/tenants\/initech"/);
      // the cookie keeps the choice; a restore is shown from the database that holds it
      assert.match(await (await get('/tenants', cookie)).text(), /href="\/tenants\/initech"/);
      const us = await (await get('/tenants', 'tenantsafe_database=us')).text();
      assert.ok(us.includes('href="/tenants/globex"') && !us.includes('initech'), 'us\'s tenants page shows us\'s tenants');
      const [euRestore] = await engine.forDatabase('eu').catalog.listRestores({});
      const restorePage = await get(`/restores/${euRestore.restoreId}`, cookie);
      assert.equal(restorePage.status, 200);
      assert.match(await restorePage.text(), /data-database="eu" class="current"/);
      const database = await get('/databases/us');
      assert.equal(database.status, 200);
      assert.match(await database.text(), /<h1>us <span class="badge/);
      assert.equal((await get('/databases/asia')).status, 404);
      assert.equal((await get('/?database=asia')).status, 404);
      const api = await fetch(`${server.url}/api/restores/${euRestore.restoreId}`, { headers: { authorization: `Bearer ${readerToken}` } });
      assert.equal(api.status, 200);
      assert.equal(((await api.json()) as { state: string }).state, 'done');

      // in a browser, signed in: the selector switches the database, and the pages stay on it
      assert.ok(fs.existsSync(chromiumPath), `${chromiumPath} is missing: run \`npm run setup\` (it installs Debian's chromium), or set TENANTSAFE_CHROMIUM`);
      const { chromium } = require('playwright-core') as typeof import('playwright-core');
      const browser = await chromium.launch({ executablePath: chromiumPath });
      try {
        const page = await (await browser.newContext()).newPage();
        await page.goto(`${server.url}/`);
        await page.fill('#name', 'reader');
        await page.fill('#secret', readerToken);
        await Promise.all([page.waitForURL(`${server.url}/`), page.click('form.login button[type=submit]')]);
        assert.deepEqual(await page.$$eval('article.card', (cards) => cards.map((c) => c.getAttribute('data-database'))), ['eu', 'us', 'ap']);
        await Promise.all([page.waitForURL(`${server.url}/?database=ap`), page.click('nav.databases a[data-database="ap"]')]);
        assert.equal(await page.getAttribute('nav.databases a[aria-current]', 'data-database'), 'ap');
        await Promise.all([page.waitForURL(`${server.url}/tenants`), page.click('header nav a[href="/tenants"]')]);
        assert.equal(await page.getAttribute('nav.databases a[aria-current]', 'data-database'), 'ap', 'the choice is kept');
        assert.ok(await page.isVisible('a[href="/tenants/initech"]'), 'ap\'s tenants');
        await Promise.all([page.waitForURL(`${server.url}/tenants?database=us`), page.click('nav.databases a[data-database="us"]')]);
        assert.equal(await page.locator('a[href="/tenants/initech"]').count(), 0, 'us\'s tenants');
      } finally {
        await browser.close();
      }
    } finally {
      await server?.close();
      await client.close();
    }
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

  it('starts the change log of every database with `tenantsafe dev`', async () => {
    const devConfig = path.join(dir, 'dev.yaml');
    // a task queue of its own: the other worker's config does not enable the change log
    const fleetDoc = parse(fs.readFileSync(configFile, 'utf8')) as Record<string, Record<string, unknown>>;
    const doc = { ...fleetDoc, temporal: { ...fleetDoc.temporal, taskQueue: `tenantsafe-fleet-dev-${process.pid}` }, changeLog: { enabled: true, flushInterval: '200ms', replicaIdentityFull: true }, worker: { metricsPort: 0 } };
    fs.writeFileSync(devConfig, stringify(doc));
    const lines: string[] = [];
    const stack = await startDevStack({ configPath: devConfig, layout: { home: path.join(dir, 'dev') }, log: (line) => lines.push(line) });
    const changelog = (id: Id, command: string) => runCli(['--database', id, 'changelog', command, '--json'], { configFile: devConfig });
    try {
      assert.deepEqual(lines.filter((l) => l.startsWith('change log')), ids.map((id) => `change log: streaming (database ${id})`));
      const streams = new Set<string>();
      for (const id of ids) {
        // (exit 1: it warns that max_slot_wal_keep_size is unlimited on these clusters)
        const status = (await changelog(id, 'status')).json();
        assert.equal(status.streaming?.state, 'streaming', `${id}: ${JSON.stringify(status)}`);
        assert.ok(status.slot.exists, `${id}'s slot`);
        streams.add(status.workflowId);
      }
      assert.equal(streams.size, 3, 'three change logs, one per database');
    } finally {
      // stopped while the dev worker still runs them
      for (const id of ids) await changelog(id, 'stop');
      await stack.stop();
    }
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
