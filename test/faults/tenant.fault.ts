// Faults in the middle of the tenant steps: export (and its upload), staging, apply and
// verification, each under every fault of the rig. A step is held mid-way by a lock it waits on
// (a session of the test holds it), the fault strikes, the lock goes, and the workflow must end
// as it should: the backup equal to the tenant, the restored tenant equal to the backup, never
// half-applied (the tenant is as it was until the end), no other tenant changed.
import { strict as assert } from 'node:assert';
import type { Client } from 'pg';
import { connect, withConnection } from '../../lib/pg';
import { damageTenant } from '../../sample/damage';
import type { TenantRestoreResult } from '../../workflows/messages';
import { liveRows, readBackup } from '../support/backups';
import { checksumsOf } from '../support/restore';
import { waitFor } from '../support/wait';
import { createRig, faults, type Rig } from './rig';

describe('faults in the tenant steps', function () {
  let rig: Rig;
  before(async function () {
    this.timeout(600_000);
    rig = await createRig();
  });
  after(async () => rig?.close());

  /** Whether a session of the step (application_name) waits on a lock. */
  const waitsOnLock = (app: string) => async () =>
    (await withConnection(rig.env.db.url, (c) => c.query(`SELECT 1 FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock'`, [app]))).rowCount! > 0;

  const sessions = async (app: string) =>
    (await withConnection(rig.env.db.url, (c) => c.query(`SELECT 1 FROM pg_stat_activity WHERE application_name = $1`, [app]))).rowCount!;

  /** A session of the test holding a lock until it ends (or the database crashes). */
  async function holdLock(sql: string): Promise<Client> {
    const c = await connect(rig.env.db.url, 'test-blocker');
    await c.query('BEGIN');
    await c.query(sql);
    return c;
  }
  const release = (c: Client) => c.end().catch(() => undefined);
  const tenantNow = async (tenantId: string) => checksumsOf(await liveRows(rig.env.config, tenantId));
  const otherTenantsNow = async (tenantId: string) =>
    Object.fromEntries(await Promise.all(rig.env.db.tenants.filter((t) => t.tenantId !== tenantId).map(async (t) => [t.tenantId, await tenantNow(t.tenantId)] as const)));

  const tenants = ['acme', 'globex', 'initech', 'umbrella'];
  faults.forEach((fault, i) => {
    describe(`under ${fault}`, () => {
      const tenantId = tenants[i];
      let backupId: string;
      let backupRows: Record<string, string>;
      const restoreResult = async (restoreId: string) => {
        const r = await rig.env.engine.catalog.getRestore(restoreId);
        return (await rig.env.temporal.workflow.getHandle(r.workflowId, r.runId).result()) as TenantRestoreResult;
      };
      /** Damages the tenant; the tenant then. */
      const damage = async () => {
        await withConnection(rig.env.db.url, (c) => damageTenant(c, tenantId));
        return tenantNow(tenantId);
      };
      /** Asks for a restore of the backup: the answer arrives once the preview is ready. */
      const request = () => rig.cli('restore', 'tenant', tenantId, '--backup', backupId, '--by', 'alice');
      const damageAndRequest = async () => ({ damaged: await damage(), requesting: request() });
      const approve = async (r: { restoreId: string; previewDigest: string }) => {
        const approved = await rig.cli('restore', 'approve', r.restoreId, '--by', 'bob', '--digest', r.previewDigest);
        assert.equal(approved.code, 0, approved.stderr);
      };

      it(`tenant export: the backup completes and equals the tenant`, () =>
        rig.faultCase('tenant export + upload', fault, async ({ inject, recovered }) => {
          const blocker = await holdLock('LOCK TABLE app.comments IN ACCESS EXCLUSIVE MODE');
          const started = await rig.cli('backup', 'tenant', tenantId);
          assert.equal(started.code, 0, started.stderr);
          await waitFor('the export waits on app.comments', waitsOnLock('tenantsafe-export'));
          // released while the fault holds: the export goes on into it (storage down: its upload fails)
          await inject(() => release(blocker));
          const done = await rig.env.temporal.workflow.getHandle(started.json().workflowId).result();
          recovered();
          backupId = done.backupId;
          const backup = await readBackup(rig.env.engine.store, tenantId, backupId);
          backupRows = checksumsOf(backup.rows);
          assert.deepEqual(backupRows, await tenantNow(tenantId), 'the backup holds the tenant as it is');
          return 'done; backup = tenant';
        }));

      it(`staging: the preview arrives, and the approved restore makes the tenant the backup`, () =>
        rig.faultCase('restore staging', fault, async ({ inject, recovered }) => {
          const damaged = await damage();
          const blocker = await holdLock('LOCK TABLE app.comments IN ACCESS EXCLUSIVE MODE');
          const requesting = request();
          await waitFor('staging waits on app.comments', waitsOnLock('tenantsafe-stage'));
          await inject(() => release(blocker));
          const requested = await requesting;
          recovered();
          assert.equal(requested.code, 0, requested.stderr);
          assert.equal(requested.json().state, 'awaiting-approval');
          assert.deepEqual(await tenantNow(tenantId), damaged, 'a preview changes nothing');
          await approve(requested.json());
          assert.equal((await restoreResult(requested.json().restoreId)).state, 'done');
          assert.deepEqual(await tenantNow(tenantId), backupRows, 'the tenant is the backup');
          return 'done; tenant = backup';
        }));

      it(`apply: never half-applied, then done with the tenant equal to the backup and no other tenant changed`, () =>
        rig.faultCase('restore apply', fault, async ({ inject, recovered }) => {
          const { damaged, requesting } = await damageAndRequest();
          const requested = (await requesting).json();
          const others = await otherTenantsNow(tenantId);
          // task_labels gets inserts only, the apply's last statement: it stops after the rest
          const blocker = await holdLock('LOCK TABLE app.task_labels IN EXCLUSIVE MODE');
          await approve(requested);
          await waitFor('the apply waits on app.task_labels', waitsOnLock('tenantsafe-apply'));
          assert.deepEqual(await tenantNow(tenantId), damaged, 'mid-transaction: nothing is visible');
          await inject(async () => {
            if (fault !== 'postgres crash') assert.deepEqual(await tenantNow(tenantId), damaged, 'during the fault: not half-applied');
            await release(blocker);
          });
          const result = await restoreResult(requested.restoreId);
          recovered();
          assert.equal(result.state, 'done');
          assert.ok(result.verification!.ok);
          assert.deepEqual(await tenantNow(tenantId), backupRows, 'the tenant is the backup');
          assert.deepEqual(await otherTenantsNow(tenantId), others, 'no other tenant changed');
          return 'done; tenant = backup, others unchanged';
        }));

      it(`verification: the restore ends verified`, () =>
        rig.faultCase('restore verification', fault, async ({ inject, recovered }) => {
          const { requesting } = await damageAndRequest();
          const requested = (await requesting).json();
          // The verification is held on app.tasks: a lock asked for while the apply holds its
          // own is queued behind it, and granted as the apply commits, before the verification asks.
          // Asked for only once the safety backup has read every table: queued ahead of its read
          // of tasks, it would wait on the apply, which waits for the safety backup.
          const labels = await holdLock('LOCK TABLE app.task_labels IN EXCLUSIVE MODE');
          const tasks = await connect(rig.env.db.url, 'test-blocker');
          try {
            await approve(requested);
            await waitFor('the apply waits on app.task_labels', waitsOnLock('tenantsafe-apply'));
            await waitFor('the safety backup is written', async () => (await sessions('tenantsafe-export')) === 0);
            await tasks.query('BEGIN');
            const tasksPid = (await tasks.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0].pid;
            const locked = tasks.query('LOCK TABLE app.tasks IN ACCESS EXCLUSIVE MODE').catch(() => undefined);
            await waitFor('the lock on app.tasks is queued', async () =>
              (await withConnection(rig.env.db.url, (c) => c.query(`SELECT 1 FROM pg_locks WHERE pid = $1 AND NOT granted`, [tasksPid]))).rowCount! > 0,
            );
            await release(labels);
            await locked;
            await waitFor('the verification waits on app.tasks', waitsOnLock('tenantsafe-verify'));
          } catch (err) {
            await release(labels);
            await release(tasks);
            throw err;
          }
          await inject(() => release(tasks));
          const result = await restoreResult(requested.restoreId);
          recovered();
          assert.equal(result.state, 'done');
          assert.ok(result.verification!.ok, JSON.stringify(result.verification));
          assert.deepEqual(await tenantNow(tenantId), backupRows, 'the tenant is the backup');
          return 'done; verified';
        }));
    });
  });
});
