// The restore plan: staged backup vs the tenant's live rows, by primary key, set-based. One pass
// (a FULL JOIN) per table writes its diff table in the scratch schema: the keys to insert,
// update, delete, and conflicts (keys that now belong to another tenant), with the backed-up
// values of the rows to insert or update, so the apply never reads the whole staged table again.
// The preview counts them; the apply recomputes them with the very same SQL if anything changed.
import type { ClientBase } from 'pg';
import { canonicalJson, sha256Hex } from '../checksum';
import { allNotNull, columnList, joinOn, qualified, quoteIdent } from '../pg';
import { snapshotOrigin } from '../backup/export';
import type { TenantManifest } from '../manifest';
import { notTenantFilter, ownedTable, tenantChain, tenantFilter, type ForeignKeyInfo, type UniqueKeyInfo } from '../tenancy';
import { stageInFull, type BackupSource } from './stage';
import { blockingDrift, comparedAsText, sameColumnsAsBackup, type RestoreContext, type TableMapping } from './mapping';
import { backedUpValue, changedRows, keySet, liveTable, liveTenantRows, one, planStateTable, scratchTable, scratchTableName, writtenSince, type DiffKind } from './sql';
import { changeKinds, type Blocker, type ChangeKind, type RestorePreview, type RestoreSelection, type TableChanges, type TablePreview } from './types';

export function isSelected(sel: RestoreSelection, table: string): boolean {
  return !sel.tables || sel.tables.includes(table);
}

/** The tenant is to become exactly the backup: replace, every kind of change, no row skipped. */
export function isExactReplace(sel: RestoreSelection): boolean {
  return sel.mode === 'replace' && appliedKinds(sel).size === 3 && sel.missingRefs === 'refuse';
}

/** The kinds of change the mode and selection allow. */
export function appliedKinds(sel: RestoreSelection): Set<ChangeKind> {
  const allowed: ChangeKind[] = sel.mode === 'missing-only' ? ['insert'] : [...changeKinds];
  return new Set(allowed.filter((k) => !sel.changes || sel.changes.includes(k)));
}

function mappingOf(ctx: RestoreContext, table: string): TableMapping | undefined {
  return ctx.mappings.find((m) => m.table === table && m.live);
}

/** Foreign keys of a live table (from the catalog, the current schema). */
function foreignKeysOf(ctx: RestoreContext, m: TableMapping): ForeignKeyInfo[] {
  return ctx.tables.get(m.table)?.foreignKeys ?? [];
}

/** Unique keys of a live table other than its primary key (from the catalog, the current schema). */
function uniqueKeysOf(ctx: RestoreContext, m: TableMapping): UniqueKeyInfo[] {
  return ctx.tables.get(m.table)?.uniqueKeys ?? [];
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

/** (Re)writes a mapping's diff table from staged vs live, in one pass. Runs in the preview and in the apply transaction. */
async function materialize(c: ClientBase, ctx: RestoreContext, m: TableMapping, tenantId: string, policy: RestoreSelection['missingRefs']): Promise<void> {
  const key = m.key!;
  const diff = scratchTable(ctx, m, 'diff');
  const nonKey = m.columns.filter((col) => !key.includes(col));
  const skipping = policy === 'skip';
  await c.query(`DROP TABLE IF EXISTS ${diff}, ${scratchTable(ctx, m, 'skipped')}`);
  if (skipping) await c.query(`CREATE UNLOGGED TABLE ${scratchTable(ctx, m, 'skipped')} AS SELECT ${columnList('s', key)} FROM ${m.staged} s WHERE ${skipPredicate(ctx, m, 's', policy)}`);
  const notSkipped = (alias: string) => (skipping ? `AND NOT EXISTS (SELECT 1 FROM ${scratchTable(ctx, m, 'skipped')} x WHERE ${joinOn('x', alias, key)})` : '');
  const liveCols = [...key, ...nonKey];
  await c.query(
    `CREATE UNLOGGED TABLE ${diff} AS
     SELECT ${key.map((k) => `coalesce(s.${quoteIdent(k)}, l.${quoteIdent(k)}) AS ${quoteIdent(k)}`).join(', ')},
            CASE WHEN l."_live" IS NULL THEN 'insert' WHEN s."_staged" IS NULL THEN 'delete' ELSE 'update' END AS kind
            ${nonKey.map((n) => `, s.${quoteIdent(n)} AS ${quoteIdent(backedUpValue(n))}`).join('')}
       FROM (SELECT ${columnList('s', liveCols)}, true AS "_staged" FROM ${m.staged} s WHERE true ${notSkipped('s')}) s
       FULL JOIN (SELECT ${columnList('l', liveCols)}, true AS "_live" FROM ${liveTenantRows(ctx, m, tenantId)} ${notSkipped('l')}) l ON ${joinOn('s', 'l', key)}
      WHERE s."_staged" IS NULL OR l."_live" IS NULL OR ${differs(m, nonKey)}`,
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

/** An exact replace of a table whose schema is the backup's: the tenant's rows are to become the backed-up ones, as they are. */
function replacesAsBackedUp(ctx: RestoreContext, m: TableMapping, selection: RestoreSelection): boolean {
  return isExactReplace(selection) && !!m.live && !blockingDrift(m) && !ctx.drift.some((d) => d.table === m.table) && sameColumnsAsBackup(m);
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

/** How much of a table's backup a preview stages (see stagingOf). */
export type Staging = 'nothing' | 'first-keys' | 'keys' | 'all';

/** Keys shown per kind of change in a preview. */
export const sampleSize = 5;

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

/** Whether a tenant row of the table hangs from a parent row written since a snapshot of this xmin (xid8 text). */
async function movedInSince(c: ClientBase, ctx: RestoreContext, m: TableMapping, tenantId: string, xmin: string): Promise<boolean> {
  const chain = tenantChain(ctx.plan, m.live!, 'l', tenantId);
  if (chain.aliases.length === 1) return false;
  // the chain's inner joins cost twice tenantRowVersions' semi-joins (comments: 240 ms vs 135 ms)
  const parentWrittenSince = chain.aliases.slice(1).map((a) => writtenSince(a, '$1::xid8')).join(' OR ');
  return (await one<{ moved: boolean }>(c, `SELECT EXISTS (SELECT 1 FROM ${liveTable(m)} l ${chain.joins} WHERE ${chain.where} AND (${parentWrittenSince})) AS moved`, [xmin])).moved;
}

/** The tenant's rows of a table: how many, and whether any was written since a snapshot of this xmin (xid8 text). */
async function tenantRowVersions(c: ClientBase, ctx: RestoreContext, m: TableMapping, tenantId: string, xmin: string): Promise<{ rows: number; writtenSince: boolean }> {
  const r = await one<{ n: string; young: boolean }>(
    c,
    `SELECT count(*) AS n, coalesce(bool_or(${writtenSince('l', '$1::xid8')}), false) AS young FROM ${liveTenantRows(ctx, m, tenantId)}`,
    [xmin],
  );
  return { rows: Number(r.n), writtenSince: r.young };
}

/** The diff of a table that needs nothing staged (stagingOf): what diffTable would find, without staging it. */
export function unchangedTableDiff(m: TableMapping, args: PlanArgs): TableDiff {
  const none: TableChanges = { insert: 0, update: 0, delete: 0 };
  const preview: TablePreview = m.key
    ? { ...none, samples: {}, keysHash: { insert: '0', update: '0', delete: '0' }, selected: isSelected(args.selection, m.table) }
    : { ...none, samples: {}, keysHash: { insert: '0', update: '', delete: '0' }, wholeTable: true, selected: isSelected(args.selection, m.table) };
  return { preview, blockers: [], warnings: [], liveRows: m.manifest.rows };
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
  const keyText = m.key!.length === 1 ? `d.${quoteIdent(m.key![0])}::text` : `ROW(${columnList('d', m.key!)})::text`;
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

/** A row of a table without a key, as one text value: how its identical copies are grouped. */
export function rowText(alias: string, columns: string[]): string {
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

export interface PlanArgs {
  tenantId: string;
  backupId: string;
  snapshotAt: string;
  selection: RestoreSelection;
}

/** One table's part of the plan, and the tenant's row versions it was computed against. */
export interface TableDiff {
  /** absent when drift blocks the table */
  preview?: TablePreview;
  blockers: Blocker[];
  warnings: string[];
  /** the tenant's live rows in the table as the diff saw them; absent when the table is gone live */
  liveRows?: number;
}

/**
 * Diffs one table (writes its diff table, counts it). Its rows and those of every other table
 * must be read at the same moment: one transaction, or transactions sharing one snapshot.
 * `keysOnly`: staged from its keys only, as stagingOf allows (a table without a key: not at all).
 */
export async function diffTable(c: ClientBase, ctx: RestoreContext, m: TableMapping, args: PlanArgs, keysOnly = false): Promise<TableDiff> {
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
    if (!keysOnly) await materialize(c, ctx, m, tenantId, selection.missingRefs);
    const { insert: ins, update: upd, delete: del, conflict } = await describeDiff(c, ctx, m, keysOnlyDiff);
    const skipped = selection.missingRefs === 'skip' ? (await one(c, `SELECT count(*)::int AS n FROM ${scratchTable(ctx, m, 'skipped')}`)).n : 0;
    found = { insert: ins.count, update: upd.count, delete: del.count };
    // staged (every backed-up row) = unchanged + update + insert + conflict; live = unchanged + update + delete
    out.liveRows = selection.missingRefs === 'skip' ? await countLiveRows(c, ctx, m, tenantId) : m.manifest.rows - ins.count - conflict.count + del.count;
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
    found = { insert: multiset.insert, update: 0, delete: multiset.delete };
    out.liveRows = selection.missingRefs === 'skip' ? await countLiveRows(c, ctx, m, tenantId) : m.manifest.rows - multiset.insert + multiset.delete;
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

/**
 * Rows the restore writes (inserts, updates) that would collide, on a unique key other than the
 * primary key, with a live row it leaves in place (not one it deletes or updates, nor the row
 * itself): another row holds those values now, as when another tenant took a globally unique
 * email or name since the backup. (NULLs collide only under NULLS NOT DISTINCT; `=` says so.)
 */
async function uniqueConflicts(c: ClientBase, ctx: RestoreContext, m: TableMapping, applied: TableChanges): Promise<Blocker[]> {
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

/**
 * Computes the plan in one transaction (REPEATABLE READ in the apply), so every count sees the
 * same moment. The digest binds the exact rows: approvals are for this plan only.
 */
export async function computePlan(c: ClientBase, ctx: RestoreContext, args: PlanArgs): Promise<RestorePreview> {
  const diffs = new Map<string, TableDiff>();
  for (const m of ctx.mappings) diffs.set(m.table, await diffTable(c, ctx, m, args));
  return assemblePlan(c, ctx, args, diffs, await snapshotXmin(c));
}

/** The oldest transaction still running when the snapshot was taken: every older one was visible to it. */
export async function snapshotXmin(c: ClientBase): Promise<string> {
  return (await one<{ xmin: string }>(c, 'SELECT pg_snapshot_xmin(pg_current_snapshot())::text AS xmin')).xmin;
}

/**
 * The plan from every table's diff: the references the changes would break (checked across
 * tables), the digest; stored with what the apply needs to tell whether the tenant's rows
 * changed since: their count per table, and `readAt`, the snapshotXmin of the diffs' snapshot.
 */
export async function assemblePlan(c: ClientBase, ctx: RestoreContext, args: PlanArgs, diffs: Map<string, TableDiff>, readAt: string): Promise<RestorePreview> {
  const tables: Record<string, TablePreview> = {};
  const blockers: Blocker[] = [];
  const warnings: string[] = [];
  const totals: TableChanges = { insert: 0, update: 0, delete: 0 };
  for (const m of ctx.mappings) {
    const d = diffs.get(m.table)!;
    blockers.push(...d.blockers);
    warnings.push(...d.warnings);
    if (!d.preview) continue;
    tables[m.table] = d.preview;
    for (const k of changeKinds) totals[k] += d.preview[k];
  }
  await findReferenceBlockers(c, ctx, args, tables, blockers, warnings);
  const preview = {
    restoreId: ctx.restoreId,
    tenantId: args.tenantId,
    backupId: args.backupId,
    snapshotAt: args.snapshotAt,
    selection: args.selection,
    tables,
    totals,
    drift: ctx.drift,
    warnings,
    blockers,
  };
  const result = { ...preview, digest: sha256Hex(canonicalJson(preview)) };
  const liveRows = Object.fromEntries(ctx.mappings.filter((m) => m.live).map((m) => [m.table, diffs.get(m.table)!.liveRows]));
  await c.query(`DROP TABLE IF EXISTS ${planStateTable(ctx)}`);
  await c.query(`CREATE UNLOGGED TABLE ${planStateTable(ctx)} AS SELECT $1::jsonb AS plan, $2::jsonb AS live_rows, $3::xid8 AS read_at, $4::text AS schema`, [
    JSON.stringify(result),
    JSON.stringify(liveRows),
    readAt,
    ctx.plan.fingerprint,
  ]);
  return result;
}

async function countLiveRows(c: ClientBase, ctx: RestoreContext, m: TableMapping, tenantId: string): Promise<number> {
  return Number((await one(c, `SELECT count(*) AS n FROM ${liveTenantRows(ctx, m, tenantId)}`)).n);
}

/**
 * Whether the tenant's rows are the very row versions the plan was computed against. Any
 * insert or update writes a version whose xmin is a transaction the plan's snapshot did not see
 * (not older than its xmin, `readAt`); a delete alone lowers the count. So: same count and no
 * version that young means the same rows: in every table, so a row tied to the tenant by a parent
 * written since (moved in) shows in its parent's table. (A version can also look young without
 * being new, a frozen one from before a wraparound: then the plan is recomputed, merely slower.)
 */
async function tenantRowsUnchanged(c: ClientBase, ctx: RestoreContext, tenantId: string, liveRows: Record<string, number>, readAt: string): Promise<boolean> {
  for (const m of ctx.mappings.filter((x) => x.live)) {
    const now = await tenantRowVersions(c, ctx, m, tenantId, readAt);
    if (now.rows !== liveRows[m.table] || now.writtenSince) return false;
  }
  return true;
}

/** The plan the last preview (or apply) stored, with what tells whether it still holds. */
export async function storedPlan(c: ClientBase, ctx: RestoreContext): Promise<{ plan: RestorePreview; live_rows: Record<string, number>; read_at: string; schema: string } | undefined> {
  const exists = await one(c, `SELECT to_regclass('${planStateTable(ctx).replace(/'/g, "''")}') IS NOT NULL AS yes`);
  return exists.yes ? one(c, `SELECT plan, live_rows, read_at::text, schema FROM ${planStateTable(ctx)}`) : undefined;
}

/**
 * The plan as of now: the last one computed, when neither the tenant's rows nor the schema
 * changed since (a scan of the tenant's row versions, cheaper than a diff); else recomputed.
 * `reused`: its diff tables are the committed ones, readable from other sessions too.
 */
export async function currentPlan(c: ClientBase, ctx: RestoreContext, args: PlanArgs & { source: BackupSource }): Promise<{ plan: RestorePreview; reused: boolean }> {
  const stored = await storedPlan(c, ctx);
  if (stored) {
    const unchanged =
      stored.schema === ctx.plan.fingerprint &&
      canonicalJson(stored.plan.selection) === canonicalJson(args.selection) &&
      (await tenantRowsUnchanged(c, ctx, args.tenantId, stored.live_rows, stored.read_at));
    if (unchanged) return { plan: stored.plan, reused: true };
  }
  await stageInFull(c, ctx, args.source);
  return { plan: await computePlan(c, ctx, args), reused: false };
}

/**
 * Whether the scratch tables still hold what the preview staged. Crash recovery empties every
 * unlogged table at once, and the stored plan is one of them: a preview always stores it, so
 * without it the staged rows may be gone too, and a plan computed from them would delete what
 * the backup holds.
 */
export async function scratchSurvived(c: ClientBase, ctx: RestoreContext): Promise<boolean> {
  return (await storedPlan(c, ctx)) !== undefined;
}

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
