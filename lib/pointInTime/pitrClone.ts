// Source 2 of a tenant point-in-time restore (issue 19), for the self-managed provider: a PITR
// clone. The whole cluster is recovered into a scratch directory to the target, from the base
// backups and the WAL archive (the PITR restore of lib/pitr); the tenant is exported from the
// clone with the ordinary tenant export, as a backup of kind P; the clone is removed whatever
// happens. The caller records the backup in the catalog and restores from it as from any other.
import type { ClientBase } from 'pg';
import { databaseName } from '../config';
import type { Engine } from '../engine';
import { ErrorType, TenantsafeError } from '../errors';
import type { PointInTimeSource } from '../format/tenantManifest';
import { parseBackupLabel } from '../labels';
import { withConnection } from '../pg';
import { restorePhysicalBackup, type RestoreProgress } from '../pitr/restore';
import { planPhysicalRestore } from '../pitr/window';
import { PrivateCluster } from '../postgres/cluster';
import { assertScratchSpace, makeScratchDir, removeScratchCluster } from '../postgres/scratch';
import { assertTenantExists, discoverTenancy } from '../tenancy';
import { takeTenantBackup, type TenantBackupSummary } from '../tenantBackup';
import type { ExportProgress } from '../tenantBackup/export';
import { formatMicros, parseMicros } from '../time';
import { archiveEndLsn, listWalArchive, type WalArchiveListing } from '../wal/archive';
import { formatLsn, parseLsn } from '../wal/names';

/** at: ISO-8601 with a zone, to the microsecond; lsn: as PostgreSQL prints it (X/Y) */
export type PitrCloneTarget = { at: string } | { lsn: string };

export type LastCommit = NonNullable<PointInTimeSource['lastCommit']>;

export type PitrCloneProgress = ({ step: 'restoring' } & RestoreProgress) | ({ step: 'exporting' } & ExportProgress);

export interface PitrCloneRequest {
  tenantId: string;
  /** a label of kind pointInTime (backupLabel(at, 'pointInTime', unique)) */
  backupId: string;
  target: PitrCloneTarget;
  /** why this source was chosen: recorded in the manifest */
  reason: string;
  signal?: AbortSignal;
  onProgress?: (p: PitrCloneProgress) => void;
}

/** The backup written, and the last transaction it includes (null: recovery replayed none). */
export type PitrCloneBackup = TenantBackupSummary & { lastCommit: LastCommit | null };

/**
 * Writes the tenant as committed at the target into a backup of kind P (manifest last), read
 * from a scratch cluster recovered to that target. Refuses before anything is written when the
 * target is outside the window (TargetOutsideWindow) or the clone would not fit in
 * verification.scratchDir (InsufficientSpace). A tenant that did not exist then: TenantNotFound.
 */
export async function rebuildFromPitrClone(engine: Engine, args: PitrCloneRequest): Promise<PitrCloneBackup> {
  const target = checkedTarget(args.target);
  if (parseBackupLabel(args.backupId)?.kind !== 'pointInTime') {
    throw new TenantsafeError(ErrorType.BadInput, `"${args.backupId}" is not the id of a point-in-time backup.`, "Name it with backupLabel(at, 'pointInTime', unique) (kind letter P).");
  }
  const plan = await planPhysicalRestore(engine, target, new Date());
  const backup = await engine.catalog.getFullBackup(plan.backupId);
  // The archive as it is now: the same listing sizes the clone and serves its recovery.
  const listing = await listWalArchive(engine.store);
  await assertScratchSpace(engine, backup, await replayEnd(engine, listing, backup.wal!.segmentSize, target), 'A PITR clone');
  args.signal?.throwIfAborted();

  const { work, dataDir } = await makeScratchDir(engine, 'tenantsafe-pitr-clone-');
  try {
    await restorePhysicalBackup({
      store: engine.store,
      backup,
      listing,
      target: plan.stopAfterXid ? { afterXid: plan.stopAfterXid } : target,
      dataDir,
      port: 0, // a free port; the clone keeps running for the export
      signal: args.signal,
      onProgress: (p) => args.onProgress?.({ step: 'restoring', ...p }),
    });
    args.signal?.throwIfAborted();
    const clone = await PrivateCluster.attach(dataDir);
    const url = clone.url(databaseName(engine.config.database.url));
    const stop = await withConnection(url, async (c) => {
      const stopped = await whereRecoveryStopped(c);
      await assertTenantExisted(c, engine, args.tenantId, target);
      return stopped;
    });
    const lastCommit = stop.time === null ? null : { lsn: stop.lsn, time: stop.time };
    args.signal?.throwIfAborted();
    const summary = await takeTenantBackup(engine, {
      tenantId: args.tenantId,
      backupId: args.backupId,
      requireTenant: true,
      signal: args.signal,
      onProgress: (p) => args.onProgress?.({ step: 'exporting', ...p }),
      pointInTime: {
        source: { source: 'pitrClone', target, lastCommit, reason: args.reason },
        url,
        // an LSN target is as of its last commit; with none replayed, as of the base backup
        at: 'at' in target ? target.at : (lastCommit?.time ?? backup.consistentAt),
        lsn: stop.lsn,
      },
    });
    return { ...summary, lastCommit };
  } finally {
    await removeScratchCluster(work);
  }
}

/** The target in the form recorded everywhere (microseconds, LSN in capitals); BadInput if malformed. */
function checkedTarget(target: PitrCloneTarget): PitrCloneTarget {
  return 'at' in target ? { at: formatMicros(parseMicros(target.at)) } : { lsn: formatLsn(parseLsn(target.lsn)) };
}

/**
 * Where recovery stopped, read from the promoted clone. PostgreSQL 15 (Recovery Information
 * Functions): both values stay where recovery left them once it has ended.
 * - pg_last_wal_replay_lsn(): the end of the last WAL record replayed. Recovery to a time stops
 *   just before the first commit or abort record later than it; to an LSN, just after the first
 *   record at or past it. So a transaction is in the clone exactly when its commit record ends
 *   at or before this position.
 * - pg_last_xact_replay_timestamp(): the time the primary wrote the last commit or abort record
 *   replayed (NULL when recovery replayed none): the last commit's time, or that of an abort
 *   after it, which changed no rows. Read as text: a JavaScript Date would cut the microseconds.
 */
async function whereRecoveryStopped(c: ClientBase): Promise<{ lsn: string; time: string | null }> {
  const r = await c.query<{ lsn: string; time: string | null }>(
    `SELECT pg_last_wal_replay_lsn()::text AS lsn,
            to_char(pg_last_xact_replay_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS time`,
  );
  return r.rows[0];
}

async function assertTenantExisted(c: ClientBase, engine: Engine, tenantId: string, target: PitrCloneTarget): Promise<void> {
  const plan = await discoverTenancy(c, engine.config.tenancy);
  try {
    await assertTenantExists(c, plan, tenantId);
  } catch (err) {
    if ((err as TenantsafeError).type !== ErrorType.TenantNotFound) throw err;
    const when = 'at' in target ? target.at : `LSN ${target.lsn}`;
    throw new TenantsafeError(
      ErrorType.TenantNotFound,
      `Tenant "${tenantId}" did not exist at ${when}: the database recovered to that point has no row in ${plan.tenantTable} with ${plan.tenantColumn} = '${tenantId}'.`,
      'Check the tenant id, or pick a point at which the tenant existed (after it was created, before it was deleted).',
    );
  }
}

/**
 * Where replay ends, at the latest: an LSN target itself. Replay to a time stops at the first
 * commit after it: before the start of a base backup begun after that time, unless nothing
 * committed in between; with no such backup, the end of the archive bounds it.
 */
async function replayEnd(engine: Engine, listing: WalArchiveListing, segmentSize: number, target: PitrCloneTarget): Promise<bigint> {
  if ('lsn' in target) return parseLsn(target.lsn);
  const at = parseMicros(target.at);
  const later = (await engine.catalog.listFullBackups()).find((b) => b.wal && parseMicros(b.startedAt) > at);
  if (later) return parseLsn(later.wal!.startLsn);
  return archiveEndLsn(listing, segmentSize);
}
