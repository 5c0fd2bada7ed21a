// PostgreSQL crashes (every process SIGKILLed, as a power cut or an OOM kill would) and starts
// again in the middle of each long step. The worker process must stay up through all of it, each
// workflow must end as it should (done, after a retry), a restore must never be half-applied,
// and no other tenant may change.
import { strict as assert } from 'node:assert';
import type { ChildProcess } from 'node:child_process';
import * as path from 'node:path';
import type { Client } from 'pg';
import { connect, withConnection } from '../lib/pg';
import { damageTenant } from '../sample/damage';
import { ensureSampleDatabase, sampleTenants } from '../sample/generate';
import { spawnWorkerProcess } from '../workers/process';
import { databaseWorkflowIds, workflowIds, type TenantRestoreResult } from '../workflows/messages';
import { liveRows, readBackup } from './support/backups';
import { startSourceCluster, type SourceCluster } from './support/cluster';
import { defaultSample } from './support/db';
import { createTestEnv, runCli, type TestEnv } from './support/env';
import { checksumsOf } from './support/restore';
import { waitFor as waitUntil } from './support/wait';
import { workflowScopes } from '../lib/databaseIdentity';

const tenantId = 'acme';

describe('a database crash in the middle of a step', function () {
  this.timeout(300_000);
  let source: SourceCluster;
  let env: TestEnv;
  let worker: ChildProcess;
  let workerExit: string | undefined;
  let backupId: string;
  let othersBefore: Record<string, Record<string, string>>;
  let restore: { restoreId: string; previewDigest: string };
  const cli = (...args: string[]) => runCli([...args, '--json'], { configFile: env.configFile });

  before(async () => {
    source = await startSourceCluster();
    const { url } = await ensureSampleDatabase(source.cluster.url(), 'saas', defaultSample);
    env = await createTestEnv('local', {
      db: { name: 'saas', url, tenants: sampleTenants(defaultSample), drop: async () => undefined },
      configure: (doc, dir) => {
        doc.fullBackup = { maxRate: '4MB/s', walPartialInterval: '200ms', walSpoolDir: path.join(dir, 'spool') };
        doc.verification = { scratchDir: source.dir };
      },
    });
    // locks that outlive a crash
    source.cluster.appendConfig({ max_prepared_transactions: '4' });
    await source.cluster.stop();
    await source.cluster.start();
    worker = await spawnWorkerProcess(env.configFile);
    let workerStderr = '';
    worker.stderr!.on('data', (d: Buffer) => (workerStderr = (workerStderr + d.toString()).slice(-4000)));
    worker.once('exit', (code, signal) => (workerExit = `exit code ${code}, signal ${signal}; its stderr ends: ${workerStderr}`));
  });
  after(async () => {
    await releasePreparedLock().catch(() => undefined);
    // stopped while its worker still runs: the archiver's id is the namespace's, and one left
    // running would stand in for the next test's
    const archiver = env && env.temporal.workflow.getHandle(databaseWorkflowIds.walArchiver((await workflowScopes(env.engine)).walArchiver));
    await archiver?.cancel().catch(() => undefined);
    await archiver?.result().catch(() => undefined);
    // a restore this file left running (its test failed) would refuse the next file's restores of the tenant
    await env?.temporal.workflow.getHandle(workflowIds.tenantRestore(tenantId)).terminate('the test file ended').catch(() => undefined);
    worker?.kill('SIGKILL');
    await env?.close();
    await source?.remove();
  });
  afterEach(() => assert.equal(workerExit, undefined, 'the worker process is still up'));

  /** Kills every process of the cluster at once, then starts it: crash recovery runs. */
  async function crashAndRestart(): Promise<void> {
    await source.cluster.crash();
    await source.cluster.start();
  }

  /** The sessions of our steps (application_name tenantsafe-...) and what each waits for. */
  async function stepSessions(): Promise<{ app: string; wait: string | null }[]> {
    const r = await withConnection(env.db.url, (c) =>
      c.query<{ app: string; wait: string | null }>(`SELECT application_name AS app, wait_event_type AS wait FROM pg_stat_activity WHERE application_name LIKE 'tenantsafe-%' ORDER BY 1`),
    );
    return r.rows;
  }

  const waitFor = (what: string, probe: () => Promise<boolean>) =>
    waitUntil(what, probe, { state: async () => (restore ? `restore: ${(await cli('restore', 'status', restore.restoreId)).stdout}` : 'no restore yet') });

  const preparedLock = 'test-held-lock';
  /** A prepared transaction holding a lock: unlike a session's, it survives a crash. */
  async function holdLockAcrossCrashes(sql: string): Promise<void> {
    await withConnection(env.db.url, async (c) => {
      await c.query('BEGIN');
      await c.query(sql);
      await c.query(`PREPARE TRANSACTION '${preparedLock}'`);
    });
  }
  async function releasePreparedLock(): Promise<void> {
    await withConnection(env.db.url, (c) => c.query(`ROLLBACK PREPARED '${preparedLock}'`));
  }

  /** A session that holds a lock the step will wait for: its transaction ends with the crash. */
  async function holdLock(sql: string): Promise<Client> {
    const c = await connect(env.db.url, 'test-blocker');
    await c.query('BEGIN');
    await c.query(sql);
    return c;
  }

  const otherTenantsNow = async () =>
    Object.fromEntries(await Promise.all(env.db.tenants.filter((t) => t.tenantId !== tenantId).map(async (t) => [t.tenantId, checksumsOf(await liveRows(env.config, t.tenantId))] as const)));

  it('finishes a tenant backup whose export was cut off: the backup matches the tenant', async () => {
    const blocker = await holdLock('LOCK TABLE app.comments IN ACCESS EXCLUSIVE MODE');
    const started = await cli('backup', 'tenant', tenantId);
    assert.equal(started.code, 0, started.stderr);
    await waitFor('the export waits on app.comments', async () => (await stepSessions()).some((s) => s.app === 'tenantsafe-export' && s.wait === 'Lock'));
    await crashAndRestart();
    await blocker.end().catch(() => undefined);

    const done = await env.temporal.workflow.getHandle(started.json().workflowId).result();
    backupId = done.backupId;
    assert.equal((await cli('verify', backupId)).code, 0, 'the backup verifies');
    const backup = await readBackup(env.engine.store, tenantId, backupId);
    assert.deepEqual(checksumsOf(backup.rows), checksumsOf(await liveRows(env.config, tenantId)), 'it holds the tenant as it is');
  });

  it('gives the preview of a restore whose staging was cut off', async () => {
    await withConnection(env.db.url, async (c) => {
      await damageTenant(c, tenantId);
      // a table wiped: loaded whole by the apply
      await c.query(`DELETE FROM app.events WHERE tenant_id = $1`, [tenantId]);
    });
    othersBefore = await otherTenantsNow();
    const blocker = await holdLock('LOCK TABLE app.comments IN ACCESS EXCLUSIVE MODE');
    const requesting = cli('restore', 'tenant', tenantId, '--backup', backupId, '--by', 'alice');
    await waitFor('staging waits on app.comments', async () => (await stepSessions()).some((s) => s.app === 'tenantsafe-stage' && s.wait === 'Lock'));
    await crashAndRestart();
    await blocker.end().catch(() => undefined);

    const requested = await requesting;
    assert.equal(requested.code, 0, requested.stderr);
    restore = requested.json();
    assert.equal(requested.json().state, 'awaiting-approval');
    assert.ok(requested.json().preview.tables['app.events'].insert > 0, 'the preview re-inserts the wiped events');
  });

  it('applies the approved preview after a crash emptied the scratch tables, and never half-applies one cut off', async () => {
    // Crash recovery empties unlogged tables, the staged rows among them: the apply must stage
    // them again rather than compute a plan from nothing.
    await crashAndRestart();
    const damaged = checksumsOf(await liveRows(env.config, tenantId));

    // The apply stops before its last insert (task_labels), on a lock of a prepared transaction:
    // it outlives the crash, so the retried apply stops there too.
    await holdLockAcrossCrashes('LOCK TABLE app.task_labels IN EXCLUSIVE MODE');
    const approved = await cli('restore', 'approve', restore.restoreId, '--by', 'bob', '--digest', restore.previewDigest);
    assert.equal(approved.code, 0, approved.stderr);
    await waitFor('the apply waits on app.task_labels', async () => (await stepSessions()).some((s) => s.app === 'tenantsafe-apply' && s.wait === 'Lock'));
    const apps = (await stepSessions()).map((s) => s.app);
    assert.ok(apps.some((a) => a.startsWith('tenantsafe-apply-')), `a side connection of the apply is open too: ${apps.join(', ')}`);
    assert.deepEqual(checksumsOf(await liveRows(env.config, tenantId)), damaged, 'mid-transaction: nothing of the apply is visible');
    await crashAndRestart();
    assert.deepEqual(checksumsOf(await liveRows(env.config, tenantId)), damaged, 'rolled back by crash recovery: not half-applied');

    // The verification, after the retried apply, waits on tasks: a lock queued behind the apply's
    // own is granted as the apply commits, before the verification asks for it.
    await waitFor('the retried apply waits on app.task_labels', async () => (await stepSessions()).some((s) => s.app === 'tenantsafe-apply' && s.wait === 'Lock'));
    const tasks = await connect(env.db.url, 'test-blocker');
    const tasksPid = (await tasks.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0].pid;
    await tasks.query('BEGIN');
    tasks.query('LOCK TABLE app.tasks IN ACCESS EXCLUSIVE MODE').catch(() => undefined); // ends with the crash
    await waitFor('the lock on tasks is queued', async () =>
      (await withConnection(env.db.url, (c) => c.query(`SELECT 1 FROM pg_locks WHERE pid = $1 AND NOT granted`, [tasksPid]))).rowCount! > 0,
    );
    await releasePreparedLock();
    await waitFor('the verification waits on app.tasks', async () => (await stepSessions()).some((s) => s.app === 'tenantsafe-verify' && s.wait === 'Lock'));
    await crashAndRestart();
    await tasks.end().catch(() => undefined);

    const r = await env.engine.catalog.getRestore(restore.restoreId);
    const result = (await env.temporal.workflow.getHandle(r.workflowId, r.runId).result()) as TenantRestoreResult;
    assert.equal(result.state, 'done');
    assert.ok(result.verification!.ok, JSON.stringify(result.verification));
    const backup = await readBackup(env.engine.store, tenantId, backupId);
    assert.deepEqual(checksumsOf(await liveRows(env.config, tenantId)), checksumsOf(backup.rows), 'the tenant is the backup');
    assert.deepEqual(await otherTenantsNow(), othersBefore, 'no other tenant changed');
  });

  it('finishes a full backup whose base backup was cut off, and keeps archiving WAL after the crash', async () => {
    await withConnection(env.db.url, (c) => c.query(`CREATE TABLE public.filler AS SELECT g AS id, md5(g::text) || md5((g * 7)::text) AS pad FROM generate_series(1, 200000) g`));
    const started = await cli('full-backup');
    assert.equal(started.code, 0, started.stderr);
    await waitFor('pg_basebackup streams files', async () => {
      const [p] = await source.cluster.psql<{ phase: string; done: string }>(`SELECT phase, backup_streamed::text AS done FROM pg_stat_progress_basebackup`);
      return p?.phase === 'streaming database files' && Number(p.done) > 2 << 20;
    });
    await crashAndRestart();
    const done = await env.temporal.workflow.getHandle(started.json().workflowId).result();
    const verified = await cli('verify', done.backupId);
    assert.equal(verified.code, 0, verified.stdout + verified.stderr);

    // the WAL archiver lost its stream with the crash: a commit after it still reaches the archive
    await crashAndRestart();
    const committedAt = await withConnection(env.db.url, async (c) => {
      await c.query(`CREATE TABLE public.after_crash (at timestamptz)`);
      // now(): when the transaction began, so no later than its commit
      return (await c.query<{ at: Date }>(`INSERT INTO public.after_crash VALUES (now()) RETURNING at`)).rows[0].at.toISOString();
    });
    await waitFor(`the archive reaches ${committedAt}`, async () => {
      const w = await cli('pitr', 'window');
      return w.code === 0 && Date.parse(w.json().latest) >= Date.parse(committedAt);
    });
  });
});
