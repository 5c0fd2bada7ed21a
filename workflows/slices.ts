// The loop of a long-lived workflow that streams (the WAL archiver, the change log): run one
// slice of the work, then the next; a failure backs off a minute and tries again, a
// configuration error stops it for a person to fix, cancellation stops it cleanly; after a
// number of slices, or when history grows, the caller continues as new.
//
// Alerts: a failed slice (it backs off, or stops on a configuration error) reports a failure; a
// slice that then streams for a minute without failing, or completes, reports it healthy again
// (resolving the alert). So does the first slice of every run, in case an alert is still open
// from a run before (a report that changes nothing sends nothing).
import { condition, isCancellation, sleep, workflowInfo } from '@temporalio/workflow';
import type { AlertKind } from '../lib/alerts/types';
import { isBadInput } from '../lib/errors';
import { alertsOn, announce, failureOf } from './alerts';
import { rootCause } from './failures';

/** slices per run before continuing as new */
const slicesPerRun = 48;

/** how long a slice streams without failing before the stream counts as healthy again */
const healthyAfterMs = 60_000;

export interface SliceStatus {
  state: 'streaming' | 'backing-off' | 'stopped';
  restarts: number;
  lastError: string | null;
}

/** Runs slices until one run's worth is done ('continue': the caller continues as new) or it is cancelled ('stopped'). */
export async function runInSlices(status: SliceStatus, slice: () => Promise<void>, alertKind?: Extract<AlertKind, 'walArchiver' | 'changeLog'>): Promise<'continue' | 'stopped'> {
  // runs started before the alerts replay as they ran
  const alerting = alertKind !== undefined && alertsOn();
  let reportHealth = alerting;
  for (let n = 0; n < slicesPerRun && !workflowInfo().continueAsNewSuggested; n++) {
    try {
      status.state = 'streaming';
      const running = slice();
      if (reportHealth) {
        let ended: 'ok' | 'failed' | undefined;
        void running.then(
          () => (ended = 'ok'),
          () => (ended = 'failed'),
        );
        let stopping = false;
        try {
          await condition(() => ended !== undefined, healthyAfterMs);
        } catch (err) {
          if (!isCancellation(err)) throw err;
          stopping = true; // the slice sees the cancellation too: awaited below
        }
        if (!stopping && ended !== 'failed') {
          await announce({ kind: alertKind!, outcome: 'succeeded', step: `slice-${n}-healthy` });
          reportHealth = false;
        }
      }
      await running;
    } catch (err) {
      if (isCancellation(err)) {
        status.state = 'stopped';
        return 'stopped';
      }
      const cause = rootCause(err);
      status.lastError = cause.message;
      if (alerting) {
        await announce({ kind: alertKind!, outcome: 'failed', step: `slice-${n}-failed`, error: failureOf(err) });
        reportHealth = true;
      }
      if (isBadInput(cause.type)) throw err;
      status.restarts++;
      status.state = 'backing-off';
      await sleep('1 minute');
    }
  }
  return 'continue';
}
