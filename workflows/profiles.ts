// Activity option profiles. Every one bounds its retries: the SDK default retries forever.
import { ActivityCancellationType, type ActivityOptions, type LocalActivityOptions } from '@temporalio/workflow';

/** Catalog writes, checks, small object operations. */
export const shortStep: ActivityOptions = {
  startToCloseTimeout: '60s',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '10s', maximumAttempts: 4 },
};

/**
 * shortStep run as a local activity, in the worker that runs the workflow: no trip through the
 * Temporal server and no workflow task of its own per step, where a job's fixed cost is a chain
 * of such steps (a small cluster's full backup). For steps that take well under the workflow task
 * timeout; the history records a marker instead of the activity's events.
 */
export const localStep: LocalActivityOptions = { ...shortStep };
/** Runs started before a workflow's short steps were local (full backup, PITR restore, tenant backup, tenant restore) replay with their activity events. */
export const localShortSteps = 'local-short-steps';

/** Streaming a tenant or a database: long, so it heartbeats; a dead worker is noticed in 15 s. */
export const bulkCopy: ActivityOptions = {
  startToCloseTimeout: '12h',
  heartbeatTimeout: '15s',
  retry: { initialInterval: '2s', backoffCoefficient: 2, maximumInterval: '60s', maximumAttempts: 5 },
};

/**
 * bulkCopy whose cancellation waits until the step has stopped (its Postgres statements cancelled,
 * its child processes gone): what follows a cancellation (a compensation deleting what the step
 * wrote, the drop of a restore's scratch schema) must not race a step still writing, and a
 * workflow that says cancelled must have stopped. Runs started before it existed did not wait;
 * the workflows choose it behind the patch below.
 */
export const bulkCopyUntilStopped: ActivityOptions = { ...bulkCopy, cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED };
export const cancelWaitsForTheStep = 'cancel-waits-for-the-step';
/** a cancelled run opens no failure alert (workflows/alerts.ts, announceFailure) */
export const noAlertWhenCancelled = 'no-alert-when-cancelled';

/** The WAL archiver: runs for a slice (an hour by default), heartbeating; a dead worker is noticed in 20 s. */
export const walStream: ActivityOptions = {
  startToCloseTimeout: '3h',
  heartbeatTimeout: '20s',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '30s', maximumAttempts: 5 },
};

/**
 * walStream whose cancellation waits until the activity has stored what it received and let go of
 * its slot: a stopped log or archiver is really stopped when `stop` returns. Runs started before
 * it existed did not wait; the workflows choose it behind the patch below.
 */
export const walStreamUntilStopped: ActivityOptions = { ...walStream, cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED };
export const stopWaitsForTheStream = 'stop-waits-for-the-stream';

/** A restore into a directory that must be empty: not retried (a retry would find it half full); the operator reruns. */
export const restoreOnce: ActivityOptions = {
  startToCloseTimeout: '24h',
  heartbeatTimeout: '30s',
  retry: { maximumAttempts: 1 },
};

/** Reporting a job's outcome to the alerts (a catalog write; delivery is the worker's background work). Its failure is ignored. */
export const alertStep: ActivityOptions = {
  startToCloseTimeout: '30s',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '10s', maximumAttempts: 3 },
};
/** Runs started before the alerts existed replay without their notifyAlert steps (workflows/alerts.ts). */
export const pushAlerts = 'push-alerts';

/**
 * Appending to the audit log (a catalog write, idempotent by workflow id + run id + step). Its
 * failure fails the workflow where it stands: an act that cannot be recorded is not carried out.
 */
export const auditStep: ActivityOptions = {
  startToCloseTimeout: '30s',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '10s', maximumAttempts: 6 },
};
/** Runs started before the audit log existed replay without their appendAudit steps (workflows/audit.ts). */
export const auditLogPatch = 'audit-log';

/**
 * Building or rebuilding a standby: long (extracting, catching up), heartbeating; a dead worker is
 * noticed in 15 s and the retry cleans what the attempt left half-built (lib/dr/standby.ts).
 */
export const standbyBuild: ActivityOptions = {
  startToCloseTimeout: '24h',
  heartbeatTimeout: '15s',
  retry: { initialInterval: '2s', backoffCoefficient: 2, maximumInterval: '30s', maximumAttempts: 3 },
};

/**
 * Failover steps that wait on servers (the probes, a promotion, the write check through the
 * endpoint): up to a few minutes, heartbeating; retried a little, never for long (the RTO runs).
 */
export const drStep: ActivityOptions = {
  startToCloseTimeout: '3m',
  heartbeatTimeout: '30s',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '5s', maximumAttempts: 3 },
};
