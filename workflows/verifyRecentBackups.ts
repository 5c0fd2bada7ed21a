// Runbook: scheduled verification. Verifies the newest full backup and the newest tenant
// backups never verified yet (a few per run, so every backup gets its turn), one at a time; one
// alert sums up the failures of the run (resolved by a run where every verification passed).
import { executeChild, proxyActivities } from '@temporalio/workflow';
import { WorkflowExecutionAlreadyStartedError } from '@temporalio/common';
import type { VerifyActivities } from '../activities/verify';
import { alertsOn, announce, failureOf } from './alerts';
import { rootCause } from './failures';
import { databaseScoped, databaseWorkflowIds, type VerifyRecentBackupsInput, type VerifyRecentBackupsResult } from './messages';
import { shortStep } from './profiles';
import { verifyBackup } from './verifyBackup';
import { onServedDatabase, serveDatabase, servedDatabase, withDatabase } from './database';

const step = onServedDatabase(proxyActivities<VerifyActivities>(shortStep));

export async function verifyRecentBackups(input: VerifyRecentBackupsInput = {}): Promise<VerifyRecentBackupsResult> {
  serveDatabase(input);
  const ids = await step.pickBackupsToVerify({ tenantBackups: input.tenantBackups }).catch(async (err) => {
    await announce({ kind: 'verifyRecentBackups', outcome: 'failed', step: 'outcome', error: failureOf(err) });
    throw err;
  });
  const result: VerifyRecentBackupsResult = { verified: [], failed: [] };
  for (const backupId of ids) {
    try {
      // this run's one alert sums up the failures (runs started before: each verification its own)
      const r = await executeChild(verifyBackup, { workflowId: databaseScoped(databaseWorkflowIds.verifyBackup(backupId), servedDatabase()), args: [withDatabase(alertsOn() ? { backupId, inBatch: true } : { backupId })] });
      result.verified.push({ backupId, ok: r.ok });
    } catch (err) {
      if (!(err instanceof WorkflowExecutionAlreadyStartedError)) result.failed.push({ backupId, error: rootCause(err).message });
    }
  }
  const failures = [
    ...result.verified.filter((v) => !v.ok).map((v) => ({ id: v.backupId, error: 'failed verification: read its report', type: 'VerificationFailed' })),
    ...result.failed.map((f) => ({ id: f.backupId, error: f.error })),
  ];
  await announce(
    failures.length > 0
      ? { kind: 'verifyRecentBackups', outcome: 'failed', step: 'outcome', summary: { total: ids.length, failed: failures.length, items: failures.slice(0, 20) } }
      : { kind: 'verifyRecentBackups', outcome: 'succeeded', step: 'outcome' },
  );
  return result;
}
