// The dashboard on a real stack (a worker, the Temporal dev server, a fresh database): a tenant
// backup that really failed, a verification that really ran, restores really waiting for
// approval. Over plain HTTP: what is refused (no or forged credentials, a read-only user, a forged
// or replayed form, a huge address, an unknown tenant) and that nothing changed. In a browser
// (playwright-core driving Debian's chromium, installed by scripts/setup.sh; missing, the tests
// fail): the failed backup highlighted with its reason and Temporal link, a read-only user who
// cannot approve, the requester refused, a second operator approving and seeing the restore
// complete, a verification report read and downloaded. Screenshots: var/test-artifacts/dashboard/.
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { TenantsafeClient } from '../client/client';
import { verifyBackupNow } from '../client/fullBackups';
import { startDashboardServer, type DashboardServer } from '../client/server';
import { parseConfig, projectRoot, type Config } from '../lib/config';
import { Engine } from '../lib/engine';
import { pinBackup } from '../lib/retention/pins';
import { hashPassword } from '../lib/secretHash';
import { damageTenant } from '../sample/damage';
import { withDb } from './support/db';
import { createTestEnv, type TestEnv } from './support/env';
import { waitFor } from './support/wait';

const chromiumPath = process.env.TENANTSAFE_CHROMIUM ?? '/usr/bin/chromium';
const artifacts = path.join(projectRoot, 'var', 'test-artifacts', 'dashboard');
const uiUrl = 'http://127.0.0.1:8233';
const secrets = { BOB_PASSWORD: 'bob-the-second-operator', CAROL_PASSWORD: 'carol-reads-only', DORA_TOKEN: 'dora-read-only-token-0123' };

describe('the dashboard on a real stack', function () {
  this.timeout(300_000);
  let env: TestEnv;
  let cfg: Config;
  let engine: Engine;
  let client: TenantsafeClient;
  let server: DashboardServer;
  let acmeBackupId: string;
  /** restores waiting for approval, requested by alice: one for the browser, one for the HTTP checks */
  const restores: Record<'globex' | 'initech', { restoreId: string; digest: string; workflowId: string }> = {} as never;

  const restoreState = async (tenant: 'globex' | 'initech') => (await client.restores.status({ workflowId: restores[tenant].workflowId })).state;

  before(async function () {
    this.timeout(400_000);
    env = await createTestEnv('local', {
      configure: (doc) => {
        doc.temporal.uiUrl = uiUrl;
        doc.monitoring = { schedules: { tenantBackup: '24h' } };
      },
    });
    await env.startWorker();
    cfg = parseConfig(
      {
        ...env.document,
        dashboard: {
          port: 0,
          users: {
            alice: { role: 'operator', password: await hashPassword('alice-requests-restores', 10) },
            bob: { role: 'operator', password: '${BOB_PASSWORD}' },
            carol: { role: 'read-only', password: '${CAROL_PASSWORD}' },
            dora: { role: 'read-only', token: '${DORA_TOKEN}' },
          },
        },
      },
      { env: secrets, source: 'test', baseDir: env.dir },
    );
    engine = new Engine(cfg);
    client = await TenantsafeClient.connect(cfg.temporal);

    acmeBackupId = (await client.backupTenant('acme', { wait: true })).backupId;
    const verified = await verifyBackupNow(client, acmeBackupId);
    assert.ok(verified.ok, JSON.stringify(verified.checks));
    // a second restore point for acme's trend and timeline, the first pinned
    await client.backupTenant('acme', { wait: true });
    await pinBackup(env.engine.store, { backupId: acmeBackupId, reason: 'legal hold TICKET-7', by: 'carol', at: new Date().toISOString() });
    // a real failure: the storage directory replaced by a file while umbrella is backed up
    const storageDir = (env.config.storage.primary as { path: string }).path;
    fs.renameSync(storageDir, `${storageDir}.away`);
    fs.writeFileSync(storageDir, 'not a directory\n');
    try {
      await assert.rejects(client.backupTenant('umbrella', { wait: true }), /Cannot write|StorageUnwritable/);
    } finally {
      fs.rmSync(storageDir);
      fs.renameSync(`${storageDir}.away`, storageDir);
    }
    for (const tenantId of ['globex', 'initech'] as const) {
      const backupId = (await client.backupTenant(tenantId, { wait: true })).backupId;
      await withDb(env.db.url, (c) => damageTenant(c, tenantId));
      const requested = await client.restores.request({ tenantId, backupId, requestedBy: 'alice' });
      assert.equal(requested.state, 'awaiting-approval', requested.error);
      restores[tenantId] = { restoreId: requested.restoreId, digest: requested.previewDigest!, workflowId: requested.workflowId };
    }
    server = await startDashboardServer(cfg, engine, client, { log: (line) => assert.fail(`the dashboard logged: ${line}`) });
  });

  after(async () => {
    await server?.close();
    await client?.close();
    await engine?.close();
    await env?.close();
  });

  describe('over HTTP', () => {
    const get = (p: string, headers: Record<string, string> = {}) => fetch(`${server.url}${p}`, { headers, redirect: 'manual' });
    const basic = (user: string, pw: string) => ({ authorization: `Basic ${Buffer.from(`${user}:${pw}`).toString('base64')}` });
    const post = (p: string, form: Record<string, string>, headers: Record<string, string> = {}) =>
      fetch(`${server.url}${p}`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers }, body: new URLSearchParams(form).toString(), redirect: 'manual' });
    const bob = basic('bob', secrets.BOB_PASSWORD);
    const formOf = async (p: string, headers: Record<string, string>, action: string) => {
      const page = await (await get(p, headers)).text();
      const form = new RegExp(`<form method="post" action="([^"]*/${action})"[^>]*>\\s*<input type="hidden" name="digest" value="([0-9a-f]{64})">\\s*<input type="hidden" name="csrf" value="([^"]*)">`).exec(page);
      assert.ok(form, `no ${action} form on ${p}`);
      return { action: form[1], digest: form[2], csrf: form[3] };
    };

    it('answers 401 without credentials or with forged ones, on pages and the API, and shows no secret', async () => {
      const page = await get('/');
      assert.equal(page.status, 401);
      const body = await page.text();
      assert.match(body, /<form method="post" action="\/login"/);
      for (const s of Object.values(secrets)) assert.ok(!body.includes(s));
      assert.equal((await get('/', { authorization: 'Bearer forged-token-0123456789' })).status, 401);
      assert.equal((await get('/', basic('bob', 'wrong'))).status, 401);
      assert.equal((await get('/', { cookie: 'tenantsafe_session=eyJ1IjoiYm9iIn0.forged' })).status, 401);
      assert.equal((await get(`/api/restores/${restores.initech.restoreId}`)).status, 401);
      assert.equal((await get(`/api/restores/${restores.initech.restoreId}`, { authorization: 'Bearer forged' })).status, 401);
      const signIn = await post('/login', { name: 'bob', secret: 'wrong', csrf: 'forged' });
      assert.equal(signIn.status, 403, 'a sign-in form without its token');
      assert.equal((await post(`/restores/${restores.initech.restoreId}/approve`, { digest: restores.initech.digest, csrf: 'x' })).status, 401);
      const ok = await get('/', basic('dora', 'x'));
      assert.equal(ok.status, 401);
      assert.equal((await get('/', { authorization: `Bearer ${secrets.DORA_TOKEN}` })).status, 200);
      assert.equal(await restoreState('initech'), 'awaiting-approval', 'nothing changed');
    });

    it('refuses a read-only user (403) an approval by form or API, and shows them no form', async () => {
      const carol = basic('carol', secrets.CAROL_PASSWORD);
      const page = await (await get(`/restores/${restores.initech.restoreId}`, carol)).text();
      assert.doesNotMatch(page, /<form method="post" action="[^"]*\/approve"/);
      assert.match(page, /read-only role: approving or rejecting a restore needs an operator/);
      const byForm = await post(`/restores/${restores.initech.restoreId}/approve`, { digest: restores.initech.digest, csrf: 'anything' }, carol);
      assert.equal(byForm.status, 403);
      assert.match(await byForm.text(), /carol has the read-only role/);
      const byApi = await fetch(`${server.url}/api/restores/${restores.initech.restoreId}/approve`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${secrets.DORA_TOKEN}` },
        body: JSON.stringify({ digest: restores.initech.digest }),
      });
      assert.equal(byApi.status, 403);
      assert.equal(await restoreState('initech'), 'awaiting-approval', 'nothing changed');
    });

    it('refuses a forged form token, a form of another user, and a form sent a second time; an operator may decide as only themselves over the API', async () => {
      const r = restores.initech;
      const forged = await post(`/restores/${r.restoreId}/reject`, { digest: r.digest, csrf: '9999999999999.AAAAAAAAAAAAAAAA.' + 'A'.repeat(43) }, bob);
      assert.equal(forged.status, 403);
      assert.match(await forged.text(), /not valid for you, this restore and this preview/);
      const alicesForm = await formOf(`/restores/${r.restoreId}`, basic('alice', 'alice-requests-restores'), 'reject');
      assert.equal((await post(alicesForm.action, { digest: r.digest, csrf: alicesForm.csrf }, bob)).status, 403, "alice's form sent by bob");
      const crossSite = await post(alicesForm.action, { digest: r.digest, csrf: alicesForm.csrf }, { ...basic('alice', 'alice-requests-restores'), origin: 'http://evil.example' });
      assert.equal(crossSite.status, 403, 'sent from another site');
      const asOther = await fetch(`${server.url}/api/restores/${r.restoreId}/approve`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...bob },
        body: JSON.stringify({ by: 'someone-else', digest: r.digest }),
      });
      assert.equal(asOther.status, 403, 'bob cannot approve in the name of another');
      assert.equal(await restoreState('initech'), 'awaiting-approval', 'nothing changed');

      const form = await formOf(`/restores/${r.restoreId}`, bob, 'reject');
      const rejected = await post(form.action, { digest: form.digest, csrf: form.csrf, reason: 'wrong backup' }, bob);
      assert.equal(rejected.status, 303, await rejected.clone().text());
      assert.equal(rejected.headers.get('location'), `/restores/${r.restoreId}?done=rejected`);
      await waitFor('the restore is rejected', async () => (await restoreState('initech')) === 'rejected');
      const status = await client.restores.status({ workflowId: r.workflowId });
      assert.deepEqual(status.rejection, { by: 'bob', reason: 'wrong backup' });
      const replay = await post(form.action, { digest: form.digest, csrf: form.csrf, reason: 'wrong backup' }, bob);
      assert.equal(replay.status, 403);
      assert.match(await replay.text(), /already sent once: nothing was done/);
    });

    it('answers a huge address with 414, an unknown tenant with a 404 page, bad paging with 400, changing nothing', async () => {
      const long = await get(`/tenants?q=${'a'.repeat(5000)}`, bob);
      assert.equal(long.status, 414);
      assert.match(await long.text(), /over 4096 characters; nothing was done/);
      const huge = await get(`/tenants?q=${'a'.repeat(70_000)}`, bob).catch((err: Error) => err);
      assert.ok(!(huge instanceof Error), String(huge));
      assert.ok([414, 400].includes(huge.status), `status ${huge.status}`);
      const unknown = await get('/tenants/no-such-tenant', bob);
      assert.equal(unknown.status, 404);
      assert.match(await unknown.text(), /No tenant &quot;no-such-tenant&quot;/);
      assert.equal((await get('/tenants/%E0%A4%A', bob)).status, 400);
      assert.equal((await get('/tenants?page=-1', bob)).status, 400);
      assert.equal((await get('/tenants?q=ac&page=999', bob)).status, 200);
      assert.equal((await get('/restores/no-such-restore', bob)).status, 404);
      assert.equal((await get('/verifications/12345678', bob)).status, 404);
      assert.equal((await get('/databases/other', bob)).status, 404);
      assert.equal(await restoreState('globex'), 'awaiting-approval', 'nothing changed');
    });

    it('shows the newest drills in the DR slot, achieved against the targets, and serves each drill\'s stored report', async () => {
      const drillId = '20261206-080000-abcdef01';
      await env.engine.store.put(`dr/drills/${drillId}/report.html`, Buffer.from('<!doctype html><title>DR drill</title><span id="outcome">OVER TARGET</span>'));
      await env.engine.catalog.recordDrEvent({
        workflowId: 'dr-drill/test', runId: 'run-1', kind: 'drill', database: env.db.name, status: 'done', startedAt: '2026-12-06T08:00:00.000000Z', finishedAt: '2026-12-06T08:01:12.000000Z',
        rtoMs: 72_300, rpoMs: 0, rtoTargetMs: 60_000, rpoTargetMs: 5_000, metTargets: false, reportKey: `dr/drills/${drillId}/report.json`, details: { drillId, htmlKey: `dr/drills/${drillId}/report.html` },
      });
      await new Promise((resolve) => setTimeout(resolve, 1100)); // past the server's reuse of its last judgement
      const page = await (await get('/', bob)).text();
      const slot = /<section aria-labelledby="dr"[^]*?<\/section>/.exec(page)![0];
      assert.match(slot, new RegExp(`<tr class="dr-drill"><td>drill <code>${drillId}</code></td><td>done</td>`));
      assert.match(slot, /<span class="failed">72\.3s<\/span> <span class="muted">of 60\.0s<\/span>/);
      assert.match(slot, /<span class="ok">0\.0s<\/span> <span class="muted">of 5\.0s<\/span>/);
      const link = new RegExp(`<a href="(/drills/${drillId}/report\\.html)">report</a>`).exec(slot);
      assert.ok(link, slot);
      const report = await get(link[1], bob);
      assert.equal(report.status, 200);
      assert.match(report.headers.get('content-security-policy') ?? '', /default-src 'none'/);
      assert.match(await report.text(), /id="outcome">OVER TARGET</);
      assert.equal((await get('/drills/20990101-000000-00000000/report.html', bob)).status, 404);
      assert.equal((await get('/drills/..%2F..%2Fetc/report.html', bob)).status, 404);
    });

    it('keeps the restore relay API: dashboard.token approves for whom it names', async () => {
      const legacy = parseConfig({ ...env.document, dashboard: { port: 0, token: 'relay-token-0123456789' } }, { env: {}, source: 'test', baseDir: env.dir });
      const relay = await startDashboardServer(legacy, engine, client);
      try {
        const status = await fetch(`${relay.url}/api/restores/${restores.globex.restoreId}`, { headers: { authorization: 'Bearer relay-token-0123456789' } });
        assert.equal(status.status, 200);
        assert.equal(((await status.json()) as { state: string }).state, 'awaiting-approval');
        const self = await fetch(`${relay.url}/api/restores/${restores.globex.restoreId}/approve`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: 'Bearer relay-token-0123456789' },
          body: JSON.stringify({ by: 'alice', digest: restores.globex.digest }),
        });
        assert.equal(self.status, 409);
        assert.match(((await self.json()) as { error: string }).error, /cannot approve it \(four-eyes\)/);
      } finally {
        await relay.close();
      }
    });
  });

  describe('in a browser', () => {
    let browser: Browser;
    const contexts: BrowserContext[] = [];

    before(async function () {
      // required, not optional: scripts/setup.sh installs Debian's chromium
      assert.ok(fs.existsSync(chromiumPath), `${chromiumPath} is missing: run \`npm run setup\` (it installs Debian's chromium), or set TENANTSAFE_CHROMIUM`);
      const { chromium } = require('playwright-core') as typeof import('playwright-core');
      browser = await chromium.launch({ executablePath: chromiumPath });
      fs.mkdirSync(artifacts, { recursive: true });
    });
    after(async () => {
      for (const c of contexts) await c.close();
      await browser?.close();
    });

    const shot = (page: Page, name: string) => page.screenshot({ path: path.join(artifacts, `${name}.png`), fullPage: true });

    async function signedIn(name: string, password: string): Promise<Page> {
      const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
      contexts.push(context);
      const page = await context.newPage();
      const first = await page.goto(`${server.url}/`);
      assert.equal(first?.status(), 401);
      await page.fill('#name', name);
      await page.fill('#secret', password);
      await Promise.all([page.waitForURL(`${server.url}/`), page.click('form.login button[type=submit]')]);
      assert.equal(await page.textContent('header .user'), name);
      return page;
    }

    it('shows a read-only user the failed backup highlighted, with its reason and a link to the run in the Temporal Web UI', async () => {
      const page = await signedIn('carol', secrets.CAROL_PASSWORD);
      const item = page.locator('li.item.critical', { hasText: 'umbrella' });
      assert.equal(await item.count(), 1, await page.content());
      assert.match((await item.textContent())!, /tenant backup failed on the latest attempt: umbrella \(StorageUnwritable: Cannot write/);
      const href = await item.locator('a.temporal-link').getAttribute('href');
      assert.match(href!, new RegExp(`^${uiUrl}/namespaces/${env.config.temporal.namespace}/workflows/tenant-backup%2Fumbrella/[0-9a-f-]{36}/history$`));
      const row = page.locator('tr[data-tenant="umbrella"]');
      assert.equal(await row.getAttribute('class'), 'critical');
      assert.match((await row.textContent())!, /StorageUnwritable/);
      // the first thing on the page is what fails: the banner says critical before any OK item
      assert.equal(await page.locator('section.banner.critical').count(), 1);
      await shot(page, '1-overview-failed-backup');

      await page.fill('#q', 'umb');
      await Promise.all([page.waitForURL(/\/tenants\?q=umb/), page.click('form.search button')]);
      assert.deepEqual(await page.locator('table.tenants tbody tr').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-tenant'))), ['umbrella']);
      await page.click('a.tenant:text("umbrella")');
      assert.match((await page.textContent('main'))!, /StorageUnwritable/);
      await shot(page, '2-tenant-failing');
    });

    it('does not let a read-only user approve', async () => {
      const page = await signedIn('carol', secrets.CAROL_PASSWORD);
      await page.goto(`${server.url}/restores/${restores.globex.restoreId}`);
      assert.equal(await page.locator('button.approve').count(), 0);
      assert.match((await page.textContent('.read-only'))!, /read-only role/);
      assert.match((await page.textContent('table.preview'))!, /app\.projects/);
      await shot(page, '3-restore-read-only');
      const refused = await page.request.post(`${server.url}/restores/${restores.globex.restoreId}/approve`, { form: { digest: restores.globex.digest, csrf: 'none' }, maxRedirects: 0 });
      assert.equal(refused.status(), 403);
      assert.equal(await restoreState('globex'), 'awaiting-approval');
    });

    it('refuses the requester, then lets a second operator approve and shows the restore complete; the approval form sent again is refused', async () => {
      const { restoreId, digest } = restores.globex;
      const alice = await signedIn('alice', 'alice-requests-restores');
      await alice.goto(`${server.url}/restores/${restoreId}`);
      assert.match((await alice.textContent('.four-eyes'))!, /You \(alice\) requested this restore: someone else has to approve it/);
      assert.ok(await alice.locator('button.approve').isDisabled());
      // the button is only a hint: sent anyway, the server refuses it
      await alice.locator('button.approve').evaluate((b) => b.removeAttribute('disabled'));
      await Promise.all([alice.waitForLoadState(), alice.click('button.approve')]);
      assert.match((await alice.textContent('section.error'))!, /409 Conflict[\s\S]*alice requested restore \S+ and cannot approve it \(four-eyes\); nothing was done/);
      await shot(alice, '4-requester-refused');
      assert.equal(await restoreState('globex'), 'awaiting-approval');

      const bob = await signedIn('bob', secrets.BOB_PASSWORD);
      await bob.goto(`${server.url}/restores/${restoreId}`);
      assert.equal(await bob.inputValue('form.approve input[name=digest]'), digest, 'the form approves the preview on the page');
      const csrf = await bob.inputValue('form.approve input[name=csrf]');
      await shot(bob, '5-restore-preview');
      await Promise.all([bob.waitForURL(/\?done=approved$/), bob.click('button.approve')]);
      assert.match((await bob.textContent('.flash'))!, /Approved by bob/);
      // the page reloads itself while the restore applies and verifies
      await bob.waitForSelector('.state.state-done', { timeout: 180_000 });
      assert.match((await bob.textContent('main'))!, /Every table equals the backup; other tenants unchanged/);
      assert.match((await bob.textContent('.approval'))!, /^bob /);
      await shot(bob, '6-restore-done');
      const status = await client.restores.status({ workflowId: restores.globex.workflowId });
      assert.equal(status.state, 'done');
      assert.deepEqual(status.approvals.map((a) => a.by), ['bob']);

      const replay = await bob.request.post(`${server.url}/restores/${restoreId}/approve`, { form: { digest, csrf }, maxRedirects: 0 });
      assert.equal(replay.status(), 403);
      assert.match(await replay.text(), /already sent once: nothing was done/);
    });

    it('draws a tenant\'s size and duration trends with uPlot served from the package, and its restore points on a timeline with their pins', async () => {
      const page = await signedIn('carol', secrets.CAROL_PASSWORD);
      const problems: string[] = [];
      page.on('console', (m) => m.type() === 'error' && problems.push(m.text()));
      page.on('pageerror', (e) => problems.push(e.message));
      const loaded: string[] = [];
      page.on('request', (r) => loaded.push(r.url()));
      await page.goto(`${server.url}/tenants/acme`);
      await page.waitForSelector('div.chart[data-drawn="true"] canvas');
      assert.equal(await page.locator('div.chart[data-drawn="true"] canvas').count(), 2, 'size and duration');
      assert.ok(loaded.every((u) => u.startsWith(server.url)), `everything from the dashboard itself: ${loaded.join(', ')}`);
      assert.equal(await page.locator('svg.timeline circle.point').count(), 2);
      assert.equal(await page.locator(`svg.timeline circle.point.pinned[data-backup="${acmeBackupId}"]`).count(), 1);
      assert.match((await page.textContent('.pins'))!, /legal hold TICKET-7/);
      assert.match((await page.textContent('.next-to-go'))!, /nothing goes by age alone|kept only as recent/);
      assert.match((await page.locator(`table.backups tr[data-backup="${acmeBackupId}"]`).textContent())!, /pinned/);
      await shot(page, '8-tenant-trends-retention');
      assert.deepEqual(problems, [], 'no script error and no Content-Security-Policy violation');
    });

    it('finds a verification report, reads it and downloads it as JSON', async () => {
      const page = await signedIn('bob', secrets.BOB_PASSWORD);
      await page.click('header nav a:text("Verifications")');
      const row = page.locator(`tr[data-backup="${acmeBackupId}"]`);
      assert.equal(await row.count(), 1);
      await row.locator('a', { hasText: acmeBackupId }).click();
      assert.match((await page.textContent('h1'))!, new RegExp(`Verification of ${acmeBackupId}\\s+OK`));
      assert.ok((await page.locator('table.checks tbody tr').count()) > 1);
      await shot(page, '7-verification-report');
      const [download] = await Promise.all([page.waitForEvent('download'), page.click('a:text("download JSON")')]);
      const report = JSON.parse(fs.readFileSync((await download.path())!, 'utf8'));
      assert.equal(report.backupId, acmeBackupId);
      assert.equal(report.ok, true);
      assert.ok(report.checks.length > 1);
    });
  });
});
