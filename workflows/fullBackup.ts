// Runbook: back up the whole database (run daily by a schedule, or `tenantsafe full-backup`).
//   1. check the provider (database or Supabase API reachable, storage writable): bad input fails here
//   2. postgres: make sure the WAL archiver runs (a base backup is restorable only with its WAL);
//      it starts beside step 3, since the check's replication slot holds the WAL until it reads it
//   3. take the backup into storage, objects first, manifest last (waits for its WAL to be archived)
//   4. index it in the catalog
//   5. report the outcome to the alerts (a success resolves an open alert of the database's full backups)
// On failure: remove what was written unless a manifest made it a complete backup; alert.
import { ParentClosePolicy, patched, proxyActivities, proxyLocalActivities, setHandler, startChild, upsertSearchAttributes, workflowInfo } from '@temporalio/workflow';
import { WorkflowExecutionAlreadyStartedError } from '@temporalio/common';
import type { FullBackupActivities } from '../activities/fullBackup';
import type { TenantBackupActivities } from '../activities/tenantBackup';
import { backupLabel } from '../lib/labels';
import { allDone } from '../lib/limit';
import { announce, announceFailure } from './alerts';
import { compensate } from './failures';
import { databaseWorkflowIds, fullBackupStatusQuery, searchAttributes, type FullBackupInput, type FullBackupResult, type FullBackupStatus } from './messages';
import { bulkCopy, bulkCopyUntilStopped, cancelWaitsForTheStep, localShortSteps, localStep, shortStep } from './profiles';
import { walArchiver } from './walArchiver';
import { onServedDatabase, serveDatabase, servedDatabase, withDatabase } from './database';

const step = onServedDatabase(proxyActivities<FullBackupActivities & TenantBackupActivities>(shortStep));
const localSteps = onServedDatabase(proxyLocalActivities<FullBackupActivities & TenantBackupActivities>(localStep));
const copyOnce = onServedDatabase(proxyActivities<FullBackupActivities>(bulkCopy));
const copyUntilStopped = onServedDatabase(proxyActivities<FullBackupActivities>(bulkCopyUntilStopped));

export async function fullBackup(input: FullBackupInput = {}): Promise<FullBackupResult> {
  serveDatabase(input);
  const { workflowId, runId, startTime } = workflowInfo();
  const backupId = backupLabel(startTime, 'full', runId);
  const copy = patched(cancelWaitsForTheStep) ? copyUntilStopped : copyOnce;
  // the short steps in the worker, the archiver started beside the backup: a small cluster's
  // backup is mostly their round trips
  const local = patched(localShortSteps);
  const quick = local ? localSteps : step;
  const status: FullBackupStatus = { state: 'checking', backupId };
  setHandler(fullBackupStatusQuery, () => status);
  upsertSearchAttributes([{ key: searchAttributes.backupKind, value: 'full' }]);
  const run = { workflowId, runId, workflowType: 'fullBackup', backupId };
  await quick.recordRun({ ...run, status: 'running' });

  try {
    const check = await quick.checkFullBackup({});
    upsertSearchAttributes([{ key: searchAttributes.database, value: servedDatabase() ?? check.database }]);
    const archiverStarted = check.needsWalArchiver ? ensureWalArchiver(check.walArchiverScope) : undefined;
    if (!local) await archiverStarted;

    status.state = 'backing-up';
    const [backup] = await allDone([copy.takeFullBackup({ backupId }), archiverStarted] as const);

    status.state = 'recording';
    await quick.recordFullBackup({ backupId });
    status.state = 'done';
    await quick.recordRun({ ...run, status: 'completed', details: { bytes: backup.bytes, startLsn: backup.startLsn, stopLsn: backup.stopLsn } });
    await announce({ kind: 'fullBackup', outcome: 'succeeded', step: 'outcome', backupId }, { local });
    return {
      backupId,
      kind: backup.method === 'basebackup' ? 'physical' : 'logical',
      bytes: backup.bytes,
      startLsn: backup.startLsn,
      stopLsn: backup.stopLsn,
      finishedAt: backup.finishedAt,
    };
  } catch (err) {
    const wroteObjects = status.state !== 'checking';
    await compensate(status, err, [
      async () => wroteObjects && step.discardIncompleteFullBackup({ backupId }),
      (cause, type, ending) => step.recordRun({ ...run, status: ending, error: cause, errorType: type ?? null }),
      () => announceFailure(err, { kind: 'fullBackup', step: 'outcome', backupId }),
    ]);
    throw err;
  }
}

/** Starts the WAL archiver unless it is running already; it outlives this workflow. */
async function ensureWalArchiver(scope: string | undefined): Promise<void> {
  try {
    await startChild(walArchiver, { workflowId: databaseWorkflowIds.walArchiver(scope), args: [withDatabase({})], parentClosePolicy: ParentClosePolicy.ABANDON });
  } catch (err) {
    if (!(err instanceof WorkflowExecutionAlreadyStartedError)) throw err;
  }
}
