// A logical dump of the database into our storage (the Supabase provider's "custom storage"
// half, so the customer holds a copy outside Supabase): pg_dump -Fd from a snapshot we export
// and record, each file of the dump directory uploaded with its sha256, manifest last.
import { spawn } from 'node:child_process';
import { createReadStream } from 'node:fs';
import { mkdtemp, readdir, rm, unlink } from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Engine } from '../engine';
import { pgBin } from '../postgres/tools';
import { ErrorType, TenantsafeError } from '../errors';
import { manifestFormatVersion, sealManifest, startedMarkerFile, writeManifest } from '../format/sealed';
import { connect, microsText, toolConnection } from '../pg';
import { fullBackupPrefix, type FullBackupObject, type FullManifest } from '../format/fullManifest';

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
  const child = spawn(pgBin('pg_dump'), [...args, '-d', conninfo], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, ...env }, signal });
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
