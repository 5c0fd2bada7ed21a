// Restores a physical base backup into a NEW cluster (never in place) and replays the archived
// WAL to a target: extract the tar (decrypting, or checking its sha256, on the way; the
// decompressor the manifest names feeds tar), write the recovery
// settings, start PostgreSQL with a restore_command that fetches from our storage, wait until
// it has promoted, and report where it stopped.
import { existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { requireKeyring } from '../encryption';
import { sha256Hex, sha256OfStream, Sha256Stream } from '../checksum';
import { Rechunk } from '../streams';
import type { FullBackupRecord } from '../catalog';
import { microsText } from '../pg';
import { PrivateCluster } from '../postgres/cluster';
import { logTail, spawnTied } from '../process';
import { ErrorType, TenantsafeError } from '../errors';
import { decompressCommand, tarExtractArgs } from '../fullBackup/compression';
import { backupManifestKey, baseObjectOf, readFullManifest, type BaseCompression } from '../format/fullManifest';
import { syncFileSystem } from '../storage/local';
import type { ObjectStore } from '../storage/types';
import { formatMicros, parseMicros } from '../time';
import { formatLsn, parseLsn } from '../wal/names';
import type { WalArchiveListing } from '../wal/archive';
import { startWalServer } from './walServer';
import type { PitrTarget } from './window';

export interface PitrRestoreResult {
  /** the time of the last transaction replayed (null when none was) */
  recoveredTo: string | null;
  /** the last WAL position replayed */
  lsn: string | null;
  dataDir: string | null;
  /** the port the restored cluster runs on; null when it was stopped after recovery */
  port: number | null;
}

export interface RestoreProgress {
  phase: 'extracting' | 'replaying' | 'promoted';
  bytes: number;
  replayLsn?: string | null;
}

export interface PhysicalRestoreOptions {
  store: ObjectStore;
  backup: Pick<FullBackupRecord, 'backupId' | 'prefix' | 'wal'>;
  listing: WalArchiveListing;
  /**
   * 'immediate': stop as soon as the backup is consistent (verification restore tests); afterXid:
   * right after this transaction's commit (a time target at the newest archived commit, see PitrPlan)
   */
  target: PitrTarget | 'immediate' | { afterXid: string };
  dataDir: string;
  /** keep the cluster running on this port afterwards; without it, a free port and a clean stop */
  port?: number;
  onProgress?: (p: RestoreProgress) => void;
  signal?: AbortSignal;
  /** runs on the extracted backup before anything in it changes (verification runs pg_verifybackup here) */
  beforeStart?: (dataDir: string) => Promise<void>;
}

/** Throws BadInput unless `dir` is an absolute path that is missing or empty. */
export function assertNewDataDir(dir: string): void {
  if (!path.isAbsolute(dir)) {
    throw new TenantsafeError(ErrorType.BadInput, `Target ${JSON.stringify(dir)} is not an absolute path.`, 'Pass --target /absolute/path/to/an/empty/directory.');
  }
  if (existsSync(dir) && readdirSync(dir).length > 0) {
    throw new TenantsafeError(ErrorType.BadInput, `Target ${dir} is not empty: tenantsafe restores into a new cluster, never over an existing one.`, 'Pass a missing or empty directory as --target.');
  }
}

function recoverySettings(target: PhysicalRestoreOptions['target']): Record<string, string> {
  if (target === 'immediate') return { recovery_target: 'immediate' };
  // PostgreSQL's own timestamptz syntax: it rejects the ISO-8601 'T' and 'Z' here. To the
  // microsecond: a target cut to milliseconds would leave out a commit made within the same one.
  if ('at' in target) return { recovery_target_time: formatMicros(parseMicros(target.at)).replace('T', ' ').replace('Z', '+00'), recovery_target_inclusive: 'on' };
  // every record starting at or before the LSN, nothing after: PostgreSQL's inclusive stop would
  // also replay the first record starting after it (a commit there included), which the change log
  // leaves out; so stop just before L + 1
  if ('lsn' in target) return { recovery_target_lsn: formatLsn(parseLsn(target.lsn) + 1n), recovery_target_inclusive: 'off' };
  if ('name' in target) return { recovery_target_name: target.name };
  // right after this transaction's commit, the archive's last perhaps: an LSN target needs a record after it to stop at
  if ('afterXid' in target) return { recovery_target_xid: target.afterXid, recovery_target_inclusive: 'on' };
  return {}; // latest: replay everything the archive holds
}

export async function restorePhysicalBackup(opts: PhysicalRestoreOptions): Promise<PitrRestoreResult> {
  assertNewDataDir(opts.dataDir);
  const { backup, store } = opts;
  if (!backup.wal) throw new TenantsafeError(ErrorType.BadInput, `Backup ${backup.backupId} is a logical dump, not a physical base backup.`, 'Restore it with pg_restore (docs/runbooks/supabase.md).');
  const progress: RestoreProgress = { phase: 'extracting', bytes: 0 };
  mkdirSync(opts.dataDir, { recursive: true, mode: 0o700 });
  try {
    await extractBaseBackup(store, backup, opts.dataDir, (bytes) => opts.onProgress?.({ ...progress, bytes }), opts.signal);
    await opts.beforeStart?.(opts.dataDir);
    prepareDataDir(opts.dataDir, 'recovery.signal');
  } catch (err) {
    rmSync(opts.dataDir, { recursive: true, force: true });
    throw err;
  }

  const wal = await startWalServer({ store, listing: opts.listing, segmentSize: backup.wal.segmentSize, spoolBeside: opts.dataDir, firstSegment: backup.wal.startSegment });
  let cluster: PrivateCluster | undefined;
  try {
    cluster = await PrivateCluster.create({
      dataDir: opts.dataDir,
      port: opts.port ?? 0,
      settings: {
        restore_command: wal.restoreCommand,
        ...recoverySettings(opts.target),
        recovery_target_action: 'promote',
        // the restored cluster must never archive into, or stream from, the original's places
        archive_mode: 'off',
        primary_conninfo: '',
        primary_slot_name: '',
        hot_standby: 'on',
        // before replay PostgreSQL makes the extracted files durable: one syncfs() of the file
        // system instead of an open and fsync per file (Linux only)
        ...(process.platform === 'linux' ? { recovery_init_sync_method: 'syncfs' } : {}),
      },
    });
    const starting = cluster;
    // a segment the backup needs to become consistent was damaged: say so, not just "did not start"
    await starting.start().catch((err: unknown) => {
      throw wal.errors.length > 0 ? recoveryFailed(starting, wal.errors) : err;
    });
    progress.phase = 'replaying';
    // short polls first: a small restore is done in a moment, and this wait is part of the RTO
    for (let pollMs = 20; ; pollMs = Math.min(250, pollMs * 1.5)) {
      opts.signal?.throwIfAborted();
      if (!cluster.isRunning()) throw recoveryFailed(cluster, wal.errors);
      const [state] = await cluster
        .psql<{ recovering: boolean; lsn: string | null }>(`SELECT pg_is_in_recovery() AS recovering, pg_last_wal_replay_lsn()::text AS lsn`)
        .catch(() => [{ recovering: true, lsn: null }]);
      opts.onProgress?.({ ...progress, replayLsn: state.lsn });
      if (!state.recovering) break;
      await new Promise((resolve) => setTimeout(resolve, pollMs));
    }
    if (wal.errors.length > 0) throw recoveryFailed(cluster, wal.errors);
    const [reached] = await cluster.psql<{ lsn: string | null; at: string | null }>(`SELECT pg_last_wal_replay_lsn()::text AS lsn, ${microsText('pg_last_xact_replay_timestamp()')} AS at`);
    opts.onProgress?.({ ...progress, phase: 'promoted', replayLsn: reached.lsn });
    if (opts.port === undefined) await cluster.stop('fast');
    return { recoveredTo: reached.at, lsn: reached.lsn, dataDir: opts.dataDir, port: opts.port === undefined ? null : cluster.port };
  } catch (err) {
    // A failed restore leaves nothing running; the directory stays for the operator to read its log.
    await cluster?.stop('immediate').catch(() => undefined);
    throw err;
  } finally {
    await wal.stop();
  }
}

function recoveryFailed(cluster: PrivateCluster, walErrors: string[]): TenantsafeError {
  return new TenantsafeError(
    ErrorType.RecoveryFailed,
    `PostgreSQL did not complete recovery in ${cluster.dataDir}${walErrors.length ? ` (WAL archive: ${walErrors.join('; ')})` : ''}:${logTail(cluster.logFile)}`,
    'Read the server log above; `tenantsafe verify <backupId>` checks the backup and its WAL.',
  );
}

/** Extracts a physical base backup (its tar, sha256 checked against the manifest) into `dir`, which exists. */
export async function extractBaseBackup(store: ObjectStore, backup: Pick<FullBackupRecord, 'prefix'>, dir: string, onBytes: (n: number) => void, signal?: AbortSignal): Promise<void> {
  const manifest = await readFullManifest(store, backup.prefix);
  const base = baseObjectOf(manifest);
  const key = backup.prefix + base.object.key;
  const decrypt = base.object.encrypted ? (await requireKeyring(store, key).open(manifest.encryption!, key)).open(key) : undefined;
  await extract(store, key, base.object.sha256, base.compression, dir, onBytes, signal, decrypt);
  // pg_verifybackup reads it beside the files; newer backups keep it outside the tar only
  const pgManifest = manifest.objects.find((o) => o.key === backupManifestKey);
  if (pgManifest && !existsSync(path.join(dir, backupManifestKey))) {
    const bytes = await store.getBytes(backup.prefix + backupManifestKey);
    if (sha256Hex(bytes) !== pgManifest.sha256) throw new TenantsafeError(ErrorType.CorruptBackup, `${backup.prefix}${backupManifestKey} does not match the sha256 in its manifest.`, 'Restore from another base backup; `tenantsafe verify` lists what is damaged.');
    writeFileSync(path.join(dir, backupManifestKey), bytes);
  }
}

/**
 * Streams the stored tar through a sha256 check (or, encrypted, its decryption) into its
 * decompressor, whose output goes straight into `tar -x` (a pipe between the two tools).
 */
async function extract(store: ObjectStore, key: string, sha256: string, compression: BaseCompression, dir: string, onBytes: (n: number) => void, signal?: AbortSignal, decrypt?: Transform): Promise<void> {
  const source = await store.get(key);
  // an encrypted tar's chunks are each authenticated (AES-GCM, in their order, the last one
  // marked): a damaged byte fails there, so the sha256 over the whole is verification's to check
  const check = decrypt ? null : new Sha256Stream();
  let bytes = 0;
  const count = new Transform({ transform: (chunk: Buffer, _enc, done) => ((bytes += chunk.length), done(null, chunk)) });
  const [tool, toolArgs] = decompressCommand(compression);
  const unpack = spawnTied(tool, toolArgs, { stdio: ['pipe', 'pipe', 'pipe'] });
  const tar = spawnTied('tar', tarExtractArgs(dir), { stdio: [unpack.stdout, 'ignore', 'pipe'] });
  unpack.stdout.destroy(); // tar reads it now: this process must not
  let stderr = '';
  for (const child of [unpack, tar]) child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const closed = (child: typeof tar) => new Promise<number | null>((resolve) => (child.exitCode !== null ? resolve(child.exitCode) : child.once('close', resolve)));
  const exited = Promise.all([closed(unpack), closed(tar)]);
  const timer = setInterval(() => onBytes(check?.bytes ?? bytes), 1000);
  // Write-behind: what tar has written is flushed while more comes in, so the sync PostgreSQL
  // makes before replay finds little left (it would otherwise write the whole cluster only then).
  let flushing: Promise<void> | null = null;
  const writeBehind = setInterval(() => (flushing ??= syncFileSystem(dir).catch(() => undefined).finally(() => (flushing = null))), 1000);
  const corrupt = () => new TenantsafeError(ErrorType.CorruptBackup, `${key} does not match the sha256 in its manifest.`, 'Restore from another base backup; `tenantsafe verify` lists what is damaged.');
  const failed = () => new TenantsafeError(ErrorType.CorruptBackup, `Extracting ${key} failed: ${stderr.trim() || `${tool} or tar stopped reading`}`, 'Restore from another base backup; `tenantsafe verify` lists what is damaged.');
  try {
    // plain bytes go to the decompressor in 1 MiB writes; decrypted ones already come in whole
    // 256 KiB chunks, which another copy into bigger pieces would cost more than it saves
    await pipeline([source, check ?? count, decrypt ?? new Rechunk(1 << 20), unpack.stdin], { signal });
  } catch (err) {
    // Damaged bytes make the decompressor or tar stop reading before the whole object went by
    // (EPIPE): say so, not "EPIPE". Either way tar must not write on into a directory the caller removes.
    unpack.kill('SIGKILL');
    tar.kill('SIGKILL');
    await exited;
    if (!signal?.aborted && (await store.get(key).then(sha256OfStream).catch(() => sha256)) !== sha256) throw corrupt();
    if (err instanceof TenantsafeError) throw err;
    if ((err as NodeJS.ErrnoException).code === 'EPIPE') throw failed();
    throw err;
  } finally {
    clearInterval(timer);
    clearInterval(writeBehind);
  }
  const codes = await exited;
  await flushing;
  if (check && check.hex() !== sha256) throw corrupt();
  if (codes.some((code) => code !== 0)) throw failed();
}

/**
 * What a base backup lacks to start as a cluster of its own: recovery.signal to recover and
 * promote (PITR), standby.signal to stay a standby (lib/dr/standby.ts).
 */
export function prepareDataDir(dir: string, mode: 'recovery.signal' | 'standby.signal'): void {
  mkdirSync(path.join(dir, 'pg_wal', 'archive_status'), { recursive: true });
  rmSync(path.join(dir, mode === 'recovery.signal' ? 'standby.signal' : 'recovery.signal'), { force: true });
  writeFileSync(path.join(dir, mode), '');
  // Debian-style servers keep their configuration outside the data directory.
  if (!existsSync(path.join(dir, 'postgresql.conf'))) writeFileSync(path.join(dir, 'postgresql.conf'), '');
  if (!existsSync(path.join(dir, 'pg_hba.conf'))) writeFileSync(path.join(dir, 'pg_hba.conf'), 'local all all trust\nhost all all 127.0.0.1/32 trust\n');
}
