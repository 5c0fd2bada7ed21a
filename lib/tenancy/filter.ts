// SQL that selects one tenant's rows of an owned table, derived from the tenancy plan.
import { columnList, joinOn, qualified, quoteIdent, quoteLiteral } from '../pg';
import type { OwnedTable, TenancyPlan } from './types';
import { ErrorType, TenantsafeError } from '../errors';

export function ownedTable(plan: TenancyPlan, key: string): OwnedTable {
  const t = plan.tables.find((x) => x.key === key);
  if (!t) throw new TenantsafeError(ErrorType.TenancyUnresolved, `${key} is not a tenant-owned table in this plan.`, 'Look at `tenantsafe tenancy show`; tenancy.ownership may name a table that is not owned.');
  return t;
}

/**
 * A boolean SQL expression true for the rows of `table` (aliased `alias`) that belong to the
 * tenant. Through-parent ownership becomes nested EXISTS semi-joins, which Postgres plans as
 * hash or index semi-joins. The tenant id is inlined as a literal because COPY takes no
 * parameters; Postgres casts it to the column's type. `tableSql` names the parent tables (by
 * default the live ones; a rebuild of the tenant as of a point in time reads its own).
 */
export function tenantFilter(plan: TenancyPlan, table: OwnedTable, alias: string, tenantId: string, tableSql: (t: OwnedTable) => string = (t) => qualified(t.schema, t.name)): string {
  const o = table.ownership;
  if (o.kind !== 'parent') return `${alias}.${quoteIdent(o.column)} = ${quoteLiteral(tenantId)}`;
  const parent = ownedTable(plan, o.parent);
  const p = `${alias}_p`;
  return `EXISTS (SELECT 1 FROM ${tableSql(parent)} ${p} WHERE ${joinOn(p, alias, o.parentColumns, o.columns)} AND ${tenantFilter(plan, parent, p, tenantId, tableSql)})`;
}

/**
 * The rows tenantFilter leaves out: other tenants' and no tenant's (a NULL tenant column). Through
 * a parent, NOT EXISTS, which Postgres plans as an anti-join; `(EXISTS ...) IS NOT TRUE` means the
 * same (EXISTS is never NULL) but is run as a subplan, per row or hashed as the estimates go.
 */
export function notTenantFilter(plan: TenancyPlan, table: OwnedTable, alias: string, tenantId: string): string {
  const filter = tenantFilter(plan, table, alias, tenantId);
  return table.ownership.kind === 'parent' ? `NOT ${filter}` : `(${filter}) IS NOT TRUE`;
}

/**
 * The same rows as tenantFilter, as inner joins with the parent rows that tie each to the tenant
 * (aliased `alias_p`, `alias_p_p`, ...; a parent is joined on the key its foreign key references,
 * so still one row per tenant row): for reading the parents' columns too, such as their xmin.
 * `joins` follows `FROM <table> <alias>`; `aliases` starts with `alias`.
 */
export function tenantChain(plan: TenancyPlan, table: OwnedTable, alias: string, tenantId: string): { joins: string; where: string; aliases: string[] } {
  const aliases = [alias];
  const joins: string[] = [];
  let t = table;
  for (let o = t.ownership; o.kind === 'parent'; o = t.ownership) {
    const child = aliases.at(-1)!;
    const p = `${child}_p`;
    t = ownedTable(plan, o.parent);
    joins.push(`JOIN ${qualified(t.schema, t.name)} ${p} ON ${joinOn(p, child, o.parentColumns, o.columns)}`);
    aliases.push(p);
  }
  const root = t.ownership as Exclude<OwnedTable['ownership'], { kind: 'parent' }>;
  return { joins: joins.join(' '), where: `${aliases.at(-1)}.${quoteIdent(root.column)} = ${quoteLiteral(tenantId)}`, aliases };
}

/**
 * A slice of the tenants in bytewise order of their ids as text (`from` inclusive, `to`
 * exclusive, either open): what one batch of many backs up.
 */
export interface TenantRange {
  from?: string;
  to?: string;
}

/** Which tenants' rows a batch's scan reads: the listed ids, a range of ids but some, or (null) every row. */
export type BatchScope = { ids: readonly string[] } | { range: TenantRange; except: readonly string[] } | null;

/** The SQL condition on a tenant id (text) expression for a range: bytewise ("C"), as the ranges were cut. */
export function tenantRangeCondition(expr: string, range: TenantRange): string {
  const bounds = [
    range.from !== undefined ? `${expr} COLLATE "C" >= ${quoteLiteral(range.from)}` : '',
    range.to !== undefined ? `${expr} COLLATE "C" < ${quoteLiteral(range.to)}` : '',
  ].filter(Boolean);
  return bounds.length > 0 ? bounds.join(' AND ') : 'true';
}

const textArray = (ids: readonly string[]) => quoteLiteral(`{${ids.map((id) => `"${id.replace(/[\\"]/g, (c) => `\\${c}`)}"`).join(',')}}`);

/**
 * SELECT of the rows of a batch of tenants from one table, for a batched backup: the tenant id
 * as text first, then the exported columns; `grouped`: ordered by tenant, so one scan splits
 * into per-tenant streams as it arrives (else the reader gathers each tenant's rows itself). Child tables join their parents up to the
 * tenant column (tenantChain: one row per child row). `scope` null: every row with a tenant
 * (no filter; the reader drops rows of ids that are no tenant); a range: the rows of ids in it but
 * `except` (the reader drops ids that are no tenant).
 */
export function batchRowsQuery(plan: TenancyPlan, table: OwnedTable, scope: BatchScope, opts: { grouped: boolean }): string {
  const { joins, aliases } = tenantChain(plan, table, 't', '');
  let root = table;
  while (root.ownership.kind === 'parent') root = ownedTable(plan, root.ownership.parent);
  const tenant = `${aliases.at(-1)}.${quoteIdent((root.ownership as { column: string }).column)}`;
  // bytewise order ("C"): any order groups the rows, and it sorts far faster than a language's
  const order = opts.grouped ? ` ORDER BY ${tenant}::text COLLATE "C"` : '';
  let where = ` WHERE ${tenant} IS NOT NULL`;
  if (scope && 'ids' in scope) where = ` WHERE ${tenant}::text = ANY(${textArray(scope.ids)}::text[])`;
  else if (scope) {
    where += ` AND ${tenantRangeCondition(`${tenant}::text`, scope.range)}`;
    if (scope.except.length > 0) where += ` AND NOT ${tenant}::text = ANY(${textArray(scope.except)}::text[])`;
  }
  return `SELECT ${tenant}::text, ${columnList('t', table.copyColumns)} FROM ${fromTable(table, 't')} ${joins}${where}${order}`;
}

/** FROM item for a table: ONLY for plain tables (old-style inheritance children are tables of their own). */
export function fromTable(table: OwnedTable, alias?: string): string {
  return `${table.partitioned ? '' : 'ONLY '}${qualified(table.schema, table.name)}${alias ? ` ${alias}` : ''}`;
}

/** SELECT of the tenant's rows of one table, exported columns only (no generated ones). */
export function tenantRowsQuery(plan: TenancyPlan, table: OwnedTable, tenantId: string): string {
  return `SELECT ${columnList('t', table.copyColumns)} FROM ${fromTable(table, 't')} WHERE ${tenantFilter(plan, table, 't', tenantId)}`;
}

/** Human-readable: how a table's tenant filter is derived. */
export function describeOwnership(table: OwnedTable): string {
  const o = table.ownership;
  switch (o.kind) {
    case 'tenant-table':
      return `the tenant row itself (${o.column} = tenant)`;
    case 'column':
      return o.via
        ? `${o.column} = tenant (foreign key ${o.via.foreignKey} to ${o.via.parent}.${o.via.parentColumn})${o.override ? ' [configured]' : ''}`
        : `${o.column} = tenant`;
    case 'parent':
      return `through ${o.parent} (${o.columns.join(', ')} → ${o.parentColumns.join(', ')}, foreign key ${o.foreignKey})${o.override ? ' [configured]' : ''}`;
  }
}
