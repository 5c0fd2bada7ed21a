import { strict as assert } from 'node:assert';
import type { ChildProcess } from 'node:child_process';
import type { TenantRestoreResult } from '../workflows/messages';
import { liveRows, readBackup } from './support/backups';
import { withDb } from './support/db';
import { createTestEnv, runCli, type TestEnv } from './support/env';
import { spawnWorkerProcess } from '../workers/process';
import { connect } from '../lib/pg';
import { damageTenant } from '../sample/damage';
import { checksumsOf } from './support/restore';

const tenantId = 'globex';

describe('tenant restore when the worker is killed during the apply', function () {
  let env: TestEnv;
  const workers: ChildProcess[] = [];
  before(async function () {
    this.timeout(180_000);
    env = await createTestEnv('local');
  });
  afterEach(() => workers.splice(0).forEach((w) => w.kill('SIGKILL')));
  after(async () => env?.close());

  it('rolls the transaction back, retries on a new worker and finishes: never half-restored', async () => {
    workers.push(await spawnWorkerProcess(env.configFile));
    const cli = (...args: string[]) => runCli([...args, '--json'], { configFile: env.configFile });
    const backupId = (await cli('backup', 'tenant', tenantId, '--wait')).json().backupId;
    await withDb(env.db.url, (c) => damageTenant(c, tenantId));
    const damaged = checksumsOf(await liveRows(env.config, tenantId));
    const requested = (await cli('restore', 'tenant', tenantId, '--backup', backupId, '--by', 'alice')).json();
    assert.equal(requested.state, 'awaiting-approval');

    // Hold a lock only the apply's last statement needs (task_labels gets inserts only, and
    // inserts go parent → child), so it stops after its deletes, updates and other inserts.
    const blocker = await connect(env.db.url);
    // a session of its own: inside a transaction pg_stat_activity keeps showing its first snapshot
    const watcher = await connect(env.db.url);
    const applySessions = async (filter = '') =>
      (await watcher.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'tenantsafe-apply' ${filter}`)).rows[0].n as number;
    await blocker.query('BEGIN');
    await blocker.query('LOCK TABLE app.task_labels IN EXCLUSIVE MODE');
    try {
      const approve = await cli('restore', 'approve', requested.restoreId, '--by', 'bob', '--digest', requested.previewDigest);
      assert.equal(approve.code, 0, approve.stderr);
      for (let i = 0; ; i++) {
        if ((await applySessions(`AND wait_event_type = 'Lock'`)) > 0) break;
        if (i > 600) throw new Error('the apply never blocked on the lock');
        await new Promise((res) => setTimeout(res, 100));
      }
      const written = await watcher.query(
        `SELECT count(DISTINCT l.relation)::int AS n FROM pg_locks l JOIN pg_stat_activity a USING (pid)
          WHERE a.application_name = 'tenantsafe-apply' AND l.mode = 'RowExclusiveLock' AND l.granted AND l.relation::regclass::text LIKE 'app.%'`,
      );
      assert.ok(written.rows[0].n >= 5, `the apply has written to ${written.rows[0].n} app tables before it blocked`);
      // mid-transaction: nothing of it is visible outside
      assert.deepEqual(checksumsOf(await liveRows(env.config, tenantId)), damaged);
      workers[0].kill('SIGKILL');
      for (let i = 0; ; i++) {
        if ((await applySessions()) === 0) break;
        if (i > 300) throw new Error('the killed apply session never went away');
        await new Promise((res) => setTimeout(res, 100));
      }
      assert.deepEqual(checksumsOf(await liveRows(env.config, tenantId)), damaged, 'rolled back: not half-restored');
    } finally {
      await blocker.query('ROLLBACK');
      await blocker.end();
      await watcher.end();
    }

    workers.push(await spawnWorkerProcess(env.configFile));
    const r = await env.engine.catalog.getRestore(requested.restoreId);
    const done = (await env.temporal.workflow.getHandle(r.workflowId, r.runId).result()) as TenantRestoreResult;
    assert.equal(done.state, 'done');
    assert.ok(done.verification!.ok);
    const backup = await readBackup(env.engine.store, tenantId, backupId);
    assert.deepEqual(checksumsOf(await liveRows(env.config, tenantId)), checksumsOf(backup.rows));
  });
});
