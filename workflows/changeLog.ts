// Runbook: keep the change log (`tenantsafe changelog start`, or `tenantsafe dev` with changeLog.enabled).
//   1. stream a slice (the logical slot's committed changes into segments in storage)
//   2. when it returns, stream the next slice; when it fails, back off a minute and stream again
//      (a slot lost meanwhile is recorded as a gap by the next slice, which starts a new slot)
//   3. a configuration error (wal_level, replica identity, privileges) stops it: a person must fix it
//   4. cancel it (`tenantsafe changelog stop`); continue as new when history grows
import { continueAsNew, isCancellation, proxyActivities, setHandler, sleep, workflowInfo } from '@temporalio/workflow';
import type { ChangeLogActivities } from '../activities/changeLog';
import { isBadInput } from '../lib/errors';
import { rootCause } from './failures';
import { changeLogStatusQuery, type ChangeLogInput, type ChangeLogStatus } from './messages';
import { walStream } from './profiles';

const stream = proxyActivities<ChangeLogActivities>(walStream);

const defaultSliceMs = 3_600_000;
/** slices per run before continuing as new */
const slicesPerRun = 48;

export async function changeLog(input: ChangeLogInput = {}): Promise<ChangeLogStatus> {
  const sliceMs = input.sliceMs ?? defaultSliceMs;
  const carried = input.carried ?? { restarts: 0, segments: 0, transactions: 0 };
  const status: ChangeLogStatus = { state: 'streaming', ...carried, durableLsn: null, caughtUpAt: null, lastError: null };
  setHandler(changeLogStatusQuery, () => status);
  for (let slice = 0; slice < slicesPerRun && !workflowInfo().continueAsNewSuggested; slice++) {
    try {
      status.state = 'streaming';
      const progress = await stream.streamChanges({ runForMs: sliceMs });
      status.segments += progress.segments;
      status.transactions += progress.transactions;
      status.durableLsn = progress.durableLsn;
      status.caughtUpAt = progress.caughtUpAt ?? status.caughtUpAt;
    } catch (err) {
      if (isCancellation(err)) {
        status.state = 'stopped';
        return status;
      }
      const cause = rootCause(err);
      status.lastError = cause.message;
      if (isBadInput(cause.type)) throw err;
      status.restarts++;
      status.state = 'backing-off';
      await sleep('1 minute');
    }
  }
  return continueAsNew<typeof changeLog>({ sliceMs: input.sliceMs, carried: { restarts: status.restarts, segments: status.segments, transactions: status.transactions } });
}
