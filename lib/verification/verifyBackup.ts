// Verification of a backup, check by check, with a closed result set per check
// (ok | missing | checksum_mismatch | size_invalid | other), counting every problem rather than
// stopping at the first (restic, pgBackRest):
//   manifest         it parses, its format version is known, it matches its own checksum
//   object           every object in the manifest exists, has its size and its sha256
//   wal              (physical) every segment from start to stop is archived and intact, and the
//                    archive has no gap from the backup's start to its newest segment
//   pg_verifybackup  (physical) PostgreSQL's own check of the extracted files and the WAL
//   restore          physical: recovery of a scratch cluster to the backup's consistent point,
//                    then every table of every database read; tenant: the objects loaded into a
//                    scratch schema and each table's row checksum recomputed and compared;
//                    logical dump: pg_restore reads its table of contents
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { backupSource, stageTables } from '../restore/stage';
import { rowsDigest } from '../restore/verifyApplied';
import { pipeline } from 'node:stream/promises';
import { Sha256Stream } from '../checksum';
import { requireKeyring, type DataKey } from '../encryption';
import { discard } from '../streams';
import type { FullBackupRecord } from '../catalog';
import { PrivateCluster } from '../postgres/cluster';
import { makeScratchDir } from '../postgres/scratch';
import { runPgTool } from '../postgres/tools';
import type { Engine } from '../engine';
import { ErrorType, TenantsafeError } from '../errors';
import { dumpFolder } from '../fullBackup/logicalDump';
import { baseObjectOf, fullBackupPrefix, parseFullManifest, readFullManifest, type FullBackupObject, type FullManifest } from '../format/fullManifest';
import { parseBackupLabel } from '../labels';
import { objectLocation, objectName, openObject, parseManifest, type ManifestObject, type TenantManifest } from '../format/tenantManifest';
import { manifestFile } from '../format/sealed';
import { connect, qualified, quoteIdent, withClient } from '../pg';
import { restorePhysicalBackup } from '../pitr/restore';
import type { ObjectStore } from '../storage/types';
import { fetchWalFile, findWalGaps, listWalArchive } from '../wal/archive';
import { segmentRange } from '../wal/names';

export const checkResults = ['ok', 'missing', 'checksum_mismatch', 'size_invalid', 'other'] as const;
export type CheckResult = (typeof checkResults)[number];

export interface VerificationCheck {
  check: 'manifest' | 'object' | 'wal' | 'pg_verifybackup' | 'restore';
  /** what was checked: an object key, a segment, a table */
  target: string;
  result: CheckResult;
  detail?: string;
}

export interface VerificationReport {
  backupId: string;
  kind: 'full' | 'tenant';
  verifiedAt: string;
  ok: boolean;
  counts: Record<CheckResult, number>;
  checks: VerificationCheck[];
}

export interface LocatedBackup {
  backupId: string;
  kind: 'full' | 'tenant';
  prefix: string;
}

/** Where a backup lives: by its label's kind, the catalog, else a scan of storage (a catalog may lag). */
export async function locateBackup(engine: Engine, backupId: string): Promise<LocatedBackup> {
  const label = parseBackupLabel(backupId);
  const notFound = () =>
    new TenantsafeError(ErrorType.BackupNotFound, `There is no backup "${backupId}".`, 'List backups with `tenantsafe backups list` or `tenantsafe full-backups list`.');
  if (!label) throw notFound();
  if (label.kind === 'full') {
    if (!(await engine.store.stat(fullBackupPrefix(backupId) + manifestFile)) && !(await hasObjects(engine.store, fullBackupPrefix(backupId)))) throw notFound();
    return { backupId, kind: 'full', prefix: fullBackupPrefix(backupId) };
  }
  const indexed = await engine.catalog.getBackup(backupId).catch(() => null);
  if (indexed) return { backupId, kind: 'tenant', prefix: indexed.prefix };
  for await (const o of engine.store.list('tenants/')) {
    const m = /^(tenants\/[^/]+\/([^/]+)\/)/.exec(o.key);
    if (m && m[2] === backupId) return { backupId, kind: 'tenant', prefix: m[1] };
  }
  throw notFound();
}

async function hasObjects(store: ObjectStore, prefix: string): Promise<boolean> {
  for await (const _ of store.list(prefix)) return true;
  return false;
}

function resultOf(err: unknown): CheckResult {
  const type = (err as TenantsafeError).type;
  if (type === ErrorType.ObjectMissing) return 'missing';
  if (type === ErrorType.CorruptBackup && /checksum|sha256/i.test((err as Error).message)) return 'checksum_mismatch';
  return 'other';
}

/** The backup's manifest, parsed and checked (format version, own checksum). */
export async function readBackupManifest(store: ObjectStore, located: LocatedBackup): Promise<FullManifest | TenantManifest> {
  const key = located.prefix + manifestFile;
  const body = await store.getBytes(key);
  return located.kind === 'full' ? parseFullManifest(body, key) : parseManifest(body, key, store);
}

/** The manifest check and one check per object; the parsed manifest when it could be read. */
export async function checkManifestAndObjects(
  store: ObjectStore,
  located: LocatedBackup,
  /**
   * `earlier`: the object checks an earlier attempt made (it died after them: a killed worker),
   * taken as they are rather than reading those objects again; `onCheck`: the checks so far,
   * after each object.
   */
  resume: { earlier?: VerificationCheck[]; onCheck?: (checks: VerificationCheck[]) => void } = {},
): Promise<{ checks: VerificationCheck[]; manifest: FullManifest | TenantManifest | null }> {
  let manifest: FullManifest | TenantManifest;
  try {
    manifest = await readBackupManifest(store, located);
  } catch (err) {
    return { checks: [{ check: 'manifest', target: manifestFile, result: resultOf(err), detail: (err as Error).message }], manifest: null };
  }
  const checks: VerificationCheck[] = [{ check: 'manifest', target: manifestFile, result: 'ok' }];
  const objects = 'tables' in manifest ? manifest.tables.map((t) => t.object) : manifest.objects;
  // encrypted: each object is decrypted too (every chunk's tag checked); a key that cannot be had is a check of its own
  let dataKey: DataKey | undefined;
  if (manifest.encryption) {
    try {
      dataKey = await requireKeyring(store, `Backup ${located.backupId}`).open(manifest.encryption, `Backup ${located.backupId}`);
    } catch (err) {
      checks.push({ check: 'object', target: manifest.encryption.key, result: (err as TenantsafeError).type === ErrorType.DataKeyErased ? 'missing' : 'other', detail: (err as Error).message });
    }
  }
  for (const o of objects) {
    const target = objectLocation(located.prefix, o).range ? objectName(located.prefix, o) : o.key;
    // a tenant backup's objects are all encrypted; of a full backup's, those marked
    const key = 'tables' in manifest || (o as FullBackupObject).encrypted ? dataKey : undefined;
    checks.push(resume.earlier?.find((c) => c.check === 'object' && c.target === target) ?? (await checkObject(store, located.prefix, o, key)));
    resume.onCheck?.(checks);
  }
  return { checks, manifest };
}

/** An object's check; a part of a pack (tenant manifests of format 2) is checked as its byte range of the pack. */
async function checkObject(store: ObjectStore, prefix: string, o: ManifestObject | FullBackupObject, dataKey?: DataKey): Promise<VerificationCheck> {
  const { key, range } = objectLocation(prefix, o);
  const target = range ? objectName(prefix, o) : o.key;
  const found = await store.stat(key);
  if (!found) return { check: 'object', target, result: 'missing' };
  const end = range ? range.offset + range.length : o.bytes;
  if (range ? found.bytes < end : found.bytes !== o.bytes) {
    return { check: 'object', target, result: 'size_invalid', detail: range ? `pack holds ${found.bytes} bytes, the part ends at ${end}` : `${found.bytes} bytes stored, ${o.bytes} in the manifest` };
  }
  const sha = new Sha256Stream();
  try {
    await pipeline([await openObject(store, prefix, o), sha, ...(dataKey ? [dataKey.open(target)] : []), discard()]);
  } catch (err) {
    if (!(err instanceof TenantsafeError) || err.type !== ErrorType.CorruptBackup) throw err;
    return { check: 'object', target, result: 'checksum_mismatch', detail: err.message };
  }
  const sha256 = sha.hex();
  return sha256 === o.sha256 ? { check: 'object', target, result: 'ok' } : { check: 'object', target, result: 'checksum_mismatch', detail: `sha256 ${sha256}, manifest says ${o.sha256}` };
}

/** Physical backups: the segments it needs are archived and intact; no gap after its start. */
export async function checkWal(store: ObjectStore, manifest: FullManifest): Promise<VerificationCheck[]> {
  const wal = manifest.wal;
  if (!wal) return [];
  const listing = await listWalArchive(store);
  const checks: VerificationCheck[] = [];
  for (const name of segmentRange(wal.startSegment, wal.stopSegment, wal.segmentSize)) {
    try {
      const bytes = await fetchWalFile(store, listing, name, wal.segmentSize);
      checks.push({ check: 'wal', target: name, result: bytes ? 'ok' : 'missing', ...(bytes ? {} : { detail: 'needed to make the backup consistent' }) });
    } catch (err) {
      checks.push({ check: 'wal', target: name, result: resultOf(err), detail: (err as Error).message });
    }
  }
  for (const gap of findWalGaps(listing, wal.segmentSize, wal.startSegment)) {
    if (checks.some((c) => c.target === gap.from)) continue; // already counted as needed for consistency
    checks.push({ check: 'wal', target: gap.count > 1 ? `${gap.from}..${gap.to}` : gap.from, result: 'missing', detail: `gap of ${gap.count} segment(s): point-in-time recovery cannot cross it` });
  }
  return checks;
}

/** pg_verifybackup's complaints, one check each. */
function pgVerifybackupChecks(code: number, output: string, baseKey: string): VerificationCheck[] {
  if (code === 0) return [{ check: 'pg_verifybackup', target: baseKey, result: 'ok' }];
  const problems = output
    .split('\n')
    .filter((l) => /^pg_verifybackup: error: /.test(l))
    .map((l) => l.replace(/^pg_verifybackup: error: /, ''));
  const classify = (line: string): CheckResult =>
    /checksum mismatch/.test(line) ? 'checksum_mismatch' : /not on disk|could not open/.test(line) ? 'missing' : /has size .* on disk but size/.test(line) ? 'size_invalid' : 'other';
  const checks = problems.map((line): VerificationCheck => ({ check: 'pg_verifybackup', target: /"([^"]+)"/.exec(line)?.[1] ?? baseKey, result: classify(line), detail: line }));
  return checks.length ? checks : [{ check: 'pg_verifybackup', target: baseKey, result: 'other', detail: output.trim().slice(-500) }];
}

/** Physical backups: pg_verifybackup on the extracted files, then a real recovery in a scratch cluster. */
export async function restoreTestPhysical(engine: Engine, record: Pick<FullBackupRecord, 'backupId' | 'prefix' | 'wal'>, signal?: AbortSignal): Promise<VerificationCheck[]> {
  const { store } = engine;
  const wal = record.wal!;
  const { work } = await makeScratchDir(engine, 'tenantsafe-verify-');
  const checks: VerificationCheck[] = [];
  let cluster: PrivateCluster | undefined;
  try {
    const listing = await listWalArchive(store);
    const dataDir = path.join(work, 'data');
    const result = await restorePhysicalBackup({
      store,
      backup: record,
      listing,
      target: 'immediate',
      dataDir,
      port: 0,
      signal,
      beforeStart: async (dir) => {
        const walDir = path.join(work, 'wal');
        await mkdir(walDir);
        for (const name of segmentRange(wal.startSegment, wal.stopSegment, wal.segmentSize)) {
          const bytes = await fetchWalFile(store, listing, name, wal.segmentSize).catch(() => null);
          if (bytes) await writeFile(path.join(walDir, name), bytes);
        }
        const run = await runPgTool('pg_verifybackup', ['--wal-directory', walDir, dir], { asCaller: true });
        checks.push(...pgVerifybackupChecks(run.code, run.output, baseObjectOf(await readFullManifest(store, record.prefix)).object.key));
      },
    });
    cluster = await PrivateCluster.attach(dataDir);
    const tables = await readEveryTable(cluster);
    checks.push({ check: 'restore', target: 'scratch cluster', result: 'ok', detail: `recovered to ${result.lsn}; read ${tables} tables` });
  } catch (err) {
    checks.push({ check: 'restore', target: 'scratch cluster', result: resultOf(err), detail: (err as Error).message.slice(0, 2000) });
  } finally {
    await cluster?.remove().catch(() => undefined);
    await rm(work, { recursive: true, force: true });
  }
  return checks;
}

/** Reads every user table of every database of a running cluster in full; returns how many. */
async function readEveryTable(cluster: PrivateCluster): Promise<number> {
  let tables = 0;
  for (const { datname } of await cluster.psql<{ datname: string }>(`SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate`)) {
    const c = await connect(cluster.url(datname), 'tenantsafe-verify');
    try {
      const rels = await c.query<{ nspname: string; relname: string }>(
        `SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE c.relkind IN ('r', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'`,
      );
      for (const r of rels.rows) await c.query(`SELECT count(*) FROM ${quoteIdent(r.nspname)}.${quoteIdent(r.relname)}`);
      tables += rels.rowCount ?? 0;
    } finally {
      await c.end();
    }
  }
  return tables;
}

/** Tenant backups: load into a scratch schema, recompute every table's row checksum, compare. */
export async function restoreTestTenant(engine: Engine, located: LocatedBackup, manifest: TenantManifest): Promise<VerificationCheck[]> {
  const schema = `tenantsafe_verify_${randomBytes(4).toString('hex')}`;
  return withClient(engine.db, engine.config.database.url, async (db) => {
    try {
      // typed as the backup's own columns: this tests the backup, whatever the live schema is now
      const tables = manifest.tables.map((t, i) => ({
        table: t.table,
        manifest: t,
        staged: qualified(schema, `t${i + 1}`),
        stagedColumns: t.copyColumns.map((name) => ({ name, type: t.columns.find((c) => c.name === name)!.type })),
      }));
      await stageTables({ url: engine.config.database.url, ...backupSource(engine.store, located.prefix, manifest), parallelism: engine.config.backup.parallelism, schema, tables, checkContent: false });
      const digests = new Map<string, { rows: number; checksum: string }>();
      for (const t of tables) digests.set(t.table, await rowsDigest(db, `SELECT ${t.manifest.copyColumns.map(quoteIdent).join(', ')} FROM ${t.staged}`));
      return manifest.tables.map((t): VerificationCheck => {
        const got = digests.get(t.table)!;
        if (got.rows !== t.rows) return { check: 'restore', target: t.table, result: 'size_invalid', detail: `${got.rows} rows restored, ${t.rows} in the manifest` };
        if (got.checksum !== t.rowChecksum) return { check: 'restore', target: t.table, result: 'checksum_mismatch', detail: `row checksum ${got.checksum} after restore, ${t.rowChecksum} in the manifest` };
        return { check: 'restore', target: t.table, result: 'ok' };
      });
    } catch (err) {
      return [{ check: 'restore', target: `scratch schema ${schema}`, result: 'other', detail: (err as Error).message }];
    } finally {
      await db.query(`DROP SCHEMA IF EXISTS ${quoteIdent(schema)} CASCADE`);
    }
  });
}

/** Logical dumps: pg_restore must read the table of contents of the stored dump. */
export async function checkLogicalDump(store: ObjectStore, prefix: string, manifest: FullManifest): Promise<VerificationCheck[]> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'tenantsafe-verify-dump-'));
  try {
    for (const o of manifest.objects) await writeFile(path.join(dir, o.key.slice(dumpFolder.length)), await store.getBytes(prefix + o.key));
    const run = await runPgTool('pg_restore', ['--list', dir], { asCaller: true });
    return [{ check: 'restore', target: 'pg_restore --list', result: run.code === 0 ? 'ok' : 'other', ...(run.code === 0 ? {} : { detail: run.output.slice(-1000) }) }];
  } catch (err) {
    return [{ check: 'restore', target: 'pg_restore --list', result: resultOf(err), detail: (err as Error).message }];
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

export function summarizeChecks(backupId: string, kind: 'full' | 'tenant', checks: VerificationCheck[], verifiedAt: string): VerificationReport {
  const counts = Object.fromEntries(checkResults.map((r) => [r, checks.filter((c) => c.result === r).length])) as Record<CheckResult, number>;
  return { backupId, kind, verifiedAt, ok: checks.length > 0 && counts.ok === checks.length, counts, checks };
}

/** The human-readable form of a report. */
export function formatReport(r: VerificationReport): string {
  const problems = r.checks.filter((c) => c.result !== 'ok');
  return [
    `Verification of ${r.kind} backup ${r.backupId} at ${r.verifiedAt}: ${r.ok ? 'OK' : `${problems.length} problem(s)`}`,
    `  ${checkResults.map((k) => `${k}: ${r.counts[k]}`).join(', ')}`,
    ...r.checks.map((c) => `  [${c.result}] ${c.check} ${c.target}${c.detail ? ` — ${c.detail}` : ''}`),
  ].join('\n');
}

/** reports/verify/<backupId>/<YYYYMMDD-HHMMSS>.json and .txt; returns the JSON key. */
export async function writeReport(store: ObjectStore, r: VerificationReport): Promise<string> {
  const stamp = r.verifiedAt.replace(/[-:]/g, '').replace('T', '-').slice(0, 15);
  const base = `reports/verify/${r.backupId}/${stamp}`;
  await store.put(`${base}.txt`, Buffer.from(formatReport(r) + '\n'), { contentType: 'text/plain' });
  await store.put(`${base}.json`, Buffer.from(JSON.stringify(r, null, 2) + '\n'), { contentType: 'application/json' });
  return `${base}.json`;
}
