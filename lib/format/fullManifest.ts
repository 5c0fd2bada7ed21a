// The manifest of a full (whole-database) backup, docs/format.md "Full backups": written last,
// sealed with the checksum of its canonical JSON like a tenant backup's manifest.
import { parseMethodAndLevel, type LevelRange } from './dataCompression';
import type { FullBackupProviderKind } from '../config';
import type { EncryptionRecord } from '../encryption/keyring';
import { ErrorType, TenantsafeError } from '../errors';
import { manifestFile, manifestFormatVersion, parseSealedManifest } from './sealed';
import type { ObjectStore } from '../storage/types';

export interface FullBackupObject {
  /** relative to the backup prefix */
  key: string;
  /** stored size and sha256 of the stored bytes */
  bytes: number;
  sha256: string;
  /** uncompressed size, where the object is compressed */
  rawBytes?: number;
  /** format 2: encrypted under the manifest's data key (the base tar; pg_basebackup's backup_manifest stays plain) */
  encrypted?: boolean;
}

/** 2: the base tar is encrypted under the cluster's data key, which `encryption` names. Unencrypted backups are still written as 1. */
export const encryptedFullFormatVersion = 2;

/** How a base backup's tar is compressed: `fullBackup.compression`, recorded in the manifest. */
export interface BaseCompression {
  method: 'lz4' | 'zstd' | 'gzip';
  level: number;
}

export const compressionMethods = ['lz4', 'zstd', 'gzip'] as const;
/** the levels each method's tool takes: zstd's negative ones are its fast levels (`zstd --fast=N`) */
const compressionLevels: Record<BaseCompression['method'], LevelRange> = { lz4: { min: 1, max: 1, default: 1 }, zstd: { min: -7, max: 19, default: -1 }, gzip: { min: 1, max: 9, default: 1 } };

/** Reads `lz4`, `zstd[:level]` or `gzip[:level]`; an error names what is allowed. */
export function parseCompression(text: string): BaseCompression | { error: string } {
  const parsed = parseMethodAndLevel(text, compressionLevels);
  // zstd reads level 0 as its default level: whoever means that writes 3
  if ('level' in parsed && parsed.method === 'zstd' && parsed.level === 0) {
    const { min, max } = compressionLevels.zstd;
    return { error: `zstd's level must be from ${min} to ${max}, not 0 (zstd's own default, level 3: write zstd:3)` };
  }
  return parsed;
}

export function formatCompression(c: BaseCompression): string {
  return c.method === 'lz4' ? 'lz4' : `${c.method}:${c.level}`;
}

/** Backups made before the choice existed are gzip (one member per 4 MiB, level backup.compressionLevel). */
const legacyCompression: BaseCompression = { method: 'gzip', level: 1 };

const baseObjectKeys: Record<BaseCompression['method'], string> = { lz4: 'base.tar.lz4', zstd: 'base.tar.zst', gzip: 'base.tar.gz' };

/** pg_basebackup's own manifest, stored beside the tar (inside it too in backups made before pg_basebackup compressed them) */
export const backupManifestKey = 'backup_manifest';

/** The key (relative to the backup's prefix) of the tar a base backup with this compression writes. */
export function baseObjectKey(c: BaseCompression): string {
  return baseObjectKeys[c.method];
}

/** A physical backup's tar object and how it is compressed. */
export function baseObjectOf(m: Pick<FullManifest, 'objects' | 'compression'>): { object: FullBackupObject; compression: BaseCompression } {
  const compression = m.compression ?? legacyCompression;
  if (!Object.hasOwn(baseObjectKeys, compression.method)) {
    throw new TenantsafeError(ErrorType.UnsupportedFormat, `The base backup is compressed with ${JSON.stringify(compression.method)}; this tenantsafe reads ${compressionMethods.join(', ')}.`, 'Use the tenantsafe release that wrote this backup, or a newer one.');
  }
  const object = m.objects.find((o) => o.key === baseObjectKey(compression));
  if (!object) throw new TenantsafeError(ErrorType.CorruptBackup, `The manifest lists no ${baseObjectKey(compression)}.`, 'The backup cannot be restored; use another backup.');
  return { object, compression };
}

export interface FullBackupWal {
  timeline: number;
  segmentSize: number;
  startLsn: string;
  stopLsn: string;
  startSegment: string;
  stopSegment: string;
}

export interface FullManifest {
  formatVersion: number;
  kind: 'full';
  /** basebackup: pg_basebackup -Ft of the cluster (physical); pg_dump: pg_dump -Fd of the database (logical) */
  method: 'basebackup' | 'pg_dump';
  provider: FullBackupProviderKind;
  backupId: string;
  database: string;
  serverVersion: string;
  systemIdentifier: string;
  startedAt: string;
  finishedAt: string;
  /** the earliest moment a restore of this backup reaches: after its stop record (physical), its snapshot (logical) */
  consistentAt: string;
  /** physical backups: the WAL a restore needs at least (start to stop) */
  wal: FullBackupWal | null;
  /** physical backups: pg_basebackup's own backup_manifest (its file count, data bytes and checksum) */
  backupManifest: { files: number; bytes: number; checksum: string } | null;
  objects: FullBackupObject[];
  /** physical backups: how the tar is compressed; absent in backups made before it was a choice (gzip) */
  compression?: BaseCompression;
  totals: { bytes: number; rawBytes: number };
  /** format 2: the data key its encrypted objects are under (docs/format.md, "Encryption") */
  encryption?: EncryptionRecord;
  manifestChecksum: string;
}

export function fullBackupPrefix(backupId: string): string {
  return `full/${backupId}/`;
}

export function parseFullManifest(body: Buffer, key: string): FullManifest {
  const m = parseSealedManifest<FullManifest>(body, key, [manifestFormatVersion, encryptedFullFormatVersion]);
  if ((m.formatVersion === encryptedFullFormatVersion) !== (m.encryption !== undefined)) {
    throw new TenantsafeError(ErrorType.CorruptBackup, `Manifest ${key} ${m.encryption ? 'records encryption in a format that has none' : 'is of format 2 and records no encryption'}.`, 'The backup cannot be trusted; use another backup.');
  }
  if (m.kind !== 'full') {
    throw new TenantsafeError(ErrorType.CorruptBackup, `Manifest ${key} is of kind ${JSON.stringify(m.kind)}, not a full backup.`, 'The backup cannot be trusted; use another backup.');
  }
  return m;
}

export async function readFullManifest(store: ObjectStore, prefix: string): Promise<FullManifest> {
  const key = prefix + manifestFile;
  return parseFullManifest(await store.getBytes(key), key);
}
