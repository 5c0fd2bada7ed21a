// The change log: every committed change to the tenant-owned tables, read from a logical
// replication slot and written to storage in segments (lib/format/changeLog.ts). A segment is
// acknowledged to the server only once its manifest is in storage and the catalog knows it, so
// a crash anywhere loses nothing; what the server sends again after one is dropped by its LSN.
import { promisify } from 'node:util';
import { gzip } from 'node:zlib';
import type { Client } from 'pg';
import type { Catalog } from '../catalog';
import { sha256Hex } from '../checksum';
import type { ChangeLogConfig } from '../config';
import type { Engine } from '../engine';
import { ErrorType, TenantsafeError } from '../errors';
import { keyringOf, type DataKey } from '../encryption';
import { changeLogStream, gapKey, sealGap, sealSegmentManifest, sealStart, segmentKeys, startKey, streamPrefix, streamSystemIdentifier, transactionLine } from '../format/changeLog';
import { connectionError, qualified, withConnection } from '../pg';
import type { ObjectStore } from '../storage/types';
import { discoverTenancy, type TenancyPlan } from '../tenancy';
import { databaseIdentity } from '../databaseIdentity';
import { formatMicros } from '../time';
import { formatLsn, parseLsn } from '../wal/names';
import { publishOwnedTables } from './publication';
import { ReplicationStream, type RelationShape, type Transaction } from './replication';

export interface ChangeLogProgress {
  stream: string;
  /** the end of the last transaction stored */
  durableLsn: string;
  segments: number;
  transactions: number;
  /** the server time up to which every commit is stored (null: not caught up during this run) */
  caughtUpAt: string | null;
}

/** The stream's id is the format's (lib/format/changeLog.ts); re-exported for those who import it from here. */
export { changeLogStream };

/** A segment is written once it holds this much (JSON), or when the flush interval is up. */
const segmentBytes = 32 << 20;

/**
 * Makes the database ready to stream: wal_level logical, every owned table with a replica
 * identity that logs its key (REPLICA IDENTITY FULL where there is no primary key), the
 * publication listing exactly the owned tables, the slot. A slot lost or dropped since the last
 * run is a gap, recorded, and a new slot starts the log again.
 */
export async function prepareChangeLog(engine: Engine): Promise<{ stream: string; startLsn: bigint }> {
  const { url } = engine.config.database;
  const cfg = engine.config.changeLog;
  return withConnection(url, async (c) => {
    const info = (
      await c.query<{ wal_level: string; system: string; db: number }>(
        `SELECT current_setting('wal_level') AS wal_level, s.system_identifier::text AS system, d.oid::int AS db
           FROM pg_control_system() s, pg_database d WHERE d.datname = current_database()`,
      )
    ).rows[0];
    if (info.wal_level !== 'logical') {
      throw new TenantsafeError(
        ErrorType.BadConfig,
        `The change log needs wal_level = logical; the database has ${info.wal_level}.`,
        'Run ALTER SYSTEM SET wal_level = logical and restart PostgreSQL (Supabase has it already), or set changeLog.enabled: false.',
      );
    }
    const stream = changeLogStream({ systemIdentifier: info.system, databaseOid: info.db });
    const plan = await discoverTenancy(c, engine.config.tenancy);
    await ensureReplicaIdentity(c, await tablesNeedingFullIdentity(c, plan), cfg);
    await publishOwnedTables(c, cfg.publication, plan, { create: true });
    const startLsn = await ensureSlot(c, engine, stream, cfg.slot);
    return { stream, startLsn };
  }).catch((err) => {
    throw connectionError(url, err);
  });
}

/** A partition's key (schema.name, unquoted) as SQL. */
const partitionSql = (key: string) => qualified(key.slice(0, key.indexOf('.')), key.slice(key.indexOf('.') + 1));

/**
 * Owned tables (partitions included) whose updates and deletes the log could not follow as they
 * are: no primary key nor replica identity index, and not REPLICA IDENTITY FULL. Once published,
 * the application's own updates and deletes of them would fail.
 */
export async function tablesNeedingFullIdentity(c: Client, plan: TenancyPlan): Promise<string[]> {
  const tables = plan.tables.flatMap((t) => [qualified(t.schema, t.name), ...t.partitions.map(partitionSql)]);
  const r = await c.query<{ t: string }>(
    `SELECT c.oid::regclass::text AS t FROM pg_class c
      WHERE c.oid = ANY($1::text[]::regclass[]) AND c.relkind = 'r' AND c.relreplident <> 'f'
        AND (c.relreplident = 'n' OR NOT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND (i.indisprimary OR i.indisreplident)))
      ORDER BY 1`,
    [tables],
  );
  return r.rows.map((x) => x.t);
}

async function ensureReplicaIdentity(c: Client, names: string[], cfg: ChangeLogConfig): Promise<void> {
  if (names.length === 0) return;
  if (!cfg.replicaIdentityFull) {
    throw new TenantsafeError(
      ErrorType.BadConfig,
      `Tenant-owned tables without a primary key cannot be in the change log as they are: ${names.join(', ')}.`,
      'Give them a primary key, or run ALTER TABLE ... REPLICA IDENTITY FULL on each (or set changeLog.replicaIdentityFull: true to let tenantsafe do it).',
    );
  }
  for (const t of names) await c.query(`ALTER TABLE ${t} REPLICA IDENTITY FULL`);
}

/** The slot, created if missing; where streaming resumes. A slot gone or lost since the log last ran is a gap. */
async function ensureSlot(c: Client, engine: Engine, stream: string, slot: string): Promise<bigint> {
  const { catalog, store } = engine;
  const found = (await c.query<{ wal_status: string | null; active_pid: number | null; confirmed: string | null; plugin: string | null }>(
    `SELECT wal_status, active_pid, confirmed_flush_lsn::text AS confirmed, plugin FROM pg_replication_slots WHERE slot_name = $1`,
    [slot],
  )).rows[0];
  if (found && found.plugin !== 'pgoutput') {
    throw new TenantsafeError(ErrorType.BadConfig, `Replication slot "${slot}" exists but is not a pgoutput logical slot.`, 'Set changeLog.slot to another name, or drop that slot.');
  }
  if (found?.active_pid) {
    // one change log per database (one workflow id): a holder is a stream a killed worker left
    await c.query(`SELECT pg_terminate_backend($1)`, [found.active_pid]);
    await waitUntilInactive(c, slot);
  }
  const known = await catalog.getChangeLogStream(stream);
  const end = await catalog.changeLogEnd(stream);
  if (found && found.wal_status !== 'lost') {
    if (!known) await recordStart(store, catalog, stream, found.confirmed!);
    return parseLsn(end?.lsn ?? known?.startedLsn ?? found.confirmed!);
  }
  if (found) await c.query(`SELECT pg_drop_replication_slot($1)`, [slot]);
  const created = parseLsn((await c.query<{ lsn: string }>(`SELECT lsn::text FROM pg_create_logical_replication_slot($1, 'pgoutput')`, [slot])).rows[0].lsn);
  if (!known) {
    await recordStart(store, catalog, stream, formatLsn(created));
  } else {
    const to = { lsn: formatLsn(created), time: formatMicros(BigInt(Date.now()) * 1000n) };
    const from = end ? { lsn: end.lsn, time: end.time } : { lsn: known.startedLsn, time: null };
    const reason = found ? 'the slot was invalidated: the server removed WAL it still needed (max_slot_wal_keep_size)' : 'the slot was dropped';
    const gap = sealGap({ stream, from, to, reason });
    await store.put(gapKey(stream, parseLsn(from.lsn), created), Buffer.from(JSON.stringify(gap, null, 2) + '\n'), { contentType: 'application/json' });
    await catalog.recordChangeLogGap({ stream, fromLsn: from.lsn, toLsn: to.lsn, fromTime: from.time, toTime: to.time, reason });
  }
  return created;
}

/** In storage first, so a catalog rebuilt from storage knows where the log begins. */
async function recordStart(store: ObjectStore, catalog: Catalog, stream: string, lsn: string): Promise<void> {
  const at = formatMicros(BigInt(Date.now()) * 1000n);
  await store.put(startKey(stream), Buffer.from(JSON.stringify(sealStart({ stream, lsn, at }), null, 2) + '\n'), { contentType: 'application/json' });
  await catalog.recordChangeLogStart(stream, lsn, at);
}

async function waitUntilInactive(c: Client, slot: string): Promise<void> {
  for (let i = 0; i < 100; i++) {
    const r = await c.query(`SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1`, [slot]);
    if (!r.rows[0]?.active_pid) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** Streams changes into storage for `runForMs`, then returns (the workflow calls it again). */
export async function captureChanges(engine: Engine, opts: { runForMs: number; signal?: AbortSignal; onProgress?: (p: ChangeLogProgress) => void }): Promise<ChangeLogProgress> {
  const cfg = engine.config.changeLog;
  const { stream, startLsn } = await prepareChangeLog(engine);
  const progress: ChangeLogProgress = { stream, durableLsn: formatLsn(startLsn), segments: 0, transactions: 0, caughtUpAt: null };
  const replication = await ReplicationStream.open({ url: engine.config.database.url, slot: cfg.slot, publication: cfg.publication, startLsn });
  const segment = new SegmentWriter(engine.store, engine.catalog, stream, engine.config.backup.compressionLevel);
  let durable = startLsn;
  let caughtUpRecorded = 0n;
  const flush = async () => {
    const end = await segment.flush();
    if (end === undefined) return;
    durable = end;
    replication.acknowledge(end);
    progress.durableLsn = formatLsn(end);
    progress.segments++;
  };
  const deadline = Date.now() + opts.runForMs;
  try {
    while (Date.now() < deadline && !opts.signal?.aborted) {
      // idle, it still looks every flush interval: a keepalive saying it caught up does not wake it,
      // and until it records that, a restore to a time after the last logged commit waits
      const waitMs = segment.pending ? Math.max(0, segment.startedAt + cfg.flushIntervalMs - Date.now()) : Math.min(cfg.flushIntervalMs, Math.max(0, deadline - Date.now()));
      const txn = await replication.next(opts.signal, Math.max(1, waitMs));
      // sent again after a crash (the server's own position is not durable): already stored
      if (txn && txn.endLsn > durable) {
        if (!segment.accepts(txn)) await flush();
        segment.add(txn);
        progress.transactions++;
      }
      if (segment.pending && (Date.now() >= segment.startedAt + cfg.flushIntervalMs || segment.bytes >= segmentBytes)) await flush();
      const caughtUp = replication.caughtUpTo;
      if (!segment.pending && caughtUp && caughtUp.lsn > caughtUpRecorded) {
        caughtUpRecorded = caughtUp.lsn;
        progress.caughtUpAt = formatMicros(caughtUp.serverTimeUs);
        await engine.catalog.recordChangeLogCaughtUp(stream, formatLsn(caughtUp.lsn), progress.caughtUpAt);
      }
      opts.onProgress?.(progress);
    }
    await flush();
  } finally {
    await replication.close();
  }
  return progress;
}

/** The transactions of the segment being gathered; written (data, manifest, catalog) by flush(). */
class SegmentWriter {
  private txns: Transaction[] = [];
  private lines: string[] = [];
  private relations: Record<string, RelationShape> = {};
  bytes = 0;
  startedAt = 0;
  private dataKey: DataKey | null | undefined;

  constructor(
    private readonly store: ObjectStore,
    private readonly catalog: Catalog,
    private readonly stream: string,
    private readonly compressionLevel: number,
  ) {}

  get pending(): boolean {
    return this.txns.length > 0;
  }

  /** A segment holds one shape per table: a table whose columns changed starts a new one. */
  accepts(txn: Transaction): boolean {
    return Object.entries(txn.relations).every(([t, shape]) => !this.relations[t] || sameShape(this.relations[t], shape));
  }

  add(txn: Transaction): void {
    if (!this.pending) this.startedAt = Date.now();
    this.txns.push(txn);
    const line = transactionLine(txn);
    this.lines.push(line);
    this.bytes += line.length + 1;
    Object.assign(this.relations, txn.relations);
  }

  /** Writes the segment: its data, then its manifest, then its catalog row. Returns the end of its last transaction. */
  async flush(): Promise<bigint | undefined> {
    if (!this.pending) return undefined;
    const first = this.txns[0];
    const last = this.txns[this.txns.length - 1];
    const keys = segmentKeys(this.stream, first.commitLsn, last.endLsn);
    const raw = Buffer.from(this.lines.join('\n') + '\n');
    // the cluster's data key (lib/encryption), read once per writer: a database key is never erased
    this.dataKey ??= (await keyringOf(this.store)?.forDatabase(streamSystemIdentifier(this.stream))) ?? null;
    const gzipped = await gzipAsync(raw, { level: this.compressionLevel });
    const data = this.dataKey ? this.dataKey.sealBuffer(gzipped) : gzipped;
    const put = await this.store.put(keys.data, data, { contentType: 'application/gzip' });
    const manifest = sealSegmentManifest({
      stream: this.stream,
      firstCommitLsn: formatLsn(first.commitLsn),
      lastEndLsn: formatLsn(last.endLsn),
      firstCommitTime: formatMicros(first.commitTimeUs),
      lastCommitTime: formatMicros(last.commitTimeUs),
      transactions: this.txns.length,
      changes: this.txns.reduce((n, t) => n + t.changes.length, 0),
      relations: Object.fromEntries(Object.entries(this.relations).map(([t, { columns, identity, identityKind }]) => [t, { columns, identity, identityKind }])),
      object: { key: keys.data.slice(streamPrefix(this.stream).length), bytes: put.bytes, sha256: put.sha256, rawBytes: raw.length },
      ...(this.dataKey ? { encryption: this.dataKey.record } : {}),
    });
    const body = Buffer.from(JSON.stringify(manifest, null, 2) + '\n');
    await this.store.put(keys.manifest, body, { contentType: 'application/json' });
    await this.catalog.recordChangeSegment({
      stream: this.stream,
      firstCommitLsn: manifest.firstCommitLsn,
      lastEndLsn: manifest.lastEndLsn,
      firstCommitTime: manifest.firstCommitTime,
      lastCommitTime: manifest.lastCommitTime,
      manifestKey: keys.manifest,
      manifestSha256: sha256Hex(body),
      transactions: manifest.transactions,
      bytes: put.bytes,
    });
    this.txns = [];
    this.lines = [];
    this.relations = {};
    this.bytes = 0;
    return last.endLsn;
  }
}

function sameShape(a: RelationShape, b: RelationShape): boolean {
  return a.columns.join('\0') === b.columns.join('\0') && a.identity.join('\0') === b.identity.join('\0');
}

const gzipAsync = promisify(gzip);

/** Where the change log stands, for `changelog status` and monitoring: what it holds, its gaps, and its slot. */
export async function changeLogState(engine: Engine): Promise<{
  stream: string;
  startedAt: string | null;
  durable: { lsn: string; time: string } | null;
  caughtUpAt: string | null;
  gaps: Awaited<ReturnType<Catalog['listChangeLogGaps']>>;
  slot: { name: string; exists: boolean; walStatus: string | null; lagBytes: number; safeWalBytes: number | null };
  /** max_slot_wal_keep_size in bytes; null: unlimited (the slot may hold WAL until the disk fills) */
  maxSlotWalKeepBytes: number | null;
}> {
  const stream = changeLogStream(await databaseIdentity(engine));
  const started = await engine.catalog.getChangeLogStream(stream);
  const durable = (await engine.catalog.changeLogEnd(stream)) ?? null;
  const gaps = await engine.catalog.listChangeLogGaps(stream);
  const name = engine.config.changeLog.slot;
  const slot = await withConnection(engine.config.database.url, (c) =>
    c.query<{ wal_status: string | null; lag: string | null; safe: string | null; keep: string }>(
      `SELECT s.wal_status, (pg_current_wal_lsn() - coalesce(s.confirmed_flush_lsn, s.restart_lsn))::bigint::text AS lag, s.safe_wal_size::text AS safe,
              (SELECT setting::bigint * 1048576 FROM pg_settings WHERE name = 'max_slot_wal_keep_size')::text AS keep
         FROM (SELECT 1) one LEFT JOIN pg_replication_slots s ON s.slot_name = $1`,
      [name],
    ),
  );
  const row = slot.rows[0];
  const s = row.wal_status === null && row.lag === null ? undefined : row;
  const keep = Number(row.keep);
  return {
    stream,
    startedAt: started?.startedAt ?? null,
    durable,
    caughtUpAt: started?.caughtUpAt ?? null,
    gaps,
    slot: { name, exists: !!s, walStatus: s?.wal_status ?? null, lagBytes: Number(s?.lag ?? 0), safeWalBytes: s?.safe == null ? null : Number(s.safe) },
    maxSlotWalKeepBytes: keep < 0 ? null : keep,
  };
}
