import { strict as assert } from 'node:assert';
import { Notifier, type AlertOutcome } from '../lib/alerts';
import { sanitizeMessage, webhookPayload } from '../lib/alerts/format';
import { listAlerts } from '../lib/alerts/store';
import { parseConfig } from '../lib/config';
import { Engine } from '../lib/engine';
import { ctx, minimal, problemsOf } from './support/config';
import { freshDatabase, withDb, type TestDatabase } from './support/db';
import { startSmtpReceiver, startWebhookReceiver, type SmtpReceiver, type WebhookReceiver } from './support/receivers';
import { waitFor } from './support/wait';


describe('configuration of alerts', () => {
  it('sends nothing by default, and reads a webhook, e-mail and the Temporal UI address with secrets from the environment', () => {
    assert.deepEqual(parseConfig(minimal, ctx).alerts, { webhook: null, email: null, timeoutMs: 10_000, retryIntervalMs: 5_000, maxRetryIntervalMs: 300_000, giveUpAfterMs: 86_400_000 });
    const cfg = parseConfig(
      {
        ...minimal,
        temporal: { uiUrl: 'http://temporal.internal:8233/' },
        alerts: {
          webhook: { url: '${SLACK_URL}', headers: { Authorization: 'Bearer ${HOOK_TOKEN}' } },
          email: { smtp: { host: 'smtp.example.com', user: 'alerts', password: '${SMTP_PASSWORD}' }, from: 'tenantsafe <alerts@example.com>', to: ['ops@example.com', 'dba@example.com'] },
          timeout: '5s',
          retryInterval: '1s',
          giveUpAfter: '2h',
        },
      },
      { ...ctx, env: { SLACK_URL: 'https://hooks.slack.com/services/T1/B2/xyz', HOOK_TOKEN: 'tok-123', SMTP_PASSWORD: 'mail-pw' } },
    );
    assert.equal(cfg.temporal.uiUrl, 'http://temporal.internal:8233');
    assert.deepEqual(cfg.alerts.webhook, { url: 'https://hooks.slack.com/services/T1/B2/xyz', headers: { Authorization: 'Bearer tok-123' } });
    assert.deepEqual(cfg.alerts.email, {
      smtp: { host: 'smtp.example.com', port: 587, secure: false, user: 'alerts', password: 'mail-pw' },
      from: 'tenantsafe <alerts@example.com>',
      to: ['ops@example.com', 'dba@example.com'],
    });
    assert.equal(cfg.alerts.timeoutMs, 5000);
    assert.equal(cfg.alerts.giveUpAfterMs, 7_200_000);
    assert.equal(parseConfig({ ...minimal, alerts: { email: { smtp: { host: 'h', secure: true }, from: 'a@b.example', to: 'c@d.example' } } }, ctx).alerts.email?.smtp.port, 465);
  });

  it('names every bad key of alerts, never echoing a webhook URL or a header value', () => {
    const message = problemsOf({
      ...minimal,
      temporal: { uiUrl: 'temporal:8233' },
      alerts: {
        webhook: { url: 'hooks.slack.com/services/T1/B2/topsecret', headers: { 'Bad Header': 'Bearer hunter2' } },
        email: { smtp: { port: 70000, password: 'pw' }, from: 'not-an-address' },
        retries: 3,
      },
    });
    assert.match(message, /temporal\.uiUrl: must be an http\(s\) URL/);
    assert.match(message, /alerts\.webhook\.url: must be an http\(s\) URL/);
    assert.match(message, /alerts\.webhook\.headers: must be a mapping of header names to strings/);
    assert.match(message, /alerts\.email\.smtp\.host: is required/);
    assert.match(message, /alerts\.email\.smtp\.port: must be an integer from 1 to 65535/);
    assert.match(message, /alerts\.email\.smtp\.user: is required with a password/);
    assert.match(message, /alerts\.email\.from: must be an e-mail address/);
    assert.match(message, /alerts\.email\.to: is required/);
    assert.match(message, /alerts\.retries: unknown key/);
    assert.match(message, /HINT:/);
    assert.doesNotMatch(message, /topsecret|hunter2/);
    assert.match(problemsOf({ ...minimal, alerts: { webhook: {} } }), /alerts\.webhook\.url: is required/);
    assert.match(problemsOf({ ...minimal, alerts: { email: { smtp: { host: 'h' }, from: 'a@b.example', to: [] } } }), /alerts\.email\.to: must be a list of one or more e-mail addresses/);
  });
});

describe('alert messages', () => {
  it('mask the config secrets, URL credentials and values PostgreSQL quotes from rows', () => {
    const m = sanitizeMessage(
      'connect to postgres://app:s3cret-pw@db:5432/saas failed; token=abc123 posted to https://hooks.slack.com/services/T1/B2/xyz: duplicate key value violates unique constraint "users_email_key" Key (email)=(alice@acme.example) already exists. Failing row contains (7, alice@acme.example, Alice).\nDETAIL: Key (id)=(7) is referenced',
      ['s3cret-pw', 'https://hooks.slack.com/services/T1/B2/xyz'],
    );
    assert.doesNotMatch(m, /s3cret-pw|abc123|B2\/xyz|alice@acme|Alice|DETAIL/);
    assert.match(m, /postgres:\/\/app:\*\*\*@db:5432\/saas/);
    assert.match(m, /Key \(email\)=\(…\)/);
    assert.ok(sanitizeMessage('x'.repeat(5000), []).length <= 1500);
  });
});

describe('alerts notifier (catalog, a real HTTP receiver and a real SMTP server)', function () {
  this.timeout(60_000);
  let db: TestDatabase;
  let webhook: WebhookReceiver;
  let smtp: SmtpReceiver;
  const engines: Engine[] = [];
  const notifiers: Notifier[] = [];
  /** what the notifier would log (failed attempts are expected here), kept out of the test output */
  const logged: string[] = [];

  function engineFor(alerts: Record<string, unknown>, extra: Record<string, unknown> = {}): { catalog: Engine['catalog']; alerts: Notifier } {
    const config = parseConfig(
      {
        database: { url: db.url.replace('postgres@', 'postgres:db-secret-pw@') },
        storage: { primary: { kind: 'local', path: 'backups' } },
        temporal: { namespace: 'ns1', uiUrl: 'http://127.0.0.1:8233' },
        alerts: {
          webhook: { url: webhook.url, headers: { Authorization: 'Bearer hook-token-123' } },
          email: { smtp: { host: smtp.host, port: smtp.port, user: 'alerts', password: 'smtp-pw-456' }, from: 'tenantsafe@example.com', to: ['ops@example.com'] },
          retryInterval: '100ms',
          maxRetryInterval: '300ms',
          timeout: '3s',
          ...alerts,
        },
        ...extra,
      },
      ctx,
    );
    const engine = new Engine(config);
    engines.push(engine);
    const notifier = new Notifier(config, engine.catalog, (level, message) => logged.push(`${level}: ${message}`));
    notifiers.push(notifier);
    return { catalog: engine.catalog, alerts: notifier };
  }

  const outcome = (o: Partial<AlertOutcome> & Pick<AlertOutcome, 'outcome' | 'runId'>): AlertOutcome => ({
    kind: 'tenantBackup',
    step: 'outcome',
    tenantId: 'acme',
    workflowId: 'tenant-backup/acme',
    workflowType: 'tenantBackup',
    ...o,
  });
  const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

  before(async () => {
    db = await freshDatabase();
  });
  beforeEach(async () => {
    webhook = await startWebhookReceiver();
    smtp = await startSmtpReceiver({ auth: { user: 'alerts', password: 'smtp-pw-456' } });
  });
  afterEach(async () => {
    await Promise.all(notifiers.splice(0).map((n) => n.stop()));
    await Promise.all(engines.splice(0).map((e) => e.close()));
    await webhook.close();
    await smtp.close();
    await withDb(db.url, (c) => c.query('TRUNCATE tenantsafe.alerts, tenantsafe.alert_events, tenantsafe.alert_deliveries').catch(() => undefined));
  });
  after(async () => db?.drop());

  it('sends one alert per failure however often it is reported, one resolved notice after the next success, and nothing for a second success', async () => {
    const engine = engineFor({});
    const alerts = engine.alerts;
    const failure = outcome({ outcome: 'failed', runId: 'run-1', error: { type: 'StorageUnwritable', message: 'Storage at /srv/backups is not writable. HINT: fix it.' } });
    const first = await alerts.record(failure);
    assert.deepEqual(first, { alertKey: `tenantBackup:${db.name}/acme`, duplicate: false, transition: 'opened', queued: 2 });
    // the same report again (a retried activity), then two later runs failing too
    assert.equal((await alerts.record(failure)).duplicate, true);
    assert.equal((await alerts.record({ ...failure, runId: 'run-2' })).transition, null);
    assert.equal((await alerts.record({ ...failure, runId: 'run-3' })).transition, null);
    await waitFor('the failing notice on both channels', async () => webhook.received.length === 1 && smtp.received.length === 1);

    const hook = webhook.received[0];
    assert.equal(hook.headers.authorization, 'Bearer hook-token-123');
    assert.equal(hook.headers['content-type'], 'application/json');
    // what Slack's incoming webhooks take: text, and blocks of known types
    assert.match(hook.body.text, /^:rotating_light: FAILING: Tenant backup of acme \(tenantsafe_test_\d+_\d+\) failed: StorageUnwritable: Storage at/);
    assert.deepEqual(hook.body.blocks.map((b: { type: string }) => b.type), ['header', 'section', 'section', 'context']);
    assert.ok(hook.body.blocks[1].fields.length <= 10);
    const runLink = 'http://127.0.0.1:8233/namespaces/ns1/workflows/tenant-backup%2Facme/run-1/history';
    assert.ok(hook.body.blocks[3].elements[0].text.includes(`<${runLink}|Open the run in the Temporal Web UI>`));
    assert.deepEqual(
      { ...hook.body.tenantsafe, noticeId: undefined, openedAt: undefined },
      {
        noticeId: undefined,
        openedAt: undefined,
        event: 'failing',
        alertKey: `tenantBackup:${db.name}/acme`,
        kind: 'tenantBackup',
        title: `Tenant backup of acme (${db.name})`,
        database: db.name,
        tenantId: 'acme',
        backupId: null,
        workflowId: 'tenant-backup/acme',
        runId: 'run-1',
        workflowType: 'tenantBackup',
        runUrl: runLink,
        openedBy: null,
        errorType: 'StorageUnwritable',
        errorMessage: 'Storage at /srv/backups is not writable. HINT: fix it.',
        summary: null,
        resolvedAt: null,
        failures: 1,
      },
    );
    const mail = smtp.received[0];
    assert.equal(mail.from, 'tenantsafe@example.com');
    assert.deepEqual(mail.to, ['ops@example.com']);
    assert.match(mail.subject, /^\[tenantsafe\] FAILING: Tenant backup of acme .* failed: StorageUnwritable: Storage at \/srv\/backups is not writable/);
    assert.equal(mail.headers['message-id'], `<${hook.body.tenantsafe.noticeId}@tenantsafe>`);
    assert.match(mail.body, /Workflow:\s+tenantBackup tenant-backup\/acme/);
    assert.ok(mail.body.includes(runLink));

    assert.equal((await alerts.record(outcome({ outcome: 'succeeded', runId: 'run-4' }))).transition, 'resolved');
    await waitFor('the resolved notice on both channels', async () => webhook.received.length === 2 && smtp.received.length === 2);
    const resolved = webhook.received[1].body;
    assert.match(resolved.text, /^:white_check_mark: RESOLVED: Tenant backup of acme .* succeeded again$/);
    assert.equal(resolved.tenantsafe.failures, 3);
    assert.equal(resolved.tenantsafe.runId, 'run-4');
    assert.equal(resolved.tenantsafe.openedBy.runId, 'run-1');
    assert.equal(smtp.received[1].headers['in-reply-to'], mail.headers['message-id']);

    assert.equal((await alerts.record(outcome({ outcome: 'succeeded', runId: 'run-5' }))).transition, null);
    await pause(500);
    assert.equal(webhook.received.length, 2);
    assert.equal(smtp.received.length, 2);
    const [state] = await listAlerts(engine.catalog);
    assert.deepEqual([state.state, state.failures, state.sequence], ['resolved', 3, 1]);
  });

  it('does not count a retried report twice, even when the alert changed state in between', async () => {
    const alerts = engineFor({}).alerts;
    const failure = outcome({ outcome: 'failed', runId: 'run-1', error: { message: 'boom' } });
    assert.equal((await alerts.record(failure)).transition, 'opened');
    assert.equal((await alerts.record(outcome({ outcome: 'succeeded', runId: 'run-2' }))).transition, 'resolved');
    // the first run's report arrives again (its activity timed out after it had recorded): no new alert
    assert.deepEqual(await alerts.record(failure), { alertKey: `tenantBackup:${db.name}/acme`, duplicate: true, transition: null, queued: 0 });
    await waitFor('two notices per channel', async () => webhook.received.length === 2 && smtp.received.length === 2);
    await pause(500);
    assert.deepEqual(webhook.received.map((r) => r.body.tenantsafe.event), ['failing', 'resolved']);
  });

  it('keeps trying a receiver that is down and delivers once it is back, the failing notice before the resolved one', async () => {
    await webhook.close();
    webhook = await startWebhookReceiver({ listening: false });
    smtp.failNext(2);
    const alerts = engineFor({}).alerts;
    await alerts.record(outcome({ outcome: 'failed', runId: 'run-1', error: { message: 'boom' } }));
    await alerts.record(outcome({ outcome: 'succeeded', runId: 'run-2' }));
    await waitFor('the mails after two refusals', async () => smtp.received.length === 2);
    assert.equal(smtp.attempts, 4);
    assert.deepEqual(smtp.received.map((m) => m.subject.split(':')[0]), ['[tenantsafe] FAILING', '[tenantsafe] RESOLVED']);
    await pause(700);
    assert.equal(webhook.received.length, 0);
    const pending = await withDb(db.url, (c) => c.query(`SELECT attempts, last_error FROM tenantsafe.alert_deliveries WHERE channel = 'webhook' AND status = 'pending' ORDER BY delivery_id`));
    assert.ok(pending.rows[0].attempts >= 2, 'retried');
    assert.match(pending.rows[0].last_error, /webhook not reached: ECONNREFUSED/);
    assert.doesNotMatch(pending.rows[0].last_error, /secret-hook-path/);
    await webhook.listen();
    await waitFor('the webhook notices once it listens', async () => webhook.received.length === 2);
    assert.deepEqual(webhook.received.map((r) => r.body.tenantsafe.event), ['failing', 'resolved']);
  });

  it('delivers what a stopped worker left queued from another worker, once', async () => {
    await webhook.close();
    webhook = await startWebhookReceiver({ listening: false });
    const first = engineFor({ email: undefined }).alerts;
    await first.record(outcome({ outcome: 'failed', runId: 'run-1', error: { message: 'boom' } }));
    await pause(300);
    await first.stop();
    await webhook.listen();
    const second = engineFor({ email: undefined }).alerts;
    second.start();
    await waitFor('the notice from the second worker', async () => webhook.received.length === 1);
    await pause(500);
    assert.equal(webhook.received.length, 1);
  });

  it('gives a notice up after alerts.giveUpAfter, recording why', async () => {
    webhook.failNext(1_000);
    const alerts = engineFor({ email: undefined, giveUpAfter: '1s' }).alerts;
    await alerts.record(outcome({ outcome: 'failed', runId: 'run-1', error: { message: 'boom' } }));
    await waitFor('the notice given up', async () => {
      const r = await withDb(db.url, (c) => c.query(`SELECT status, last_error FROM tenantsafe.alert_deliveries`));
      return r.rows[0]?.status === 'abandoned' && /webhook answered 503 Service Unavailable: try later/.test(r.rows[0].last_error);
    });
    assert.ok(webhook.attempts >= 2);
    assert.ok(logged.some((l) => /^error: gave up the webhook notice .* after \d+ attempts: webhook answered 503/.test(l)), logged.join('\n'));
  });

  it('keeps secrets and row values out of what it sends and stores', async () => {
    const alerts = engineFor({}).alerts;
    await alerts.record(
      outcome({
        outcome: 'failed',
        runId: 'run-1',
        error: { message: `connect to ${db.url.replace('postgres@', 'postgres:db-secret-pw@')} failed with smtp-pw-456 and hook-token-123 at ${webhook.url}: Key (email)=(alice@acme.example) exists` },
      }),
    );
    await waitFor('the notices', async () => webhook.received.length === 1 && smtp.received.length === 1);
    const stored = await withDb(db.url, async (c) => JSON.stringify((await c.query(`SELECT * FROM tenantsafe.alerts`)).rows) + JSON.stringify((await c.query(`SELECT * FROM tenantsafe.alert_deliveries`)).rows));
    for (const text of [JSON.stringify(webhook.received[0].body), smtp.received[0].raw, stored]) {
      for (const secret of ['db-secret-pw', 'smtp-pw-456', 'hook-token-123', 'secret-hook-path', 'alice@acme.example']) assert.ok(!text.includes(secret), `leaks ${secret}`);
    }
  });

  it('sums up a batch in one notice, and sends nothing at all without a channel', async () => {
    const alerts = engineFor({}).alerts;
    const items = Array.from({ length: 25 }, (_, i) => ({ id: `t${i}`, error: `Storage is not writable (${i})`, type: 'StorageUnwritable' }));
    await alerts.record({ kind: 'tenantBackupsAll', outcome: 'failed', step: 'outcome', workflowId: 'tenant-backups-all', runId: 'r1', workflowType: 'tenantBackupsAll', summary: { total: 40, failed: 25, items } });
    await waitFor('the batch notice', async () => webhook.received.length === 1 && smtp.received.length === 1);
    const body = webhook.received[0].body;
    assert.match(body.text, /FAILING: Tenant backups of .*: 25 of 40 failed/);
    assert.equal(body.tenantsafe.summary.items.length, 20);
    assert.match(JSON.stringify(body.blocks), /t19: StorageUnwritable: Storage is not writable \(19\)/);
    assert.match(JSON.stringify(body.blocks), /… and 5 more/);
    assert.match(smtp.received[0].body, /Failures \(25 of 40\):/);

    const silent = new Engine(parseConfig({ database: { url: db.url }, storage: { primary: { kind: 'local', path: 'b' } } }, ctx));
    engines.push(silent);
    assert.deepEqual(await silent.alerts.record(outcome({ outcome: 'failed', runId: 'x', error: { message: 'boom' } })), { transition: null, alertKey: null, duplicate: false, queued: 0 });
  });

  it('writes notices Slack accepts for every kind of alert', () => {
    for (const kind of ['tenantBackup', 'tenantBackupsAll', 'fullBackup', 'verifyBackup', 'verifyRecentBackups', 'walArchiver', 'changeLog', 'tenantRestore', 'applyRetention'] as const) {
      const payload = webhookPayload({
        noticeId: 'abc.1.failing',
        event: 'failing',
        alertKey: `${kind}:saas`,
        kind,
        title: `Something of saas`,
        database: 'saas',
        run: { workflowId: 'w', runId: 'r', workflowType: kind },
        error: { message: 'a <b> & c', type: 'X' },
        openedAt: '2026-01-01T00:00:00.000Z',
        failures: 1,
      });
      assert.equal(typeof payload.text, 'string');
      assert.ok((payload.text as string).length < 40_000);
      assert.match(JSON.stringify(payload.blocks), /a &lt;b&gt; &amp; c/);
      for (const block of payload.blocks as { type: string }[]) assert.ok(['header', 'section', 'context'].includes(block.type));
    }
  });
});
