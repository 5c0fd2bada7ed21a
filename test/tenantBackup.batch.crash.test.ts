import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { batchPrefix } from '../lib/tenantBackup/batch';
import { workflowIds, type TenantBackupsAllResult } from '../workflows/messages';
import type { tenantBackupsAll } from '../workflows';
import { digestOf, liveRows, readBackup } from './support/backups';
import { killOnFirstPack, workerScene } from './support/workerScene';

describe('batched tenant backups when the worker is killed mid-batch', function () {
  const scene = workerScene({ tenants: 300, rows: 400_000 });

  it('completes the batch after the worker restarts: every tenant backed up once, no orphan pack', async function () {
    this.timeout(300_000);
    const { db, env, store } = scene;
    await scene.spawnWorker();
    const handle = await env.temporal.workflow.start<typeof tenantBackupsAll>('tenantBackupsAll', {
      taskQueue: env.config.temporal.taskQueue,
      workflowId: workflowIds.tenantBackupsAll(),
      args: [{ bigTenantRows: 10_000_000 }],
    });
    // killed once a first pack is stored and before any manifest
    const killedAt = await killOnFirstPack(scene);
    const batchId = killedAt[0].split('/')[1];
    assert.ok(killedAt.every((k) => k.startsWith(`${batchPrefix(batchId)}1/`)), 'the first attempt wrote them');

    await scene.spawnWorker();
    const result: TenantBackupsAllResult = await handle.result();
    assert.equal(result.succeeded, db.tenants.length);
    assert.deepEqual(result.failed, []);
    assert.ok(result.batch!.orphanPacksRemoved >= killedAt.length, `the first attempt's packs were removed (${result.batch!.orphanPacksRemoved})`);

    const backups = (await env.engine.catalog.listBackups()).filter((b) => b.backupId.startsWith(batchId.slice(0, 16)));
    assert.deepEqual(backups.map((b) => b.tenantId).sort(), db.tenants.map((t) => t.tenantId).sort(), 'every tenant once');
    const referenced = new Set<string>();
    for (const b of backups) {
      const backup = await readBackup(store, b.tenantId, b.backupId);
      for (const t of backup.manifest.tables) referenced.add(t.object.key);
      if (backup.manifest.batch) referenced.add(backup.manifest.batch.key);
      if (['acme', 'globex', 't300'].includes(b.tenantId)) {
        const live = await liveRows(env.config, b.tenantId);
        for (const t of backup.manifest.tables) assert.equal(t.rowChecksum, digestOf(live.get(t.table)!), `${b.tenantId} ${t.table}`);
      }
    }
    const stored: string[] = [];
    for await (const o of store.list(batchPrefix(batchId))) stored.push(o.key);
    const orphans = stored.filter((k) => !k.endsWith('index.json') && !referenced.has(k));
    assert.deepEqual(orphans, [], 'every stored pack (and the shared description) is referenced by a manifest');
    assert.ok(stored.every((k) => !k.startsWith(`${batchPrefix(batchId)}1/`)), 'nothing of the killed attempt is left');
  });
});

describe('batched tenant backups when the worker is killed while the manifests are written', function () {
  const scene = workerScene({ tenants: 3_000, rows: 6_000 });

  it('keeps the tenants whose manifests made it, backs up the rest once, and leaves no partial file or orphan pack', async function () {
    this.timeout(600_000);
    const { db, env, store, workers } = scene;
    await scene.spawnWorker();
    const handle = await env.temporal.workflow.start<typeof tenantBackupsAll>('tenantBackupsAll', {
      taskQueue: env.config.temporal.taskQueue,
      workflowId: workflowIds.tenantBackupsAll(),
      args: [{ bigTenantRows: 10_000_000 }],
    });
    // killed once a first chunk of manifests is indexed, before the last
    const deadline = Date.now() + 300_000;
    let indexedAtKill = 0;
    while (indexedAtKill === 0) {
      const indexed = (await env.engine.catalog.listBackups()).length;
      if (indexed >= db.tenants.length) throw new Error('the batch finished before the worker could be killed');
      if (indexed > 0) {
        workers[0].kill('SIGKILL');
        indexedAtKill = indexed;
      }
      if (Date.now() > deadline) throw new Error('no manifest was ever indexed');
      await new Promise((r) => setTimeout(r, 20));
    }
    const firstAttempt = await env.engine.catalog.listBackups();

    await scene.spawnWorker();
    const result: TenantBackupsAllResult = await handle.result();
    assert.equal(result.succeeded, db.tenants.length);
    assert.deepEqual(result.failed, []);

    const backups = await env.engine.catalog.listBackups();
    assert.deepEqual(backups.map((b) => b.tenantId).sort(), db.tenants.map((t) => t.tenantId).sort(), 'every tenant once');
    const now = new Map(backups.map((b) => [b.tenantId, b.backupId]));
    for (const b of firstAttempt) assert.equal(now.get(b.tenantId), b.backupId, `${b.tenantId}: the backup the killed attempt completed is kept`);
    const attempts = new Set<string>();
    const referenced = new Set<string>();
    for (const b of backups) {
      const backup = await readBackup(store, b.tenantId, b.backupId);
      for (const t of backup.manifest.tables) referenced.add(t.object.key);
      referenced.add(backup.manifest.batch!.key);
      attempts.add(backup.manifest.batch!.key.split('/').at(-2)!);
    }
    assert.deepEqual([...attempts].sort(), ['1', '2'], 'the first attempt\'s tenants keep its packs; the rest come from the retry');
    const stored: string[] = [];
    for await (const o of store.list('packs/')) stored.push(o.key);
    assert.deepEqual(stored.filter((k) => !k.endsWith('index.json') && !referenced.has(k)), [], 'no orphan pack');
    const root = env.config.storage.primary.kind === 'local' ? env.config.storage.primary.path : '';
    const partials = fs.readdirSync(root, { recursive: true }).map(String).filter((f) => path.basename(f).includes('.partial-'));
    assert.deepEqual(partials, [], 'no partial manifest file left behind');
    console.log(`      killed with ${indexedAtKill} of ${db.tenants.length} indexed`);
  });
});
