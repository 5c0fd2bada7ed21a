// The catalog reads of the dashboard's pages beside the health model (lib/monitoring/health.ts,
// which judges): one page at a time of a tenant's backups, of restores and of verification
// reports, each with LIMIT/OFFSET on an indexed order, and single records. Nothing here reads a
// whole table into JavaScript.
import type { Engine } from '../engine';
import { microsText } from '../pg';

export interface Page<T> {
  total: number;
  offset: number;
  limit: number;
  rows: T[];
}

export interface BackupRow {
  backupId: string;
  kind: string;
  snapshotAt: string;
  rows: number;
  bytes: number;
  /** how long the backup took (started → finished) */
  seconds: number;
  /** the newest verification: null when never verified */
  verification: { id: number; ok: boolean; at: string } | null;
}

/** A tenant's backups of every kind (tenant, safety, point in time), newest first (index backups_tenant_idx). */
export async function tenantBackupsPage(engine: Engine, tenantId: string, offset: number, limit: number): Promise<Page<BackupRow>> {
  return engine.catalog.read(async (c, s) => {
    const total = await c.query(`SELECT count(*)::int AS n FROM ${s}.backups WHERE tenant_id = $1`, [tenantId]);
    const r = await c.query(
      `SELECT b.backup_id, b.kind, ${microsText('b.snapshot_at')} AS snapshot_at, b.rows, b.bytes,
              extract(epoch FROM b.finished_at - b.started_at)::float8 AS seconds, v.verification_id, v.ok, ${microsText('v.verified_at')} AS verified_at
         FROM ${s}.backups b
         LEFT JOIN LATERAL (SELECT verification_id, ok, verified_at FROM ${s}.verifications x WHERE x.backup_id = b.backup_id ORDER BY verified_at DESC LIMIT 1) v ON true
        WHERE b.tenant_id = $1 ORDER BY b.snapshot_at DESC, b.backup_id DESC LIMIT $2 OFFSET $3`,
      [tenantId, limit, offset],
    );
    return {
      total: total.rows[0].n,
      offset,
      limit,
      rows: r.rows.map((x) => ({
        backupId: x.backup_id,
        kind: x.kind,
        snapshotAt: x.snapshot_at,
        rows: Number(x.rows),
        bytes: Number(x.bytes),
        seconds: Number(x.seconds),
        verification: x.verification_id === null ? null : { id: Number(x.verification_id), ok: x.ok, at: x.verified_at },
      })),
    };
  });
}

/** Does the catalog know the tenant at all (a backup, a run or a restore)? */
export async function tenantInCatalog(engine: Engine, tenantId: string): Promise<boolean> {
  return engine.catalog.read(async (c, s) => {
    const r = await c.query(
      `SELECT EXISTS (SELECT 1 FROM ${s}.backups WHERE tenant_id = $1) OR EXISTS (SELECT 1 FROM ${s}.runs WHERE tenant_id = $1)
              OR EXISTS (SELECT 1 FROM ${s}.restores WHERE tenant_id = $1) AS known`,
      [tenantId],
    );
    return r.rows[0].known as boolean;
  });
}

export interface RestoreRow {
  restoreId: string;
  tenantId: string;
  backupId: string | null;
  state: string;
  requestedBy: string;
  approvedBy: string[];
  error: string | null;
  createdAt: string;
  updatedAt: string;
}

/** Restores, the newest first; `tenantId` narrows to one tenant (index restores_tenant_idx). */
export async function restoresPage(engine: Engine, opts: { tenantId?: string; offset: number; limit: number }): Promise<Page<RestoreRow>> {
  return engine.catalog.read(async (c, s) => {
    const where = opts.tenantId === undefined ? 'true' : 'tenant_id = $3';
    const params = opts.tenantId === undefined ? [] : [opts.tenantId];
    const total = await c.query(`SELECT count(*)::int AS n FROM ${s}.restores WHERE ${where.replace('$3', '$1')}`, params);
    const r = await c.query(
      `SELECT restore_id, tenant_id, backup_id, state, requested_by, approved_by, error, ${microsText('created_at')} AS created, ${microsText('updated_at')} AS updated
         FROM ${s}.restores WHERE ${where} ORDER BY created_at DESC, restore_id DESC LIMIT $1 OFFSET $2`,
      [opts.limit, opts.offset, ...params],
    );
    return {
      total: total.rows[0].n,
      offset: opts.offset,
      limit: opts.limit,
      rows: r.rows.map((x) => ({
        restoreId: x.restore_id,
        tenantId: x.tenant_id,
        backupId: x.backup_id,
        state: x.state,
        requestedBy: x.requested_by,
        approvedBy: x.approved_by ?? [],
        error: x.error,
        createdAt: x.created,
        updatedAt: x.updated,
      })),
    };
  });
}

export interface VerificationRow {
  id: number;
  backupId: string;
  backupKind: string;
  /** the backup's tenant (tenant backups still in the catalog) */
  tenantId: string | null;
  ok: boolean;
  counts: Record<string, number>;
  verifiedAt: string;
  reportKey: string | null;
}

export interface VerificationRecordFull extends VerificationRow {
  report: unknown;
}

const verificationColumns = (s: string) => `v.verification_id, v.backup_id, v.backup_kind, v.ok, v.counts, v.report_key, ${microsText('v.verified_at')} AS verified_at,
  (SELECT b.tenant_id FROM ${s}.backups b WHERE b.backup_id = v.backup_id) AS tenant_id`;

function verificationOf(x: Record<string, any>): VerificationRow {
  return { id: Number(x.verification_id), backupId: x.backup_id, backupKind: x.backup_kind, tenantId: x.tenant_id, ok: x.ok, counts: x.counts, verifiedAt: x.verified_at, reportKey: x.report_key };
}

/** Verification reports, the newest first (index verifications_verified_idx); only failed ones, or one backup's, on request. */
export async function verificationsPage(engine: Engine, opts: { failedOnly?: boolean; backupId?: string; offset: number; limit: number }): Promise<Page<VerificationRow>> {
  return engine.catalog.read(async (c, s) => {
    const conds = [...(opts.failedOnly ? ['NOT v.ok'] : []), ...(opts.backupId !== undefined ? ['v.backup_id = $3'] : [])];
    const where = conds.length ? conds.join(' AND ') : 'true';
    const params = opts.backupId !== undefined ? [opts.backupId] : [];
    const total = await c.query(`SELECT count(*)::int AS n FROM ${s}.verifications v WHERE ${where.replace('$3', '$1')}`, params);
    const r = await c.query(
      `SELECT ${verificationColumns(s)} FROM ${s}.verifications v WHERE ${where} ORDER BY v.verified_at DESC, v.verification_id DESC LIMIT $1 OFFSET $2`,
      [opts.limit, opts.offset, ...params],
    );
    return { total: total.rows[0].n, offset: opts.offset, limit: opts.limit, rows: r.rows.map(verificationOf) };
  });
}

export async function getVerification(engine: Engine, id: number): Promise<VerificationRecordFull | undefined> {
  return engine.catalog.read(async (c, s) => {
    const r = await c.query(`SELECT ${verificationColumns(s)}, v.report FROM ${s}.verifications v WHERE v.verification_id = $1`, [id]);
    return r.rows[0] ? { ...verificationOf(r.rows[0]), report: r.rows[0].report } : undefined;
  });
}

export interface TrendPoint {
  /** the backup's snapshot (tenant) or consistent point (full), ISO-8601 */
  at: string;
  backupId: string;
  bytes: number;
  rows: number | null;
  seconds: number;
}

/** A tenant's newest `limit` tenant backups, oldest first: size and duration over time. */
export async function tenantTrend(engine: Engine, tenantId: string, limit = 100): Promise<TrendPoint[]> {
  return engine.catalog.read(async (c, s) => {
    const r = await c.query(
      `SELECT backup_id, ${microsText('snapshot_at')} AS at, bytes, rows, extract(epoch FROM finished_at - started_at)::float8 AS seconds
         FROM ${s}.backups WHERE tenant_id = $1 AND kind = 'tenant' ORDER BY snapshot_at DESC, backup_id DESC LIMIT $2`,
      [tenantId, limit],
    );
    return r.rows.reverse().map((x) => ({ at: x.at, backupId: x.backup_id, bytes: Number(x.bytes), rows: Number(x.rows), seconds: Number(x.seconds) }));
  });
}

/** A database's newest `limit` full backups, oldest first (index full_backups_consistent_idx). */
export async function fullTrend(engine: Engine, database: string, limit = 100): Promise<TrendPoint[]> {
  return engine.catalog.read(async (c, s) => {
    const r = await c.query(
      `SELECT backup_id, ${microsText('consistent_at')} AS at, bytes, extract(epoch FROM finished_at - started_at)::float8 AS seconds
         FROM ${s}.full_backups WHERE database = $1 ORDER BY consistent_at DESC, backup_id DESC LIMIT $2`,
      [database, limit],
    );
    return r.rows.reverse().map((x) => ({ at: x.at, backupId: x.backup_id, bytes: Number(x.bytes), rows: null, seconds: Number(x.seconds) }));
  });
}

/** Every restore point of a tenant (kind tenant: what retention judges), newest first, at most `cap`. */
export async function tenantRestorePoints(engine: Engine, tenantId: string, cap = 5000): Promise<{ backupId: string; at: string }[]> {
  return engine.catalog.read(async (c, s) => {
    const r = await c.query(
      `SELECT backup_id, ${microsText('snapshot_at')} AS at FROM ${s}.backups WHERE tenant_id = $1 AND kind = 'tenant' ORDER BY snapshot_at DESC, backup_id DESC LIMIT $2`,
      [tenantId, cap],
    );
    return r.rows.map((x) => ({ backupId: x.backup_id, at: x.at }));
  });
}
