// Loads a tenant backup's objects into unlogged tables of a scratch schema and reads them back
// as row checksums: the restore test of verification, and the first step of a tenant restore
// (stage, then compare). Column types come from the manifest, so loading also proves every
// value still parses as its type; the read-back runs under the same session settings as the
// backup, so equal rows give equal checksums.
import type { Client, PoolClient } from 'pg';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { from as copyFrom, to as copyTo } from 'pg-copy-streams';
import { RowDigestStream } from '../checksum';
import type { TenantManifest } from '../manifest';
import { quoteIdent } from '../pg';
import type { ObjectStore } from '../storage/types';

type Db = Client | PoolClient;

/** The scratch table of a backed-up table: its schema-qualified name as one identifier. */
function scratchTable(schema: string, table: string): string {
  return `${quoteIdent(schema)}.${quoteIdent(table)}`;
}

export async function loadTenantBackupIntoScratch(db: Db, args: { store: ObjectStore; prefix: string; manifest: TenantManifest; schema: string }): Promise<void> {
  await db.query(`CREATE SCHEMA ${quoteIdent(args.schema)}`);
  for (const t of args.manifest.tables) {
    const types = new Map(t.columns.map((c) => [c.name, c.type]));
    const columns = t.copyColumns.map((c) => `${quoteIdent(c)} ${types.get(c)}`).join(', ');
    const target = scratchTable(args.schema, t.table);
    await db.query(`CREATE UNLOGGED TABLE ${target} (${columns})`);
    const source = await args.store.get(args.prefix + t.object.key);
    await pipeline(source, createGunzip(), db.query(copyFrom(`COPY ${target} (${t.copyColumns.map(quoteIdent).join(', ')}) FROM STDIN`)));
  }
}

/** Row count and row checksum of every scratch table, read back with COPY TO. */
export async function digestScratchTables(db: Db, args: { manifest: TenantManifest; schema: string }): Promise<Map<string, { rows: number; rowChecksum: string }>> {
  const out = new Map<string, { rows: number; rowChecksum: string }>();
  for (const t of args.manifest.tables) {
    const digest = new RowDigestStream();
    const copy = db.query(copyTo(`COPY (SELECT ${t.copyColumns.map(quoteIdent).join(', ')} FROM ${scratchTable(args.schema, t.table)}) TO STDOUT`));
    await pipeline(copy, digest, new Writable({ write: (_chunk, _enc, done) => done() }));
    out.set(t.table, { rows: digest.digest.rows, rowChecksum: digest.digest.digest() });
  }
  return out;
}

export async function dropScratchSchema(db: Db, schema: string): Promise<void> {
  await db.query(`DROP SCHEMA IF EXISTS ${quoteIdent(schema)} CASCADE`);
}
