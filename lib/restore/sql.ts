// SQL text that lib/restore builds in many places: the names of a restore's scratch tables, the
// live tables as the restore reads them, and what is read from a table's diff (which diff.ts
// writes: its key columns, `kind`, and the backed-up values of the other columns).
import type { ClientBase } from 'pg';
import { columnList, qualified, quoteIdent } from '../pg';
import { fromTable, tenantFilter } from '../tenancy';
import type { RestoreContext, TableMapping } from './mapping';

/** A backed-up table's scratch tables: its staged rows, its diff, its keys skipped under --missing-refs skip, its rows left out by erasures. */
const scratchLetters = { staged: 't', diff: 'd', skipped: 'x', erased: 'e' } as const;
export type ScratchTable = keyof typeof scratchLetters;

/** A scratch table's own name (in the scratch schema), numbered by the table's position in the manifest. */
export function scratchTableName(position: number, kind: ScratchTable): string {
  return `${scratchLetters[kind]}${String(position + 1).padStart(4, '0')}`;
}

export function scratchTable(ctx: RestoreContext, m: TableMapping, kind: ScratchTable): string {
  return qualified(ctx.schema, scratchTableName(m.position, kind));
}

/** Where a preview stores its plan, with what tells whether it still holds (plan.ts). */
export function planStateTable(ctx: RestoreContext): string {
  return qualified(ctx.schema, 'plan_state');
}

/** Where the apply records its result, inside its own transaction (apply.ts). */
export function appliedMarkerTable(ctx: RestoreContext): string {
  return qualified(ctx.schema, 'applied');
}

/** Live FROM item for a mapping's table (ONLY for plain tables, like the backup read it). */
export function liveTable(m: TableMapping): string {
  return fromTable(m.live!);
}

/** The tenant's live rows of a mapping's table, for FROM clauses (alias l). */
export function liveTenantRows(ctx: RestoreContext, m: TableMapping, tenantId: string, alias = 'l'): string {
  return `${liveTable(m)} ${alias} WHERE ${tenantFilter(ctx.plan, m.live!, alias, tenantId)}`;
}

/** True for a row version written by a transaction that a snapshot of this xmin (an xid8 SQL expression) could not see. */
export function writtenSince(alias: string, xmin: string): string {
  return `age(${alias}.xmin) <= age(xid(${xmin}))`;
}

/** A staged column's value as the live column takes it (text-staged columns cast back); `column`: where it is kept. */
export function stagedValue(m: TableMapping, alias: string, name: string, column = name): string {
  const castTo = m.stagedColumns.find((c) => c.name === name)?.castTo;
  return `${alias}.${quoteIdent(column)}${castTo ? `::${castTo}` : ''}`;
}

/** The kinds of row in a diff table: a conflict is a key to insert that another tenant's row holds. */
export type DiffKind = 'insert' | 'update' | 'delete' | 'conflict';

/** Where the diff table keeps a non-key column's backed-up value (beside `kind`, which a column may be called too). */
export function backedUpValue(column: string): string {
  return `+${column}`;
}

/** Keys of one kind of difference of a mapping (or of some), as a subquery (give it an alias). */
export function keySet(ctx: RestoreContext, m: TableMapping, kinds: DiffKind | readonly DiffKind[]): string {
  const wanted = (typeof kinds === 'string' ? [kinds] : kinds).map((k) => `'${k}'`).join(', ');
  return `(SELECT ${columnList('d', m.key!)} FROM ${scratchTable(ctx, m, 'diff')} d WHERE d.kind IN (${wanted}))`;
}

/**
 * The rows to insert or update (of some kinds), with their backed-up values in the live columns'
 * types, from the diff table (alias it): all columns, or some (a table diffed from its keys alone
 * holds its key and join columns only).
 */
export function changedRows(ctx: RestoreContext, m: TableMapping, kinds: 'insert' | 'update' | readonly ('insert' | 'update')[], columns = m.columns): string {
  const value = (n: string) => (m.key!.includes(n) ? `d.${quoteIdent(n)}` : `${stagedValue(m, 'd', n, backedUpValue(n))} AS ${quoteIdent(n)}`);
  const wanted = (typeof kinds === 'string' ? [kinds] : kinds).map((k) => `'${k}'`).join(', ');
  return `(SELECT ${columns.map(value).join(', ')} FROM ${scratchTable(ctx, m, 'diff')} d WHERE d.kind IN (${wanted}))`;
}

/** The first row a query returns. */
export async function one<T = Record<string, any>>(c: ClientBase, sql: string, params?: unknown[]): Promise<T> {
  return (await c.query(sql, params)).rows[0] as T;
}
