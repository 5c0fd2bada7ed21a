// DR drills end to end, as the schedule or an operator runs them: a private cluster holding the
// sample database, full backups and the WAL archiver, tenant backups, a worker, the CLI, and a
// real HTTP receiver for the alerts. A drill restores into a scratch cluster and passes; a base
// backup with flipped bytes makes the next one fail, recorded and alerted; neither leaves its
// scratch cluster behind; with no full backup a drill is refused as bad input.
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { computeHealth } from '../lib/monitoring/health';
import { withConnection } from '../lib/pg';
import { baseObjectOf, readFullManifest } from '../lib/format/fullManifest';
import type { DrillReport } from '../lib/dr/report';
import { ensureSampleDatabase, sampleTenants } from '../sample/generate';
import { databaseWorkflowIds } from '../workflows/messages';
import { workflowScopes } from '../lib/databaseIdentity';
import { startSourceCluster, type SourceCluster } from './support/cluster';
import { createTestEnv, runCli, type TestEnv } from './support/env';
import { startWebhookReceiver, type WebhookReceiver } from './support/receivers';
import { waitFor } from './support/wait';

describe('DR drills on a private cluster', function () {
  this.timeout(300_000);
  const sample = { tenants: 3, rows: 3_000 };
  let source: SourceCluster;
  let env: TestEnv;
  let webhook: WebhookReceiver;
  const cli = (...args: string[]) => runCli([...args, '--json'], { configFile: env.configFile, timeoutMs: 240_000 });
  const storeRoot = () => (env.config.storage.primary as { path: string }).path;
  const scratchLeft = () => fs.readdirSync(source.dir).filter((f) => f.startsWith('tenantsafe-drill-'));

  before(async () => {
    webhook = await startWebhookReceiver();
    source = await startSourceCluster('app', { track_commit_timestamp: 'on' });
    const { url } = await ensureSampleDatabase(source.cluster.url(), 'saas', sample);
    env = await createTestEnv('local', {
      db: { name: 'saas', url, tenants: sampleTenants(sample), drop: async () => undefined },
      configure: (doc, dir) => {
        doc.fullBackup = { walPartialInterval: '200ms', walSpoolDir: path.join(dir, 'spool'), archiveWait: '30s' };
        doc.verification = { scratchDir: source.dir };
        doc.dr = { targets: { rto: '60s', rpo: '5s' }, drill: { sampleTenants: 3 } };
        doc.alerts = { webhook: { url: webhook.url }, retryInterval: '200ms', maxRetryInterval: '1s', timeout: '5s' };
      },
    });
    await env.startWorker();
  });

  after(async () => {
    const archiver = env && env.temporal.workflow.getHandle(databaseWorkflowIds.walArchiver((await workflowScopes(env.engine)).walArchiver));
    await archiver?.cancel().catch(() => undefined);
    await archiver?.result().catch(() => undefined);
    await env?.close();
    await source?.remove();
    await webhook?.close();
  });

  it('refuses a drill before there is a full backup, as bad input with a hint, and records nothing', async () => {
    const res = await cli('drill', 'run', '--wait');
    assert.equal(res.code, 2, res.stdout + res.stderr);
    const err = JSON.parse(res.stderr) as { error: string; type: string };
    assert.equal(err.type, 'BackupNotFound');
    assert.match(err.error, /no full backup to drill with.*HINT: .*tenantsafe full-backup --wait/);
    assert.deepEqual(await env.engine.catalog.listDrEvents({ kind: 'drill' }), []);
  });

  it('restores the newest full backup and WAL into a scratch cluster, checks it, measures RTO and RPO, stores the report and removes the cluster', async () => {
    const full = await cli('full-backup', '--wait');
    assert.equal(full.code, 0, full.stderr);
    // a commit after the base backup: the drill must replay the archive to reach it
    await withConnection(env.db.url, (c) => c.query(`INSERT INTO app.page_views (tenant_id, path, viewed_at) SELECT tenant_id, '/after-backup', now() FROM app.tenants`));
    // the tenants' backups after it: their checksums are what the restore must hold
    for (const t of env.db.tenants) assert.equal((await cli('backup', 'tenant', t.tenantId, '--wait')).code, 0);

    const res = await cli('drill', 'run', '--wait');
    assert.equal(res.code, 0, res.stdout + res.stderr);
    const out = res.json();
    assert.equal(out.ok, true, JSON.stringify(out.problems));
    assert.equal(out.metTargets, true);
    assert.equal(out.backupId, full.json().backupId);
    assert.ok(out.rtoMs > 0 && out.rtoMs <= 60_000, `RTO ${out.rtoMs}`);
    assert.ok(out.rpoMs >= 0 && out.rpoMs <= 5_000, `RPO ${out.rpoMs}`);
    assert.deepEqual(scratchLeft(), [], 'the scratch cluster is gone');

    const report = JSON.parse(fs.readFileSync(path.join(storeRoot(), out.reportKey), 'utf8')) as DrillReport;
    assert.equal(report.source.backupId, out.backupId);
    assert.equal(report.rto.ms, out.rtoMs);
    assert.equal(report.rpo!.ms, out.rpoMs);
    assert.ok(report.timings.fetchMs > 0 && report.timings.replayMs >= 0 && report.timings.checksMs > 0);
    assert.ok(report.source.wal.segments.length >= 1 && report.source.wal.segments[0].sha256?.match(/^[0-9a-f]{64}$/));
    assert.match(report.source.manifestSha256, /^[0-9a-f]{64}$/);
    // the commit after the base backup was replayed
    assert.ok(report.restored!.lastCommitAt && report.restored!.lastCommitAt > report.source.consistentAt);
    const results = (check: string) => report.checks.filter((c) => c.check === check).map((c) => c.result);
    assert.ok(results('rows').length >= 10 && results('rows').every((r) => r === 'ok'), JSON.stringify(report.checks));
    assert.deepEqual(results('tenant'), ['ok', 'ok', 'ok']);
    assert.deepEqual(results('teardown'), ['ok']);
    const pageViews = report.checks.find((c) => c.target === 'app.page_views')!;
    assert.equal(pageViews.restored, pageViews.live);

    const page = fs.readFileSync(path.join(storeRoot(), out.htmlKey), 'utf8');
    assert.match(page, /<span class="badge" id="outcome">PASSED<\/span>/);
    assert.match(page, new RegExp(`<tr id="rto"><th>[^<]*</th><td>${(out.rtoMs / 1000).toFixed(1)} s</td><td>60.0 s</td><td class="ok">within target`));
    assert.ok(page.includes(report.source.wal.segments[0].sha256!));
    assert.doesNotMatch(page, /<script/);

    const [recorded] = await env.engine.catalog.listDrEvents({ kind: 'drill' });
    assert.equal(recorded.status, 'done');
    assert.equal(recorded.metTargets, true);
    assert.equal(recorded.rtoMs, out.rtoMs);
    assert.equal(recorded.reportKey, out.reportKey);
    assert.equal(recorded.details?.reportSha256, out.reportSha256);
    const dr = (await computeHealth(env.engine)).databases[0].dr;
    assert.equal(dr.level, 'ok');
    assert.equal(dr.lastDrill?.rtoMs, out.rtoMs);
    const shown = await cli('drill', 'show', String(recorded.details?.drillId));
    assert.equal(shown.code, 0, shown.stderr);
    assert.equal(shown.json().report.drillId, recorded.details?.drillId);
  });

  it('fails a drill whose base backup has flipped bytes, records it, alerts through the webhook, and still removes the cluster', async () => {
    const [newest] = (await env.engine.catalog.listFullBackups()).slice(-1);
    const file = path.join(storeRoot(), newest.prefix, baseObjectOf(await readFullManifest(env.engine.store, newest.prefix)).object.key);
    const bytes = fs.readFileSync(file);
    for (let i = 0; i < 64; i++) bytes[Math.floor(bytes.length / 2) + i] ^= 0xff;
    fs.writeFileSync(file, bytes);

    const res = await cli('drill', 'run', '--wait');
    assert.equal(res.code, 1, res.stdout + res.stderr);
    const out = res.json();
    assert.equal(out.ok, false);
    assert.equal(out.metTargets, false);
    assert.equal(out.rtoMs, null);
    assert.match(out.problems[0], /^restore scratch cluster: .*does not match the sha256 in its manifest/);
    assert.deepEqual(scratchLeft(), [], 'the scratch cluster is gone');

    const [recorded] = await env.engine.catalog.listDrEvents({ kind: 'drill' });
    assert.equal(recorded.status, 'failed');
    assert.equal(recorded.metTargets, false);
    assert.match(recorded.error ?? '', /sha256/);
    const report = JSON.parse(fs.readFileSync(path.join(storeRoot(), out.reportKey), 'utf8')) as DrillReport;
    assert.deepEqual(report.checks.map((c) => [c.check, c.result]), [['restore', 'failed'], ['teardown', 'ok']]);
    assert.match(fs.readFileSync(path.join(storeRoot(), out.htmlKey), 'utf8'), /id="outcome">FAILED</);

    // the health model (check, status, metrics, dashboard) judges it critical
    const health = await computeHealth(env.engine);
    assert.equal(health.databases[0].dr.level, 'critical');
    assert.equal(health.databases[0].dr.lastDrill?.drillId, recorded.details?.drillId);
    assert.match(health.items.find((i) => i.id === 'saas/dr/drill-failed')!.message, /^The latest DR drill \(.*\) failed: /);

    // the refused drill of the first test opened the alert, the passing one resolved it, this one opens it again
    const drillNotices = () => webhook.received.map((r) => r.body.tenantsafe).filter((n) => n?.kind === 'drDrill');
    await waitFor('the drill alert', async () => drillNotices().length === 3);
    assert.deepEqual(drillNotices().map((n) => `${n.event} ${n.errorType}`), ['failing BackupNotFound', 'resolved null', 'failing DrillFailed']);
    assert.match(drillNotices()[2].errorMessage, /DR drill .* failed: restore scratch cluster/);
  });
});
