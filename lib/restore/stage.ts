// Stage a backup into unlogged tables of a scratch schema in the live database, checking every
// object on the way in: its sha256 (stored bytes), and its row count and row checksum (content).
// Columns take the live types (or text, where the type is unchanged and the diff compares text
// anyway: TableMapping.stagedColumns), so a value that no longer fits its column stops the
// restore here, naming the column, before anything live is touched.
import type { Client, ClientBase } from 'pg';
import { from as copyFrom, type CopyStreamQuery } from 'pg-copy-streams';
import { Transform, type TransformCallback, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { RowDigestStream, Sha256Stream } from '../checksum';
import { decompressor, isDamagedInput, type DataCompressionMethod } from '../format/dataCompression';
import { discard, FirstLines } from '../streams';
import { ErrorType, TenantsafeError } from '../errors';
import { connect, inLanes, quoteIdent } from '../pg';
import type { ObjectStore } from '../storage/types';
import { requireKeyring, type EncryptionRecord } from '../encryption';
import { objectName, openObject, type ManifestTable, type TenantManifest } from '../format/tenantManifest';
import { reapplyErasures } from './erasures';
import type { RestoreContext, TableMapping } from './mapping';

/** A backed-up table to load, and where: its scratch table and the column types to give it. */
export interface StagedTable {
  table: string;
  manifest: ManifestTable;
  /** qualified scratch table */
  staged: string;
  stagedColumns: { name: string; type: string }[];
}

/** Where a backup's objects are. */
export interface BackupSource {
  store: ObjectStore;
  /** backup prefix in the store */
  prefix: string;
  /** the manifest's record of encryption (its objects are decrypted with that data key); required, so no caller forgets it */
  encryption: EncryptionRecord | undefined;
  /** the manifest's `data.compression` */
  compression: DataCompressionMethod;
}

/** Where a backup's objects are and how to read them, from its manifest. */
export function backupSource(store: ObjectStore, prefix: string, manifest: Pick<TenantManifest, 'encryption' | 'data'>): BackupSource {
  return { store, prefix, encryption: manifest.encryption, compression: manifest.data.compression };
}

export interface StageOptions extends BackupSource {
  url: string;
  parallelism: number;
  onProgress?: (p: { tablesDone: number; tablesTotal: number; rows: number }) => void;
  signal?: AbortSignal;
}

/** Work done on each table right after it is staged, in the same lane. */
export interface AfterStaging<T extends StagedTable> {
  /** each lane is one transaction that reads the live database as of this exported snapshot */
  snapshot: string;
  /** true: the live rows are the backed-up ones, nothing to load; only the object's stored bytes are checked */
  unchanged?: (c: Client, table: T) => Promise<boolean>;
  /** what is worth loading: some columns (none: only check the object), maybe of the first rows only; undefined: all of it */
  toStage?: (c: Client, table: T) => Promise<StagedPart | undefined>;
  work: (c: Client, table: T) => Promise<void>;
}

/** Part of a table to stage: these columns, of every row or of the first `firstRows` (every row is still checked). */
export interface StagedPart {
  columns: string[];
  firstRows?: number;
}

/** Stages a restore's backup, typed as the live columns (so drift surfaces here). */
export function stageBackup(ctx: RestoreContext, opts: StageOptions, then?: AfterStaging<TableMapping>): Promise<void> {
  return stageTables({ ...opts, schema: ctx.schema, tables: ctx.mappings, checkContent: true }, then);
}

/**
 * Creates the scratch schema and loads every table into it, in parallel. With checkContent the
 * rows are checked against the manifest on the way in (restore: stop before anything changes);
 * without, only the stored bytes are (verification reads them back and compares by itself).
 */
export async function stageTables<T extends StagedTable>(opts: StageOptions & { schema: string; tables: T[]; checkContent: boolean }, then?: AfterStaging<T>): Promise<void> {
  const setup = await connect(opts.url, 'tenantsafe-stage');
  try {
    await setup.query('BEGIN');
    await setup.query(`DROP SCHEMA IF EXISTS ${quoteIdent(opts.schema)} CASCADE`);
    await setup.query(`CREATE SCHEMA ${quoteIdent(opts.schema)}`);
    for (const m of opts.tables) await setup.query(createStaged(m, m.stagedColumns));
    await setup.query('COMMIT');
  } finally {
    await setup.end();
  }

  const progress = { tablesDone: 0, tablesTotal: opts.tables.length, rows: 0 };
  // A small sample is enough to plan the diff's joins: ANALYZE reads 3,000 rows, not 30,000.
  // The lanes keep the cores busy already: no parallel workers; the diff's hashes in memory.
  const beginLane = async (c: Client) => {
    await c.query(
      `SET statement_timeout = 0; SET client_min_messages = warning; SET default_statistics_target = 10; SET max_parallel_workers_per_gather = 0; SET work_mem = '64MB'`,
    );
    if (then) await c.query(`BEGIN ISOLATION LEVEL REPEATABLE READ; SET TRANSACTION SNAPSHOT '${then.snapshot}'`);
  };
  const commitLane = async (c: Client) => then && c.query('COMMIT');
  await inLanes(opts.url, 'tenantsafe-stage', opts.tables, { lanes: opts.parallelism, size: (m) => m.manifest.rawBytes, setup: beginLane, finish: commitLane, signal: opts.signal }, async (c, m) => {
    if (await then?.unchanged?.(c, m)) {
      // no scratch table: a plan computed again later stages it in full (stageInFull)
      await c.query(`DROP TABLE ${m.staged}`);
      await checkStoredBytes(opts, m);
    } else {
      const part = await then?.toStage?.(c, m);
      await stageTable(c, m, opts.checkContent, opts, part);
      if (part?.columns.length !== 0) await c.query(`ANALYZE ${m.staged}`);
    }
    await then?.work(c, m);
    progress.tablesDone++;
    progress.rows += m.manifest.rows;
    opts.onProgress?.(progress);
  });
}

/**
 * Stages in full, in the caller's transaction, the tables a preview staged in part or not at all
 * (a table the tenant had no row in: its keys, become its diff table; one whose rows were the
 * backed-up ones: nothing): a plan computed again needs every row and column. `everyTable`:
 * all of them, when the staged rows may be gone (see scratchSurvived). Then the erasures again.
 */
export async function stageInFull(c: ClientBase, ctx: RestoreContext, source: BackupSource, opts: { everyTable?: boolean } = {}): Promise<void> {
  for (const m of ctx.mappings.filter((x) => x.live)) {
    const r = await c.query(`SELECT count(*)::int AS n FROM pg_attribute WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped`, [m.staged]);
    if (r.rows[0].n === m.stagedColumns.length && !opts.everyTable) continue;
    await c.query(`DROP TABLE IF EXISTS ${m.staged}`);
    await c.query(createStaged(m, m.stagedColumns));
    await stageTable(c, m, true, source);
    await c.query(`ANALYZE ${m.staged}`);
  }
  await reapplyErasures(c, ctx);
}

const createStaged = (m: StagedTable, columns: StagedTable['stagedColumns']) =>
  `CREATE UNLOGGED TABLE ${m.staged} (${columns.map((c) => `${quoteIdent(c.name)} ${c.type}`).join(', ')})`;

/**
 * Loads a table's object into its scratch table, checked on the way. `part`: just these columns
 * (the scratch table is made of them; none: there is none, the object is only checked), maybe
 * of the first rows only.
 */
async function stageTable(c: ClientBase, m: StagedTable, checkContent: boolean, opts: BackupSource, part?: StagedPart): Promise<void> {
  const key = objectName(opts.prefix, m.manifest.object);
  const rows = new RowDigestStream();
  const columns = part ? m.stagedColumns.filter((col) => part.columns.includes(col.name)) : m.stagedColumns;
  if (part) {
    await c.query(`DROP TABLE ${m.staged}`);
    if (columns.length) await c.query(createStaged(m, columns));
  }
  const via: Transform[] = [rows];
  if (part?.firstRows !== undefined) via.push(new FirstLines(part.firstRows));
  if (part) via.push(new FieldPicker(m.stagedColumns.map((col) => columns.includes(col))));
  const names = columns.map((col) => quoteIdent(col.name)).join(', ');
  try {
    if (columns.length) await copyBackupObject(opts, m, via, c.query(copyFrom(`COPY ${m.staged} (${names}) FROM STDIN`)));
    else await readBackupObject(opts, m, via, discard());
  } catch (err) {
    throw stagingError(err, m);
  }
  if (checkContent && (rows.digest.rows !== m.manifest.rows || rows.digest.digest() !== m.manifest.rowChecksum)) {
    throw damagedObject(key, m.table, `its rows (${rows.digest.rows}, checksum ${rows.digest.digest()}) do not match the manifest (${m.manifest.rows}, ${m.manifest.rowChecksum})`);
  }
}

/**
 * Keeps the fields of each COPY text line whose position is marked (fields never hold a raw tab).
 * One pass over the bytes, its place in the line carried from chunk to chunk: a call per field
 * (indexOf, copy) cost more than loading the whole row.
 */
export class FieldPicker extends Transform {
  private field = 0;
  /** kept, and after another kept field: a tab goes before it */
  private readonly tabBefore: boolean[];
  private readonly lastKept: number;
  constructor(private readonly keep: boolean[]) {
    super();
    this.tabBefore = keep.map((k, i) => k && keep.slice(0, i).includes(true));
    this.lastKept = keep.lastIndexOf(true);
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    const out = Buffer.allocUnsafe(chunk.length);
    const { keep, tabBefore, lastKept } = this;
    let field = this.field;
    let o = 0;
    for (let i = 0; i < chunk.length; i++) {
      // past the last field kept (often a long text): straight to the line's end
      if (field > lastKept) {
        i = chunk.indexOf(10, i);
        if (i === -1) break;
      }
      const b = chunk[i];
      if (b === 10) {
        out[o++] = 10;
        field = 0;
      } else if (b === 9) {
        field++;
        if (tabBefore[field]) out[o++] = 9;
      } else if (keep[field]) {
        out[o++] = b;
      }
    }
    this.field = field;
    done(null, out.subarray(0, o));
  }
}

/**
 * Streams a backup object, decompressed (and through `via`), into a COPY FROM, checking the stored
 * bytes against the manifest's sha256: a damaged object throws CorruptBackup. Used by staging,
 * and by the apply for a table whose every backed-up row goes back in.
 */
export async function copyBackupObject(source: BackupSource, m: Pick<StagedTable, 'table' | 'manifest'>, via: Transform[], sink: CopyStreamQuery): Promise<number> {
  await readBackupObject(source, m, via, sink);
  return sink.rowCount;
}

/**
 * Streams a backup object, decompressed, through `via` into `sink`, checking its stored bytes (see
 * copyBackupObject). A part of a pack is read alone: only its byte range.
 */
async function readBackupObject(source: BackupSource, m: Pick<StagedTable, 'table' | 'manifest'>, via: Transform[], sink: Writable): Promise<void> {
  const key = objectName(source.prefix, m.manifest.object);
  const sha = new Sha256Stream();
  // The sink (a COPY FROM, sent already) fails by itself when its connection is lost: maybe while
  // the object is still being opened, or after this function gave up on it. An 'error' with no
  // listener would end the whole worker; the listener stays.
  let lost: Error | undefined;
  sink.on('error', (err: Error) => (lost ??= err));
  try {
    const decrypt = source.encryption ? [(await requireKeyring(source.store, `Backup object ${key}`).open(source.encryption, `Backup object ${key}`)).open(key)] : [];
    const object = await openObject(source.store, source.prefix, m.manifest.object);
    if (lost) {
      object.destroy();
      throw lost;
    }
    await pipeline([object, sha, ...decrypt, decompressor(source.compression), ...via, sink]);
  } catch (err) {
    throw isDamagedInput(err) ? damagedObject(key, m.table, (err as Error).message) : err;
  }
  assertStoredBytes(sha, key, m);
}

/** Checks a backup object's stored bytes (sha256) without reading its rows. */
async function checkStoredBytes(source: BackupSource, m: StagedTable): Promise<void> {
  const key = objectName(source.prefix, m.manifest.object);
  const sha = new Sha256Stream();
  await pipeline(await openObject(source.store, source.prefix, m.manifest.object), sha, discard());
  assertStoredBytes(sha, key, m);
}

function assertStoredBytes(sha: Sha256Stream, key: string, m: Pick<StagedTable, 'table' | 'manifest'>): void {
  const stored = sha.hex();
  if (stored !== m.manifest.object.sha256) throw damagedObject(key, m.table, `sha256 ${stored} does not match the manifest's ${m.manifest.object.sha256}`);
}

function damagedObject(key: string, table: string, what: string): TenantsafeError {
  return new TenantsafeError(ErrorType.CorruptBackup, `Backup object ${key} (${table}) is damaged: ${what}.`, 'Restore from another backup; run `tenantsafe verify <backupId>` on this one.');
}

/** Names the column when a backed-up value does not fit the live column any more. */
function stagingError(err: unknown, m: StagedTable): unknown {
  const e = err as { code?: string; message: string; where?: string };
  if (e instanceof TenantsafeError) return e;
  // 22xxx: data exceptions (invalid input syntax, out of range, ...) raised by COPY for a column
  if (e.code?.startsWith('22') || e.code === '23502') {
    const column = /column (\w+|"[^"]+")/.exec(e.where ?? '')?.[1]?.replace(/^"|"$/g, '');
    const mapped = m.stagedColumns.find((c) => c.name === column);
    const from = m.manifest.columns.find((c) => c.name === column)?.type;
    return new TenantsafeError(
      ErrorType.SchemaDrift,
      `Schema drift cannot be mapped: ${m.table}.${column ?? '?'} is ${mapped?.type ?? '?'} now (${from ?? '?'} in the backup) and a backed-up value does not fit: ${e.message}.`,
      `Change ${m.table}.${column ?? 'the column'} back to a type that holds the old values, or restore without this table (--tables).`,
    );
  }
  return err;
}
