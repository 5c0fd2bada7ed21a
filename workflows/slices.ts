// The loop of a long-lived workflow that streams (the WAL archiver, the change log): run one
// slice of the work, then the next; a failure backs off a minute and tries again, a
// configuration error stops it for a person to fix, cancellation stops it cleanly; after a
// number of slices, or when history grows, the caller continues as new.
import { isCancellation, sleep, workflowInfo } from '@temporalio/workflow';
import { isBadInput } from '../lib/errors';
import { rootCause } from './failures';

/** slices per run before continuing as new */
const slicesPerRun = 48;

export interface SliceStatus {
  state: 'streaming' | 'backing-off' | 'stopped';
  restarts: number;
  lastError: string | null;
}

/** Runs slices until one run's worth is done ('continue': the caller continues as new) or it is cancelled ('stopped'). */
export async function runInSlices(status: SliceStatus, slice: () => Promise<void>): Promise<'continue' | 'stopped'> {
  for (let n = 0; n < slicesPerRun && !workflowInfo().continueAsNewSuggested; n++) {
    try {
      status.state = 'streaming';
      await slice();
    } catch (err) {
      if (isCancellation(err)) {
        status.state = 'stopped';
        return 'stopped';
      }
      const cause = rootCause(err);
      status.lastError = cause.message;
      if (isBadInput(cause.type)) throw err;
      status.restarts++;
      status.state = 'backing-off';
      await sleep('1 minute');
    }
  }
  return 'continue';
}
