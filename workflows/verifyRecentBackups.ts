// Runbook: scheduled verification. Verifies the newest full backup and the newest tenant
// backups never verified yet (a few per run, so every backup gets its turn), one at a time.
import { executeChild, proxyActivities } from '@temporalio/workflow';
import { WorkflowExecutionAlreadyStartedError } from '@temporalio/common';
import type { VerifyActivities } from '../activities/verify';
import { rootCause } from './failures';
import { databaseWorkflowIds, type VerifyRecentBackupsInput, type VerifyRecentBackupsResult } from './messages';
import { shortStep } from './profiles';
import { verifyBackup } from './verifyBackup';

const step = proxyActivities<VerifyActivities>(shortStep);

export async function verifyRecentBackups(input: VerifyRecentBackupsInput = {}): Promise<VerifyRecentBackupsResult> {
  const ids = await step.pickBackupsToVerify({ tenantBackups: input.tenantBackups });
  const result: VerifyRecentBackupsResult = { verified: [], failed: [] };
  for (const backupId of ids) {
    try {
      const r = await executeChild(verifyBackup, { workflowId: databaseWorkflowIds.verifyBackup(backupId), args: [{ backupId }] });
      result.verified.push({ backupId, ok: r.ok });
    } catch (err) {
      if (!(err instanceof WorkflowExecutionAlreadyStartedError)) result.failed.push({ backupId, error: rootCause(err).message });
    }
  }
  return result;
}
