// Exports one tenant's rows from one consistent snapshot (docs/architecture.md, core rule 2): a coordinator
// transaction exports its snapshot, worker connections import it and stream each table with
// COPY ... TO STDOUT through a row digest and a compressor into the store. Never buffers a table.
import { pipeline } from 'node:stream/promises';
import type { Client, ClientBase } from 'pg';
import { copyOut } from '../copyOut';
import { RowDigestStream } from '../checksum';
import { objectLocation, type ManifestTable, type SnapshotOrigin } from '../format/tenantManifest';
import { ErrorType, TenantsafeError } from '../errors';
import { cancelOnAbort, connect, connectionError, microsText, withConnection } from '../pg';
import { publishOwnedTables, unpublishedTables } from '../changeLog/publication';
import type { DataKey } from '../encryption';
import { compressor, contentTypes, fileExtensions, type DataCompression, type DataCompressionMethod } from '../format/dataCompression';
import type { ObjectStore } from '../storage/types';
import { Rechunk } from '../streams';
import { assertTenantExists, tenantRowsQuery, type OwnedTable, type TenancyPlan } from '../tenancy';

export interface TableExport {
  table: string;
  /** object key relative to the backup prefix; for a part of a pack, the pack's key */
  objectKey: string;
  /** a part of a pack: where it starts in it */
  packOffset?: number;
  rows: number;
  rawBytes: number;
  bytes: number;
  sha256: string;
  rowChecksum: string;
}

export interface SnapshotExport {
  snapshotAt: string;
  lsn: string;
  /** the exact boundary with the change log, where one was asked for and could be had in time */
  changeLogLsn?: string;
  /** the snapshot's xmin and where its transaction ids mean something (see SnapshotOrigin) */
  origin: SnapshotOrigin;
  serverVersion: string;
  database: string;
  tables: TableExport[];
}

export interface ExportProgress {
  tablesDone: number;
  tablesTotal: number;
  rows: number;
  bytes: number;
  /** tables being copied right now */
  current: string[];
}

export interface ExportOptions {
  url: string;
  plan: TenancyPlan;
  tenantId: string;
  store: ObjectStore;
  /** backup prefix in the store, ending in '/' */
  prefix: string;
  parallelism: number;
  compression: DataCompression;
  /** encrypts every object under this tenant data key (lib/encryption); none: unencrypted */
  dataKey?: DataKey;
  /** false for a restore's safety backup: a tenant deleted entirely backs up as empty */
  requireTenant?: boolean;
  /** read as of this exported snapshot (another transaction's, kept open meanwhile) instead of a new one */
  snapshot?: string;
  /** take the snapshot at an exact boundary with the change log reading this publication, waiting up to waitMs for it (see changeLogBoundary) */
  changeLogBoundary?: { waitMs: number; publication: string };
  /** the SELECT of the tenant's rows of a table (default: from the live table, through its tenant filter) */
  rowsQuery?: (table: OwnedTable) => string;
  /** tables (keys) not read here: the caller has their data another way (their entries in `tables` are left empty) */
  skipTables?: ReadonlySet<string>;
  onProgress?: (p: ExportProgress) => void;
  signal?: AbortSignal;
}

/** A data object's key: its position (FK order), a file-safe form of the table name, and how it is compressed (.zst, .gz). */
export function dataObjectKey(index: number, table: string, method: DataCompressionMethod): string {
  return `${dataObjectStem(index, table)}.copy${fileExtensions[method]}`;
}

/** A data object's content type: its compression's, or opaque bytes when encrypted. */
function dataContentType(method: DataCompressionMethod, encrypted: boolean): string {
  return encrypted ? 'application/octet-stream' : contentTypes[method];
}

/** data/<nnnn>-<table>: a data object's key without its suffix (a batch names its packs after it). */
export function dataObjectStem(index: number, table: string): string {
  return `data/${String(index + 1).padStart(4, '0')}-${table.replace(/[^A-Za-z0-9._-]/g, '_')}`;
}

export async function exportTenantSnapshot(opts: ExportOptions): Promise<SnapshotExport> {
  const { plan, tenantId } = opts;
  const clients: Client[] = [];
  const stopCancelling = cancelOnAbort(opts.url, () => clients, opts.signal);
  try {
    const boundary = !opts.snapshot && opts.changeLogBoundary ? await changeLogBoundary(opts.url, plan, opts.changeLogBoundary) : undefined;
    const coordinator = await connect(opts.url, 'tenantsafe-export');
    clients.push(coordinator);
    await beginSnapshotTransaction(coordinator);
    const imported = opts.snapshot ?? boundary?.snapshot;
    if (imported) await coordinator.query(`SET TRANSACTION SNAPSHOT '${imported}'`);
    await boundary?.release();
    // a table the log did not follow at the boundary (added since its last start): the log cannot extend this backup
    const changeLogLsn = boundary && (await unpublishedTables(coordinator, opts.changeLogBoundary!.publication, plan)).length === 0 ? boundary.lsn : undefined;
    // The tenant must exist in the snapshot we read, not only a moment before it.
    if (opts.requireTenant !== false) await assertTenantExists(coordinator, plan, tenantId);
    const info = await exportSnapshot(coordinator);
    const origin = await snapshotOrigin(coordinator);
    const { snapshot } = info.rows[0];

    // Largest tables first, so one big table does not start last and run alone.
    const queue = plan.tables
      .map((t, i) => ({ t, i }))
      .filter(({ t }) => !opts.skipTables?.has(t.key))
      .sort((a, b) => b.t.estimatedRows - a.t.estimatedRows);
    const workers = await Promise.all(
      Array.from({ length: Math.max(1, Math.min(opts.parallelism, queue.length)) }, async () => {
        const c = await connect(opts.url, 'tenantsafe-export');
        clients.push(c);
        await beginSnapshotTransaction(c);
        await c.query(`SET TRANSACTION SNAPSHOT '${snapshot}'`);
        return c;
      }),
    );

    const results = new Array<TableExport>(plan.tables.length);
    const progress: ExportProgress = { tablesDone: 0, tablesTotal: queue.length, rows: 0, bytes: 0, current: [] };
    await Promise.all(
      workers.map(async (client) => {
        for (let job = queue.shift(); job; job = queue.shift()) {
          progress.current.push(job.t.key);
          opts.onProgress?.(progress);
          results[job.i] = await exportTable(client, job.t, job.i, opts);
          progress.current = progress.current.filter((k) => k !== job!.t.key);
          progress.tablesDone++;
          progress.rows += results[job.i].rows;
          progress.bytes += results[job.i].bytes;
          opts.onProgress?.(progress);
        }
      }),
    );
    for (const c of [...workers, coordinator]) await c.query('COMMIT');
    return {
      snapshotAt: info.rows[0].at,
      lsn: info.rows[0].lsn,
      ...(changeLogLsn ? { changeLogLsn } : {}),
      origin,
      serverVersion: info.rows[0].version,
      database: info.rows[0].db,
      tables: results,
    };
  } catch (err) {
    if (opts.signal?.aborted) throw opts.signal.reason ?? err;
    throw connectionError(opts.url, err);
  } finally {
    stopCancelling();
    await Promise.all(clients.map((c) => c.end().catch(() => undefined)));
  }
}

/** Exports the transaction's snapshot, for other connections to read the same; and when and where it was taken. */
export function exportSnapshot(c: ClientBase) {
  return c.query<{ snapshot: string; at: string; lsn: string; version: string; db: string }>(
    `SELECT pg_export_snapshot() AS snapshot, ${microsText('clock_timestamp()')} AS at,
            (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END)::text AS lsn,
            current_setting('server_version') AS version, current_database() AS db`,
  );
}

/**
 * The origin of the transaction's snapshot (see SnapshotOrigin). A primary's timeline is the one
 * it writes WAL on (the first 8 hex digits of the current WAL file's name): the last checkpoint's
 * lags a promotion until the next checkpoint. A standby's is the last restartpoint's.
 */
export async function snapshotOrigin(c: ClientBase): Promise<SnapshotOrigin> {
  const r = await c.query<{ xmin: string; system: string; timeline: number; db: number }>(
    `SELECT pg_snapshot_xmin(pg_current_snapshot())::text AS xmin, s.system_identifier::text AS system,
            CASE WHEN pg_is_in_recovery() THEN (SELECT timeline_id FROM pg_control_checkpoint())
                 ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int END AS timeline,
            (SELECT oid FROM pg_database WHERE datname = current_database())::int AS db
       FROM pg_control_system() s`,
  );
  const { xmin, system, timeline, db } = r.rows[0];
  return { xmin, systemIdentifier: system, timeline, databaseOid: db };
}

/**
 * A snapshot at an exact position of the WAL: the one a new logical slot exports, which sees
 * every transaction whose commit record starts before the slot's consistent point and none at
 * or after it. (The WAL position read beside an ordinary snapshot is no such boundary: a commit
 * can be in the WAL and not yet visible.) The slot is temporary, dropped when its connection
 * closes; the snapshot can be imported until then. Making the slot waits for the transactions
 * running when it starts: after `waitMs`, none (undefined), and the backup goes without.
 */
export async function changeLogBoundary(url: string, plan: TenancyPlan, opts: { waitMs: number; publication: string }): Promise<{ snapshot: string; lsn: string; release(): Promise<void> } | undefined> {
  const { waitMs } = opts;
  // tables made tenant-owned since the log last started join its publication now, before the boundary
  await withConnection(url, (pc) => publishOwnedTables(pc, opts.publication, plan, { create: false })).catch(() => undefined);
  let c: Client;
  try {
    c = await connect(url, 'tenantsafe-export-boundary', { replication: 'database' });
  } catch {
    return undefined;
  }
  const release = () => c.end().catch(() => undefined);
  const slot = `tenantsafe_boundary_${process.pid}_${Date.now().toString(36)}`;
  let timer: NodeJS.Timeout | undefined;
  try {
    const created = await Promise.race([
      c.query<{ consistent_point: string; snapshot_name: string }>(`CREATE_REPLICATION_SLOT ${slot} TEMPORARY LOGICAL pgoutput (SNAPSHOT 'export')`),
      new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), waitMs))),
    ]);
    if (!created) {
      await release();
      return undefined;
    }
    return { snapshot: created.rows[0].snapshot_name, lsn: created.rows[0].consistent_point, release };
  } catch {
    // wal_level below logical, no free slot, no REPLICATION privilege: a backup without a boundary
    await release();
    return undefined;
  } finally {
    clearTimeout(timer);
  }
}

export async function beginSnapshotTransaction(c: Client): Promise<void> {
  // A long export must not be cut off by server-side timeouts meant for app sessions.
  await c.query(`SET statement_timeout = 0; SET idle_in_transaction_session_timeout = 0; SET lock_timeout = '30s'`);
  await c.query('BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY');
}

async function exportTable(client: Client, table: OwnedTable, index: number, opts: ExportOptions): Promise<TableExport> {
  const objectKey = dataObjectKey(index, table.key, opts.compression.method);
  const copy = client.query(copyOut(`COPY (${opts.rowsQuery?.(table) ?? tenantRowsQuery(opts.plan, table, opts.tenantId)}) TO STDOUT`));
  const digest = new RowDigestStream();
  const compress = compressor(opts.compression);
  // COPY's chunks are a network read each (~20 KiB): a compressor's fixed cost per write (for
  // zlib a round trip through the thread pool) is paid per 256 KiB instead
  const pieces = new Rechunk(256 << 10);
  // encrypted: the cipher is the pipeline's last stage (its errors handled there, as the compressor's are), and what the store reads
  const seal = opts.dataKey?.seal();
  const [put] = await Promise.all([
    opts.store.put(opts.prefix + objectKey, seal ?? compress, { contentType: dataContentType(opts.compression.method, !!seal), signal: opts.signal }),
    seal ? pipeline(copy, digest, pieces, compress, seal) : pipeline(copy, digest, pieces, compress),
  ]);
  return {
    table: table.key,
    objectKey,
    rows: digest.digest.rows,
    rawBytes: digest.digest.bytes,
    bytes: put.bytes,
    sha256: put.sha256,
    rowChecksum: digest.digest.digest(),
  };
}

/**
 * A table's data object copied, stored bytes as they are, from another backup of the same tenant
 * whose rows of it are exactly the ones to back up (a restore's safety backup: the restored
 * backup's rows where the tenant's are still the very row versions it read). Same compression and
 * data key, so the bytes are what an export would store but for the order of the rows; the copy's
 * sha256 is checked against the source manifest's.
 */
export async function copyTableObject(
  store: ObjectStore,
  from: { prefix: string; table: ManifestTable },
  to: { prefix: string; index: number; method: DataCompressionMethod; encrypted: boolean; signal?: AbortSignal },
): Promise<TableExport> {
  const source = objectLocation(from.prefix, from.table.object);
  const objectKey = dataObjectKey(to.index, from.table.table, to.method);
  const bytes = source.range ? await store.getRange(source.key, source.range) : await store.get(source.key);
  const put = await store.put(to.prefix + objectKey, bytes, { contentType: dataContentType(to.method, to.encrypted), signal: to.signal });
  if (put.sha256 !== from.table.object.sha256) {
    throw new TenantsafeError(ErrorType.CorruptBackup, `The object of ${from.table.table} in ${from.prefix} does not match its sha256.`, 'Run `tenantsafe verify` on that backup; restore from another one.');
  }
  return { table: from.table.table, objectKey, rows: from.table.rows, rawBytes: from.table.rawBytes, bytes: put.bytes, sha256: put.sha256, rowChecksum: from.table.rowChecksum };
}
