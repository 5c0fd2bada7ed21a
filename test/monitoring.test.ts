// Monitoring end to end on a real stack: the health model behind `tenantsafe check` and `status`
// and the worker's /metrics, after real workflows (backups, a forced failure, a restore waiting
// for approval, a failed verification) and catalog rows made old on purpose.
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { freePorts } from '../lib/process';
import { damageTenant } from '../sample/damage';
import { withDb } from './support/db';
import { createTestEnv, runCli, type CliResult, type TestEnv } from './support/env';
import { sampleValue, scrape, type Sample } from './support/prometheus';
import { waitFor } from './support/wait';

describe('monitoring: check, status and /metrics on a real stack', function () {
  this.timeout(180_000);
  let env: TestEnv;
  let metricsUrl: string;
  let storageDir: string;
  const backups: Record<string, { backupId: string; rows: number; bytes: number; snapshotAt: string }> = {};
  const cli = (args: string[]) => runCli(args, { configFile: env.configFile });
  const check = async () => {
    const text = await cli(['check']);
    const json = await cli(['check', '--json']);
    return { code: text.code, line: text.stdout.trim(), json: json.json<{ status: string; exitCode: number; problems: { id: string; level: string; message: string; run?: { workflowId: string } }[] }>(), jsonCode: json.code };
  };
  const backup = async (tenantId: string): Promise<CliResult> => {
    const res = await cli(['backup', 'tenant', tenantId, '--wait', '--json']);
    if (res.code === 0) backups[tenantId] = res.json();
    return res;
  };
  const catalogSql = (sql: string, params: unknown[] = []) => withDb(env.db.url, (c) => c.query(sql, params));
  /** Scrapes until `probe` holds: the worker's health gauges are at most monitoring.cacheTtl old. */
  const scrapeUntil = async (what: string, probe: (s: Sample[]) => boolean): Promise<Sample[]> => {
    let last: Sample[] = [];
    await waitFor(what, async () => probe((last = await scrape(metricsUrl))), { tries: 100, intervalMs: 200 });
    return last;
  };

  before(async function () {
    this.timeout(240_000);
    const [port] = await freePorts('127.0.0.1', 1);
    env = await createTestEnv('local', {
      configure: (doc) => {
        doc.worker = { metricsPort: port };
        doc.monitoring = { cacheTtl: '300ms', approvalWait: '6s', topTenants: 5, schedules: { tenantBackup: '24h' } };
      },
    });
    storageDir = (env.config.storage.primary as { path: string }).path;
    const w = await env.startWorker();
    assert.ok(w.metricsUrl, 'worker.metricsPort set: the worker serves /metrics');
    metricsUrl = w.metricsUrl!;
  });
  after(async () => env?.close());

  it('says OK (exit 0) once every tenant it knows has a fresh backup and a worker polls', async () => {
    for (const t of ['acme', 'globex', 'initech']) assert.equal((await backup(t)).code, 0);
    const c = await check();
    assert.equal(c.code, 0, c.line);
    assert.match(c.line, /^TENANTSAFE OK - tenantsafe_test_\S+: all \d+ checks ok \(3 tenants, 0 failing, 0 stale, 0 awaiting approval\) \| tenants=3 /);
    assert.equal(c.json.status, 'ok');
    assert.deepEqual(c.json.problems, []);
    const status = await cli(['status', '--json']);
    assert.equal(status.code, 0, status.stderr);
    const report = status.json();
    assert.equal(report.level, 'ok');
    assert.equal(report.databases[0].tenant.tenants, 3);
    assert.equal(report.databases[0].tenant.restorePoints, 3);
    assert.equal(report.temporal.pollers, 1);
    assert.ok(report.items.some((i: { id: string; level: string }) => i.id.endsWith('/temporal/no-worker') && i.level === 'ok'));
  });

  it('exports what the backups measured: durations, bytes and rows as reported, and the catalog gauges', async () => {
    const s = await scrapeUntil('the gauges show three tenants', (x) => sampleValue(x, 'tenantsafe_tenants', { level: 'ok' }) === 3);
    const reported = Object.values(backups);
    assert.equal(sampleValue(s, 'tenantsafe_backup_duration_seconds_count', { kind: 'tenant' }), 3);
    assert.ok(sampleValue(s, 'tenantsafe_backup_duration_seconds_sum', { kind: 'tenant' })! > 0);
    assert.equal(sampleValue(s, 'tenantsafe_backup_bytes_total', { kind: 'tenant' }), reported.reduce((n, b) => n + b.bytes, 0));
    assert.equal(sampleValue(s, 'tenantsafe_backup_rows_total', { kind: 'tenant' }), reported.reduce((n, b) => n + b.rows, 0));
    const db = env.db.name;
    const newest = reported.map((b) => b.snapshotAt).sort().at(-1)!;
    assert.equal(sampleValue(s, 'tenantsafe_last_success_timestamp_seconds', { database: db, kind: 'tenant' }), Date.parse(newest) / 1000);
    assert.equal(sampleValue(s, 'tenantsafe_restore_points', { database: db, kind: 'tenant' }), 3);
    assert.equal(sampleValue(s, 'tenantsafe_failing', { database: db, kind: 'tenant' }), 0);
    assert.equal(sampleValue(s, 'tenantsafe_health_status', { database: db, kind: 'tenant' }), 0);
    assert.equal(sampleValue(s, 'tenantsafe_schedule_interval_seconds', { database: db, kind: 'tenant' }), 86_400);
    assert.equal(sampleValue(s, 'tenantsafe_health_up'), 1);
    assert.ok(sampleValue(s, 'process_resident_memory_bytes')! > 0, 'process metrics');
    // nothing failed and no tenant needs attention: no per-tenant series
    assert.equal(s.filter((x) => x.name === 'tenantsafe_tenant_health_status').length, 0);
  });

  it('makes a failed tenant backup CRITICAL (exit 2) with its reason and run, counted by workflow and error type', async () => {
    // storage made unwritable: a regular file where the backup directory was
    fs.renameSync(storageDir, `${storageDir}.away`);
    fs.writeFileSync(storageDir, 'not a directory\n');
    try {
      const failed = await backup('umbrella');
      assert.equal(failed.code, 1, failed.stderr);
      assert.match(failed.stderr, /StorageUnwritable|Cannot write/);
    } finally {
      fs.rmSync(storageDir);
      fs.renameSync(`${storageDir}.away`, storageDir);
    }
    const c = await check();
    assert.equal(c.code, 2, c.line);
    assert.match(c.line, /^TENANTSAFE CRITICAL - \S+: 1 critical: 1 tenant backup failed on the latest attempt: umbrella \(StorageUnwritable: Cannot write /);
    assert.equal(c.jsonCode, 2);
    const item = c.json.problems.find((p) => p.id.endsWith('/tenant/failed'))!;
    assert.equal(item.level, 'critical');
    assert.equal(item.run?.workflowId, 'tenant-backup/umbrella');
    const [run] = (await catalogSql(`SELECT run_id, error_type, database FROM tenantsafe.runs WHERE workflow_id = 'tenant-backup/umbrella'`)).rows;
    assert.equal(run.error_type, 'StorageUnwritable');
    assert.equal(run.database, env.db.name);

    const s = await scrapeUntil('the failure reaches the gauges', (x) => sampleValue(x, 'tenantsafe_failing', { kind: 'tenant' }) === 1);
    assert.equal(sampleValue(s, 'tenantsafe_failures_total', { workflow: 'tenantBackup', type: 'StorageUnwritable' }), 1);
    assert.equal(sampleValue(s, 'tenantsafe_activity_failures_total', { activity: 'checkTenantBackup', type: 'StorageUnwritable' }), 1, 'not retried: one attempt');
    assert.equal(sampleValue(s, 'tenantsafe_health_status', { kind: 'tenant' }), 2);
    assert.equal(sampleValue(s, 'tenantsafe_tenant_health_status', { tenant: 'umbrella' }), 2, 'the worst tenants get series of their own');
    assert.ok(sampleValue(s, 'tenantsafe_tenant_last_failure_timestamp_seconds', { tenant: 'umbrella' })! > Date.parse(backups.acme.snapshotAt) / 1000);
    assert.equal(sampleValue(s, 'tenantsafe_tenant_last_success_timestamp_seconds', { tenant: 'umbrella' }), undefined, 'never backed up');

    // the next backup succeeds: no longer failing
    assert.equal((await backup('umbrella')).code, 0);
    const after = await check();
    assert.equal(after.code, 0, after.line);
    await scrapeUntil('the recovery reaches the gauges', (x) => sampleValue(x, 'tenantsafe_failing', { kind: 'tenant' }) === 0 && x.every((y) => y.name !== 'tenantsafe_tenant_health_status'));
  });

  it('makes a backup older than its schedule allows a WARNING past ×1.5 and CRITICAL past ×2, and ignores tenants gone from the database', async () => {
    const age = (hours: number) => catalogSql(`UPDATE tenantsafe.backups SET snapshot_at = now() - make_interval(hours => $1) WHERE tenant_id = 'globex'`, [hours]);
    // a tenant no longer in the database, with an ancient backup: not judged
    await catalogSql(
      `INSERT INTO tenantsafe.backups (backup_id, kind, tenant_id, database, storage_uri, prefix, manifest_sha256, rows, bytes, snapshot_at, lsn, started_at, finished_at, manifest)
       VALUES ('ghost-1', 'tenant', 'ghost', $1, 'file:///x', 'tenants/ghost/x/', 'x', 1, 1, now() - interval '90 days', '0/0', now() - interval '90 days', now() - interval '90 days', '{}')`,
      [env.db.name],
    );
    try {
      await age(40);
      let c = await check();
      assert.equal(c.code, 1, c.line);
      // and, one restore point where two daily runs should have left two, below what retention promises
      assert.match(c.line, /^TENANTSAFE WARNING - \S+: 2 warning: 1 tenant older than the schedule allows \(every 1d \(config\); warning at ×1\.5, critical at ×2\): globex \(1d 16h old\)/);
      await age(50);
      c = await check();
      assert.equal(c.code, 2, c.line);
      assert.match(c.line, /^TENANTSAFE CRITICAL - \S+: 1 critical, 1 warning: 1 tenant older than the schedule allows/);
      // one restore point over two days where the policy (minCount 3, daily) promises three
      const retention = c.json.problems.find((p) => p.id.endsWith('/retention/restore-points'))!;
      assert.match(retention.message, /1 tenant with fewer restore points than the policy promises: globex \(1 of 3\)/);
      assert.ok(!c.line.includes('ghost'));
      const status = await cli(['status']);
      assert.match(status.stdout, /^CRITICAL {2}tenant backups {2}1 tenant older/m);
      assert.match(status.stdout, /^globex +critical /m);
      const s = await scrapeUntil('the age reaches the gauges', (x) => sampleValue(x, 'tenantsafe_stale', { kind: 'tenant', severity: 'critical' }) === 1);
      assert.equal(sampleValue(s, 'tenantsafe_retention_violations', { kind: 'tenant' }), 1);
      assert.equal(sampleValue(s, 'tenantsafe_tenants', { level: 'critical' }), 1);
    } finally {
      await catalogSql(`UPDATE tenantsafe.backups SET snapshot_at = $1 WHERE tenant_id = 'globex'`, [backups.globex.snapshotAt]);
      await catalogSql(`DELETE FROM tenantsafe.backups WHERE backup_id = 'ghost-1'`);
    }
    const stats = await catalogSql(`SELECT tenant_id, points, newest = $1::timestamptz AS same FROM tenantsafe.tenant_backup_stats WHERE tenant_id IN ('globex', 'ghost') ORDER BY 1`, [backups.globex.snapshotAt]);
    assert.deepEqual(stats.rows, [{ tenant_id: 'globex', points: 1, same: true }], 'the per-tenant counts follow updates and deletes');
    assert.equal((await check()).code, 0);
  });

  it('makes a restore awaiting approval longer than monitoring.approvalWait a WARNING (exit 1), gone once it is rejected', async () => {
    const requested = await cli(['restore', 'tenant', 'acme', '--backup', backups.acme.backupId, '--by', 'alice', '--json']);
    assert.equal(requested.code, 0, requested.stderr);
    const { restoreId } = requested.json();
    let c = await check();
    assert.equal(c.code, 0, `waiting less than 6 s is fine: ${c.line}`);
    assert.match(c.line, /1 awaiting approval\) \|.* pending_approvals=1/);
    await new Promise((r) => setTimeout(r, 6500));
    c = await check();
    assert.equal(c.code, 1, c.line);
    assert.match(c.line, new RegExp(`^TENANTSAFE WARNING - \\S+: 1 warning: 1 restore awaiting approval; the oldest, ${restoreId} of acme \\(requested by alice\\), for \\d+s \\(over 6s\\)`));
    const item = c.json.problems.find((p) => p.id.endsWith('/approval/pending'))!;
    assert.equal(item.run?.workflowId, 'tenant-restore/acme');
    const s = await scrapeUntil('the pending approval reaches the gauges', (x) => sampleValue(x, 'tenantsafe_pending_approvals') === 1);
    const since = sampleValue(s, 'tenantsafe_oldest_pending_approval_timestamp_seconds')!;
    assert.ok(Date.now() / 1000 - since > 6, `waiting since ${since}`);
    assert.equal(sampleValue(s, 'tenantsafe_approval_wait_limit_seconds'), 6);
    assert.equal((await cli(['restore', 'reject', restoreId, '--by', 'bob'])).code, 0);
    await waitFor('the restore is rejected', async () => (await check()).code === 0, { tries: 50, intervalMs: 200 });
  });

  it('records each step of an applied restore and the rows it changed, as the restore reported them', async () => {
    const before = await scrape(metricsUrl);
    const count = (x: Sample[], step: string) => sampleValue(x, 'tenantsafe_restore_duration_seconds_count', { step }) ?? 0;
    const rows = (x: Sample[], change: string) => sampleValue(x, 'tenantsafe_restore_rows_total', { change }) ?? 0;
    assert.equal(count(before, 'preview'), 1, 'the rejected restore was previewed once');
    assert.equal(count(before, 'apply'), 0);
    await withDb(env.db.url, (c) => damageTenant(c, 'acme'));
    const requested = await cli(['restore', 'tenant', 'acme', '--backup', backups.acme.backupId, '--by', 'alice', '--json']);
    assert.equal(requested.code, 0, requested.stderr);
    const { restoreId, previewDigest } = requested.json();
    const done = await cli(['restore', 'approve', restoreId, '--by', 'bob', '--digest', previewDigest, '--wait', '--json']);
    assert.equal(done.code, 0, done.stderr);
    const result = done.json();
    assert.equal(result.state, 'done');
    const applied = Object.values(result.applied.applied as Record<string, { insert: number; update: number; delete: number }>);
    const s = await scrape(metricsUrl);
    for (const step of ['preview', 'apply', 'verify']) assert.equal(count(s, step) - count(before, step), 1, `one ${step}`);
    for (const change of ['insert', 'update', 'delete'] as const) {
      assert.equal(rows(s, change) - rows(before, change), applied.reduce((n, t) => n + t[change], 0), `${change}d rows`);
    }
    assert.ok(rows(s, 'insert') > 0 && rows(s, 'delete') > 0);
    // the safety backup of acme is a restore point of another kind: acme still has one tenant backup
    assert.equal((await check()).code, 0);
  });

  it('shows one tenant on request: its runs with the failure, its restore points', async () => {
    const out = await cli(['status', '--tenant', 'umbrella', '--json']);
    assert.equal(out.code, 0, out.stderr);
    const t = out.json();
    assert.equal(t.known, true);
    assert.equal(t.health.level, 'ok');
    assert.deepEqual(t.runs.map((r: { status: string }) => r.status), ['completed', 'failed']);
    assert.equal(t.runs[1].errorType, 'StorageUnwritable');
    assert.deepEqual(t.restorePoints.map((p: { backupId: string }) => p.backupId), [backups.umbrella.backupId]);
    const text = await cli(['status', '--tenant', 'umbrella']);
    assert.match(text.stdout, /^Tenant umbrella: OK; newest backup /);
    assert.match(text.stdout, /failed +\S+ +StorageUnwritable: Cannot write/);
    const unknown = await cli(['status', '--tenant', 'nobody', '--json']);
    assert.equal(unknown.json().known, false);
  });

  it('makes a backup that fails verification CRITICAL, with the report, until it leaves the catalog', async () => {
    const { backupId } = backups.initech;
    const dir = path.join(storageDir, 'tenants', 'initech', backupId, 'data');
    const object = path.join(dir, fs.readdirSync(dir).sort()[0]);
    const bytes = fs.readFileSync(object);
    bytes[bytes.length >> 1] ^= 0xff;
    fs.writeFileSync(object, bytes);
    const verified = await cli(['verify', backupId, '--json']);
    assert.equal(verified.code, 1, verified.stderr);
    assert.equal(verified.json().ok, false);
    const c = await check();
    assert.equal(c.code, 2, c.line);
    assert.match(c.line, new RegExp(`1 critical: 1 backup failed verification: ${backupId} \\(`));
    const s = await scrapeUntil('the verification reaches the gauges', (x) => sampleValue(x, 'tenantsafe_verified_backups', { result: 'failed' }) === 1);
    assert.equal(sampleValue(s, 'tenantsafe_verifications_total', { kind: 'tenant', result: 'failed' }), 1);
    assert.equal(sampleValue(s, 'tenantsafe_failing', { kind: 'verification' }), 1);
    assert.ok(sampleValue(s, 'tenantsafe_verification_duration_seconds_count', { step: 'objects' })! >= 1);
    assert.equal(sampleValue(s, 'tenantsafe_health_status', { kind: 'verification' }), 2);
    // retention removes it (here: the catalog forgets it): its report no longer counts
    await env.engine.catalog.forgetBackup(backupId);
    const after = await check();
    assert.equal(after.code, 0, after.line);
  });
});
