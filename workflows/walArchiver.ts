// Runbook: archive WAL continuously (started by the first full backup, or `tenantsafe wal start`).
//   1. run the archiving activity for a slice (pg_receivewal on the slot, uploads every interval)
//   2. when it returns, run the next slice; when it fails, back off a minute and run it again
//   3. a configuration error (no replication permission) stops the archiver: a person must fix it
//   4. cancel it (`tenantsafe wal stop`) to stop archiving; continue as new when history grows
import { continueAsNew, patched, proxyActivities, setHandler } from '@temporalio/workflow';
import type { FullBackupActivities } from '../activities/fullBackup';
import { walArchiverStatusQuery, type WalArchiverInput, type WalArchiverStatus } from './messages';
import { stopWaitsForTheStream, walStream, walStreamUntilStopped } from './profiles';
import { runInSlices } from './slices';
import { onServedDatabase, serveDatabase, withDatabase } from './database';

const stream = onServedDatabase(proxyActivities<FullBackupActivities>(walStream));
const streamUntilStopped = onServedDatabase(proxyActivities<FullBackupActivities>(walStreamUntilStopped));

const defaultSliceMs = 3_600_000;

export async function walArchiver(input: WalArchiverInput = {}): Promise<WalArchiverStatus> {
  serveDatabase(input);
  const sliceMs = input.sliceMs ?? defaultSliceMs;
  const status: WalArchiverStatus = { state: 'streaming', segmentsArchived: input.carried?.segmentsArchived ?? 0, lastSegment: null, restarts: input.carried?.restarts ?? 0, lastError: null };
  setHandler(walArchiverStatusQuery, () => status);
  const ended = await runInSlices(status, async () => {
    const progress = await (patched(stopWaitsForTheStream) ? streamUntilStopped : stream).archiveWal({ runForMs: sliceMs });
    status.segmentsArchived += progress.segmentsArchived;
    status.lastSegment = progress.lastSegment ?? status.lastSegment;
  }, 'walArchiver');
  if (ended === 'stopped') return status;
  return continueAsNew<typeof walArchiver>(withDatabase({ sliceMs: input.sliceMs, carried: { restarts: status.restarts, segmentsArchived: status.segmentsArchived } }));
}
