// The manifest of a full (whole-database) backup, docs/format.md "Full backups": written last,
// sealed with the checksum of its canonical JSON like a tenant backup's manifest.
import type { FullBackupProviderKind } from '../config';
import { ErrorType, TenantsafeError } from '../errors';
import { manifestFile, parseSealedManifest } from './sealed';
import type { ObjectStore } from '../storage/types';

export interface FullBackupObject {
  /** relative to the backup prefix */
  key: string;
  /** stored size and sha256 of the stored bytes */
  bytes: number;
  sha256: string;
  /** uncompressed size, where the object is compressed */
  rawBytes?: number;
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
  totals: { bytes: number; rawBytes: number };
  manifestChecksum: string;
}

export function fullBackupPrefix(backupId: string): string {
  return `full/${backupId}/`;
}

export function parseFullManifest(body: Buffer, key: string): FullManifest {
  const m = parseSealedManifest<FullManifest>(body, key);
  if (m.kind !== 'full') {
    throw new TenantsafeError(ErrorType.CorruptBackup, `Manifest ${key} is of kind ${JSON.stringify(m.kind)}, not a full backup.`, 'The backup cannot be trusted; use another backup.');
  }
  return m;
}

export async function readFullManifest(store: ObjectStore, prefix: string): Promise<FullManifest> {
  const key = prefix + manifestFile;
  return parseFullManifest(await store.getBytes(key), key);
}
