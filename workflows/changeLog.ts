// Runbook: keep the change log (`tenantsafe changelog start`, or `tenantsafe dev` with changeLog.enabled).
//   1. stream a slice (the logical slot's committed changes into segments in storage)
//   2. when it returns, stream the next slice; when it fails, back off a minute and stream again
//      (a slot lost meanwhile is recorded as a gap by the next slice, which starts a new slot)
//   3. a configuration error (wal_level, replica identity, privileges) stops it: a person must fix it
//   4. cancel it (`tenantsafe changelog stop`); continue as new when history grows
import { continueAsNew, patched, proxyActivities, setHandler } from '@temporalio/workflow';
import type { ChangeLogActivities } from '../activities/changeLog';
import { changeLogStatusQuery, type ChangeLogInput, type ChangeLogStatus } from './messages';
import { stopWaitsForTheStream, walStream, walStreamUntilStopped } from './profiles';
import { runInSlices } from './slices';
import { onServedDatabase, serveDatabase, withDatabase } from './database';

const stream = onServedDatabase(proxyActivities<ChangeLogActivities>(walStream));
const streamUntilStopped = onServedDatabase(proxyActivities<ChangeLogActivities>(walStreamUntilStopped));

const defaultSliceMs = 3_600_000;

export async function changeLog(input: ChangeLogInput = {}): Promise<ChangeLogStatus> {
  serveDatabase(input);
  const sliceMs = input.sliceMs ?? defaultSliceMs;
  const carried = input.carried ?? { restarts: 0, segments: 0, transactions: 0 };
  const status: ChangeLogStatus = { state: 'streaming', ...carried, durableLsn: null, caughtUpAt: null, lastError: null };
  setHandler(changeLogStatusQuery, () => status);
  const ended = await runInSlices(status, async () => {
    const progress = await (patched(stopWaitsForTheStream) ? streamUntilStopped : stream).streamChanges({ runForMs: sliceMs });
    status.segments += progress.segments;
    status.transactions += progress.transactions;
    status.durableLsn = progress.durableLsn;
    status.caughtUpAt = progress.caughtUpAt ?? status.caughtUpAt;
  }, 'changeLog');
  if (ended === 'stopped') return status;
  return continueAsNew<typeof changeLog>(withDatabase({ sliceMs: input.sliceMs, carried: { restarts: status.restarts, segments: status.segments, transactions: status.transactions } }));
}
