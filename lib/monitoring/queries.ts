// The health model's catalog reads (lib/monitoring/health.ts). Every one is an aggregate or a
// bounded list, answered from the catalog's indexes (migration 5 in lib/catalog.ts): with 100k
// tenants nothing here brings one row per tenant or per backup into JavaScript, except the
// tenants that need attention, up to a cap.
import type { PoolClient } from 'pg';
import { microsText } from '../pg';

/** Failures that say the request was wrong (an unknown tenant, a run already going), not that backups are broken. */
export const requestErrorTypes = ['BadInput', 'TenantNotFound', 'AlreadyRunning'];

export interface RunFacts {
  workflowId: string;
  runId: string;
  tenantId: string | null;
  backupId: string | null;
  error: string | null;
  errorType: string | null;
  startedAt: string;
  finishedAt: string | null;
}

export interface TenantJudgement {
  /** the interval each tenant's backups must succeed within (ms); null: not judged */
  defaultEveryMs: number | null;
  /** tenants with their own schedule */
  perTenantEveryMs: Record<string, number>;
  warningFactor: number;
  criticalFactor: number;
  minCount: number;
  perTenantMinCount: Record<string, number>;
  /** failures older than this are history */
  failureLookbackMs: number;
}

/** One tenant as the health model sees it. */
export interface TenantRow {
  tenantId: string;
  /** 0 ok, 1 warning, 2 critical */
  level: number;
  failing: boolean;
  /** 0 ok, 1 older than interval × warningFactor, 2 older than interval × criticalFactor */
  ageLevel: number;
  belowRetention: boolean;
  newestAt: string | null;
  oldestAt: string | null;
  restorePoints: number;
  /** the restore points the policy promises by now: min(minCount, the scheduled runs since the oldest) */
  promisedPoints: number;
  everyMs: number | null;
  ageSeconds: number | null;
  failure: RunFacts | null;
}

export interface TenantAggregate {
  tenants: number;
  withBackup: number;
  restorePoints: number;
  failing: number;
  staleWarning: number;
  staleCritical: number;
  belowRetention: number;
  byLevel: [number, number, number];
  newestAt: string | null;
  /** the tenant whose newest backup is the oldest */
  stalest: { tenantId: string; newestAt: string } | null;
  /** every tenant with a backup reaches back at least this far */
  shallowestOldestAt: string | null;
  deepestOldestAt: string | null;
}

/**
 * The per-tenant judgement as SQL: $1 database, $2 default interval ms (null: age not judged),
 * $3 warning factor, $4 critical factor, $5 failure lookback ms, $6 request error types,
 * $7/$8 tenants with their own interval, $9 default minCount, $10/$11 tenants with their own minCount.
 * `filter` narrows the tenants read (extra parameters from $12).
 */
function judgedTenantsSql(s: string, filter = 'true'): string {
  return `
    WITH failed AS (
      SELECT DISTINCT ON (tenant_id) tenant_id, workflow_id, run_id, backup_id, error, error_type, started_at, finished_at
        FROM ${s}.runs
       WHERE workflow_type = 'tenantBackup' AND status = 'failed' AND started_at > now() - make_interval(secs => $5::float8 / 1000)
         AND coalesce(database, $1) = $1 AND tenant_id IS NOT NULL AND coalesce(error_type, '') <> ALL($6::text[]) AND ${filter}
       ORDER BY tenant_id, started_at DESC
    ), every AS (
      SELECT * FROM unnest($7::text[], $8::float8[]) AS e(tenant_id, every_ms)
    ), keep AS (
      SELECT * FROM unnest($10::text[], $11::int[]) AS k(tenant_id, min_count)
    ), judged AS (
      SELECT coalesce(p.tenant_id, f.tenant_id) AS tenant_id, p.newest, p.oldest, coalesce(p.points, 0) AS points,
             f.workflow_id, f.run_id, f.backup_id, f.error, f.error_type, f.started_at AS failed_started, f.finished_at AS failed_finished,
             CASE WHEN e.tenant_id IS NOT NULL THEN e.every_ms ELSE $2::float8 END AS every_ms,
             coalesce(k.min_count, $9::int) AS min_count,
             (f.tenant_id IS NOT NULL AND (p.newest IS NULL OR p.newest < f.started_at)) AS failing,
             extract(epoch FROM now() - p.newest)::float8 AS age_s,
             extract(epoch FROM now() - p.oldest)::float8 AS span_s
        FROM (SELECT tenant_id, newest, oldest, points FROM ${s}.tenant_backup_stats WHERE database = $1 AND kind = 'tenant' AND ${filter}) p
        FULL JOIN failed f ON f.tenant_id = p.tenant_id
        LEFT JOIN every e ON e.tenant_id = coalesce(p.tenant_id, f.tenant_id)
        LEFT JOIN keep k ON k.tenant_id = coalesce(p.tenant_id, f.tenant_id)
    ), leveled AS (
      SELECT *,
             CASE WHEN every_ms IS NULL OR newest IS NULL THEN 0
                  WHEN age_s * 1000 > every_ms * $4::float8 THEN 2
                  WHEN age_s * 1000 > every_ms * $3::float8 THEN 1 ELSE 0 END AS age_level,
             CASE WHEN newest IS NULL THEN 0
                  ELSE least(min_count, floor(span_s * 1000 / coalesce(every_ms, 86400000))::int + 1) END AS promised
        FROM judged
    )
    SELECT *, greatest(CASE WHEN failing THEN 2 ELSE 0 END, age_level, CASE WHEN points < promised THEN 1 ELSE 0 END) AS level
      FROM leveled`;
}

function judgementParams(db: string, j: TenantJudgement): unknown[] {
  const every = Object.entries(j.perTenantEveryMs);
  const keep = Object.entries(j.perTenantMinCount);
  return [
    db, j.defaultEveryMs, j.warningFactor, j.criticalFactor, j.failureLookbackMs, requestErrorTypes,
    every.map(([t]) => t), every.map(([, ms]) => ms), j.minCount, keep.map(([t]) => t), keep.map(([, n]) => n),
  ];
}

function tenantRowOf(x: Record<string, any>): TenantRow {
  return {
    tenantId: x.tenant_id,
    level: x.level,
    failing: x.failing,
    ageLevel: x.age_level,
    belowRetention: x.points < x.promised,
    newestAt: x.newest_us,
    oldestAt: x.oldest_us,
    restorePoints: x.points,
    promisedPoints: x.promised,
    everyMs: x.every_ms === null ? null : Number(x.every_ms),
    ageSeconds: x.age_s === null ? null : Number(x.age_s),
    failure: x.workflow_id
      ? { workflowId: x.workflow_id, runId: x.run_id, tenantId: x.tenant_id, backupId: x.backup_id, error: x.error, errorType: x.error_type, startedAt: x.failed_started_us, finishedAt: x.failed_finished_us }
      : null,
  };
}

const tenantRowColumns = `*, ${microsText('newest')} AS newest_us, ${microsText('oldest')} AS oldest_us,
  ${microsText('failed_started')} AS failed_started_us, ${microsText('failed_finished')} AS failed_finished_us`;

/**
 * Every tenant's judgement summed up, and the tenants that need attention (failing, too old or
 * below what retention promises), worst first, at most `cap` + 1 (one more says there are more).
 */
export async function readTenants(c: PoolClient, s: string, db: string, j: TenantJudgement, cap: number): Promise<{ aggregate: TenantAggregate; flagged: TenantRow[] }> {
  const r = await c.query(
    `WITH t AS MATERIALIZED (${judgedTenantsSql(s)})
     SELECT (SELECT row_to_json(a) FROM (
               SELECT count(*)::int AS tenants, count(newest)::int AS with_backup, coalesce(sum(points), 0)::bigint AS points,
                      count(*) FILTER (WHERE failing)::int AS failing,
                      count(*) FILTER (WHERE age_level = 1)::int AS stale_warning, count(*) FILTER (WHERE age_level = 2)::int AS stale_critical,
                      count(*) FILTER (WHERE points < promised)::int AS below,
                      count(*) FILTER (WHERE level = 0)::int AS l0, count(*) FILTER (WHERE level = 1)::int AS l1, count(*) FILTER (WHERE level = 2)::int AS l2,
                      ${microsText('max(newest)')} AS newest, ${microsText('max(oldest)')} AS shallowest, ${microsText('min(oldest)')} AS deepest
                 FROM t) a) AS aggregate,
            (SELECT json_build_object('tenantId', tenant_id, 'newestAt', ${microsText('newest')}) FROM ${s}.tenant_backup_stats
              WHERE database = $1 AND kind = 'tenant' ORDER BY newest, tenant_id LIMIT 1) AS stalest,
            (SELECT coalesce(json_agg(f), '[]') FROM (
               SELECT ${tenantRowColumns} FROM t WHERE level > 0
                ORDER BY level DESC, failing DESC, age_level DESC, newest ASC NULLS FIRST, tenant_id LIMIT $12) f) AS flagged`,
    [...judgementParams(db, j), cap + 1],
  );
  const a = { ...r.rows[0].aggregate, stalest: r.rows[0].stalest };
  return {
    aggregate: {
      tenants: a.tenants,
      withBackup: a.with_backup,
      restorePoints: Number(a.points),
      failing: a.failing,
      staleWarning: a.stale_warning,
      staleCritical: a.stale_critical,
      belowRetention: a.below,
      byLevel: [a.l0, a.l1, a.l2],
      newestAt: a.newest,
      stalest: a.stalest,
      shallowestOldestAt: a.shallowest,
      deepestOldestAt: a.deepest,
    },
    flagged: (r.rows[0].flagged as Record<string, any>[]).map(tenantRowOf),
  };
}

/** The tenant whose newest backup is the oldest, leaving out some (those gone from the database). */
export async function readStalestTenant(c: PoolClient, s: string, db: string, except: string[]): Promise<{ tenantId: string; newestAt: string } | null> {
  const r = await c.query(
    `SELECT tenant_id, ${microsText('newest')} AS newest FROM ${s}.tenant_backup_stats
      WHERE database = $1 AND kind = 'tenant' AND tenant_id <> ALL($2::text[]) ORDER BY newest, tenant_id LIMIT 1`,
    [db, except],
  );
  return r.rows[0] ? { tenantId: r.rows[0].tenant_id, newestAt: r.rows[0].newest } : null;
}

/** Judgements of the given tenants (opt-in metrics, one tenant on request). */
export async function readTenantRows(c: PoolClient, s: string, db: string, j: TenantJudgement, tenantIds: string[]): Promise<TenantRow[]> {
  if (tenantIds.length === 0) return [];
  const r = await c.query(`SELECT ${tenantRowColumns} FROM (${judgedTenantsSql(s, 'tenant_id = ANY($12::text[])')}) x ORDER BY tenant_id`, [...judgementParams(db, j), tenantIds]);
  return r.rows.map(tenantRowOf);
}

/** One page of tenants, worst first or by id, optionally those whose id starts with `prefix`; and how many match. */
export async function readTenantPage(
  c: PoolClient,
  s: string,
  db: string,
  j: TenantJudgement,
  page: { prefix?: string; offset: number; limit: number; order: 'worst' | 'tenant' },
): Promise<{ total: number; rows: TenantRow[] }> {
  const pattern = page.prefix ? page.prefix.replace(/[\\%_]/g, (ch) => `\\${ch}`) + '%' : '%';
  const order = page.order === 'worst' ? 'level DESC, failing DESC, age_level DESC, newest ASC NULLS FIRST, tenant_id' : 'tenant_id';
  const r = await c.query(
    `SELECT ${tenantRowColumns}, count(*) OVER () AS total FROM (${judgedTenantsSql(s, 'tenant_id LIKE $12')}) x ORDER BY ${order} LIMIT $13 OFFSET $14`,
    [...judgementParams(db, j), pattern, page.limit, page.offset],
  );
  const total = r.rows[0] ? Number(r.rows[0].total) : 0;
  return { total, rows: r.rows.map(tenantRowOf) };
}

export interface FullFacts {
  count: number;
  newest: { backupId: string; consistentAt: string; startedAt: string; finishedAt: string } | null;
  oldestAt: string | null;
  /** the run that took the newest backup, for a link */
  newestRun: { workflowId: string; runId: string } | null;
  lastFailure: RunFacts | null;
}

export async function readFull(c: PoolClient, s: string, db: string): Promise<FullFacts> {
  const newest = await c.query(
    `SELECT backup_id, ${microsText('consistent_at')} AS consistent_at, ${microsText('started_at')} AS started_at, ${microsText('finished_at')} AS finished_at
       FROM ${s}.full_backups WHERE database = $1 ORDER BY consistent_at DESC, backup_id DESC LIMIT 1`,
    [db],
  );
  const agg = await c.query(`SELECT count(*)::int AS n, ${microsText('min(consistent_at)')} AS oldest FROM ${s}.full_backups WHERE database = $1`, [db]);
  const n = newest.rows[0];
  const run = n ? await c.query(`SELECT workflow_id, run_id FROM ${s}.runs WHERE backup_id = $1 AND workflow_type = 'fullBackup' LIMIT 1`, [n.backup_id]) : null;
  return {
    count: agg.rows[0].n,
    oldestAt: agg.rows[0].oldest,
    newest: n ? { backupId: n.backup_id, consistentAt: n.consistent_at, startedAt: n.started_at, finishedAt: n.finished_at } : null,
    newestRun: run?.rows[0] ? { workflowId: run.rows[0].workflow_id, runId: run.rows[0].run_id } : null,
    lastFailure: await lastFailedRun(c, s, db, 'fullBackup'),
  };
}

async function lastFailedRun(c: PoolClient, s: string, db: string, workflowType: string): Promise<RunFacts | null> {
  const r = await c.query(
    `SELECT workflow_id, run_id, tenant_id, backup_id, error, error_type, ${microsText('started_at')} AS started_at, ${microsText('finished_at')} AS finished_at
       FROM ${s}.runs WHERE workflow_type = $2 AND status = 'failed' AND coalesce(database, $1) = $1 AND coalesce(error_type, '') <> ALL($3::text[])
      ORDER BY started_at DESC LIMIT 1`,
    [db, workflowType, requestErrorTypes],
  );
  const x = r.rows[0];
  return x ? { workflowId: x.workflow_id, runId: x.run_id, tenantId: x.tenant_id, backupId: x.backup_id, error: x.error, errorType: x.error_type, startedAt: x.started_at, finishedAt: x.finished_at } : null;
}

/** The newest tenant backup of any tenant, and the run that took it. */
export async function readNewestTenantBackup(c: PoolClient, s: string, db: string): Promise<{ backupId: string; tenantId: string; at: string; workflowId: string | null; runId: string | null } | null> {
  const r = await c.query(
    `SELECT b.backup_id, b.tenant_id, ${microsText('b.snapshot_at')} AS at, r.workflow_id, r.run_id
       FROM (SELECT tenant_id, newest FROM ${s}.tenant_backup_stats WHERE database = $1 AND kind = 'tenant' ORDER BY newest DESC LIMIT 1) t
       JOIN LATERAL (SELECT backup_id, tenant_id, snapshot_at FROM ${s}.backups
                      WHERE tenant_id = t.tenant_id AND snapshot_at = t.newest AND database = $1 AND kind = 'tenant' ORDER BY backup_id DESC LIMIT 1) b ON true
       LEFT JOIN LATERAL (SELECT workflow_id, run_id FROM ${s}.runs WHERE backup_id = b.backup_id AND workflow_type = 'tenantBackup' LIMIT 1) r ON true`,
    [db],
  );
  const x = r.rows[0];
  return x ? { backupId: x.backup_id, tenantId: x.tenant_id, at: x.at, workflowId: x.workflow_id, runId: x.run_id } : null;
}

export async function readLastTenantFailure(c: PoolClient, s: string, db: string): Promise<RunFacts | null> {
  return lastFailedRun(c, s, db, 'tenantBackup');
}

export interface VerificationFacts {
  /** backups still in the catalog whose newest verification passed / failed */
  ok: number;
  failed: number;
  /** backups in the catalog never verified */
  unverified: number;
  lastAny: string | null;
  lastOk: { backupId: string; at: string } | null;
  lastFailed: { backupId: string; at: string; kind: string; counts: Record<string, number>; reportKey: string | null } | null;
  /** the failing backups, newest first, at most 20 */
  failing: { backupId: string; kind: string; at: string; counts: Record<string, number>; reportKey: string | null }[];
}

export async function readVerifications(c: PoolClient, s: string, db: string): Promise<VerificationFacts> {
  const present = `
    WITH latest AS (
      SELECT DISTINCT ON (backup_id) backup_id, backup_kind, ok, verified_at, counts, report_key FROM ${s}.verifications ORDER BY backup_id, verified_at DESC
    ), present AS (
      SELECT l.* FROM latest l
       WHERE EXISTS (SELECT 1 FROM ${s}.backups b WHERE b.backup_id = l.backup_id AND b.database = $1)
          OR EXISTS (SELECT 1 FROM ${s}.full_backups f WHERE f.backup_id = l.backup_id AND f.database = $1)
    )`;
  const agg = await c.query(
    `${present}
     SELECT count(*) FILTER (WHERE ok)::int AS ok, count(*) FILTER (WHERE NOT ok)::int AS failed, ${microsText('max(verified_at)')} AS last_any,
            (SELECT backup_id || ' ' || ${microsText('verified_at')} FROM present WHERE ok ORDER BY verified_at DESC LIMIT 1) AS last_ok,
            ((SELECT coalesce(sum(points), 0) FROM ${s}.tenant_backup_stats WHERE database = $1) + (SELECT count(*) FROM ${s}.full_backups WHERE database = $1))::bigint AS backups
       FROM present`,
    [db],
  );
  const lastFailed = await c.query(
    `SELECT backup_id, backup_kind, ${microsText('verified_at')} AS at, counts, report_key FROM ${s}.verifications v
      WHERE NOT ok AND (EXISTS (SELECT 1 FROM ${s}.backups b WHERE b.backup_id = v.backup_id AND b.database = $1)
                        OR EXISTS (SELECT 1 FROM ${s}.full_backups f WHERE f.backup_id = v.backup_id AND f.database = $1))
      ORDER BY verified_at DESC LIMIT 1`,
    [db],
  );
  const failing = await c.query(
    `${present} SELECT backup_id, backup_kind, ${microsText('verified_at')} AS at, counts, report_key FROM present WHERE NOT ok ORDER BY verified_at DESC LIMIT 20`,
    [db],
  );
  const a = agg.rows[0];
  const split = (v: string | null) => (v ? { backupId: v.slice(0, v.lastIndexOf(' ')), at: v.slice(v.lastIndexOf(' ') + 1) } : null);
  const lf = lastFailed.rows[0];
  return {
    ok: a.ok,
    failed: a.failed,
    unverified: Math.max(0, Number(a.backups) - a.ok - a.failed),
    lastAny: a.last_any,
    lastOk: split(a.last_ok),
    lastFailed: lf ? { backupId: lf.backup_id, at: lf.at, kind: lf.backup_kind, counts: lf.counts, reportKey: lf.report_key } : null,
    failing: failing.rows.map((x) => ({ backupId: x.backup_id, kind: x.backup_kind, at: x.at, counts: x.counts, reportKey: x.report_key })),
  };
}

export interface PendingApprovalFacts {
  restoreId: string;
  tenantId: string;
  backupId: string | null;
  requestedBy: string;
  workflowId: string;
  runId: string;
  /** when it started waiting (the preview was recorded) */
  since: string;
  waitSeconds: number;
}

/**
 * Restores awaiting approval, the longest waiting first (at most `limit`), and how many. A row
 * not updated for `abandonedAfterMs` belongs to a workflow that ended without saying so.
 */
export async function readPendingApprovals(c: PoolClient, s: string, abandonedAfterMs: number, limit: number): Promise<{ count: number; oldest: PendingApprovalFacts[] }> {
  const where = `state = 'awaiting-approval' AND updated_at > now() - make_interval(secs => $1::float8 / 1000)`;
  const count = await c.query(`SELECT count(*)::int AS n FROM ${s}.restores WHERE ${where}`, [abandonedAfterMs]);
  const rows = await c.query(
    `SELECT restore_id, tenant_id, backup_id, requested_by, workflow_id, run_id, ${microsText('updated_at')} AS since, extract(epoch FROM now() - updated_at)::float8 AS wait_s
       FROM ${s}.restores WHERE ${where} ORDER BY updated_at, restore_id LIMIT $2`,
    [abandonedAfterMs, limit],
  );
  return {
    count: count.rows[0].n,
    oldest: rows.rows.map((x) => ({ restoreId: x.restore_id, tenantId: x.tenant_id, backupId: x.backup_id, requestedBy: x.requested_by, workflowId: x.workflow_id, runId: x.run_id, since: x.since, waitSeconds: Number(x.wait_s) })),
  };
}

/** A tenant's newest runs of tenantBackup and its newest restore points, for the detail of one tenant. */
export async function readTenantDetail(c: PoolClient, s: string, db: string, tenantId: string, limit: number): Promise<{ runs: (RunFacts & { status: string })[]; restorePoints: { backupId: string; snapshotAt: string; rows: number; bytes: number; verified: boolean | null }[] }> {
  const runs = await c.query(
    `SELECT workflow_id, run_id, tenant_id, backup_id, status, error, error_type, ${microsText('started_at')} AS started_at, ${microsText('finished_at')} AS finished_at
       FROM ${s}.runs WHERE workflow_type = 'tenantBackup' AND tenant_id = $1 AND coalesce(database, $2) = $2 ORDER BY started_at DESC LIMIT $3`,
    [tenantId, db, limit],
  );
  const points = await c.query(
    `SELECT b.backup_id, ${microsText('b.snapshot_at')} AS snapshot_at, b.rows, b.bytes,
            (SELECT v.ok FROM ${s}.verifications v WHERE v.backup_id = b.backup_id ORDER BY v.verified_at DESC LIMIT 1) AS verified
       FROM ${s}.backups b WHERE b.tenant_id = $1 AND b.database = $2 AND b.kind = 'tenant' ORDER BY b.snapshot_at DESC LIMIT $3`,
    [tenantId, db, limit],
  );
  return {
    runs: runs.rows.map((x) => ({ workflowId: x.workflow_id, runId: x.run_id, tenantId: x.tenant_id, backupId: x.backup_id, status: x.status, error: x.error, errorType: x.error_type, startedAt: x.started_at, finishedAt: x.finished_at })),
    restorePoints: points.rows.map((x) => ({ backupId: x.backup_id, snapshotAt: x.snapshot_at, rows: Number(x.rows), bytes: Number(x.bytes), verified: x.verified })),
  };
}
