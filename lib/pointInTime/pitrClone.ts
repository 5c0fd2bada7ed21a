// Source 2 of a tenant point-in-time restore (issue 19), for the self-managed provider: a PITR
// clone. The whole cluster is recovered into a scratch directory to the target, from the base
// backups and the WAL archive (the PITR restore of lib/pitr); the tenant is exported from the
// clone with the ordinary tenant export, as a backup of kind P; the clone is removed whatever
// happens. The caller records the backup in the catalog and restores from it as from any other.
import { chmod, mkdtemp, rm, statfs } from 'node:fs/promises';
import * as path from 'node:path';
import type { ClientBase } from 'pg';
import type { FullBackupRecord } from '../catalog';
import { databaseName } from '../config';
import type { Engine } from '../engine';
import { ErrorType, TenantsafeError } from '../errors';
import { readFullManifest } from '../format/fullManifest';
import type { PointInTimeSource } from '../format/tenantManifest';
import { parseBackupLabel } from '../labels';
import { withConnection } from '../pg';
import { restorePhysicalBackup, type RestoreProgress } from '../pitr/restore';
import { planPhysicalRestore } from '../pitr/window';
import { PrivateCluster } from '../postgres/cluster';
import { assertTenantExists, discoverTenancy } from '../tenancy';
import { takeTenantBackup, type TenantBackupSummary } from '../tenantBackup';
import type { ExportProgress } from '../tenantBackup/export';
import { formatMicros, parseMicros } from '../time';
import { listWalArchive, newestSegment, type WalArchiveListing } from '../wal/archive';
import { formatLsn, parseLsn, segmentStartLsn } from '../wal/names';

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
  await assertScratchSpace(engine, backup, listing, target);
  args.signal?.throwIfAborted();

  const work = await mkdtemp(path.join(engine.config.verification.scratchDir, 'tenantsafe-pitr-clone-'));
  try {
    await chmod(work, 0o755); // the postgres OS user runs the clone inside it
    const dataDir = path.join(work, 'data');
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
    await removeClone(work);
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
 * Refuses, before anything is written, a clone the scratch file system cannot hold. The estimate
 * errs high, on the side of refusing rather than filling the disk halfway through:
 *   the base backup unpacked (its manifest's uncompressed size)
 * + twice the WAL that replay may read (replayEnd): once for the data files, which grow by at
 *   most what the replayed records carry; once for pg_wal, where recovery keeps the segments it
 *   replayed until a restartpoint recycles them
 * + a tenth of both for the server log, the segments fetched ahead, the WAL written after
 *   promotion and the file system's own overhead.
 * Free is what an unprivileged user may take (bavail): the clone's files belong to the postgres
 * OS user, who cannot use the blocks kept for root.
 */
async function assertScratchSpace(engine: Engine, backup: FullBackupRecord, listing: WalArchiveListing, target: PitrCloneTarget): Promise<void> {
  const { scratchDir, scratchKeepFreePercent } = engine.config.verification;
  const wal = backup.wal!;
  const base = (await readFullManifest(engine.store, backup.prefix)).totals.rawBytes;
  const end = await replayEnd(engine, listing, wal.segmentSize, target);
  const replayed = Number(end > parseLsn(wal.startLsn) ? end - parseLsn(wal.startLsn) : 0n);
  const needed = Math.ceil((base + 2 * replayed) * 1.1);
  let disk;
  try {
    disk = await statfs(scratchDir);
  } catch (err) {
    throw new TenantsafeError(ErrorType.BadConfig, `verification.scratchDir ${scratchDir} cannot be used: ${(err as Error).message}.`, 'Point verification.scratchDir at an existing directory the worker may write to.');
  }
  const free = disk.bavail * disk.bsize;
  const keepFree = Math.ceil((disk.blocks * disk.bsize * scratchKeepFreePercent) / 100);
  if (free - needed >= keepFree) return;
  throw new TenantsafeError(
    ErrorType.InsufficientSpace,
    `A PITR clone of full backup ${backup.backupId} needs about ${sizeText(needed)} in ${scratchDir} (the base backup unpacked, ${sizeText(base)}, and room for ${sizeText(replayed)} of WAL twice): ` +
      `${sizeText(free)} are free, of which verification.scratchKeepFreePercent keeps ${sizeText(keepFree)} (${scratchKeepFreePercent}% of the file system) free.`,
    'Free space there, or point verification.scratchDir at a file system with more room; nothing was written.',
  );
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
  const newest = newestSegment(listing);
  return newest ? segmentStartLsn(newest, segmentSize) + BigInt(segmentSize) : 0n;
}

function sizeText(bytes: number): string {
  return bytes >= 2 ** 30 ? `${(bytes / 2 ** 30).toFixed(1)} GiB` : `${Math.ceil(bytes / 2 ** 20)} MiB`;
}

/**
 * Stops the clone and deletes its directory. Always: after an export that failed or was
 * aborted too. A clone pg_ctl cannot stop is killed: its data is going anyway.
 */
async function removeClone(work: string): Promise<void> {
  const clone = await PrivateCluster.attach(path.join(work, 'data')).catch(() => undefined); // none: it never got as far as a cluster
  try {
    await clone?.remove();
  } catch {
    if (clone?.isRunning()) await clone.crash();
  }
  await rm(work, { recursive: true, force: true });
}
