// The audit log on a real stack (a worker, the Temporal dev server, a fresh database): a restore
// from its request to done and a rejected one, through the CLI, a plain Temporal signal and the
// dashboard's HTTP API, recorded with who acted and which digest; pins, unpins and a retention
// run; an append whose completion is lost (a fault injected after the commit) retried by
// Temporal and recorded once; concurrent appends from several connections in one chain; the
// chain verified, and what a superuser does to it (an altered entry, a recomputed chain, a
// removed tail) found by `audit verify`; the dashboard's /audit page in a browser.
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { ActivityInterceptorsFactory } from '@temporalio/worker';
import type { Browser } from 'playwright-core';
import { TenantsafeClient } from '../client/client';
import { startDashboardServer, type DashboardServer } from '../client/server';
import { entryHash, genesisHash, type AuditEntry } from '../lib/audit';
import { parseConfig, projectRoot, type Config } from '../lib/config';
import { Engine } from '../lib/engine';
import { damageTenant } from '../sample/damage';
import { approveSignal, type TenantRestoreResult } from '../workflows/messages';
import { withDb } from './support/db';
import { createTestEnv, runCli, type TestEnv } from './support/env';
import { waitFor } from './support/wait';

const tenantId = 'globex';
const chromiumPath = process.env.TENANTSAFE_CHROMIUM ?? '/usr/bin/chromium';
const artifacts = path.join(projectRoot, 'var', 'test-artifacts', 'dashboard');
const secrets = { ALICE_PASSWORD: 'alice-asks-for-restores', CAROL_PASSWORD: 'carol-reads-only' };

/** While armed, each appendAudit's first attempt commits, then fails as if its completion were lost: Temporal retries it. */
const faults = { armed: false, attempts: [] as { runId: string; attempt: number; duplicate: boolean }[] };
const loseFirstCompletion: ActivityInterceptorsFactory = (ctx) => ({
  inbound: {
    async execute(input, next) {
      const out = await next(input);
      if (faults.armed && ctx.info.activityType === 'appendAudit') {
        faults.attempts.push({ runId: ctx.info.workflowExecution!.runId, attempt: ctx.info.attempt, duplicate: (out as { duplicate: boolean }).duplicate });
        if (ctx.info.attempt === 1) throw new Error('the completion of this attempt was lost (injected by the test)');
      }
      return out;
    },
  },
});

describe('the audit log', function () {
  this.timeout(300_000);
  let env: TestEnv;
  let cfg: Config;
  let client: TenantsafeClient;
  let dashboardEngine: Engine;
  let server: DashboardServer;
  let backupId: string;
  /** the restore approved by bob, and its entries: the tamper test alters one */
  let approvedBy: AuditEntry;

  const cli = (...args: string[]) => runCli([...args, '--json'], { configFile: env.configFile });
  /** entries oldest first */
  const entries = async (...filter: string[]): Promise<AuditEntry[]> => {
    const r = await cli('audit', 'list', '--limit', '1000', ...filter);
    assert.equal(r.code, 0, r.stderr);
    return (r.json() as AuditEntry[]).reverse();
  };
  const ofRestore = async (restoreId: string) => (await entries('--tenant', tenantId)).filter((e) => e.subject.restoreId === restoreId);
  const brief = (e: AuditEntry) => ({ action: e.action, by: e.by, outcome: e.outcome, digest: e.digest });
  const superuser = <T>(fn: (c: import('pg').Client) => Promise<T>) => withDb(env.db.url, fn);

  before(async function () {
    this.timeout(400_000);
    env = await createTestEnv('local');
    await env.startWorker({ activityInterceptors: [loseFirstCompletion] });
    const b = await cli('backup', 'tenant', tenantId, '--wait');
    assert.equal(b.code, 0, b.stderr);
    backupId = b.json().backupId;
    cfg = parseConfig(
      {
        ...env.document,
        dashboard: { port: 0, users: { alice: { role: 'operator', password: '${ALICE_PASSWORD}' }, carol: { role: 'read-only', password: '${CAROL_PASSWORD}' } } },
      },
      { env: secrets, source: 'test', baseDir: env.dir },
    );
    dashboardEngine = new Engine(cfg);
    client = await TenantsafeClient.connect(cfg.temporal);
    server = await startDashboardServer(cfg, dashboardEngine, client, { log: (line) => assert.fail(`the dashboard logged: ${line}`) });
  });
  after(async () => {
    await server?.close();
    await client?.close();
    await dashboardEngine?.close();
    await env?.close();
  });

  async function requestRestore(by: string) {
    await withDb(env.db.url, (c) => damageTenant(c, tenantId));
    const r = await cli('restore', 'tenant', tenantId, '--backup', backupId, '--by', by);
    assert.equal(r.code, 0, r.stderr);
    const out = r.json() as { restoreId: string; previewDigest: string; workflowId: string; state: string };
    assert.equal(out.state, 'awaiting-approval');
    return out;
  }

  it('records a restore from its request to done: who asked, the refused approvals (the requester, a wrong digest), who approved which digest, the outcome', async () => {
    const requested = await requestRestore('alice');
    const digest = requested.previewDigest;
    // refused by the CLI before any signal: the CLI records it
    const self = await cli('restore', 'approve', requested.restoreId, '--by', 'alice', '--digest', digest);
    assert.equal(self.code, 2);
    // a service signalling a wrong digest straight to the workflow: the workflow records it
    await env.temporal.workflow.getHandle(requested.workflowId).signal(approveSignal, { by: 'mallory', digest: 'f'.repeat(64) });
    await waitFor('the refused signal recorded', async () => (await ofRestore(requested.restoreId)).some((e) => e.by === 'mallory'));
    const approved = await cli('restore', 'approve', requested.restoreId, '--by', 'bob', '--digest', digest, '--wait');
    assert.equal(approved.code, 0, approved.stderr);
    const done = approved.json() as TenantRestoreResult;
    assert.equal(done.state, 'done');

    const log = await ofRestore(requested.restoreId);
    assert.deepEqual(log.map(brief), [
      { action: 'restore.request', by: 'alice', outcome: 'accepted', digest: null },
      { action: 'restore.preview', by: 'tenantsafe', outcome: 'awaiting-approval', digest },
      { action: 'restore.approve', by: 'alice', outcome: 'refused', digest },
      { action: 'restore.approve', by: 'mallory', outcome: 'refused', digest: 'f'.repeat(64) },
      { action: 'restore.approve', by: 'bob', outcome: 'accepted', digest },
      { action: 'restore.outcome', by: 'tenantsafe', outcome: 'done', digest },
    ]);
    const [request, preview, selfApproval, wrongDigest, approval, outcome] = log;
    assert.equal(request.details.backupId, backupId);
    assert.equal(preview.subject.backupId, backupId);
    assert.match(String(selfApproval.details.reason), /alice requested restore .* cannot approve it \(four-eyes\)/);
    assert.equal(selfApproval.details.via, 'cli');
    assert.match(String(wrongDigest.details.reason), /Digest f+ is not the current preview's/);
    assert.equal(outcome.details.safetyBackupId, done.safetyBackupId);
    assert.deepEqual(outcome.details.approvedBy, ['bob']);
    assert.equal(outcome.details.verified, true);
    for (const e of [request, preview, wrongDigest, approval, outcome]) assert.equal(e.details.workflowId, requested.workflowId, `${e.action} names its run`);
    assert.ok(log.every((e, i) => i === 0 || (e.seq > log[i - 1].seq && e.at >= log[i - 1].at)), 'numbered and timed in order');
    approvedBy = approval;
  });

  it('records a rejected restore: a requester refused over the HTTP API, the rejection with its reason, then the outcome', async () => {
    const requested = await requestRestore('alice');
    // the preview's entry is appended just after the preview shows: the refusal comes after it
    await waitFor('the preview in the audit log', async () => (await ofRestore(requested.restoreId)).some((e) => e.action === 'restore.preview'));
    const self = await fetch(`${server.url}/api/restores/${requested.restoreId}/approve`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Basic ${Buffer.from(`alice:${secrets.ALICE_PASSWORD}`).toString('base64')}` },
      body: JSON.stringify({ digest: requested.previewDigest }),
    });
    assert.equal(self.status, 409);
    const rejected = await cli('restore', 'reject', requested.restoreId, '--by', 'carol', '--reason', 'wrong backup');
    assert.equal(rejected.code, 0, rejected.stderr);
    const r = await env.engine.catalog.getRestore(requested.restoreId);
    assert.equal((await env.temporal.workflow.getHandle<() => Promise<TenantRestoreResult>>(r.workflowId, r.runId).result()).state, 'rejected');

    const log = await ofRestore(requested.restoreId);
    assert.deepEqual(log.map(brief), [
      { action: 'restore.request', by: 'alice', outcome: 'accepted', digest: null },
      { action: 'restore.preview', by: 'tenantsafe', outcome: 'awaiting-approval', digest: requested.previewDigest },
      { action: 'restore.approve', by: 'alice', outcome: 'refused', digest: requested.previewDigest },
      { action: 'restore.reject', by: 'carol', outcome: 'accepted', digest: requested.previewDigest },
      { action: 'restore.outcome', by: 'tenantsafe', outcome: 'rejected', digest: requested.previewDigest },
    ]);
    assert.equal(log[2].details.via, 'api');
    assert.equal(log[3].details.reason, 'wrong backup');
    assert.deepEqual([log[4].details.rejectedBy, log[4].details.reason], ['carol', 'wrong backup']);
  });

  it("records pins and unpins with the backup's tenant, and a retention run as one entry with its counts (a dry run records nothing)", async () => {
    assert.equal((await cli('backups', 'pin', backupId, '--reason', 'LEGAL-42', '--by', 'dana')).code, 0);
    assert.equal((await cli('backups', 'unpin', backupId, '--by', 'erin')).code, 0);
    const notPinned = await cli('backups', 'unpin', backupId, '--by', 'erin');
    assert.equal(notPinned.code, 2, 'nothing to unpin: nothing recorded');
    const pins = (await entries()).filter((e) => e.action.startsWith('backup.'));
    assert.deepEqual(
      pins.map((e) => [e.action, e.by, e.subject.backupId, e.subject.tenantId, e.details.reason ?? null]),
      [
        ['backup.pin', 'dana', backupId, tenantId, 'LEGAL-42'],
        ['backup.unpin', 'erin', backupId, tenantId, null],
      ],
    );

    const before = (await entries('--action', 'retention.delete')).length;
    assert.equal((await cli('retention', 'apply', '--dry-run', '--by', 'frank')).code, 0);
    assert.equal((await entries('--action', 'retention.delete')).length, before, 'a dry run deletes nothing and records nothing');
    const applied = await cli('retention', 'apply', '--by', 'frank');
    assert.equal(applied.code, 0, applied.stderr);
    const [run] = (await entries('--action', 'retention.delete')).slice(before);
    assert.equal(run.by, 'frank');
    assert.equal(run.outcome, 'done');
    assert.equal(run.details.removedBackups, applied.json().removedBackups.length);
    assert.equal(typeof run.details.removedWalSegments, 'number');
  });

  it('appends once when Temporal retries an append whose completion was lost after it committed', async () => {
    faults.armed = true;
    let out;
    try {
      out = await cli('retention', 'apply', '--by', 'grace');
    } finally {
      faults.armed = false;
    }
    assert.equal(out.code, 0, out.stderr);
    const [run] = (await entries('--action', 'retention.delete')).filter((e) => e.by === 'grace');
    const attempts = faults.attempts.filter((a) => a.runId === run.details.runId);
    assert.deepEqual(
      attempts.map((a) => [a.attempt, a.duplicate]),
      [
        [1, false],
        [2, true],
      ],
      'the first attempt appended, its retry found the entry',
    );
    assert.equal((await entries()).filter((e) => e.details.runId === run.details.runId).length, 1);
    assert.equal((await cli('audit', 'verify')).code, 0);
  });

  it('keeps one unbroken chain, numbered without gaps, under concurrent appends from several connections', async () => {
    const engines = Array.from({ length: 4 }, () => new Engine(env.config));
    const before = (await env.engine.audit.verify()).entries;
    try {
      await Promise.all(
        engines.flatMap((e, i) => Array.from({ length: 25 }, (_, j) => e.audit.append({ action: 'backup.pin', by: `worker-${i}-${j}`, subject: { backupId: `concurrent-${i}-${j}` }, outcome: 'done' }))),
      );
    } finally {
      await Promise.all(engines.map((e) => e.close()));
    }
    const v = await env.engine.audit.verify();
    assert.equal(v.ok, true, JSON.stringify(v.broken));
    assert.equal(v.entries, before + 100);
    assert.equal(v.head?.seq, v.entries, 'numbered 1..n without a gap');
    const added = (await env.engine.audit.list({ limit: 100 })).reverse();
    assert.equal(new Set(added.map((e) => e.by)).size, 100, 'every append once');
    assert.ok(added.every((e, i) => i === 0 || (e.prevHash === added[i - 1].hash && e.at >= added[i - 1].at)));
  });

  it('verifies the chain, and names the entry a superuser altered (exit 1); a recomputed chain and a removed tail show against the anchor in storage', async () => {
    const verify = async () => {
      const r = await cli('audit', 'verify');
      return { code: r.code, out: JSON.parse(r.stdout) as { ok: boolean; entries: number; broken: { seq: number; problem: string } | null; anchor: { status: string; seq?: number } } };
    };
    const ok = await verify();
    assert.equal(ok.code, 0);
    assert.equal(ok.out.ok, true);
    assert.equal(ok.out.anchor.status, 'matches');
    assert.equal(ok.out.anchor.seq, ok.out.entries);
    const human = await runCli(['audit', 'verify'], { configFile: env.configFile });
    assert.match(human.stdout, new RegExp(`^Audit log OK: ${ok.out.entries} entries, chain unbroken`));

    // the triggers refuse changes, in every session
    const k = approvedBy.seq;
    for (const sql of [`UPDATE tenantsafe.audit_log SET actor = 'mallory' WHERE seq = ${k}`, `DELETE FROM tenantsafe.audit_log WHERE seq = ${k}`, 'TRUNCATE tenantsafe.audit_log']) {
      await assert.rejects(superuser((c) => c.query(sql)), /the audit log is append-only/, sql);
    }
    await assert.rejects(superuser(async (c) => {
      await c.query(`SET session_replication_role = replica`);
      await c.query(`UPDATE tenantsafe.audit_log SET actor = 'mallory' WHERE seq = ${k}`);
    }), /append-only/, 'replica mode does not skip them');

    // a superuser disables them and changes who approved
    const tamper = (sql: string) =>
      superuser(async (c) => {
        await c.query('ALTER TABLE tenantsafe.audit_log DISABLE TRIGGER audit_log_no_change');
        try {
          await c.query(sql);
        } finally {
          await c.query('ALTER TABLE tenantsafe.audit_log ENABLE ALWAYS TRIGGER audit_log_no_change');
        }
      });
    await tamper(`UPDATE tenantsafe.audit_log SET actor = 'mallory' WHERE seq = ${k}`);
    const altered = await verify();
    assert.equal(altered.code, 1);
    assert.deepEqual(altered.out.broken, { seq: k, problem: 'its hash does not match its contents: it was altered after it was written' });
    assert.match((await runCli(['audit', 'verify'], { configFile: env.configFile })).stdout, new RegExp(`^Audit log BROKEN at entry ${k}: its hash does not match its contents`));

    // the dashboard shows it (a server of its own: a page's check is reused for 30 s)
    const second = await startDashboardServer(cfg, dashboardEngine, client);
    try {
      const page = await (await fetch(`${second.url}/audit?action=restore.approve`, { headers: { authorization: `Basic ${Buffer.from(`carol:${secrets.CAROL_PASSWORD}`).toString('base64')}` } })).text();
      assert.match(page, new RegExp(`data-chain="broken" data-broken="${k}"`));
      assert.match(page, new RegExp(`<tr data-seq="${k}" class="critical">`));
      assert.match(page, /Chain BROKEN at entry/);
    } finally {
      await second.close();
    }

    // a thorough one recomputes every hash from there on: the chain holds, the anchor does not
    const recompute = async () => {
      const rows = (await superuser((c) => c.query(`SELECT seq FROM tenantsafe.audit_log WHERE seq >= ${k - 1} ORDER BY seq`))).rows;
      const all = (await env.engine.audit.list({ limit: 100_000 })).reverse();
      let prev = all.find((e) => e.seq === k - 1)?.hash ?? genesisHash;
      const statements: string[] = [];
      for (const e of all.filter((x) => x.seq >= k)) {
        const hash = entryHash(prev, e);
        statements.push(`UPDATE tenantsafe.audit_log SET prev_hash = '${prev}', hash = '${hash}' WHERE seq = ${e.seq}`);
        prev = hash;
      }
      assert.ok(rows.length > 1);
      await tamper(statements.join(';\n'));
    };
    await recompute();
    const recomputed = await verify();
    assert.equal(recomputed.code, 1);
    assert.equal(recomputed.out.anchor.status, 'differs');
    assert.equal(recomputed.out.broken?.seq, recomputed.out.anchor.seq);
    assert.match(recomputed.out.broken!.problem, /not the one anchored in storage .*recomputed/);

    // put back as it was: the same contents give the same hashes
    await tamper(`UPDATE tenantsafe.audit_log SET actor = 'bob' WHERE seq = ${k}`);
    await recompute();
    assert.equal((await verify()).code, 0);

    // the newest entry removed: the chain alone cannot tell, the anchor can
    // (its time as text: a Date would lose the microseconds the hash covers)
    const last = (await superuser((c) => c.query(`SELECT *, at::text AS at_text FROM tenantsafe.audit_log ORDER BY seq DESC LIMIT 1`))).rows[0];
    await tamper(`DELETE FROM tenantsafe.audit_log WHERE seq = ${last.seq}`);
    const truncated = await verify();
    assert.equal(truncated.code, 1);
    assert.equal(truncated.out.anchor.status, 'beyond-end');
    assert.equal(truncated.out.broken?.seq, Number(last.seq));
    assert.match(truncated.out.broken!.problem, /removed from its end/);
    await superuser((c) =>
      c.query(
        `INSERT INTO tenantsafe.audit_log (seq, at, actor, action, subject, digest, outcome, details, idempotency_key, prev_hash, hash) VALUES ($1, $2::timestamptz, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
        [last.seq, last.at_text, last.actor, last.action, last.subject, last.digest, last.outcome, last.details, last.idempotency_key, last.prev_hash, last.hash],
      ),
    );
    assert.equal((await verify()).code, 0);
  });

  it('shows the entries on the dashboard, newest first, filtered by action, with the chain marked unbroken', async () => {
    assert.ok(fs.existsSync(chromiumPath), `${chromiumPath} is missing: run \`npm run setup\` (it installs Debian's chromium), or set TENANTSAFE_CHROMIUM`);
    const { chromium } = require('playwright-core') as typeof import('playwright-core');
    const browser: Browser = await chromium.launch({ executablePath: chromiumPath });
    try {
      fs.mkdirSync(artifacts, { recursive: true });
      const page = await (await browser.newContext({ viewport: { width: 1400, height: 900 } })).newPage();
      await page.goto(`${server.url}/login?next=/audit`);
      await page.fill('#name', 'carol');
      await page.fill('#secret', secrets.CAROL_PASSWORD);
      await Promise.all([page.waitForURL(`${server.url}/audit`), page.click('form.login button[type=submit]')]);
      assert.equal(await page.getAttribute('section.chain', 'data-chain'), 'ok');
      assert.match((await page.textContent('section.chain h1'))!, /Chain unbroken: \d+ entries/);
      const seqs = await page.locator('table.audit tbody tr').evaluateAll((rows) => rows.map((r) => Number(r.getAttribute('data-seq'))));
      assert.ok(seqs.length === 50 && seqs.every((s, i) => i === 0 || s < seqs[i - 1]), 'a page of 50, newest first');
      await page.selectOption('#action', 'restore.approve');
      await Promise.all([page.waitForURL(/\/audit\?.*action=restore\.approve/), page.click('form.audit-filter button')]);
      const rows = page.locator('table.audit tbody tr');
      assert.equal(await rows.count(), 4, 'two refused approvals of the first restore, bob\'s, and alice\'s over the API');
      const bob = page.locator(`tr[data-seq="${approvedBy.seq}"]`);
      assert.equal(await bob.locator('td.by').textContent(), 'bob');
      assert.equal(await bob.locator('code.digest').getAttribute('title'), approvedBy.digest);
      assert.equal(await bob.locator('a.tenant').textContent(), tenantId);
      await page.screenshot({ path: path.join(artifacts, 'audit-log.png'), fullPage: true });
    } finally {
      await browser.close();
    }
  });

  it('refuses a filter that is not an action or a time, with exit 2 and a HINT, before connecting', async () => {
    const broken = env.writeConfig('unreachable.yaml', (doc) => (doc.database.url = 'postgres://nobody@127.0.0.1:1/nothing'));
    const action = await runCli(['audit', 'list', '--action', 'restore.approved', '--json'], { configFile: broken });
    assert.equal(action.code, 2, action.stderr);
    assert.match(JSON.parse(action.stderr).error, /"restore.approved" is not an audit action\. HINT: Use one of restore\.request/);
    const since = await runCli(['audit', 'list', '--since', 'yesterday'], { configFile: broken });
    assert.equal(since.code, 2);
    assert.match(since.stderr, /"yesterday" is not an ISO-8601 time with a time zone\. HINT:/);
  });
});
