// A tenant as it was at a point in time, rebuilt from its newest tenant backup with an exact
// boundary before that point and the change log after the boundary (source 1 of a tenant
// point-in-time restore: fast, and independent of the database's size).
//
// The log holds every tenant's changes of the owned tables. They are loaded, as of the target,
// into a scratch schema beside the backup's rows; each changed key's last version wins; then the
// tenant's rows are chosen by the ownership chain as it stood at the target, among those rows.
// That is exact unless a row joined the tenant through its parent without being written itself
// (a parent moved in from another tenant brings its unchanged children, which neither the
// backup nor the log hold), or a row needs a large value the log did not send (an unchanged
// TOASTed column of a row the tenant did not have): then this source says it cannot, and why.
import { randomBytes } from 'node:crypto';
import type { Client } from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { BackupRecord } from '../catalog';
import type { Engine } from '../engine';
import { ErrorType, TenantsafeError } from '../errors';
import { readManifest, type ManifestTable, type TenantManifest } from '../format/tenantManifest';
import { qualified, quoteIdent, quoteLiteral, withConnection } from '../pg';
import { backupSource, stageTables, type StagedTable } from '../restore/stage';
import { takeTenantBackup, type TenantBackupSummary } from '../tenantBackup';
import { discoverTenancy, tenantFilter, type OwnedTable, type TenancyPlan } from '../tenancy';
import { formatMicros, parseMicros } from '../time';
import { formatLsn, parseLsn } from '../wal/names';
import { readChangeLog, type LoggedTransaction, type SegmentRelations } from '../changeLog/read';

/** A point to restore to: a time (inclusive: a commit at exactly that time is in) or an LSN (a commit starting at or before it is in). */
export type PointInTimeTarget = { at: string } | { lsn: string };

export interface ChangeLogRebuild {
  backup: TenantBackupSummary;
  /** the last transaction included: where it ends and when it committed (null: none after the base) */
  lastCommit: { lsn: string; time: string } | null;
  transactionsReplayed: number;
}

/** Why the change log cannot rebuild this tenant at this point: said to the operator, and the next source is tried. */
export class ChangeLogCannot extends Error {}

/** Is this transaction past the target? Times stop before the first commit later than the target, as recovery does. */
function pastTarget(target: PointInTimeTarget, txn: LoggedTransaction): boolean {
  return 'at' in target ? txn.commitTimeUs > parseMicros(target.at) : txn.commitLsn > parseLsn(target.lsn);
}

/**
 * Rebuilds the tenant at the target from `base` (a tenant backup with snapshot.changeLogLsn) and
 * the stream's log, and writes it as a tenant backup (kind pointInTime) under `backupId`.
 */
export async function rebuildFromChangeLog(
  engine: Engine,
  args: { tenantId: string; backupId: string; base: BackupRecord; stream: string; target: PointInTimeTarget; reason: string; signal?: AbortSignal },
): Promise<ChangeLogRebuild> {
  const manifest = await readManifest(engine.store, args.base.prefix);
  const boundary = manifest.snapshot.changeLogLsn;
  if (!boundary) throw new ChangeLogCannot(`backup ${args.base.backupId} has no exact boundary with the change log`);
  const plan = await withConnection(engine.config.database.url, (c) => discoverTenancy(c, engine.config.tenancy));
  assertSameTables(plan, manifest);
  const schema = `tenantsafe_pit_${randomBytes(4).toString('hex')}`;
  const tables = plan.tables.map((t, i) => scratchTablesOf(schema, t, manifest.tables.find((m) => m.table === t.key)!, i));
  const url = engine.config.database.url;
  try {
    await stageTables({ url, ...backupSource(engine.store, args.base.prefix, manifest), parallelism: engine.config.backup.parallelism, schema, tables: tables.map((t) => t.base), checkContent: true, signal: args.signal });
    const replayed = await withConnection(url, async (c) => {
      await c.query(`CREATE UNLOGGED TABLE ${qualified(schema, 'changes')} (tbl text, seq bigint, present boolean, op "char", key text[], vals text[], unchanged int[])`);
      const loaded = await loadChanges(c, engine, schema, plan, args, parseLsn(boundary));
      await c.query(`ANALYZE ${qualified(schema, 'changes')}`);
      for (const t of tables) await buildState(c, schema, t, loaded.truncatedAt.get(t.owned.key));
      await assertExact(c, plan, tables, args.tenantId);
      return loaded;
    });
    const lastCommit = replayed.last ? { lsn: formatLsn(replayed.last.endLsn), time: replayed.last.commitTime } : null;
    const at = 'at' in args.target ? formatMicros(parseMicros(args.target.at)) : (lastCommit?.time ?? manifest.snapshot.at);
    await assertTenantExisted(url, plan, tables, args.tenantId, at);
    const byKey = new Map(tables.map((t) => [t.owned.key, t]));
    const backup = await takeTenantBackup(engine, {
      tenantId: args.tenantId,
      backupId: args.backupId,
      requireTenant: false,
      signal: args.signal,
      pointInTime: {
        source: { source: 'changeLog', target: args.target, lastCommit, baseBackupId: args.base.backupId, reason: args.reason },
        rowsQuery: (t) => {
          const s = byKey.get(t.key)!;
          return `SELECT ${t.copyColumns.map((n) => `r.${quoteIdent(n)}`).join(', ')} FROM ${s.state} r WHERE ${tenantFilter(plan, t, 'r', args.tenantId, (p) => byKey.get(p.key)!.state)}`;
        },
        at,
        lsn: lastCommit?.lsn ?? boundary,
      },
    });
    return { backup, lastCommit, transactionsReplayed: replayed.transactions };
  } finally {
    await withConnection(url, (c) => c.query(`DROP SCHEMA IF EXISTS ${quoteIdent(schema)} CASCADE`)).catch(() => undefined);
  }
}

/** The log's columns for a table must be the backup's: a table whose columns changed in between is not replayed (the clone can). */
function assertSameTables(plan: TenancyPlan, manifest: TenantManifest): void {
  const live = plan.tables.map((t) => `${t.key}(${t.copyColumns.join(',')})`).sort().join(' ');
  const backedUp = manifest.tables.map((t) => `${t.table}(${t.copyColumns.join(',')})`).sort().join(' ');
  if (live !== backedUp) throw new ChangeLogCannot(`the tenant's tables or their columns changed since backup ${manifest.backupId}`);
}

interface ReplayTables {
  owned: OwnedTable;
  manifest: ManifestTable;
  /** the backup's rows */
  base: StagedTable;
  /** the rows as of the target: the backup's, with every logged change up to it */
  state: string;
}

function scratchTablesOf(schema: string, owned: OwnedTable, manifest: ManifestTable, i: number): ReplayTables {
  const types = new Map(manifest.columns.map((c) => [c.name, c.type]));
  const n = String(i + 1).padStart(4, '0');
  return {
    owned,
    manifest,
    base: { table: owned.key, manifest, staged: qualified(schema, `b${n}`), stagedColumns: manifest.copyColumns.map((name) => ({ name, type: types.get(name)! })) },
    state: qualified(schema, `s${n}`),
  };
}

/**
 * Loads every logged change of the owned tables from the backup's boundary up to the target
 * into the scratch `changes` table, one row a key version: an update that changed a key is the
 * old key gone and the new one present. Stops before the first transaction past the target.
 */
async function loadChanges(
  c: Client,
  engine: Engine,
  schema: string,
  plan: TenancyPlan,
  args: { stream: string; target: PointInTimeTarget; signal?: AbortSignal },
  boundary: bigint,
): Promise<{ last: LoggedTransaction | undefined; transactions: number; truncatedAt: Map<string, number> }> {
  const owned = new Map(plan.tables.map((t) => [t.key, t]));
  const truncatedAt = new Map<string, number>();
  let last: LoggedTransaction | undefined;
  let transactions = 0;
  let seq = 0;
  const lines = async function* (): AsyncGenerator<string> {
    for await (const { txn, relations } of readChangeLog(engine.store, engine.catalog, args.stream, boundary)) {
      if (pastTarget(args.target, txn)) return;
      args.signal?.throwIfAborted();
      last = txn;
      transactions++;
      for (const change of txn.changes) {
        seq++;
        if (change.kind === 'truncate') {
          for (const t of change.tables) if (owned.has(t)) truncatedAt.set(t, seq);
          continue;
        }
        const t = owned.get(change.table);
        if (!t) continue;
        assertSameColumns(t, relations);
        for (const v of keyVersions(t, change)) yield `${JSON.stringify({ t: t.key, s: seq, ...v }).replace(/\\/g, '\\\\')}\n`;
      }
    }
  };
  await c.query('BEGIN');
  await c.query(`CREATE TEMP TABLE replay_lines (j jsonb) ON COMMIT DROP`);
  await pipeline(Readable.from(lines()), c.query(copyFrom(`COPY replay_lines (j) FROM STDIN`)));
  await c.query(
    `INSERT INTO ${qualified(schema, 'changes')} (tbl, seq, present, op, key, vals, unchanged)
     SELECT j->>'t', (j->>'s')::bigint, (j->>'p')::boolean, (j->>'o')::"char",
            ARRAY(SELECT jsonb_array_elements_text(j->'k')), ARRAY(SELECT jsonb_array_elements_text(j->'v')),
            ARRAY(SELECT jsonb_array_elements_text(coalesce(j->'u', '[]'))::int)
       FROM replay_lines`,
  );
  await c.query(`CREATE INDEX ON ${qualified(schema, 'changes')} (tbl, key, seq)`);
  await c.query('COMMIT');
  return { last, transactions, truncatedAt };
}

function assertSameColumns(t: OwnedTable, relations: SegmentRelations): void {
  const shape = relations[t.key];
  if (shape && shape.columns.join(',') !== t.copyColumns.join(',')) throw new ChangeLogCannot(`the columns of ${t.key} changed within the change log`);
}

type KeyVersion = { p: boolean; o: string; k: (string | null)[]; v?: (string | null)[]; u?: number[] };

/** The key versions a change leaves: a row present (with its values) or gone, per key. A table without a key is keyed by its whole row. */
function keyVersions(t: OwnedTable, change: Exclude<import('../changeLog/replication').Change, { kind: 'truncate' }>): KeyVersion[] {
  const keyOf = (row: (string | null)[]) => (t.primaryKey ? t.primaryKey.map((k) => row[t.copyColumns.indexOf(k)]) : row);
  switch (change.kind) {
    case 'insert':
      return [{ p: true, o: 'I', k: keyOf(change.row), v: change.row }];
    case 'delete':
      return [{ p: false, o: 'D', k: keyOf(change.before) }];
    case 'update': {
      const now: KeyVersion = { p: true, o: 'U', k: keyOf(change.row), v: change.row, ...(change.unchanged ? { u: change.unchanged.map((i) => i + 1) } : {}) };
      if (!t.primaryKey) return [{ p: false, o: 'U', k: keyOf(change.before!) }, now];
      const before = change.before && keyOf(change.before);
      return before && before.join('\0') !== now.k.join('\0') ? [{ p: false, o: 'U', k: before }, now] : [now];
    }
  }
}

/**
 * The table as of the target: the backup's rows of keys the log did not touch (none after a
 * truncate), and the last version of each key it did. Unchanged TOASTed values come from the
 * key's previous version, or the backup's row. Tables without a key count copies.
 */
async function buildState(c: Client, schema: string, t: ReplayTables, truncatedAt: number | undefined): Promise<void> {
  const cols = t.manifest.copyColumns;
  const changes = qualified(schema, 'changes');
  const after = truncatedAt ?? 0;
  const typed = (arr: string) => cols.map((n, i) => `${arr}[${i + 1}]::${t.base.stagedColumns[i].type} AS ${quoteIdent(n)}`).join(', ');
  const asText = (alias: string, names: string[]) => `ARRAY[${names.map((n) => `${alias}.${quoteIdent(n)}::text`).join(', ')}]`;
  const baseRows = truncatedAt === undefined ? t.base.staged : `(SELECT * FROM ${t.base.staged} WHERE false)`;
  if (!t.owned.primaryKey) {
    // copies: the backup's, plus inserted, less deleted (an update is both)
    await c.query(
      `CREATE UNLOGGED TABLE ${t.state} AS
       WITH counted AS (
         SELECT v, sum(n)::int AS n FROM (
           SELECT ${asText('b', cols)} AS v, 1 AS n FROM ${baseRows} b
           UNION ALL
           SELECT key, CASE WHEN present THEN 1 ELSE -1 END FROM ${changes} WHERE tbl = ${quoteLiteral(t.owned.key)} AND seq > ${after}
         ) x GROUP BY v)
       SELECT ${typed('v')} FROM counted, generate_series(1, greatest(n, 0))`,
    );
    return;
  }
  const key = t.owned.primaryKey;
  await c.query(
    `CREATE UNLOGGED TABLE ${t.state} AS
     WITH last AS (
       SELECT DISTINCT ON (key) key, seq, present, vals, unchanged FROM ${changes}
        WHERE tbl = ${quoteLiteral(t.owned.key)} AND seq > ${after} ORDER BY key, seq DESC
     ), filled AS (
       SELECT l.key, l.present,
              CASE WHEN cardinality(l.unchanged) = 0 THEN l.vals ELSE ARRAY(
                SELECT CASE WHEN i = ANY(l.unchanged) THEN coalesce(
                         (SELECT p.vals[i] FROM ${changes} p WHERE p.tbl = ${quoteLiteral(t.owned.key)} AND p.key = l.key AND p.present AND p.seq > ${after} AND p.seq < l.seq AND NOT i = ANY(p.unchanged) ORDER BY p.seq DESC LIMIT 1),
                         (SELECT (${asText('b', cols)})[i] FROM ${baseRows} b WHERE ${asText('b', key)} = l.key))
                       ELSE l.vals[i] END
                  FROM generate_subscripts(l.vals, 1) i ORDER BY i) END AS vals,
              EXISTS (SELECT 1 FROM ${baseRows} b WHERE ${asText('b', key)} = l.key) AS in_backup,
              (SELECT f.op FROM ${changes} f WHERE f.tbl = ${quoteLiteral(t.owned.key)} AND f.key = l.key AND f.seq > ${after} ORDER BY f.seq LIMIT 1) AS first_op,
              l.unchanged
         FROM last l
     )
     SELECT ${cols.map((n) => `b.${quoteIdent(n)}`).join(', ')}, false AS "+unresolved", true AS "+in_backup", null::"char" AS "+first_op"
       FROM ${baseRows} b WHERE NOT EXISTS (SELECT 1 FROM last l WHERE l.key = ${asText('b', key)})
     UNION ALL
     SELECT ${typed('vals')}, EXISTS (SELECT 1 FROM unnest(unchanged) i WHERE vals[i] IS NULL), in_backup, first_op
       FROM filled WHERE present`,
  );
}

/**
 * What the log alone cannot give: a row of the tenant whose unchanged large value it never saw,
 * and a row that joined the tenant by an update (it was another tenant's before) in a table
 * other tables hang from: whatever hung from it, unchanged, is in neither the backup nor the log.
 */
async function assertExact(c: Client, plan: TenancyPlan, tables: ReplayTables[], tenantId: string): Promise<void> {
  const byKey = new Map(tables.map((t) => [t.owned.key, t]));
  const parents = new Set(plan.tables.flatMap((t) => (t.ownership.kind === 'parent' ? [t.ownership.parent] : [])));
  for (const t of tables.filter((x) => x.owned.primaryKey)) {
    const mine = tenantFilter(plan, t.owned, 'r', tenantId, (p) => byKey.get(p.key)!.state);
    const r = await c.query<{ unresolved: number; moved_in: number }>(
      `SELECT count(*) FILTER (WHERE r."+unresolved")::int AS unresolved, count(*) FILTER (WHERE NOT r."+in_backup" AND r."+first_op" = 'U')::int AS moved_in
         FROM ${t.state} r WHERE ${mine}`,
    );
    if (r.rows[0].unresolved > 0) throw new ChangeLogCannot(`${r.rows[0].unresolved} row(s) of ${t.owned.key} need a large value the change log did not send (an unchanged TOASTed column)`);
    if (parents.has(t.owned.key) && r.rows[0].moved_in > 0) {
      throw new ChangeLogCannot(`${r.rows[0].moved_in} row(s) of ${t.owned.key} moved into the tenant from another one; what hangs from them is in neither the backup nor the change log`);
    }
  }
}

async function assertTenantExisted(url: string, plan: TenancyPlan, tables: ReplayTables[], tenantId: string, at: string): Promise<void> {
  const tenantTable = tables.find((t) => t.owned.ownership.kind === 'tenant-table');
  if (!tenantTable) return;
  const found = await withConnection(url, (c) => c.query(`SELECT 1 FROM ${tenantTable.state} r WHERE ${tenantFilter(plan, tenantTable.owned, 'r', tenantId)}`)).catch(() => ({ rowCount: 0 }));
  if (!found.rowCount) {
    throw new TenantsafeError(ErrorType.TenantNotFound, `Tenant "${tenantId}" did not exist at ${at}.`, 'Pick a time when it existed: `tenantsafe restore window --tenant <id>` shows what can be restored.');
  }
}

