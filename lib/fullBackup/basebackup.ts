// A physical base backup of the whole cluster, streamed: pg_basebackup -Ft writes one tar to
// stdout, which flows through a tar reader (member list, the backup_manifest it appends) and
// the configured compressor (lz4, zstd or gzip: compression.ts) straight into the store. No
// local copy. WAL is not in the tar (-X none): the WAL archive holds it, and the backup waits
// until the archive has every segment from its start to its stop LSN (like pgBackRest's
// archive check). Manifest last.
import { spawnTied } from '../process';
import { pipeline } from 'node:stream/promises';
import { sha256Hex } from '../checksum';
import type { Engine } from '../engine';
import { pgBin } from '../postgres/tools';
import { ErrorType, TenantsafeError } from '../errors';
import { manifestFormatVersion, sealManifest, startedMarkerFile, writeManifest } from '../format/sealed';
import { connect, microsText, toolConnection } from '../pg';
import type { ObjectStore } from '../storage/types';
import { segmentFolder } from '../format/walArchive';
import { listWalArchive, readWalObject } from '../wal/archive';
import { segmentOfLsn, segmentRange, segmentStartLsn, parseLsn } from '../wal/names';
import { baseObjectKey, encryptedFullFormatVersion, fullBackupPrefix, type FullBackupWal, type FullManifest } from '../format/fullManifest';
import { keyringOf } from '../encryption';
import { Rechunk } from '../streams';
import { compressor } from './compression';
import { TarIndex } from './tarIndex';

export const backupManifestKey = 'backup_manifest';

export interface FullBackupProgress {
  phase: 'streaming' | 'waiting-for-wal' | 'sealing';
  /** tar bytes read so far */
  bytes: number;
  /** the file being read */
  member: string | null;
}

interface PgBackupManifest {
  'PostgreSQL-Backup-Manifest-Version': number;
  Files: { Path: string; Size: number }[];
  'WAL-Ranges': { Timeline: number; 'Start-LSN': string; 'End-LSN': string }[];
  'Manifest-Checksum': string;
}

/**
 * Checks pg_basebackup's backup_manifest against itself (its trailing sha256) and against the
 * tar that carried it (every file there, of its size). Throws CorruptBackup naming the problem.
 */
export function checkBackupManifest(text: Buffer, members: { name: string; size: number; type: string }[]): PgBackupManifest {
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
  const inTar = new Map(members.filter((m) => m.type === '0').map((m) => [m.name, m.size]));
  const problems = manifest.Files.filter((f) => inTar.get(f.Path) !== f.Size).map((f) => `${f.Path}: ${inTar.has(f.Path) ? `size ${inTar.get(f.Path)} in the tar, ${f.Size} in the manifest` : 'missing from the tar'}`);
  if (problems.length > 0) {
    throw new TenantsafeError(ErrorType.CorruptBackup, `The base backup tar does not match its backup_manifest: ${problems.slice(0, 5).join('; ')}.`, 'Take the backup again.');
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
  const server = await serverInfo(config.database.url);
  await store.deletePrefix(prefix);
  await store.put(prefix + startedMarkerFile, Buffer.from(JSON.stringify({ backupId: args.backupId, startedAt }) + '\n'));

  const { conninfo, env } = toolConnection(config.database.url, 'tenantsafe-basebackup');
  const rate = config.fullBackup.maxRateKBps ? [`--max-rate=${config.fullBackup.maxRateKBps}k`] : [];
  const child = spawnTied(pgBin('pg_basebackup'), ['-D', '-', '-F', 't', '-X', 'none', '--checkpoint=fast', `--label=tenantsafe ${args.backupId}`, ...rate, '-d', conninfo], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...env },
  });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
  const exited = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
  const kill = () => child.kill('SIGTERM');
  args.signal?.addEventListener('abort', kill, { once: true });

  const tar = new TarIndex(new Set([backupManifestKey]));
  const progress: FullBackupProgress = { phase: 'streaming', bytes: 0, member: null };
  const timer = setInterval(() => args.onProgress?.({ ...progress, bytes: tar.bytes, member: tar.members.at(-1)?.name ?? null }), 1000);
  const { compression } = config.fullBackup;
  const packer = compressor(compression);
  const baseKey = baseObjectKey(compression);
  const keyring = keyringOf(store);
  const dataKey = await keyring?.forDatabase(server.systemIdentifier);
  let base;
  try {
    const compressed = packer.output.pipe(new Rechunk(1 << 20));
    const stored = dataKey ? compressed.pipe(dataKey.seal()) : compressed;
    [base] = await Promise.all([store.put(prefix + baseKey, stored, { contentType: 'application/octet-stream', signal: args.signal }), pipeline(child.stdout, tar, packer.input), packer.done]);
    const code = await exited;
    if (code !== 0) throw baseBackupFailed(code, stderr);
  } catch (err) {
    kill();
    packer.kill();
    // both stopped before the caller goes on (and removes what they wrote)
    const [code] = await Promise.all([exited, packer.done.catch(() => undefined)]);
    if (args.signal?.aborted) throw args.signal.reason ?? err;
    throw code !== 0 && code !== null ? baseBackupFailed(code, stderr) : err;
  } finally {
    clearInterval(timer);
    args.signal?.removeEventListener('abort', kill);
  }
  // the server's clock, as the commit times the window and recovery targets are compared with
  const stoppedAt = await serverNow(config.database.url);
  const manifestText = tar.captured.get(backupManifestKey);
  if (!tar.complete || !manifestText) {
    throw new TenantsafeError(ErrorType.CorruptBackup, 'pg_basebackup ended without a complete tar holding a backup_manifest.', 'Check the pg_basebackup version (15 or later) and take the backup again.');
  }
  const pgManifest = checkBackupManifest(manifestText, tar.members);
  const manifestObject = await store.put(prefix + backupManifestKey, manifestText, { contentType: 'application/json' });

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
  args.onProgress?.({ ...progress, bytes: tar.bytes });
  await waitForArchivedWal(store, wal, config.fullBackup.archiveWaitMs, args.signal);

  progress.phase = 'sealing';
  await keyring?.confirm(dataKey);
  const objects = [
    { key: baseKey, bytes: base.bytes, sha256: base.sha256, rawBytes: tar.bytes, ...(dataKey ? { encrypted: true } : {}) },
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
    totals: { bytes: objects.reduce((n, o) => n + o.bytes, 0), rawBytes: tar.bytes + manifestObject.bytes },
    ...(dataKey ? { encryption: dataKey.record } : {}),
  });
  await writeManifest(store, prefix, manifest);
  return manifest;
}

function baseBackupFailed(code: number | null, stderr: string): TenantsafeError {
  const tablespaces = /can only write single tablespace to stdout/.test(stderr);
  return new TenantsafeError(
    tablespaces ? ErrorType.BadConfig : ErrorType.DatabaseUnreachable,
    `pg_basebackup failed (exit code ${code}): ${stderr.trim().split('\n').slice(-3).join(' ')}`,
    tablespaces
      ? 'tenantsafe streams base backups of clusters without extra tablespaces only.'
      : 'Check that the database accepts replication connections from this worker (pg_hba.conf, max_wal_senders, a role with REPLICATION).',
  );
}

export interface ServerInfo {
  database: string;
  version: string;
  systemIdentifier: string;
  segmentSize: number;
}

export async function serverInfo(url: string): Promise<ServerInfo> {
  const c = await connect(url, 'tenantsafe-full-backup');
  try {
    const r = await c.query<{ db: string; version: string; sysid: string; seg: string }>(
      `SELECT current_database() AS db, current_setting('server_version') AS version, system_identifier::text AS sysid,
              (SELECT setting FROM pg_settings WHERE name = 'wal_segment_size') AS seg
         FROM pg_control_system()`,
    );
    return { database: r.rows[0].db, version: r.rows[0].version, systemIdentifier: r.rows[0].sysid, segmentSize: Number(r.rows[0].seg) };
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
  for (let pollMs = 20; ; pollMs = Math.min(250, pollMs * 1.5)) {
    signal?.throwIfAborted();
    const listing = await listWalArchive(store, folders);
    const complete = new Set(listing.segments.map((s) => s.name));
    missing = needed.filter((n) => !complete.has(n));
    // A backup taken from a standby ends without a segment switch: its last segment may still be partial.
    const partial = missing.length === 1 && missing[0] === wal.stopSegment ? listing.partials.find((p) => p.name === wal.stopSegment) : undefined;
    if (missing.length === 0) return;
    if (partial) {
      const written = (await readWalObject(store, partial.key)).length;
      if (segmentStartLsn(wal.stopSegment, wal.segmentSize) + BigInt(written) >= parseLsn(wal.stopLsn)) return;
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
