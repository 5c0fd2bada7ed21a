import { strict as assert } from 'node:assert';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { connect } from '../lib/pg';
import { parseConfig } from '../lib/config';
import { Engine } from '../lib/engine';
import { ErrorType, isTransient, TenantsafeError } from '../lib/errors';
import { backupLabel, restoreLabel } from '../lib/labels';
import { readManifest, tenantBackupPrefix, type TenantManifest } from '../lib/format/tenantManifest';
import {
  applyApprovedRestore,
  checkRestoreRequest,
  dropRestoreScratch,
  parseSelection,
  previewRestore,
  resolveRestoreSource,
  scratchSchemaName,
  verifyAppliedRestore,
  type RestoreJob,
  type RestorePreview,
  type RestoreRequest,
} from '../lib/restore';
import { backUpNow, liveRows, readBackup } from './support/backups';
import { freshDatabase, withDb, type TestDatabase } from './support/db';
import { damageTenant } from '../sample/damage';
import { computePlan } from '../lib/restore/plan';
import { comparableBackupXmin, stagingOf } from '../lib/restore/stagingDecision';
import { loadRestoreContext } from '../lib/restore/mapping';
import { backupSource, stageInFull } from '../lib/restore/stage';
import { checksumsOf, expectedDifferences } from './support/restore';

describe('tenant restore engine', function () {
  let db: TestDatabase;
  let engine: Engine;
  let dir: string;
  let backupId: string;
  const tenantId = 'globex';

  before(async function () {
    this.timeout(120_000);
    db = await freshDatabase();
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tenantsafe-restore-'));
    engine = new Engine(parseConfig({ database: { url: db.url }, storage: { primary: { kind: 'local', path: dir } } }, { env: {}, source: 'test', baseDir: dir }));
    backupId = await backUpNow(engine, tenantId);
  });
  after(async () => {
    await engine?.close();
    await db?.drop();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  afterEach(async () => {
    const leaked = await withDb(db.url, (c) => c.query(`SELECT nspname FROM pg_namespace WHERE nspname LIKE 'tenantsafe_restore_%'`));
    assert.deepEqual(leaked.rows, [], 'a scratch schema was left behind');
  });

  /** A restore's scratch table (staged: t, diff: d) of the table at this position of the manifest. */
  const scratchTable = (restoreId: string, letter: 't' | 'd', position: number) => `${scratchSchemaName(restoreId)}.${letter}${String(position + 1).padStart(4, '0')}`;

  /** How many rows a restore's diff table holds, of a table of this manifest. */
  const diffRows = (restoreId: string, manifest: TenantManifest, table: string) =>
    withDb(db.url, async (c) => Number((await c.query(`SELECT count(*) AS n FROM ${scratchTable(restoreId, 'd', manifest.tables.findIndex((t) => t.table === table))}`)).rows[0].n));

  /** Previews a restore of the backup (checked by `check`), approves it, and sees the apply roll back on the foreign key, changing nothing. */
  async function refusedByForeignKey(fromBackup: string, foreignKey: string, check: (preview: RestorePreview, restoreId: string) => Promise<void>) {
    const job: RestoreJob = { restoreId: restoreLabel(new Date(), randomBytes(3).toString('hex')), tenantId, backupId: fromBackup, selection: parseSelection({ tenantId }) };
    try {
      const preview = await previewRestore(engine, job);
      await check(preview, job.restoreId);
      const before = checksumsOf(await liveRows(engine.config, tenantId));
      await assert.rejects(
        applyApprovedRestore(engine, { ...job, digest: preview.digest }),
        (e: Error) => e instanceof TenantsafeError && e.type === ErrorType.RestoreBlocked && e.message.includes(foreignKey),
      );
      assert.deepEqual(checksumsOf(await liveRows(engine.config, tenantId)), before, 'nothing changed');
    } finally {
      await dropRestoreScratch(engine, job.restoreId);
    }
  }

  const others = () => Promise.all(db.tenants.filter((t) => t.tenantId !== tenantId).map(async (t) => checksumsOf(await liveRows(engine.config, t.tenantId))));

  async function restore(req: Partial<RestoreRequest> = {}) {
    const restoreId = restoreLabel(new Date(), randomBytes(3).toString('hex'));
    const job: RestoreJob = { restoreId, tenantId, backupId, selection: parseSelection({ tenantId, ...req }) };
    try {
      const preview = await previewRestore(engine, job);
      if (preview.blockers.length) return { preview };
      const safetyBackupId = backupLabel(new Date(), 'tenant', randomBytes(3).toString('hex'));
      const outcome = await applyApprovedRestore(engine, { ...job, digest: preview.digest, safetyBackupId });
      assert.equal(outcome.kind, 'applied');
      const verification = await verifyAppliedRestore(engine, job, true);
      return { preview, outcome, verification };
    } finally {
      await dropRestoreScratch(engine, restoreId);
    }
  }

  it('previews exactly the differences, then makes the tenant equal to the backup and leaves every other tenant as it was', async () => {
    await withDb(db.url, (c) => damageTenant(c, tenantId));
    const manifest = await readManifest(engine.store, tenantBackupPrefix(tenantId, backupId));
    const expected = expectedDifferences(manifest, (await readBackup(engine.store, tenantId, backupId)).rows, await liveRows(engine.config, tenantId));
    const othersBefore = await others();

    const { preview, outcome, verification } = await restore();
    for (const [table, diff] of Object.entries(expected)) {
      const p = preview.tables[table];
      assert.deepEqual({ insert: p.insert, update: p.update, delete: p.delete }, diff, `${table}: preview counts`);
    }
    assert.ok(preview.totals.insert > 0 && preview.totals.update > 0 && preview.totals.delete > 0);
    assert.equal(preview.blockers.length, 0);
    assert.ok(outcome!.kind === 'applied' && outcome!.result.replicaMode);
    assert.ok(verification!.ok, JSON.stringify(verification!.tables.filter((t) => !t.ok)));
    // proven inside the apply (no scan of these tables first), but the table without a key, changed
    const proven = Object.keys((outcome!.kind === 'applied' && outcome!.result.delta?.proven) || {});
    assert.ok(['app.events', 'app.users', 'app.tasks', 'app.comments'].every((x) => proven.includes(x)) && !proven.includes('app.page_views'), `proven in the apply: ${proven}`);
    const fromDelta = verification!.tables.filter((t) => t.note?.includes('safety backup')).map((t) => t.table);
    assert.ok(fromDelta.includes('app.events') && fromDelta.includes('app.users'), `checksums of the changed tables from the safety backup and the rows the apply changed (${fromDelta})`);

    const after = await readBackup(engine.store, tenantId, backupId);
    const live = checksumsOf(await liveRows(engine.config, tenantId));
    assert.deepEqual(live, checksumsOf(after.rows), 'the tenant equals the backup, table by table');
    assert.deepEqual(await others(), othersBefore, 'other tenants unchanged');
  });

  it('verifies by reading every row when anyone else wrote the tenant after the apply: a write is never hidden by the shortcut', async () => {
    await withDb(db.url, (c) => damageTenant(c, tenantId));
    const job: RestoreJob = { restoreId: restoreLabel(new Date(), randomBytes(3).toString('hex')), tenantId, backupId, selection: parseSelection({ tenantId }) };
    try {
      const preview = await previewRestore(engine, job);
      const safetyBackupId = backupLabel(new Date(), 'tenant', randomBytes(3).toString('hex'));
      assert.equal((await applyApprovedRestore(engine, { ...job, digest: preview.digest, safetyBackupId })).kind, 'applied');
      // after the commit, a row the apply did not touch changes: same row count, the versions tell
      await withDb(db.url, (c) => c.query(`UPDATE app.events SET kind = kind || '!' WHERE ctid = (SELECT ctid FROM app.events WHERE tenant_id = $1 ORDER BY event_id DESC LIMIT 1)`, [tenantId]));
      const verification = await verifyAppliedRestore(engine, job, true);
      const events = verification.tables.find((t) => t.table === 'app.events')!;
      assert.ok(!verification.ok && !events.ok && !events.note, `app.events read in full and found changed: ${JSON.stringify(events)}`);
      assert.ok(verification.tables.filter((t) => t.table !== 'app.events').every((t) => t.ok), 'every other table verified equal');
    } finally {
      await dropRestoreScratch(engine, job.restoreId);
    }
  });

  it('applies an approved plan only while the tenant is as the preview saw it: after any write, a new preview', async () => {
    await withDb(db.url, (c) => damageTenant(c, tenantId));
    const t = `'${tenantId}'`;
    const other = db.tenants.find((x) => x.tenantId !== tenantId)!.tenantId;
    const oldest = `(SELECT min(event_id) FROM app.events WHERE tenant_id = ${t})`;
    const writes: Record<string, string> = {
      'a row deleted': `DELETE FROM app.events WHERE tenant_id = ${t} AND event_id = ${oldest}`,
      // the same number of rows: only the row versions tell
      'a row deleted and another added': `WITH gone AS (DELETE FROM app.events WHERE tenant_id = ${t} AND event_id = ${oldest} RETURNING *)
         INSERT INTO app.events SELECT tenant_id, event_id + 1000000000, occurred_at, kind, payload FROM gone`,
      'a row of a table without a key updated': `UPDATE app.page_views SET path = path || '/x' WHERE ctid = (SELECT ctid FROM app.page_views WHERE tenant_id = ${t} LIMIT 1)`,
      // the plan deletes it by its key: the delete finds it, another tenant's now, and only the proof after the writes tells
      'a row the plan deletes moved to another tenant': `UPDATE app.users SET tenant_id = '${other}' WHERE tenant_id = ${t} AND email LIKE 'intruder-%'`,
    };
    for (const [what, sql] of Object.entries(writes)) {
      const job: RestoreJob = { restoreId: restoreLabel(new Date(), randomBytes(3).toString('hex')), tenantId, backupId, selection: parseSelection({ tenantId }) };
      try {
        const preview = await previewRestore(engine, job);
        await withDb(db.url, (c) => c.query(sql));
        const written = checksumsOf(await liveRows(engine.config, tenantId));
        const othersWritten = await others();
        const outcome = await applyApprovedRestore(engine, { ...job, digest: preview.digest, safetyBackupId: backupLabel(new Date(), 'tenant', randomBytes(3).toString('hex')) });
        assert.equal(outcome.kind, 'plan-changed', what);
        assert.deepEqual(checksumsOf(await liveRows(engine.config, tenantId)), written, `${what}: nothing applied`);
        assert.deepEqual(await others(), othersWritten, `${what}: other tenants untouched`);
      } finally {
        await dropRestoreScratch(engine, job.restoreId);
      }
    }
  });

  it('in missing-only mode re-inserts deleted rows and changes nothing else', async () => {
    await withDb(db.url, (c) => damageTenant(c, tenantId));
    const before = await liveRows(engine.config, tenantId);
    const { preview, verification } = await restore({ mode: 'missing-only' });
    assert.ok(preview.totals.insert > 0);
    assert.equal(preview.totals.update + preview.totals.delete, 0);
    assert.ok(verification!.ok);
    const after = await liveRows(engine.config, tenantId);
    for (const [table, rows] of before) {
      const now = new Set(after.get(table));
      assert.ok(rows.every((r) => now.has(r)), `${table}: every row that was there is still there, unchanged`);
      assert.equal(after.get(table)!.length, rows.length + preview.tables[table].insert, `${table}: only inserts`);
    }
    await restore(); // back to the backup for the next test
  });

  it('restores only the selected tables and reports the parents a selection needs', async () => {
    await withDb(db.url, (c) => damageTenant(c, tenantId));
    const blocked = await restore({ tables: ['app.tasks'] });
    const needs = blocked.preview.blockers.filter((b) => b.kind === 'selection-needs-parents');
    assert.ok(needs.some((b) => b.table === 'app.tasks' && /add app\.projects to --tables/.test(b.message)), JSON.stringify(blocked.preview.blockers));

    // deleting the new user would orphan the new project that references it
    const orphaning = await restore({ tables: ['app.users'] });
    assert.ok(
      orphaning.preview.blockers.some((b) => b.kind === 'selection-orphans-children' && /would orphan 1 rows of app\.projects \(projects_owner_id_fkey\): add app\.projects to --tables/.test(b.message)),
      JSON.stringify(orphaning.preview.blockers),
    );

    const before = await liveRows(engine.config, tenantId);
    const { preview, verification } = await restore({ tables: ['app.AuditLog', 'app.events'] });
    assert.deepEqual(Object.entries(preview.tables).filter(([, t]) => t.selected).map(([k]) => k).sort(), ['app.AuditLog', 'app.events']);
    assert.ok(preview.tables['app.AuditLog'].update === 3 && preview.tables['app.events'].insert > 0);
    assert.ok(verification!.ok);
    const after = await liveRows(engine.config, tenantId);
    for (const table of ['app.tasks', 'app.users', 'app.projects']) assert.deepEqual(after.get(table), before.get(table), `${table} (not selected) untouched`);
    await restore();
  });

  it('checks foreign keys set-based in the apply: a restored row that references another tenant\'s row, gone since, rolls it back', async () => {
    const other = db.tenants.find((t) => t.tenantId !== tenantId)!.tenantId;
    const { commentId, userId, author } = await withDb(db.url, async (c) => {
      const user = await c.query(`INSERT INTO app.users (tenant_id, email, created_at) VALUES ($1, 'fk-check@example.com', now()) RETURNING user_id`, [other]);
      const comment = await c.query(
        `SELECT c.comment_id, c.author_id FROM app.comments c JOIN app.tasks t USING (task_id) JOIN app.projects p USING (project_id) WHERE p.tenant_id = $1 ORDER BY c.comment_id LIMIT 1`,
        [tenantId],
      );
      await c.query(`UPDATE app.comments SET author_id = $2 WHERE comment_id = $1`, [comment.rows[0].comment_id, user.rows[0].user_id]);
      return { commentId: comment.rows[0].comment_id, userId: user.rows[0].user_id, author: comment.rows[0].author_id };
    });
    // a backup in which a comment of the tenant names the other tenant's user as its author
    const crossBackupId = await backUpNow(engine, tenantId);
    // since: the comment gets its author back, then is deleted (the restore will insert it); the user goes
    await withDb(db.url, async (c) => {
      await c.query(`UPDATE app.comments SET author_id = $2 WHERE comment_id = $1`, [commentId, author]);
      await c.query(`DELETE FROM app.comments WHERE reply_to = $1`, [commentId]);
      await c.query(`DELETE FROM app.comments WHERE comment_id = $1`, [commentId]);
      await c.query(`DELETE FROM app.users WHERE user_id = $1`, [userId]);
    });
    // the apply rolls back on the foreign key, changing nothing
    await refusedByForeignKey(crossBackupId, 'comments_author_id_fkey', async (preview) => assert.ok(preview.tables['app.comments'].insert > 0, 'the deleted comment is to insert'));
    // the same when every comment of the tenant is gone: the apply loads the table whole from its object
    await withDb(db.url, (c) =>
      c.query(`DELETE FROM app.comments WHERE task_id IN (SELECT t.task_id FROM app.tasks t JOIN app.projects p USING (project_id) WHERE p.tenant_id = $1)`, [tenantId]),
    );
    const manifest = await readManifest(engine.store, tenantBackupPrefix(tenantId, crossBackupId));
    const backedUp = manifest.tables.find((t) => t.table === 'app.comments')!.rows;
    await refusedByForeignKey(crossBackupId, 'comments_author_id_fkey', async (preview) => assert.equal(preview.tables['app.comments'].insert, backedUp, 'every backed-up comment is to insert'));
  });

  it('blocks rows whose parent, through the key that ties them to the tenant, is another tenant\'s now', async () => {
    const other = db.tenants.find((t) => t.tenantId !== tenantId)!.tenantId;
    const { project, task } = await withDb(db.url, async (c) => {
      const owner = (await c.query(`SELECT min(user_id) AS id FROM app.users WHERE tenant_id = $1`, [tenantId])).rows[0].id;
      const p = (await c.query(`INSERT INTO app.projects (tenant_id, owner_id, name) VALUES ($1, $2, 'moves away') RETURNING project_id`, [tenantId, owner])).rows[0].project_id;
      const t = (await c.query(`INSERT INTO app.tasks (project_id, title) VALUES ($1, 'left behind') RETURNING task_id`, [p])).rows[0].task_id;
      return { project: p as string, task: t as string };
    });
    const movedBackupId = await backUpNow(engine, tenantId);
    // since: the project went to another tenant, and its task was deleted. Restoring the tasks
    // alone would insert the task under its project, which exists, but as the other tenant's
    await withDb(db.url, async (c) => {
      await c.query(`UPDATE app.projects SET tenant_id = $2 WHERE project_id = $1`, [project, other]);
      await c.query(`DELETE FROM app.tasks WHERE task_id = $1`, [task]);
    });
    const job: RestoreJob = { restoreId: restoreLabel(new Date(), randomBytes(3).toString('hex')), tenantId, backupId: movedBackupId, selection: parseSelection({ tenantId, tables: ['app.tasks'] }) };
    try {
      const preview = await previewRestore(engine, job);
      assert.deepEqual(
        preview.blockers.map((b) => [b.kind, b.table, b.rows]),
        [['parent-of-another-tenant', 'app.tasks', 1]],
        JSON.stringify(preview.blockers),
      );
      assert.match(preview.blockers[0].message, /hang from app\.projects rows that now belong to another tenant \(tasks_project_id_fkey\)/);
      const before = checksumsOf(await liveRows(engine.config, tenantId));
      await assert.rejects(applyApprovedRestore(engine, { ...job, digest: preview.digest }), (e: Error) => e instanceof TenantsafeError && e.type === ErrorType.RestoreBlocked);
      assert.deepEqual(checksumsOf(await liveRows(engine.config, tenantId)), before, 'nothing changed');
    } finally {
      await dropRestoreScratch(engine, job.restoreId);
      await withDb(db.url, (c) => c.query(`DELETE FROM app.projects WHERE project_id = $1`, [project]));
    }
  });

  it('proves inside the apply that every row it wrote is the tenant\'s: a trigger that reroutes a restored task to another tenant rolls it back', async () => {
    const other = db.tenants.find((t) => t.tenantId !== tenantId)!.tenantId;
    const task = await withDb(db.url, async (c) => {
      const mine = (await c.query(`SELECT min(project_id) AS id FROM app.projects WHERE tenant_id = $1`, [tenantId])).rows[0].id;
      const theirs = (await c.query(`SELECT min(project_id) AS id FROM app.projects WHERE tenant_id = $1`, [other])).rows[0].id;
      // a trigger that fires even in replica mode, as the apply runs where it may
      await c.query(`CREATE FUNCTION app.reroute() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN IF NEW.title = 'rerouted' THEN NEW.project_id := ${Number(theirs)}; END IF; RETURN NEW; END $$`);
      await c.query(`CREATE TRIGGER reroute BEFORE INSERT ON app.tasks FOR EACH ROW EXECUTE FUNCTION app.reroute()`);
      await c.query(`ALTER TABLE app.tasks ENABLE ALWAYS TRIGGER reroute`);
      return (await c.query(`UPDATE app.tasks SET title = 'rerouted' WHERE task_id = (SELECT min(task_id) FROM app.tasks WHERE project_id = $1) RETURNING task_id, title`, [mine])).rows[0];
    });
    const restoreId = restoreLabel(new Date(), randomBytes(3).toString('hex'));
    try {
      const job: RestoreJob = { restoreId, tenantId, backupId: await backUpNow(engine, tenantId), selection: parseSelection({ tenantId }) };
      await withDb(db.url, async (c) => {
        await c.query(`DELETE FROM app.comments WHERE reply_to IN (SELECT comment_id FROM app.comments WHERE task_id = $1)`, [task.task_id]);
        for (const table of ['app.comments', 'app.task_labels', 'app.tasks']) await c.query(`DELETE FROM ${table} WHERE task_id = $1`, [task.task_id]);
      });
      const preview = await previewRestore(engine, job);
      assert.equal(preview.tables['app.tasks'].insert, 1, 'the deleted task is to insert');
      const before = await Promise.all([tenantId, other].map(async (t) => checksumsOf(await liveRows(engine.config, t))));
      await assert.rejects(
        applyApprovedRestore(engine, { ...job, digest: preview.digest }),
        (e: Error) => e instanceof TenantsafeError && e.type === ErrorType.RestoreBlocked && /wrote 1 rows of app\.tasks that are not the tenant's; rolled back/.test(e.message),
      );
      const after = await Promise.all([tenantId, other].map(async (t) => checksumsOf(await liveRows(engine.config, t))));
      assert.deepEqual(after, before, 'nothing changed, for either tenant');
    } finally {
      await dropRestoreScratch(engine, restoreId);
      await withDb(db.url, (c) => c.query(`DROP TRIGGER reroute ON app.tasks; DROP FUNCTION app.reroute()`));
    }
    await restore();
  });

  it('rolls the apply back for good when a statement changes another number of rows than the approved plan: a trigger that skips deletes', async () => {
    await withDb(db.url, async (c) => {
      await damageTenant(c, tenantId);
      // fires even in replica mode, as the apply runs where it may
      await c.query(`CREATE FUNCTION app.keep() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$`);
      await c.query(`CREATE TRIGGER keep BEFORE DELETE ON app.projects FOR EACH ROW EXECUTE FUNCTION app.keep()`);
      await c.query(`ALTER TABLE app.projects ENABLE ALWAYS TRIGGER keep`);
    });
    const job: RestoreJob = { restoreId: restoreLabel(new Date(), randomBytes(3).toString('hex')), tenantId, backupId, selection: parseSelection({ tenantId }) };
    try {
      const preview = await previewRestore(engine, job);
      assert.equal(preview.tables['app.projects'].delete, 1, 'the project made since the backup is to delete');
      const before = checksumsOf(await liveRows(engine.config, tenantId));
      await assert.rejects(
        applyApprovedRestore(engine, { ...job, digest: preview.digest }),
        (e: Error) => e instanceof TenantsafeError && e.type === ErrorType.RestoreBlocked && !isTransient(e.type) && /delete on app\.projects changed 0 rows where the approved plan said 1; rolled back/.test(e.message),
      );
      assert.deepEqual(checksumsOf(await liveRows(engine.config, tenantId)), before, 'nothing changed');
    } finally {
      await dropRestoreScratch(engine, job.restoreId);
      await withDb(db.url, (c) => c.query(`DROP TRIGGER keep ON app.projects; DROP FUNCTION app.keep()`));
    }
    await restore();
  });

  it('blocks rows that would collide on a unique key with a live row left in place; a replace that deletes that row goes through', async () => {
    await withDb(db.url, (c) => c.query(`INSERT INTO app.users (tenant_id, email, created_at) VALUES ($1, 'unique@globex.example', now())`, [tenantId]));
    const uniqueBackupId = await backUpNow(engine, tenantId);
    // since: the user was deleted, and a new one took the address
    await withDb(db.url, async (c) => {
      await c.query(`DELETE FROM app.users WHERE tenant_id = $1 AND email = 'unique@globex.example'`, [tenantId]);
      await c.query(`INSERT INTO app.users (tenant_id, email, created_at) VALUES ($1, 'unique@globex.example', now())`, [tenantId]);
    });
    const saved = backupId;
    backupId = uniqueBackupId;
    try {
      // missing-only keeps the new user: the deleted one cannot come back beside it
      const kept = await restore({ mode: 'missing-only' });
      assert.deepEqual(
        kept.preview.blockers.map((b) => [b.kind, b.table, b.rows]),
        [['unique-conflict', 'app.users', 1]],
        JSON.stringify(kept.preview.blockers),
      );
      assert.match(kept.preview.blockers[0].message, /collide on unique key users_tenant_id_email_key \(tenant_id, email\)/);
      assert.equal(kept.outcome, undefined, 'not applied');
      // a replace deletes the new user first
      const replaced = await restore();
      assert.deepEqual(replaced.preview.blockers, []);
      assert.ok(replaced.verification?.ok, JSON.stringify(replaced.verification));
    } finally {
      backupId = saved;
    }
    await restore();
  });

  it('locks the parents of the rows it writes, as Postgres would: a parent deleted meanwhile fails the apply, it never leaves an orphan', async () => {
    // a backup in which one invoice of the tenant is on plan 10; since, the invoice is deleted (the restore will insert it)
    const { invoiceId } = await withDb(db.url, async (c) => {
      await c.query(`INSERT INTO app.plans VALUES (10, 'Race', 'pro', 10)`);
      const r = await c.query(`UPDATE app.invoices SET plan_id = 10 WHERE invoice_id = (SELECT min(invoice_id) FROM app.invoices WHERE tenant_id = $1) RETURNING invoice_id`, [tenantId]);
      return { invoiceId: r.rows[0].invoice_id as string };
    });
    const raceBackupId = await backUpNow(engine, tenantId);
    await withDb(db.url, async (c) => {
      await c.query(`DELETE FROM app."InvoiceLines" WHERE invoice_id = $1`, [invoiceId]);
      await c.query(`DELETE FROM app.invoices WHERE invoice_id = $1`, [invoiceId]);
    });
    const job: RestoreJob = { restoreId: restoreLabel(new Date(), randomBytes(3).toString('hex')), tenantId, backupId: raceBackupId, selection: parseSelection({ tenantId }) };
    const impatient = new Engine(parseConfig({ database: { url: db.url }, storage: { primary: { kind: 'local', path: dir } }, restore: { lockTimeout: '1s' } }, { env: {}, source: 'test', baseDir: dir }));
    const deleter = await connect(db.url);
    try {
      const preview = await previewRestore(engine, job);
      assert.equal(preview.tables['app.invoices'].insert, 1);
      // another session deletes the plan while the apply runs (its snapshot still shows the plan)
      await deleter.query(`BEGIN; DELETE FROM app.plans WHERE plan_id = 10`);
      await assert.rejects(applyApprovedRestore(impatient, { ...job, digest: preview.digest }), /lock timeout/);
      await deleter.query('COMMIT');
      const orphans = await withDb(db.url, (c) => c.query(`SELECT count(*)::int AS n FROM app.invoices i WHERE NOT EXISTS (SELECT 1 FROM app.plans p WHERE p.plan_id = i.plan_id)`));
      assert.equal(orphans.rows[0].n, 0, 'no invoice left on a plan that is gone');
    } finally {
      await deleter.end();
      await impatient.close();
      await dropRestoreScratch(engine, job.restoreId);
    }
  });

  it('refuses rows that reference a global row that is gone, unless told to skip them', async () => {
    await withDb(db.url, async (c) => {
      await c.query(`INSERT INTO app.plans VALUES (9, 'Legacy', 'pro', 10)`);
      await c.query(`UPDATE app.invoices SET plan_id = 9 WHERE invoice_id = (SELECT min(invoice_id) FROM app.invoices WHERE tenant_id = $1)`, [tenantId]);
    });
    const legacyBackup = backupId;
    backupId = await backUpNow(engine, tenantId, new Date(Date.now() + 1000));
    await withDb(db.url, async (c) => {
      await c.query(`DELETE FROM app."InvoiceLines" WHERE invoice_id IN (SELECT invoice_id FROM app.invoices WHERE plan_id = 9)`);
      await c.query(`DELETE FROM app.invoices WHERE plan_id = 9`);
      await c.query(`DELETE FROM app.plans WHERE plan_id = 9`);
    });
    const refused = await restore();
    const missing = refused.preview.blockers.find((b) => b.kind === 'missing-global-refs');
    assert.ok(missing && missing.table === 'app.invoices' && missing.rows === 1 && /global table app\.plans/.test(missing.message), JSON.stringify(refused.preview.blockers));
    assert.equal(refused.outcome, undefined);
    // the same when the tenant has no invoice left: the table is diffed from its key and join columns alone
    await withDb(db.url, async (c) => {
      await c.query(`DELETE FROM app."InvoiceLines" WHERE invoice_id IN (SELECT invoice_id FROM app.invoices WHERE tenant_id = $1)`, [tenantId]);
      await c.query(`DELETE FROM app.invoices WHERE tenant_id = $1`, [tenantId]);
    });
    const wiped = await restore();
    const stillMissing = wiped.preview.blockers.find((b) => b.kind === 'missing-global-refs');
    assert.ok(stillMissing && stillMissing.table === 'app.invoices' && stillMissing.rows === 1, JSON.stringify(wiped.preview.blockers));

    const skipped = await restore({ missingRefs: 'skip' });
    assert.ok(skipped.preview.warnings.some((w) => /1 backed-up rows of app\.invoices are skipped/.test(w)), JSON.stringify(skipped.preview.warnings));
    assert.ok(skipped.preview.warnings.some((w) => /3 backed-up rows of app\.InvoiceLines are skipped/.test(w)), 'the invoice lines go with their invoice');
    assert.ok(skipped.verification!.ok);
    backupId = legacyBackup;
    await restore();
  });

  it('stops at a corrupted object (one flipped byte) before touching anything', async () => {
    const manifest = await readManifest(engine.store, tenantBackupPrefix(tenantId, backupId));
    const victim = manifest.tables.find((t) => t.table === 'app.users')!;
    const file = path.join(dir, tenantBackupPrefix(tenantId, backupId), victim.object.key);
    const original = fs.readFileSync(file);
    const flipped = Buffer.from(original);
    flipped[Math.floor(flipped.length / 2)] ^= 0x01;
    fs.writeFileSync(file, flipped);
    await withDb(db.url, (c) => damageTenant(c, tenantId));
    const before = checksumsOf(await liveRows(engine.config, tenantId));
    try {
      await assert.rejects(restore(), (e: TenantsafeError) => e.type === ErrorType.CorruptBackup && e.message.includes(victim.object.key));
      assert.deepEqual(checksumsOf(await liveRows(engine.config, tenantId)), before);
    } finally {
      fs.writeFileSync(file, original);
    }
    await restore();
  });

  it('loads a wiped table straight from its object, vacuumed first, checked again: changed since the preview, the apply rolls back', async () => {
    const wipedAt = new Date();
    await withDb(db.url, async (c) => {
      await c.query(`DELETE FROM app.events WHERE tenant_id = $1`, [tenantId]);
      await c.query('SELECT pg_stat_force_next_flush()'); // its dead tuples counted now, as long before a real approval
    });
    const manifest = await readManifest(engine.store, tenantBackupPrefix(tenantId, backupId));
    const events = manifest.tables.find((t) => t.table === 'app.events')!;
    const file = path.join(dir, tenantBackupPrefix(tenantId, backupId), events.object.key);
    const job: RestoreJob = { restoreId: restoreLabel(new Date(), randomBytes(3).toString('hex')), tenantId, backupId, selection: parseSelection({ tenantId }) };
    const original = fs.readFileSync(file);
    try {
      const preview = await previewRestore(engine, job);
      assert.equal(preview.tables['app.events'].insert, events.rows, 'every backed-up event is an insert');
      const flipped = Buffer.from(original);
      flipped[Math.floor(flipped.length / 2)] ^= 0x01;
      fs.writeFileSync(file, flipped);
      const before = checksumsOf(await liveRows(engine.config, tenantId));
      await assert.rejects(applyApprovedRestore(engine, { ...job, digest: preview.digest }), (e: Error) => e instanceof TenantsafeError && e.type === ErrorType.CorruptBackup && e.message.includes(events.object.key));
      assert.deepEqual(checksumsOf(await liveRows(engine.config, tenantId)), before, 'nothing changed');
      fs.writeFileSync(file, original);
      const outcome = await applyApprovedRestore(engine, { ...job, digest: preview.digest });
      assert.ok(outcome.kind === 'applied' && outcome.result.applied['app.events'].insert === events.rows);
      assert.ok((await verifyAppliedRestore(engine, job, true)).ok);
      const vacuumed = await withDb(db.url, (c) =>
        c.query(`SELECT max(last_vacuum) AS at FROM pg_stat_user_tables WHERE relid IN (SELECT relid FROM pg_partition_tree('app.events'))`),
      );
      assert.ok(vacuumed.rows[0].at >= wipedAt, `app.events, holding the wiped rows as dead tuples, was vacuumed before the load (last vacuum ${vacuumed.rows[0].at})`);
    } finally {
      fs.writeFileSync(file, original);
      await dropRestoreScratch(engine, job.restoreId);
    }
  });

  it('after a crash emptied the scratch tables, stages again as the preview did: the approved plan applies, and a verification still sees what is missing', async () => {
    // what crash recovery does to every unlogged table, the staged rows and the stored plan among them: back to empty
    const crashReset = (restoreId: string) =>
      withDb(db.url, async (c) => {
        const scratch = await c.query<{ t: string }>(`SELECT oid::regclass::text AS t FROM pg_class WHERE relnamespace = $1::regnamespace AND relkind = 'r'`, [scratchSchemaName(restoreId)]);
        await c.query(`TRUNCATE ${scratch.rows.map((r) => r.t).join(', ')}`);
      });
    await withDb(db.url, async (c) => {
      await damageTenant(c, tenantId);
      await c.query(`DELETE FROM app.events WHERE tenant_id = $1`, [tenantId]);
    });
    const job: RestoreJob = { restoreId: restoreLabel(new Date(), randomBytes(3).toString('hex')), tenantId, backupId, selection: parseSelection({ tenantId }) };
    try {
      const preview = await previewRestore(engine, job);
      await crashReset(job.restoreId);
      const outcome = await applyApprovedRestore(engine, { ...job, digest: preview.digest });
      assert.equal(outcome.kind, 'applied', 'the same plan as the one approved (a wiped table staged from its first keys, as in the preview)');
      assert.ok((await verifyAppliedRestore(engine, job, true)).ok);
      assert.deepEqual(checksumsOf(await liveRows(engine.config, tenantId)), checksumsOf((await readBackup(engine.store, tenantId, backupId)).rows), 'the tenant equals the backup');
    } finally {
      await dropRestoreScratch(engine, job.restoreId);
    }

    // a missing-only restore is verified against its staged rows: emptied, they would show nothing missing
    await withDb(db.url, (c) => c.query(`DELETE FROM app.comments WHERE comment_id IN (SELECT c.comment_id FROM app.comments c JOIN app.tasks USING (task_id) JOIN app.projects p USING (project_id) WHERE p.tenant_id = $1 AND NOT EXISTS (SELECT 1 FROM app.comments r WHERE r.reply_to = c.comment_id) ORDER BY 1 LIMIT 3)`, [tenantId]));
    const missingOnly: RestoreJob = { restoreId: restoreLabel(new Date(), randomBytes(3).toString('hex')), tenantId, backupId, selection: parseSelection({ tenantId, mode: 'missing-only' }) };
    try {
      const preview = await previewRestore(engine, missingOnly);
      assert.equal(preview.tables['app.comments'].insert, 3);
      assert.equal((await applyApprovedRestore(engine, { ...missingOnly, digest: preview.digest })).kind, 'applied');
      await withDb(db.url, (c) => c.query(`DELETE FROM app.comments WHERE comment_id IN (SELECT c.comment_id FROM app.comments c JOIN app.tasks USING (task_id) JOIN app.projects p USING (project_id) WHERE p.tenant_id = $1 AND NOT EXISTS (SELECT 1 FROM app.comments r WHERE r.reply_to = c.comment_id) ORDER BY 1 LIMIT 1)`, [tenantId]));
      await crashReset(missingOnly.restoreId);
      const verification = await verifyAppliedRestore(engine, missingOnly, true);
      assert.equal(verification.ok, false, 'a comment deleted after the apply is missing again');
      assert.equal(verification.tables.find((t) => t.table === 'app.comments')!.actual, '1 rows left to insert');
    } finally {
      await dropRestoreScratch(engine, missingOnly.restoreId);
    }
  });

  it('diffs the tables a tenant has no row in from their keys alone, conflicts included; a write before the apply has them staged in full and previewed again', async () => {
    const manifest = await readManifest(engine.store, tenantBackupPrefix(tenantId, backupId));
    const rowsOf = (table: string) => manifest.tables.find((t) => t.table === table)!.rows;
    const other = db.tenants.find((t) => t.tenantId !== tenantId)!.tenantId;
    const { taken, at } = await withDb(db.url, async (c) => {
      const r = await c.query(`SELECT (SELECT max("auditId") FROM app."AuditLog" WHERE tenant_id = $1) AS taken, (SELECT min(occurred_at) FROM app.events WHERE tenant_id = $1) AS at`, [tenantId]);
      // one backed-up key (the last: not among the first few) now belongs to another tenant's row; the rest of the three tables is wiped
      await c.query(`UPDATE app."AuditLog" SET tenant_id = $2 WHERE "auditId" = $1`, [r.rows[0].taken, other]);
      for (const table of ['app."AuditLog"', 'app.events', 'app.page_views']) await c.query(`DELETE FROM ${table} WHERE tenant_id = $1`, [tenantId]);
      return r.rows[0] as { taken: string; at: Date };
    });
    const job: RestoreJob = { restoreId: restoreLabel(new Date(), randomBytes(3).toString('hex')), tenantId, backupId, selection: parseSelection({ tenantId }) };
    const columnsOf = (letter: 't' | 'd', position: number) =>
      withDb(db.url, async (c) => {
        const table = scratchTable(job.restoreId, letter, position);
        return (await c.query(`SELECT array_agg(attname ORDER BY attnum)::text[] AS names FROM pg_attribute WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped`, [table])).rows[0].names as string[] | null;
      });
    const eventsAt = manifest.tables.findIndex((t) => t.table === 'app.events');
    try {
      const first = await previewRestore(engine, job);
      assert.deepEqual(first.tables['app.events'], { ...first.tables['app.events'], insert: rowsOf('app.events'), update: 0, delete: 0 });
      assert.equal(first.tables['app.events'].samples.insert?.length, 5);
      assert.deepEqual([first.tables['app.page_views'].insert, first.tables['app.page_views'].delete], [rowsOf('app.page_views'), 0]);
      assert.equal(first.tables['app.AuditLog'].insert, rowsOf('app.AuditLog') - 1);
      assert.deepEqual(
        first.blockers.map((b) => [b.kind, b.table, b.rows]),
        [['key-conflict', 'app.AuditLog', 1]],
      );
      // staged from its key columns only, the staged table then made the diff table (renamed, not copied)
      assert.deepEqual([await columnsOf('t', eventsAt), await columnsOf('d', eventsAt)], [null, ['tenant_id', 'event_id', 'occurred_at', 'kind']]);
      // events' keys hold the tenant id and its one foreign key is on it: no check needs them, its first five are staged (the
      // preview's sample); AuditLog's keys are checked for conflicts: every one is staged
      assert.deepEqual([await diffRows(job.restoreId, manifest, 'app.events'), await diffRows(job.restoreId, manifest, 'app.AuditLog')], [5, rowsOf('app.AuditLog')]);

      // the key is the tenant's again, and a new event appears: the apply stages in full and previews again
      await withDb(db.url, async (c) => {
        await c.query(`UPDATE app."AuditLog" SET tenant_id = $1 WHERE "auditId" = $2`, [tenantId, taken]);
        await c.query(`INSERT INTO app.events (tenant_id, event_id, occurred_at, kind) VALUES ($1, 987654321, $2, 'new')`, [tenantId, at]);
      });
      const changed = await applyApprovedRestore(engine, { ...job, digest: first.digest });
      assert.equal(changed.kind, 'plan-changed');
      const second = changed.kind === 'plan-changed' ? changed.preview : first;
      assert.deepEqual([second.tables['app.events'].insert, second.tables['app.events'].delete], [rowsOf('app.events'), 1]);
      assert.deepEqual([second.tables['app.AuditLog'].insert, second.tables['app.AuditLog'].update], [rowsOf('app.AuditLog') - 1, 0]);
      assert.equal(second.blockers.length, 0);
      assert.equal((await columnsOf('t', eventsAt))?.length, 5, 'events staged in full');
      const outcome = await applyApprovedRestore(engine, { ...job, digest: second.digest });
      assert.equal(outcome.kind, 'applied');
      assert.ok((await verifyAppliedRestore(engine, job, true)).ok);
    } finally {
      await dropRestoreScratch(engine, job.restoreId);
    }
  });

  it('asks for no second approval when the apply diffs again in full and finds the same plan: tables the preview staged from their keys or first keys alone', async () => {
    // a backup whose first rows of app.events are not its smallest keys (three rows rewritten, so last in the heap)
    await withDb(db.url, (c) => c.query(`UPDATE app.events SET kind = kind WHERE tenant_id = $1 AND event_id IN (SELECT event_id FROM app.events WHERE tenant_id = $1 ORDER BY event_id LIMIT 3)`, [tenantId]));
    const shuffled = await backUpNow(engine, tenantId);
    await withDb(db.url, async (c) => {
      for (const table of ['app."AuditLog"', 'app.events', 'app.page_views']) await c.query(`DELETE FROM ${table} WHERE tenant_id = $1`, [tenantId]);
    });
    const job: RestoreJob = { restoreId: restoreLabel(new Date(), randomBytes(3).toString('hex')), tenantId, backupId: shuffled, selection: parseSelection({ tenantId }) };
    try {
      const preview = await previewRestore(engine, job);
      assert.deepEqual(
        Object.entries(preview.tables).filter(([, t]) => t.insert + t.update + t.delete > 0).map(([table]) => table).sort(),
        ['app.AuditLog', 'app.events', 'app.page_views'],
      );
      // a write that changes no value: new row versions, so the apply cannot reuse the plan and diffs every table in full
      await withDb(db.url, (c) => c.query(`UPDATE app.projects SET tenant_id = tenant_id WHERE tenant_id = $1`, [tenantId]));
      const outcome = await applyApprovedRestore(engine, { ...job, digest: preview.digest });
      const again = outcome.kind === 'plan-changed' ? outcome.preview : undefined;
      const differing = again ? Object.keys(preview.tables).filter((t) => JSON.stringify(preview.tables[t]) !== JSON.stringify(again.tables[t])) : [];
      assert.equal(outcome.kind, 'applied', `the same plan, asked to be approved again; tables described otherwise: ${differing.map((t) => `${t} ${JSON.stringify(preview.tables[t])} then ${JSON.stringify(again!.tables[t])}`).join('; ')}`);
      assert.ok((await verifyAppliedRestore(engine, job, true)).ok);
    } finally {
      await dropRestoreScratch(engine, job.restoreId);
    }
  });

  it('stages every key of a wiped table whose foreign key the apply checks, even when its key holds the tenant id', async () => {
    const other = db.tenants.find((t) => t.tenantId !== tenantId)!.tenantId;
    // keyed by the tenant id, with a foreign key on another column: its last row references a task of another tenant's
    const foreignTask = await withDb(db.url, async (c) => {
      await c.query(`CREATE TABLE app.task_notes (tenant_id text NOT NULL REFERENCES app.tenants, note_id int NOT NULL, task_id bigint NOT NULL REFERENCES app.tasks, PRIMARY KEY (tenant_id, note_id))`);
      await c.query(
        `INSERT INTO app.task_notes SELECT $1, row_number() OVER (ORDER BY t.task_id), t.task_id FROM app.tasks t JOIN app.projects p USING (project_id) WHERE p.tenant_id = $1 LIMIT 40`,
        [tenantId],
      );
      const project = (await c.query(`SELECT min(project_id) AS id FROM app.projects WHERE tenant_id = $1`, [other])).rows[0].id;
      const task = (await c.query(`INSERT INTO app.tasks (project_id, title) VALUES ($1, 'noted by another tenant') RETURNING task_id`, [project])).rows[0].task_id;
      await c.query(`INSERT INTO app.task_notes VALUES ($1, 1000, $2)`, [tenantId, task]);
      return task as string;
    });
    try {
      const notedBackupId = await backUpNow(engine, tenantId);
      const manifest = await readManifest(engine.store, tenantBackupPrefix(tenantId, notedBackupId));
      // since: the tenant's notes and events are wiped, and the other tenant's task is gone
      await withDb(db.url, async (c) => {
        for (const table of ['app.task_notes', 'app.events']) await c.query(`DELETE FROM ${table} WHERE tenant_id = $1`, [tenantId]);
        await c.query(`DELETE FROM app.tasks WHERE task_id = $1`, [foreignTask]);
      });
      await refusedByForeignKey(notedBackupId, 'task_notes_task_id_fkey', async (preview, restoreId) => {
        assert.equal(preview.tables['app.task_notes'].insert, 41, 'every backed-up note is to insert');
        const staged = [await diffRows(restoreId, manifest, 'app.task_notes'), await diffRows(restoreId, manifest, 'app.events')];
        assert.deepEqual(staged, [41, 5], 'every note key staged (the apply checks their tasks), five of the events');
      });
    } finally {
      await withDb(db.url, (c) => c.query('DROP TABLE app.task_notes'));
    }
    await restore();
  });

  it('stages nothing of a table whose rows are the very ones backed up, unless a parent moved rows in: same plan as staging it all', async () => {
    const other = db.tenants.find((t) => t.tenantId !== tenantId)!.tenantId;
    // before the backup: another tenant's project with two tasks, and two tasks of the tenant's (none with comments or labels)
    const { project, ours } = await withDb(db.url, async (c) => {
      const owner = (await c.query(`SELECT min(user_id) AS id FROM app.users WHERE tenant_id = $1`, [other])).rows[0].id;
      const p = (await c.query(`INSERT INTO app.projects (tenant_id, owner_id, name) VALUES ($1, $2, 'moves') RETURNING project_id`, [other, owner])).rows[0].project_id;
      await c.query(`INSERT INTO app.tasks (project_id, title) VALUES ($1, 'a'), ($1, 'b')`, [p]);
      const mine = (await c.query(`SELECT min(project_id) AS id FROM app.projects WHERE tenant_id = $1`, [tenantId])).rows[0].id;
      const t = await c.query(`INSERT INTO app.tasks (project_id, title) VALUES ($1, 'c'), ($1, 'd') RETURNING task_id`, [mine]);
      return { project: p as string, ours: t.rows.map((r) => r.task_id as string) };
    });
    const fresh = await backUpNow(engine, tenantId);
    const manifest = await readManifest(engine.store, tenantBackupPrefix(tenantId, fresh));
    // after it: the project (and so its two tasks) moves into the tenant, two of its tasks go, and one event changes:
    // app.tasks holds as many rows as backed up, none of them written since; only their parent was
    await withDb(db.url, async (c) => {
      await c.query(`UPDATE app.projects SET tenant_id = $1 WHERE project_id = $2`, [tenantId, project]);
      await c.query(`DELETE FROM app.tasks WHERE task_id = ANY($1)`, [ours]);
      await c.query(`UPDATE app.events SET kind = 'moved' WHERE ctid = (SELECT ctid FROM app.events WHERE tenant_id = $1 LIMIT 1)`, [tenantId]);
    });
    const expected = expectedDifferences(manifest, (await readBackup(engine.store, tenantId, fresh)).rows, await liveRows(engine.config, tenantId));
    const job: RestoreJob = { restoreId: restoreLabel(new Date(), randomBytes(3).toString('hex')), tenantId, backupId: fresh, selection: parseSelection({ tenantId }) };
    const staged = (table: string) =>
      withDb(db.url, async (c) => {
        const position = manifest.tables.findIndex((t) => t.table === table);
        return (await c.query(`SELECT to_regclass($1) IS NOT NULL AS yes`, [scratchTable(job.restoreId, 't', position)])).rows[0].yes as boolean;
      });
    try {
      const preview = await previewRestore(engine, job);
      for (const [table, diff] of Object.entries(expected)) {
        const p = preview.tables[table];
        assert.deepEqual({ insert: p.insert, update: p.update, delete: p.delete }, diff, `${table}: preview counts`);
      }
      assert.deepEqual([preview.tables['app.tasks'].insert, preview.tables['app.tasks'].delete, preview.tables['app.projects'].delete], [2, 2, 1], 'the moved-in tasks found');
      const skipped = [];
      for (const m of manifest.tables) if (!(await staged(m.table))) skipped.push(m.table);
      assert.deepEqual(skipped.sort(), ['app.AuditLog', 'app.InvoiceLines', 'app.comments', 'app.invoices', 'app.labels', 'app.page_views', 'app.task_labels', 'app.tenants', 'app.users'], 'the unchanged tables staged nothing');

      // the same plan, digest included, as staging every table and diffing it
      const full = await withDb(db.url, async (c) => {
        const ctx = await loadRestoreContext(c, { tenancy: engine.config.tenancy, manifest, restoreId: job.restoreId });
        await c.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
        try {
          await stageInFull(c, ctx, backupSource(engine.store, tenantBackupPrefix(tenantId, fresh), manifest));
          return await computePlan(c, ctx, { tenantId, backupId: fresh, snapshotAt: manifest.snapshot.at, selection: job.selection });
        } finally {
          await c.query('ROLLBACK');
        }
      });
      assert.equal(full.digest, preview.digest, 'digest of the plan computed from every table staged');

      const beforeApply = checksumsOf(await liveRows(engine.config, tenantId));
      const safetyBackupId = backupLabel(new Date(), 'tenant', randomBytes(3).toString('hex'));
      assert.equal((await applyApprovedRestore(engine, { ...job, digest: preview.digest, safetyBackupId })).kind, 'applied');
      assert.ok((await verifyAppliedRestore(engine, job, true)).ok, 'verified');
      assert.deepEqual(checksumsOf(await liveRows(engine.config, tenantId)), checksumsOf((await readBackup(engine.store, tenantId, fresh)).rows), 'the tenant equals the backup');
      // the safety backup copied the objects of the tables staged nothing (encrypted: an export
      // would store other bytes), exported the others, and holds the tenant as the apply found it
      const safety = await readBackup(engine.store, tenantId, safetyBackupId);
      assert.deepEqual(checksumsOf(safety.rows), beforeApply, 'the safety backup is the tenant before the apply');
      const sha = (m: TenantManifest, table: string) => m.tables.find((t) => t.table === table)!.object.sha256;
      const copied = manifest.tables.map((t) => t.table).filter((table) => sha(safety.manifest, table) === sha(manifest, table));
      assert.deepEqual(copied.sort(), skipped.sort(), 'copied: the tables staged nothing');
    } finally {
      await dropRestoreScratch(engine, job.restoreId);
    }
  });

  it('compares row versions with a backup only in the database and history it read', async () => {
    const manifest = await readManifest(engine.store, tenantBackupPrefix(tenantId, backupId));
    const origin = manifest.snapshot.origin!;
    const as = (o: Partial<typeof origin>) => ({ ...manifest, snapshot: { ...manifest.snapshot, origin: { ...origin, ...o } } });
    await withDb(db.url, async (c) => {
      assert.equal(await comparableBackupXmin(c, manifest), origin.xmin, 'the database it read');
      assert.equal(await comparableBackupXmin(c, as({ timeline: origin.timeline + 1 })), undefined, 'another timeline (a point-in-time recovery since)');
      assert.equal(await comparableBackupXmin(c, as({ systemIdentifier: '1' })), undefined, 'another cluster');
      assert.equal(await comparableBackupXmin(c, as({ databaseOid: origin.databaseOid + 1 })), undefined, 'another database (a copy)');
      assert.equal(await comparableBackupXmin(c, as({ xmin: String(BigInt(origin.xmin) + 10n ** 9n) })), undefined, 'ids that went backwards');
      assert.equal(await comparableBackupXmin(c, { ...manifest, snapshot: { at: manifest.snapshot.at, lsn: manifest.snapshot.lsn } }), undefined, 'a backup without its origin');
    });
  });

  it('stages a table in full, or from its keys where the tenant has no row, for a backup without its origin (no row versions compared)', async () => {
    const manifest = await readManifest(engine.store, tenantBackupPrefix(tenantId, backupId));
    const args = { tenantId, backupId, snapshotAt: manifest.snapshot.at, selection: parseSelection({ tenantId }) };
    const staging = await withDb(db.url, async (c) => {
      const ctx = await loadRestoreContext(c, { tenancy: engine.config.tenancy, manifest, restoreId: 'origin-less' });
      const of = (table: string) => stagingOf(c, ctx, ctx.mappings.find((m) => m.table === table)!, args, undefined);
      await c.query('BEGIN');
      try {
        for (const table of ['app."AuditLog"', 'app.events']) await c.query(`DELETE FROM ${table} WHERE tenant_id = $1`, [tenantId]);
        return [await of('app.users'), await of('app.AuditLog'), await of('app.events')];
      } finally {
        await c.query('ROLLBACK');
      }
    });
    // users unchanged since the backup: without an origin that cannot be told, staged in full
    assert.deepEqual(staging, ['all', 'keys', 'first-keys']);
  });

  it('names the column when schema drift cannot be mapped, and changes nothing', async () => {
    await withDb(db.url, (c) => c.query(`ALTER TABLE app.users ALTER COLUMN display_name TYPE int USING NULL`));
    try {
      await assert.rejects(restore(), (e: TenantsafeError) => e.type === ErrorType.SchemaDrift && /app\.users\.display_name is integer now \(text in the backup\)/.test(e.message));
      await withDb(db.url, (c) => c.query(`ALTER TABLE app.users ADD COLUMN age int NOT NULL DEFAULT 0`));
      await withDb(db.url, (c) => c.query(`ALTER TABLE app.users ALTER COLUMN display_name TYPE text`));
      await withDb(db.url, async (c) => {
        await damageTenant(c, tenantId);
        await c.query(`DELETE FROM app."AuditLog" WHERE tenant_id = $1`, [tenantId]); // wiped: staged from its keys alone
      });
      // a column added with a default is fine: restored rows take it
      const { verification, preview } = await restore();
      assert.ok(preview.drift.some((d) => d.kind === 'column-added' && d.column === 'age'));
      assert.ok(verification!.ok, JSON.stringify(verification!.tables.filter((t) => !t.ok)));
      // a column added NOT NULL without a default: a user to re-insert would have no value for it
      await withDb(db.url, async (c) => {
        await c.query(`ALTER TABLE app.users ADD COLUMN badge text NOT NULL DEFAULT 'x'; ALTER TABLE app.users ALTER COLUMN badge DROP DEFAULT`);
        await c.query(
          `DELETE FROM app.users u WHERE user_id = (SELECT max(user_id) FROM app.users u WHERE tenant_id = $1
             AND NOT EXISTS (SELECT 1 FROM app.projects p WHERE p.owner_id = u.user_id) AND NOT EXISTS (SELECT 1 FROM app.comments m WHERE m.author_id = u.user_id))`,
          [tenantId],
        );
      });
      const before = checksumsOf(await liveRows(engine.config, tenantId));
      await assert.rejects(restore(), (e: TenantsafeError) => e.type === ErrorType.SchemaDrift && /column app\.users\.badge was added NOT NULL without a default/.test(e.message));
      assert.deepEqual(checksumsOf(await liveRows(engine.config, tenantId)), before, 'nothing changed');
      // a column dropped since the backup: users is verified by what is left to change, diffed alone (AuditLog is staged from its keys only)
      await withDb(db.url, async (c) => {
        await c.query(`ALTER TABLE app.users DROP COLUMN badge; ALTER TABLE app.users DROP COLUMN settings`);
        await c.query(`DELETE FROM app."AuditLog" WHERE tenant_id = $1`, [tenantId]);
      });
      const dropped = await restore();
      assert.ok(dropped.preview.drift.some((d) => d.kind === 'column-dropped' && d.column === 'settings'), JSON.stringify(dropped.preview.drift));
      assert.ok(dropped.verification!.ok, JSON.stringify(dropped.verification!.tables.filter((t) => !t.ok)));
    } finally {
      await withDb(db.url, (c) =>
        c.query(`ALTER TABLE app.users DROP COLUMN IF EXISTS age; ALTER TABLE app.users DROP COLUMN IF EXISTS badge; ALTER TABLE app.users ALTER COLUMN display_name TYPE text;
                 ALTER TABLE app.users ADD COLUMN IF NOT EXISTS settings jsonb`),
      );
    }
  });

  it('rejects bad requests with a clear message: unknown backup, another tenant\'s backup, a bad time', async () => {
    const checked = (req: Omit<RestoreRequest, 'tenantId' | 'requestedBy'>) => checkRestoreRequest({ tenantId, requestedBy: 'alice', ...req });
    const backupSource = (req: Omit<RestoreRequest, 'tenantId' | 'requestedBy'>) => {
      const { source } = checked(req);
      if ('pointInTime' in source) throw new Error('a backup source was expected');
      return resolveRestoreSource(engine, { tenantId, source });
    };
    await assert.rejects(backupSource({ backupId: '20200101-000000T-000000' }), (e: TenantsafeError) => e.type === ErrorType.BackupNotFound);
    const other = await backUpNow(engine, 'acme');
    await assert.rejects(backupSource({ backupId: other }), /Backup .* is of tenant "acme", not "globex"/);
    assert.throws(() => checked({ backupBefore: 'yesterday' }), /"yesterday" is not an ISO-8601 time/);
    assert.throws(() => checked({ at: 'yesterday' }), /"yesterday" is not an ISO-8601 time/);
    assert.throws(() => checked({ at: '2026-01-01T00:00:00' }), /not an ISO-8601 time with a time zone/);
    assert.throws(() => checked({ lsn: '0/x' }), /"0\/x" is not an LSN/);
    assert.throws(() => checked({ at: '2026-01-01T00:00:00Z', backupId: other }), /Give one source, not backupId and at/);
    assert.throws(() => checked({}), /Give what to restore/);
    await assert.rejects(backupSource({ backupBefore: '2020-01-01T00:00:00Z' }), /No backup of tenant "globex" was taken at or before 2020-01-01T00:00:00Z; the restorable window is from .* to now/);
    assert.throws(() => checked({ backupBefore: '2999-01-01T00:00:00Z' }), /in the future/);
    assert.throws(() => checked({ at: '2999-01-01T00:00:00Z' }), /in the future/);
    assert.deepEqual(checked({ at: '2026-01-01T01:00:00.1234567+01:00' }).source, { pointInTime: { at: '2026-01-01T00:00:00.123456Z' } }, 'microseconds kept, in UTC');
    assert.equal((await backupSource({ backupBefore: new Date().toISOString() })).tenantId, tenantId);
    // a printed snapshot time, given back, finds that very backup (its microseconds kept)
    const newest = (await engine.catalog.listBackups({ tenantId })).find((b) => b.kind === 'tenant')!;
    assert.match(newest.snapshotAt, /\.\d{6}Z$/);
    assert.equal((await backupSource({ backupBefore: newest.snapshotAt })).backupId, newest.backupId);
    assert.throws(() => parseSelection({ tenantId, mode: 'merge' }), /Unknown mode "merge"/);
    assert.throws(() => parseSelection({ tenantId, changes: ['upsert'] }), /Unknown change kind\(s\) upsert/);
  });
});
