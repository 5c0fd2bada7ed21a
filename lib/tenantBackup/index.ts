// A tenant backup, step by step, without Temporal: check, export + manifest, record, discard.
import { backupRecordOf, type BackupRecord } from '../catalog';
import { canonicalJson, tenantChecksum } from '../checksum';
import { databaseName } from '../config';
import type { Engine } from '../engine';
import { allDone } from '../limit';
import { keyringOf, type DataKey } from '../encryption';
import { parseBackupLabel } from '../labels';
import type { DataCompressionMethod } from '../format/dataCompression';
import { readManifest, tenantBackupPrefix, tenantFormatVersion, type ManifestTable, type PointInTimeSource, type TenantManifest } from '../format/tenantManifest';
import { manifestFile, startedMarkerFile, sealManifest, writeManifest } from '../format/sealed';
import type { ClientBase } from 'pg';
import { reproducibleSessionSettings, withClient, withConnection } from '../pg';
import type { ObjectStore } from '../storage/types';
import { assertTenantExists, describeOwnership, discoverTenancy, type OwnedTable, type TenancyPlan } from '../tenancy';
import { copyTableObject, exportTenantSnapshot, type ExportProgress, type SnapshotExport } from './export';

export interface TenantBackupCheck {
  database: string;
  storageUri: string;
  tables: number;
}

/** Another backup of the tenant, and the tables whose rows a new backup reads exactly as that one holds them. */
export interface AsBackedUp {
  manifest: TenantManifest;
  /** its prefix in the store */
  prefix: string;
  tables: readonly string[];
}

/**
 * The tables of `asBackedUp` whose objects are what an export would store now: same columns in
 * the same order, same session settings, compression and data key (or none); by table key.
 */
function copyable(asBackedUp: AsBackedUp | undefined, plan: TenancyPlan, method: DataCompressionMethod, dataKey: DataKey | undefined): Map<string, ManifestTable> {
  const out = new Map<string, ManifestTable>();
  if (!asBackedUp) return out;
  const { manifest } = asBackedUp;
  const sameFormat =
    manifest.data.compression === method &&
    (manifest.encryption?.keyId ?? null) === (dataKey?.id ?? null) &&
    canonicalJson(manifest.data.sessionSettings) === canonicalJson(reproducibleSessionSettings);
  if (!sameFormat) return out;
  for (const key of asBackedUp.tables) {
    const backedUp = manifest.tables.find((t) => t.table === key);
    const live = plan.tables.find((t) => t.key === key);
    if (backedUp && live && backedUp.copyColumns.join('\0') === live.copyColumns.join('\0')) out.set(key, backedUp);
  }
  return out;
}

/** What a finished tenant backup reports to its workflow: ids, counts and digests only. */
export type TenantBackupSummary = Pick<
  BackupRecord,
  'backupId' | 'tenantId' | 'prefix' | 'storageUri' | 'manifestSha256' | 'rows' | 'bytes' | 'snapshotAt' | 'lsn' | 'tenantChecksum'
>;

/** Fails fast, before any object is written: tenant unknown, tenancy unresolvable, storage unwritable. */
export async function checkTenantBackup(engine: Engine, tenantId: string): Promise<TenantBackupCheck> {
  const { config } = engine;
  const plan = await withClient(engine.db, config.database.url, async (c) => {
    const p = await discoverTenancy(c, config.tenancy);
    await assertTenantExists(c, p, tenantId);
    return p;
  });
  await engine.store.probe();
  return { database: databaseName(config.database.url), storageUri: engine.store.uri, tables: plan.tables.length };
}

/** What to back up, and how (see takeTenantBackup). */
export interface TenantBackupArgs {
  tenantId: string;
  backupId: string;
  requireTenant?: boolean;
  snapshot?: string;
  onProgress?: (p: ExportProgress) => void;
  signal?: AbortSignal;
  /** a tenant rebuilt as of a point in time: read from `url` (a PITR clone) or through `rowsQuery` (the change log's replay), recorded as of that point */
  pointInTime?: { source: PointInTimeSource; url?: string; rowsQuery?: (table: OwnedTable) => string; at: string; lsn: string };
  /** tables whose rows in the snapshot read are exactly this backup's (a restore's safety backup): copied from it where they can be (copyable) */
  asBackedUp?: AsBackedUp;
}

/**
 * Exports the tenant from one snapshot and writes the manifest last. Safe to run again for
 * the same backup id: it first clears whatever an interrupted attempt left under the prefix.
 */
export async function takeTenantBackup(engine: Engine, args: TenantBackupArgs): Promise<TenantBackupSummary> {
  const { manifest, prefix, manifestSha256 } = await writeTenantBackup(engine, args);
  return backupSummaryOf(manifest, engine.store.uri, prefix, manifestSha256);
}

/** Writes a tenant backup (see takeTenantBackup): its manifest, where, and the manifest's sha256. */
export async function writeTenantBackup(engine: Engine, args: TenantBackupArgs): Promise<{ manifest: TenantManifest; prefix: string; manifestSha256: string }> {
  const { config, store } = engine;
  const startedAt = new Date().toISOString();
  const prefix = tenantBackupPrefix(args.tenantId, args.backupId);
  const url = args.pointInTime?.url ?? config.database.url;
  const discover = (c: ClientBase) => discoverTenancy(c, config.tenancy);
  const plan = url === config.database.url ? await withClient(engine.db, url, discover) : await withConnection(url, discover);
  await store.deletePrefix(prefix);
  // Visible from the first moment, so an interrupted backup is always found and cleaned up.
  await store.put(prefix + startedMarkerFile, Buffer.from(JSON.stringify({ backupId: args.backupId, tenantId: args.tenantId, startedAt }) + '\n'));
  const keyring = keyringOf(store);
  const dataKey = await keyring?.forTenant(args.tenantId);
  const compression = config.backup.compression;
  const copied = copyable(args.asBackedUp, plan, compression.method, dataKey);
  // the copies run beside the export; neither is left running behind a failure of the other
  const copies = allDone(
    plan.tables.map((t, index) =>
      copied.has(t.key) ? copyTableObject(store, { prefix: args.asBackedUp!.prefix, table: copied.get(t.key)! }, { prefix, index, method: compression.method, encrypted: !!dataKey, signal: args.signal }) : undefined,
    ),
  );
  const exporting = exportTenantSnapshot({
    dataKey,
    url,
    plan,
    tenantId: args.tenantId,
    store,
    prefix,
    parallelism: config.backup.parallelism,
    compression,
    requireTenant: args.requireTenant,
    skipTables: new Set(copied.keys()),
    snapshot: args.snapshot,
    // a boundary only where the change log runs (a safety backup reads the apply's snapshot)
    ...(config.changeLog.enabled && !args.pointInTime ? { changeLogBoundary: { waitMs: config.changeLog.boundaryWaitMs, publication: config.changeLog.publication } } : {}),
    rowsQuery: args.pointInTime?.rowsQuery,
    onProgress: args.onProgress,
    signal: args.signal,
  });
  const [exported, copiedTables] = await allDone([exporting, copies] as const);
  for (const [i, copy] of copiedTables.entries()) if (copy) exported.tables[i] = copy;
  const manifest = tenantManifestOf({
    plan,
    tenantId: args.tenantId,
    backupId: args.backupId,
    exported,
    startedAt,
    snapshot: args.pointInTime
      ? { at: args.pointInTime.at, lsn: args.pointInTime.lsn }
      : { at: exported.snapshotAt, lsn: exported.lsn, origin: exported.origin, ...(exported.changeLogLsn ? { changeLogLsn: exported.changeLogLsn } : {}) },
    ...(args.pointInTime ? { pointInTime: args.pointInTime.source } : {}),
    dataKey,
    compression: compression.method,
  });
  await keyring?.confirm(dataKey);
  const manifestSha256 = await writeManifest(store, prefix, manifest);
  return { manifest, prefix, manifestSha256 };
}

/** What a workflow is told of a written backup (its own or a batch's): the catalog's view of its manifest. */
export function backupSummaryOf(manifest: TenantManifest, storageUri: string, prefix: string, manifestSha256: string): TenantBackupSummary {
  const r = backupRecordOf(manifest, storageUri, prefix, manifestSha256);
  return {
    backupId: r.backupId,
    tenantId: r.tenantId,
    prefix,
    storageUri: r.storageUri,
    manifestSha256,
    rows: r.rows,
    bytes: r.bytes,
    snapshotAt: r.snapshotAt,
    lsn: r.lsn,
    tenantChecksum: r.tenantChecksum,
  };
}

/** Indexes a written backup in the catalog (reads the manifest back: it is the source of truth). */
export async function recordTenantBackup(engine: Engine, args: { tenantId: string; backupId: string; manifestSha256: string }): Promise<void> {
  const prefix = tenantBackupPrefix(args.tenantId, args.backupId);
  const manifest = await readManifest(engine.store, prefix);
  await engine.catalog.recordBackup(manifest, engine.store.uri, prefix, args.manifestSha256);
}

/** Removes what a failed backup wrote, unless its manifest made it a complete backup. */
export async function discardIncompleteBackup(store: ObjectStore, prefix: string): Promise<number> {
  if (await store.stat(prefix + manifestFile)) return 0;
  return store.deletePrefix(prefix);
}

/** Where backup prefixes live: tenants/<tenant>/<backupId>/ and full/<backupId>/. */
const backupPrefixPatterns = { tenants: /^(tenants\/[^/]+\/([^/]+)\/)(.*)$/, full: /^(full\/([^/]+)\/)(.*)$/ };

/**
 * Finds backup prefixes without a manifest (left by killed or terminated runs) whose label
 * is older than `olderThanMs`, and deletes them. Younger ones may still be being written.
 * `area` picks tenant backups (the default) or full backups.
 */
export async function removeIncompleteBackups(
  store: ObjectStore,
  opts: { olderThanMs: number; now?: Date; dryRun?: boolean; area?: 'tenants' | 'full' },
): Promise<{ prefix: string; objects: number }[]> {
  const area = opts.area ?? 'tenants';
  const prefixes = new Map<string, { objects: number; complete: boolean; label: string }>();
  for await (const obj of store.list(`${area}/`)) {
    const m = backupPrefixPatterns[area].exec(obj.key);
    if (!m) continue;
    const entry = prefixes.get(m[1]) ?? { objects: 0, complete: false, label: m[2] };
    entry.objects++;
    entry.complete ||= m[3] === manifestFile;
    prefixes.set(m[1], entry);
  }
  const cutoff = (opts.now ?? new Date()).getTime() - opts.olderThanMs;
  const removed: { prefix: string; objects: number }[] = [];
  for (const [prefix, { objects, complete, label: id }] of prefixes) {
    const label = parseBackupLabel(id);
    if (complete || !label || label.at.getTime() > cutoff) continue;
    if (!opts.dryRun) await store.deletePrefix(prefix);
    removed.push({ prefix, objects });
  }
  return removed;
}

/** What a manifest says of a table apart from the tenant's data: columns, key, ownership. */
export function tableDescription(t: OwnedTable): Omit<ManifestTable, 'object' | 'rows' | 'rawBytes' | 'rowChecksum'> {
  return {
    table: t.key,
    schema: t.schema,
    name: t.name,
    columns: t.columns.map((c) => ({
      name: c.name,
      type: c.type,
      notNull: c.notNull,
      ...(c.generated ? { generated: true } : {}),
      ...(c.identity ? { identity: c.identity } : {}),
      ...(c.sequence ? { sequence: c.sequence } : {}),
    })),
    copyColumns: t.copyColumns,
    primaryKey: t.primaryKey,
    ownership: describeOwnership(t),
  };
}

/** The tenancy and data format a manifest records (the same for every tenant of a plan and compression). */
export function planDescription(plan: TenancyPlan, compression: DataCompressionMethod): Pick<TenantManifest, 'tenancy' | 'data'> {
  return {
    tenancy: { tenantTable: plan.tenantTable, tenantColumn: plan.tenantColumn, fingerprint: plan.fingerprint, warnings: plan.warnings },
    data: { format: 'text', compression, sessionSettings: reproducibleSessionSettings, rowChecksum: 'murmur3x2-sum64' },
  };
}

/** Totals and tenant checksum of a tenant's tables. */
export function tenantTotals(tables: { table: string; rows: number; rowChecksum: string; bytes: number; rawBytes: number }[]): Pick<TenantManifest, 'totals' | 'tenantChecksum'> {
  return {
    totals: {
      rows: tables.reduce((n, t) => n + t.rows, 0),
      bytes: tables.reduce((n, t) => n + t.bytes, 0),
      rawBytes: tables.reduce((n, t) => n + t.rawBytes, 0),
    },
    tenantChecksum: tenantChecksum(tables),
  };
}

/** A tenant's sealed manifest from what was exported of it (its own objects). */
export function tenantManifestOf(args: {
  plan: TenancyPlan;
  tenantId: string;
  backupId: string;
  exported: Pick<SnapshotExport, 'database' | 'serverVersion' | 'tables'>;
  startedAt: string;
  snapshot: TenantManifest['snapshot'];
  pointInTime?: PointInTimeSource;
  /** the objects were encrypted under it */
  dataKey?: DataKey;
  compression: DataCompressionMethod;
}): TenantManifest {
  const { plan, exported } = args;
  const tables = plan.tables.map((t, i) => {
    const e = exported.tables[i];
    return {
      ...tableDescription(t),
      object: { key: e.objectKey, bytes: e.bytes, sha256: e.sha256, ...(e.packOffset !== undefined ? { packOffset: e.packOffset } : {}) },
      rows: e.rows,
      rawBytes: e.rawBytes,
      rowChecksum: e.rowChecksum,
    };
  });
  const { tenancy, data } = planDescription(plan, args.compression);
  return sealManifest({
    formatVersion: tenantFormatVersion({ batched: false, encrypted: args.dataKey !== undefined, compression: args.compression }),
    ...(args.dataKey ? { encryption: args.dataKey.record } : {}),
    kind: 'tenant',
    backupId: args.backupId,
    tenantId: args.tenantId,
    database: exported.database,
    serverVersion: exported.serverVersion,
    snapshot: args.snapshot,
    ...(args.pointInTime ? { pointInTime: args.pointInTime } : {}),
    startedAt: args.startedAt,
    finishedAt: new Date().toISOString(),
    tenancy,
    data,
    tables,
    ...tenantTotals(tables.map((t) => ({ table: t.table, rows: t.rows, rowChecksum: t.rowChecksum, bytes: t.object.bytes, rawBytes: t.rawBytes }))),
  });
}
