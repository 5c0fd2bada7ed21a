// Runbook: archive WAL continuously (started by the first full backup, or `tenantsafe wal start`).
//   1. run the archiving activity for a slice (pg_receivewal on the slot, uploads every interval)
//   2. when it returns, run the next slice; when it fails, back off a minute and run it again
//   3. a configuration error (no replication permission) stops the archiver: a person must fix it
//   4. cancel it (`tenantsafe wal stop`) to stop archiving; continue as new when history grows
import { continueAsNew, isCancellation, proxyActivities, setHandler, sleep, workflowInfo } from '@temporalio/workflow';
import type { FullBackupActivities } from '../activities/fullBackup';
import { isBadInput } from '../lib/errors';
import { rootCause } from './failures';
import { walArchiverStatusQuery, type WalArchiverInput, type WalArchiverStatus } from './messages';
import { walStream } from './profiles';

const stream = proxyActivities<FullBackupActivities>(walStream);

const defaultSliceMs = 3_600_000;
/** slices per run before continuing as new */
const slicesPerRun = 48;

export async function walArchiver(input: WalArchiverInput = {}): Promise<WalArchiverStatus> {
  const sliceMs = input.sliceMs ?? defaultSliceMs;
  const status: WalArchiverStatus = { state: 'streaming', segmentsArchived: input.carried?.segmentsArchived ?? 0, lastSegment: null, restarts: input.carried?.restarts ?? 0, lastError: null };
  setHandler(walArchiverStatusQuery, () => status);
  for (let slice = 0; slice < slicesPerRun && !workflowInfo().continueAsNewSuggested; slice++) {
    try {
      status.state = 'streaming';
      const progress = await stream.archiveWal({ runForMs: sliceMs });
      status.segmentsArchived += progress.segmentsArchived;
      status.lastSegment = progress.lastSegment ?? status.lastSegment;
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
  return continueAsNew<typeof walArchiver>({ sliceMs: input.sliceMs, carried: { restarts: status.restarts, segmentsArchived: status.segmentsArchived } });
}
