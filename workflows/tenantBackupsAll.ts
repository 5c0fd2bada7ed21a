// Runbook: back up every tenant (run by a schedule).
//   1. batched (the default): find the big tenants (statistics, no scan); back up every other
//      tenant (minus those with a schedule of their own) from one snapshot, in packs, in one
//      activity; the big ones follow in step 2. A batch that fails as a whole falls back to
//      step 2 for all its tenants, so each failure is one tenant's, with its own error.
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
import { bulkCopy, shortStep } from './profiles';
import { tenantBackup } from './tenantBackup';
import { onServedDatabase, serveDatabase, servedDatabase, withDatabase } from './database';

const step = onServedDatabase(proxyActivities<TenantBackupActivities>(shortStep));
const copy = onServedDatabase(proxyActivities<TenantBackupActivities>(bulkCopy));
/** Runs started before batches list every tenant and back each up on its own. */
export const batchedTenantBackups = 'batched-tenant-backups';

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
  let queue = input.remaining;
  if (!queue && input.batched !== false && patched(batchedTenantBackups)) {
    const bigTenantRows = optionalInteger(input, 'bigTenantRows', 1, Number.MAX_SAFE_INTEGER, 100_000);
    const big = (await step.findLargeTenants({ minRows: bigTenantRows }).catch(listFailed)).filter((t) => !exclude.has(t));
    const { runId, startTime } = workflowInfo();
    const batchId = backupLabel(startTime, 'tenant', runId);
    status.phase = 'batch';
    try {
      const batch = await copy.takeTenantBatch({ batchId, skip: [...exclude, ...big] });
      result.succeeded += batch.succeeded;
      result.failed.push(...batch.failed);
      if (batch.failedCount > batch.failed.length) result.failedCount = batch.failedCount;
      result.batch = { batchId, tenants: batch.succeeded, rows: batch.rows, bytes: batch.bytes, packs: batch.packs, orphanPacksRemoved: batch.orphanPacksRemoved };
      status.done = batch.succeeded + batch.failedCount;
      queue = big;
    } catch (err) {
      if (isCancellation(err)) throw err;
      // each tenant on its own: a failure is then one tenant's, with its own error
      queue = (await step.listTenants({}).catch(listFailed)).filter((t) => !exclude.has(t));
    }
    status.phase = 'own';
  }
  queue ??= (await step.listTenants({}).catch(listFailed)).filter((t) => !exclude.has(t));
  status.total = status.done + queue.length;

  const lane = async () => {
    while (queue.length > 0 && !workflowInfo().continueAsNewSuggested) {
      const tenantId = queue.shift()!;
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
