// Reporting a job's outcome to the pushed alerts (lib/alerts, through the notifyAlert activity):
// a failure opens the job's alert unless it is open, the next success resolves it. Never fails
// the job: the report's own failure is ignored, and it runs even while the job is being cancelled.
import { CancellationScope, patched, proxyActivities, proxyLocalActivities } from '@temporalio/workflow';
import type { AlertActivities } from '../activities/alerts';
import type { AlertOutcomeInput } from '../lib/alerts/types';
import { endingOf, rootCause } from './failures';
import { alertStep, noAlertWhenCancelled, pushAlerts } from './profiles';
import { onServedDatabase } from './database';

const alerts = onServedDatabase(proxyActivities<AlertActivities>(alertStep));
const localAlerts = onServedDatabase(proxyLocalActivities<AlertActivities>({ ...alertStep }));

/** False while replaying a run that started before alerts existed: it schedules no report. */
export function alertsOn(): boolean {
  return patched(pushAlerts);
}

/** `local`: as a local activity (workflows/profiles.ts, localStep), for a workflow whose other short steps are */
export async function announce(report: AlertOutcomeInput, { local = false } = {}): Promise<void> {
  if (!alertsOn()) return;
  await CancellationScope.nonCancellable(() => (local ? localAlerts : alerts).notifyAlert(report)).catch(() => undefined);
}

/**
 * Reports a job that did not complete: a failure opens its alert; a cancellation (a person, or
 * the parent, stopped it) reports nothing, since nothing failed and no later success of the same
 * job might ever come to resolve it. Runs that started before this rule still report it.
 */
export async function announceFailure(err: unknown, report: Omit<AlertOutcomeInput, 'outcome' | 'error'>): Promise<void> {
  if (endingOf(err) === 'cancelled' && patched(noAlertWhenCancelled)) return;
  await announce({ ...report, outcome: 'failed', error: failureOf(err) });
}

/** The failure of a job, for its report: the root cause's message and stable type. */
export function failureOf(err: unknown): { message: string; type?: string } {
  const cause = rootCause(err);
  return cause.type ? { message: cause.message, type: cause.type } : { message: cause.message };
}
