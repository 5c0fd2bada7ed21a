// Runbook: back up one tenant.
//   1. check the tenant exists and storage is writable (bad input fails here, nothing written)
//   2. export every owned table from one snapshot, objects first, manifest last
//   3. index the backup in the catalog
//   4. report the outcome to the alerts: a success resolves the tenant's open alert
// On failure: remove what was written unless a manifest made it a complete backup; alert (unless a
// batch, tenantBackupsAll, alerts for it).
import { patched, proxyActivities, setHandler, upsertSearchAttributes, workflowInfo } from '@temporalio/workflow';
import type { TenantBackupActivities } from '../activities/tenantBackup';
import { backupLabel } from '../lib/labels';
import { announce, announceFailure } from './alerts';
import { compensate } from './failures';
import { requireTenantId } from './inputs';
import { searchAttributes, tenantBackupStatusQuery, type TenantBackupInput, type TenantBackupResult, type TenantBackupStatus } from './messages';
import { bulkCopy, bulkCopyUntilStopped, cancelWaitsForTheStep, shortStep } from './profiles';
import { onServedDatabase, serveDatabase, servedDatabase } from './database';

const step = onServedDatabase(proxyActivities<TenantBackupActivities>(shortStep));
const copyOnce = onServedDatabase(proxyActivities<TenantBackupActivities>(bulkCopy));
const copyUntilStopped = onServedDatabase(proxyActivities<TenantBackupActivities>(bulkCopyUntilStopped));

export async function tenantBackup(input: TenantBackupInput): Promise<TenantBackupResult> {
  serveDatabase(input);
  const tenantId = requireTenantId(input);
  const { workflowId, runId, startTime } = workflowInfo();
  const backupId = backupLabel(startTime, 'tenant', runId);
  const copy = patched(cancelWaitsForTheStep) ? copyUntilStopped : copyOnce;
  const status: TenantBackupStatus = { state: 'checking', tenantId, backupId };
  setHandler(tenantBackupStatusQuery, () => status);
  upsertSearchAttributes([
    { key: searchAttributes.tenantId, value: tenantId },
    { key: searchAttributes.backupKind, value: 'tenant' },
  ]);
  const run = { workflowId, runId, workflowType: 'tenantBackup', tenantId, backupId };
  await step.recordRun({ ...run, status: 'running' });

  try {
    const check = await step.checkTenantBackup({ tenantId });
    upsertSearchAttributes([{ key: searchAttributes.database, value: servedDatabase() ?? check.database }]);

    status.state = 'exporting';
    const backup = await copy.takeTenantBackup({ tenantId, backupId });

    status.state = 'recording';
    await step.recordTenantBackup({ tenantId, backupId, manifestSha256: backup.manifestSha256 });
    status.state = 'done';
    await step.recordRun({ ...run, status: 'completed', details: { rows: backup.rows, bytes: backup.bytes } });
    await announce({ kind: 'tenantBackup', outcome: 'succeeded', step: 'outcome', tenantId, backupId });
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
    const wroteObjects = status.state !== 'checking';
    // Compensate even when the workflow itself is being cancelled.
    await compensate(status, err, [
      async () => wroteObjects && step.discardIncompleteBackup({ tenantId, backupId }),
      (cause, type, ending) => step.recordRun({ ...run, status: ending, error: cause, errorType: type ?? null }),
      // in a batch, tenantBackupsAll's one alert names this failure
      async () => input?.inBatch !== true && announceFailure(err, { kind: 'tenantBackup', step: 'outcome', tenantId, backupId }),
    ]);
    throw err;
  }
}
