import { strict as assert } from 'node:assert';
import { batchPrefix, packIndexFile } from '../lib/tenantBackup/batch';
import { workflowIds, type TenantBackupsAllResult } from '../workflows/messages';
import type { tenantBackupsAll } from '../workflows';
import type { ChildProcess } from 'node:child_process';
import { digestOf, liveRows, readBackup } from './support/backups';
import { workerScene } from './support/workerScene';

describe('several workers share an every-tenant run', function () {
  const scene = workerScene({ tenants: 300, rows: 400_000 });

  it('cuts the tenants into batches two worker processes take, the big tenants beside them, and a killed worker loses no tenant', async function () {
    this.timeout(300_000);
    const { db, env, store, workers } = scene;
    await scene.spawnWorker();
    await scene.spawnWorker();
    const handle = await env.temporal.workflow.start<typeof tenantBackupsAll>('tenantBackupsAll', {
      taskQueue: env.config.temporal.taskQueue,
      workflowId: workflowIds.tenantBackupsAll(),
      args: [{ bigTenantRows: 30_000, batchTenants: 50, concurrency: 2 }],
    });

    // the worker running a batch dies mid-batch (once its first pack is stored); the other carries on
    const deadline = Date.now() + 120_000;
    let killed: ChildProcess | undefined;
    while (!killed) {
      const { raw } = await handle.describe();
      const running = (raw.pendingActivities ?? []).find((a) => a.activityType?.name === 'takeTenantBatch' && a.lastWorkerIdentity);
      let packs = 0;
      for await (const o of store.list('packs/')) if (o.key.endsWith('.pack')) packs++;
      if (running && packs > 0) {
        const pid = Number(running.lastWorkerIdentity!.split('@')[0]);
        killed = workers.find((w) => w.pid === pid);
        assert.ok(killed, `a worker of this test runs the batch (${running.lastWorkerIdentity})`);
        killed.kill('SIGKILL');
      }
      if (raw.workflowExecutionInfo?.closeTime) await handle.result(); // its failure, or done too soon
      if (Date.now() > deadline) throw new Error('no batch ever ran');
      await new Promise((r) => setTimeout(r, 50));
    }
    const survivor = workers.find((w) => w !== killed)!;

    const result: TenantBackupsAllResult = await handle.result();
    assert.equal(result.succeeded, db.tenants.length);
    assert.deepEqual(result.failed, []);
    const own = Object.keys(result.backupIds);
    assert.ok(own.includes('acme'), `the biggest tenant had a backup of its own (${own.join(', ')})`);
    assert.equal(result.batch!.tenants, db.tenants.length - own.length);
    assert.equal(result.batch!.batches, Math.ceil(result.batch!.tenants / 50));

    const history = await handle.fetchHistory();
    const starts = (history.events ?? []).filter((e) => e.activityTaskStartedEventAttributes).map((e) => e.activityTaskStartedEventAttributes!);
    const batchEvents = (history.events ?? []).filter((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'takeTenantBatch');
    assert.equal(batchEvents.length, result.batch!.batches, 'one activity per batch');
    const events = history.events ?? [];
    const firstChild = events.findIndex((e) => e.startChildWorkflowExecutionInitiatedEventAttributes);
    const batchDone = events.map((e, i) => (batchEvents.some((b) => String(b.eventId) === String(e.activityTaskCompletedEventAttributes?.scheduledEventId)) ? i : -1));
    const lastBatchDone = Math.max(...batchDone);
    assert.ok(firstChild >= 0 && firstChild < lastBatchDone, 'the big tenants\' own backups started beside the batches');
    const retried = starts.filter((s) => Number(s.attempt) > 1);
    assert.ok(retried.length >= 1, 'the killed worker\'s batches were taken again');
    assert.ok(retried.every((s) => s.identity?.startsWith(`${survivor.pid}@`)), 'by the other worker');

    // every tenant once, with one backup id each; each batch of the run its own
    const backups = await env.engine.catalog.listBackups();
    assert.deepEqual(backups.map((b) => b.tenantId).sort(), db.tenants.map((t) => t.tenantId).sort(), 'every tenant once');
    assert.equal(new Set(backups.map((b) => b.backupId)).size, backups.length, 'backup ids unique');
    const referenced = new Set<string>();
    for (const b of backups) {
      const backup = await readBackup(store, b.tenantId, b.backupId);
      for (const t of backup.manifest.tables) referenced.add(t.object.key);
      if (backup.manifest.batch) referenced.add(backup.manifest.batch.key);
      if (['acme', 'globex', 't150', 't300'].includes(b.tenantId)) {
        const live = await liveRows(env.config, b.tenantId);
        for (const t of backup.manifest.tables) assert.equal(t.rowChecksum, digestOf(live.get(t.table)!), `${b.tenantId} ${t.table}`);
      }
    }
    const batches = new Set([...referenced].filter((k) => k.startsWith('packs/')).map((k) => k.split('/')[1]));
    assert.equal(batches.size, result.batch!.batches, 'each batch its own packs');
    const stored: string[] = [];
    for (const batchId of batches) for await (const o of store.list(batchPrefix(batchId))) stored.push(o.key);
    const orphans = stored.filter((k) => !k.endsWith(packIndexFile) && !referenced.has(k));
    assert.deepEqual(orphans, [], 'every stored pack is referenced by a manifest: the killed attempt left nothing');
  });
});
