// Tenant point-in-time restore end to end, as an operator runs it: a private cluster with
// logical decoding, a worker in a process of its own, the change log as a workflow, the CLI.
// Writers touch several tenants; a tenant is restored to the commit time of one transaction and
// compared with a snapshot opened right after that commit and held open (the reference). The
// change log's slot is lost twice: once with no full backups (a restore into the gap is refused,
// naming it) and once after a full backup (a restore into the gap takes a PITR clone and says why).
import { strict as assert } from 'node:assert';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { ChildProcess } from 'node:child_process';
import type { Client } from 'pg';
import { changeLogStream } from '../lib/changeLog/capture';
import { databaseIdentity } from '../lib/databaseIdentity';
import { backupLabel } from '../lib/labels';
import { connect, withConnection } from '../lib/pg';
import { physicalWindow } from '../lib/pitr/window';
import { rebuildFromPitrClone } from '../lib/pointInTime/pitrClone';
import { discoverTenancy, type TenancyPlan } from '../lib/tenancy';
import { parseMicros } from '../lib/time';
import { parseLsn } from '../lib/wal/names';
import { databaseWorkflowIds, workflowIds } from '../workflows/messages';
import { workflowScopes } from '../lib/databaseIdentity';
import { spawnWorkerProcess } from '../workers/process';
import { ensureSampleDatabase, sampleTenants } from '../sample/generate';
import { readBackup, tenantRowsOver } from './support/backups';
import { startSourceCluster, type SourceCluster } from './support/cluster';
import { createTestEnv, runCli, type TestEnv } from './support/env';
import { checksumsOf } from './support/restore';
import { waitFor } from './support/wait';

const tenant = 'acme';
const others = ['globex', 'initech'];
const slot = 'tenantsafe_changes';
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('tenant point-in-time restore, end to end', function () {
  this.timeout(600_000);
  const sample = { tenants: 4, rows: 6_000 };
  let source: SourceCluster;
  let env: TestEnv;
  let plan: TenancyPlan;
  let stream: string;
  let worker: ChildProcess | undefined;
  const sql = (text: string, params?: unknown[]) => withConnection(env.db.url, (c) => c.query(text, params));
  const cli = (...args: string[]) => runCli([...args, '--json'], { configFile: env.configFile, timeoutMs: 300_000 });
  const errorOf = (r: { stderr: string }) => JSON.parse(r.stderr) as { error: string; type: string };
  const currentLsn = async () => (await sql(`SELECT pg_current_wal_lsn()::text AS l`)).rows[0].l as string;
  const rowsOf = (tenantId: string) => withConnection(env.db.url, (c) => tenantRowsOver(c, plan, tenantId));

  async function logCaughtUp(): Promise<void> {
    const last = parseLsn(await currentLsn());
    await waitFor('the change log to catch up', async () => parseLsn((await env.engine.catalog.getChangeLogStream(stream))?.caughtUpLsn ?? '0/0') >= last, { tries: 600 });
  }

  /** One transaction per change: parent and child rows of the tenant and of others, a child moved between tenants, the keyless table. */
  async function writeRound(round: string): Promise<void> {
    const task = async (t: string) => (await sql(`SELECT min(t.task_id) AS id FROM app.tasks t JOIN app.projects p USING (project_id) WHERE p.tenant_id = $1`, [t])).rows[0].id;
    const [mine, theirs] = [await task(tenant), await task(others[0])];
    for (const t of [tenant, ...others]) {
      await sql(
        `WITH p AS (INSERT INTO app.projects (tenant_id, name) VALUES ($1, $2) RETURNING project_id),
              k AS (INSERT INTO app.tasks (project_id, title) SELECT project_id, $2 FROM p RETURNING task_id)
         INSERT INTO app.comments (task_id, body, created_at) SELECT task_id, $2, now() FROM k`,
        [t, `project ${round}`],
      );
      await sql(`UPDATE app.users SET display_name = $2 WHERE user_id = (SELECT min(user_id) FROM app.users WHERE tenant_id = $1)`, [t, `user ${round}`]);
      await sql(
        `DELETE FROM app.comments WHERE comment_id = (SELECT max(c.comment_id) FROM app.comments c JOIN app.tasks USING (task_id) JOIN app.projects p USING (project_id)
           WHERE p.tenant_id = $1 AND NOT EXISTS (SELECT FROM app.comments r WHERE r.reply_to = c.comment_id))`,
        [t],
      );
      await sql(`INSERT INTO app.page_views (tenant_id, path, viewed_at) VALUES ($1, $2, now())`, [t, `/${round}`]);
    }
    // a leaf child row moved to another tenant's parent, and one moved in from it
    const leaf = `SELECT min(comment_id) FROM app.comments c WHERE c.task_id = $1 AND reply_to IS NULL AND NOT EXISTS (SELECT FROM app.comments r WHERE r.reply_to = c.comment_id)`;
    await sql(`UPDATE app.comments SET task_id = $2 WHERE comment_id = (${leaf})`, [mine, theirs]);
    await sql(`UPDATE app.comments SET task_id = $2 WHERE comment_id = (${leaf.replace('min(', 'max(')})`, [theirs, mine]);
  }

  /** Writes, then one marked commit of the tenant; returns its commit time and the tenant as a snapshot opened right after it saw it. */
  async function markedPoint(round: string): Promise<{ at: string; reference: Map<string, string[]> }> {
    await writeRound(round);
    const marked = await sql(
      `INSERT INTO app.page_views (tenant_id, path, viewed_at) VALUES ($1, $2, now())
       RETURNING to_char(pg_xact_commit_timestamp(xmin) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS pending`,
      [tenant, `/mark-${round}`],
    );
    assert.equal(marked.rows[0].pending, null, 'the commit time is known only once committed');
    const holder: Client = await connect(env.db.url, 'test-reference');
    try {
      await holder.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
      const reference = await tenantRowsOver(holder, plan, tenant);
      const at = (
        await holder.query(
          `SELECT to_char(pg_xact_commit_timestamp(xmin) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS at FROM app.page_views WHERE tenant_id = $1 AND path = $2`,
          [tenant, `/mark-${round}`],
        )
      ).rows[0].at as string;
      await holder.query('ROLLBACK');
      // after the point: none of it may show
      await sql(`UPDATE app.users SET display_name = 'too late' WHERE tenant_id = $1`, [tenant]);
      await sql(`INSERT INTO app.page_views (tenant_id, path, viewed_at) VALUES ($1, $2, now())`, [tenant, `/too-late-${round}`]);
      return { at, reference };
    } finally {
      await holder.end();
    }
  }

  /** Drops the change log's slot, ending the stream that holds it; the capture restarts on a new slot after a gap. */
  async function dropSlot(): Promise<void> {
    for (let i = 0; ; i++) {
      const r = await sql(
        `SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = $1 AND active_pid IS NOT NULL`,
        [slot],
      );
      if (r.rowCount === 0) {
        const dropped = await sql(`SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1 AND NOT active`, [slot]).catch(() => ({ rowCount: 0 }));
        if (dropped.rowCount === 1) return;
      }
      if (i > 100) assert.fail('the slot could not be dropped');
      await sleep(50);
    }
  }

  async function gapRecorded(count: number): Promise<void> {
    await waitFor(`gap ${count} recorded`, async () => (await env.engine.catalog.listChangeLogGaps(stream)).length >= count, { tries: 600 });
  }

  /** Requests a restore to a point, approves it as someone else, waits until verified. */
  async function restoreTo(...target: string[]): Promise<{ requested: any; done: any }> {
    const res = await cli('restore', 'tenant', tenant, ...target, '--by', 'alice');
    assert.equal(res.code, 0, res.stdout + res.stderr);
    const requested = res.json();
    assert.equal(requested.state, 'awaiting-approval', res.stdout);
    const approved = await cli('restore', 'approve', requested.restoreId, '--by', 'bob', '--digest', requested.previewDigest, '--wait');
    assert.equal(approved.code, 0, approved.stdout + approved.stderr);
    assert.equal(approved.json().state, 'done', approved.stdout);
    return { requested, done: approved.json() };
  }

  async function assertNothingLeftBehind(): Promise<void> {
    const slots = (await sql(`SELECT slot_name, slot_type FROM pg_replication_slots ORDER BY 1`)).rows.filter((s) => s.slot_type === 'logical').map((s) => s.slot_name);
    assert.deepEqual(slots, [slot], 'no logical slot but the change log\'s (a boundary slot is temporary)');
    assert.deepEqual((await sql(`SELECT nspname FROM pg_namespace WHERE nspname LIKE 'tenantsafe\\_%' AND nspname <> 'tenantsafe_catalog'`)).rows, [], 'no scratch schema');
    assert.deepEqual(fs.readdirSync(source.dir).filter((f) => f.startsWith('tenantsafe-pitr-clone-')), [], 'no clone directory');
  }

  before(async () => {
    source = await startSourceCluster('app', { wal_level: 'logical', track_commit_timestamp: 'on' });
    const { url } = await ensureSampleDatabase(source.cluster.url(), 'saas', sample);
    env = await createTestEnv('local', {
      db: { name: 'saas', url, tenants: sampleTenants(sample), drop: async () => undefined },
      configure: (doc, dir) => {
        doc.changeLog = { enabled: true, flushInterval: '100ms', replicaIdentityFull: true };
        doc.fullBackup = { walPartialInterval: '200ms', walSpoolDir: path.join(dir, 'spool'), archiveWait: '30s' };
        doc.verification = { scratchDir: source.dir };
      },
    });
    plan = await withConnection(env.db.url, (c) => discoverTenancy(c, env.config.tenancy));
    stream = changeLogStream(await databaseIdentity(env.engine));
    worker = await spawnWorkerProcess(env.configFile);
    const started = await cli('changelog', 'start');
    assert.equal(started.code, 0, started.stdout + started.stderr);
    await waitFor('the slot', async () => (await sql(`SELECT count(*)::int AS n FROM pg_replication_slots WHERE slot_name = $1`, [slot])).rows[0].n === 1);
  });

  after(async () => {
    if (env) {
      await cli('changelog', 'stop').catch(() => undefined);
      const archiver = env.temporal.workflow.getHandle(databaseWorkflowIds.walArchiver((await workflowScopes(env.engine)).walArchiver));
      await archiver.cancel().catch(() => undefined);
      await archiver.result().catch(() => undefined);
    }
    worker?.kill('SIGKILL');
    await env?.close();
    await source?.remove();
  });

  let first: { at: string; reference: Map<string, string[]> };
  let inFirstGap: string;

  it('with no full backups: restores exactly through the change log, and refuses a time in a gap, naming it (exit 2)', async () => {
    const backup = await cli('backup', 'tenant', tenant, '--wait');
    assert.equal(backup.code, 0, backup.stderr);
    first = await markedPoint('one');
    await logCaughtUp();
    // this cluster leaves max_slot_wal_keep_size unlimited: the status warns (exit 1); gaps alone would not
    const status = await cli('changelog', 'status');
    assert.equal(status.code, 1, status.stdout + status.stderr);
    assert.deepEqual(status.json().warnings.map((w: string) => w.split(':')[0]), ['max_slot_wal_keep_size is unlimited']);

    // the worker dies; meanwhile its slot is dropped and the tenant written: those commits are lost to the log
    worker!.kill('SIGKILL');
    await dropSlot();
    await sql(`INSERT INTO app.page_views (tenant_id, path, viewed_at) VALUES ($1, '/unlogged', now())`, [tenant]);
    inFirstGap = (await sql(`SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS t`)).rows[0].t;
    worker = await spawnWorkerProcess(env.configFile);
    await gapRecorded(1);
    await logCaughtUp();

    const refused = await cli('restore', 'tenant', tenant, '--at', inFirstGap, '--by', 'alice');
    assert.equal(refused.code, 2, refused.stdout + refused.stderr);
    const e = errorOf(refused);
    assert.equal(e.type, 'TargetOutsideWindow');
    assert.match(e.error, /has a gap from \S+ to \S+ \(.*dropped.*\)/, e.error);
    assert.match(e.error, /PITR clone's window is empty/);
    await assertNothingLeftBehind();

    const window = await cli('restore', 'window', '--tenant', tenant);
    assert.equal(window.code, 0, window.stderr);
    const w = window.json();
    assert.equal(w.changeLog.gaps.length, 1);
    assert.ok(parseMicros(w.changeLog.latest) < parseMicros(inFirstGap), `with no backup after the gap the log restores only up to it: ${window.stdout}`);
    assert.equal(w.pitrClone.earliest, null);

    // before the gap, the log still covers the tenant
    const { requested } = await restoreTo('--at', first.at);
    assert.equal(requested.preview.pointInTime.source, 'changeLog', JSON.stringify(requested.preview.pointInTime));
    assert.deepEqual(checksumsOf(await rowsOf(tenant)), checksumsOf(first.reference), 'table by table, row for row');
  });

  let second: { at: string; reference: Map<string, string[]> };

  it('after a full backup and a tenant backup: source 1 and source 2 agree with the reference; other tenants untouched', async () => {
    const full = await cli('full-backup', '--wait');
    assert.equal(full.code, 0, full.stderr);
    const backup = await cli('backup', 'tenant', tenant, '--wait');
    assert.equal(backup.code, 0, backup.stderr);

    // other tenants are written all along, in transactions of their own
    let writing = true;
    const writer = (async () => {
      for (let i = 0; writing; i++) await sql(`UPDATE app.users SET display_name = $2 WHERE user_id = (SELECT max(user_id) FROM app.users WHERE tenant_id = $1)`, [others[i % 2], `w${i}`]);
    })();
    try {
      second = await markedPoint('two');
    } finally {
      writing = false;
      await writer;
    }
    await logCaughtUp();
    const othersBefore = await Promise.all(others.map(async (t) => checksumsOf(await rowsOf(t))));

    const { requested, done } = await restoreTo('--at', second.at);
    const p = requested.preview.pointInTime;
    assert.equal(p.source, 'changeLog', JSON.stringify(p));
    assert.equal(p.baseBackupId, backup.json().backupId, 'from the newest backup before the point');
    assert.equal(p.lastCommit.time, second.at, 'the last commit included is the marked one');
    assert.match(p.reason, /covers .* without a gap/);
    assert.ok(done.safetyBackupId, 'a safety backup was taken');
    const restored = await rowsOf(tenant);
    assert.deepEqual(checksumsOf(restored), checksumsOf(second.reference), 'table by table, row for row');
    assert.ok(restored.get('app.page_views')!.some((l) => l.includes('/mark-two')), 'the commit at the point is in');
    assert.ok(!restored.get('app.page_views')!.some((l) => l.includes('/too-late-two')), 'the one after it is not');
    assert.deepEqual(await Promise.all(others.map(async (t) => checksumsOf(await rowsOf(t)))), othersBefore, 'other tenants unchanged');

    // source 2 at the same point
    await waitFor('the WAL archive to reach the point', async () => {
      const w = await physicalWindow(env.engine);
      return !!w.latest && parseMicros(w.latest) >= parseMicros(second.at);
    });
    const backupId = backupLabel(new Date(), 'pointInTime', randomBytes(3).toString('hex'));
    const clone = await rebuildFromPitrClone(env.engine, { tenantId: tenant, backupId, target: { at: second.at }, reason: 'test: source 2 beside source 1' });
    assert.deepEqual(checksumsOf((await readBackup(env.engine.store, tenant, backupId)).rows), checksumsOf(second.reference), 'the PITR clone agrees');
    assert.equal(clone.lastCommit?.time, second.at);
    // and to the LSN the preview printed for the last commit included: the same rows
    const byLsn = backupLabel(new Date(), 'pointInTime', randomBytes(3).toString('hex'));
    await rebuildFromPitrClone(env.engine, { tenantId: tenant, backupId: byLsn, target: { lsn: p.lastCommit.lsn }, reason: 'test: source 2 to an LSN' });
    assert.deepEqual(checksumsOf((await readBackup(env.engine.store, tenant, byLsn)).rows), checksumsOf(second.reference), 'the PITR clone to the LSN agrees');
  });

  it('restores into a gap after a full backup from a PITR clone, saying why', async () => {
    await dropSlot();
    const third = await markedPoint('three');
    await gapRecorded(2);
    await logCaughtUp();
    await waitFor('the WAL archive to reach the point', async () => {
      const w = await physicalWindow(env.engine);
      return !!w.latest && parseMicros(w.latest) >= parseMicros(third.at);
    });
    const { requested } = await restoreTo('--at', third.at);
    const p = requested.preview.pointInTime;
    assert.equal(p.source, 'pitrClone', JSON.stringify(p));
    assert.match(p.reason, /gap from .* \(.*dropped.*\).*PITR clone/, p.reason);
    assert.deepEqual(checksumsOf(await rowsOf(tenant)), checksumsOf(third.reference));
    await assertNothingLeftBehind();
  });

  it('falls back to a PITR clone when the log cannot be exact (a parent moved in from another tenant), saying why', async () => {
    const backup = await cli('backup', 'tenant', tenant, '--wait');
    assert.equal(backup.code, 0, backup.stderr);
    // a task with its comments moves into the tenant: the comments were in neither its backup nor its log
    await sql(
      `UPDATE app.tasks SET project_id = (SELECT min(project_id) FROM app.projects WHERE tenant_id = $1)
        WHERE task_id = (SELECT min(t.task_id) FROM app.tasks t JOIN app.projects p USING (project_id)
                          WHERE p.tenant_id = $2 AND EXISTS (SELECT FROM app.comments c WHERE c.task_id = t.task_id))`,
      [tenant, others[0]],
    );
    const point = await markedPoint('four');
    await logCaughtUp();
    await waitFor('the WAL archive to reach the point', async () => {
      const w = await physicalWindow(env.engine);
      return !!w.latest && parseMicros(w.latest) >= parseMicros(point.at);
    });
    const { requested } = await restoreTo('--at', point.at);
    const p = requested.preview.pointInTime;
    assert.equal(p.source, 'pitrClone', JSON.stringify(p));
    assert.match(p.reason, /change log cannot rebuild this tenant exactly: .*moved into the tenant.*PITR clone/, p.reason);
    assert.deepEqual(checksumsOf(await rowsOf(tenant)), checksumsOf(point.reference));
    await assertNothingLeftBehind();
  });

  it('refuses bad targets with exit 2 and a hint, changing nothing and leaving nothing behind', async () => {
    const before = checksumsOf(await rowsOf(tenant));
    const future = new Date(Date.now() + 3_600_000).toISOString();
    const cases: [string[], RegExp][] = [
      [['--at', future], /is in the future/],
      [['--at', '2020-01-01T00:00:00Z'], /cannot be restored to 2020-01-01T00:00:00\.000000Z: .*window/],
      [['--at', second.at.replace('Z', '')], /not an ISO-8601 time with a time zone/],
      [['--at', 'yesterday'], /not an ISO-8601 time/],
      [['--lsn', 'not-an-lsn'], /LSN/],
      [['--at', second.at, '--backup', '20200101-000000T-000000'], /Give one source, not backupId and at/],
    ];
    for (const [args, message] of cases) {
      const r = await cli('restore', 'tenant', tenant, ...args, '--by', 'alice');
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stdout}${r.stderr}`);
      const e = errorOf(r);
      assert.match(e.error, message, `${args.join(' ')}: ${e.error}`);
      assert.match(e.error, /HINT: \S/, `${args.join(' ')}: a hint`);
    }
    // a tenant that did not exist at the point (created after it): the clone says so
    await sql(`INSERT INTO app.tenants (tenant_id, name, plan_id, created_at) SELECT 'newco', 'Newco', min(plan_id), now() FROM app.plans`);
    const missing = await cli('restore', 'tenant', 'newco', '--at', second.at, '--by', 'alice');
    assert.equal(missing.code, 2, missing.stdout + missing.stderr);
    assert.match(errorOf(missing).error, /did not exist at/);
    assert.deepEqual(checksumsOf(await rowsOf(tenant)), before, 'nothing changed');
    await assertNothingLeftBehind();
  });

  it('applies the erasure ledger to a restore to a point in time before the erasure: the subject does not come back', async () => {
    const subject = (await sql(`SELECT min(user_id)::text AS id FROM app.users WHERE tenant_id = $1`, [tenant])).rows[0].id as string;
    const rec = await cli('erasure', 'record', '--tenant', tenant, '--table', 'app.users', '--key', `user_id=${subject}`, '--by', 'dpo');
    assert.equal(rec.code, 0, rec.stdout + rec.stderr);
    const { requested, done } = await restoreTo('--at', second.at);
    assert.equal(requested.preview.erasures.rows['app.users'], 1, JSON.stringify(requested.preview.erasures));
    assert.deepEqual(requested.preview.erasures.entries.map((e: { erasureId: number }) => e.erasureId), [rec.json().erasureId]);
    assert.ok(done.verification.ok, JSON.stringify(done.verification));
    assert.equal((await sql(`SELECT 1 FROM app.users WHERE user_id = $1`, [subject])).rowCount, 0, 'not resurrected');
    await assertNothingLeftBehind();
  });

  it('keeps row data out of the histories of the restores and of the change log', async () => {
    const ids = [workflowIds.tenantRestore(tenant), databaseWorkflowIds.changeLog((await workflowScopes(env.engine)).changeLog)];
    let decoded = '';
    for await (const run of env.temporal.workflow.list({ query: ids.map((id) => `WorkflowId = '${id}'`).join(' OR ') })) {
      const raw = JSON.stringify(await env.temporal.workflow.getHandle(run.workflowId, run.runId).fetchHistory());
      const text = raw + [...raw.matchAll(/"data":"([A-Za-z0-9+/=]+)"/g)].map((m) => Buffer.from(m[1], 'base64').toString('utf8')).join('\n');
      for (const rowValue of ['/mark-two', 'project two', 'user two', 'too late', '/unlogged']) assert.ok(!text.includes(rowValue), `${run.workflowId}: ${rowValue}`);
      decoded += text;
    }
    assert.match(decoded, /"previewDigest"|"digest"/, 'the restores\' histories were read');
    assert.match(decoded, /"name":"changeLog"/, 'the change log\'s history was read');
  });

  it('rebuilds the change log\'s catalog rows from storage: the same segments, gaps, start and windows', async () => {
    const stopped = await cli('changelog', 'stop');
    assert.deepEqual(stopped.json(), { stopped: true });
    const state = async () => ({
      segments: await env.engine.catalog.listChangeSegments(stream),
      gaps: await env.engine.catalog.listChangeLogGaps(stream),
      started: (await env.engine.catalog.getChangeLogStream(stream))!.startedLsn,
      windows: (await cli('restore', 'window', '--tenant', tenant)).json().changeLog,
    });
    const before = await state();
    assert.ok(before.segments.length > 3 && before.gaps.length === 2, JSON.stringify(before.gaps));
    const s = env.config.catalog.schema;
    await sql(`DELETE FROM ${s}.change_segments; DELETE FROM ${s}.change_log_gaps; DELETE FROM ${s}.change_log_streams`);
    const rebuilt = await cli('catalog', 'rebuild');
    assert.equal(rebuilt.code, 0, rebuilt.stderr);
    assert.deepEqual(rebuilt.json().changeLog, { streams: 1, segments: before.segments.length, gaps: 2, invalid: [] });
    const after = await state();
    // how far the log had caught up is not in storage: the window ends at its last stored commit
    assert.deepEqual({ ...after, windows: { ...after.windows, latest: null } }, { ...before, windows: { ...before.windows, latest: null } });
    assert.equal(after.windows.latest, before.segments.at(-1)!.lastCommitTime);
  });
});
