// Runbook: apply the retention policy (daily by a schedule; `tenantsafe retention apply`).
//   one step: decide with the policy engine (full backups, each tenant's backups, WAL, the change
//   log, interrupted backups) and, unless dryRun, delete what it does not keep; the outcome goes to
//   the catalog and the alerts (a failure alerts, the next run that succeeds resolves it).
import { proxyActivities, workflowInfo } from '@temporalio/workflow';
import type { TenantBackupActivities } from '../activities/tenantBackup';
import type { VerifyActivities } from '../activities/verify';
import { announce, failureOf } from './alerts';
import type { ApplyRetentionInput, ApplyRetentionResult } from './messages';
import { bulkCopy, shortStep } from './profiles';

const step = proxyActivities<TenantBackupActivities>(shortStep);
const long = proxyActivities<VerifyActivities>(bulkCopy);

export async function applyRetention(input: ApplyRetentionInput = {}): Promise<ApplyRetentionResult> {
  const { workflowId, runId } = workflowInfo();
  const outcome = await long.applyRetention({ dryRun: input?.dryRun === true }).catch(async (err) => {
    await announce({ kind: 'applyRetention', outcome: 'failed', step: 'outcome', error: failureOf(err) });
    throw err;
  });
  await step.recordRun({
    workflowId,
    runId,
    workflowType: 'applyRetention',
    status: 'completed',
    details: {
      dryRun: outcome.dryRun,
      removedBackups: outcome.removedBackups.length,
      removedWalSegments: outcome.removedWalSegments,
      // absent in a result an older worker returned
      removedChangeSegments: outcome.removedChangeSegments ?? 0,
      removedIncomplete: outcome.removedIncomplete.length,
    },
  });
  await announce({ kind: 'applyRetention', outcome: 'succeeded', step: 'outcome' });
  return outcome;
}
