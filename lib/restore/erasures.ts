// The erasure ledger's entries applied again to a restore's staged rows, before the diff, so a
// restore never brings back a person erased after its backup was taken (lib/erasure). Left out:
// the subjects' rows, and every staged row that depends on a row left out through a foreign key
// the restore knows (any depth, self references too), as the database would have removed them
// had the parent been deleted with them; where the foreign key is ON DELETE SET NULL, the row
// stays with its reference cleared instead. Rows left out are moved to the table's `erased`
// scratch table: what the preview counts, and what a re-staged table is matched against.
import type { ClientBase } from 'pg';
import { joinOn, quoteIdent, quoteLiteral } from '../pg';
import type { ForeignKeyInfo } from '../tenancy';
import { mappingOf, type RestoreContext, type TableMapping } from './mapping';
import { scratchTable } from './sql';
import type { Blocker, ErasuresPreview } from './types';

/** The erasures the restore applies, as its staging needs to know: none, or some. */
export const hasErasures = (ctx: RestoreContext): boolean => (ctx.erasures?.length ?? 0) > 0;

/**
 * Leaves the erased rows out of the staged tables (every table fully staged). Idempotent: a table
 * staged again (after a crash, or a plan recomputed) loses the same rows, counted once.
 */
export async function reapplyErasures(c: ClientBase, ctx: RestoreContext): Promise<void> {
  if (!hasErasures(ctx)) return;
  const mappings = ctx.mappings.filter((m) => m.live);
  const setNull = await setNullForeignKeys(c, mappings);
  for (const m of mappings) await c.query(`CREATE UNLOGGED TABLE IF NOT EXISTS ${scratchTable(ctx, m, 'erased')} AS SELECT * FROM ${m.staged} WITH NO DATA`);
  // Tables that lost rows: the subjects', and those that lost some before (a table staged again).
  // Parents come before children: a pass reaches every depth but a child met before its parent
  // (a self reference, a cycle), which the next pass takes; done when a pass leaves nothing out.
  let grew = new Set(ctx.erasures!.map((e) => e.table));
  for (const m of mappings) if ((await c.query(`SELECT EXISTS (SELECT 1 FROM ${scratchTable(ctx, m, 'erased')}) AS any`)).rows[0].any) grew.add(m.table);
  for (let pass = 0; grew.size > 0; pass++) {
    const next = new Set<string>();
    for (const m of mappings) {
      const direct = pass === 0 ? ctx.erasures!.filter((e) => e.table === m.table) : [];
      const fks = dependencies(ctx, m).filter((fk) => grew.has(fk.refTable) || next.has(fk.refTable));
      if (direct.length === 0 && fks.length === 0) continue;
      const excluded = [subjectsMatch(m, direct), ...fks.filter((fk) => !setNull.has(fkId(m.table, fk))).map((fk) => parentErased(ctx, fk))].filter(Boolean).join(' OR ');
      if (excluded && (await leaveOut(c, ctx, m, excluded)) > 0) next.add(m.table);
      // rows kept with their reference cleared: nothing below them goes
      for (const fk of fks.filter((x) => setNull.has(fkId(m.table, x)))) {
        await c.query(`UPDATE ${m.staged} s SET ${fk.columns.map((col) => `${quoteIdent(col)} = NULL`).join(', ')} WHERE ${parentErased(ctx, fk)}`);
      }
    }
    grew = next;
  }
}

/** The preview's section: the entries applied, and the rows each table left out. */
export async function erasuresPreview(c: ClientBase, ctx: RestoreContext): Promise<ErasuresPreview | undefined> {
  if (!hasErasures(ctx)) return undefined;
  const rows: Record<string, number> = {};
  for (const m of ctx.mappings.filter((x) => x.live)) {
    const n = (await c.query(`SELECT count(*)::int AS n FROM ${scratchTable(ctx, m, 'erased')}`)).rows[0].n as number;
    if (n > 0) rows[m.table] = n;
  }
  return {
    entries: ctx.erasures!.map((e) => ({ erasureId: e.erasureId, table: e.table, key: e.key, by: e.by, erasedAt: e.erasedAt })),
    rows,
    total: Object.values(rows).reduce((a, b) => a + b, 0),
  };
}

/**
 * Erasures whose subject the restore could not find: the table's primary key is no longer the
 * columns the erasure names. Left unmatched, the person would come back: the restore stops.
 */
export function erasureBlockers(ctx: RestoreContext): Blocker[] {
  const out: Blocker[] = [];
  for (const e of ctx.erasures ?? []) {
    const m = mappingOf(ctx, e.table);
    if (!m?.live) continue; // not restored: nothing to leave out
    const named = Object.keys(e.key).sort();
    if (m.key && JSON.stringify([...m.key].sort()) === JSON.stringify(named)) continue;
    out.push({
      kind: 'erasure-unmatched',
      table: e.table,
      rows: 0,
      message: `erasure #${e.erasureId} names ${e.table} by (${named.join(', ')}), but its primary key is now ${m.key ? `(${m.key.join(', ')})` : 'gone'}: the subject cannot be left out`,
    });
  }
  return out;
}

/** The preview's line for people: rows left out per table, and by which erasures. */
export function erasuresWarning(e: ErasuresPreview): string {
  const tables = Object.entries(e.rows).map(([t, n]) => `${n} row${n === 1 ? '' : 's'} in ${t}`);
  return `erasures re-applied: ${tables.length ? tables.join(', ') : 'no backed-up row was erased'} (erasure${e.entries.length === 1 ? '' : 's'} ${e.entries.map((x) => `#${x.erasureId} of ${x.table}`).join(', ')} of the ledger, recorded after the backup)`;
}

const fkId = (table: string, fk: ForeignKeyInfo) => `${table}\0${fk.name}`;

/** The foreign keys (of these tables) declared ON DELETE SET NULL: their rows stay, the reference cleared. */
async function setNullForeignKeys(c: ClientBase, mappings: TableMapping[]): Promise<Set<string>> {
  const r = await c.query<{ table: string; name: string }>(
    `SELECT n.nspname || '.' || t.relname AS table, con.conname AS name
       FROM pg_constraint con JOIN pg_class t ON t.oid = con.conrelid JOIN pg_namespace n ON n.oid = t.relnamespace
      WHERE con.contype = 'f' AND con.confdeltype = 'n' AND n.nspname || '.' || t.relname = ANY($1)`,
    [mappings.map((m) => m.table)],
  );
  return new Set(r.rows.map((x) => `${x.table}\0${x.name}`));
}

/** Foreign keys of a table to owned tables whose every column is staged (others cannot be matched). */
function dependencies(ctx: RestoreContext, m: TableMapping): ForeignKeyInfo[] {
  const staged = new Set(m.stagedColumns.map((s) => s.name));
  return (ctx.tables.get(m.table)?.foreignKeys ?? []).filter((fk) => mappingOf(ctx, fk.refTable)?.live && fk.columns.every((col) => staged.has(col)));
}

/** Staged rows of the subjects named: keys compared as text, as PostgreSQL prints them (the ledger's form). */
function subjectsMatch(m: TableMapping, erasures: { key: Record<string, string> }[]): string {
  if (erasures.length === 0 || !m.key) return '';
  return erasures.map((e) => `(${m.key!.map((k) => `s.${quoteIdent(k)}::text = ${quoteLiteral(e.key[k] ?? '')}`).join(' AND ')})`).join(' OR ');
}

/** Staged rows whose foreign key points at a row of the parent left out. */
function parentErased(ctx: RestoreContext, fk: ForeignKeyInfo): string {
  const parent = mappingOf(ctx, fk.refTable)!;
  return `EXISTS (SELECT 1 FROM ${scratchTable(ctx, parent, 'erased')} p WHERE ${joinOn('p', 's', fk.refColumns, fk.columns)})`;
}

/** Moves the staged rows matching `where` to the erased table (a row already there, by key, not twice). */
async function leaveOut(c: ClientBase, ctx: RestoreContext, m: TableMapping, where: string): Promise<number> {
  const erased = scratchTable(ctx, m, 'erased');
  const seen = m.key ? joinOn('e', 'g', m.key) : `ROW(e.*)::text = ROW(g.*)::text`;
  const r = await c.query(
    `WITH gone AS (DELETE FROM ${m.staged} s WHERE ${where} RETURNING s.*),
          kept AS (INSERT INTO ${erased} SELECT g.* FROM gone g WHERE NOT EXISTS (SELECT 1 FROM ${erased} e WHERE ${seen}))
     SELECT count(*)::int AS n FROM gone`,
  );
  // the rows deleted, not only those new to the erased table: a re-staged table's children go too
  return r.rows[0].n as number;
}
