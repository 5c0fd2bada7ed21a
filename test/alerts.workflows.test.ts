// Pushed alerts end to end: real failures of real workflows on a worker and the Temporal dev
// server, announced to a real HTTP receiver and a real SMTP server.
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { loadConfig } from '../lib/config';
import { workflowScopes } from '../lib/databaseIdentity';
import { startWorker, type StartedWorker } from '../workers/worker';
import type { walArchiver } from '../workflows';
import { databaseWorkflowIds, workflowIds } from '../workflows/messages';
import { startSourceCluster, type SourceCluster } from './support/cluster';
import { withDb } from './support/db';
import { createTestEnv, dbPassword, runCli, type TestEnv } from './support/env';
import { startSmtpReceiver, startWebhookReceiver, type SmtpReceiver, type WebhookReceiver } from './support/receivers';
import { testStack } from './support/stack';
import { waitFor } from './support/wait';

const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The alerts section pointing at the receivers; fast retries for the test. */
function alertsConfig(webhook: WebhookReceiver, smtp: SmtpReceiver) {
  return {
    webhook: { url: webhook.url, headers: { Authorization: 'Bearer ${TEST_HOOK_TOKEN:-hook-token-789}' } },
    email: { smtp: { host: smtp.host, port: smtp.port }, from: 'tenantsafe@example.com', to: ['ops@example.com'] },
    retryInterval: '200ms',
    maxRetryInterval: '1s',
    timeout: '5s',
  };
}

/** Every payload of a workflow's history, decoded beside the raw JSON. */
async function historyText(env: TestEnv, workflowId: string, runId?: string): Promise<string> {
  const raw = JSON.stringify(await env.temporal.workflow.getHandle(workflowId, runId).fetchHistory());
  return raw + [...raw.matchAll(/"data":"([A-Za-z0-9+/=]+)"/g)].map((m) => Buffer.from(m[1], 'base64').toString('utf8')).join('\n');
}

describe('pushed alerts from tenant backups (a worker, Temporal, a real HTTP receiver and SMTP server)', function () {
  this.timeout(180_000);
  let env: TestEnv;
  let webhook: WebhookReceiver;
  let smtp: SmtpReceiver;
  let worker: StartedWorker | undefined;

  before(async () => {
    webhook = await startWebhookReceiver({ listening: false });
    smtp = await startSmtpReceiver({ failFirst: 2 });
    env = await createTestEnv('local', {
      configure: (doc, dir) => {
        doc.storage.primary.path = path.join(dir, 'store', 'backups');
        doc.temporal.uiUrl = 'http://127.0.0.1:8233';
        doc.alerts = alertsConfig(webhook, smtp);
      },
    });
  });
  after(async () => {
    await worker?.shutdown();
    await env?.close();
    await webhook?.close();
    await smtp?.close();
  });

  const backup = (tenantId: string, configFile = env.configFile) => runCli(['backup', 'tenant', tenantId, '--wait', '--json'], { configFile });
  const notices = () => ({ webhook: webhook.received.map((r) => `${r.body.tenantsafe.event} ${r.body.tenantsafe.alertKey}`), email: smtp.received.map((m) => m.subject.split(':')[0]) });

  it('a failure retried by its activity and run twice gives one webhook and one e-mail, delivered once the receivers are back; the next success one resolved notice each; a second success nothing', async () => {
    // the database unreachable: a transient failure, so the check is tried four times before the run fails
    const unreachable = env.writeConfig('unreachable.yaml', (d) => {
      d.catalog = { url: d.database.url };
      d.database.url = d.database.url.replace(/@[^/]+\//, '@127.0.0.1:1/');
    });
    const down = await startWorker(loadConfig({ path: unreachable }), { bundle: (await testStack()).bundle });
    try {
      for (let run = 1; run <= 2; run++) {
        const res = await backup('acme', unreachable);
        assert.equal(res.code, 1, res.stderr);
        // the backup's own failure, untouched by the alert (whose receivers are down)
        assert.equal(JSON.parse(res.stderr).type, 'DatabaseUnreachable');
      }
      const history = await historyText(env, workflowIds.tenantBackup('acme'));
      assert.match(history, /"attempt":4/, 'the check was retried');
      assert.ok(!history.includes(dbPassword) && !history.includes('secret-hook-path') && !history.includes('hook-token-789'), 'no secret in history');
      // the e-mail server refused twice, then took it; the webhook is not even listening
      await waitFor('the e-mail after two refusals', async () => smtp.received.length === 1);
      assert.equal(smtp.attempts, 3);
      assert.equal(webhook.received.length, 0);
      await webhook.listen();
      await waitFor('the webhook once it listens', async () => webhook.received.length === 1, { tries: 100 });
    } finally {
      await down.shutdown();
    }
    const alertKey = `tenantBackup:${env.db.name}/acme`;
    assert.deepEqual(notices(), { webhook: [`failing ${alertKey}`], email: ['[tenantsafe] FAILING'] });
    const failing = webhook.received[0].body;
    assert.equal(failing.tenantsafe.errorType, 'DatabaseUnreachable');
    assert.match(failing.tenantsafe.errorMessage, /postgres:\/\/postgres:\*\*\*@127\.0\.0\.1:1\/.* is unreachable.*HINT/);
    assert.equal(failing.tenantsafe.workflowId, 'tenant-backup/acme');
    assert.equal(failing.tenantsafe.runUrl, `http://127.0.0.1:8233/namespaces/${env.config.temporal.namespace}/workflows/tenant-backup%2Facme/${failing.tenantsafe.runId}/history`);
    assert.equal(webhook.received[0].headers.authorization, 'Bearer hook-token-789');
    assert.match(smtp.received[0].subject, /FAILING: Tenant backup of acme \(.*\) failed: DatabaseUnreachable/);

    worker = await env.startWorker();
    webhook.failNext(1); // the resolved notice needs a retry too: the backup does not wait for it
    const ok = await backup('acme');
    assert.equal(ok.code, 0, ok.stderr);
    await waitFor('the resolved notices', async () => webhook.received.length === 2 && smtp.received.length === 2);
    const resolved = webhook.received[1].body.tenantsafe;
    assert.deepEqual([resolved.event, resolved.failures, resolved.openedBy.runId], ['resolved', 2, failing.tenantsafe.runId]);
    assert.equal(smtp.received[1].headers['in-reply-to'], smtp.received[0].headers['message-id']);

    assert.equal((await backup('acme')).code, 0);
    await pause(1500);
    assert.deepEqual(notices(), { webhook: [`failing ${alertKey}`, `resolved ${alertKey}`], email: ['[tenantsafe] FAILING', '[tenantsafe] RESOLVED'] });
  });

  it('a batch of tenant backups that fails alerts once for the batch, not once per tenant, and resolves when the batch succeeds', async () => {
    worker ??= await env.startWorker();
    await webhook.listen();
    const before = webhook.received.length;
    const mailsBefore = smtp.received.length;
    // storage cannot be written: every tenant fails (not retried)
    fs.rmSync(path.join(env.dir, 'store'), { recursive: true, force: true });
    fs.writeFileSync(path.join(env.dir, 'store'), 'a file where the storage directory should be');
    const failed = await runCli(['backup', 'all', '--wait', '--json'], { configFile: env.configFile });
    assert.equal(failed.code, 1, failed.stderr);
    const tenants = env.db.tenants.length;
    assert.equal(failed.json().failed.length, tenants);
    await waitFor('the batch notice', async () => webhook.received.length === before + 1 && smtp.received.length === mailsBefore + 1);
    await pause(1500);
    assert.equal(webhook.received.length, before + 1, 'one notice for the batch');
    const body = webhook.received[before].body;
    assert.equal(body.tenantsafe.alertKey, `tenantBackupsAll:${env.db.name}`);
    assert.match(body.text, new RegExp(`FAILING: Tenant backups of ${env.db.name}: ${tenants} of ${tenants} failed`));
    assert.equal(body.tenantsafe.summary.items.length, tenants);
    assert.ok(body.tenantsafe.summary.items.every((i: { type: string }) => i.type === 'StorageUnwritable'));
    assert.match(smtp.received[mailsBefore].body, new RegExp(`Failures \\(${tenants} of ${tenants}\\):`));

    fs.rmSync(path.join(env.dir, 'store'));
    const ok = await runCli(['backup', 'all', '--wait', '--json'], { configFile: env.configFile });
    assert.equal(ok.code, 0, ok.stderr);
    await waitFor('the batch resolved', async () => webhook.received.length === before + 2 && smtp.received.length === mailsBefore + 2);
    await pause(1000);
    assert.deepEqual(
      webhook.received.slice(before).map((r) => `${r.body.tenantsafe.event} ${r.body.tenantsafe.alertKey}`),
      [`failing tenantBackupsAll:${env.db.name}`, `resolved tenantBackupsAll:${env.db.name}`],
    );
    // the tenants' own alerts were not opened by the batch
    const open = await withDb(env.db.url, (c) => c.query(`SELECT alert_key FROM tenantsafe.alerts WHERE state = 'open'`));
    assert.deepEqual(open.rows, []);
  });

  it('a failed verification of a backup alerts, and verifying it again once it is intact resolves it', async () => {
    worker ??= await env.startWorker();
    await webhook.listen();
    const taken = await backup('globex');
    assert.equal(taken.code, 0, taken.stderr);
    const { backupId } = taken.json<{ backupId: string }>();
    const prefix = path.join(env.dir, 'store', 'backups', 'tenants', 'globex', backupId);
    const object = fs.readdirSync(prefix, { recursive: true }).map(String).find((f) => /\.copy\.(gz|zst)$/.test(f))!;
    const file = path.join(prefix, object);
    const good = fs.readFileSync(file);
    const flipped = Buffer.from(good);
    flipped[flipped.length >> 1] ^= 0xff;
    fs.writeFileSync(file, flipped);
    const before = webhook.received.length;
    const mailsBefore = smtp.received.length;
    const bad = await runCli(['verify', backupId, '--json'], { configFile: env.configFile });
    assert.equal(bad.code, 1, bad.stderr);
    await waitFor('the verification notice', async () => webhook.received.length === before + 1 && smtp.received.length === mailsBefore + 1);
    const failing = webhook.received[before].body.tenantsafe;
    assert.deepEqual([failing.event, failing.alertKey, failing.errorType], ['failing', `verifyBackup:${env.db.name}/${backupId}`, 'VerificationFailed']);
    assert.match(failing.errorMessage, /failed verification: 2 problems \(checksum_mismatch 1, other 1\)/);

    fs.writeFileSync(file, good);
    const ok = await runCli(['verify', backupId, '--json'], { configFile: env.configFile });
    assert.equal(ok.code, 0, ok.stderr);
    await waitFor('the verification resolved', async () => webhook.received.length === before + 2 && smtp.received.length === mailsBefore + 2);
    assert.equal(webhook.received[before + 1].body.tenantsafe.event, 'resolved');
  });

  it('a failed restore of a tenant alerts, and the next restore of it that completes resolves it', async () => {
    worker ??= await env.startWorker();
    await webhook.listen();
    const before = webhook.received.length;
    const missing = await runCli(['restore', 'tenant', 'initech', '--backup', '20250101-000000T-nosuch', '--by', 'alice', '--json'], { configFile: env.configFile });
    assert.equal(missing.code, 2, missing.stderr);
    await waitFor('the restore notice', async () => webhook.received.length === before + 1);
    const failing = webhook.received[before].body.tenantsafe;
    assert.deepEqual([failing.event, failing.alertKey, failing.errorType], ['failing', `tenantRestore:${env.db.name}/initech`, 'BackupNotFound']);

    const taken = await backup('initech');
    assert.equal(taken.code, 0, taken.stderr);
    const preview = await runCli(['restore', 'tenant', 'initech', '--backup', taken.json().backupId, '--by', 'alice', '--json'], { configFile: env.configFile });
    assert.equal(preview.code, 0, preview.stderr);
    const { restoreId, previewDigest } = preview.json();
    const applied = await runCli(['restore', 'approve', restoreId, '--by', 'bob', '--digest', previewDigest, '--wait', '--json'], { configFile: env.configFile });
    assert.equal(applied.code, 0, applied.stderr);
    await waitFor('the restore resolved', async () => webhook.received.length === before + 2);
    assert.deepEqual(
      webhook.received.slice(before).map((r) => `${r.body.tenantsafe.event} ${r.body.tenantsafe.alertKey}`),
      [`failing tenantRestore:${env.db.name}/initech`, `resolved tenantRestore:${env.db.name}/initech`],
    );
  });

  it('refuses a config without recipients or with a malformed webhook URL: exit 2, the key named, with a HINT', async () => {
    const noTo = env.writeConfig('no-to.yaml', (d) => delete d.alerts.email.to);
    const res = await runCli(['backups', 'list', '--json'], { configFile: noTo });
    assert.equal(res.code, 2, res.stderr);
    assert.match(JSON.parse(res.stderr).error, /alerts\.email\.to: is required.*HINT:/s);
    const badUrl = env.writeConfig('bad-url.yaml', (d) => (d.alerts.webhook.url = 'hooks.example.com/T1/very-secret'));
    const worker = await runCli(['worker', '--json'], { configFile: badUrl });
    assert.equal(worker.code, 2, worker.stderr);
    assert.match(JSON.parse(worker.stderr).error, /alerts\.webhook\.url: must be an http\(s\) URL.*HINT:/s);
    assert.doesNotMatch(worker.stderr, /very-secret/);
  });
});

describe('pushed alerts from the WAL archiver (a private cluster)', function () {
  this.timeout(300_000);
  let source: SourceCluster;
  let env: TestEnv;
  let webhook: WebhookReceiver;
  let smtp: SmtpReceiver;

  before(async () => {
    webhook = await startWebhookReceiver();
    smtp = await startSmtpReceiver();
    source = await startSourceCluster();
    env = await createTestEnv('local', {
      db: source.db,
      configure: (doc, dir) => {
        doc.fullBackup = { walPartialInterval: '200ms', walSpoolDir: path.join(dir, 'spool', 'wal') };
        doc.alerts = alertsConfig(webhook, smtp);
      },
    });
  });
  after(async () => {
    const archiver = env && env.temporal.workflow.getHandle(databaseWorkflowIds.walArchiver((await workflowScopes(env.engine)).walArchiver));
    await archiver?.cancel().catch(() => undefined);
    await archiver?.result().catch(() => undefined);
    await env?.close();
    await source?.remove();
    await webhook?.close();
    await smtp?.close();
  });

  it('alerts once when a slice fails and backs off, and sends one resolved notice when archiving streams again', async () => {
    // the spool directory cannot be made: every attempt of the slice fails, then the workflow backs off
    fs.writeFileSync(path.join(env.dir, 'spool'), 'a file where the spool directory should be');
    await env.startWorker();
    const workflowId = databaseWorkflowIds.walArchiver((await workflowScopes(env.engine)).walArchiver);
    const handle = await env.temporal.workflow.start<typeof walArchiver>('walArchiver', { taskQueue: env.config.temporal.taskQueue, workflowId, args: [{ sliceMs: 3000 }] });
    await waitFor('the failing notices', async () => webhook.received.length === 1 && smtp.received.length === 1, { tries: 600 });
    const failing = webhook.received[0].body.tenantsafe;
    assert.deepEqual([failing.event, failing.alertKey, failing.workflowId], ['failing', `walArchiver:${workflowId}`, workflowId]);
    assert.match(webhook.received[0].body.text, /FAILING: WAL archiving of app failed/);
    assert.equal((await handle.query<{ state: string }>('status')).state, 'backing-off');

    fs.rmSync(path.join(env.dir, 'spool'));
    await waitFor('the resolved notices once a slice streams again', async () => webhook.received.length === 2 && smtp.received.length === 2, { tries: 1200 });
    assert.equal(webhook.received[1].body.tenantsafe.event, 'resolved');
    assert.match(smtp.received[1].subject, /RESOLVED: WAL archiving of app succeeded again/);
    // more slices stream: nothing more is sent
    await pause(5000);
    assert.equal(webhook.received.length, 2);
    assert.equal(smtp.received.length, 2);
  });
});
