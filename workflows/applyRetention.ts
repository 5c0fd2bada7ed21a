// Runbook: apply the retention policy (daily by a schedule; `tenantsafe retention apply`).
//   one step: decide with the policy engine (full backups, each tenant's backups, WAL, the change
//   log, interrupted backups) and, unless dryRun, delete what it does not keep; the outcome goes to
//   the catalog and the alerts (a failure alerts, the next run that succeeds resolves it), and a run
//   that deletes (not a dry run) to the audit log: one entry with its counts, or its failure.
import { CancellationScope, proxyActivities, workflowInfo } from '@temporalio/workflow';
import type { TenantBackupActivities } from '../activities/tenantBackup';
import type { VerifyActivities } from '../activities/verify';
import { announce, failureOf } from './alerts';
import { auditTrail } from './audit';
import type { ApplyRetentionInput, ApplyRetentionResult } from './messages';
import { bulkCopy, shortStep } from './profiles';
import { onServedDatabase, serveDatabase } from './database';

const step = onServedDatabase(proxyActivities<TenantBackupActivities>(shortStep));
const long = onServedDatabase(proxyActivities<VerifyActivities>(bulkCopy));

export async function applyRetention(input: ApplyRetentionInput = {}): Promise<ApplyRetentionResult> {
  serveDatabase(input);
  const { workflowId, runId } = workflowInfo();
  const dryRun = input?.dryRun === true;
  const audit = auditTrail();
  // who asked: the CLI names a person, a schedule itself; a UI start without requestedBy, no one
  const record = (outcome: 'done' | 'failed', details: Record<string, unknown>) =>
    dryRun ? Promise.resolve() : audit.append({ action: 'retention.delete', by: input?.requestedBy ?? 'unknown', subject: {}, outcome, details });
  const outcome = await long.applyRetention({ dryRun }).catch(async (err) => {
    const failure = failureOf(err);
    // it may have deleted some before it failed
    await CancellationScope.nonCancellable(() => record('failed', { error: failure.message, errorType: failure.type }).catch(() => undefined));
    await announce({ kind: 'applyRetention', outcome: 'failed', step: 'outcome', error: failure });
    throw err;
  });
  await record('done', {
    removedBackups: outcome.removedBackups.length,
    removedWalSegments: outcome.removedWalSegments,
    removedChangeSegments: outcome.removedChangeSegments ?? 0,
    removedIncomplete: outcome.removedIncomplete.length,
    removedPacks: outcome.removedPacks?.length ?? 0,
    kept: outcome.kept.length,
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
