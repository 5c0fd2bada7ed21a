// The tenant backup manifest (docs/format.md, "Tenant backups"): sealed like every manifest of
// ours (sealed.ts), under tenants/<tenant>/<backupId>/.
import type { Readable } from 'node:stream';
import type { ByteRange, ObjectStore } from '../storage/types';
import { manifestFile, manifestFormatVersion, parseSealedManifest } from './sealed';

/**
 * 2: a table's data may be a part of a shared pack (ManifestObject.packOffset). Readers read 1
 * (every table its own object) and 2.
 */
export const tenantManifestFormatVersion = 2;
const readableVersions = [manifestFormatVersion, tenantManifestFormatVersion];

/** A table's data: gzip of its COPY text, `bytes` long with this sha256. */
export interface ManifestObject {
  /** the object's key under the backup's prefix; for a part of a pack, the pack's key from the store's root */
  key: string;
  bytes: number;
  sha256: string;
  /** format 2, a part of a pack: where it starts in the pack (small tenants of a batch share packs; docs/format.md) */
  packOffset?: number;
}

/** Where a table's data is in the store: its own object, or a byte range of a pack. */
export function objectLocation(prefix: string, object: ManifestObject): { key: string; range?: ByteRange } {
  return object.packOffset === undefined ? { key: prefix + object.key } : { key: object.key, range: { offset: object.packOffset, length: object.bytes } };
}

/** Reads a table's data as stored (gzip): the whole object, or only the tenant's range of a pack. */
export function openObject(store: ObjectStore, prefix: string, object: ManifestObject): Promise<Readable> {
  const { key, range } = objectLocation(prefix, object);
  return range ? store.getRange(key, range) : store.get(key);
}

/** What a text names a table's data by: its key, and for a part of a pack the range too. */
export function objectName(prefix: string, object: ManifestObject): string {
  const { key, range } = objectLocation(prefix, object);
  return range ? `${key}@${range.offset}+${range.length}` : key;
}

/**
 * What tells, later, whether a row version was there when the snapshot was read: the snapshot's
 * xmin (every older transaction had ended), and the cluster history and database it counts in.
 */
export interface SnapshotOrigin {
  /** pg_snapshot_xmin of the snapshot, an xid8 as text */
  xmin: string;
  systemIdentifier: string;
  timeline: number;
  databaseOid: number;
}

/** How a point-in-time tenant state was rebuilt, for the preview and the record. */
export interface PointInTimeSource {
  source: 'changeLog' | 'pitrClone';
  /** what was asked: a time (ISO-8601, microseconds) or an LSN */
  target: { at?: string; lsn?: string };
  /** the last transaction included: where its commit record ends, and its commit time (null: none after the base) */
  lastCommit: { lsn: string; time: string } | null;
  /** the tenant backup the change log was replayed onto */
  baseBackupId?: string;
  /** why this source */
  reason: string;
}

export interface ManifestColumn {
  name: string;
  type: string;
  notNull: boolean;
  /** generated columns are not in the data; Postgres recomputes them */
  generated?: boolean;
  identity?: 'a' | 'd';
  sequence?: string;
}

export interface ManifestTable {
  table: string;
  schema: string;
  name: string;
  columns: ManifestColumn[];
  /** the columns in the data object, in order */
  copyColumns: string[];
  primaryKey: string[] | null;
  /** how rows were tied to the tenant, in words */
  ownership: string;
  object: ManifestObject;
  rows: number;
  /** uncompressed COPY text bytes */
  rawBytes: number;
  rowChecksum: string;
}

export interface TenantManifest {
  formatVersion: number;
  kind: 'tenant';
  backupId: string;
  tenantId: string;
  database: string;
  serverVersion: string;
  /**
   * origin: absent in backups written before it was recorded, and in one rebuilt as of a point
   * in time. changeLogLsn: the exact boundary with the change log (the snapshot holds every
   * transaction whose commit starts before it, none at or after); absent where the backup
   * could not wait for it, or no change log ran.
   */
  snapshot: { at: string; lsn: string; origin?: SnapshotOrigin; changeLogLsn?: string };
  /** a tenant rebuilt as of a point in time (restore --at/--lsn): where from, and up to which commit */
  pointInTime?: PointInTimeSource;
  startedAt: string;
  finishedAt: string;
  tenancy: { tenantTable: string; tenantColumn: string; fingerprint: string; warnings: string[] };
  data: { format: 'text'; compression: 'gzip'; sessionSettings: Record<string, string>; rowChecksum: string };
  /** parents before children */
  tables: ManifestTable[];
  totals: { rows: number; bytes: number; rawBytes: number };
  tenantChecksum: string;
  /** sha256 of the canonical JSON of every other field */
  manifestChecksum: string;
}

/** tenants/<tenant>/<backupId>/: the tenant id is URI-encoded so any id is one path segment. */
export function tenantBackupPrefix(tenantId: string, backupId: string): string {
  return `tenants/${encodeURIComponent(tenantId)}/${backupId}/`;
}

/** Parses and checks a tenant backup manifest; throws CorruptBackup or UnsupportedFormat naming the key. */
export function parseManifest(body: Buffer, key: string): TenantManifest {
  return parseSealedManifest<TenantManifest>(body, key, readableVersions);
}

export async function readManifest(store: ObjectStore, prefix: string): Promise<TenantManifest> {
  const key = prefix + manifestFile;
  return parseManifest(await store.getBytes(key), key);
}
