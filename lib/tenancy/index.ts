// Tenancy: discovery, tenant lookups and row estimates.
import type { ClientBase } from 'pg';
import { ErrorType, TenantsafeError } from '../errors';
import { qualified, quoteIdent } from '../pg';
import { fromTable, ownedTable, tenantFilter, tenantRangeCondition, type TenantRange } from './filter';
import type { TenancyPlan } from './types';

export * from './types';
export { discoverTenancy, planTenancy, readTables } from './discover';
export { batchRowsQuery, describeOwnership, tenantRangeCondition, type BatchScope, type TenantRange, fromTable, notTenantFilter, ownedTable, tenantChain, tenantFilter, tenantRowsQuery } from './filter';

function tenantTableSql(plan: TenancyPlan): string {
  const t = ownedTable(plan, plan.tenantTable);
  return qualified(t.schema, t.name);
}

/** Throws TenantNotFound (bad input) unless the tenant row exists. */
export async function assertTenantExists(client: ClientBase, plan: TenancyPlan, tenantId: string): Promise<void> {
  let found: boolean;
  try {
    const r = await client.query(`SELECT 1 FROM ${tenantTableSql(plan)} WHERE ${quoteIdent(plan.tenantColumn)} = $1`, [tenantId]);
    found = r.rowCount! > 0;
  } catch (err) {
    // 22P02: the id is not even a valid value of the key's type (e.g. 'x' for an integer key)
    if ((err as { code?: string }).code !== '22P02') throw err;
    found = false;
  }
  if (!found) throw tenantNotFound(plan, tenantId);
}

/** The TenantNotFound error (bad input) of a tenant with no row in the tenant table. */
export function tenantNotFound(plan: TenancyPlan, tenantId: string): TenantsafeError {
  return new TenantsafeError(
    ErrorType.TenantNotFound,
    `Tenant "${tenantId}" does not exist (no row in ${plan.tenantTable} with ${plan.tenantColumn} = '${tenantId}').`,
    'Check the tenant id; `tenantsafe tenancy show --tenants` lists the tenants.',
  );
}

/** The tenants in the key's order; within `range` (bytewise order of the ids as text), in that order. */
export async function listTenants(client: ClientBase, plan: TenancyPlan, range?: TenantRange): Promise<string[]> {
  const col = quoteIdent(plan.tenantColumn);
  const query = range
    ? `SELECT ${col}::text AS id FROM ${tenantTableSql(plan)} WHERE ${tenantRangeCondition(`${col}::text`, range)} ORDER BY ${col}::text COLLATE "C"`
    : `SELECT ${col}::text AS id FROM ${tenantTableSql(plan)} ORDER BY ${col}`;
  const r = await client.query<{ id: string }>(query);
  return r.rows.map((x) => x.id);
}

/** The planner's estimate of the tenant's rows per table (cheap: EXPLAIN, no scan). */
export async function estimateTenantRows(client: ClientBase, plan: TenancyPlan, tenantId: string): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const t of plan.tables) {
    const r = await client.query(`EXPLAIN (FORMAT JSON) SELECT 1 FROM ${fromTable(t, 't')} WHERE ${tenantFilter(plan, t, 't', tenantId)}`);
    out[t.key] = Math.round(r.rows[0]['QUERY PLAN'][0].Plan['Plan Rows']);
  }
  return out;
}

/** Which of `tenantIds` have a row in the tenant table (a tenant deleted since its backups were taken has none). */
export async function existingTenants(client: ClientBase, plan: TenancyPlan, tenantIds: string[]): Promise<Set<string>> {
  const col = quoteIdent(plan.tenantColumn);
  const r = await client.query<{ id: string }>(`SELECT ${col}::text AS id FROM ${tenantTableSql(plan)} WHERE ${col}::text = ANY($1::text[])`, [tenantIds]);
  return new Set(r.rows.map((x) => x.id));
}
