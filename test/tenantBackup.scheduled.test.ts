// Tenants' own schedules that fall due together are backed up in one batch (workflows/
// tenantBackupBatcher.ts): each scheduled run still ends with its tenant's result or failure.
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { WorkflowFailedError } from '@temporalio/client';
import { ApplicationFailure, CancelledFailure } from '@temporalio/common';
import { readManifest, tenantBackupPrefix } from '../lib/format/tenantManifest';
import type { tenantBackupBatcher } from '../workflows';
import { databaseScoped, scheduleIds, tenantBackupStatusQuery, workflowIds, type TenantBackupBatcherResult, type TenantBackupInput, type TenantBackupResult } from '../workflows/messages';
import { scheduleTenantBackups } from '../client/schedules';
import { batchPrefix } from '../lib/tenantBackup/batch';
import { digestOf, liveRows, readBackup } from './support/backups';
import { damageAndRestore } from './support/restore';
import { createTestEnv, runCli, type TestEnv } from './support/env';
import { withDb } from './support/db';
import { killOnFirstPack, workerScene } from './support/workerScene';

describe('scheduled tenant backups that fall due together', function () {
  let env: TestEnv;
  const created = new Set<string>();

  before(async function () {
    this.timeout(180_000);
    env = await createTestEnv('local');
    await env.startWorker();
  });
  after(async function () {
    this.timeout(60_000);
    for (const id of created) await env.temporal.schedule.getHandle(id).delete().catch(() => undefined);
    await env?.close();
  });

  /** A tenant's own schedule, made by the CLI (every 24 h: it does not fire by itself while the test runs). */
  const scheduleTenant = async (tenantId: string) => {
    const res = await runCli(['schedule', 'tenant-backups', '--tenant', tenantId, '--every', '24h', '--json'], { configFile: env.configFile });
    assert.equal(res.code, 0, res.stderr);
    created.add(scheduleIds.tenantBackup(tenantId));
    return res.json();
  };

  /** Fires the tenants' schedules at once, as schedules of one interval fire: each one's run. */
  const fireTogether = async (tenants: string[]) => {
    const handles = tenants.map((t) => env.temporal.schedule.getHandle(scheduleIds.tenantBackup(t)));
    const before = await Promise.all(handles.map(async (h) => (await h.describe()).info.recentActions.length));
    await Promise.all(handles.map((h) => h.trigger()));
    return Promise.all(
      handles.map(async (h, i) => {
        for (let n = 0; n < 100; n++) {
          const actions = (await h.describe()).info.recentActions;
          if (actions.length > before[i]) return env.temporal.workflow.getHandle(actions.at(-1)!.action.workflow.workflowId, actions.at(-1)!.action.workflow.firstExecutionRunId);
          await new Promise((r) => setTimeout(r, 100));
        }
        throw new Error(`schedule of ${tenants[i]} did not start a run`);
      }),
    );
  };

  /** The batcher's run, once it has ended (idle for its quiet time). */
  const batcherResult = () => env.temporal.workflow.getHandle<typeof tenantBackupBatcher>(workflowIds.tenantBackupBatcher()).result() as Promise<TenantBackupBatcherResult>;

  const together = ['acme', 'globex', 'initech', 'umbrella'];
  const batched = new Map<string, TenantBackupResult>();

  it('backs up the tenants whose schedules fire together in one batch, from one snapshot, each run ending with its own tenant\'s result', async function () {
    this.timeout(180_000);
    for (const t of together) {
      const s = await scheduleTenant(t);
      assert.equal(s.batched, true, 'a schedule written now marks its runs scheduled');
    }
    const d = await env.temporal.schedule.getHandle(scheduleIds.tenantBackup('acme')).describe();
    assert.deepEqual(d.action.type === 'startWorkflow' && d.action.args?.[0], { tenantId: 'acme', scheduled: true } satisfies TenantBackupInput);

    const runs = await fireTogether(together);
    const results = (await Promise.all(runs.map((r) => r.result()))) as TenantBackupResult[];
    assert.deepEqual(results.map((r) => r.tenantId), together, 'each run ends with its own tenant');
    const batchIds = new Set(results.map((r) => r.batchId));
    assert.equal(batchIds.size, 1, `one batch: ${[...batchIds].join(', ')}`);
    assert.ok([...batchIds][0], 'the results name their batch');
    assert.equal(new Set(results.map((r) => `${r.snapshotAt} ${r.lsn}`)).size, 1, 'one snapshot');
    for (const r of results) {
      batched.set(r.tenantId, r);
      const m = await readManifest(env.engine.store, tenantBackupPrefix(r.tenantId, r.backupId));
      assert.equal(m.batch?.key, `packs/${r.batchId}/1/shared.json`, `${r.tenantId}'s backup is a part of the batch's packs`);
      assert.equal(m.tenantChecksum, r.tenantChecksum);
      assert.equal(m.totals.rows, r.rows);
      assert.ok(r.rows > 0);
      assert.equal((await env.engine.catalog.getBackup(r.backupId)).tenantId, r.tenantId, 'indexed in the catalog');
    }
    // the catalog's runs: each scheduled run completed, naming the batch's backup of its tenant
    const runRows = await env.engine.catalog.listRuns(50);
    for (const [i, r] of results.entries()) {
      const { runId } = await runs[i].describe();
      const row = runRows.find((x) => x.runId === runId);
      assert.deepEqual([row?.workflowType, row?.status, row?.backupId, row?.details?.batchId], ['tenantBackup', 'completed', r.backupId, r.batchId], `${r.tenantId}'s run in the catalog`);
    }

    const totals = await batcherResult();
    assert.deepEqual(totals, { batches: 1, tenants: together.length, failed: 0, own: 0 });
  });

  it('gives each tenant of the batch the backup a backup of its own gives it, and a manual `backup tenant` stays a backup of its own', async function () {
    this.timeout(180_000);
    const batcherRunsBefore = await batcherRuns();
    for (const t of ['acme', 'umbrella']) {
      const res = await runCli(['backup', 'tenant', t, '--wait', '--json'], { configFile: env.configFile });
      assert.equal(res.code, 0, res.stderr);
      const own = res.json<{ backupId: string; rows: number }>();
      const alone = await readManifest(env.engine.store, tenantBackupPrefix(t, own.backupId));
      const inBatch = await readManifest(env.engine.store, tenantBackupPrefix(t, batched.get(t)!.backupId));
      assert.equal(alone.batch, undefined, 'a manual backup writes its own objects, no pack');
      assert.notEqual(alone.snapshot.lsn, inBatch.snapshot.lsn, 'from a snapshot of its own');
      assert.deepEqual(
        inBatch.tables.map((x) => [x.table, x.rows, x.rowChecksum]),
        alone.tables.map((x) => [x.table, x.rows, x.rowChecksum]),
        `${t}: the batch's tables equal its own backup's (nothing changed in between)`,
      );
      assert.equal(inBatch.tenantChecksum, alone.tenantChecksum);
      assert.equal(own.rows, batched.get(t)!.rows);
    }
    assert.equal(await batcherRuns(), batcherRunsBefore, 'a manual backup starts no batcher');
    // and the batch's backup restores alone
    await damageAndRestore(env.engine, 'globex', batched.get('globex')!.backupId);
  });

  it('fails only the run of the tenant whose part of the batch failed, with its own error', async function () {
    this.timeout(180_000);
    // a regular file where hooli's backups would go: storage refuses that tenant only
    const root = env.config.storage.primary.kind === 'local' ? env.config.storage.primary.path : '';
    fs.mkdirSync(path.join(root, 'tenants'), { recursive: true });
    fs.writeFileSync(path.join(root, 'tenants', 'hooli'), 'not a directory');
    try {
      await scheduleTenant('hooli');
      const tenants = ['acme', 'globex', 'hooli'];
      const runs = await fireTogether(tenants);
      const outcomes = await Promise.allSettled(runs.map((r) => r.result()));
      const failed = outcomes[2];
      assert.equal(failed.status, 'rejected');
      const cause = ((failed as PromiseRejectedResult).reason as WorkflowFailedError).cause as ApplicationFailure;
      assert.equal(cause.type, 'StorageUnwritable', cause.message);
      const done = outcomes.slice(0, 2).map((o) => (o as PromiseFulfilledResult<TenantBackupResult>).value);
      assert.deepEqual(done.map((r) => r.tenantId), ['acme', 'globex']);
      assert.equal(new Set(done.map((r) => r.batchId)).size, 1, 'the others in one batch');
      assert.notEqual(done[0].batchId, batched.get('acme')!.batchId, 'a new batch');
      assert.deepEqual(await batcherResult(), { batches: 1, tenants: 2, failed: 1, own: 0 });
    } finally {
      fs.rmSync(path.join(root, 'tenants', 'hooli'));
    }
  });

  it('lets a schedule written before batching start backups of its own until the schedule is written again', async function () {
    this.timeout(180_000);
    const id = scheduleIds.tenantBackup('stark');
    // as `schedule tenant-backups --tenant stark` wrote it before: no `scheduled` mark
    await env.temporal.schedule.create({
      scheduleId: id,
      spec: { intervals: [{ every: '24h' }] },
      action: { type: 'startWorkflow', workflowType: 'tenantBackup', taskQueue: env.config.temporal.taskQueue, workflowId: databaseScoped(workflowIds.tenantBackup('stark'), undefined), args: [{ tenantId: 'stark' }] },
      memo: { tenantId: 'stark', everyMs: 86_400_000 },
    });
    created.add(id);
    let listed = await runCli(['schedule', 'list', '--json'], { configFile: env.configFile });
    for (let i = 0; i < 20 && !listed.json().some((s: { scheduleId: string }) => s.scheduleId === id); i++) {
      await new Promise((r) => setTimeout(r, 250));
      listed = await runCli(['schedule', 'list', '--json'], { configFile: env.configFile });
    }
    assert.equal(listed.json().find((s: { scheduleId: string }) => s.scheduleId === id).batched, false, '`schedule list` shows it is not batched');
    const [old] = await fireTogether(['stark']);
    const result = (await old.result()) as TenantBackupResult;
    assert.equal(result.batchId, undefined, 'a backup of its own');
    assert.equal((await readManifest(env.engine.store, tenantBackupPrefix('stark', result.backupId))).batch, undefined);

    assert.equal((await scheduleTenant('stark')).batched, true, 'written again: batched');
    const [now] = await fireTogether(['stark']);
    assert.ok(((await now.result()) as TenantBackupResult).batchId, 'now through the batcher');
    assert.equal((await batcherResult()).tenants, 1);
  });

  it('sends a big tenant back to back itself up with its own export, and leaves out a run cancelled while it waits', async function () {
    this.timeout(180_000);
    await withDb(env.db.url, (c) => c.query('ANALYZE'));
    for (const t of ['acme', 'globex', 'wayne']) await scheduleTenant(t);
    // a batcher already running (here with a long quiet time and a low bar for big tenants): the runs join it
    const batcher = await env.temporal.workflow.start<typeof tenantBackupBatcher>('tenantBackupBatcher', {
      taskQueue: env.config.temporal.taskQueue,
      workflowId: workflowIds.tenantBackupBatcher(),
      args: [{ quietMs: 8_000, bigTenantRows: 6_000 }],
    });
    const [acme, globex, wayne] = await fireTogether(['acme', 'globex', 'wayne']);
    for (let i = 0; i < 50 && (await wayne.query(tenantBackupStatusQuery)).state !== 'batching'; i++) await new Promise((r) => setTimeout(r, 100));
    await wayne.cancel();
    const [a, g] = (await Promise.all([acme.result(), globex.result()])) as TenantBackupResult[];
    await assert.rejects(wayne.result(), (err: WorkflowFailedError) => err.cause instanceof CancelledFailure);
    assert.equal(a.batchId, undefined, 'the big tenant: a backup of its own');
    assert.equal((await readManifest(env.engine.store, tenantBackupPrefix('acme', a.backupId))).batch, undefined);
    assert.ok(g.batchId, 'the small one: in the batch');
    assert.deepEqual(await batcher.result(), { batches: 1, tenants: 1, failed: 0, own: 1 }, 'wayne left before the batch');
    assert.equal((await env.engine.catalog.listBackups({ tenantId: 'wayne' })).length, 0, 'no backup of the cancelled run');
  });

  /** How many runs the batcher has had (visibility may lag: read until it settles). */
  async function batcherRuns(): Promise<number> {
    let n = -1;
    for (let i = 0; i < 5; i++) {
      let count = 0;
      for await (const _ of env.temporal.workflow.list({ query: `WorkflowId = '${workflowIds.tenantBackupBatcher()}'` })) count++;
      if (count === n) return n;
      n = count;
      await new Promise((r) => setTimeout(r, 300));
    }
    return n;
  }
});

describe('scheduled tenant backups in one batch when the worker is killed mid-batch', function () {
  const tenants = ['acme', 'globex', 'initech', 'umbrella', 'hooli', 'stark', 't100', 't300'];
  // before the scene's own after hook closes its connection (after hooks run in the order they are
  // declared): schedules left behind would be excluded from every later all-tenants schedule
  after(async () => {
    for (const t of tenants) await scene.env.temporal.schedule.getHandle(scheduleIds.tenantBackup(t)).delete();
  });
  const scene = workerScene({ tenants: 300, rows: 400_000 });

  it('completes the batch after the worker restarts: each run ends with its tenant backed up once, no orphan pack', async function () {
    this.timeout(300_000);
    const { env, store } = scene;
    await scene.spawnWorker();
    for (const tenantId of tenants) await scheduleTenantBackups(env.temporal, env.config.temporal.taskQueue, { tenantId, everyMs: 86_400_000 });
    const schedules = tenants.map((t) => env.temporal.schedule.getHandle(scheduleIds.tenantBackup(t)));
    await Promise.all(schedules.map((h) => h.trigger()));

    // killed once a first pack is stored and before the batch's index (no manifest yet)
    const killedAt = await killOnFirstPack(scene);
    const batchId = killedAt[0].split('/')[1];
    await scene.spawnWorker();

    const runs = await Promise.all(
      schedules.map(async (h) => {
        const a = (await h.describe()).info.recentActions.at(-1)!.action.workflow;
        return env.temporal.workflow.getHandle(a.workflowId, a.firstExecutionRunId);
      }),
    );
    const results = (await Promise.all(runs.map((r) => r.result()))) as TenantBackupResult[];
    assert.deepEqual(results.map((r) => r.tenantId), tenants);
    assert.deepEqual([...new Set(results.map((r) => r.batchId))], [batchId], 'the batch the killed worker began, completed by the next');
    const backups = (await env.engine.catalog.listBackups()).filter((b) => b.backupId.startsWith(batchId.slice(0, 16)));
    assert.deepEqual(backups.map((b) => b.tenantId).sort(), [...tenants].sort(), 'every tenant once');
    const referenced = new Set<string>();
    for (const r of results) {
      const backup = await readBackup(store, r.tenantId, r.backupId);
      assert.equal(backup.manifest.batch?.key, `${batchPrefix(batchId)}2/shared.json`, 'from the retry');
      for (const t of backup.manifest.tables) referenced.add(t.object.key);
      referenced.add(backup.manifest.batch!.key);
      const live = await liveRows(env.config, r.tenantId);
      for (const t of backup.manifest.tables) assert.equal(t.rowChecksum, digestOf(live.get(t.table)!), `${r.tenantId} ${t.table}`);
    }
    const stored: string[] = [];
    for await (const o of store.list(batchPrefix(batchId))) stored.push(o.key);
    assert.deepEqual(stored.filter((k) => !k.endsWith('index.json') && !referenced.has(k)), [], 'no orphan pack');
    assert.ok(stored.every((k) => !k.startsWith(`${batchPrefix(batchId)}1/`)), 'nothing of the killed attempt is left');
  });
});
