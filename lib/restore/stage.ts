// Stage a backup into unlogged tables of a scratch schema in the live database, checking every
// object on the way in: its sha256 (stored bytes), and its row count and row checksum (content).
// Columns take the live types, so a value that no longer fits its column stops the restore here,
// naming the column, before anything live is touched.
import type { Client } from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { RowDigestStream, Sha256Stream } from '../checksum';
import { ErrorType, TenantsafeError } from '../errors';
import { connect, quoteIdent } from '../pg';
import type { ObjectStore } from '../storage/types';
import type { ManifestTable } from '../manifest';
import type { RestoreContext } from './mapping';

/** A backed-up table to load, and where: its scratch table and the column types to give it. */
export interface StagedTable {
  table: string;
  manifest: ManifestTable;
  /** qualified scratch table */
  staged: string;
  stagedColumns: { name: string; type: string }[];
}

export interface StageOptions {
  url: string;
  store: ObjectStore;
  /** backup prefix in the store */
  prefix: string;
  parallelism: number;
  onProgress?: (p: { tablesDone: number; tablesTotal: number; rows: number }) => void;
  signal?: AbortSignal;
}

/** Stages a restore's backup, typed as the live columns (so drift surfaces here). */
export function stageBackup(ctx: RestoreContext, opts: StageOptions): Promise<void> {
  return stageTables({ ...opts, schema: ctx.schema, tables: ctx.mappings, checkContent: true });
}

/**
 * Creates the scratch schema and loads every table into it, in parallel. With checkContent the
 * rows are checked against the manifest on the way in (restore: stop before anything changes);
 * without, only the stored bytes are (verification reads them back and compares by itself).
 */
export async function stageTables(opts: StageOptions & { schema: string; tables: StagedTable[]; checkContent: boolean }): Promise<void> {
  const setup = await connect(opts.url, 'tenantsafe-stage');
  try {
    await setup.query('BEGIN');
    await setup.query(`DROP SCHEMA IF EXISTS ${quoteIdent(opts.schema)} CASCADE`);
    await setup.query(`CREATE SCHEMA ${quoteIdent(opts.schema)}`);
    for (const m of opts.tables) {
      await setup.query(`CREATE UNLOGGED TABLE ${m.staged} (${m.stagedColumns.map((c) => `${quoteIdent(c.name)} ${c.type}`).join(', ')})`);
    }
    await setup.query('COMMIT');
  } finally {
    await setup.end();
  }

  const queue = [...opts.tables].sort((a, b) => b.manifest.rawBytes - a.manifest.rawBytes);
  const progress = { tablesDone: 0, tablesTotal: queue.length, rows: 0 };
  const lanes = Math.max(1, Math.min(opts.parallelism, queue.length));
  await Promise.all(
    Array.from({ length: lanes }, async () => {
      const c = await connect(opts.url, 'tenantsafe-stage');
      const abort = () => c.end().catch(() => undefined);
      opts.signal?.addEventListener('abort', abort, { once: true });
      try {
        // a small sample is enough to plan the diff's joins: ANALYZE reads 3,000 rows, not 30,000
        await c.query(`SET statement_timeout = 0; SET client_min_messages = warning; SET default_statistics_target = 10`);
        for (let m = queue.shift(); m; m = queue.shift()) {
          await stageTable(c, m, opts.checkContent, opts);
          await c.query(`ANALYZE ${m.staged}`);
          progress.tablesDone++;
          progress.rows += m.manifest.rows;
          opts.onProgress?.(progress);
        }
      } finally {
        opts.signal?.removeEventListener('abort', abort);
        await c.end().catch(() => undefined);
      }
    }),
  );
}

async function stageTable(c: Client, m: StagedTable, checkContent: boolean, opts: StageOptions): Promise<void> {
  const key = opts.prefix + m.manifest.object.key;
  const sha = new Sha256Stream();
  const rows = new RowDigestStream();
  const columns = m.stagedColumns.map((col) => quoteIdent(col.name)).join(', ');
  try {
    await pipeline(await opts.store.get(key), sha, createGunzip(), rows, c.query(copyFrom(`COPY ${m.staged} (${columns}) FROM STDIN`)));
  } catch (err) {
    throw stagingError(err, m, key);
  }
  if (sha.hex() !== m.manifest.object.sha256) throw damagedObject(key, m.table, `sha256 ${sha.hex()} does not match the manifest's ${m.manifest.object.sha256}`);
  if (checkContent && (rows.digest.rows !== m.manifest.rows || rows.digest.digest() !== m.manifest.rowChecksum)) {
    throw damagedObject(key, m.table, `its rows (${rows.digest.rows}, checksum ${rows.digest.digest()}) do not match the manifest (${m.manifest.rows}, ${m.manifest.rowChecksum})`);
  }
}

export function damagedObject(key: string, table: string, what: string): TenantsafeError {
  return new TenantsafeError(ErrorType.CorruptBackup, `Backup object ${key} (${table}) is damaged: ${what}.`, 'Restore from another backup; run `tenantsafe verify <backupId>` on this one.');
}

/** gunzip's complaints about a damaged stream */
export function isGzipError(e: { code?: string; message: string }): boolean {
  return e.code === 'Z_DATA_ERROR' || e.code === 'Z_BUF_ERROR' || /incorrect header check|unexpected end of file/.test(e.message);
}

/** Names the column when a backed-up value does not fit the live column any more. */
function stagingError(err: unknown, m: StagedTable, key: string): unknown {
  const e = err as { code?: string; message: string; where?: string };
  if (e instanceof TenantsafeError) return e;
  if (isGzipError(e)) return damagedObject(key, m.table, e.message);
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
