// The tenant backup manifest (docs/format.md): written last, atomically; its presence is what
// makes a backup exist. Carries its own checksum over its canonical JSON; readers reject
// unknown format versions and any manifest whose checksum does not match.
import { canonicalJson, sha256Hex } from './checksum';
import { ErrorType, TenantsafeError } from './errors';
import type { ObjectStore } from './storage/types';

export const manifestFormatVersion = 1;
export const manifestFile = 'manifest.json';
/** written first: marks a backup in progress (or, beside a manifest, where a complete one began) */
export const startedMarkerFile = 'started.json';

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
  object: { key: string; bytes: number; sha256: string };
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
  /** origin: absent in backups written before it was recorded */
  snapshot: { at: string; lsn: string; origin?: SnapshotOrigin };
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

/** Adds the checksum over the canonical JSON of every field (tenant and full backup manifests alike). */
export function sealManifest<const T extends { formatVersion: number }>(m: T): T & { manifestChecksum: string } {
  return { ...m, manifestChecksum: sha256Hex(canonicalJson(m)) };
}

/** Writes the manifest last and atomically; returns its sha256. */
export async function writeManifest(store: ObjectStore, prefix: string, manifest: { manifestChecksum: string }): Promise<string> {
  const body = Buffer.from(JSON.stringify(manifest, null, 2) + '\n');
  const put = await store.put(prefix + manifestFile, body, { contentType: 'application/json' });
  return put.sha256;
}

/** Parses and checks a tenant backup manifest; throws CorruptBackup or UnsupportedFormat naming the key. */
export function parseManifest(body: Buffer, key: string): TenantManifest {
  return parseSealedManifest<TenantManifest>(body, key);
}

/** Parses any manifest of ours: rejects bad JSON, an unknown format version and a checksum that does not match. */
export function parseSealedManifest<T extends { formatVersion: number; manifestChecksum: string }>(body: Buffer, key: string): T {
  let m: T;
  try {
    m = JSON.parse(body.toString('utf8'));
  } catch (err) {
    throw new TenantsafeError(ErrorType.CorruptBackup, `Manifest ${key} is not valid JSON: ${(err as Error).message}.`, 'The backup cannot be trusted; use another backup.');
  }
  if (m?.formatVersion !== manifestFormatVersion) {
    throw new TenantsafeError(
      ErrorType.UnsupportedFormat,
      `Manifest ${key} has format version ${JSON.stringify(m?.formatVersion)}; this tenantsafe reads version ${manifestFormatVersion}.`,
      'Use the tenantsafe release that wrote this backup, or a newer one.',
    );
  }
  const { manifestChecksum, ...rest } = m;
  if (manifestChecksum !== sha256Hex(canonicalJson(rest))) {
    throw new TenantsafeError(ErrorType.CorruptBackup, `Manifest ${key} does not match its own checksum: it was altered or damaged.`, 'The backup cannot be trusted; use another backup.');
  }
  return m;
}

export async function readManifest(store: ObjectStore, prefix: string): Promise<TenantManifest> {
  const key = prefix + manifestFile;
  return parseManifest(await store.getBytes(key), key);
}
