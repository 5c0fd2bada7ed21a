// Runbook: back up every tenant (run by a schedule).
//   1. batched (the default): find the big tenants (statistics, no scan); cut every other
//      tenant (minus those with a schedule of their own) into ranges of at most `batchTenants`;
//      back up each range from one snapshot, in packs, in one activity, `concurrency` batches at
//      a time (each on whichever worker takes it); the big ones go through step 2 meanwhile. A batch that
//      fails as a whole falls back to step 2 for its tenants, so each failure is one tenant's,
//      with its own error.
//      Not batched: list the tenants (minus those with a schedule of their own).
//   2. run tenantBackup children, `concurrency` at a time; a failing tenant does not stop the rest
//   3. return what succeeded, failed and was skipped (a backup of it was already running): counts,
//      failures and the children's ids; a batch's ids are in the catalog
//   4. one alert for the batch: its failures summed up (the children do not alert for theirs), or
//      resolved when every tenant succeeded
// Continues as new when the history grows long, carrying what is left and the results so far.
import {
  continueAsNew,
  executeChild,
  isCancellation,
  ParentClosePolicy,
  patched,
  proxyActivities,
  setHandler,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import { WorkflowExecutionAlreadyStartedError } from '@temporalio/common';
import type { TenantBackupActivities } from '../activities/tenantBackup';
import { alertsOn, announce, failureOf } from './alerts';
import { rootCause } from './failures';
import { optionalInteger } from './inputs';
import {
  searchAttributes,
  tenantBackupsAllStatusQuery,
  databaseScoped,
  workflowIds,
  type TenantBackupsAllInput,
  type TenantBackupsAllResult,
  type TenantBackupsAllStatus,
} from './messages';
import { backupLabel } from '../lib/labels';
import type { TenantRange } from '../lib/tenancy/filter';
import { bulkCopy, shortStep } from './profiles';
import { tenantBackup } from './tenantBackup';
import { onServedDatabase, serveDatabase, servedDatabase, withDatabase } from './database';

const step = onServedDatabase(proxyActivities<TenantBackupActivities>(shortStep));
const copy = onServedDatabase(proxyActivities<TenantBackupActivities>(bulkCopy));
/** Runs started before batches list every tenant and back each up on its own. */
export const batchedTenantBackups = 'batched-tenant-backups';
/** Runs started before a run could cut its tenants into several batches back up all in one. */
export const severalBatches = 'several-tenant-batches';
/** Runs started before back up the big tenants after the batches, not beside them. */
export const bigTenantsBesideBatches = 'big-tenants-beside-batches';

/** A run's result lists this many of its batches' failures (failedCount counts them all). */
const failuresListed = 100;
/** A run's batch `i` gets its own id: the run id's last 6 hex digits plus i. */
const nextHex = (runId: string, i: number) => ((parseInt(runId.replace(/[^0-9a-f]/gi, '').slice(-6), 16) + i) % 0x1000000).toString(16).padStart(6, '0');

export async function tenantBackupsAll(input: TenantBackupsAllInput = {}): Promise<TenantBackupsAllResult> {
  serveDatabase(input);
  const concurrency = optionalInteger(input, 'concurrency', 1, 64, 4);
  const exclude = new Set(input.excludeTenants ?? []);
  upsertSearchAttributes([{ key: searchAttributes.backupKind, value: 'tenant-all' }]);
  const listFailed = async (err: unknown) => {
    await announce({ kind: 'tenantBackupsAll', outcome: 'failed', step: 'outcome', error: failureOf(err) });
    throw err;
  };
  const result: TenantBackupsAllResult = input.carried ?? { succeeded: 0, failed: [], skipped: [], backupIds: {} };
  const status: TenantBackupsAllStatus = { total: 0, done: 0, running: [], failed: result.failed };
  setHandler(tenantBackupsAllStatusQuery, () => status);
  /** tenants still to back up on their own (tenantBackup children), and those handed to one in this run */
  const queue: string[] = [...(input.remaining ?? [])];
  const ownBackups = new Set<string>();
  let listed = input.remaining !== undefined;
  const lane = async () => {
    while (queue.length > 0 && !workflowInfo().continueAsNewSuggested) {
      const tenantId = queue.shift()!;
      ownBackups.add(tenantId);
      status.running.push(tenantId);
      try {
        const backup = await executeChild(tenantBackup, {
          workflowId: databaseScoped(workflowIds.tenantBackup(tenantId), servedDatabase()),
          // this run's one alert sums up the children's failures (runs started before: each its own)
          args: [withDatabase(alertsOn() ? { tenantId, inBatch: true } : { tenantId })],
          // A child outlives a terminated parent run: half-written backups clean themselves up.
          parentClosePolicy: ParentClosePolicy.ABANDON,
        });
        result.succeeded++;
        result.backupIds[tenantId] = backup.backupId;
      } catch (err) {
        if (err instanceof WorkflowExecutionAlreadyStartedError) {
          result.skipped.push(tenantId);
        } else {
          const cause = rootCause(err);
          result.failed.push({ tenantId, error: cause.message, type: cause.type });
          if (result.failedCount !== undefined) result.failedCount++;
        }
      } finally {
        status.running = status.running.filter((t) => t !== tenantId);
        status.done++;
      }
    }
  };

  if (!listed && input.batched !== false && patched(batchedTenantBackups)) {
    const bigTenantRows = optionalInteger(input, 'bigTenantRows', 1, Number.MAX_SAFE_INTEGER, 100_000);
    const big = (await step.findLargeTenants({ minRows: bigTenantRows }).catch(listFailed)).filter((t) => !exclude.has(t));
    const skip = [...exclude, ...big];
    /** the same, to look a tenant up in (the failed batch's tenants against thousands skipped) */
    const skipped = new Set(skip);
    status.phase = 'batch';
    const ranges: (TenantRange | undefined)[] = patched(severalBatches)
      ? await step.planTenantBatches({ skip, maxTenants: optionalInteger(input, 'batchTenants', 1, 1_000_000, 10_000) }).catch(listFailed)
      : [undefined];
    const several = ranges.length > 1;
    const { runId, startTime } = workflowInfo();
    const batchIds = ranges.map((_, i) => backupLabel(startTime, 'tenant', i === 0 ? runId : nextHex(runId, i)));
    const unbatched: string[] = [];
    /** the one batch failed: every tenant (the big ones too) on its own, in the key's order */
    let everyTenant: string[] | undefined;
    const batches = ranges.map((range, index) => ({ range, index }));
    const batchLane = async () => {
      for (let b = batches.shift(); b; b = batches.shift()) {
        const { range, index } = b;
        try {
          const batch = await copy.takeTenantBatch({ batchId: batchIds[index], skip, ...(several ? { range, slot: { index, count: ranges.length } } : {}) });
          result.succeeded += batch.succeeded;
          const failedBefore = result.failedCount ?? result.failed.length;
          const listed = batch.failed.slice(0, Math.max(0, failuresListed - result.failed.length));
          result.failed.push(...listed);
          if (listed.length < batch.failedCount || result.failedCount !== undefined) result.failedCount = failedBefore + batch.failedCount;
          const sum = result.batch ?? { batchId: batchIds[0], tenants: 0, rows: 0, bytes: 0, packs: 0, orphanPacksRemoved: 0, ...(several ? { batches: ranges.length } : {}) };
          result.batch = { ...sum, tenants: sum.tenants + batch.succeeded, rows: sum.rows + batch.rows, bytes: sum.bytes + batch.bytes, packs: sum.packs + batch.packs, orphanPacksRemoved: sum.orphanPacksRemoved + batch.orphanPacksRemoved };
          status.done += batch.succeeded + batch.failedCount;
        } catch (err) {
          if (isCancellation(err)) throw err;
          // each of the batch's tenants on its own: a failure is then one tenant's, with its own error
          if (several) unbatched.push(...(await step.listTenants({ range }).catch(listFailed)).filter((t) => !skipped.has(t)));
          else everyTenant = (await step.listTenants({}).catch(listFailed)).filter((t) => !exclude.has(t));
        }
      }
    };
    // the big tenants' own backups run beside the batches (runs started before: after them)
    const beside = patched(bigTenantsBesideBatches);
    if (beside) queue.push(...big);
    const children = beside ? Promise.all(Array.from({ length: concurrency }, lane)) : undefined;
    await Promise.all(Array.from({ length: Math.min(concurrency, ranges.length) }, batchLane));
    await children;
    queue.push(...(everyTenant ?? [...(beside ? [] : big), ...unbatched]).filter((t) => !ownBackups.has(t)));
    listed = true;
    status.phase = 'own';
  }
  if (!listed) queue.push(...(await step.listTenants({}).catch(listFailed)).filter((t) => !exclude.has(t)));
  status.total = status.done + queue.length;

  await Promise.all(Array.from({ length: concurrency }, lane));

  if (queue.length > 0) {
    await continueAsNew<typeof tenantBackupsAll>({ ...input, remaining: queue, carried: result });
  }
  const { workflowId, runId } = workflowInfo();
  await step.recordRun({
    workflowId,
    runId,
    workflowType: 'tenantBackupsAll',
    status: result.failed.length > 0 ? 'failed' : 'completed',
    error: result.failed.length > 0 ? `${result.failedCount ?? result.failed.length} tenant backup(s) failed: ${result.failed.map((f) => f.tenantId).join(', ')}` : null,
    details: { succeeded: result.succeeded, failed: result.failedCount ?? result.failed.length, skipped: result.skipped.length, ...(result.batch ? { batch: result.batch } : {}) },
  });
  const total = result.succeeded + (result.failedCount ?? result.failed.length);
  await announce(
    result.failed.length > 0
      ? { kind: 'tenantBackupsAll', outcome: 'failed', step: 'outcome', summary: { total, failed: result.failedCount ?? result.failed.length, items: result.failed.slice(0, 20).map((f) => ({ id: f.tenantId, error: f.error, type: f.type })) } }
      : { kind: 'tenantBackupsAll', outcome: 'succeeded', step: 'outcome' },
  );
  return result;
}
