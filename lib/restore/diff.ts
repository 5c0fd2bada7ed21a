// A table's diff: its staged backup vs the tenant's live rows, by primary key, set-based. One pass
// (a FULL JOIN) writes the table's diff table in the scratch schema: the keys to insert, update,
// delete, and conflicts (keys that now belong to another tenant), with the backed-up values of
// the rows to insert or update, so the apply never reads the whole staged table again. The
// preview counts them; the apply recomputes them with the very same SQL if anything changed.
import type { ClientBase } from 'pg';
import { allNotNull, columnList, joinOn, qualified, quoteIdent } from '../pg';
import { tenantFilter } from '../tenancy';
import { uniqueConflicts } from './blockers';
import { hasErasures } from './erasures';
import { blockingDrift, comparedAsText, foreignKeysOf, isGlobal, mappingOf, type RestoreContext, type TableMapping } from './mapping';
import type { PlanArgs } from './plan';
import { appliedKinds, isSelected } from './rules';
import { samplesFirstRows } from './stagingDecision';
import { backedUpValue, liveTable, liveTenantRows, one, scratchTable, scratchTableName, writtenSince, type DiffKind } from './sql';
import type { Blocker, RestoreSelection, TableChanges, TablePreview } from './types';

/** Keys shown per kind of change in a preview. */
export const sampleSize = 5;

/** One table's part of the plan, and the tenant's row versions it was computed against. */
export interface TableDiff {
  /** absent when drift blocks the table */
  preview?: TablePreview;
  blockers: Blocker[];
  warnings: string[];
  /** the tenant's live rows in the table as the diff saw them; absent when the table is gone live */
  liveRows?: number;
}

/** How a table is diffed: see diffTable. */
export interface DiffOptions {
  /** staged from its keys only, as stagingOf allows (a table without a key: not at all) */
  keysOnly?: boolean;
  /**
   * The backup's snapshot xmin, where this database's transaction ids compare with it
   * (comparableBackupXmin) and the staged rows are the backup's (no erasures): a live row version
   * older than it is the very version the backup read at its key, so its values are not compared.
   */
  backupXmin?: string;
}

/**
 * Diffs one table (writes its diff table, counts it). Its rows and those of every other table
 * must be read at the same moment: one transaction, or transactions sharing one snapshot.
 */
export async function diffTable(c: ClientBase, ctx: RestoreContext, m: TableMapping, args: PlanArgs, opts: DiffOptions = {}): Promise<TableDiff> {
  const { keysOnly = false } = opts;
  const { selection, tenantId } = args;
  const kinds = appliedKinds(selection);
  const out: TableDiff = { blockers: [], warnings: [] };
  const selected = isSelected(selection, m.table);
  const drift = blockingDrift(m);
  if (drift) {
    if (selected) out.blockers.push({ kind: 'drift', table: m.table, rows: m.manifest.rows, message: drift });
    if (m.live) out.liveRows = await countLiveRows(c, ctx, m, tenantId);
    return out;
  }
  let found: TableChanges;
  let preview: Omit<TablePreview, keyof TableChanges | 'selected'>;
  if (m.key) {
    const keysOnlyDiff = keysOnly ? { conflicts: await materializeInserts(c, ctx, m) } : undefined;
    if (!keysOnly) await materialize(c, ctx, m, tenantId, selection.missingRefs, opts.backupXmin);
    const { insert: ins, update: upd, delete: del, conflict } = await describeDiff(c, ctx, m, keysOnlyDiff);
    if (!keysOnly && upd.count === 0 && del.count === 0 && ins.count + conflict.count === m.manifest.rows) await describeAsFromKeys(c, ctx, m, selection, ins);
    const skipped = selection.missingRefs === 'skip' ? (await one(c, `SELECT count(*)::int AS n FROM ${scratchTable(ctx, m, 'skipped')}`)).n : 0;
    found = { insert: ins.count, update: upd.count, delete: del.count };
    // staged (every backed-up row, unless erasures left some out) = unchanged + update + insert + conflict; live = unchanged + update + delete
    out.liveRows = selection.missingRefs === 'skip' || hasErasures(ctx) ? await countLiveRows(c, ctx, m, tenantId) : m.manifest.rows - ins.count - conflict.count + del.count;
    if (skipped > 0 && selected) out.warnings.push(`${skipped} backed-up rows of ${m.table} are skipped (they or their parents reference global rows that are gone); their live rows are kept.`);
    preview = {
      samples: Object.fromEntries(
        ([['insert', ins], ['update', upd], ['delete', del]] as const).filter(([, d]) => d.count > 0).map(([k, d]) => [k, d.samples]),
      ),
      keysHash: { insert: ins.hash, update: upd.hash, delete: del.hash },
    };
    if (conflict.count > 0 && selected && kinds.has('insert')) {
      out.blockers.push({
        kind: 'key-conflict',
        table: m.table,
        rows: conflict.count,
        message: `${conflict.count} backed-up rows of ${m.table} have keys that now belong to another tenant's row (e.g. ${conflict.samples.slice(0, 3).join(', ')})`,
      });
    }
  } else {
    // keysOnly: every backed-up copy is an insert, and the object's row checksum names them
    if (!keysOnly) await materializeMultiset(c, ctx, m, tenantId, selection.missingRefs);
    const multiset = keysOnly ? { insert: m.manifest.rows, delete: 0, hash: `rows:${m.manifest.rowChecksum}` } : await describeMultiset(c, ctx, m);
    // every backed-up copy an insert (the tenant has none): named as when staged from nothing (describeAsFromKeys)
    if (!keysOnly && multiset.insert === m.manifest.rows && multiset.delete === 0) multiset.hash = `rows:${m.manifest.rowChecksum}`;
    found = { insert: multiset.insert, update: 0, delete: multiset.delete };
    out.liveRows = selection.missingRefs === 'skip' || hasErasures(ctx) ? await countLiveRows(c, ctx, m, tenantId) : m.manifest.rows - multiset.insert + multiset.delete;
    preview = { samples: {}, keysHash: { insert: multiset.hash, update: '', delete: multiset.hash }, wholeTable: true };
  }
  const applied: TableChanges = {
    insert: selected && kinds.has('insert') ? found.insert : 0,
    update: selected && kinds.has('update') ? found.update : 0,
    delete: selected && kinds.has('delete') ? found.delete : 0,
  };
  out.preview = { ...applied, ...preview, selected, ...(JSON.stringify(applied) !== JSON.stringify(found) ? { found } : {}) };
  if (m.key) out.blockers.push(...(await uniqueConflicts(c, ctx, m, applied)));
  if (applied.insert > 0 && m.requiredNewColumns.length > 0) {
    out.blockers.push({
      kind: 'drift',
      table: m.table,
      rows: applied.insert,
      message: `column ${m.table}.${m.requiredNewColumns.join(', ')} was added NOT NULL without a default since the backup: the ${applied.insert} rows to insert have no value for it`,
    });
  }
  return out;
}

/** The diff of a table that needs nothing staged (stagingOf): what diffTable would find, without staging it. */
export function unchangedTableDiff(m: TableMapping, args: PlanArgs): TableDiff {
  const none: TableChanges = { insert: 0, update: 0, delete: 0 };
  const preview: TablePreview = m.key
    ? { ...none, samples: {}, keysHash: { insert: '0', update: '0', delete: '0' }, selected: isSelected(args.selection, m.table) }
    : { ...none, samples: {}, keysHash: { insert: '0', update: '', delete: '0' }, wholeTable: true, selected: isSelected(args.selection, m.table) };
  return { preview, blockers: [], warnings: [], liveRows: m.manifest.rows };
}

async function countLiveRows(c: ClientBase, ctx: RestoreContext, m: TableMapping, tenantId: string): Promise<number> {
  return Number((await one(c, `SELECT count(*) AS n FROM ${liveTenantRows(ctx, m, tenantId)}`)).n);
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
    const notNull = allNotNull(alias, fk.columns);
    if (isGlobal(ctx, fk.refTable) && ctx.tables.has(fk.refTable)) {
      const g = ctx.tables.get(fk.refTable)!;
      parts.push(`(${notNull} AND NOT EXISTS (SELECT 1 FROM ${qualified(g.schema, g.name)} g WHERE ${joinOn('g', alias, fk.refColumns, fk.columns)}))`);
    } else {
      const parent = mappingOf(ctx, fk.refTable);
      if (!parent?.key || parent === m) continue;
      parts.push(
        `(${notNull} AND EXISTS (SELECT 1 FROM ${parent.staged} ps JOIN ${scratchTable(ctx, parent, 'skipped')} px ON ${joinOn('px', 'ps', parent.key)} WHERE ${joinOn('ps', alias, fk.refColumns, fk.columns)}))`,
      );
    }
  }
  return parts.length ? parts.join(' OR ') : 'false';
}

/** A column as the diff compares it: its value where equal values mean identical text, else its text. */
function compared(m: TableMapping, alias: string, name: string): string {
  const q = `${alias}.${quoteIdent(name)}`;
  return comparedAsText(m.live!.columns.find((x) => x.name === name)!) ? `${q}::text` : q;
}

function differs(m: TableMapping, columns: string[]): string {
  if (columns.length === 0) return 'false';
  return columns.map((n) => `${compared(m, 'l', n)} IS DISTINCT FROM ${compared(m, 's', n)}`).join(' OR ');
}

/**
 * (Re)writes a mapping's diff table from staged vs live, in one pass. Runs in the preview and in
 * the apply transaction. With `backupXmin` (DiffOptions), only the values of live row versions
 * written since the backup are compared: the others are the backed-up rows themselves, and their
 * comparison (a text cast of each jsonb, say) was most of the join's work.
 */
async function materialize(c: ClientBase, ctx: RestoreContext, m: TableMapping, tenantId: string, policy: RestoreSelection['missingRefs'], backupXmin?: string): Promise<void> {
  const key = m.key!;
  const diff = scratchTable(ctx, m, 'diff');
  const nonKey = m.columns.filter((col) => !key.includes(col));
  const skipping = policy === 'skip';
  await c.query(`DROP TABLE IF EXISTS ${diff}, ${scratchTable(ctx, m, 'skipped')}`);
  if (skipping) await c.query(`CREATE UNLOGGED TABLE ${scratchTable(ctx, m, 'skipped')} AS SELECT ${columnList('s', key)} FROM ${m.staged} s WHERE ${skipPredicate(ctx, m, 's', policy)}`);
  const notSkipped = (alias: string) => (skipping ? `AND NOT EXISTS (SELECT 1 FROM ${scratchTable(ctx, m, 'skipped')} x WHERE ${joinOn('x', alias, key)})` : '');
  const liveCols = [...key, ...nonKey];
  const young = backupXmin === undefined ? 'true' : writtenSince('l', `'${BigInt(backupXmin)}'::xid8`);
  await c.query(
    `CREATE UNLOGGED TABLE ${diff} AS
     SELECT ${key.map((k) => `coalesce(s.${quoteIdent(k)}, l.${quoteIdent(k)}) AS ${quoteIdent(k)}`).join(', ')},
            CASE WHEN l."_live" IS NULL THEN 'insert' WHEN s."_staged" IS NULL THEN 'delete' ELSE 'update' END AS kind
            ${nonKey.map((n) => `, s.${quoteIdent(n)} AS ${quoteIdent(backedUpValue(n))}`).join('')}
       FROM (SELECT ${columnList('s', liveCols)}, true AS "_staged" FROM ${m.staged} s WHERE true ${notSkipped('s')}) s
       FULL JOIN (SELECT ${columnList('l', liveCols)}, true AS "_live", ${young} AS "_young" FROM ${liveTenantRows(ctx, m, tenantId)} ${notSkipped('l')}) l ON ${joinOn('s', 'l', key)}
      WHERE s."_staged" IS NULL OR l."_live" IS NULL OR (l."_young" AND (${differs(m, nonKey)}))`,
  );
  await c.query(`ANALYZE ${diff}`);
  await markConflicts(c, ctx, m);
}

/**
 * The diff table of a table the tenant has no row in: every staged row is to insert (loaded from
 * its object, no values kept but the key and join columns). The staged table becomes it, its
 * columns named as materialize names them: renamed, not copied.
 */
async function materializeInserts(c: ClientBase, ctx: RestoreContext, m: TableMapping): Promise<number> {
  await c.query(`DROP TABLE IF EXISTS ${scratchTable(ctx, m, 'diff')}`);
  for (const n of m.joinColumns.filter((x) => !m.key!.includes(x))) await c.query(`ALTER TABLE ${m.staged} RENAME COLUMN ${quoteIdent(n)} TO ${quoteIdent(backedUpValue(n))}`);
  await c.query(`ALTER TABLE ${m.staged} ADD COLUMN kind text NOT NULL DEFAULT 'insert'`);
  // its statistics are the staged table's, analyzed after staging
  await c.query(`ALTER TABLE ${m.staged} RENAME TO ${quoteIdent(scratchTableName(m.position, 'diff'))}`);
  return markConflicts(c, ctx, m);
}

/**
 * A key to insert that is present in the table is another tenant's (or no tenant's) row: a
 * conflict. Not where the key holds the tenant id itself: a row with such a key is the tenant's.
 */
async function markConflicts(c: ClientBase, ctx: RestoreContext, m: TableMapping): Promise<number> {
  const ownership = m.live!.ownership;
  if (ownership.kind !== 'parent' && m.key!.includes(ownership.column)) return 0;
  const diff = scratchTable(ctx, m, 'diff');
  const r = await c.query(`UPDATE ${diff} d SET kind = 'conflict' WHERE d.kind = 'insert' AND EXISTS (SELECT 1 FROM ${liveTable(m)} l WHERE ${joinOn('l', 'd', m.key!)})`);
  return r.rowCount ?? 0;
}

interface SetSummary {
  count: number;
  samples: string[];
  /** sum of 64-bit hashes of the keys: order-free, so no sort of millions of keys */
  hash: string;
}

/**
 * Count, key hash and a few sample keys of every kind in a mapping's diff table. `keysOnly` (every
 * backed-up row an insert but the conflicts): the counts are known, and the backup's row checksum
 * names the insert set, no hash needed.
 */
async function describeDiff(c: ClientBase, ctx: RestoreContext, m: TableMapping, keysOnly?: { conflicts: number }): Promise<Record<DiffKind, SetSummary> & { skip: number }> {
  const diff = scratchTable(ctx, m, 'diff');
  const keyText = keyTextOf(m);
  const rows = keysOnly
    ? [
        { kind: 'insert', count: m.manifest.rows - keysOnly.conflicts, hash: `rows:${m.manifest.rowChecksum}` },
        { kind: 'conflict', count: keysOnly.conflicts, hash: '0' },
      ].filter((x) => x.count > 0)
    : (await c.query<{ kind: DiffKind; count: number; hash: string }>(`SELECT kind, count(*)::int AS count, sum(hashtextextended(${keyText}, 0))::text AS hash FROM ${diff} d GROUP BY kind`)).rows;
  const out = { skip: 0 } as Record<DiffKind, SetSummary> & { skip: number };
  for (const kind of ['insert', 'update', 'delete', 'conflict'] as DiffKind[]) {
    const row = rows.find((x) => x.kind === kind);
    // the keys as text only for the five kept (the sort itself is on the typed keys)
    const first = `SELECT ${columnList('d', m.key!)} FROM ${diff} d WHERE kind = $1 ORDER BY ${columnList('d', m.key!)} LIMIT ${sampleSize}`;
    const samples = row ? (await c.query(`SELECT ${keyText} AS k FROM (${first}) d ORDER BY ${columnList('d', m.key!)}`, [kind])).rows.map((x) => x.k) : [];
    out[kind] = { count: row?.count ?? 0, hash: row?.hash ?? '0', samples };
  }
  return out;
}

/**
 * A table diffed in full where every backed-up row is an insert or a conflict (the tenant has no
 * row in it), described as a preview that staged only its keys, or first keys, describes it
 * (stagingOf, describeDiff's keysOnly): the inserts named by the backup's row checksum, and the
 * sample the first rows of its object where only those were staged. So a plan computed again in
 * full (the apply's, after any write to the tenant) has the digest of the preview when the
 * changes are the same, and the approval holds.
 */
async function describeAsFromKeys(c: ClientBase, ctx: RestoreContext, m: TableMapping, selection: RestoreSelection, inserts: SetSummary): Promise<void> {
  inserts.hash = `rows:${m.manifest.rowChecksum}`;
  if (!samplesFirstRows(ctx, m, selection)) return;
  const keyText = keyTextOf(m);
  // the staged table holds the object's rows in its order: loaded by one COPY into a new table
  const first = `SELECT ${columnList('s', m.key!)} FROM ${m.staged} s ORDER BY s.ctid LIMIT ${sampleSize}`;
  inserts.samples = (await c.query(`SELECT ${keyText} AS k FROM (${first}) d ORDER BY ${columnList('d', m.key!)}`)).rows.map((x) => x.k);
}

/** A key of alias d as text, as samples show it. */
function keyTextOf(m: TableMapping): string {
  return m.key!.length === 1 ? `d.${quoteIdent(m.key![0])}::text` : `ROW(${columnList('d', m.key!)})::text`;
}

/** A row of a table without a key, as one text value: how its identical copies are grouped. */
function rowText(alias: string, columns: string[]): string {
  return `ROW(${columns.map((n) => `${alias}.${quoteIdent(n)}::text`).join(', ')})::text`;
}

/**
 * A table without a key: its diff table holds each distinct row (as text) whose number of copies
 * differs, with net = copies in the backup - copies live (positive: insert, negative: delete).
 */
async function materializeMultiset(c: ClientBase, ctx: RestoreContext, m: TableMapping, tenantId: string, policy: RestoreSelection['missingRefs']): Promise<void> {
  const diff = scratchTable(ctx, m, 'diff');
  await c.query(`DROP TABLE IF EXISTS ${diff}`);
  // grouped by the compared values (cheap to hash), each group then named by its row text
  const grouped = m.columns.map((_, i) => `c${i}`);
  const side = (alias: string) => m.columns.map((n, i) => `${compared(m, alias, n)} AS c${i}`).join(', ');
  await c.query(
    `CREATE UNLOGGED TABLE ${diff} AS
     SELECT ROW(${grouped.map((g) => `g.${g}::text`).join(', ')})::text AS r, g.* FROM (
       SELECT ${grouped.join(', ')}, sum(side)::int AS net FROM (
         SELECT ${side('s')}, 1 AS side FROM ${m.staged} s WHERE NOT (${skipPredicate(ctx, m, 's', policy)})
         UNION ALL
         SELECT ${side('l')}, -1 FROM ${liveTenantRows(ctx, m, tenantId)}
       ) u GROUP BY ${grouped.join(', ')} HAVING sum(side) <> 0
     ) g`,
  );
}

async function describeMultiset(c: ClientBase, ctx: RestoreContext, m: TableMapping): Promise<{ insert: number; delete: number; hash: string }> {
  const r = await one(
    c,
    `SELECT coalesce(sum(net) FILTER (WHERE net > 0), 0)::int AS insert, coalesce(-sum(net) FILTER (WHERE net < 0), 0)::int AS delete,
            coalesce(sum(hashtextextended(r, 0)::numeric * net), 0)::text AS hash
       FROM ${scratchTable(ctx, m, 'diff')}`,
  );
  return { insert: r.insert, delete: r.delete, hash: r.hash };
}

/** Live copies to delete from a table without a key: (tableoid, ctid) of the surplus copies. */
export function multisetSurplus(ctx: RestoreContext, m: TableMapping, tenantId: string): string {
  return `(SELECT x.tableoid, x.ctid FROM (
             SELECT l.tableoid, l.ctid, d.net, row_number() OVER (PARTITION BY d.r) AS n
               FROM ${liveTable(m)} l JOIN ${scratchTable(ctx, m, 'diff')} d ON d.r = ${rowText('l', m.columns)} AND d.net < 0
              WHERE ${tenantFilter(ctx.plan, m.live!, 'l', tenantId)}
           ) x WHERE x.n <= -x.net)`;
}

/**
 * Copies to insert into a table without a key: `net` of each missing row, from the values the
 * diff grouped by (a value compared as text is the text of its value, cast back).
 */
export function multisetMissing(ctx: RestoreContext, m: TableMapping): string {
  const value = (n: string, i: number) => {
    const live = m.live!.columns.find((x) => x.name === n)!;
    return `d.c${i}${comparedAsText(live) ? `::${live.type}` : ''} AS ${quoteIdent(n)}`;
  };
  return `(SELECT ${m.columns.map(value).join(', ')} FROM ${scratchTable(ctx, m, 'diff')} d, generate_series(1, d.net) WHERE d.net > 0)`;
}
