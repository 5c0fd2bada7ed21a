// Runbook: restore the database to a point in time, into a NEW cluster (or, on Supabase, the
// project itself once the operator names it as the target).
//   1. check the target against the recoverable window and pick the base backup (bad targets
//      fail here with the window in the message; nothing is touched)
//   2. restore: extract the base backup, replay archived WAL to the target, promote
//   3. report the point reached: time of the last transaction replayed, LSN, data dir, port
import { ActivityFailure, ApplicationFailure, patched, proxyActivities, proxyLocalActivities, setHandler, TimeoutFailure, workflowInfo } from '@temporalio/workflow';
import type { FullBackupActivities } from '../activities/fullBackup';
import type { TenantBackupActivities } from '../activities/tenantBackup';
import type { PitrRestoreResult } from '../lib/pitr/restore';
import { ErrorType } from '../lib/errors';
import { rootCause } from './failures';
import { pitrRestoreStatusQuery, type PitrRestoreInput, type PitrRestoreStatus } from './messages';
import { localShortSteps, localStep, restoreOnce, shortStep } from './profiles';
import { onServedDatabase, serveDatabase } from './database';

const remoteStep = onServedDatabase(proxyActivities<FullBackupActivities & TenantBackupActivities>(shortStep));
const localSteps = onServedDatabase(proxyLocalActivities<FullBackupActivities & TenantBackupActivities>(localStep));
const restore = onServedDatabase(proxyActivities<FullBackupActivities>(restoreOnce));

export async function pitrRestore(input: PitrRestoreInput): Promise<PitrRestoreResult> {
  serveDatabase(input);
  const { workflowId, runId } = workflowInfo();
  const status: PitrRestoreStatus = { state: 'planning', backupId: null, window: null };
  setHandler(pitrRestoreStatusQuery, () => status);
  const run = { workflowId, runId, workflowType: 'pitrRestore' };
  // the short steps in the worker: no round trip through the server for each (restore time is RTO)
  const step = patched(localShortSteps) ? localSteps : remoteStep;
  try {
    const plan = await step.planPitrRestore({ at: input?.at, lsn: input?.lsn, name: input?.name, latest: input?.latest, restoreTarget: String(input?.target ?? ''), from: input?.from });
    Object.assign(status, { state: 'restoring', backupId: plan.backupId, window: plan.window });
    await step.recordRun({ ...run, backupId: plan.backupId, status: 'running', details: { target: plan.target } });
    const result = await restore.runPitrRestore({ plan, restoreTarget: input.target, port: input.port, from: input.from }).catch((err: unknown) => {
      // not retried (the directory is half full): say what happened and what to do, not "timed out"
      if (err instanceof ActivityFailure && err.cause instanceof TimeoutFailure) {
        throw ApplicationFailure.nonRetryable(
          `The restore into ${input.target} was cut off: its worker stopped answering (killed, or its machine lost), and without it recovery stops. HINT: remove ${input.target} (its log is in it) and run the restore again.`,
          ErrorType.RecoveryFailed,
        );
      }
      throw err;
    });
    status.state = 'done';
    await step.recordRun({ ...run, status: 'completed', details: { ...result } });
    return result;
  } catch (err) {
    status.state = 'failed';
    const cause = rootCause(err);
    status.error = cause.message;
    if (status.backupId) await step.recordRun({ ...run, status: 'failed', error: status.error, errorType: cause.type ?? null }).catch(() => undefined);
    throw err;
  }
}
