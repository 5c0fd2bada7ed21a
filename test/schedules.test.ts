import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { TenantBackupsAllInput, TenantBackupsAllResult } from '../workflows/messages';
import { scheduleIds } from '../workflows/messages';
import { createTestEnv, runCli, type TestEnv } from './support/env';

describe('tenant backup schedules', function () {
  let env: TestEnv;
  before(async function () {
    this.timeout(180_000);
    env = await createTestEnv('local');
    await env.startWorker();
  });
  after(async () => {
    for (const id of [scheduleIds.tenantBackupsAll, scheduleIds.tenantBackup('acme')]) {
      await env.temporal.schedule.getHandle(id).delete().catch(() => undefined);
    }
    await env?.close();
  });

  const allArgs = async () => {
    const d = await env.temporal.schedule.getHandle(scheduleIds.tenantBackupsAll).describe();
    assert.equal(d.action.type, 'startWorkflow');
    return (d.action.type === 'startWorkflow' ? d.action.args?.[0] : undefined) as TenantBackupsAllInput;
  };

  it('creates an all-tenants schedule that skips overlapping runs', async () => {
    const res = await runCli(['schedule', 'tenant-backups', '--every', '24h', '--concurrency', '3', '--json'], { configFile: env.configFile });
    assert.equal(res.code, 0, res.stderr);
    assert.equal(res.json().scheduleId, scheduleIds.tenantBackupsAll);
    assert.equal(res.json().every, '86400s');
    const d = await env.temporal.schedule.getHandle(scheduleIds.tenantBackupsAll).describe();
    assert.equal(d.policies.overlap, 'SKIP');
    assert.equal(Number(d.policies.catchupWindow), 86_400_000);
    assert.deepEqual(await allArgs(), { excludeTenants: [], concurrency: 3 });
  });

  it('gives a tenant its own interval and leaves it out of the all-tenants run', async () => {
    const res = await runCli(['schedule', 'tenant-backups', '--tenant', 'acme', '--every', '6h', '--json'], { configFile: env.configFile });
    assert.equal(res.code, 0, res.stderr);
    assert.equal(res.json().scheduleId, scheduleIds.tenantBackup('acme'));
    assert.deepEqual(await allArgs(), { excludeTenants: ['acme'], concurrency: 3 });
    // listing goes through Temporal's visibility store, which may lag a moment behind
    let list = await runCli(['schedule', 'list', '--json'], { configFile: env.configFile });
    for (let i = 0; i < 20 && list.json().length < 2; i++) {
      await new Promise((r) => setTimeout(r, 250));
      list = await runCli(['schedule', 'list', '--json'], { configFile: env.configFile });
    }
    assert.deepEqual(list.json().map((s: { scheduleId: string; every: string }) => [s.scheduleId, s.every]), [
      [scheduleIds.tenantBackup('acme'), '21600s'],
      [scheduleIds.tenantBackupsAll, '86400s'],
    ]);
  });

  it('backs up every other tenant when one fails, and the run lists the failure', async () => {
    // a regular file where hooli's backups would go: storage refuses that tenant only
    const root = env.config.storage.primary.kind === 'local' ? env.config.storage.primary.path : '';
    fs.mkdirSync(path.join(root, 'tenants'), { recursive: true });
    fs.writeFileSync(path.join(root, 'tenants', 'hooli'), 'not a directory');

    const schedule = env.temporal.schedule.getHandle(scheduleIds.tenantBackupsAll);
    await schedule.trigger();
    let workflowId: string | undefined;
    for (let i = 0; i < 100 && !workflowId; i++) {
      const action = (await schedule.describe()).info.recentActions[0]?.action;
      workflowId = action?.workflow.workflowId;
      if (!workflowId) await new Promise((r) => setTimeout(r, 200));
    }
    const result = await env.temporal.workflow.getHandle(workflowId!).result() as TenantBackupsAllResult;
    const expected = env.db.tenants.map((t) => t.tenantId).filter((t) => t !== 'acme' && t !== 'hooli');
    assert.equal(result.succeeded, expected.length);
    // the batch's backup ids are in the catalog, not the result (checked through `backups list` below)
    assert.equal(result.batch?.tenants, expected.length);
    assert.deepEqual(result.failed.map((f) => [f.tenantId, f.type]), [['hooli', 'StorageUnwritable']]);
    assert.deepEqual(result.skipped, []);
    const listed = await runCli(['backups', 'list', '--json'], { configFile: env.configFile });
    assert.deepEqual([...new Set(listed.json().map((b: { tenantId: string }) => b.tenantId))].sort(), expected.sort());
  });

  it('puts the tenant back into the all-tenants run when its own schedule is removed', async () => {
    const res = await runCli(['schedule', 'tenant-backups', '--tenant', 'acme', '--remove', '--json'], { configFile: env.configFile });
    assert.equal(res.code, 0, res.stderr);
    assert.deepEqual(res.json(), { removed: scheduleIds.tenantBackup('acme') });
    assert.deepEqual(await allArgs(), { excludeTenants: [], concurrency: 3 });
    const again = await runCli(['schedule', 'tenant-backups', '--tenant', 'acme', '--remove', '--json'], { configFile: env.configFile });
    assert.equal(again.code, 2);
  });
});
