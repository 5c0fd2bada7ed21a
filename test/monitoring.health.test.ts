// The health model on many tenants, and its edges: tenants judged in SQL over 20k tenants with
// only the worst named, per-tenant schedules, failures of the request itself, server-side
// paging, the change log enabled but never started, the database or the catalog out of reach,
// and the dashboard's /metrics with its token.
import { strict as assert } from 'node:assert';
import { TenantsafeClient } from '../client/client';
import { startDashboardServer } from '../client/server';
import { databaseName, parseConfig } from '../lib/config';
import { Engine } from '../lib/engine';
import { computeHealth, tenantHealthPage } from '../lib/monitoring/health';
import { withDb } from './support/db';
import { seedTenantBackups } from './support/catalogSeed';
import { createTestEnv, runCli, type TestEnv } from './support/env';
import { sampleValue, scrape } from './support/prometheus';

describe('the health model on many tenants, and its edges', function () {
  this.timeout(180_000);
  let env: TestEnv;
  let db: string;
  const sql = (text: string, params: unknown[] = []) => withDb(env.db.url, (c) => c.query(text, params));
  /** A tenant backup row `hoursAgo` old (one restore point), for a real tenant of the sample. */
  const backupRow = (tenantId: string, hoursAgo: number, n = 1) =>
    sql(
      `INSERT INTO tenantsafe.backups (backup_id, kind, tenant_id, database, storage_uri, prefix, manifest_sha256, rows, bytes, snapshot_at, lsn, started_at, finished_at, manifest)
       SELECT format('%s-%s-%s', $1::text, $2::int, i), 'tenant', $1, $3, 'file:///x', 'tenants/x/', 'x', 1, 1, now() - make_interval(hours => $2::int + i * 24), '0/0',
              now() - make_interval(hours => $2::int + i * 24), now() - make_interval(hours => $2::int + i * 24), '{}'
         FROM generate_series(0, $4::int - 1) i`,
      [tenantId, hoursAgo, db, n],
    );
  const failedRun = (tenantId: string, errorType: string, minutesAgo = 1) =>
    sql(
      `INSERT INTO tenantsafe.runs (workflow_id, run_id, workflow_type, tenant_id, status, error, error_type, database, started_at, finished_at)
       VALUES ('tenant-backup/' || $1, md5(random()::text), 'tenantBackup', $1, 'failed', $2 || ' happened. HINT: fix it.', $2, $3, now() - make_interval(mins => $4), now() - make_interval(mins => $4))`,
      [tenantId, errorType, db, minutesAgo],
    );

  before(async () => {
    env = await createTestEnv('local', { configure: (doc) => (doc.monitoring = { topTenants: 3 }) });
    db = databaseName(env.config.database.url);
    // 20,000 tenants with a fresh backup a day for five days (not in the tenant table: fresh ones are never looked up there)
    await seedTenantBackups(env.engine, { database: db, tenants: 20_000, backupsPerTenant: 5, prefix: 'bulk-', newestHoursAgo: 2 });
    // real tenants of the sample: two stale, two failing (one on its request only), three points each where due
    await backupRow('acme', 1, 3);
    await backupRow('globex', 40, 3);
    await backupRow('initech', 60, 3);
    await backupRow('umbrella', 1, 3);
    await failedRun('umbrella', 'StorageUnwritable');
    await backupRow('hooli', 1, 3);
    await failedRun('hooli', 'StorageUnwritable', 180); // followed by a backup an hour ago: not failing
    await failedRun('stark', 'DatabaseUnreachable'); // never backed up, failing
    await failedRun('nobody', 'TenantNotFound'); // asked for a tenant that does not exist
  });
  after(async () => env?.close());

  it('judges 20,000 tenants in SQL and names only the worst, worst first', async () => {
    const started = Date.now();
    const r = await computeHealth(env.engine);
    const elapsed = Date.now() - started;
    const t = r.databases[0].tenant;
    assert.equal(t.tenants, 20_006, 'bulk, acme, globex, initech, umbrella, hooli, stark; not nobody');
    assert.equal(t.failing, 2);
    assert.deepEqual(t.stale, { warning: 1, critical: 1 });
    assert.equal(t.restorePoints, 100_000 + 15);
    assert.deepEqual(t.byLevel, { ok: 20_002, warning: 1, critical: 3 });
    assert.deepEqual(t.worst.map((x) => [x.tenantId, x.level, x.failing, x.age]), [
      ['stark', 'critical', true, 'ok'],
      ['umbrella', 'critical', true, 'ok'],
      ['initech', 'critical', false, 'critical'],
    ]);
    assert.equal(t.worst[1].lastFailure?.errorType, 'StorageUnwritable');
    assert.equal(t.worst[1].lastFailure?.run?.workflowId, 'tenant-backup/umbrella');
    assert.equal(t.truncated, false);
    assert.equal(t.stalest?.tenantId, 'initech');
    const items = Object.fromEntries(r.items.map((i) => [i.id.slice(db.length + 1), i]));
    assert.equal(items['tenant/failed'].level, 'critical');
    assert.match(items['tenant/failed'].message, /^2 tenant backups failed on the latest attempt: stark \(DatabaseUnreachable: DatabaseUnreachable happened\.\), umbrella \(StorageUnwritable: StorageUnwritable happened\.\)\.$/);
    assert.equal(items['tenant/age'].level, 'critical');
    assert.match(items['tenant/age'].message, /^2 tenants older than the schedule allows .*: initech \(2d 12h old\), globex \(1d 16h old\)\.$/);
    assert.deepEqual(r.items.slice(0, 2).map((i) => i.level), ['critical', 'critical'], 'failing items first');
    assert.ok(elapsed < 5000, `${elapsed} ms`);
  });

  it('holds a tenant with its own schedule to that schedule, unless the config sets one interval for all', async () => {
    const schedules = { tenantBackupEveryMs: 86_400_000, perTenantEveryMs: { initech: 7 * 86_400_000 } };
    const temporal = { address: 'x', namespace: 'y', taskQueue: 'z', reachable: true, pollers: 1, schedules };
    const r = await computeHealth(env.engine, { temporal });
    const worst = r.databases[0].tenant.worst.map((x) => x.tenantId);
    assert.ok(!worst.includes('initech'), `initech is backed up weekly: ${worst}`);
    assert.deepEqual(r.databases[0].tenant.stale, { warning: 1, critical: 0 });
    assert.equal(r.databases[0].tenant.expected.source, 'schedule');
    const configured = parseConfig({ ...env.document, monitoring: { schedules: { tenantBackup: '24h' } } }, { env: {}, source: 'test', baseDir: env.dir });
    const engine = new Engine(configured);
    try {
      const c = await computeHealth(engine, { temporal });
      assert.deepEqual(c.databases[0].tenant.stale, { warning: 1, critical: 1 });
      assert.equal(c.databases[0].tenant.expected.source, 'config');
    } finally {
      await engine.close();
    }
  });

  it('pages tenants on the server: by id prefix, worst first or by id, with the total', async () => {
    const byId = await tenantHealthPage(env.engine, { prefix: 'bulk-0001', order: 'tenant', limit: 5, offset: 5 });
    assert.equal(byId.total, 100);
    assert.deepEqual(byId.tenants.map((t) => t.tenantId), ['bulk-000105', 'bulk-000106', 'bulk-000107', 'bulk-000108', 'bulk-000109']);
    assert.equal(byId.tenants[0].restorePoints, 5);
    const worst = await tenantHealthPage(env.engine, { limit: 4 });
    assert.equal(worst.total, 20_006);
    assert.deepEqual(worst.tenants.map((t) => t.tenantId), ['stark', 'umbrella', 'initech', 'globex']);
    const literal = await tenantHealthPage(env.engine, { prefix: 'bulk_%' });
    assert.equal(literal.total, 0, 'a prefix is matched literally');
  });

  it('warns that the change log is enabled but never started', async () => {
    const cfg = parseConfig({ ...env.document, changeLog: { enabled: true } }, { env: {}, source: 'test', baseDir: env.dir });
    const engine = new Engine(cfg);
    try {
      const r = await computeHealth(engine);
      const item = r.items.find((i) => i.id.endsWith('/changeLog/lag'))!;
      assert.equal(item.level, 'warning');
      assert.match(item.message, /never started: run `tenantsafe changelog start`/);
      assert.equal(r.databases[0].changeLog?.startedAt, null);
    } finally {
      await engine.close();
    }
  });

  it('says CRITICAL when the database does not answer, and cannot judge (exit 2) when the catalog does not', async () => {
    const deadDb = env.writeConfig('dead-db.yaml', (doc) => {
      doc.catalog = { url: doc.database.url };
      doc.database = { url: 'postgres://postgres@127.0.0.1:1/nowhere' };
    });
    const a = await runCli(['check', '--no-temporal'], { configFile: deadDb });
    assert.equal(a.code, 2, a.stdout + a.stderr);
    assert.match(a.stdout, /^TENANTSAFE CRITICAL - nowhere: \d+ critical: The database nowhere does not answer/);
    const deadCatalog = env.writeConfig('dead-catalog.yaml', (doc) => (doc.catalog = { url: 'postgres://postgres@127.0.0.1:1/nowhere' }));
    const b = await runCli(['check', '--no-temporal'], { configFile: deadCatalog });
    assert.equal(b.code, 2, b.stdout + b.stderr);
    assert.match(b.stdout, /^TENANTSAFE CRITICAL - cannot judge: /);
    const json = await runCli(['check', '--no-temporal', '--json'], { configFile: deadCatalog });
    assert.equal(json.code, 2);
    assert.equal(json.json().status, 'critical');
    const badConfig = env.writeConfig('bad.yaml', (doc) => (doc.monitoring = { warningFactor: 3, criticalFactor: 2 }));
    const c = await runCli(['check'], { configFile: badConfig });
    assert.equal(c.code, 2);
    assert.match(c.stdout, /^TENANTSAFE CRITICAL - cannot judge: Invalid config .* monitoring\.criticalFactor: must be at least warningFactor/);
  });

  it('serves the catalog-derived gauges at the dashboard\'s /metrics, behind monitoring.metricsToken', async () => {
    const cfg = parseConfig({ ...env.document, dashboard: { port: 0, token: 'dash-token' }, monitoring: { topTenants: 3, tenants: ['acme', 'bulk-000042'], metricsToken: 'metrics-token', schedules: { tenantBackup: '24h' } } }, { env: {}, source: 'test', baseDir: env.dir });
    const engine = new Engine(cfg);
    const client = await TenantsafeClient.connect(cfg.temporal);
    const server = await startDashboardServer(cfg, engine, client);
    try {
      assert.equal((await fetch(`${server.url}/metrics`)).status, 401);
      assert.equal((await fetch(`${server.url}/metrics`, { headers: { authorization: 'Bearer dash-token' } })).status, 401, 'the API token is not the metrics token');
      const s = await scrape(`${server.url}/metrics`, 'metrics-token');
      assert.equal(sampleValue(s, 'tenantsafe_health_up'), 1);
      assert.equal(sampleValue(s, 'tenantsafe_failing', { database: db, kind: 'tenant' }), 2);
      assert.equal(sampleValue(s, 'tenantsafe_tenants', { database: db, level: 'critical' }), 3);
      assert.equal(sampleValue(s, 'tenantsafe_restore_points', { database: db, kind: 'tenant' }), 100_015);
      // per-tenant series for the 3 worst and the 2 configured only, with 20,006 tenants
      assert.deepEqual(s.filter((x) => x.name === 'tenantsafe_tenant_health_status').map((x) => x.labels.tenant).sort(), ['acme', 'bulk-000042', 'initech', 'stark', 'umbrella']);
      assert.equal(sampleValue(s, 'tenantsafe_tenant_restore_points', { tenant: 'bulk-000042' }), 5);
      assert.equal(sampleValue(s, 'tenantsafe_tenant_health_status', { tenant: 'acme' }), 0);
      assert.equal(sampleValue(s, 'tenantsafe_stale', { database: db, kind: 'tenant', severity: 'warning' }), 1);
      assert.equal(sampleValue(s, 'tenantsafe_health_status', { database: db, kind: 'temporal' }), undefined);
      assert.ok(s.filter((x) => x.name.startsWith('tenantsafe_')).length < 200, 'bounded series');
    } finally {
      await server.close();
      await client.close();
      await engine.close();
    }
  });
});
