// Batched tenant backups (docs/format.md, "Packs"; docs/architecture.md, "Tenant backups of every
// tenant"): many tenants from one exported snapshot, one scan per table for the whole batch,
// split into per-tenant parts of shared packs on the fly; then each tenant's own manifest, last.
//
// Layout of a batch in the store:
//   packs/<batchId>/<attempt>/<NNNN>-<table>.pack   the parts, table by table
//   packs/<batchId>/<attempt>/shared.json           what every tenant's manifest shares (tables,
//                                                   columns, snapshot, tenancy), once
//   packs/<batchId>/<attempt>/index.json            written before any manifest: which tenants
//                                                   (and backup ids) this attempt's packs hold
//   tenants/<tenant>/<backupId>/manifest.json       each tenant's backup (format 3: its parts and
//                                                   the shared description's key), written last
// A retry (a worker killed mid-batch) keeps the tenants whose manifest made it, deletes the packs
// of attempts no manifest references (no index: no manifest can; an index whose tenants have no
// manifest: none does), and backs up the rest from a new snapshot.
import { createHash } from 'node:crypto';
import { pipeline } from 'node:stream/promises';
import type { Client } from 'pg';
import { copyOut } from '../copyOut';
import { keyringOf, type DataKey } from '../encryption';
import type { Engine } from '../engine';
import { ErrorType, TenantsafeError } from '../errors';
import type { DataCompression } from '../format/dataCompression';
import { compactManifest, manifestFile, manifestFormatVersion, parseSealedManifest, sealManifest } from '../format/sealed';
import { batchSharedFormatVersion, completeBatchedManifest, packsArea, tenantFormatVersion, parseManifest, tenantBackupPrefix, type BatchSharedCache, type StoredBatchedManifest, type TenantBatchShared } from '../format/tenantManifest';
import { backupsPerStatement, type IndexedBackup } from '../catalog';
import { sha256Hex } from '../checksum';
import { parseBackupLabel } from '../labels';
import { mapLimit } from '../limit';
import { cancelOnAbort, connect, connectionError, inLanes, withClient } from '../pg';
import type { ObjectStore } from '../storage/types';
import { batchRowsQuery, discoverTenancy, listTenants, tenantNotFound, type BatchScope, type TenancyPlan, type TenantRange } from '../tenancy';
import { backupSummaryOf, planDescription, tableDescription, tenantTotals, type TenantBackupSummary } from './index';
import { beginSnapshotTransaction, changeLogBoundary, dataObjectStem, exportSnapshot, snapshotOrigin, type SnapshotExport, type TableExport } from './export';
import { copyTextField, PackWriter, TenantSplitter } from './pack';

export { packsArea };
export const packIndexFile = 'index.json';
export const batchSharedFile = 'shared.json';

/** A batch attempt's pack index: which tenants its packs hold, written before their manifests. */
export interface PackIndex {
  formatVersion: number;
  kind: 'packIndex';
  batchId: string;
  attempt: number;
  snapshotAt: string;
  tenants: { tenantId: string; backupId: string }[];
  packs: { key: string; bytes: number; sha256: string }[];
  manifestChecksum: string;
}

export interface BatchProgress {
  phase: 'resuming' | 'exporting' | 'manifests';
  tenants: number;
  tablesDone: number;
  tablesTotal: number;
  manifestsDone: number;
}

export interface TenantBatchResult {
  /** tenants backed up (those an earlier attempt of this batch completed included) */
  succeeded: number;
  /** the first failures (the count is failedCount): a tenant whose manifest could not be written */
  failed: { tenantId: string; error: string; type?: string }[];
  failedCount: number;
  rows: number;
  bytes: number;
  packs: number;
  /** pack objects of earlier attempts that no manifest referenced, deleted */
  orphanPacksRemoved: number;
  /** a batch of `only` these tenants: each one backed up (an earlier attempt's included), as its own backup would report it */
  backups?: TenantBackupSummary[];
  /** a batch of `only` these tenants: those not in its snapshot (no such tenant, or deleted), each with its TenantNotFound error */
  missing?: { tenantId: string; error: string; type: string }[];
  /** a batch of `only` these tenants: the database's name (as a single backup's check reports it) */
  database?: string;
}

const failuresKept = 100;
/**
 * A table of up to this many rows (all tenants, pg_class's estimate) is split in memory, each
 * tenant's rows gathered as they come, with no sort in Postgres; a bigger one comes sorted by
 * tenant and each part leaves as soon as it is complete. Memory: a few such tables at once.
 */
const gatherRowsAtMost = 500_000;
/** manifests written (one sync for all) and indexed (one statement) at a time */
const manifestsAtOnce = backupsPerStatement;

/** The batch's prefix in the store: packs/<batchId>/. */
export function batchPrefix(batchId: string): string {
  return `${packsArea}${batchId}/`;
}

/**
 * Backup ids of a batch's tenants: the batch's time and kind, and 6 hex digits from a hash of
 * the tenant, moved on to the next free value on a collision in the batch (ids are unique
 * keys of the catalog). The same tenant set gives the same ids on every attempt; a retry, whose
 * set lacks the tenants an earlier attempt finished, passes their ids as `reserved`. Batch `index`
 * of `count` cut from one run (same time) takes only the values ≡ index (mod count), so two
 * batches of a run never give two tenants one id.
 */
export function batchBackupIds(batchId: string, tenantIds: readonly string[], slot: BatchSlot = { index: 0, count: 1 }, reserved: Iterable<string> = []): Map<string, string> {
  const stamp = batchId.slice(0, 16);
  // the ids earlier attempts gave the tenants they finished: a retry's tenants must not take them
  const used = new Set(reserved);
  const ids = new Map<string, string>();
  for (const t of [...tenantIds].sort()) {
    let id = slotBackupId(stamp, parseInt(createHash('sha256').update(`${batchId}\0${t}`).digest('hex').slice(0, 6), 16), slot);
    if (used.has(id)) id = nextFreeBackupId(id, used, slot);
    used.add(id);
    ids.set(t, id);
  }
  return ids;
}

/** The next id after `id` in the values of `slot` (batchBackupIds) that `used` does not hold. */
export function nextFreeBackupId(id: string, used: ReadonlySet<string>, slot: BatchSlot = { index: 0, count: 1 }): string {
  const stamp = id.slice(0, id.lastIndexOf('-'));
  let n = (parseInt(id.slice(stamp.length + 1), 16) - slot.index) / slot.count;
  let next: string;
  do next = slotBackupId(stamp, ++n, slot);
  while (used.has(next));
  return next;
}

/** The id of the batch's `n`th value (modulo the slot's share of the 6 hex digits): n·count + index. */
function slotBackupId(stamp: string, n: number, slot: BatchSlot): string {
  const values = Math.floor(0x1000000 / slot.count);
  return `${stamp}-${((n % values) * slot.count + slot.index).toString(16).padStart(6, '0')}`;
}

/** Which of a run's batches this is: its backup ids are kept apart from the others' (batchBackupIds). */
export interface BatchSlot {
  index: number;
  count: number;
}

/**
 * Cuts the tenants but `skip` into ranges of at most `maxTenants` (bytewise order of the ids as
 * text), one batch each: several workers can then take a run's batches, and a retry redoes one
 * batch, not all. One range (open both ways) when they fit in one batch. A tenant added later
 * falls in one of the ranges.
 */
export async function planTenantRanges(engine: Engine, args: { skip: readonly string[]; maxTenants: number }): Promise<TenantRange[]> {
  const { config } = engine;
  const tenants = await withClient(engine.db, config.database.url, async (c) => listTenants(c, await discoverTenancy(c, config.tenancy), {}));
  const skip = new Set(args.skip);
  const kept = tenants.filter((t) => !skip.has(t));
  const ranges: TenantRange[] = [];
  for (let i = args.maxTenants; i < kept.length; i += args.maxTenants) ranges.push({ ...(ranges.length > 0 ? { from: kept[i - args.maxTenants] } : {}), to: kept[i] });
  ranges.push(ranges.length > 0 ? { from: ranges.at(-1)!.to } : {});
  return ranges;
}

/**
 * Backs up every tenant but `skip` from one snapshot, in packs; idempotent per (batchId, attempt).
 * The tenants are those of the snapshot itself: one added before it is in, one deleted before
 * it is not; either way no tenant is half backed up.
 */
export async function takeTenantBatch(
  engine: Engine,
  args: {
    batchId: string;
    attempt: number;
    skip: readonly string[];
    /** only the tenants in this range (one of a run's several batches: planTenantRanges) */
    range?: TenantRange;
    /**
     * only these tenants (those whose schedules fell due together: workflows/tenantBackupBatcher.ts);
     * the result then reports each one's backup, and the tenants its snapshot does not hold
     */
    only?: readonly string[];
    slot?: BatchSlot;
    /** read as of this exported snapshot (another transaction's, kept open meanwhile) instead of a new one */
    snapshot?: string;
    onProgress?: (p: BatchProgress) => void;
    signal?: AbortSignal;
  },
): Promise<TenantBatchResult> {
  const { config, store } = engine;
  const progress: BatchProgress = { phase: 'resuming', tenants: 0, tablesDone: 0, tablesTotal: 0, manifestsDone: 0 };
  const report = () => args.onProgress?.(progress);
  report();
  const earlier = await resumeBatch(engine, args.batchId, args.attempt);
  const plan = await withClient(engine.db, config.database.url, (c) => discoverTenancy(c, config.tenancy));
  const skip = new Set([...args.skip, ...earlier.done]);
  const packPrefix = `${batchPrefix(args.batchId)}${args.attempt}/`;
  await store.deletePrefix(packPrefix);
  const startedAt = new Date().toISOString();
  const wanted = args.only && new Set(args.only);
  let missing: NonNullable<TenantBatchResult['missing']> = [];

  progress.phase = 'exporting';
  progress.tablesTotal = plan.tables.length;
  const exported = await exportTenantBatch({
    url: config.database.url,
    plan,
    store,
    packPrefix,
    parallelism: config.backup.parallelism,
    compression: config.backup.compression,
    dataKeys: (tenants) => keyringOf(store)?.forTenants(tenants) ?? Promise.resolve(undefined),
    select: async (c) => {
      const all = await listTenants(c, plan, args.range);
      const tenants = all.filter((t) => !skip.has(t) && (!wanted || wanted.has(t)));
      if (wanted) {
        const present = new Set(all);
        missing = [...wanted].filter((t) => !present.has(t) && !earlier.done.has(t)).map((tenantId) => {
          const err = tenantNotFound(plan, tenantId);
          return { tenantId, error: err.message, type: err.type };
        });
      }
      progress.tenants = tenants.length;
      // every tenant there is: no filter; a range: its rows but the skipped tenants'; else the ids
      const scope: BatchScope = args.range ? { range: args.range, except: [...skip] } : tenants.length === all.length ? null : { ids: tenants };
      return { tenants, scope };
    },
    snapshot: args.snapshot,
    ...(config.changeLog.enabled && !args.snapshot ? { changeLogBoundary: { waitMs: config.changeLog.boundaryWaitMs, publication: config.changeLog.publication } } : {}),
    onTable: () => {
      progress.tablesDone++;
      report();
    },
    signal: args.signal,
  });
  const tenantIds = [...exported.tables.keys()];
  const backupIds = batchBackupIds(args.batchId, tenantIds, args.slot, earlier.backupIds);
  const result: TenantBatchResult = {
    succeeded: earlier.done.size,
    failed: [],
    failedCount: 0,
    rows: earlier.rows,
    bytes: earlier.bytes,
    packs: exported.packs.length,
    orphanPacksRemoved: earlier.removed,
    ...(wanted ? { backups: earlier.backups, missing, database: exported.database } : {}),
  };
  if (tenantIds.length === 0) {
    await store.deletePrefix(packPrefix);
    return result;
  }
  // what every manifest shares, then the index, before any manifest: a retry learns from the index which manifests may reference these packs
  const shared = sealManifest<Omit<TenantBatchShared, 'manifestChecksum'>>({
    formatVersion: batchSharedFormatVersion(config.backup.compression.method),
    kind: 'tenantBatch',
    batchId: args.batchId,
    attempt: args.attempt,
    database: exported.database,
    serverVersion: exported.serverVersion,
    snapshot: { at: exported.snapshotAt, lsn: exported.lsn, origin: exported.origin, ...(exported.changeLogLsn ? { changeLogLsn: exported.changeLogLsn } : {}) },
    startedAt,
    ...planDescription(plan, config.backup.compression.method),
    tables: plan.tables.map((t, i) => ({ ...tableDescription(t), pack: exported.packKeys[i] })),
  });
  const sharedKey = packPrefix + batchSharedFile;
  const batch = { key: sharedKey, sha256: (await store.put(sharedKey, compactManifest(shared), { contentType: 'application/json' })).sha256 };
  const index: Omit<PackIndex, 'manifestChecksum'> = {
    formatVersion: manifestFormatVersion,
    kind: 'packIndex',
    batchId: args.batchId,
    attempt: args.attempt,
    snapshotAt: exported.snapshotAt,
    tenants: tenantIds.map((tenantId) => ({ tenantId, backupId: backupIds.get(tenantId)! })),
    packs: exported.packs,
  };
  await store.put(packPrefix + packIndexFile, Buffer.from(JSON.stringify(sealManifest(index)) + '\n'), { contentType: 'application/json' });

  // keys made by this batch must still be the stored ones (Keyring.confirm)
  for (const k of exported.dataKeys?.values() ?? []) if (k.created) await keyringOf(store)!.confirm(k);
  progress.phase = 'manifests';
  report();
  const manifestsOf = (tenants: string[]) => {
    const finishedAt = new Date().toISOString();
    return tenants.map((tenantId) => {
      const backupId = backupIds.get(tenantId)!;
      const parts = exported.tables.get(tenantId)!.map((e) => ({ offset: e.packOffset!, bytes: e.bytes, sha256: e.sha256, rows: e.rows, rawBytes: e.rawBytes, rowChecksum: e.rowChecksum }));
      const dataKey = exported.dataKeys?.get(tenantId);
      const stored = sealManifest<Omit<StoredBatchedManifest, 'manifestChecksum'>>({
        formatVersion: tenantFormatVersion({ batched: true, encrypted: dataKey !== undefined, compression: config.backup.compression.method }),
        kind: 'tenant',
        backupId,
        tenantId,
        batch,
        ...(dataKey ? { encryption: dataKey.record } : {}),
        finishedAt,
        parts,
        ...tenantTotals(parts.map((p, t) => ({ table: plan.tables[t].key, ...p }))),
      });
      const prefix = tenantBackupPrefix(tenantId, backupId);
      return { tenantId, prefix, body: compactManifest(stored), manifest: completeBatchedManifest(stored, shared, prefix + manifestFile) };
    });
  };
  const storeAndIndex = async (written: ReturnType<typeof manifestsOf>) => {
    const { stored, failed } = await writeManifests(store, written, args.signal);
    // indexed in the catalog a chunk at a time (a retry indexes again what an attempt wrote)
    const indexed = written.filter((w) => stored.has(w.tenantId)).map((w) => ({ ...w, storageUri: store.uri, manifestSha256: stored.get(w.tenantId)! }));
    const { taken } = await engine.catalog.recordBackups(indexed);
    const moves = taken.length > 0 ? await moveToFreeIds(taken) : { moved: [], failed: [] };
    for (const w of [...indexed.filter((w) => !taken.includes(w)), ...moves.moved]) {
      result.backups?.push(backupSummaryOf(w.manifest, store.uri, w.prefix, w.manifestSha256));
      result.succeeded++;
      result.rows += w.manifest.totals.rows;
      result.bytes += w.manifest.totals.bytes;
    }
    const unwritten = [...failed, ...moves.failed];
    result.failedCount += unwritten.length;
    result.failed.push(...unwritten.slice(0, failuresKept - result.failed.length).map(({ tenantId, err }) => ({ tenantId, error: err.message, type: err.type })));
    progress.manifestsDone += written.length;
    report();
  };
  /**
   * Another tenant's backup in the catalog holds these backups' ids (another batch started in the
   * same second): each moves to the next free id of this batch's slot. The pack index names the
   * new id before its manifest is written, and the old manifest goes last: a retry finds each
   * tenant's backup by the index, and the packs stay referenced throughout.
   */
  const moveToFreeIds = async (taken: { tenantId: string; prefix: string }[]) => {
    const moved: (ReturnType<typeof manifestsOf>[number] & { manifestSha256: string })[] = [];
    const failed: Awaited<ReturnType<typeof writeManifests>>['failed'] = [];
    const used = new Set([...backupIds.values(), ...earlier.backupIds]);
    let pending = taken;
    for (let round = 0; pending.length > 0; round++) {
      if (round === 8) throw new TenantsafeError(ErrorType.StorageUnavailable, `Backup ids of ${pending.length} tenant(s) of batch ${args.batchId} kept colliding with other backups' in the catalog.`, 'The batch is retried by itself.');
      for (const t of pending) {
        const id = nextFreeBackupId(backupIds.get(t.tenantId)!, used, args.slot);
        used.add(id);
        backupIds.set(t.tenantId, id);
      }
      index.tenants = tenantIds.map((tenantId) => ({ tenantId, backupId: backupIds.get(tenantId)! }));
      await store.put(packPrefix + packIndexFile, Buffer.from(JSON.stringify(sealManifest(index)) + '\n'), { contentType: 'application/json' });
      const rewritten = manifestsOf(pending.map((t) => t.tenantId));
      const written = await writeManifests(store, rewritten, args.signal);
      failed.push(...written.failed);
      const candidates = rewritten.filter((w) => written.stored.has(w.tenantId)).map((w) => ({ ...w, storageUri: store.uri, manifestSha256: written.stored.get(w.tenantId)! }));
      const again = await engine.catalog.recordBackups(candidates);
      moved.push(...candidates.filter((w) => !again.taken.includes(w)));
      for (const t of pending) await store.deletePrefix(t.prefix);
      pending = again.taken;
    }
    return { moved, failed };
  };
  // the next chunk's manifests are made while the last one's are written and indexed
  let previous: Promise<void> = Promise.resolve();
  try {
    for (let i = 0; i < tenantIds.length; i += manifestsAtOnce) {
      const written = manifestsOf(tenantIds.slice(i, i + manifestsAtOnce));
      await previous;
      args.signal?.throwIfAborted();
      previous = storeAndIndex(written);
    }
  } finally {
    await previous.catch(() => undefined);
  }
  await previous;
  return result;
}

const isUnwritable = (err: unknown): err is TenantsafeError => err instanceof TenantsafeError && err.type === ErrorType.StorageUnwritable;

/**
 * Writes a chunk of manifests with one sync for all. Where storage refuses a write, one by one,
 * so that a tenant whose path cannot be written fails alone; storage down fails the chunk (the
 * batch is retried).
 */
async function writeManifests(
  store: ObjectStore,
  written: readonly { tenantId: string; prefix: string; body: Buffer }[],
  signal?: AbortSignal,
): Promise<{ stored: Map<string, string>; failed: { tenantId: string; err: TenantsafeError }[] }> {
  const stored = new Map<string, string>();
  const failed: { tenantId: string; err: TenantsafeError }[] = [];
  try {
    const puts = await store.putMany(written.map((w) => ({ key: w.prefix + manifestFile, body: w.body, contentType: 'application/json' })), { signal });
    puts.forEach((p, i) => stored.set(written[i].tenantId, p.sha256));
  } catch (err) {
    if (!isUnwritable(err)) throw err;
    await mapLimit(written, 8, async (w) => {
      try {
        stored.set(w.tenantId, (await store.put(w.prefix + manifestFile, w.body, { contentType: 'application/json', signal })).sha256);
      } catch (e) {
        if (!isUnwritable(e)) throw e;
        failed.push({ tenantId: w.tenantId, err: e });
      }
    });
  }
  return { stored, failed };
}

/**
 * What earlier attempts of this batch left: the tenants whose manifest made it (done, indexed in
 * the catalog again in case the attempt died before it did), and the packs no manifest
 * references, deleted.
 */
async function resumeBatch(engine: Engine, batchId: string, attempt: number): Promise<{ done: Set<string>; backupIds: string[]; backups: TenantBackupSummary[]; rows: number; bytes: number; removed: number }> {
  const { store } = engine;
  const earlier = { done: new Set<string>(), backupIds: [] as string[], backups: [] as TenantBackupSummary[], rows: 0, bytes: 0, removed: 0 };
  if (attempt <= 1) return earlier;
  const attempts = new Map<string, string[]>();
  for await (const o of store.list(batchPrefix(batchId))) {
    const dir = o.key.slice(0, o.key.lastIndexOf('/') + 1);
    attempts.set(dir, [...(attempts.get(dir) ?? []), o.key]);
  }
  const shared: BatchSharedCache = new Map();
  for (const [dir, keys] of attempts) {
    let referenced = false;
    if (keys.includes(dir + packIndexFile)) {
      const index = parseSealedManifest<PackIndex>(await store.getBytes(dir + packIndexFile), dir + packIndexFile);
      const found: IndexedBackup[] = [];
      for (const t of index.tenants) {
        const prefix = tenantBackupPrefix(t.tenantId, t.backupId);
        if (!(await store.stat(prefix + manifestFile))) {
          // what a write of manifests killed before its renames leaves: invisible partial files
          await store.deletePrefix(prefix);
          continue;
        }
        const body = await store.getBytes(prefix + manifestFile);
        found.push({ manifest: await parseManifest(body, prefix + manifestFile, store, shared), storageUri: store.uri, prefix, manifestSha256: sha256Hex(body) });
      }
      // a backup whose id another tenant's backup took before the attempt moved it is backed up again
      const { taken } = await engine.catalog.recordBackups(found);
      for (const b of taken) await store.deletePrefix(b.prefix);
      for (const { manifest, prefix, manifestSha256 } of found.filter((b) => !taken.includes(b))) {
        earlier.backups.push(backupSummaryOf(manifest, store.uri, prefix, manifestSha256));
        earlier.done.add(manifest.tenantId);
        earlier.backupIds.push(manifest.backupId);
        earlier.rows += manifest.totals.rows;
        earlier.bytes += manifest.totals.bytes;
        referenced = true;
      }
    }
    if (!referenced) earlier.removed += await store.deletePrefix(dir);
  }
  return earlier;
}

export interface BatchExportOptions {
  url: string;
  plan: TenancyPlan;
  store: ObjectStore;
  /** where this attempt's packs go, ending in '/' */
  packPrefix: string;
  parallelism: number;
  compression: DataCompression;
  /** the data key of each tenant chosen (made on first use); none: packs unencrypted */
  dataKeys?: (tenantIds: readonly string[]) => Promise<Map<string, DataKey> | undefined>;
  /** the tenants to back up, chosen in the snapshot (the coordinator's transaction), and which rows the scans read for them */
  select: (c: Client) => Promise<{ tenants: string[]; scope: BatchScope }>;
  /** read as of this exported snapshot instead of a new one */
  snapshot?: string;
  changeLogBoundary?: { waitMs: number; publication: string };
  onTable?: () => void;
  signal?: AbortSignal;
}

export interface BatchExport extends Omit<SnapshotExport, 'tables'> {
  /** per tenant, its tables in plan order, each a part of that table's pack */
  tables: Map<string, TableExport[]>;
  packs: { key: string; bytes: number; sha256: string }[];
  /** the pack of each table, in plan order */
  packKeys: string[];
  /** each tenant's parts are encrypted under its key */
  dataKeys?: Map<string, DataKey>;
}

/**
 * One snapshot, one scan per table for every tenant of the batch over parallel connections
 * (largest tables first), each scan split into the tenants' parts of one pack.
 */
export async function exportTenantBatch(opts: BatchExportOptions): Promise<BatchExport> {
  const { plan } = opts;
  const boundary = opts.changeLogBoundary ? await changeLogBoundary(opts.url, plan, opts.changeLogBoundary) : undefined;
  const coordinator = await connect(opts.url, 'tenantsafe-batch');
  const stopCancelling = cancelOnAbort(opts.url, () => [coordinator], opts.signal);
  try {
    await beginSnapshotTransaction(coordinator);
    const imported = opts.snapshot ?? boundary?.snapshot;
    if (imported) await coordinator.query(`SET TRANSACTION SNAPSHOT '${imported}'`);
    await boundary?.release();
    const info = (await exportSnapshot(coordinator)).rows[0];
    const origin = await snapshotOrigin(coordinator);
    const { tenants: tenantIds, scope } = await opts.select(coordinator);
    const dataKeys = tenantIds.length > 0 ? await opts.dataKeys?.(tenantIds) : undefined;
    const tables = new Map(tenantIds.map((t) => [t, new Array<TableExport>(plan.tables.length)]));
    const packs: BatchExport['packs'] = [];
    const packKeys = plan.tables.map((table, i) => `${opts.packPrefix}${dataObjectStem(i, table.key).slice('data/'.length)}.pack`);
    if (tenantIds.length > 0) {
      const fields = new Map(tenantIds.map((t) => [copyTextField(t), t]));
      const setup = async (c: Client) => {
        await beginSnapshotTransaction(c);
        await c.query(`SET TRANSACTION SNAPSHOT '${info.snapshot}'`);
      };
      const items = plan.tables.map((table, i) => ({ table, i }));
      await inLanes(opts.url, 'tenantsafe-batch', items, { lanes: opts.parallelism, size: (x) => x.table.estimatedRows, setup, finish: (c) => c.query('COMMIT'), signal: opts.signal }, async (c, { table, i }) => {
        const pack = new PackWriter(opts.store, packKeys[i], opts.compression, opts.signal, dataKeys);
        const grouped = table.estimatedRows > gatherRowsAtMost;
        try {
          // without a list of ids (a scan of the whole table is cheaper than a lookup per row) the reader drops the rows of ids that are no tenant
          const query = batchRowsQuery(plan, table, scope, { grouped });
          await pipeline(c.query(copyOut(`COPY (${query}) TO STDOUT`)), new TenantSplitter(fields, pack, grouped, scope && 'ids' in scope ? 'refuse' : 'skip'));
        } catch (err) {
          pack.abort(err as Error);
          throw err;
        }
        const stored = await pack.finish(tenantIds);
        packs.push(stored);
        for (const [tenantId, part] of pack.parts) {
          tables.get(tenantId)![i] = { table: table.key, objectKey: stored.key, packOffset: part.offset, bytes: part.bytes, sha256: part.sha256, rows: part.rows, rawBytes: part.rawBytes, rowChecksum: part.rowChecksum };
        }
        opts.onTable?.();
      });
    }
    await coordinator.query('COMMIT');
    return {
      snapshotAt: info.at,
      lsn: info.lsn,
      ...(boundary ? { changeLogLsn: boundary.lsn } : {}),
      origin,
      serverVersion: info.version,
      database: info.db,
      tables,
      packs: packs.sort((a, b) => a.key.localeCompare(b.key)),
      packKeys,
      ...(dataKeys ? { dataKeys } : {}),
    };
  } catch (err) {
    if (opts.signal?.aborted) throw opts.signal.reason ?? err;
    throw connectionError(opts.url, err);
  } finally {
    stopCancelling();
    await coordinator.end().catch(() => undefined);
  }
}

/**
 * Tenants big enough to back up on their own (their own parallel export, not a batch's packs):
 * those the statistics of the tables holding the tenant column estimate at `minRows` rows or
 * more (pg_stats' most common values: a big tenant is among them). Cheap: no scan.
 */
export async function largeTenants(engine: Engine, minRows: number): Promise<string[]> {
  const { config } = engine;
  return withClient(engine.db, config.database.url, async (c) => {
    const plan = await discoverTenancy(c, config.tenancy);
    const direct = plan.tables.filter((t) => t.ownership.kind !== 'parent');
    const r = await c.query<{ tenant: string; rows: number }>(
      `SELECT v.tenant, sum(v.freq * greatest(cl.reltuples, 0))::float8 AS rows
         FROM pg_stats s
         JOIN pg_class cl ON cl.oid = format('%I.%I', s.schemaname, s.tablename)::regclass
         CROSS JOIN LATERAL unnest(s.most_common_vals::text::text[], s.most_common_freqs) AS v(tenant, freq)
        WHERE (s.schemaname, s.tablename, s.attname) IN (SELECT * FROM unnest($1::text[], $2::text[], $3::text[]))
        GROUP BY v.tenant`,
      [direct.map((t) => t.schema), direct.map((t) => t.name), direct.map((t) => (t.ownership as { column: string }).column)],
    );
    return r.rows.filter((x) => x.rows >= minRows).map((x) => x.tenant).sort();
  });
}

/**
 * Deletes the packs no manifest references any more (retention, after it deleted backups): an
 * attempt's packs (packs/<batchId>/<attempt>/) go together once none of them is referenced by a
 * backup in the catalog nor, checked in storage before deleting, by a manifest of a tenant its
 * index lists (a manifest the catalog has not indexed yet). Attempts younger than `olderThanMs`
 * may still be writing and are left alone.
 */
export async function removeUnreferencedPacks(engine: Engine, opts: { olderThanMs: number; now: Date; dryRun: boolean }): Promise<string[]> {
  const { store } = engine;
  const referenced = await engine.catalog.referencedPacks();
  const attempts = new Map<string, string[]>();
  for await (const o of store.list(packsArea)) {
    const m = /^(packs\/([^/]+)\/[^/]+\/)/.exec(o.key);
    if (!m) continue;
    const label = parseBackupLabel(m[2]);
    if (!label || label.at.getTime() > opts.now.getTime() - opts.olderThanMs) continue;
    attempts.set(m[1], [...(attempts.get(m[1]) ?? []), o.key]);
  }
  const removed: string[] = [];
  for (const [dir, keys] of attempts) {
    if (keys.some((k) => referenced.has(k))) continue;
    if (keys.includes(dir + packIndexFile) && (await referencedInStorage(store, dir))) continue;
    if (!opts.dryRun) await store.deletePrefix(dir);
    removed.push(dir);
  }
  return removed;
}

/** Whether a manifest in storage of a tenant the attempt's index lists references one of its packs. */
async function referencedInStorage(store: ObjectStore, dir: string): Promise<boolean> {
  const index = parseSealedManifest<PackIndex>(await store.getBytes(dir + packIndexFile), dir + packIndexFile);
  const shared: BatchSharedCache = new Map();
  for (const t of index.tenants) {
    const prefix = tenantBackupPrefix(t.tenantId, t.backupId);
    if (!(await store.stat(prefix + manifestFile))) continue;
    const manifest = await parseManifest(await store.getBytes(prefix + manifestFile), prefix + manifestFile, store, shared);
    if (manifest.tables.some((x) => x.object.packOffset !== undefined && x.object.key.startsWith(dir))) return true;
  }
  return false;
}
