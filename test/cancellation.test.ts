// Cancelling a workflow mid-step passes the cancellation on (docs/architecture.md, core rule 12):
// to Postgres, whose backends stop at once (pg_cancel_backend) rather than when their statement
// or lock wait would have ended, and to child processes. A cancelled restore leaves nothing: no
// scratch schema, the tenant as it was; a cancelled full backup no pg_basebackup, no compressor,
// no object.
import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import * as path from 'node:path';
import { WorkflowFailedError } from '@temporalio/client';
import { CancelledFailure } from '@temporalio/common';
import type { Client } from 'pg';
import { connect, withConnection } from '../lib/pg';
import { scratchSchemaPattern } from '../lib/restore/mapping';
import { ensureSampleDatabase, sampleTenants } from '../sample/generate';
import { damageTenant } from '../sample/damage';
import { databaseWorkflowIds, workflowIds } from '../workflows/messages';
import type { fullBackup } from '../workflows';
import { liveRows } from './support/backups';
import { startSourceCluster, stopWalArchiver, type SourceCluster } from './support/cluster';
import { defaultSample } from './support/db';
import { createTestEnv, runCli, type TestEnv } from './support/env';
import { checksumsOf } from './support/restore';
import { waitFor } from './support/wait';

const tenantId = 'wayne';

describe('cancelling a workflow mid-step', function () {
  this.timeout(240_000);
  let source: SourceCluster;
  let env: TestEnv;
  let backupId: string;
  const cli = (...args: string[]) => runCli([...args, '--json'], { configFile: env.configFile });

  before(async () => {
    source = await startSourceCluster();
    const { url } = await ensureSampleDatabase(source.cluster.url(), 'saas', defaultSample);
    await withConnection(url, (c) => c.query(`CREATE TABLE public.filler AS SELECT g AS id, md5(g::text) || md5((g * 7)::text) AS pad FROM generate_series(1, 200000) g`));
    env = await createTestEnv('local', {
      db: { name: 'saas', url, tenants: sampleTenants(defaultSample), drop: async () => undefined },
      configure: (doc, dir) => {
        doc.fullBackup = { maxRate: '2MB/s', compression: 'zstd:3', walPartialInterval: '200ms', walSpoolDir: path.join(dir, 'spool') };
        doc.verification = { scratchDir: source.dir };
      },
    });
    await env.startWorker();
    const backup = await cli('backup', 'tenant', tenantId, '--wait');
    assert.equal(backup.code, 0, backup.stderr);
    backupId = backup.json().backupId;
  });
  after(async () => {
    if (env) await stopWalArchiver(env);
    await env?.close();
    await source?.remove();
  });

  const sessions = async (app: string) =>
    (await withConnection(env.db.url, (c) => c.query<{ pid: number; wait: string | null }>(`SELECT pid, wait_event_type AS wait FROM pg_stat_activity WHERE application_name = $1`, [app]))).rows;
  const scratchSchemas = async () =>
    (await withConnection(env.db.url, (c) => c.query<{ name: string }>(`SELECT nspname AS name FROM pg_namespace WHERE nspname LIKE $1`, [scratchSchemaPattern]))).rows.map((r) => r.name);
  async function holdLock(sql: string): Promise<Client> {
    const c = await connect(env.db.url, 'test-blocker');
    await c.query('BEGIN');
    await c.query(sql);
    return c;
  }
  const assertCancelled = async (result: Promise<unknown>) => {
    const err = await result.then(
      () => assert.fail('the workflow completed'),
      (e: unknown) => e,
    );
    assert.ok(err instanceof WorkflowFailedError && err.cause instanceof CancelledFailure, `ended cancelled, not: ${String(err)}`);
  };

  /** Cancels the restore while its step waits on a lock the test holds: the step's sessions go at once, while the lock is still held. */
  async function cancelWhileWaiting(app: string, workflowId: string, blocker: Client, damaged: Record<string, string>) {
    try {
      await waitFor(`${app} waits on the lock`, async () => (await sessions(app)).some((s) => s.wait === 'Lock'));
      const handle = env.temporal.workflow.getHandle(workflowId);
      const cancelledAt = Date.now();
      await handle.cancel();
      await waitFor(`the ${app} sessions end`, async () => (await sessions(app)).length === 0, { tries: 200 });
      const gone = Date.now() - cancelledAt;
      // the activity hears of it in the answer to its next heartbeat (sent every 2 s); the lock is still held
      assert.ok(gone < 6_000, `the ${app} sessions ended ${gone} ms after the cancellation, while the lock they waited on was held`);
      await assertCancelled(handle.result());
    } finally {
      await blocker.end();
    }
    assert.deepEqual(await scratchSchemas(), [], 'no scratch schema');
    assert.deepEqual(checksumsOf(await liveRows(env.config, tenantId)), damaged, 'the tenant is as it was: nothing applied');
    await assertRestoreCancelled(workflowId);
  }

  /** A cancelled restore says so, not "failed": its status query, the catalog (`restore list`) and the audit log's outcome. */
  async function assertRestoreCancelled(workflowId: string) {
    const { restoreId, state } = await env.temporal.workflow.getHandle(workflowId).query<{ restoreId: string; state: string }>('status');
    assert.equal(state, 'cancelled', 'the status query');
    const listed = await cli('restore', 'list', '--tenant', tenantId, '--limit', '1');
    assert.equal(listed.code, 0, listed.stderr);
    assert.deepEqual(
      listed.json<{ restoreId: string; state: string }[]>().map((r) => [r.restoreId, r.state]),
      [[restoreId, 'cancelled']],
      'the catalog',
    );
    const [ended] = await env.engine.audit.list({ tenantId, action: 'restore.outcome', limit: 1 });
    assert.deepEqual([ended?.subject.restoreId, ended?.outcome], [restoreId, 'cancelled'], 'the audit log');
    assert.ok(!(await activitiesOf(workflowId)).includes('notifyAlert'), 'no failure alert: nothing failed');
  }

  /** The activities a run scheduled, by type. */
  async function activitiesOf(workflowId: string): Promise<string[]> {
    const history = await env.temporal.workflow.getHandle(workflowId).fetchHistory();
    return (history.events ?? []).flatMap((e) => (e.activityTaskScheduledEventAttributes?.activityType?.name ? [e.activityTaskScheduledEventAttributes.activityType.name] : []));
  }

  it('a restore cancelled while staging: the staging stops at once, no scratch schema is left, nothing changed', async () => {
    await withConnection(env.db.url, (c) => damageTenant(c, tenantId));
    const damaged = checksumsOf(await liveRows(env.config, tenantId));
    const blocker = await holdLock('LOCK TABLE app.comments IN ACCESS EXCLUSIVE MODE');
    const requesting = cli('restore', 'tenant', tenantId, '--backup', backupId, '--by', 'alice');
    await cancelWhileWaiting('tenantsafe-stage', workflowIds.tenantRestore(tenantId), blocker, damaged);
    const requested = await requesting;
    assert.notEqual(requested.code, 0, 'the request reports the cancellation');
  });

  it('a restore cancelled while applying: the apply transaction stops at once, rolled back; no scratch schema is left', async () => {
    const damaged = checksumsOf(await liveRows(env.config, tenantId));
    const requested = await cli('restore', 'tenant', tenantId, '--backup', backupId, '--by', 'alice');
    assert.equal(requested.code, 0, requested.stderr);
    const blocker = await holdLock('LOCK TABLE app.task_labels IN EXCLUSIVE MODE');
    const approved = await cli('restore', 'approve', requested.json().restoreId, '--by', 'bob', '--digest', requested.json().previewDigest);
    assert.equal(approved.code, 0, approved.stderr);
    await cancelWhileWaiting('tenantsafe-apply', workflowIds.tenantRestore(tenantId), blocker, damaged);
  });

  it('a full backup cancelled mid-stream: pg_basebackup is gone, its objects removed, the workflow cancelled, no alert', async () => {
    const handle = await env.temporal.workflow.start<typeof fullBackup>('fullBackup', { taskQueue: env.config.temporal.taskQueue, workflowId: databaseWorkflowIds.fullBackup(), args: [{}] });
    const { backupId: fullId } = await handle.query<{ backupId: string }>('status');
    await waitFor('pg_basebackup streams files', async () => {
      const [p] = await source.cluster.psql<{ phase: string; done: string }>(`SELECT phase, backup_streamed::text AS done FROM pg_stat_progress_basebackup`);
      return p?.phase === 'streaming database files' && Number(p.done) > 2 << 20;
    });
    // the in-process worker's children
    const tools = () =>
      execFileSync('ps', ['-eo', 'ppid=,args='], { encoding: 'utf8' })
        .split('\n')
        .filter((l) => Number(l.trim().split(' ')[0]) === process.pid && /pg_basebackup|zstd/.test(l));
    assert.equal(tools().filter((l) => l.includes('pg_basebackup')).length, 1, 'pg_basebackup runs');
    await handle.cancel();
    await assertCancelled(handle.result());
    assert.equal((await handle.query<{ state: string }>('status')).state, 'cancelled', 'the status query says cancelled, not failed');
    const run = (await env.engine.catalog.listRuns(20)).find((r) => r.backupId === fullId);
    assert.equal(run?.status, 'cancelled', 'the catalog records the run cancelled, not failed');
    assert.ok(!(await activitiesOf(handle.workflowId)).includes('notifyAlert'), 'no failure alert for a cancelled backup');
    assert.deepEqual(tools(), [], 'no pg_basebackup, no zstd left');
    // a walsender asleep in --max-rate's throttle sees its client gone when it wakes
    await waitFor('no walsender of the backup left', async () => (await sessions('tenantsafe-basebackup')).length === 0, { tries: 200 });
    const keys: string[] = [];
    for await (const o of env.engine.store.list(`full/${fullId}/`)) keys.push(o.key);
    assert.deepEqual(keys, [], 'no object of the cancelled backup');
  });
});
