import { strict as assert } from 'node:assert';
import { execFile } from 'node:child_process';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { TenantsafeClient } from '../client/client';
import { startDashboardServer } from '../client/server';
import { loadConfig, parseConfig } from '../lib/config';
import { Engine } from '../lib/engine';
import { manifestFile } from '../lib/format/sealed';
import { tenantBackupPrefix } from '../lib/format/tenantManifest';
import { discoverTenancy, fromTable, tenantFilter } from '../lib/tenancy';
import { tenantRestoreStatusQuery, workflowIds, type TenantRestoreResult } from '../workflows/messages';
import { startWorker } from '../workers/worker';
import { liveRows, readBackup } from './support/backups';
import { withDb } from './support/db';
import { createTestEnv, dbPassword, runCli, type TestEnv } from './support/env';
import { damageTenant } from '../sample/damage';
import { checksumsOf } from './support/restore';
import { testStack } from './support/stack';

const tenantId = 'globex';

describe('tenant restore workflow', function () {
  let env: TestEnv;
  let backupId: string;

  before(async function () {
    this.timeout(180_000);
    env = await createTestEnv('local');
    await env.startWorker();
    const b = await runCli(['backup', 'tenant', tenantId, '--wait', '--json'], { configFile: env.configFile });
    assert.equal(b.code, 0, b.stderr);
    backupId = b.json().backupId;
  });
  after(async () => env?.close());

  const cli = (...args: string[]) => runCli([...args, '--json'], { configFile: env.configFile });
  const tenantState = async () => checksumsOf(await liveRows(env.config, tenantId));
  const others = () => Promise.all(env.db.tenants.filter((t) => t.tenantId !== tenantId).map(async (t) => checksumsOf(await liveRows(env.config, t.tenantId))));
  const scratchSchemas = () => withDb(env.db.url, async (c) => (await c.query(`SELECT nspname FROM pg_namespace WHERE nspname LIKE 'tenantsafe_restore_%'`)).rows);
  const result = (restoreId: string) => cli('restore', 'status', restoreId);

  async function requestRestore(by = 'alice', ...extra: string[]) {
    const res = await cli('restore', 'tenant', tenantId, '--backup', backupId, '--by', by, ...extra);
    assert.equal(res.code, 0, res.stderr);
    const out = res.json();
    assert.equal(out.state, 'awaiting-approval');
    return out as { restoreId: string; previewDigest: string; preview: { tables: Record<string, { insert: number; update: number; delete: number }>; warnings: string[] } };
  }

  async function waitDone(restoreId: string): Promise<TenantRestoreResult> {
    const r = await env.engine.catalog.getRestore(restoreId);
    return env.temporal.workflow.getHandle(r.workflowId, r.runId).result();
  }

  it('previews, refuses self-approval, a wrong digest and a second restore, then restores on a second person\'s approval', async () => {
    await withDb(env.db.url, (c) => damageTenant(c, tenantId));
    const damaged = await tenantState();
    const othersBefore = await others();

    const requested = await requestRestore('alice');
    assert.match(requested.previewDigest, /^[0-9a-f]{64}$/);
    assert.deepEqual(Object.keys(requested.preview.tables['app.users']).sort(), ['delete', 'insert', 'update']);
    assert.ok(requested.preview.tables['app.projects'].insert === 2 && requested.preview.tables['app.projects'].delete === 1);

    const self = await cli('restore', 'approve', requested.restoreId, '--by', 'alice', '--digest', requested.previewDigest);
    assert.equal(self.code, 2);
    assert.match(JSON.parse(self.stderr).error, /alice requested restore .* and cannot approve it \(four-eyes\)/);
    const wrong = await cli('restore', 'approve', requested.restoreId, '--by', 'bob', '--digest', 'f'.repeat(64));
    assert.equal(wrong.code, 2);
    assert.match(JSON.parse(wrong.stderr).error, /Digest f+ is not the current preview's/);
    const second = await cli('restore', 'tenant', tenantId, '--backup', backupId, '--by', 'carol');
    assert.equal(second.code, 2);
    assert.match(JSON.parse(second.stderr).error, new RegExp(`A restore of tenant "${tenantId}" is already running \\(restore ${requested.restoreId}, awaiting-approval\\)`));
    assert.deepEqual(await tenantState(), damaged, 'nothing changed before approval');

    const approved = await cli('restore', 'approve', requested.restoreId, '--by', 'bob', '--digest', requested.previewDigest, '--wait');
    assert.equal(approved.code, 0, approved.stderr);
    const done = approved.json();
    assert.equal(done.state, 'done');
    assert.ok(done.verification.ok);
    assert.match(done.safetyBackupId, /^\d{8}-\d{6}S-[0-9a-f]{6}$/);

    const backup = await readBackup(env.engine.store, tenantId, backupId);
    assert.deepEqual(await tenantState(), checksumsOf(backup.rows), 'the tenant equals the backup');
    assert.deepEqual(await others(), othersBefore, 'other tenants unchanged');
    assert.deepEqual(await scratchSchemas(), [], 'scratch schema dropped');

    const status = (await result(requested.restoreId)).json();
    assert.equal(status.state, 'done');
    assert.deepEqual(status.approvals.map((a: { by: string }) => a.by), ['bob']);
    assert.deepEqual(status.refused, [], 'the CLI refused the bad approvals before signalling');
    const listed = await cli('backups', 'list', '--tenant', tenantId);
    assert.ok(listed.json().some((b: { backupId: string }) => b.backupId === done.safetyBackupId), 'the safety backup is listed, so the restore can be undone');
    const safety = await readBackup(env.engine.store, tenantId, done.safetyBackupId);
    assert.deepEqual(checksumsOf(safety.rows), damaged, 'the safety backup holds the tenant exactly as the apply found it');
  });

  it('is approved by a plain Temporal client sending the approve signal, as another service would', async () => {
    await withDb(env.db.url, (c) => damageTenant(c, tenantId));
    const requested = await requestRestore('alice');
    const stack = await testStack();
    await promisify(execFile)(process.execPath, [path.join(__dirname, 'fixtures/approve-by-signal.js'), stack.temporalAddress, stack.namespace, tenantId, 'service-bot', requested.previewDigest]);
    const done = await waitDone(requested.restoreId);
    assert.equal(done.state, 'done');
    assert.ok(done.verification!.ok);
  });

  it('is approved over the HTTP relay with a token, and refuses requests without it', async () => {
    await withDb(env.db.url, (c) => damageTenant(c, tenantId));
    const requested = await requestRestore('alice');
    const cfg = parseConfig({ ...env.document, dashboard: { port: 0, token: 's3cret-token' } }, { env: {}, source: 'test', baseDir: env.dir });
    const engine = new Engine(cfg);
    const client = await TenantsafeClient.connect(cfg.temporal);
    const server = await startDashboardServer(cfg, engine, client);
    try {
      const post = (token: string | undefined, body: object) =>
        fetch(`${server.url}/api/restores/${requested.restoreId}/approve`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
          body: JSON.stringify(body),
        });
      assert.equal((await post(undefined, { by: 'bob', digest: requested.previewDigest })).status, 401);
      assert.equal((await post('wrong', { by: 'bob', digest: requested.previewDigest })).status, 401);
      const self = await post('s3cret-token', { by: 'alice', digest: requested.previewDigest });
      assert.equal(self.status, 409);
      assert.match(((await self.json()) as { error: string }).error, /cannot approve it \(four-eyes\)/);
      const ok = await post('s3cret-token', { by: 'bob', digest: requested.previewDigest });
      assert.equal(ok.status, 200, await ok.clone().text());
      assert.deepEqual(((await ok.json()) as { approvals: { by: string }[] }).approvals.map((a: { by: string }) => a.by), ['bob']);
      const status = await fetch(`${server.url}/api/restores/${requested.restoreId}`, { headers: { authorization: 'Bearer s3cret-token' } });
      assert.equal(status.status, 200);
      assert.equal((await fetch(`${server.url}/api/restores/nope`, { headers: { authorization: 'Bearer s3cret-token' } })).status, 404);
      assert.equal((await waitDone(requested.restoreId)).state, 'done');
    } finally {
      await server.close();
      await client.close();
      await engine.close();
    }
  });

  it('changes nothing when rejected', async () => {
    await withDb(env.db.url, (c) => damageTenant(c, tenantId));
    const before = await tenantState();
    const requested = await requestRestore('alice');
    const rejected = await cli('restore', 'reject', requested.restoreId, '--by', 'bob', '--reason', 'wrong backup');
    assert.equal(rejected.code, 0, rejected.stderr);
    const done = await waitDone(requested.restoreId);
    assert.equal(done.state, 'rejected');
    assert.deepEqual(done.rejection, { by: 'bob', reason: 'wrong backup' });
    assert.deepEqual(await tenantState(), before);
    assert.deepEqual(await scratchSchemas(), []);
  });

  it('asks for a new approval when the live data changed between preview and apply', async () => {
    const requested = await requestRestore('alice');
    // a row the plan did not touch yet (the damage changed the first five users)
    await withDb(env.db.url, (c) =>
      c.query(`UPDATE app.users SET display_name = 'changed while waiting' WHERE user_id = (SELECT user_id FROM app.users WHERE tenant_id = $1 ORDER BY user_id OFFSET 10 LIMIT 1)`, [tenantId]),
    );
    const first = await cli('restore', 'approve', requested.restoreId, '--by', 'bob', '--digest', requested.previewDigest);
    assert.equal(first.code, 0, first.stderr);
    const handle = env.temporal.workflow.getHandle(workflowIds.tenantRestore(tenantId));
    let status = await handle.query(tenantRestoreStatusQuery);
    for (let i = 0; i < 100 && !(status.planChanged && status.state === 'awaiting-approval'); i++) {
      await new Promise((r) => setTimeout(r, 200));
      status = await handle.query(tenantRestoreStatusQuery);
    }
    assert.ok(status.planChanged && status.state === 'awaiting-approval', JSON.stringify(status));
    assert.notEqual(status.preview!.digest, requested.previewDigest);
    assert.equal(status.preview!.tables['app.users'].update, requested.preview.tables['app.users'].update + 1);
    const stale = await cli('restore', 'approve', requested.restoreId, '--by', 'bob', '--digest', requested.previewDigest);
    assert.equal(stale.code, 2, 'the old digest no longer counts');
    const again = await cli('restore', 'approve', requested.restoreId, '--by', 'bob', '--digest', status.preview!.digest, '--wait');
    assert.equal(again.code, 0, again.stderr);
    assert.equal(again.json().state, 'done');
    // the first apply's safety backup started beside its check of the plan: stopped, or removed once written
    const known = new Set((await env.engine.catalog.listBackups({ tenantId })).map((b) => b.backupId));
    const tenantPrefix = tenantBackupPrefix(tenantId, '').slice(0, -1);
    const complete: string[] = [];
    for await (const o of env.engine.store.list(tenantPrefix)) if (o.key.endsWith(`/${manifestFile}`)) complete.push(o.key.slice(tenantPrefix.length).split('/')[0]);
    assert.deepEqual(complete.filter((id) => !known.has(id)), [], 'no complete backup the catalog does not know');
    assert.ok(complete.includes(again.json().safetyBackupId));
  });

  it('brings back a tenant that was deleted entirely, tenant row included', async () => {
    await withDb(env.db.url, async (c) => {
      const plan = await discoverTenancy(c, env.config.tenancy);
      await c.query('BEGIN');
      for (const t of [...plan.tables].reverse()) await c.query(`DELETE FROM ${fromTable(t, 'w')} WHERE ${tenantFilter(plan, t, 'w', tenantId)}`);
      await c.query('COMMIT');
    });
    assert.ok(Object.values(await tenantState()).every((v) => v.startsWith('0:')), 'the tenant is gone');
    const requested = await requestRestore('alice');
    const done = await cli('restore', 'approve', requested.restoreId, '--by', 'bob', '--digest', requested.previewDigest, '--wait');
    assert.equal(done.code, 0, done.stderr);
    assert.equal(done.json().state, 'done');
    const backup = await readBackup(env.engine.store, tenantId, backupId);
    assert.deepEqual(await tenantState(), checksumsOf(backup.rows));
    const safety = await readBackup(env.engine.store, tenantId, done.json().safetyBackupId);
    assert.equal(safety.manifest.totals.rows, 0, 'the safety backup of a tenant that was gone is empty');
  });

  it('keeps the database password and row data out of the restore workflow history', async () => {
    const handle = env.temporal.workflow.getHandle(workflowIds.tenantRestore(tenantId));
    const raw = JSON.stringify(await handle.fetchHistory());
    const text = raw + [...raw.matchAll(/"data":"([A-Za-z0-9+/=]+)"/g)].map((m) => Buffer.from(m[1], 'base64').toString('utf8')).join('\n');
    assert.ok(text.includes('awaiting-approval') || text.includes('"digest"'), 'history was decoded');
    assert.ok(!text.includes(dbPassword));
    for (const rowValue of ['user1@globex.example', 'First! on', 'ünïcödé', 'changed while waiting', 'Globex Inc.']) assert.ok(!text.includes(rowValue), rowValue);
  });

  it('expires without an approval in time, changing nothing, and refuses a late approval', async () => {
    const file = env.writeConfig('expiring.yaml', (d) => {
      d.restore = { approvalTimeout: '3s' };
      d.temporal.taskQueue += '-expiring';
    });
    const worker = await startWorker(loadConfig({ path: file }), { bundle: (await testStack()).bundle });
    try {
      await withDb(env.db.url, (c) => damageTenant(c, tenantId));
      const before = await tenantState();
      const res = await runCli(['restore', 'tenant', tenantId, '--backup', backupId, '--by', 'alice', '--json'], { configFile: file });
      assert.equal(res.code, 0, res.stderr);
      const { restoreId, previewDigest } = res.json();
      assert.equal((await waitDone(restoreId)).state, 'expired');
      const late = await runCli(['restore', 'approve', restoreId, '--by', 'bob', '--digest', previewDigest, '--json'], { configFile: file });
      assert.equal(late.code, 2);
      assert.match(JSON.parse(late.stderr).error, /is expired, not awaiting approval/);
      assert.deepEqual(await tenantState(), before);
      assert.deepEqual(await scratchSchemas(), []);
    } finally {
      await worker.shutdown();
    }
  });

  it('fails fast with exit code 2 for an unknown backup, another tenant\'s backup, or a malformed time', async () => {
    const unknown = await cli('restore', 'tenant', tenantId, '--backup', '20200101-000000T-000000', '--by', 'alice');
    assert.equal(unknown.code, 2);
    assert.equal(JSON.parse(unknown.stderr).type, 'BackupNotFound');
    const b = await cli('backup', 'tenant', 'acme', '--wait');
    const foreign = await cli('restore', 'tenant', tenantId, '--backup', b.json().backupId, '--by', 'alice');
    assert.equal(foreign.code, 2);
    assert.match(JSON.parse(foreign.stderr).error, /is of tenant "acme", not "globex"/);
    const badTime = await cli('restore', 'tenant', tenantId, '--at', 'last tuesday', '--by', 'alice');
    assert.equal(badTime.code, 2);
    assert.match(JSON.parse(badTime.stderr).error, /"last tuesday" is not an ISO-8601 time/);
    assert.deepEqual(await scratchSchemas(), []);
  });
});
