// What stops an apply until the operator acts, found set-based before anything is changed:
// references the changes would break, across tables, and rows that would collide with a live
// row on a unique key.
import type { ClientBase } from 'pg';
import { allNotNull, columnList, joinOn, qualified, quoteIdent } from '../pg';
import { notTenantFilter, ownedTable, tenantFilter } from '../tenancy';
import { foreignKeysOf, isGlobal, mappingOf, uniqueKeysOf, type RestoreContext, type TableMapping } from './mapping';
import { appliedKinds, isSelected } from './rules';
import { changedRows, keySet, liveTable, one } from './sql';
import type { Blocker, ChangeKind, RestoreSelection, TableChanges, TablePreview } from './types';

/**
 * References that the apply would break, counted set-based:
 *  - backed-up rows (to insert or update) pointing at global rows that are gone;
 *  - rows to insert or update pointing at parent rows that exist neither live nor among the
 *    parent rows this restore inserts (a --tables selection without its parents);
 *  - rows to insert or update whose parent, through the foreign key that ties them to the
 *    tenant, is another tenant's now (moved since the backup; restored, they would be theirs);
 *  - live rows outside this restore's deletes (other tenants', global tables', or tables left
 *    out of the selection) pointing at rows this restore deletes.
 */
export async function findReferenceBlockers(
  c: ClientBase,
  ctx: RestoreContext,
  args: { tenantId: string; selection: RestoreSelection },
  tables: Record<string, TablePreview>,
  blockers: Blocker[],
  warnings: string[],
): Promise<void> {
  const kinds = appliedKinds(args.selection);
  const applies = (m: TableMapping, k: ChangeKind) => (tables[m.table]?.[k] ?? 0) > 0;
  // A parent restored in full ends up holding every backed-up parent row, and the backup was
  // read from one snapshot with the foreign key enforced: its children's references hold. (A
  // reference across tenants is still checked, set-based, by the apply.)
  const fullyRestored = (table: string) => !!mappingOf(ctx, table) && isSelected(args.selection, table) && kinds.size === 3 && args.selection.mode === 'replace';
  for (const m of ctx.mappings) {
    if (!m.key || !tables[m.table]?.selected) continue;
    const kindsChanged = (['insert', 'update'] as const).filter((k) => applies(m, k));
    if (kindsChanged.length === 0) continue;
    for (const fk of foreignKeysOf(ctx, m)) {
      if (!fk.columns.every((col) => m.columns.includes(col)) || !ctx.tables.has(fk.refTable) || fk.refTable === m.table) continue;
      if (!isGlobal(ctx, fk.refTable) && fullyRestored(fk.refTable)) continue;
      const ref = ctx.tables.get(fk.refTable)!;
      const parent = mappingOf(ctx, fk.refTable);
      const notNull = allNotNull('r', fk.columns);
      const parentRow = (also = '') => `EXISTS (SELECT 1 FROM ${qualified(ref.schema, ref.name)} p WHERE ${joinOn('p', 'r', fk.refColumns, fk.columns)}${also})`;
      const existsLive = parentRow();
      const insertedByUs =
        parent?.key && tables[parent.table]?.insert && fk.refColumns.every((col) => parent.columns.includes(col))
          ? `OR EXISTS (SELECT 1 FROM ${changedRows(ctx, parent, 'insert', fk.refColumns)} ps WHERE ${joinOn('ps', 'r', fk.refColumns, fk.columns)})`
          : '';
      // the foreign key that ties the table's rows to the tenant: a parent that exists but is
      // another tenant's now would make a restored row theirs
      const ownership = m.live!.ownership;
      const ownParent =
        ownership.kind === 'parent' && ownership.foreignKey === fk.name ? parentRow(` AND ${tenantFilter(ctx.plan, ownedTable(ctx.plan, fk.refTable), 'p', args.tenantId)}`) : undefined;
      const { missing, others } = await one<{ missing: number; others: number }>(
        c,
        `SELECT count(*) FILTER (WHERE NOT (${existsLive} ${insertedByUs}))::int AS missing,
                ${ownParent ? `count(*) FILTER (WHERE ${existsLive} AND NOT (${ownParent} ${insertedByUs}))::int` : '0'} AS others
           FROM ${changedRows(ctx, m, kindsChanged, fk.columns)} r WHERE ${notNull}`,
      );
      if (others > 0) {
        blockers.push({
          kind: 'parent-of-another-tenant',
          table: m.table,
          rows: others,
          message: `${others} rows of ${m.table} to restore hang from ${fk.refTable} rows that now belong to another tenant (${fk.name}): restored, they would be that tenant's`,
        });
      }
      if (missing === 0) continue;
      if (isGlobal(ctx, fk.refTable)) {
        blockers.push({
          kind: 'missing-global-refs',
          table: m.table,
          rows: missing,
          message: `${missing} rows of ${m.table} to restore reference rows of global table ${fk.refTable} that no longer exist (${fk.name})`,
        });
      } else {
        blockers.push({
          kind: 'selection-needs-parents',
          table: m.table,
          rows: missing,
          message: `${missing} rows of ${m.table} to restore reference ${fk.refTable} rows that do not exist live: add ${fk.refTable} to --tables (it needs its parents)`,
        });
      }
    }
  }

  // Incoming references to rows this restore deletes.
  for (const m of ctx.mappings) {
    if (!m.key || !(tables[m.table]?.delete > 0)) continue;
    const deleted = keySet(ctx, m, 'delete');
    for (const [childKey, child] of ctx.tables) {
      for (const fk of child.foreignKeys.filter((f) => f.refTable === m.table)) {
        const childMapping = mappingOf(ctx, childKey);
        const targets = `SELECT ${columnList('p', fk.refColumns)} FROM ${liveTable(m)} p JOIN ${deleted} d ON ${joinOn('d', 'p', m.key)}`;
        // child rows this restore deletes, or rewrites to their backed-up values, do not count
        const rewritten = childMapping?.key
          ? (['delete', 'update'] as const)
              .filter((k) => tables[childKey]?.[k] > 0)
              .map((k) => `AND NOT EXISTS (SELECT 1 FROM ${keySet(ctx, childMapping, k)} cd WHERE ${joinOn('cd', 'x', childMapping.key!)})`)
              .join(' ')
          : childMapping && tables[childKey]?.selected && kinds.has('delete')
            ? `AND ${notTenantFilter(ctx.plan, childMapping.live!, 'x', args.tenantId)}`
            : '';
        const q = `SELECT count(*)::int AS n FROM ${childMapping ? liveTable(childMapping) : qualified(child.schema, child.name)} x
                    WHERE (${columnList('x', fk.columns)}) IN (${targets}) ${rewritten}`;
        const n = (await one(c, q)).n as number;
        if (n === 0) continue;
        const sameTenant = childMapping ? (await one(c, `${q} AND ${tenantFilter(ctx.plan, childMapping.live!, 'x', args.tenantId)}`)).n : 0;
        blockers.push(
          sameTenant > 0 && n === sameTenant
            ? {
                kind: 'selection-orphans-children',
                table: m.table,
                rows: n,
                message: `deleting ${m.table} rows would orphan ${n} rows of ${childKey} (${fk.name}): add ${childKey} to --tables`,
              }
            : {
                kind: 'referenced-by-others',
                table: m.table,
                rows: n,
                message: `${n} rows of ${childKey} outside this tenant's restore (another tenant's or a global table's) reference ${m.table} rows this restore would delete (${fk.name})`,
              },
        );
      }
    }
  }
  if (blockers.length) warnings.push('The restore is blocked until the blockers listed are resolved.');
}

/**
 * Rows the restore writes (inserts, updates) that would collide, on a unique key other than the
 * primary key, with a live row it leaves in place (not one it deletes or updates, nor the row
 * itself): another row holds those values now, as when another tenant took a globally unique
 * email or name since the backup. (NULLs collide only under NULLS NOT DISTINCT; `=` says so.)
 */
export async function uniqueConflicts(c: ClientBase, ctx: RestoreContext, m: TableMapping, applied: TableChanges): Promise<Blocker[]> {
  const written = (['insert', 'update'] as const).filter((k) => applied[k] > 0);
  if (written.length === 0) return [];
  const key = m.key!;
  const leftInPlace = (['delete', 'update'] as const)
    .filter((k) => applied[k] > 0)
    .map((k) => `AND NOT EXISTS (SELECT 1 FROM ${keySet(ctx, m, k)} x WHERE ${joinOn('x', 'l', key)})`)
    .join(' ');
  const blockers: Blocker[] = [];
  for (const u of uniqueKeysOf(ctx, m)) {
    if (!u.columns.every((col) => m.columns.includes(col))) continue;
    const same = u.columns.map((col) => (u.nullsNotDistinct ? `l.${quoteIdent(col)} IS NOT DISTINCT FROM w.${quoteIdent(col)}` : `l.${quoteIdent(col)} = w.${quoteIdent(col)}`)).join(' AND ');
    const rows = changedRows(ctx, m, written, [...new Set([...key, ...u.columns])]);
    const n = (await one(c, `SELECT count(*)::int AS n FROM ${rows} w WHERE EXISTS (SELECT 1 FROM ${liveTable(m)} l WHERE ${same} AND NOT (${joinOn('l', 'w', key)}) ${leftInPlace})`)).n as number;
    if (n === 0) continue;
    blockers.push({
      kind: 'unique-conflict',
      table: m.table,
      rows: n,
      message: `${n} rows of ${m.table} to restore collide on unique key ${u.name} (${u.columns.join(', ')}) with live rows the restore leaves in place: another row holds those values now`,
    });
  }
  return blockers;
}
