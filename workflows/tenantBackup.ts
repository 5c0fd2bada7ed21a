// Runbook: back up one tenant.
//   0. a run its tenant's own schedule started (`scheduled`): join the database's batcher
//      (workflows/tenantBackupBatcher.ts) and wait for its outcome: the tenant's backup from a
//      batch of the tenants whose schedules fell due together (go to 4), its failure, or `own`
//      (a big tenant, the batch failed as a whole, no outcome within two hours): steps 1-4 here
//   1. check the tenant exists and storage is writable (bad input fails here, nothing written)
//   2. export every owned table from one snapshot, objects first, manifest last
//   3. index the backup in the catalog
//   4. report the outcome to the alerts: a success resolves the tenant's open alert
// On failure: remove what was written unless a manifest made it a complete backup; alert (unless a
// batch, tenantBackupsAll, alerts for it).
import { ApplicationFailure, condition, getExternalWorkflowHandle, isCancellation, patched, proxyActivities, proxyLocalActivities, setHandler, upsertSearchAttributes, workflowInfo } from '@temporalio/workflow';
import type { TenantBackupActivities } from '../activities/tenantBackup';
import { backupLabel } from '../lib/labels';
import { announce, announceFailure } from './alerts';
import { compensate } from './failures';
import { requireTenantId } from './inputs';
import {
  batchOutcomeSignal,
  databaseScoped,
  leaveBatchSignal,
  searchAttributes,
  tenantBackupStatusQuery,
  workflowIds,
  type BatchJoin,
  type BatchOutcome,
  type TenantBackupInput,
  type TenantBackupResult,
  type TenantBackupStatus,
} from './messages';
import { bulkCopy, bulkCopyUntilStopped, cancelWaitsForTheStep, localShortSteps, localStep, shortStep } from './profiles';
import { onServedDatabase, serveDatabase, servedDatabase, withDatabase } from './database';

const step = onServedDatabase(proxyActivities<TenantBackupActivities>(shortStep));
const localSteps = onServedDatabase(proxyLocalActivities<TenantBackupActivities>(localStep));
const copyOnce = onServedDatabase(proxyActivities<TenantBackupActivities>(bulkCopy));
const copyUntilStopped = onServedDatabase(proxyActivities<TenantBackupActivities>(bulkCopyUntilStopped));
/** Scheduled runs started before it back their tenant up on their own; since, they join the database's batcher. */
export const scheduledTenantBatches = 'scheduled-tenant-batches';
/** A scheduled run that has no outcome from its batcher this long after joining (the batcher was terminated, say) backs its tenant up on its own. */
const batchWaitMs = 2 * 60 * 60 * 1000;

/**
 * Hands the tenant to the database's batcher and waits for its outcome; undefined: none came (the
 * join failed, or no outcome in time), and the run backs the tenant up on its own.
 */
async function fromBatch(join: BatchJoin): Promise<BatchOutcome | undefined> {
  let outcome: BatchOutcome | undefined;
  setHandler(batchOutcomeSignal, (o) => {
    if (o.tenantId === join.tenantId) outcome ??= o;
  });
  const batcherId = batcherOf();
  try {
    await step.joinTenantBatch({ batcherId, batcher: withDatabase({}), join });
  } catch (err) {
    if (isCancellation(err)) throw err;
    return undefined;
  }
  if (await condition(() => outcome !== undefined, batchWaitMs)) return outcome;
  await leaveBatch(join);
  return undefined;
}

const batcherOf = () => databaseScoped(workflowIds.tenantBackupBatcher(), servedDatabase());

/** Takes a waiting tenant out of the batcher's next batch (one running already goes on). */
async function leaveBatch(join: BatchJoin): Promise<void> {
  await getExternalWorkflowHandle(batcherOf())
    .signal(leaveBatchSignal, join)
    .catch(() => undefined);
}

export async function tenantBackup(input: TenantBackupInput): Promise<TenantBackupResult> {
  serveDatabase(input);
  const tenantId = requireTenantId(input);
  const { workflowId, runId, startTime } = workflowInfo();
  const backupId = backupLabel(startTime, 'tenant', runId);
  const copy = patched(cancelWaitsForTheStep) ? copyUntilStopped : copyOnce;
  // the short steps in the worker: a small tenant's backup is mostly their round trips
  const local = patched(localShortSteps);
  const quick = local ? localSteps : step;
  const status: TenantBackupStatus = { state: 'checking', tenantId, backupId };
  setHandler(tenantBackupStatusQuery, () => status);
  upsertSearchAttributes([
    { key: searchAttributes.tenantId, value: tenantId },
    { key: searchAttributes.backupKind, value: 'tenant' },
  ]);
  const run = { workflowId, runId, workflowType: 'tenantBackup', tenantId, backupId };
  await quick.recordRun({ ...run, status: 'running' });

  try {
    if (input?.scheduled === true && patched(scheduledTenantBatches)) {
      status.state = 'batching';
      const outcome = await fromBatch({ tenantId, workflowId, runId });
      if (outcome && 'failure' in outcome) throw ApplicationFailure.create({ message: outcome.failure.error, type: outcome.failure.type, nonRetryable: true });
      if (outcome && 'backup' in outcome) {
        const backup = outcome.backup;
        status.backupId = backup.backupId;
        upsertSearchAttributes([{ key: searchAttributes.database, value: servedDatabase() ?? outcome.database }]);
        status.state = 'done';
        await quick.recordRun({ ...run, backupId: backup.backupId, status: 'completed', details: { rows: backup.rows, bytes: backup.bytes, batchId: backup.batchId } });
        await announce({ kind: 'tenantBackup', outcome: 'succeeded', step: 'outcome', tenantId, backupId: backup.backupId }, { local });
        return backup;
      }
      // on its own: a big tenant, a batch that failed as a whole, or no outcome
      status.state = 'checking';
    }
    const check = await quick.checkTenantBackup({ tenantId });
    upsertSearchAttributes([{ key: searchAttributes.database, value: servedDatabase() ?? check.database }]);

    status.state = 'exporting';
    const backup = await copy.takeTenantBackup({ tenantId, backupId });

    status.state = 'recording';
    await quick.recordTenantBackup({ tenantId, backupId, manifestSha256: backup.manifestSha256 });
    status.state = 'done';
    await quick.recordRun({ ...run, status: 'completed', details: { rows: backup.rows, bytes: backup.bytes } });
    await announce({ kind: 'tenantBackup', outcome: 'succeeded', step: 'outcome', tenantId, backupId }, { local });
    return {
      backupId,
      tenantId,
      status: 'completed',
      rows: backup.rows,
      bytes: backup.bytes,
      snapshotAt: backup.snapshotAt,
      lsn: backup.lsn,
      storageUri: backup.storageUri,
      tenantChecksum: backup.tenantChecksum,
    };
  } catch (err) {
    const wroteObjects = status.state !== 'checking' && status.state !== 'batching';
    const waitedForBatch = status.state === 'batching';
    // Compensate even when the workflow itself is being cancelled.
    await compensate(status, err, [
      async () => wroteObjects && step.discardIncompleteBackup({ tenantId, backupId }),
      // cancelled while waiting: out of the next batch
      async () => waitedForBatch && isCancellation(err) && leaveBatch({ tenantId, workflowId, runId }),
      (cause, type, ending) => step.recordRun({ ...run, status: ending, error: cause, errorType: type ?? null }),
      // in a batch, tenantBackupsAll's one alert names this failure
      async () => input?.inBatch !== true && announceFailure(err, { kind: 'tenantBackup', step: 'outcome', tenantId, backupId }),
    ]);
    throw err;
  }
}
