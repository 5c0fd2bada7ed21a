// A disaster-recovery drill (issue 21): restore the newest full backup and the archived WAL into
// a scratch cluster, as a real recovery would, check what came back, measure the achieved RTO and
// RPO against dr.targets, remove the scratch cluster (always), and write the report that proves it
// (lib/dr/report.ts). No row leaves the clusters: counts, checksums, positions and times only.
//
// What is compared, and why that is honest:
//   rows    every tenant-owned table's row count in the restored cluster against the live
//           database, read right after the restore. The live database goes on taking writes,
//           so a difference alone proves nothing: equal counts are `ok`; the restore is `failed`
//           only where it provably lacks rows, i.e. the live table holds more rows written before
//           the drill started (by a transaction every snapshot then could see) than the restored
//           one has, while the restore reached everything the primary had written then (RPO 0 in
//           bytes); anything else is `not_comparable`, with both counts.
//   tenant  for dr.drill.sampleTenants tenants (picked at random among those with a tenant
//           backup), the logical checksum of the tenant's rows in the restored cluster against
//           its latest tenant backup's manifest. Comparable only where no row of the tenant was
//           written after the backup's snapshot (the manifest's snapshot origin tells) and no row
//           went (fewer rows without a write is a delete after the backup, or a loss).
//
// Achieved RTO: drill start → the restored cluster answered queries and the checks passed
// (fetch: plan, download and extract the base backup; restore: start the cluster until it is
// consistent; replay: archived WAL until promotion; checks). Achieved RPO: what a recovery now
// would lose, the restore's end against the newest commit on the live primary at drill start:
// 0 when the restore reached the primary's WAL position then; otherwise, with
// track_commit_timestamp, the time between the restore's last commit and the primary's newest;
// without it, the time since the restore's last commit (an upper bound, said so in the report).
import { existsSync } from 'node:fs';
import { randomInt } from 'node:crypto';
import type { ClientBase } from 'pg';
import type { FullBackupRecord } from '../catalog';
import { tenantChecksum } from '../checksum';
import { databaseName } from '../config';
import type { Engine } from '../engine';
import { ErrorType, TenantsafeError } from '../errors';
import { baseObjectOf, readFullManifest } from '../format/fullManifest';
import { readManifest, type TenantManifest } from '../format/tenantManifest';
import { microsText, withClient, withConnection } from '../pg';
import { restorePhysicalBackup } from '../pitr/restore';
import { planPhysicalRestore } from '../pitr/window';
import { PrivateCluster } from '../postgres/cluster';
import { assertScratchSpace, makeScratchDir, removeScratchCluster } from '../postgres/scratch';
import { rowsDigest } from '../restore/verifyApplied';
import { writtenSince } from '../restore/sql';
import { discoverTenancy, fromTable, ownedTable, tenantFilter, tenantRowsQuery, type OwnedTable, type TenancyPlan } from '../tenancy';
import { archiveEndLsn, listWalArchive, type WalArchiveListing } from '../wal/archive';
import { parseLsn, segmentOfLsn, segmentRange, timelineOf } from '../wal/names';
import type { DrillCheck, DrillReport } from './report';

export interface DrillProgress {
  phase: 'fetching' | 'restoring' | 'replaying' | 'checking' | 'tearing-down';
  bytes?: number;
  replayLsn?: string | null;
}

export interface DrillRequest {
  /** names the drill: its report's folder and its record (lib/dr/report.ts drillId) */
  drillId: string;
  /** the full backup to restore, as drillSource chose it when the drill started */
  backupId: string;
  /** when the drill started (the workflow's start): RTO counts from here */
  startedAt: string;
  signal?: AbortSignal;
  onProgress?: (p: DrillProgress) => void;
}

/** The physical base backup a drill would restore now; BackupNotFound (bad input) when there is none. */
export async function drillSource(engine: Engine): Promise<FullBackupRecord> {
  if (engine.config.fullBackup.provider !== 'postgres') {
    throw new TenantsafeError(ErrorType.BadConfig, `DR drills restore physical base backups; fullBackup.provider is ${engine.config.fullBackup.provider}, whose full backups are logical dumps.`, 'Run drills against a self-managed database (fullBackup.provider: postgres).');
  }
  const plan = await planPhysicalRestore(engine, { latest: true }, new Date()).catch((err: unknown) => {
    if ((err as TenantsafeError).type !== ErrorType.TargetOutsideWindow) throw err;
    throw new TenantsafeError(ErrorType.BackupNotFound, 'There is no full backup to drill with: a drill restores the newest full backup and the archived WAL after it.', 'Take one first: `tenantsafe full-backup --wait` (or schedule them: `tenantsafe schedule full-backups`).');
  });
  return engine.catalog.getFullBackup(plan.backupId);
}

interface LiveAtStart {
  lsn: string;
  /** pg_snapshot_xmin of a snapshot taken then: every older transaction had ended */
  xmin: string;
  /** newest commit, when track_commit_timestamp is on */
  lastCommitAt: string | null;
}

/** Runs the drill and returns its report (not yet stored). A restore that fails is a failed check, not an exception. */
export async function runDrill(engine: Engine, req: DrillRequest): Promise<DrillReport> {
  const config = engine.config;
  const t0 = Date.parse(req.startedAt);
  const since = () => Date.now() - t0;
  const progress = (p: DrillProgress) => req.onProgress?.(p);
  progress({ phase: 'fetching' });

  const backup = await engine.catalog.getFullBackup(req.backupId);
  const live = await liveAtStart(engine);
  const listing = await listWalArchive(engine.store);
  const wal = backup.wal!;
  await assertScratchSpace(engine, backup, archiveEndLsn(listing, wal.segmentSize), 'A DR drill');
  const manifest = await readFullManifest(engine.store, backup.prefix);
  const base = baseObjectOf(manifest).object;

  const checks: DrillCheck[] = [];
  const timings = { fetchMs: 0, restoreMs: 0, replayMs: 0, checksMs: 0, teardownMs: 0 };
  let restored: DrillReport['restored'] = null;
  let answeredAtMs: number | null = null;
  const { work, dataDir } = await makeScratchDir(engine, 'tenantsafe-drill-');
  const marks = { extracted: 0, started: 0 };
  try {
    const result = await restorePhysicalBackup({
      store: engine.store,
      backup,
      listing,
      target: { latest: true },
      dataDir,
      port: 0, // a free port; the cluster keeps running for the checks
      signal: req.signal,
      beforeStart: async () => {
        marks.extracted = since();
        progress({ phase: 'restoring' });
      },
      onProgress: (p) => {
        if (p.phase === 'replaying' && !marks.started) {
          marks.started = since();
          progress({ phase: 'replaying', replayLsn: p.replayLsn });
        } else if (p.phase === 'extracting') progress({ phase: 'fetching', bytes: p.bytes });
      },
    });
    const promotedMs = since();
    timings.fetchMs = marks.extracted;
    timings.restoreMs = (marks.started || promotedMs) - marks.extracted;
    timings.replayMs = promotedMs - (marks.started || promotedMs);
    restored = { lsn: result.lsn, lastCommitAt: result.recoveredTo };
    checks.push({ check: 'restore', target: 'scratch cluster', result: 'ok', detail: `recovered to LSN ${result.lsn}${result.recoveredTo ? `, last commit ${result.recoveredTo}` : ', no transaction after the base backup'}` });

    progress({ phase: 'checking' });
    const cluster = await PrivateCluster.attach(dataDir);
    const url = cluster.url(databaseName(config.database.url));
    await withConnection(url, async (c) => {
      await c.query('SELECT 1');
      answeredAtMs = since();
      const plan = await discoverTenancy(c, config.tenancy);
      checks.push(...(await compareRowCounts(engine, c, plan, live, restored!)));
      checks.push(...(await compareSampleTenants(engine, c, plan)));
    });
    timings.checksMs = since() - promotedMs;
  } catch (err) {
    req.signal?.throwIfAborted();
    checks.push({ check: 'restore', target: restored ? 'checks on the restored cluster' : 'scratch cluster', result: 'failed', detail: (err as Error).message.slice(0, 4000) });
    if (!timings.fetchMs) timings.fetchMs = marks.extracted || since();
  } finally {
    progress({ phase: 'tearing-down' });
    const before = Date.now();
    await removeScratchCluster(work);
    timings.teardownMs = Date.now() - before;
  }
  const rtoEnd = since() - timings.teardownMs;
  checks.push({ check: 'teardown', target: 'scratch cluster', result: existsSync(work) ? 'failed' : 'ok', detail: `${work} removed in ${timings.teardownMs} ms` });
  const ok = checks.every((c) => c.result !== 'failed');
  const rpo = restored ? achievedRpo(live, restored, req.startedAt) : null;
  const rtoMs = ok ? rtoEnd : null;
  const { rtoMs: rtoTargetMs, rpoMs: rpoTargetMs } = config.dr.targets;
  return {
    formatVersion: 1,
    drillId: req.drillId,
    database: databaseName(config.database.url),
    startedAt: req.startedAt,
    finishedAt: new Date().toISOString(),
    ok,
    metTargets: ok && rtoMs !== null && rtoMs <= rtoTargetMs && rpo !== null && rpo.ms <= rpoTargetMs,
    source: {
      storageUri: engine.store.uri,
      backupId: backup.backupId,
      manifestKey: `${backup.prefix}manifest.json`,
      manifestSha256: backup.manifestSha256,
      baseObject: { key: backup.prefix + base.key, sha256: base.sha256, bytes: base.bytes },
      consistentAt: backup.consistentAt,
      wal: walEvidence(listing, wal.startSegment, wal.segmentSize, restored?.lsn ?? null),
    },
    live,
    restored,
    rto: { ms: rtoMs, targetMs: rtoTargetMs, answeredAfterMs: answeredAtMs },
    rpo: rpo ? { ...rpo, targetMs: rpoTargetMs } : null,
    timings,
    checks,
  };
}

async function liveAtStart(engine: Engine): Promise<LiveAtStart> {
  return withClient(engine.db, engine.config.database.url, async (c) => {
    const r = await c.query<{ lsn: string; xmin: string; commits: boolean }>(
      `SELECT pg_current_wal_lsn()::text AS lsn, pg_snapshot_xmin(pg_current_snapshot())::text AS xmin, current_setting('track_commit_timestamp')::boolean AS commits`,
    );
    const { lsn, xmin, commits } = r.rows[0];
    const lastCommitAt = commits ? ((await c.query<{ at: string | null }>(`SELECT ${microsText('(pg_last_committed_xact()).timestamp')} AS at`)).rows[0].at ?? null) : null;
    return { lsn, xmin, lastCommitAt };
  });
}

function achievedRpo(live: LiveAtStart, restored: NonNullable<DrillReport['restored']>, startedAt: string): Omit<NonNullable<DrillReport['rpo']>, 'targetMs'> {
  const behind = restored.lsn ? parseLsn(live.lsn) - parseLsn(restored.lsn) : parseLsn(live.lsn);
  const bytes = Number(behind > 0n ? behind : 0n);
  if (bytes === 0) return { ms: 0, bytes, method: 'wal-position' };
  const restoredAt = restored.lastCommitAt ? Date.parse(restored.lastCommitAt) : null;
  if (live.lastCommitAt) {
    return { ms: restoredAt === null ? Date.parse(startedAt) - Date.parse(live.lastCommitAt) : Math.max(0, Date.parse(live.lastCommitAt) - restoredAt), bytes, method: 'commit-timestamps' };
  }
  return { ms: Math.max(0, Date.parse(startedAt) - (restoredAt ?? Date.parse(startedAt))), bytes, method: 'upper-bound' };
}

/** The WAL segments the restore read: from the backup's first to the one it stopped in, each with the sha256 its key holds (partials have none). */
function walEvidence(listing: WalArchiveListing, first: string, segmentSize: number, endLsn: string | null): DrillReport['source']['wal'] {
  const last = endLsn ? segmentOfLsn(endLsn, timelineOf(first), segmentSize) : first;
  const names = segmentRange(first, last, segmentSize);
  return {
    from: first,
    to: last,
    segments: names.map((name) => ({ name, sha256: listing.segments.find((s) => s.name === name)?.sha256 ?? null })),
  };
}

async function compareRowCounts(engine: Engine, restoredDb: ClientBase, plan: TenancyPlan, live: LiveAtStart, restored: NonNullable<DrillReport['restored']>): Promise<DrillCheck[]> {
  const reachedStart = restored.lsn !== null && parseLsn(restored.lsn) >= parseLsn(live.lsn);
  const tables = plan.tables;
  const restoredCounts = new Map<string, number>();
  for (const t of tables) restoredCounts.set(t.key, Number((await restoredDb.query<{ n: string }>(`SELECT count(*) AS n FROM ${fromTable(t, 't')}`)).rows[0].n));
  return withClient(engine.db, engine.config.database.url, async (c) => {
    await c.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    try {
      const checks: DrillCheck[] = [];
      for (const t of tables) {
        const r = await c.query<{ n: string; before: string }>(`SELECT count(*) AS n, count(*) FILTER (WHERE NOT ${writtenSince('t', `'${live.xmin}'::xid8`)}) AS before FROM ${fromTable(t, 't')}`);
        const [liveRows, liveBefore, restoredRows] = [Number(r.rows[0].n), Number(r.rows[0].before), restoredCounts.get(t.key)!];
        const counts = { restored: restoredRows, live: liveRows };
        if (restoredRows === liveRows) checks.push({ check: 'rows', target: t.key, result: 'ok', ...counts });
        else if (reachedStart && liveBefore > restoredRows) {
          checks.push({ check: 'rows', target: t.key, result: 'failed', ...counts, detail: `the live table holds ${liveBefore} rows written before the drill started; the restore, which reached the primary's WAL position then, has ${restoredRows}` });
        } else {
          checks.push({ check: 'rows', target: t.key, result: 'not_comparable', ...counts, detail: `the live database changed the table during the drill (${liveRows - liveBefore} rows written since it started${reachedStart ? '' : '; the restore ends before the drill started'})` });
        }
      }
      return checks;
    } finally {
      await c.query('ROLLBACK');
    }
  });
}

/** dr.drill.sampleTenants tenants with a tenant backup, at random, each with its latest one. */
async function sampleTenantBackups(engine: Engine): Promise<{ tenantId: string; backupId: string; prefix: string; tenantChecksum: string }[]> {
  const n = engine.config.dr.drill.sampleTenants;
  if (n === 0) return [];
  const database = databaseName(engine.config.database.url);
  return engine.catalog.read(async (c, s) => {
    const count = Number((await c.query<{ n: string }>(`SELECT count(*) AS n FROM ${s}.tenant_backup_stats WHERE database = $1 AND kind = 'tenant'`, [database])).rows[0].n);
    if (count === 0) return [];
    // a random window of the tenants in key order: cheap with 100k tenants, and a different sample each drill
    const offset = count <= n ? 0 : randomInt(0, count - n + 1);
    const r = await c.query<{ tenant_id: string; backup_id: string; prefix: string; tenant_checksum: string }>(
      `SELECT DISTINCT ON (b.tenant_id) b.tenant_id, b.backup_id, b.prefix, b.tenant_checksum
         FROM (SELECT tenant_id FROM ${s}.tenant_backup_stats WHERE database = $1 AND kind = 'tenant' ORDER BY tenant_id OFFSET $2 LIMIT $3) t
         JOIN ${s}.backups b ON b.tenant_id = t.tenant_id AND b.database = $1 AND b.kind = 'tenant'
        ORDER BY b.tenant_id, b.snapshot_at DESC, b.backup_id DESC`,
      [database, offset, n],
    );
    return r.rows.map((x) => ({ tenantId: x.tenant_id, backupId: x.backup_id, prefix: x.prefix, tenantChecksum: x.tenant_checksum }));
  });
}

async function compareSampleTenants(engine: Engine, c: ClientBase, plan: TenancyPlan): Promise<DrillCheck[]> {
  const checks: DrillCheck[] = [];
  for (const sample of await sampleTenantBackups(engine)) {
    const target = `${sample.tenantId} (backup ${sample.backupId})`;
    let manifest: TenantManifest;
    try {
      manifest = await readManifest(engine.store, sample.prefix);
    } catch (err) {
      checks.push({ check: 'tenant', target, result: 'not_comparable', detail: `its manifest could not be read: ${(err as Error).message}` });
      continue;
    }
    const tables: { table: OwnedTable; manifest: TenantManifest['tables'][number] }[] = [];
    const drift = manifest.tables.filter((m) => {
      const t = plan.tables.find((x) => x.key === m.table);
      if (!t || t.copyColumns.join('\0') !== m.copyColumns.join('\0')) return true;
      tables.push({ table: ownedTable(plan, m.table), manifest: m });
      return false;
    });
    if (drift.length > 0) {
      checks.push({ check: 'tenant', target, result: 'not_comparable', detail: `the schema changed since the backup (${drift.map((m) => m.table).join(', ')})` });
      continue;
    }
    const digests = [];
    let written = 0;
    for (const { table, manifest: m } of tables) {
      const d = await rowsDigest(c, tenantRowsQuery(plan, table, sample.tenantId));
      digests.push({ table: m.table, rows: d.rows, rowChecksum: d.checksum, expectedRows: m.rows });
      if (manifest.snapshot.origin) {
        const r = await c.query<{ n: string }>(`SELECT count(*) AS n FROM ${fromTable(table, 't')} WHERE ${tenantFilter(plan, table, 't', sample.tenantId)} AND ${writtenSince('t', `'${manifest.snapshot.origin.xmin}'::xid8`)}`);
        written += Number(r.rows[0].n);
      }
    }
    const restored = tenantChecksum(digests);
    const rows = { restored: digests.reduce((n, d) => n + d.rows, 0), backup: manifest.totals.rows };
    if (restored === sample.tenantChecksum) {
      checks.push({ check: 'tenant', target, result: 'ok', ...rows, detail: `tenant checksum ${restored}` });
    } else if (!manifest.snapshot.origin) {
      checks.push({ check: 'tenant', target, result: 'not_comparable', ...rows, detail: 'the backup records no snapshot origin: writes after it cannot be told apart' });
    } else if (written > 0) {
      checks.push({ check: 'tenant', target, result: 'not_comparable', ...rows, detail: `${written} of its rows were written after the backup` });
    } else if (digests.some((d) => d.rows < d.expectedRows)) {
      checks.push({ check: 'tenant', target, result: 'not_comparable', ...rows, detail: 'fewer rows than the backup and none written since: deleted after the backup, or lost; compare with the live tenant' });
    } else {
      const differing = digests.filter((d) => manifest.tables.find((m) => m.table === d.table)!.rowChecksum !== d.rowChecksum).map((d) => d.table);
      checks.push({ check: 'tenant', target, result: 'failed', ...rows, detail: `no row written since the backup, yet the checksums differ: ${differing.join(', ')} (tenant checksum ${restored}, backup ${sample.tenantChecksum})` });
    }
  }
  return checks;
}
