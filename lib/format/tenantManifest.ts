// The tenant backup manifest (docs/format.md, "Tenant backups"): sealed like every manifest of
// ours (sealed.ts), under tenants/<tenant>/<backupId>/.
import type { Readable } from 'node:stream';
import { sha256Hex } from '../checksum';
import { ErrorType, TenantsafeError } from '../errors';
import type { ByteRange, ObjectStore } from '../storage/types';
import type { EncryptionRecord } from '../encryption/keyring';
import { manifestFile, manifestFormatVersion, parseSealedManifest } from './sealed';
import { dataCompressionMethods, isDataCompressionMethod, type DataCompressionMethod } from './dataCompression';

/**
 * 2: a table's data may be a part of a shared pack (ManifestObject.packOffset). A backup of its
 * own writes 2.
 */
export const tenantManifestFormatVersion = 2;
/**
 * 3: a tenant of a batch; its manifest holds only its own parts and names the batch's shared
 * description (tables, columns, snapshot, tenancy) instead of repeating it (docs/format.md,
 * "Batches"). Readers read 1, 2 and 3.
 */
export const batchedManifestFormatVersion = 3;
/**
 * 4: the tenant's objects (its own, or its parts of a batch's packs) are encrypted under its data
 * key, which `encryption` names (docs/format.md, "Encryption"); otherwise as 2 (a backup of its
 * own) or 3 (a tenant of a batch). Unencrypted backups are still written as 2 and 3.
 */
export const encryptedManifestFormatVersion = 4;
/**
 * 5: the data is compressed as `data.compression` says (zstd; 1 to 4 are gzip); a backup of its
 * own or a tenant of a batch (told by `parts`). 6: the same, encrypted as 4 is. Releases that
 * read only 1 to 4 refuse them by their version instead of failing on data they cannot read.
 * Backups whose data is gzip are still written as 2, 3 and 4, and a batch's shared description
 * as 3 (5 where its data is zstd).
 */
export const compressedDataFormatVersion = 5;
export const encryptedCompressedDataFormatVersion = 6;
const readableVersions = [manifestFormatVersion, tenantManifestFormatVersion, batchedManifestFormatVersion, encryptedManifestFormatVersion, compressedDataFormatVersion, encryptedCompressedDataFormatVersion];
/** the formats whose objects are encrypted, and only those: a manifest stripped of its `encryption` is refused */
const encryptedVersions = [encryptedManifestFormatVersion, encryptedCompressedDataFormatVersion];

/** The format version a tenant manifest is written with. */
export function tenantFormatVersion(args: { batched: boolean; encrypted: boolean; compression: DataCompressionMethod }): number {
  if (args.compression !== 'gzip') return args.encrypted ? encryptedCompressedDataFormatVersion : compressedDataFormatVersion;
  if (args.encrypted) return encryptedManifestFormatVersion;
  return args.batched ? batchedManifestFormatVersion : tenantManifestFormatVersion;
}

/** The format version a batch's shared description is written with. */
export function batchSharedFormatVersion(compression: DataCompressionMethod): number {
  return compression === 'gzip' ? batchedManifestFormatVersion : compressedDataFormatVersion;
}

/** A table's data: its COPY text compressed (`data.compression`), `bytes` long with this sha256. */
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

/** Reads a table's data as stored (compressed): the whole object, or only the tenant's range of a pack. */
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
  /** format 3: the batch's shared description this manifest was completed from (the rest as in format 2) */
  batch?: BatchReference;
  /** format 4: every object (or part) is encrypted under this tenant data key */
  encryption?: EncryptionRecord;
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
  data: { format: 'text'; compression: DataCompressionMethod; sessionSettings: Record<string, string>; rowChecksum: string };
  /** parents before children */
  tables: ManifestTable[];
  totals: { rows: number; bytes: number; rawBytes: number };
  tenantChecksum: string;
  /** sha256 of the canonical JSON of every other field */
  manifestChecksum: string;
}

/** Names a batch's shared description: its key from the store's root and the sha256 of its bytes. */
export interface BatchReference {
  key: string;
  sha256: string;
}

/** What every tenant of one batch attempt shares, written once before their manifests. */
export interface TenantBatchShared {
  formatVersion: number;
  kind: 'tenantBatch';
  batchId: string;
  attempt: number;
  database: string;
  serverVersion: string;
  snapshot: TenantManifest['snapshot'];
  startedAt: string;
  tenancy: TenantManifest['tenancy'];
  data: TenantManifest['data'];
  /** in plan order, each with the key of the pack holding its parts */
  tables: (Omit<ManifestTable, 'object' | 'rows' | 'rawBytes' | 'rowChecksum'> & { pack: string })[];
  manifestChecksum: string;
}

/** A tenant's part of one table's pack. */
export interface BatchedPart {
  offset: number;
  bytes: number;
  sha256: string;
  rows: number;
  rawBytes: number;
  rowChecksum: string;
}

/** A batched tenant's manifest as stored (format 3): its parts, one per table of the batch, in the batch's order. */
export interface StoredBatchedManifest {
  formatVersion: number;
  kind: 'tenant';
  backupId: string;
  tenantId: string;
  batch: BatchReference;
  /** format 4: its parts are encrypted under this tenant data key */
  encryption?: EncryptionRecord;
  finishedAt: string;
  parts: BatchedPart[];
  totals: TenantManifest['totals'];
  tenantChecksum: string;
  manifestChecksum: string;
}

/** A batched tenant's manifest with what its batch shares filled in: the same shape as format 2's. */
export function completeBatchedManifest(m: StoredBatchedManifest, shared: TenantBatchShared, key: string): TenantManifest {
  if (m.parts.length !== shared.tables.length) {
    throw new TenantsafeError(ErrorType.CorruptBackup, `Manifest ${key} has ${m.parts.length} parts; its batch ${m.batch.key} has ${shared.tables.length} tables.`, 'The backup cannot be trusted; use another backup.');
  }
  return {
    formatVersion: m.formatVersion,
    batch: m.batch,
    ...(m.encryption ? { encryption: m.encryption } : {}),
    kind: 'tenant',
    backupId: m.backupId,
    tenantId: m.tenantId,
    database: shared.database,
    serverVersion: shared.serverVersion,
    snapshot: shared.snapshot,
    startedAt: shared.startedAt,
    finishedAt: m.finishedAt,
    tenancy: shared.tenancy,
    data: shared.data,
    tables: shared.tables.map((t, i) => {
      const p = m.parts[i];
      return {
        table: t.table,
        schema: t.schema,
        name: t.name,
        columns: t.columns,
        copyColumns: t.copyColumns,
        primaryKey: t.primaryKey,
        ownership: t.ownership,
        object: { key: t.pack, bytes: p.bytes, sha256: p.sha256, packOffset: p.offset },
        rows: p.rows,
        rawBytes: p.rawBytes,
        rowChecksum: p.rowChecksum,
      };
    }),
    totals: m.totals,
    tenantChecksum: m.tenantChecksum,
    manifestChecksum: m.manifestChecksum,
  };
}

/**
 * What the catalog keeps of a manifest (its `manifest` column): all of it, but of a batched one
 * only what is the tenant's own plus the snapshot it queries (the rest is its batch's).
 */
export function catalogManifestOf(m: TenantManifest): object {
  if (!m.batch) return m;
  const { formatVersion, kind, backupId, tenantId, batch, encryption, snapshot, finishedAt, totals, tenantChecksum, manifestChecksum } = m;
  return { formatVersion, kind, backupId, tenantId, batch, ...(encryption ? { encryption } : {}), snapshot, finishedAt, totals, tenantChecksum, manifestChecksum };
}

/** Shared descriptions already read and checked, by sha256 (a rebuild reads a batch's many manifests). */
export type BatchSharedCache = Map<string, TenantBatchShared>;

async function readBatchShared(store: ObjectStore, ref: BatchReference, manifestKey: string, cache?: BatchSharedCache): Promise<TenantBatchShared> {
  const known = cache?.get(ref.sha256);
  if (known) return known;
  let body: Buffer;
  try {
    body = await store.getBytes(ref.key);
  } catch (err) {
    if (!(err instanceof TenantsafeError) || err.type !== ErrorType.ObjectMissing) throw err;
    throw new TenantsafeError(ErrorType.CorruptBackup, `Manifest ${manifestKey} names its batch's description ${ref.key}, which is missing.`, 'The backup cannot be restored; use another backup. `tenantsafe verify` lists every backup of that batch.');
  }
  if (sha256Hex(body) !== ref.sha256) {
    throw new TenantsafeError(ErrorType.CorruptBackup, `The batch description ${ref.key} does not match the sha256 its manifest ${manifestKey} records: it was altered or damaged.`, 'The backup cannot be trusted; use another backup.');
  }
  const shared = parseSealedManifest<TenantBatchShared>(body, ref.key, [batchedManifestFormatVersion, compressedDataFormatVersion]);
  checkSharedPlace(shared, ref.key);
  cache?.set(ref.sha256, shared);
  return shared;
}

/** The longest tenant segment kept as it is: a file system holds names of 255 bytes, with room to spare. */
const longestTenantSegment = 200;

/**
 * A tenant id as one path segment of storage keys: URI-encoded, so '/', '%', newlines and any
 * other character stay inside it; an id of dots alone ('.', '..') with its dots encoded too (a
 * '..' segment would climb out of tenants/); an encoding over 200 bytes cut to its first 150
 * and ended with '%~' and 32 hex digits of the id's sha256 ('%~' is no URI-encoding's, so no
 * short id can take a long one's place).
 */
export function tenantSegment(tenantId: string): string {
  const encoded = /^\.+$/.test(tenantId) ? tenantId.replace(/\./g, '%2E') : encodeURIComponent(tenantId);
  if (encoded.length <= longestTenantSegment) return encoded;
  const cut = encoded.slice(0, 150).replace(/%[0-9A-F]?$/, '');
  return `${cut}%~${sha256Hex(tenantId).slice(0, 32)}`;
}

/** tenants/<tenant>/<backupId>/: the tenant id as one path segment (tenantSegment). */
export function tenantBackupPrefix(tenantId: string, backupId: string): string {
  return `tenants/${tenantSegment(tenantId)}/${backupId}/`;
}

/** keys/tenants/<tenant segment>.json: where a tenant's wrapped data key is (lib/encryption). */
export function tenantKeyPath(tenantId: string): string {
  return `keys/tenants/${tenantSegment(tenantId)}.json`;
}

/** Where batches keep their packs and shared descriptions (lib/tenantBackup/batch.ts): parts of many tenants. */
export const packsArea = 'packs/';

/**
 * A manifest may only describe the backup whose place it is in, and only name data of that
 * backup: its own objects under its prefix, or parts of a batch's packs. A manifest copied to
 * another tenant's place, or naming another tenant's objects, would otherwise restore one
 * tenant's rows as another's (its own checksum proves it undamaged, not that it is in place).
 */
function checkManifestPlace(m: TenantManifest | StoredBatchedManifest, key: string): void {
  const corrupt = (problem: string) => new TenantsafeError(ErrorType.CorruptBackup, `Manifest ${key} ${problem}.`, 'The backup cannot be trusted; use another backup (`tenantsafe verify` checks it).');
  const prefix = typeof m.tenantId === 'string' && typeof m.backupId === 'string' ? tenantBackupPrefix(m.tenantId, m.backupId) : undefined;
  // before tenantSegment cut long ids, every id was URI-encoded whole (possible on GCS): still its place
  const wholeId = prefix === undefined ? undefined : `tenants/${encodeURIComponent(m.tenantId)}/${m.backupId}/`;
  if (prefix === undefined || (key !== prefix + manifestFile && key !== wholeId + manifestFile)) {
    throw corrupt(`describes backup ${JSON.stringify(m.backupId)} of tenant ${JSON.stringify(m.tenantId)}, whose place is ${prefix ?? '(none)'}, not where it lies`);
  }
  // a manifest naming another tenant's data key would have one tenant's erasure spare another's backup
  if (encryptedVersions.includes(m.formatVersion) !== (m.encryption !== undefined)) {
    throw corrupt(m.encryption ? 'records encryption in a format that has none' : `is of format ${m.formatVersion} and records no encryption`);
  }
  if (m.encryption && m.encryption.key !== tenantKeyPath(m.tenantId)) throw corrupt(`names ${JSON.stringify(m.encryption.key)} as its data key, not its tenant's ${tenantKeyPath(m.tenantId)}`);
  const inside = (k: unknown) => typeof k === 'string' && k !== '' && !k.startsWith('/') && k.split('/').every((s) => s !== '' && s !== '.' && s !== '..');
  const packKey = (k: unknown) => inside(k) && (k as string).startsWith(packsArea);
  if ('parts' in m) {
    if (!packKey(m.batch?.key)) throw corrupt(`names its batch's description ${JSON.stringify(m.batch?.key)}, outside ${packsArea}`);
    return;
  }
  for (const t of m.tables ?? []) {
    const ok = t.object?.packOffset === undefined ? inside(t.object?.key) && !(t.object.key as string).startsWith(packsArea) : packKey(t.object.key);
    if (!ok) throw corrupt(`names ${JSON.stringify(t.object?.key)} as the data of ${t.table}: neither an object of its own backup nor a part of a pack`);
  }
}

/** The tables of a batch's shared description name packs of the batch area only. */
function checkSharedPlace(shared: TenantBatchShared, key: string): void {
  const bad = shared.tables?.find((t) => typeof t.pack !== 'string' || !t.pack.startsWith(packsArea) || t.pack.split('/').some((s) => s === '' || s === '.' || s === '..'));
  if (bad) throw new TenantsafeError(ErrorType.CorruptBackup, `The batch description ${key} names ${JSON.stringify(bad.pack)} as the pack of ${bad.table}, outside ${packsArea}.`, 'The backup cannot be trusted; use another backup.');
}

/**
 * Parses and checks a tenant backup manifest, a batched one completed from its batch's shared
 * description (read from `store`, its sha256 checked, or taken from `cache`); throws
 * CorruptBackup or UnsupportedFormat naming the key. `key` is where the manifest was read: it must
 * be the place of the backup it describes (tenantBackupPrefix), and name no other backup's data.
 */
export async function parseManifest(body: Buffer, key: string, store: ObjectStore, cache?: BatchSharedCache): Promise<TenantManifest> {
  const m = parseSealedManifest<TenantManifest | StoredBatchedManifest>(body, key, readableVersions);
  checkManifestPlace(m, key);
  const complete = 'parts' in m ? completeBatchedManifest(m, await readBatchShared(store, m.batch, key, cache), key) : m;
  if (!isDataCompressionMethod(complete.data?.compression)) {
    throw new TenantsafeError(
      ErrorType.UnsupportedFormat,
      `Manifest ${key} says its data is compressed with ${JSON.stringify(complete.data?.compression)}; this tenantsafe reads ${dataCompressionMethods.join(' and ')}.`,
      'Use the tenantsafe release that wrote this backup, or a newer one.',
    );
  }
  return complete;
}

export async function readManifest(store: ObjectStore, prefix: string): Promise<TenantManifest> {
  const key = prefix + manifestFile;
  return parseManifest(await store.getBytes(key), key, store);
}
