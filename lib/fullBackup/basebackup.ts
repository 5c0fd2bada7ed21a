// A physical base backup of the whole cluster, streamed: pg_basebackup -Ft compresses the tar
// itself as it receives the files (client-side: zstd on every core, lz4 or gzip) and writes it
// into a spool directory on the worker, which this process reads as it grows (FollowedFile) and
// stores, encrypted, freeing what it has read. pg_basebackup's own output is the fastest path
// there is: piping the raw tar through Node and a compressor process cost more than the
// compression itself. WAL is not kept with the tar (see walMethodArgs): the WAL archive holds it, and the backup
// waits until the archive has every segment from its start to its stop LSN (like pgBackRest's
// archive check). The backup_manifest, written beside the tar, is stored as an object of its own.
// Manifest last.
import { execFile } from 'node:child_process';
import { readdir, readFile, rm } from 'node:fs/promises';
import * as path from 'node:path';
import { availableParallelism } from 'node:os';
import { pipeline } from 'node:stream/promises';
import { spawnTied } from '../process';
import { sha256Hex } from '../checksum';
import type { Engine } from '../engine';
import { pgBin } from '../postgres/tools';
import { makeOwnedDir } from '../postgres/scratch';
import { ErrorType, TenantsafeError } from '../errors';
import { manifestFormatVersion, sealManifest, startedMarkerFile, writeManifest } from '../format/sealed';
import { connect, microsText, toolConnection } from '../pg';
import type { ObjectStore } from '../storage/types';
import { segmentFolder } from '../format/walArchive';
import { listWalArchive, readPartial } from '../wal/archive';
import { segmentOfLsn, segmentRange, segmentStartLsn, parseLsn } from '../wal/names';
import { backupManifestKey, baseObjectKey, encryptedFullFormatVersion, fullBackupPrefix, type BaseCompression, type FullBackupWal, type FullManifest } from '../format/fullManifest';
import { keyringOf } from '../encryption';
import { FollowedFile } from '../streams';
import { allDone } from '../limit';

export interface FullBackupProgress {
  phase: 'streaming' | 'waiting-for-wal' | 'sealing';
  /** compressed bytes stored so far */
  bytes: number;
}

interface PgBackupManifest {
  'PostgreSQL-Backup-Manifest-Version': number;
  Files: { Path: string; Size: number }[];
  'WAL-Ranges': { Timeline: number; 'Start-LSN': string; 'End-LSN': string }[];
  'Manifest-Checksum': string;
}

/** Checks pg_basebackup's backup_manifest against itself (its trailing sha256). Throws CorruptBackup. */
export function checkBackupManifest(text: Buffer): PgBackupManifest {
  const body = text.toString('utf8');
  const cut = body.lastIndexOf('"Manifest-Checksum"');
  let manifest: PgBackupManifest;
  try {
    manifest = JSON.parse(body);
  } catch (err) {
    throw new TenantsafeError(ErrorType.CorruptBackup, `backup_manifest is not valid JSON: ${(err as Error).message}.`, 'Take the backup again.');
  }
  if (cut < 0 || sha256Hex(body.slice(0, cut)) !== manifest['Manifest-Checksum']) {
    throw new TenantsafeError(ErrorType.CorruptBackup, 'backup_manifest does not match its own checksum.', 'Take the backup again.');
  }
  return manifest;
}

export async function takeBaseBackup(
  engine: Engine,
  args: { backupId: string; onProgress?: (p: FullBackupProgress) => void; signal?: AbortSignal },
): Promise<FullManifest> {
  const { config, store } = engine;
  const prefix = fullBackupPrefix(args.backupId);
  const startedAt = new Date().toISOString();
  // side by side: a small cluster's backup is mostly such fixed steps
  const [server] = await allDone([
    serverInfo(config.database.url),
    store.deletePrefix(prefix).then(() => store.put(prefix + startedMarkerFile, Buffer.from(JSON.stringify({ backupId: args.backupId, startedAt }) + '\n'))),
  ] as const);

  const { compression } = config.fullBackup;
  const baseKey = baseObjectKey(compression);
  const keyring = keyringOf(store);
  const dataKey = await keyring?.forDatabase(server.systemIdentifier);
  // a spool a killed worker left is removed by the next backup that makes one there
  const spool = await makeOwnedDir(config.fullBackup.baseSpoolDir, `tenantsafe-base-${process.pid}-`);
  const out = path.join(spool, 'backup'); // pg_basebackup makes it: it takes no directory that holds anything
  const { conninfo, env } = toolConnection(config.database.url, 'tenantsafe-basebackup');
  const rate = config.fullBackup.maxRateKBps ? [`--max-rate=${config.fullBackup.maxRateKBps}k`] : [];
  // --no-sync: the spool is read back at once; the store makes the stored copy durable
  const child = spawnTied(
    pgBin('pg_basebackup'),
    ['-D', out, '-F', 't', ...walMethodArgs(server), '--no-sync', '--checkpoint=fast', `--compress=${clientCompression(compression)}`, `--label=tenantsafe ${args.backupId}`, ...rate, '-d', conninfo],
    { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, ...env, LC_ALL: 'C' } },
  );
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
  let finished = false;
  const tarFile = path.join(out, baseKey); // pg_basebackup names it as the store does: base.tar.zst, .lz4, .gz
  const release = spoolReleaser(tarFile);
  const removeSpool = async () => {
    await release.done();
    await rm(spool, { recursive: true, force: true });
  };
  const tar = new FollowedFile(tarFile, () => finished, { onRead: release });
  const exited = new Promise<number | null>((resolve) => {
    child.once('error', () => resolve(null));
    child.once('exit', (code) => {
      finished = true;
      tar.wake();
      resolve(code);
    });
  });
  const kill = () => child.kill('SIGTERM');
  args.signal?.addEventListener('abort', kill, { once: true });

  const progress: FullBackupProgress = { phase: 'streaming', bytes: 0 };
  const timer = setInterval(() => args.onProgress?.({ ...progress, bytes: tar.bytesRead }), 1000);
  let base;
  let manifestText: Buffer;
  let pgManifest: PgBackupManifest;
  try {
    try {
      const sealer = dataKey?.seal();
      [base] = await Promise.all([store.put(prefix + baseKey, sealer ?? tar, { contentType: 'application/octet-stream', signal: args.signal }), sealer && pipeline(tar, sealer)]);
      const code = await exited;
      if (code !== 0) throw baseBackupFailed(code, stderr);
    } catch (err) {
      kill();
      tar.destroy();
      // stopped before the caller goes on (and removes what was written)
      const code = await exited;
      if (args.signal?.aborted) throw args.signal.reason ?? err;
      throw code !== 0 && code !== null ? baseBackupFailed(code, stderr) : err;
    } finally {
      clearInterval(timer);
      args.signal?.removeEventListener('abort', kill);
    }
    const written = await readdir(out);
    const tablespaces = written.filter((f) => f !== baseKey && f !== backupManifestKey && !f.startsWith(streamedWalTar));
    if (tablespaces.length > 0) throw extraTablespaces(tablespaces);
    manifestText = await readFile(path.join(out, backupManifestKey)).catch(() => {
      throw new TenantsafeError(ErrorType.CorruptBackup, 'pg_basebackup ended without writing its backup_manifest.', 'Check the pg_basebackup version (15 or later) and take the backup again.');
    });
    pgManifest = checkBackupManifest(manifestText);
  } catch (err) {
    await removeSpool();
    throw err;
  }
  const rawBytes = tarBytes(pgManifest);
  const range = pgManifest['WAL-Ranges'].at(-1)!;
  const wal: FullBackupWal = {
    timeline: range.Timeline,
    segmentSize: server.segmentSize,
    startLsn: range['Start-LSN'],
    stopLsn: range['End-LSN'],
    startSegment: segmentOfLsn(range['Start-LSN'], range.Timeline, server.segmentSize),
    stopSegment: segmentOfLsn(range['End-LSN'], range.Timeline, server.segmentSize),
  };
  progress.phase = 'waiting-for-wal';
  args.onProgress?.({ ...progress, bytes: tar.bytesRead });
  // the WAL wait, mostly the archiver's turn to store the stop segment, with the rest of the tail beside it
  const [stoppedAt, manifestObject] = await allDone([
    // the server's clock, as the commit times the window and recovery targets are compared with
    serverNow(config.database.url),
    store.put(prefix + backupManifestKey, manifestText, { contentType: 'application/json' }),
    waitForArchivedWal(store, wal, config.fullBackup.archiveWaitMs, args.signal),
    removeSpool(),
  ] as const);

  progress.phase = 'sealing';
  await keyring?.confirm(dataKey);
  const objects = [
    { key: baseKey, bytes: base.bytes, sha256: base.sha256, rawBytes, ...(dataKey ? { encrypted: true } : {}) },
    { key: backupManifestKey, bytes: manifestObject.bytes, sha256: manifestObject.sha256 },
  ];
  const manifest = sealManifest({
    formatVersion: dataKey ? encryptedFullFormatVersion : manifestFormatVersion,
    kind: 'full' as const,
    method: 'basebackup' as const,
    provider: 'postgres' as const,
    backupId: args.backupId,
    database: server.database,
    serverVersion: server.version,
    systemIdentifier: server.systemIdentifier,
    startedAt,
    finishedAt: new Date().toISOString(),
    consistentAt: stoppedAt,
    wal,
    backupManifest: { files: pgManifest.Files.length, bytes: pgManifest.Files.reduce((n, f) => n + f.Size, 0), checksum: pgManifest['Manifest-Checksum'] },
    objects,
    compression,
    totals: { bytes: objects.reduce((n, o) => n + o.bytes, 0), rawBytes: rawBytes + manifestObject.bytes },
    ...(dataKey ? { encryption: dataKey.record } : {}),
  });
  await writeManifest(store, prefix, manifest);
  return manifest;
}

/** pg_basebackup's --compress for the configured compression: zstd on every core */
function clientCompression(c: BaseCompression): string {
  if (c.method === 'zstd') return `client-zstd:level=${c.level},workers=${availableParallelism()}`;
  return `client-${c.method}:${c.level}`;
}

/** The size of the uncompressed tar (a 512-byte header per file, its data padded to 512), from pg_basebackup's manifest. */
function tarBytes(m: PgBackupManifest): number {
  return m.Files.reduce((n, f) => n + 512 + Math.ceil(f.Size / 512) * 512, 1024);
}

// each release is a process (fallocate) forked from the worker's: a costly fork for a large process
const releaseEvery = 128 << 20;

/**
 * Frees the spool file's blocks behind the reader (fallocate --punch-hole), so the spool holds a
 * few hundred MiB at most however large the backup. Where the file system cannot, the file just grows.
 */
function spoolReleaser(file: string): ((position: number) => void) & { done(): Promise<void> } {
  let released = 0;
  let running: Promise<void> = Promise.resolve();
  const release = (position: number) => {
    const upTo = Math.floor(position / releaseEvery) * releaseEvery;
    if (upTo <= released) return;
    released = upTo;
    running = running.then(() => new Promise((resolve) => execFile('fallocate', ['--punch-hole', '--offset', '0', '--length', String(upTo), file], () => resolve())));
  };
  return Object.assign(release, { done: () => running });
}

function baseBackupFailed(code: number | null, stderr: string): TenantsafeError {
  return new TenantsafeError(
    ErrorType.DatabaseUnreachable,
    `pg_basebackup failed (exit code ${code}): ${stderr.trim().split('\n').slice(-3).join(' ')}`,
    'Check that the database accepts replication connections from this worker (pg_hba.conf, max_wal_senders, a role with REPLICATION).',
  );
}

/** what pg_basebackup -X stream writes beside base.tar: WAL the archive holds already, left in the spool */
const streamedWalTar = 'pg_wal.tar';

/**
 * Without WAL in the backup (`-X none`), PostgreSQL ends a base backup only once archive_command
 * has archived its last segment, polling once a second: a second or more of every backup, and
 * no end at all while another tool's archive_command fails. The WAL archive (the walArchiver's
 * stream) is what the backup waits for (waitForArchivedWal); with archiving on, pg_basebackup
 * streams the WAL beside (a second WAL sender, no slot) so the server does not wait, and that
 * copy is dropped. With archiving off, or no WAL sender to spare, there is no such wait or no
 * choice: `-X none`.
 */
function walMethodArgs(server: ServerInfo): string[] {
  return server.archiveMode !== 'off' && server.freeWalSenders >= 2 ? ['-X', 'stream', '--no-slot'] : ['-X', 'none'];
}

function extraTablespaces(tars: string[]): TenantsafeError {
  return new TenantsafeError(ErrorType.BadConfig, `The cluster has tablespaces outside its data directory (pg_basebackup wrote ${tars.join(', ')} beside base.tar).`, 'tenantsafe backs up clusters without extra tablespaces only.');
}

export interface ServerInfo {
  database: string;
  version: string;
  systemIdentifier: string;
  segmentSize: number;
  /** `archive_mode`: off, on or always */
  archiveMode: string;
  /** max_wal_senders less the WAL senders running */
  freeWalSenders: number;
}

export async function serverInfo(url: string): Promise<ServerInfo> {
  const c = await connect(url, 'tenantsafe-full-backup');
  try {
    const r = await c.query<{ db: string; version: string; sysid: string; seg: string; archive_mode: string; free_wal_senders: number }>(
      `SELECT current_database() AS db, current_setting('server_version') AS version, system_identifier::text AS sysid,
              (SELECT setting FROM pg_settings WHERE name = 'wal_segment_size') AS seg, current_setting('archive_mode') AS archive_mode,
              current_setting('max_wal_senders')::int - (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'walsender')::int AS free_wal_senders
         FROM pg_control_system()`,
    );
    const x = r.rows[0];
    return { database: x.db, version: x.version, systemIdentifier: x.sysid, segmentSize: Number(x.seg), archiveMode: x.archive_mode, freeWalSenders: x.free_wal_senders };
  } finally {
    await c.end();
  }
}

/** The server's clock now, to the microsecond. */
async function serverNow(url: string): Promise<string> {
  const c = await connect(url, 'tenantsafe-full-backup');
  try {
    return (await c.query<{ at: string }>(`SELECT ${microsText('clock_timestamp()')} AS at`)).rows[0].at;
  } finally {
    await c.end();
  }
}

/**
 * Waits until the archive holds every segment from the backup's start to its stop LSN. The
 * archiver uploads a segment as soon as it completes, so the wait starts with short polls of
 * the segments' folders only (not the whole archive) and backs off.
 */
export async function waitForArchivedWal(store: ObjectStore, wal: FullBackupWal, timeoutMs: number, signal?: AbortSignal): Promise<void> {
  const needed = segmentRange(wal.startSegment, wal.stopSegment, wal.segmentSize);
  const folders = [...new Set(needed.map(segmentFolder))];
  const deadline = Date.now() + timeoutMs;
  let missing: string[] = needed;
  for (let pollMs = 10; ; pollMs = Math.min(250, pollMs * 1.3)) {
    signal?.throwIfAborted();
    const listing = await listWalArchive(store, folders);
    const complete = new Set(listing.segments.map((s) => s.name));
    missing = needed.filter((n) => !complete.has(n));
    // A backup taken from a standby ends without a segment switch: its last segment may still be partial.
    const partial = missing.length === 1 && missing[0] === wal.stopSegment ? listing.partials.find((p) => p.name === wal.stopSegment) : undefined;
    if (missing.length === 0) return;
    if (partial) {
      // gone since the listing: the segment completed, and the archive holds it
      const read = await readPartial(store, partial);
      if (read.complete || segmentStartLsn(wal.stopSegment, wal.segmentSize) + BigInt(read.raw.length) >= parseLsn(wal.stopLsn)) return;
    }
    if (Date.now() > deadline) break;
    await new Promise((resolve) => setTimeout(resolve, pollMs));
  }
  throw new TenantsafeError(
    ErrorType.WalArchiveBehind,
    `The WAL archive does not hold ${missing.join(', ')} after ${Math.round(timeoutMs / 1000)} s: without it the base backup (WAL ${wal.startLsn} to ${wal.stopLsn}) cannot be restored.`,
    'Check that the walArchiver workflow is running (`tenantsafe wal status`), or raise fullBackup.archiveWait.',
  );
}
