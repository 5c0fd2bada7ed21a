// A tenant rebuilt as of a point in time from its backup and the change log, compared with the
// tenant as a snapshot taken at that very point saw it, while other tenants are written too.
import { strict as assert } from 'node:assert';
import { randomBytes } from 'node:crypto';
import type { Client } from 'pg';
import { captureChanges } from '../lib/changeLog/capture';
import { readChangeLog } from '../lib/changeLog/read';
import type { BackupRecord } from '../lib/catalog';
import { backupLabel } from '../lib/labels';
import { connect, withConnection } from '../lib/pg';
import { ChangeLogCannot, rebuildFromChangeLog, type PointInTimeTarget } from '../lib/pointInTime/changeLogReplay';
import { discoverTenancy, type TenancyPlan } from '../lib/tenancy';
import { formatLsn, parseLsn } from '../lib/wal/names';
import { ensureSampleDatabase, sampleTenants } from '../sample/generate';
import { backUpNow, readBackup, tenantRowsOver } from './support/backups';
import { startSourceCluster, type SourceCluster } from './support/cluster';
import { createTestEnv, type TestEnv } from './support/env';
import { waitFor } from './support/wait';
import { checksumsOf } from './support/restore';

const tenantId = 'acme';
const other = 'globex';

describe('a tenant rebuilt as of a point in time from the change log', function () {
  this.timeout(240_000);
  let source: SourceCluster;
  let env: TestEnv;
  let plan: TenancyPlan;
  let stream: string;
  let base: BackupRecord;
  let capture: { stop(): Promise<void> };
  /** the tenant as a snapshot opened right after the marked commit saw it */
  let reference: Map<string, string[]>;
  let marked: { commitTime: string; commitLsn: bigint; endLsn: bigint };
  const sample = { tenants: 4, rows: 6_000 };
  const sql = (text: string, params?: unknown[]) => withConnection(env.db.url, (c) => c.query(text, params));

  before(async () => {
    source = await startSourceCluster('app', { wal_level: 'logical' });
    const { url } = await ensureSampleDatabase(source.cluster.url(), 'saas', sample);
    env = await createTestEnv('local', {
      db: { name: 'saas', url, tenants: sampleTenants(sample), drop: async () => undefined },
      configure: (doc) => {
        doc.changeLog = { enabled: true, flushInterval: '100ms', replicaIdentityFull: true };
      },
    });
    plan = await withConnection(env.db.url, (c) => discoverTenancy(c, env.config.tenancy));
    const ac = new AbortController();
    const running = captureChanges(env.engine, { runForMs: 600_000, signal: ac.signal });
    capture = { stop: async () => (ac.abort(), void (await running)) };
    await waitFor('the slot', async () => (await sql(`SELECT count(*)::int AS n FROM pg_replication_slots WHERE slot_name = 'tenantsafe_changes'`)).rows[0].n === 1);
    stream = (await sql(`SELECT s.system_identifier::text || '-' || d.oid AS s FROM pg_control_system() s, pg_database d WHERE d.datname = current_database()`)).rows[0].s;
    base = await env.engine.catalog.getBackup(await backUpNow(env.engine, tenantId));

    await writeBefore();
    // the point: a marked commit; a snapshot opened right after it is the reference
    await sql(`INSERT INTO app.page_views (tenant_id, path, viewed_at) VALUES ($1, '/mark', now())`, [tenantId]);
    const holder: Client = await connect(env.db.url, 'test-reference');
    await holder.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
    reference = await tenantRowsOver(holder, plan, tenantId);
    await writeAfter();
    await holder.query('ROLLBACK');
    await holder.end();

    const last = (await sql(`SELECT pg_current_wal_lsn()::text AS l`)).rows[0].l;
    await waitFor('the log to catch up', async () => lsn((await env.engine.catalog.getChangeLogStream(stream))?.caughtUpLsn ?? '0/0') >= lsn(last));
    for await (const { txn } of readChangeLog(env.engine.store, env.engine.catalog, stream, 0n)) {
      if (txn.changes.some((c) => c.kind === 'insert' && c.table === 'app.page_views' && c.row[1] === '/mark')) marked = txn;
    }
    assert.ok(marked, 'the marked commit is in the log');
  });
  after(async () => {
    await capture?.stop().catch(() => undefined);
    await env?.close();
    await source?.remove();
  });

  /** Inserts, updates and deletes in parent and child tables of the tenant and another, rows moved between them, a keyless table, a large value left unchanged by an update. */
  async function writeBefore(): Promise<void> {
    const task = async (t: string) => (await sql(`SELECT t.task_id FROM app.tasks t JOIN app.projects p USING (project_id) WHERE p.tenant_id = $1 ORDER BY 1 LIMIT 1`, [t])).rows[0].task_id;
    const [mine, theirs] = [await task(tenantId), await task(other)];
    await sql(`WITH p AS (INSERT INTO app.projects (tenant_id, name) VALUES ($1, 'after the backup') RETURNING project_id),
                   t AS (INSERT INTO app.tasks (project_id, title, attachment) SELECT project_id, 'New Task', '\\x00ff'::bytea FROM p RETURNING task_id)
               INSERT INTO app.comments (task_id, body, created_at) SELECT task_id, E'with\\ttab and\\nnewline', now() FROM t`, [tenantId]);
    await sql(`UPDATE app.users SET display_name = 'renamed', settings = '{"a": [1, 2]}' WHERE user_id = (SELECT min(user_id) FROM app.users WHERE tenant_id = $1)`, [tenantId]);
    await sql(`UPDATE app.tasks SET title = 'Retitled', estimate = 1.5, due_on = '2026-12-24' WHERE task_id = $1`, [mine]);
    await sql(`UPDATE app.users SET display_name = 'theirs renamed' WHERE user_id = (SELECT min(user_id) FROM app.users WHERE tenant_id = $1)`, [other]);
    await sql(`DELETE FROM app.comments WHERE comment_id = (SELECT max(c.comment_id) FROM app.comments c WHERE c.task_id = $1 AND NOT EXISTS (SELECT 1 FROM app.comments r WHERE r.reply_to = c.comment_id))`, [mine]);
    // a child row moved to a parent of another tenant, and one moved in from it
    await sql(`UPDATE app.comments SET task_id = $2 WHERE comment_id = (SELECT min(comment_id) FROM app.comments WHERE task_id = $1 AND reply_to IS NULL AND NOT EXISTS (SELECT 1 FROM app.comments r WHERE r.reply_to = comments.comment_id))`, [mine, theirs]);
    await sql(`UPDATE app.comments SET task_id = $2 WHERE comment_id = (SELECT max(comment_id) FROM app.comments WHERE task_id = $1 AND reply_to IS NULL AND NOT EXISTS (SELECT 1 FROM app.comments r WHERE r.reply_to = comments.comment_id))`, [theirs, mine]);
    // keyless: a copy added, one removed
    await sql(`INSERT INTO app.page_views (tenant_id, path, viewed_at) VALUES ($1, '/added', now())`, [tenantId]);
    await sql(`DELETE FROM app.page_views WHERE ctid = (SELECT min(ctid) FROM app.page_views WHERE tenant_id = $1 AND path <> '/added')`, [tenantId]);
    // a large value stored out of line, then an update that leaves it alone (the log does not send it again)
    await sql(`UPDATE app.comments SET body = (SELECT string_agg(md5(g::text), '') FROM generate_series(1, 400) g) WHERE comment_id = (SELECT min(c.comment_id) FROM app.comments c JOIN app.tasks USING (task_id) JOIN app.projects p USING (project_id) WHERE p.tenant_id = $1)`, [tenantId]);
    await sql(`UPDATE app.comments SET created_at = created_at + interval '1 microsecond' WHERE comment_id = (SELECT min(c.comment_id) FROM app.comments c JOIN app.tasks USING (task_id) JOIN app.projects p USING (project_id) WHERE p.tenant_id = $1)`, [tenantId]);
  }

  /** After the point: none of it may show. */
  async function writeAfter(): Promise<void> {
    await sql(`UPDATE app.users SET display_name = 'too late' WHERE tenant_id = $1`, [tenantId]);
    await sql(`INSERT INTO app.page_views (tenant_id, path, viewed_at) VALUES ($1, '/too-late', now())`, [tenantId]);
    await sql(`DELETE FROM app.task_labels WHERE task_id IN (SELECT t.task_id FROM app.tasks t JOIN app.projects p USING (project_id) WHERE p.tenant_id = $1)`, [tenantId]);
  }

  async function rebuild(target: PointInTimeTarget) {
    const backupId = backupLabel(new Date(), 'pointInTime', randomBytes(3).toString('hex'));
    const r = await rebuildFromChangeLog(env.engine, { tenantId, backupId, base, stream, target, reason: 'test' });
    return { ...r, rows: (await readBackup(env.engine.store, tenantId, backupId)).rows };
  }

  it('at the time of a commit: exactly the tenant as a snapshot right after that commit saw it', async () => {
    const r = await rebuild({ at: marked.commitTime });
    assert.deepEqual(checksumsOf(r.rows), checksumsOf(reference), 'table by table, row for row');
    assert.ok(r.rows.get('app.page_views')!.some((l) => l.includes('/mark')), 'the commit at the point itself is in');
    assert.ok(!r.rows.get('app.page_views')!.some((l) => l.includes('/too-late')), 'a commit after it is not');
    assert.deepEqual(r.lastCommit, { lsn: formatLsn(marked.endLsn), time: marked.commitTime });
    assert.ok(r.transactionsReplayed >= 10);
  });

  it('at the LSN of that commit: the same', async () => {
    const r = await rebuild({ lsn: formatLsn(marked.commitLsn) });
    assert.deepEqual(checksumsOf(r.rows), checksumsOf(reference));
  });

  it('a microsecond before that commit: without it', async () => {
    const us = BigInt(marked.commitTime.slice(20, 26)) - 1n;
    const r = await rebuild({ at: `${marked.commitTime.slice(0, 20)}${String(us).padStart(6, '0')}Z` });
    assert.ok(!r.rows.get('app.page_views')!.some((l) => l.includes('/mark')));
    assert.ok(r.rows.get('app.page_views')!.some((l) => l.includes('/added')));
  });

  it('says it cannot when a parent moved in from another tenant: what hangs from it is in neither the backup nor the log', async () => {
    await sql(`UPDATE app.tasks SET project_id = (SELECT min(project_id) FROM app.projects WHERE tenant_id = $1)
                WHERE task_id = (SELECT min(t.task_id) FROM app.tasks t JOIN app.projects p USING (project_id) WHERE p.tenant_id = $2 AND EXISTS (SELECT 1 FROM app.comments c WHERE c.task_id = t.task_id))`, [tenantId, other]);
    const last = (await sql(`SELECT pg_current_wal_lsn()::text AS l`)).rows[0].l;
    await waitFor('the log to catch up', async () => lsn((await env.engine.catalog.getChangeLogStream(stream))?.caughtUpLsn ?? '0/0') >= lsn(last));
    await assert.rejects(rebuild({ lsn: last }), (e: Error) => e instanceof ChangeLogCannot && /app\.tasks.*moved into the tenant/.test(e.message));
    const left = await sql(`SELECT count(*)::int AS n FROM pg_namespace WHERE nspname LIKE 'tenantsafe_pit_%'`);
    assert.equal(left.rows[0].n, 0, 'no scratch schema left behind');
  });
});

const lsn = parseLsn;

