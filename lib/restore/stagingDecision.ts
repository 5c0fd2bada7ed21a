// How much of each table's backup a preview stages: nothing where the tenant's rows are the very
// row versions the backup read, its keys (or only the first few) where the tenant has no row,
// else all of it. Told from row versions: their count, and whether any was written by a
// transaction the backup's snapshot could not see.
import type { ClientBase } from 'pg';
import { snapshotOrigin } from '../tenantBackup/export';
import type { TenantManifest } from '../format/tenantManifest';
import { tenantChain } from '../tenancy';
import { blockingDrift, foreignKeysOf, sameColumnsAsBackup, uniqueKeysOf, type RestoreContext, type TableMapping } from './mapping';
import type { PlanArgs } from './plan';
import { isExactReplace } from './rules';
import { liveTable, liveTenantRows, one, writtenSince } from './sql';
import type { RestoreSelection } from './types';

/** How much of a table's backup a preview stages (see stagingOf). */
export type Staging = 'nothing' | 'first-keys' | 'keys' | 'all';

/**
 * How much of a table's backup the preview stages, as of the caller's snapshot. In an exact
 * replace of a table whose schema is the backup's:
 *  - nothing, where the tenant's rows are the very row versions the backup read: as many as the
 *    backup holds, and neither a row nor a parent row that ties it to the tenant written by a
 *    transaction the backup's snapshot could not see (a row deleted lowers the count, and a row
 *    that makes up for it is either written since or tied to the tenant by a parent written
 *    since: moved in). Only with `backupXmin` (comparableBackupXmin);
 *  - keys, where the tenant has no row: every backed-up row is an insert, and the apply loads the
 *    table straight from its object;
 *  - the first keys only, for the preview's sample, where besides no check needs the keys either
 *    (firstKeysSuffice);
 * else all of it.
 */
export async function stagingOf(c: ClientBase, ctx: RestoreContext, m: TableMapping, args: PlanArgs, backupXmin: string | undefined): Promise<Staging> {
  if (!replacesAsBackedUp(ctx, m, args.selection)) return 'all';
  const none = firstKeysSuffice(ctx, m) ? 'first-keys' : 'keys';
  if (!backupXmin) return (await one(c, `SELECT EXISTS (SELECT 1 FROM ${liveTenantRows(ctx, m, args.tenantId)}) AS any`)).any ? 'all' : none;
  const own = await tenantRowVersions(c, ctx, m, args.tenantId, backupXmin);
  if (own.rows === m.manifest.rows && !own.writtenSince && !(await movedInSince(c, ctx, m, args.tenantId, backupXmin))) return 'nothing';
  return own.rows === 0 ? none : 'all';
}

/**
 * Whether a preview stages only the first keys of this table when the tenant has no row in it
 * (stagingOf): its sample is then the first rows of the backup's object, not the smallest keys.
 */
export function samplesFirstRows(ctx: RestoreContext, m: TableMapping, selection: RestoreSelection): boolean {
  return replacesAsBackedUp(ctx, m, selection) && firstKeysSuffice(ctx, m);
}

/** An exact replace of a table whose schema is the backup's: the tenant's rows are to become the backed-up ones, as they are. */
function replacesAsBackedUp(ctx: RestoreContext, m: TableMapping, selection: RestoreSelection): boolean {
  return isExactReplace(selection) && !!m.live && !blockingDrift(m) && !ctx.drift.some((d) => d.table === m.table) && sameColumnsAsBackup(m);
}

/**
 * For a table the tenant has no row in, in an exact replace: whether no check needs its keys, so
 * the preview stages a few, as its sample. No live row can hold one of them (the key, and every
 * unique key, holds the tenant id), and its foreign keys are on the tenant id alone (one value in
 * every row, which the apply looks up once). Its children's checks look at live rows: it is
 * restored whole.
 */
function firstKeysSuffice(ctx: RestoreContext, m: TableMapping): boolean {
  const ownership = m.live!.ownership;
  if (!m.key || ownership.kind === 'parent' || !m.key.includes(ownership.column)) return false;
  const uniqueToTenant = uniqueKeysOf(ctx, m).every((u) => u.columns.includes(ownership.column));
  return uniqueToTenant && foreignKeysOf(ctx, m).every((fk) => fk.columns.length === 1 && fk.columns[0] === ownership.column);
}

/**
 * The backup's snapshot xmin, if this database's transaction ids can be compared with it: the
 * backup recorded it, this is the database it read (same system identifier and timeline: not a
 * copy, nor a history rewound by a point-in-time recovery, where ids are handed out again; same
 * database oid), and fewer than 2^30 ids went by since (age comparisons hold within 2^31).
 */
export async function comparableBackupXmin(c: ClientBase, manifest: TenantManifest): Promise<string | undefined> {
  const then = manifest.snapshot.origin;
  if (!then) return undefined;
  const now = await snapshotOrigin(c);
  const since = BigInt(now.xmin) - BigInt(then.xmin);
  const sameHistory = now.systemIdentifier === then.systemIdentifier && now.timeline === then.timeline && now.databaseOid === then.databaseOid;
  return sameHistory && since >= 0n && since < 2n ** 30n ? then.xmin : undefined;
}

/** Whether a tenant row of the table hangs from a parent row written since a snapshot of this xmin (xid8 text). */
async function movedInSince(c: ClientBase, ctx: RestoreContext, m: TableMapping, tenantId: string, xmin: string): Promise<boolean> {
  const chain = tenantChain(ctx.plan, m.live!, 'l', tenantId);
  if (chain.aliases.length === 1) return false;
  // a query of its own, only where the tenant's rows matched the backup: the chain's inner joins
  // cost more than tenantRowVersions' semi-joins
  const parentWrittenSince = chain.aliases.slice(1).map((a) => writtenSince(a, '$1::xid8')).join(' OR ');
  return (await one<{ moved: boolean }>(c, `SELECT EXISTS (SELECT 1 FROM ${liveTable(m)} l ${chain.joins} WHERE ${chain.where} AND (${parentWrittenSince})) AS moved`, [xmin])).moved;
}

/** The tenant's rows of a table: how many, and whether any was written since a snapshot of this xmin (xid8 text). */
export async function tenantRowVersions(c: ClientBase, ctx: RestoreContext, m: TableMapping, tenantId: string, xmin: string): Promise<{ rows: number; writtenSince: boolean }> {
  const r = await one<{ n: string; young: boolean }>(
    c,
    `SELECT count(*) AS n, coalesce(bool_or(${writtenSince('l', '$1::xid8')}), false) AS young FROM ${liveTenantRows(ctx, m, tenantId)}`,
    [xmin],
  );
  return { rows: Number(r.n), writtenSince: r.young };
}
