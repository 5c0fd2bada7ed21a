// Runbook: back up every tenant (run by a schedule).
//   1. list the tenants (minus those with a schedule of their own)
//   2. run tenantBackup children, `concurrency` at a time; a failing tenant does not stop the rest
//   3. return what succeeded, failed and was skipped (a backup of it was already running)
//   4. one alert for the batch: its failures summed up (the children do not alert for theirs), or
//      resolved when every tenant succeeded
// Continues as new when the history grows long, carrying what is left and the results so far.
import {
  continueAsNew,
  executeChild,
  ParentClosePolicy,
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
  workflowIds,
  type TenantBackupsAllInput,
  type TenantBackupsAllResult,
  type TenantBackupsAllStatus,
} from './messages';
import { shortStep } from './profiles';
import { tenantBackup } from './tenantBackup';

const step = proxyActivities<TenantBackupActivities>(shortStep);

export async function tenantBackupsAll(input: TenantBackupsAllInput = {}): Promise<TenantBackupsAllResult> {
  const concurrency = optionalInteger(input, 'concurrency', 1, 64, 4);
  const exclude = new Set(input.excludeTenants ?? []);
  upsertSearchAttributes([{ key: searchAttributes.backupKind, value: 'tenant-all' }]);
  const queue =
    input.remaining ??
    (
      await step.listTenants({}).catch(async (err) => {
        await announce({ kind: 'tenantBackupsAll', outcome: 'failed', step: 'outcome', error: failureOf(err) });
        throw err;
      })
    ).filter((t) => !exclude.has(t));
  const result: TenantBackupsAllResult = input.carried ?? { succeeded: 0, failed: [], skipped: [], backupIds: {} };
  const status: TenantBackupsAllStatus = { total: queue.length, done: 0, running: [], failed: result.failed };
  setHandler(tenantBackupsAllStatusQuery, () => status);

  const lane = async () => {
    while (queue.length > 0 && !workflowInfo().continueAsNewSuggested) {
      const tenantId = queue.shift()!;
      status.running.push(tenantId);
      try {
        const backup = await executeChild(tenantBackup, {
          workflowId: workflowIds.tenantBackup(tenantId),
          // this run's one alert sums up the children's failures (runs started before: each its own)
          args: [alertsOn() ? { tenantId, inBatch: true } : { tenantId }],
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
    error: result.failed.length > 0 ? `${result.failed.length} tenant backup(s) failed: ${result.failed.map((f) => f.tenantId).join(', ')}` : null,
    details: { succeeded: result.succeeded, failed: result.failed.length, skipped: result.skipped.length },
  });
  const total = result.succeeded + result.failed.length;
  await announce(
    result.failed.length > 0
      ? { kind: 'tenantBackupsAll', outcome: 'failed', step: 'outcome', summary: { total, failed: result.failed.length, items: result.failed.slice(0, 20).map((f) => ({ id: f.tenantId, error: f.error, type: f.type })) } }
      : { kind: 'tenantBackupsAll', outcome: 'succeeded', step: 'outcome' },
  );
  return result;
}
