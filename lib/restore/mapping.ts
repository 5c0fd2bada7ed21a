// How a backup's tables map onto the live schema now: which columns can be copied back, which
// key rows are matched on, and every difference (drift) since the backup with its policy.
import type { ClientBase } from 'pg';
import type { Config } from '../config';
import type { ErasureRecord } from '../erasure';
import { ErrorType, TenantsafeError } from '../errors';
import type { ManifestTable, TenantManifest } from '../format/tenantManifest';
import { qualified } from '../pg';
import { planTenancy, readTables, type ColumnInfo, type ForeignKeyInfo, type OwnedTable, type TableInfo, type TenancyPlan, type UniqueKeyInfo } from '../tenancy';
import { scratchTableName } from './sql';
import type { DriftItem } from './types';

export interface TableMapping {
  table: string;
  /** position in the manifest: parents before children */
  position: number;
  manifest: ManifestTable;
  /** undefined: the table is gone since the backup */
  live?: OwnedTable;
  /** the scratch table holding the backup's rows */
  staged: string;
  /**
   * The backup's columns, typed as the live column where there is one (else text). A column the
   * diff compares as text anyway, of the type it had in the backup, is staged as text and cast
   * to `castTo` only where its values are written back: parsing it (jsonb, numeric) is a good
   * part of staging, and its values fit, coming from that very type.
   */
  stagedColumns: { name: string; type: string; castTo?: string }[];
  /** columns copied back: in the backup and in the live table (generated ones excluded) */
  columns: string[];
  /** live primary key (equal to the backup's, else the table is blocked); null: none */
  key: string[] | null;
  /** live columns the backup lacks that are NOT NULL without a default: inserts would fail */
  requiredNewColumns: string[];
  /** backed-up columns rows are matched or joined on: the key, both ends of foreign keys, unique keys */
  joinColumns: string[];
}

export interface RestoreContext {
  restoreId: string;
  /** scratch schema in the live database */
  schema: string;
  manifest: TenantManifest;
  plan: TenancyPlan;
  /** every table of the configured schemas, owned or global, with its foreign keys */
  tables: Map<string, TableInfo>;
  mappings: TableMapping[];
  drift: DriftItem[];
  /** the ledger's erasures this restore applies again (lib/restore/erasures.ts); absent: none */
  erasures?: ErasureRecord[];
}

/** tenantsafe_restore_<restore id>: lower case, safe as an identifier. */
export function scratchSchemaName(restoreId: string): string {
  return `tenantsafe_restore_${restoreId.toLowerCase().replace(/[^a-z0-9]/g, '_')}`;
}

export const scratchSchemaPattern = 'tenantsafe_restore_%';

export async function loadRestoreContext(c: ClientBase, args: { tenancy: Config['tenancy']; manifest: TenantManifest; restoreId: string }): Promise<RestoreContext> {
  const tables = await readTables(c, args.tenancy.schemas);
  const plan = planTenancy(tables, args.tenancy);
  const schema = scratchSchemaName(args.restoreId);
  const drift: DriftItem[] = [];
  // columns rows are joined on, staged with their type: keys, both ends of every foreign key, and
  // unique keys (rows written are matched against live rows on them)
  const joinColumns = new Set<string>();
  for (const t of tables.values()) {
    for (const fk of t.foreignKeys) {
      for (const col of fk.columns) joinColumns.add(`${t.key}\0${col}`);
      for (const col of fk.refColumns) joinColumns.add(`${fk.refTable}\0${col}`);
    }
    for (const u of t.uniqueKeys) for (const col of u.columns) joinColumns.add(`${t.key}\0${col}`);
  }
  const mappings = args.manifest.tables.map((m, position) => mapTable(m, position, plan, schema, drift, (col) => joinColumns.has(`${m.table}\0${col}`)));
  const backedUp = new Set(args.manifest.tables.map((t) => t.table));
  for (const t of plan.tables) {
    if (!backedUp.has(t.key)) drift.push({ table: t.key, kind: 'table-added', policy: 'new since the backup: left as it is' });
  }
  return { restoreId: args.restoreId, schema, manifest: args.manifest, plan, tables, mappings, drift };
}

function mapTable(m: ManifestTable, position: number, plan: TenancyPlan, schema: string, drift: DriftItem[], joined: (column: string) => boolean): TableMapping {
  const live = plan.tables.find((t) => t.key === m.table);
  const staged = qualified(schema, scratchTableName(position, 'staged'));
  if (!live) {
    drift.push({ table: m.table, kind: 'table-dropped', policy: 'gone since the backup (or no longer tenant-owned): cannot be restored' });
    return { table: m.table, position, manifest: m, staged, stagedColumns: m.copyColumns.map((name) => ({ name, type: 'text' })), columns: [], key: null, requiredNewColumns: [], joinColumns: [] };
  }
  const liveColumns = new Map(live.columns.map((c) => [c.name, c]));
  const isJoinColumn = (name: string) => !!live.primaryKey?.includes(name) || joined(name);
  const backupTypes = new Map(m.columns.map((c) => [c.name, c.type]));
  const stagedColumns = m.copyColumns.map((name) => {
    const lc = liveColumns.get(name);
    if (!lc || lc.generated) {
      drift.push({ table: m.table, column: name, kind: 'column-dropped', from: backupTypes.get(name), policy: 'no longer in the table: its backed-up values are not restored' });
      return { name, type: 'text' };
    }
    if (lc.type !== backupTypes.get(name)) {
      drift.push({ table: m.table, column: name, kind: 'column-retyped', from: backupTypes.get(name), to: lc.type, policy: `values are read as ${lc.type}; a value that does not fit stops the restore` });
      return { name, type: lc.type };
    }
    // a domain's constraints may have changed since the backup: its values are checked at staging
    const asText = comparedAsText(lc) && lc.typeKind !== 'd' && !isJoinColumn(name);
    return asText ? { name, type: 'text', castTo: lc.type } : { name, type: lc.type };
  });
  const columns = m.copyColumns.filter((n) => liveColumns.has(n) && !liveColumns.get(n)!.generated);
  const requiredNewColumns: string[] = [];
  for (const lc of live.columns) {
    if (lc.generated || m.copyColumns.includes(lc.name)) continue;
    const required = lc.notNull && !lc.hasDefault;
    if (required) requiredNewColumns.push(lc.name);
    drift.push({
      table: m.table,
      column: lc.name,
      kind: 'column-added',
      to: lc.type,
      policy: required ? 'NOT NULL without a default: rows to insert cannot be restored' : 'restored rows get its default (updated rows keep their value)',
    });
  }
  const sameKey = JSON.stringify([...(live.primaryKey ?? [])].sort()) === JSON.stringify([...(m.primaryKey ?? [])].sort());
  if (!sameKey) {
    drift.push({ table: m.table, kind: 'key-changed', from: (m.primaryKey ?? []).join(', ') || 'none', to: (live.primaryKey ?? []).join(', ') || 'none', policy: 'rows cannot be matched: cannot be restored' });
  }
  if (sameKey && live.primaryKey?.some((k) => !columns.includes(k))) {
    throw new TenantsafeError(ErrorType.BadInput, `${m.table}: primary key column missing from the backup.`, 'This backup cannot be restored into the current schema.');
  }
  return { table: m.table, position, manifest: m, live, staged, stagedColumns, columns, key: sameKey ? live.primaryKey : null, requiredNewColumns, joinColumns: columns.filter(isJoinColumn) };
}

/**
 * Types whose equality means identical text output (the form row checksums see): compared as
 * values, which is cheap. Others (numeric 1.0 vs 1.00, floats, json, intervals, arrays, domains,
 * composites) are compared as text, so "equal" always means "the same bytes in a backup".
 */
const comparableAsValues = /^(smallint|integer|bigint|text|boolean|date|uuid|bytea|"char"|character varying(\(\d+\))?|character(\(\d+\))?|timestamp(\(\d\))? with(out)? time zone|time(\(\d\))? without time zone)$/;

export function comparedAsText(c: ColumnInfo): boolean {
  return c.typeKind !== 'e' && !comparableAsValues.test(c.type);
}

/** Drift that makes a selected table impossible to restore. */
export function blockingDrift(mapping: TableMapping): string | undefined {
  if (!mapping.live) return `${mapping.table} no longer exists (or is no longer tenant-owned)`;
  if (mapping.key === null && (mapping.live.primaryKey || mapping.manifest.primaryKey)) {
    return `${mapping.table} has a different primary key now (${(mapping.manifest.primaryKey ?? []).join(', ') || 'none'} in the backup, ${(mapping.live.primaryKey ?? []).join(', ')} now)`;
  }
  return undefined;
}

/** The table still has the backup's columns, in its order: its rows read back as the backup wrote them. */
export function sameColumnsAsBackup(m: TableMapping): boolean {
  return m.columns.join('\0') === m.manifest.copyColumns.join('\0');
}

/** The mapping of a table that still exists live. */
export function mappingOf(ctx: RestoreContext, table: string): TableMapping | undefined {
  return ctx.mappings.find((m) => m.table === table && m.live);
}

/** Foreign keys of a live table (from the catalog, the current schema). */
export function foreignKeysOf(ctx: RestoreContext, m: TableMapping): ForeignKeyInfo[] {
  return ctx.tables.get(m.table)?.foreignKeys ?? [];
}

/** Unique keys of a live table other than its primary key (from the catalog, the current schema). */
export function uniqueKeysOf(ctx: RestoreContext, m: TableMapping): UniqueKeyInfo[] {
  return ctx.tables.get(m.table)?.uniqueKeys ?? [];
}

/** A table no tenant owns (not in the tenancy plan): a restore never writes it. */
export function isGlobal(ctx: RestoreContext, table: string): boolean {
  return !ctx.plan.tables.some((t) => t.key === table);
}
