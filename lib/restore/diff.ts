// The restore plan: staged backup vs the tenant's live rows, by primary key, set-based. The key
// sets (to insert, update, delete; conflicts; rows skipped) are materialised as tables of the
// scratch schema, so the preview counts them and the apply transaction recomputes them from the
// very same SQL before changing anything.
import type { ClientBase } from 'pg';
import { canonicalJson, sha256Hex } from '../checksum';
import { qualified, quoteIdent } from '../pg';
import { tenantFilter, type ForeignKeyInfo } from '../tenancy';
import { blockingDrift, liveTable, type RestoreContext, type TableMapping } from './mapping';
import { changeKinds, type Blocker, type ChangeKind, type RestorePreview, type RestoreSelection, type TableChanges, type TablePreview } from './types';

export type KeySet = 'insert' | 'update' | 'delete' | 'conflict' | 'skip';
const setLetter: Record<KeySet, string> = { insert: 'i', update: 'u', delete: 'd', conflict: 'c', skip: 'x' };

/** The scratch table holding one key set of a mapping. */
export function keySetTable(ctx: RestoreContext, m: TableMapping, set: KeySet): string {
  return qualified(ctx.schema, `${setLetter[set]}${String(m.position + 1).padStart(4, '0')}`);
}

const cols = (alias: string, names: string[]) => names.map((n) => `${alias}.${quoteIdent(n)}`).join(', ');
const joinOn = (a: string, b: string, left: string[], right = left) => left.map((n, i) => `${a}.${quoteIdent(n)} = ${b}.${quoteIdent(right[i])}`).join(' AND ');
const asText = (alias: string, names: string[]) => names.map((n) => `${alias}.${quoteIdent(n)}::text`).join(', ');

export function isSelected(sel: RestoreSelection, table: string): boolean {
  return !sel.tables || sel.tables.includes(table);
}

/** The kinds of change the mode and selection allow. */
export function appliedKinds(sel: RestoreSelection): Set<ChangeKind> {
  const allowed: ChangeKind[] = sel.mode === 'missing-only' ? ['insert'] : [...changeKinds];
  return new Set(allowed.filter((k) => !sel.changes || sel.changes.includes(k)));
}

/** The tenant's live rows of a mapping's table, for FROM clauses (alias l). */
function liveTenantRows(ctx: RestoreContext, m: TableMapping, tenantId: string, alias = 'l'): string {
  return `${liveTable(m)} ${alias} WHERE ${tenantFilter(ctx.plan, m.live!, alias, tenantId)}`;
}

function mappingOf(ctx: RestoreContext, table: string): TableMapping | undefined {
  return ctx.mappings.find((m) => m.table === table && m.live);
}

/** Foreign keys of a live table (from the catalog, the current schema). */
function foreignKeysOf(ctx: RestoreContext, m: TableMapping): ForeignKeyInfo[] {
  return ctx.tables.get(m.table)?.foreignKeys ?? [];
}

function isGlobal(ctx: RestoreContext, table: string): boolean {
  return !ctx.plan.tables.some((t) => t.key === table);
}

/**
 * Staged rows that reference a global row that is gone, and (cascading, parents first) staged
 * rows that reference such rows: with policy 'skip' they are left out and their live rows kept.
 */
function skipPredicate(ctx: RestoreContext, m: TableMapping, alias: string, policy: RestoreSelection['missingRefs']): string {
  if (policy !== 'skip') return 'false';
  const parts: string[] = [];
  for (const fk of foreignKeysOf(ctx, m)) {
    if (!fk.columns.every((c) => m.stagedColumns.some((s) => s.name === c))) continue;
    const notNull = fk.columns.map((c) => `${alias}.${quoteIdent(c)} IS NOT NULL`).join(' AND ');
    if (isGlobal(ctx, fk.refTable) && ctx.tables.has(fk.refTable)) {
      const g = ctx.tables.get(fk.refTable)!;
      parts.push(`(${notNull} AND NOT EXISTS (SELECT 1 FROM ${qualified(g.schema, g.name)} g WHERE ${joinOn('g', alias, fk.refColumns, fk.columns)}))`);
    } else {
      const parent = mappingOf(ctx, fk.refTable);
      if (!parent?.key || parent === m) continue;
      parts.push(
        `(${notNull} AND EXISTS (SELECT 1 FROM ${parent.staged} ps JOIN ${keySetTable(ctx, parent, 'skip')} px ON ${joinOn('px', 'ps', parent.key)} WHERE ${joinOn('ps', alias, fk.refColumns, fk.columns)}))`,
      );
    }
  }
  return parts.length ? parts.join(' OR ') : 'false';
}

/** (Re)creates a mapping's key sets from staged vs live. Runs in the preview and in the apply transaction. */
async function materialize(c: ClientBase, ctx: RestoreContext, m: TableMapping, tenantId: string, policy: RestoreSelection['missingRefs']): Promise<void> {
  const key = m.key!;
  const set = (s: KeySet) => keySetTable(ctx, m, s);
  const notSkipped = (alias: string) => `NOT EXISTS (SELECT 1 FROM ${set('skip')} x WHERE ${joinOn('x', alias, key)})`;
  const nonKey = m.columns.filter((col) => !key.includes(col));
  const L = liveTable(m);
  await c.query(`DROP TABLE IF EXISTS ${(['insert', 'update', 'delete', 'conflict', 'skip'] as KeySet[]).map(set).join(', ')}`);
  await c.query(`CREATE UNLOGGED TABLE ${set('skip')} AS SELECT ${cols('s', key)} FROM ${m.staged} s WHERE ${skipPredicate(ctx, m, 's', policy)}`);
  await c.query(
    `CREATE UNLOGGED TABLE ${set('delete')} AS SELECT ${cols('l', key)} FROM ${liveTenantRows(ctx, m, tenantId)}
       AND NOT EXISTS (SELECT 1 FROM ${m.staged} s WHERE ${joinOn('s', 'l', key)}) AND ${notSkipped('l')}`,
  );
  await c.query(
    `CREATE UNLOGGED TABLE ${set('insert')} AS SELECT ${cols('s', key)} FROM ${m.staged} s
      WHERE NOT EXISTS (SELECT 1 FROM ${L} l WHERE ${joinOn('l', 's', key)}) AND ${notSkipped('s')}`,
  );
  // the key exists, but not as this tenant's row: another tenant's (or no tenant's) row
  await c.query(
    `CREATE UNLOGGED TABLE ${set('conflict')} AS SELECT ${cols('s', key)} FROM ${m.staged} s
      WHERE EXISTS (SELECT 1 FROM ${L} l WHERE ${joinOn('l', 's', key)})
        AND NOT EXISTS (SELECT 1 FROM ${liveTenantRows(ctx, m, tenantId)} AND ${joinOn('l', 's', key)})`,
  );
  // text comparison: exactly what the row checksums see (numeric 1.0 vs 1.00 differ, json compares)
  const differs = nonKey.length ? `(${asText('l', nonKey)}) IS DISTINCT FROM (${asText('s', nonKey)})` : 'false';
  await c.query(
    `CREATE UNLOGGED TABLE ${set('update')} AS SELECT ${cols('s', key)} FROM ${m.staged} s JOIN ${L} l ON ${joinOn('l', 's', key)}
      WHERE ${tenantFilter(ctx.plan, m.live!, 'l', tenantId)} AND ${differs} AND ${notSkipped('s')}`,
  );
}

async function one<T = Record<string, any>>(c: ClientBase, sql: string): Promise<T> {
  return (await c.query(sql)).rows[0] as T;
}

/** Count, a few sample keys, and md5 of all keys (sorted) of a key set. */
async function describeSet(c: ClientBase, table: string, key: string[]): Promise<{ count: number; samples: string[]; md5: string }> {
  const keyText = key.length === 1 ? `k.${quoteIdent(key[0])}::text` : `ROW(${cols('k', key)})::text`;
  const r = await one(c, `SELECT count(*)::int AS count, coalesce(md5(string_agg(t, E'\\n' ORDER BY t)), '') AS md5,
                                 (array_agg(t ORDER BY t))[1:5] AS samples
                            FROM (SELECT ${keyText} AS t FROM ${table} k) x`);
  return { count: r.count, samples: r.samples ?? [], md5: r.md5 };
}

/** A table without a primary key: multiset difference of whole rows (as text). */
/** The staged rows of a table without a key that the restore writes (skipped ones left out). */
export function wholeTableStagedRows(ctx: RestoreContext, m: TableMapping, policy: RestoreSelection['missingRefs'], columns: (alias: string) => string): string {
  return `SELECT ${columns('s')} FROM ${m.staged} s WHERE NOT (${skipPredicate(ctx, m, 's', policy)})`;
}

async function describeWholeTable(c: ClientBase, ctx: RestoreContext, m: TableMapping, tenantId: string, policy: RestoreSelection['missingRefs']): Promise<{ insert: number; delete: number; md5: string }> {
  const staged = wholeTableStagedRows(ctx, m, policy, (a) => asText(a, m.columns));
  const live = `SELECT ${asText('l', m.columns)} FROM ${liveTenantRows(ctx, m, tenantId)}`;
  const r = await one(c, `SELECT (SELECT count(*)::int FROM (${staged} EXCEPT ALL ${live}) a) AS insert,
                                 (SELECT count(*)::int FROM (${live} EXCEPT ALL ${staged}) b) AS delete`);
  return { insert: r.insert, delete: r.delete, md5: sha256Hex(`${r.insert}/${r.delete}`) };
}

/**
 * Computes the plan. Call inside one transaction (REPEATABLE READ in the apply) so every count
 * sees the same moment. The digest binds the exact rows: approvals are for this plan only.
 */
export async function computePlan(c: ClientBase, ctx: RestoreContext, args: { tenantId: string; backupId: string; snapshotAt: string; selection: RestoreSelection }): Promise<RestorePreview> {
  const { selection, tenantId } = args;
  const kinds = appliedKinds(selection);
  const tables: Record<string, TablePreview> = {};
  const blockers: Blocker[] = [];
  const warnings: string[] = [];
  const totals: TableChanges = { insert: 0, update: 0, delete: 0 };

  for (const m of ctx.mappings) {
    const selected = isSelected(selection, m.table);
    const drift = blockingDrift(m);
    if (drift) {
      if (selected) blockers.push({ kind: 'drift', table: m.table, rows: m.manifest.rows, message: drift });
      continue;
    }
    let found: TableChanges;
    let preview: Omit<TablePreview, keyof TableChanges | 'selected'>;
    if (m.key) {
      await materialize(c, ctx, m, tenantId, selection.missingRefs);
      const sets = {} as Record<KeySet, Awaited<ReturnType<typeof describeSet>>>;
      for (const s of ['insert', 'update', 'delete', 'conflict', 'skip'] as KeySet[]) sets[s] = await describeSet(c, keySetTable(ctx, m, s), m.key!);
      const { insert: ins, update: upd, delete: del, conflict, skip } = sets;
      found = { insert: ins.count, update: upd.count, delete: del.count };
      if (skip.count > 0 && selected) warnings.push(`${skip.count} backed-up rows of ${m.table} are skipped (they or their parents reference global rows that are gone); their live rows are kept.`);
      preview = {
        samples: Object.fromEntries(
          ([['insert', ins], ['update', upd], ['delete', del]] as const).filter(([, d]) => d.count > 0).map(([k, d]) => [k, d.samples]),
        ),
        keysMd5: { insert: ins.md5, update: upd.md5, delete: del.md5 },
      };
      if (conflict.count > 0 && selected && kinds.has('insert')) {
        blockers.push({
          kind: 'key-conflict',
          table: m.table,
          rows: conflict.count,
          message: `${conflict.count} backed-up rows of ${m.table} have keys that now belong to another tenant's row (e.g. ${conflict.samples.slice(0, 3).join(', ')})`,
        });
      }
    } else {
      const whole = await describeWholeTable(c, ctx, m, tenantId, selection.missingRefs);
      found = { insert: whole.insert, update: 0, delete: whole.delete };
      preview = { samples: {}, keysMd5: { insert: whole.md5, update: '', delete: whole.md5 }, wholeTable: true };
      if (selected && (whole.insert || whole.delete)) warnings.push(`${m.table} has no primary key: the tenant's rows of it are replaced as a whole.`);
    }
    const applied: TableChanges = {
      insert: selected && kinds.has('insert') ? found.insert : 0,
      update: selected && kinds.has('update') ? found.update : 0,
      delete: selected && kinds.has('delete') ? found.delete : 0,
    };
    if (!m.key && selected && selection.mode === 'replace' && (applied.insert || applied.delete) && !(kinds.has('insert') && kinds.has('delete'))) {
      blockers.push({ kind: 'drift', table: m.table, rows: found.insert + found.delete, message: `${m.table} has no primary key: it can only be restored with both inserts and deletes` });
    }
    tables[m.table] = { ...applied, ...preview, selected };
    if (JSON.stringify(applied) !== JSON.stringify(found)) tables[m.table] = { ...tables[m.table], found } as TablePreview;
    for (const k of changeKinds) totals[k] += applied[k];
    if (applied.insert > 0 && m.requiredNewColumns.length > 0) {
      blockers.push({
        kind: 'drift',
        table: m.table,
        rows: applied.insert,
        message: `column ${m.table}.${m.requiredNewColumns.join(', ')} was added NOT NULL without a default since the backup: the ${applied.insert} rows to insert have no value for it`,
      });
    }
  }

  await findReferenceBlockers(c, ctx, args, tables, blockers, warnings);
  const preview = {
    restoreId: ctx.restoreId,
    tenantId,
    backupId: args.backupId,
    snapshotAt: args.snapshotAt,
    selection,
    tables,
    totals,
    drift: ctx.drift,
    warnings,
    blockers,
  };
  return { ...preview, digest: sha256Hex(canonicalJson(preview)) };
}

/**
 * References that the apply would break, counted set-based:
 *  - backed-up rows (to insert or update) pointing at global rows that are gone;
 *  - rows to insert or update pointing at parent rows that exist neither live nor among the
 *    parent rows this restore inserts (a --tables selection without its parents);
 *  - live rows outside this restore's deletes (other tenants', global tables', or tables left
 *    out of the selection) pointing at rows this restore deletes.
 */
async function findReferenceBlockers(
  c: ClientBase,
  ctx: RestoreContext,
  args: { tenantId: string; selection: RestoreSelection },
  tables: Record<string, TablePreview>,
  blockers: Blocker[],
  warnings: string[],
): Promise<void> {
  const kinds = appliedKinds(args.selection);
  const applies = (m: TableMapping, k: ChangeKind) => (tables[m.table]?.[k] ?? 0) > 0;
  for (const m of ctx.mappings) {
    if (!m.key || !tables[m.table]?.selected) continue;
    const changed = [applies(m, 'insert') && keySetTable(ctx, m, 'insert'), applies(m, 'update') && keySetTable(ctx, m, 'update')].filter(Boolean) as string[];
    if (changed.length === 0) continue;
    const changedRows = `(SELECT s.* FROM ${m.staged} s WHERE EXISTS (SELECT 1 FROM (${changed.map((t) => `SELECT * FROM ${t}`).join(' UNION ALL ')}) k WHERE ${joinOn('k', 's', m.key)}))`;
    for (const fk of foreignKeysOf(ctx, m)) {
      if (!fk.columns.every((col) => m.columns.includes(col)) || !ctx.tables.has(fk.refTable)) continue;
      const ref = ctx.tables.get(fk.refTable)!;
      const parent = mappingOf(ctx, fk.refTable);
      const notNull = fk.columns.map((col) => `r.${quoteIdent(col)} IS NOT NULL`).join(' AND ');
      const existsLive = `EXISTS (SELECT 1 FROM ${qualified(ref.schema, ref.name)} p WHERE ${joinOn('p', 'r', fk.refColumns, fk.columns)})`;
      const insertedByUs =
        parent?.key && tables[parent.table]?.insert
          ? `OR EXISTS (SELECT 1 FROM ${parent.staged} ps JOIN ${keySetTable(ctx, parent, 'insert')} pi ON ${joinOn('pi', 'ps', parent.key)} WHERE ${joinOn('ps', 'r', fk.refColumns, fk.columns)})`
          : '';
      const missing = (await one(c, `SELECT count(*)::int AS n FROM ${changedRows} r WHERE ${notNull} AND NOT (${existsLive} ${insertedByUs})`)).n as number;
      if (missing === 0 || fk.refTable === m.table) continue;
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
    const deleted = keySetTable(ctx, m, 'delete');
    for (const [childKey, child] of ctx.tables) {
      for (const fk of child.foreignKeys.filter((f) => f.refTable === m.table)) {
        const childMapping = mappingOf(ctx, childKey);
        const targets = `SELECT ${cols('p', fk.refColumns)} FROM ${liveTable(m)} p JOIN ${deleted} d ON ${joinOn('d', 'p', m.key)}`;
        // child rows this restore deletes, or rewrites to their backed-up values, do not count
        const rewritten = childMapping?.key
          ? (['delete', 'update'] as const)
              .filter((k) => tables[childKey]?.[k] > 0)
              .map((k) => `AND NOT EXISTS (SELECT 1 FROM ${keySetTable(ctx, childMapping, k)} cd WHERE ${joinOn('cd', 'x', childMapping.key!)})`)
              .join(' ')
          : childMapping && tables[childKey]?.selected && kinds.has('delete')
            ? `AND (${tenantFilter(ctx.plan, childMapping.live!, 'x', args.tenantId)}) IS NOT TRUE`
            : '';
        const q = `SELECT count(*)::int AS n FROM ${childMapping ? liveTable(childMapping) : qualified(child.schema, child.name)} x
                    WHERE (${cols('x', fk.columns)}) IN (${targets}) ${rewritten}`;
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
