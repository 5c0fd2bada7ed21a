import { strict as assert } from 'node:assert';
import { damageTenant } from '../sample/damage';
import { erasureKey, erasuresAfter } from '../lib/erasure';
import type { TenantRestoreResult } from '../workflows/messages';
import { liveRows } from './support/backups';
import { withDb } from './support/db';
import { createTestEnv, runCli, type TestEnv } from './support/env';
import { checksumsOf } from './support/restore';

const tenantId = 'globex';

describe('erasure ledger', function () {
  let env: TestEnv;
  let backupId: string;
  /** the erased user: owns a project (its tree goes with them) and wrote comments on others' tasks (kept, author cleared) */
  let userId: string;
  /** per table, the tenant's rows the database removed when the application erased the user */
  const removed: Record<string, number> = {};
  let cleared: number;

  const cli = (...args: string[]) => runCli([...args, '--json'], { configFile: env.configFile });
  const tenantState = async () => checksumsOf(await liveRows(env.config, tenantId));
  const counts = async () => Object.fromEntries([...(await liveRows(env.config, tenantId))].map(([t, rows]) => [t, rows.length]));

  before(async function () {
    this.timeout(180_000);
    env = await createTestEnv('local');
    // the application's own erasure: deleting the user takes their projects' trees with it and
    // clears their authorship of other comments, as these foreign keys say
    await withDb(env.db.url, async (c) => {
      await c.query(`
        ALTER TABLE app.projects DROP CONSTRAINT projects_owner_id_fkey, ADD FOREIGN KEY (owner_id) REFERENCES app.users (user_id) ON DELETE CASCADE;
        ALTER TABLE app.tasks DROP CONSTRAINT tasks_project_id_fkey, ADD FOREIGN KEY (project_id) REFERENCES app.projects ON DELETE CASCADE;
        ALTER TABLE app.comments DROP CONSTRAINT comments_task_id_fkey, ADD FOREIGN KEY (task_id) REFERENCES app.tasks ON DELETE CASCADE;
        ALTER TABLE app.comments DROP CONSTRAINT comments_reply_to_fkey, ADD FOREIGN KEY (reply_to) REFERENCES app.comments ON DELETE CASCADE;
        ALTER TABLE app.task_labels DROP CONSTRAINT task_labels_task_id_fkey, ADD FOREIGN KEY (task_id) REFERENCES app.tasks ON DELETE CASCADE;
        ALTER TABLE app.comments DROP CONSTRAINT comments_author_id_fkey, ADD FOREIGN KEY (author_id) REFERENCES app.users (user_id) ON DELETE SET NULL;`);
      // a user who owns a project; they also wrote three comments on another user's project
      const r = await c.query(`SELECT min(owner_id)::text AS id FROM app.projects WHERE tenant_id = $1`, [tenantId]);
      userId = r.rows[0].id;
      const elsewhere = await c.query(
        `UPDATE app.comments SET author_id = $2 WHERE comment_id IN (
           SELECT m.comment_id FROM app.comments m JOIN app.tasks t USING (task_id) JOIN app.projects p USING (project_id)
            WHERE p.tenant_id = $1 AND p.owner_id <> $2 ORDER BY 1 LIMIT 3)`,
        [tenantId, userId],
      );
      cleared = elsewhere.rowCount ?? 0;
    });
    await env.startWorker();
    const b = await runCli(['backup', 'tenant', tenantId, '--wait', '--json'], { configFile: env.configFile });
    assert.equal(b.code, 0, b.stderr);
    backupId = b.json().backupId;
  });
  after(async () => env?.close());

  it('refuses bad erasures with exit 2 and a HINT, recording nothing', async () => {
    const bad: [string[], RegExp][] = [
      [['--table', 'app.users', '--key', `user_id=${userId}`, '--by', 'dpo'], /required option '--tenant/],
      [['--tenant', tenantId, '--table', 'app.users', '--key', `${userId}`, '--by', 'dpo'], /--key "\d+" is not column=value/],
      [['--tenant', tenantId, '--table', 'app.nope', '--key', 'id=1', '--by', 'dpo'], /app\.nope is not a table of the configured schemas/],
      [['--tenant', tenantId, '--table', 'app.plans', '--key', 'plan_id=1', '--by', 'dpo'], /app\.plans is global/],
      [['--tenant', tenantId, '--table', 'app.tenants', '--key', `tenant_id=${tenantId}`, '--by', 'dpo'], /is the tenant table.*HINT: .*tenant erase-backups/s],
      [['--tenant', tenantId, '--table', 'app.users', '--key', 'email=x@y.z', '--by', 'dpo'], /the primary key of app\.users is \(user_id\)/],
      [['--tenant', 'no-such-tenant', '--table', 'app.users', '--key', `user_id=${userId}`, '--by', 'dpo'], /no-such-tenant/],
      [['--tenant', 'initech', '--table', 'app.users', '--key', `user_id=${userId}`, '--by', 'dpo'], /belongs to another tenant, not "initech"/],
    ];
    for (const [args, message] of bad) {
      const r = await cli('erasure', 'record', ...args);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      const error = JSON.parse(r.stderr).error as string;
      assert.match(error, message);
      assert.match(error, /HINT: /);
    }
    assert.deepEqual((await cli('erasure', 'list')).json(), [], 'nothing recorded');
  });

  it('records an erasure in the ledger and the audit log', async () => {
    const r = await cli('erasure', 'record', '--tenant', tenantId, '--table', 'app.users', '--key', `user_id=${userId}`, '--by', 'dpo', '--reason', 'ticket 991');
    assert.equal(r.code, 0, r.stderr);
    const rec = r.json();
    assert.deepEqual({ table: rec.table, key: rec.key, by: rec.by, reason: rec.reason, stillLive: rec.stillLive }, { table: 'app.users', key: { user_id: userId }, by: 'dpo', reason: 'ticket 991', stillLive: true });
    const listed = (await cli('erasure', 'list', '--tenant', tenantId)).json();
    assert.deepEqual(listed.map((e: { erasureId: number }) => e.erasureId), [rec.erasureId]);
    const audit = (await cli('audit', 'list', '--action', 'erasure')).json();
    assert.equal(audit.length, 1);
    assert.deepEqual([audit[0].by, audit[0].subject.tenantId, audit[0].details.erasureId, audit[0].details.table], ['dpo', tenantId, rec.erasureId, 'app.users']);
    assert.ok(!JSON.stringify(audit[0]).includes(`"user_id"`), 'the audit log names the erasure, not the subject');
    assert.equal((await cli('audit', 'verify')).code, 0, 'the chain holds');
    // a backup taken after the erasure holds no erased data to leave out
    assert.deepEqual(await erasuresAfter(env.engine, tenantId, rec.erasedAt), []);
    assert.equal((await erasuresAfter(env.engine, tenantId, '2000-01-01T00:00:00Z')).length, 1);
  });

  it('a restore of an older backup leaves the erased user and what depends on them out, shows it in the preview and verifies', async () => {
    const before = await counts();
    // the application erases the user
    await withDb(env.db.url, (c) => c.query(`DELETE FROM app.users WHERE user_id = $1`, [userId]));
    const after = await counts();
    for (const t of Object.keys(before)) if (before[t] !== after[t]) removed[t] = before[t] - after[t];
    assert.ok(removed['app.users'] === 1 && removed['app.projects'] >= 1 && removed['app.tasks'] >= 1, JSON.stringify(removed));
    const erasedState = await tenantState();

    await withDb(env.db.url, (c) => damageTenant(c, tenantId));
    const requested = await cli('restore', 'tenant', tenantId, '--backup', backupId, '--by', 'alice');
    assert.equal(requested.code, 0, requested.stderr);
    const out = requested.json();
    assert.equal(out.state, 'awaiting-approval');
    const erasures = out.preview.erasures;
    assert.deepEqual(erasures.rows, removed, 'the rows left out are those the database removed with the user');
    assert.equal(erasures.total, Object.values(removed).reduce((a, b) => a + b, 0));
    assert.deepEqual(
      erasures.entries.map((e: Record<string, unknown>) => [e.table, e.by, 'key' in e]),
      [['app.users', 'dpo', false]],
      'Temporal gets the erasure, not the subject\'s key',
    );
    assert.ok(out.preview.warnings.some((w: string) => /^erasures re-applied: 1 row in app\.users, \d+ rows? in app\.projects/.test(w)), out.preview.warnings.join('\n'));
    const stored = await env.engine.catalog.getRestore(out.restoreId);
    const full = stored.preview as { erasures: { entries: { key: Record<string, string> }[] }; digest: string };
    assert.deepEqual(full.erasures.entries[0].key, { user_id: userId }, 'the catalog keeps the subject');
    assert.equal(full.digest, out.previewDigest);

    const approved = await cli('restore', 'approve', out.restoreId, '--by', 'bob', '--digest', out.previewDigest, '--wait');
    assert.equal(approved.code, 0, approved.stderr);
    const done = approved.json() as TenantRestoreResult;
    assert.equal(done.state, 'done');
    assert.ok(done.verification!.ok, JSON.stringify(done.verification));
    assert.deepEqual(await tenantState(), erasedState, 'the tenant is the backup without the erased user, their projects\' trees, and with their other comments\' author cleared');
    const left = await withDb(env.db.url, async (c) => ({
      user: (await c.query(`SELECT 1 FROM app.users WHERE user_id = $1`, [userId])).rowCount,
      authored: (await c.query(`SELECT 1 FROM app.comments WHERE author_id = $1`, [userId])).rowCount,
    }));
    assert.deepEqual(left, { user: 0, authored: 0 }, 'not resurrected');
    assert.ok(cleared > 0);
  });

  it('binds the digest to the ledger: an erasure recorded after the preview changes the plan, and the apply asks again', async () => {
    // a user in the backup, still live
    const other = await withDb(env.db.url, async (c) => (await c.query(`SELECT user_id::text AS id FROM app.users WHERE tenant_id = $1 ORDER BY user_id DESC LIMIT 1`, [tenantId])).rows[0].id as string);
    await withDb(env.db.url, (c) => damageTenant(c, tenantId));
    const requested = await cli('restore', 'tenant', tenantId, '--backup', backupId, '--by', 'alice');
    assert.equal(requested.code, 0, requested.stderr);
    const first = requested.json();
    const rec = await cli('erasure', 'record', '--tenant', tenantId, '--table', 'app.users', '--key', `user_id=${other}`, '--by', 'dpo');
    assert.equal(rec.code, 0, rec.stderr);
    const approved = await cli('restore', 'approve', first.restoreId, '--by', 'bob', '--digest', first.previewDigest);
    assert.equal(approved.code, 0, approved.stderr);
    const status = async () => (await cli('restore', 'status', first.restoreId)).json();
    let s = await status();
    for (let i = 0; i < 120 && !(s.state === 'awaiting-approval' && s.planChanged); i++) {
      await new Promise((r) => setTimeout(r, 500));
      s = await status();
    }
    assert.ok(s.planChanged, `plan changed: ${s.state}`);
    assert.notEqual(s.previewDigest ?? s.preview.digest, first.previewDigest);
    assert.deepEqual(s.preview.erasures.entries.map((e: { table: string }) => e.table), ['app.users', 'app.users']);
    assert.equal(s.preview.erasures.rows['app.users'], 2);
    const again = await cli('restore', 'approve', first.restoreId, '--by', 'bob', '--digest', s.preview.digest, '--wait');
    assert.equal(again.code, 0, again.stderr);
    assert.equal(again.json().state, 'done');
    assert.equal(await withDb(env.db.url, async (c) => (await c.query(`SELECT 1 FROM app.users WHERE user_id = $1`, [other])).rowCount), 0, 'the second subject is left out too');
  });

  it('keeps each erasure in storage too: catalog rebuild puts a lost ledger back, ids and times as they were', async () => {
    const before = (await cli('erasure', 'list')).json() as { erasureId: number; tenantId: string }[];
    assert.equal(before.length, 2);
    for (const e of before) assert.ok(await env.engine.store.stat(erasureKey(e)), `erasure #${e.erasureId} is in storage`);
    // the catalog's ledger lost (a catalog recreated)
    await env.engine.catalog.withSchema((c, s) => c.query(`DELETE FROM ${s}.erasures`));
    assert.deepEqual((await cli('erasure', 'list')).json(), []);
    const rebuilt = await cli('catalog', 'rebuild');
    assert.equal(rebuilt.code, 0, rebuilt.stderr);
    assert.deepEqual(rebuilt.json().erasures, { indexed: 2, added: before.map((e) => e.erasureId), invalid: [] });
    assert.deepEqual((await cli('erasure', 'list')).json(), before);
    assert.deepEqual((await cli('catalog', 'rebuild')).json().erasures.added, [], 'a second rebuild adds nothing');
  });

  it('stops a restore whose erasure cannot be matched any more (the table\'s key changed since), naming it', async () => {
    // as if recorded before the key of app.labels became (tenant_id, code)
    const [{ id }] = await env.engine.catalog.withSchema(async (c, s) =>
      (await c.query(`INSERT INTO ${s}.erasures (tenant_id, table_name, key, erased_by) VALUES ($1, 'app.labels', '{"label_id": "7"}', 'dpo') RETURNING id`, [tenantId])).rows,
    );
    try {
      const before = await tenantState();
      const r = await cli('restore', 'tenant', tenantId, '--backup', backupId, '--by', 'alice');
      assert.equal(r.code, 2, r.stdout + r.stderr);
      const error = JSON.parse(r.stderr).error as string;
      assert.match(error, new RegExp(`erasure #${id} names app\\.labels by \\(label_id\\), but its primary key is now \\(tenant_id, code\\): the subject cannot be left out`));
      assert.deepEqual(await tenantState(), before, 'nothing changed');
    } finally {
      await env.engine.catalog.withSchema((c, s) => c.query(`DELETE FROM ${s}.erasures WHERE id = $1`, [id]));
    }
  });
});
