// A logical dump of the database into our storage (the Supabase provider's "custom storage"
// half, so the customer holds a copy outside Supabase): pg_dump -Fd from a snapshot we export
// and record, each file of the dump directory uploaded with its sha256, manifest last.
import { spawnTied } from '../process';
import { createReadStream } from 'node:fs';
import { createWriteStream } from 'node:fs';
import { mkdtemp, readdir, rm, unlink } from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Engine } from '../engine';
import { pgBin } from '../postgres/tools';
import { ErrorType, TenantsafeError } from '../errors';
import { manifestFormatVersion, sealManifest, startedMarkerFile, writeManifest } from '../format/sealed';
import { Sha256Stream } from '../checksum';
import { connect, microsText, quoteIdent, toolConnection, withConnection } from '../pg';
import { runPgTool } from '../postgres/tools';
import { fullBackupPrefix, readFullManifest, type FullBackupObject, type FullManifest } from '../format/fullManifest';

export const dumpFolder = 'dump/';

export async function takeLogicalDump(engine: Engine, args: { backupId: string; onProgress?: (p: { phase: string; files: number }) => void; signal?: AbortSignal }): Promise<FullManifest> {
  const { config, store } = engine;
  const prefix = fullBackupPrefix(args.backupId);
  const startedAt = new Date().toISOString();
  await store.deletePrefix(prefix);
  await store.put(prefix + startedMarkerFile, Buffer.from(JSON.stringify({ backupId: args.backupId, startedAt }) + '\n'));
  const spool = await mkdtemp(path.join(os.tmpdir(), 'tenantsafe-dump-'));
  // The exporting transaction stays open while pg_dump (and its workers) read its snapshot.
  const holder = await connect(config.database.url, 'tenantsafe-dump');
  try {
    await holder.query('BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY');
    const snap = await holder.query<{ snapshot: string; at: string; db: string; version: string; sysid: string }>(
      `SELECT pg_export_snapshot() AS snapshot, ${microsText('clock_timestamp()')} AS at, current_database() AS db,
              current_setting('server_version') AS version, (SELECT system_identifier::text FROM pg_control_system()) AS sysid`,
    );
    const { snapshot, at, db, version, sysid } = snap.rows[0];
    const dir = path.join(spool, 'dump');
    args.onProgress?.({ phase: 'dumping', files: 0 });
    await runPgDump(config.database.url, ['-F', 'd', '-f', dir, `--snapshot=${snapshot}`, '-j', String(config.backup.parallelism), '-Z', String(config.backup.compressionLevel)], args.signal);
    await holder.query('COMMIT');

    const objects: FullBackupObject[] = [];
    for (const file of (await readdir(dir)).sort()) {
      const put = await store.put(`${prefix}${dumpFolder}${file}`, createReadStream(path.join(dir, file)), { signal: args.signal });
      objects.push({ key: `${dumpFolder}${file}`, bytes: put.bytes, sha256: put.sha256 });
      await unlink(path.join(dir, file));
      args.onProgress?.({ phase: 'uploading', files: objects.length });
    }
    const manifest = sealManifest({
      formatVersion: manifestFormatVersion,
      kind: 'full' as const,
      method: 'pg_dump' as const,
      provider: config.fullBackup.provider,
      backupId: args.backupId,
      database: db,
      serverVersion: version,
      systemIdentifier: sysid,
      startedAt,
      finishedAt: new Date().toISOString(),
      consistentAt: at,
      wal: null,
      backupManifest: null,
      objects,
      totals: { bytes: objects.reduce((n, o) => n + o.bytes, 0), rawBytes: objects.reduce((n, o) => n + o.bytes, 0) },
    });
    await writeManifest(store, prefix, manifest);
    return manifest;
  } finally {
    await holder.end().catch(() => undefined);
    await rm(spool, { recursive: true, force: true });
  }
}

function runPgDump(url: string, args: string[], signal?: AbortSignal): Promise<void> {
  const { conninfo, env } = toolConnection(url, 'tenantsafe-dump');
  const child = spawnTied(pgBin('pg_dump'), [...args, '-d', conninfo], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, ...env }, signal });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code) =>
      code === 0
        ? resolve()
        : reject(new TenantsafeError(ErrorType.DatabaseUnreachable, `pg_dump failed (exit code ${code}): ${stderr.trim()}`, 'Check that database.url reaches the database and its role may read every table.')),
    );
  });
}

export interface LogicalRestoreResult {
  backupId: string;
  /** the dump's snapshot: the restored database holds every commit before it */
  consistentAt: string;
  schemas: string[];
  files: number;
  bytes: number;
  durationMs: number;
}

/**
 * Restores a stored logical dump into another database (a new Supabase project after the first
 * one is lost): each file's sha256 checked on the way down, then `pg_restore` of the given schemas
 * (the tenancy's by default: a new project brings its own auth and storage schemas) in parallel.
 * Refuses a target where any of those schemas already holds a table: nothing is overwritten.
 */
export async function restoreLogicalDump(engine: Engine, args: { backupId: string; targetUrl: string; schemas?: string[]; signal?: AbortSignal }): Promise<LogicalRestoreResult> {
  const started = Date.now();
  const record = await engine.catalog.getFullBackup(args.backupId);
  if (record.method !== 'pg_dump') {
    throw new TenantsafeError(ErrorType.BadInput, `Full backup ${args.backupId} is a base backup, not a logical dump.`, 'Restore base backups with `tenantsafe pitr restore --target <dir>`; `tenantsafe full-backups list` shows each backup\'s method.');
  }
  const schemas = args.schemas?.length ? args.schemas : engine.config.tenancy.schemas;
  const occupied = await withConnection(args.targetUrl, async (c) =>
    (await c.query<{ schema: string; tables: number }>(
      `SELECT n.nspname AS schema, count(*)::int AS tables FROM pg_class r JOIN pg_namespace n ON n.oid = r.relnamespace
        WHERE n.nspname = ANY($1) AND r.relkind IN ('r', 'p') GROUP BY 1 ORDER BY 1`,
      [schemas],
    )).rows,
  );
  if (occupied.length > 0) {
    throw new TenantsafeError(
      ErrorType.BadInput,
      `The target database is not empty: ${occupied.map((o) => `schema ${o.schema} has ${o.tables} table(s)`).join(', ')}.`,
      'Restore into a new, empty database (a new project); nothing was changed.',
    );
  }
  const manifest = await readFullManifest(engine.store, record.prefix);
  const dir = await mkdtemp(path.join(os.tmpdir(), 'tenantsafe-restore-dump-'));
  try {
    let bytes = 0;
    for (const o of manifest.objects) {
      const check = new Sha256Stream();
      await pipeline(await engine.store.get(record.prefix + o.key), check, createWriteStream(path.join(dir, o.key.slice(dumpFolder.length))), { signal: args.signal });
      if (check.hex() !== o.sha256) {
        throw new TenantsafeError(ErrorType.CorruptBackup, `${record.prefix}${o.key} does not match the sha256 in its manifest.`, 'Restore another dump (`tenantsafe full-backups list`); `tenantsafe verify <backupId>` lists what is damaged. Nothing was restored.');
      }
      bytes += check.bytes;
    }
    // pg_restore -n restores what is in a schema, not the schema itself
    await withConnection(args.targetUrl, (c) => c.query(schemas.map((n) => `CREATE SCHEMA IF NOT EXISTS ${quoteIdent(n)};`).join('\n')));
    const { conninfo, env } = toolConnection(args.targetUrl, 'tenantsafe-restore');
    const run = await runPgTool(
      'pg_restore',
      ['--no-owner', '--no-privileges', '--exit-on-error', '-j', String(engine.config.backup.parallelism), ...schemas.flatMap((n) => ['-n', n]), '-d', conninfo, dir],
      { asCaller: true, env },
    );
    if (run.code !== 0) {
      throw new TenantsafeError(ErrorType.DatabaseUnreachable, `pg_restore into the target failed (exit code ${run.code}): ${run.output.slice(-2000)}`, 'Check that the URL reaches the new database and its role may create schemas; then drop what was restored and run again.');
    }
    return { backupId: args.backupId, consistentAt: record.consistentAt, schemas, files: manifest.objects.length, bytes, durationMs: Date.now() - started };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
