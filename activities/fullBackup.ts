// Full-backup, WAL-archiving and point-in-time-restore activities: thin steps over
// lib/fullBackup, lib/wal and lib/pitr. Long ones heartbeat and pass cancellation on.
import { Context } from '@temporalio/activity';
import { discardIncompleteBackup } from '../lib/tenantBackup';
import type { Engine } from '../lib/engine';
import { sha256Hex } from '../lib/checksum';
import { fullBackupPrefix, parseFullManifest } from '../lib/format/fullManifest';
import { manifestFile } from '../lib/format/sealed';
import { createFullBackupProvider, type FullBackupCheck } from '../lib/fullBackup/provider';
import type { PitrRestoreResult } from '../lib/pitr/restore';
import { pitrTargetOf, type PitrPlan, type PitrTargetFields } from '../lib/pitr/window';
import type { StorageLocation } from '../lib/storage/types';
import { archiveWal, type WalArchiverProgress } from '../lib/wal/archiver';
import { serverWalPosition, WalProgressReporter } from '../lib/wal/progress';
import { workflowScopes } from '../lib/databaseIdentity';
import { databaseRole } from '../lib/pg';
import { withFailures } from './failures';
import { heartbeatEvery } from './tenantBackup';

export interface FullBackupRef {
  backupId: string;
}

export interface FullBackupSummary {
  backupId: string;
  method: 'basebackup' | 'pg_dump';
  bytes: number;
  startLsn: string | null;
  stopLsn: string | null;
  finishedAt: string;
}

export function createFullBackupActivities(engine: Engine) {
  /** `from`: a restore reading one storage location only (bad input when it is not configured) */
  const provider = (from?: StorageLocation) => createFullBackupProvider(engine.from(from));
  return withFailures({
    async checkFullBackup(_: Record<string, never>): Promise<FullBackupCheck> {
      return provider().check();
    },

    /** The whole backup in one activity: a retry starts it again from scratch under the same id. */
    async takeFullBackup({ backupId }: FullBackupRef): Promise<FullBackupSummary> {
      let progress: unknown = { phase: 'starting' };
      const stop = heartbeatEvery(2000, () => progress);
      try {
        const m = await provider().takeBackup({ backupId, onProgress: (p) => (progress = p), signal: Context.current().cancellationSignal });
        return { backupId, method: m.method, bytes: m.totals.bytes, startLsn: m.wal?.startLsn ?? null, stopLsn: m.wal?.stopLsn ?? null, finishedAt: m.finishedAt };
      } finally {
        stop();
      }
    },

    /** Indexes the backup in the catalog from its manifest (the source of truth). */
    async recordFullBackup({ backupId }: FullBackupRef): Promise<void> {
      const key = fullBackupPrefix(backupId) + manifestFile;
      const body = await engine.store.getBytes(key);
      await engine.catalog.recordFullBackup(parseFullManifest(body, key), engine.store.uri, sha256Hex(body));
    },

    async discardIncompleteFullBackup({ backupId }: FullBackupRef): Promise<{ objectsRemoved: number }> {
      return { objectsRemoved: await discardIncompleteBackup(engine.store, fullBackupPrefix(backupId)) };
    },

    /**
     * Streams WAL into storage for `runForMs`, then returns (the workflow calls it again). Killed
     * workers are noticed by the heartbeat timeout; the retry on another worker resumes from
     * the replication slot, so nothing is lost.
     */
    async archiveWal({ runForMs }: { runForMs: number }): Promise<WalArchiverProgress> {
      const { fullBackup, database, backup } = engine.config;
      let progress: WalArchiverProgress | { phase: string } = { phase: 'starting' };
      const stop = heartbeatEvery(2000, () => progress);
      const signal = Context.current().cancellationSignal;
      // the health model's view of the archive (lib/monitoring): alive, how far, the last error
      const reporter = new WalProgressReporter(engine.catalog, async () => (await workflowScopes(engine)).walArchiver, () => serverWalPosition(engine));
      reporter.started();
      let last: WalArchiverProgress | null = null;
      try {
        const done = await archiveWal({
          url: database.url,
          store: engine.store,
          slot: fullBackup.slot,
          spoolDir: fullBackup.walSpoolDir,
          partialIntervalMs: fullBackup.walPartialIntervalMs,
          compressionLevel: backup.compressionLevel,
          runForMs,
          signal,
          onProgress: (p) => {
            progress = { ...p };
            last = progress;
            reporter.progress(p);
          },
        });
        await reporter.finished(done);
        return done;
      } catch (err) {
        await reporter.finished(last, signal.aborted ? undefined : err);
        throw err;
      } finally {
        stop();
      }
    },

    /** Checks the target against the recoverable window and picks the base backup. */
    async planPitrRestore(args: PitrTargetFields & { restoreTarget: string; from?: StorageLocation }): Promise<PitrPlan> {
      return provider(args.from).planRestore(pitrTargetOf(args), args.restoreTarget, new Date());
    },

    async runPitrRestore(args: { plan: PitrPlan; restoreTarget: string; port?: number; from?: StorageLocation }): Promise<PitrRestoreResult> {
      let progress: unknown = { phase: 'starting' };
      const stop = heartbeatEvery(2000, () => progress);
      try {
        return await provider(args.from).restore({ plan: args.plan, target: args.restoreTarget, port: args.port, onProgress: (p) => (progress = p), signal: Context.current().cancellationSignal });
      } finally {
        stop();
      }
    },
  }, databaseRole(engine.config.database.url));
}

export type FullBackupActivities = ReturnType<typeof createFullBackupActivities>;
