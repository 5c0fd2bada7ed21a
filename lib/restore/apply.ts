// Apply an approved restore in one REPEATABLE READ transaction:
//   recompute the plan (or confirm nothing changed since it was computed) and refuse if its
//   digest is not the approved one;
//   back up the tenant as this transaction sees it, before its changes, over other connections
//   importing its snapshot, while it works: no write can fall between safety backup and apply;
//   delete child → parent, update, insert parent → child, all set-based from the diff tables;
//   check foreign keys set-based (see below); move sequences past restored ids;
//   prove no other tenant's row was touched (see assertOtherTenantsUntouched);
//   wait for the safety backup; mark the restore applied inside the same transaction, so a
//   retry after a crash knows.
//
// Confirming that nothing changed is a scan of every tenant row. In an exact replace, the tables
// the safety backup reads need not be scanned first: after the writes, the safety backup's rows
// less those removed plus those written must come to the backup's checksum (proveAsBackedUp),
// and the other tables are scanned meanwhile over another connection reading the same snapshot;
// if either fails, the transaction rolls back and a new one scans first, as it would have.
//
// Foreign keys: with session_replication_role = replica (when the role may set it) Postgres
// skips its per-row checks and triggers. Per-row checks are what makes deleting parent rows slow
// when a referencing column has no index (each deleted row scans the child table); triggers
// would rewrite restored rows (updated_at = now()). Instead, every foreign key that touches a
// changed table is checked once, set-based, before commit. Without the privilege the apply runs
// with Postgres' own checks, and says so.
import { pipeline } from 'node:stream/promises';
import type { Client, ClientBase } from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { copyOut } from '../copyOut';
import { adjustRows, noRows } from '../checksum';
import { ErrorType, TenantsafeError } from '../errors';
import { allNotNull, cancelOnAbort, columnList, connect, joinOn, qualified, quoteIdent, quoteLiteral } from '../pg';
import { notTenantFilter } from '../tenancy';
import { multisetMissing, multisetSurplus } from './diff';
import { sameColumnsAsBackup, type RestoreContext, type TableMapping } from './mapping';
import { currentPlan, snapshotXmin, storedPlan, tenantRowsUnchanged } from './plan';
import { isExactReplace, isSelected } from './rules';
import { appliedMarkerTable, changedRows, keySet, liveTable } from './sql';
import { hasErasures } from './erasures';
import { copyBackupObject, type BackupSource } from './stage';
import type { TenantManifest } from '../format/tenantManifest';
import type { ApplyDelta, ApplyResult, RestorePreview, RestoreSelection, SafetyBackupRef, TableChanges } from './types';
import { rowsDigest, safetyRowsOf } from './verifyApplied';

export interface ApplyOptions {
  url: string;
  tenantId: string;
  backupId: string;
  snapshotAt: string;
  selection: RestoreSelection;
  approvedDigest: string;
  lockTimeoutMs: number;
  statementTimeoutMs: number;
  /** prove, inside the transaction, that no other tenant's row was written or deleted (a scan per changed table) */
  verifyOtherTenants: boolean;
  /** where the backup's objects are: a table restored whole is loaded from its object */
  source: BackupSource;
  /**
   * backs up the tenant as of an exported snapshot, where the tables `asBackedUp` hold exactly the
   * restored backup's rows; the apply commits only once it is written
   */
  safetyBackup?: (snapshot: string, signal: AbortSignal, asBackedUp: string[]) => Promise<TakenSafetyBackup>;
  /** removes a safety backup written for an apply that did not go ahead (the approved plan no longer held) */
  discardSafetyBackup?: (ref: SafetyBackupRef) => Promise<void>;
  signal?: AbortSignal;
}

/** A safety backup written: what the result records of it, and its manifest (the tenant's rows as the apply found them, per table). */
export interface TakenSafetyBackup {
  ref: SafetyBackupRef;
  manifest: TenantManifest;
}

export type ApplyOutcome = { kind: 'applied'; result: ApplyResult } | { kind: 'plan-changed'; preview: RestorePreview };

export async function applyRestore(ctx: RestoreContext, opts: ApplyOptions): Promise<ApplyOutcome> {
  const c = await connect(opts.url, 'tenantsafe-apply');
  let safetyAbort = new AbortController();
  let safetyBackup: Promise<TakenSafetyBackup | undefined> = Promise.resolve(undefined);
  /** Stops the safety backup and waits for it to settle: what it wrote, if it finished first. */
  const stopSafetyBackup = (reason: unknown) => {
    safetyAbort.abort(reason);
    return safetyBackup.catch(() => undefined);
  };
  let vacuums: DeadRowVacuums | undefined;
  const abort = () => {
    safetyAbort.abort(opts.signal?.reason);
    vacuums?.abort();
  };
  opts.signal?.addEventListener('abort', abort, { once: true });
  const stopCancelling = cancelOnAbort(opts.url, () => [c], opts.signal);
  try {
    const already = await previouslyApplied(c, ctx, opts.approvedDigest);
    if (already) return { kind: 'applied', result: { ...already, alreadyApplied: true } };
    vacuums = await DeadRowVacuums.start(c, opts.url, ctx);
    const inTransaction = { c, ctx, opts, vacuums };
    const safety = {
      start: (snapshot: string, asBackedUp: string[]) => {
        if (!opts.safetyBackup) return;
        safetyAbort = new AbortController();
        safetyBackup = opts.safetyBackup(snapshot, safetyAbort.signal, asBackedUp);
        safetyBackup.catch(() => undefined); // awaited before commit, or settled on the way out
      },
      stop: stopSafetyBackup,
      taken: () => safetyBackup,
    };
    // a plan proven after its writes first; where the proof fails, again in a new transaction that
    // scans first (the writes were inside the first one's: a savepoint would give them other xids)
    const first = await applyInTransaction(inTransaction, safety, true);
    if (first !== 'not-proven') return first;
    await c.query('ROLLBACK');
    await stopSafetyBackup(new Error('the tenant changed since the preview'));
    return (await applyInTransaction(inTransaction, safety, false)) as ApplyOutcome;
  } catch (err) {
    await c.query('ROLLBACK').catch(() => undefined);
    // a retry writes the same safety backup: this attempt's export must have stopped first
    await stopSafetyBackup(err);
    if (opts.signal?.aborted) throw opts.signal.reason ?? err;
    throw err;
  } finally {
    opts.signal?.removeEventListener('abort', abort);
    stopCancelling();
    await c.end().catch(() => undefined);
    await vacuums?.close();
  }
}

/** The safety backup of the transaction running (applyRestore's). */
interface SafetyBackupHandle {
  start: (snapshot: string, asBackedUp: string[]) => void;
  /** stops it and waits for it to settle: what it wrote, if it finished first */
  stop: (reason: unknown) => Promise<TakenSafetyBackup | undefined>;
  taken: () => Promise<TakenSafetyBackup | undefined>;
}

/**
 * One transaction of applyRestore: the plan as of its snapshot, its writes and checks, the safety
 * backup, commit. `prove`: the tables the proof covers are not scanned first (provableTables);
 * if it fails, 'not-proven', and the caller rolls back (the transaction is still open).
 */
async function applyInTransaction(
  { c, ctx, opts, vacuums }: { c: Client; ctx: RestoreContext; opts: ApplyOptions; vacuums: DeadRowVacuums },
  safety: SafetyBackupHandle,
  prove: boolean,
): Promise<ApplyOutcome | 'not-proven'> {
  await c.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
  // idle while it waits for the safety backup: a server-wide idle timeout must not end it
  await c.query(
    `SET LOCAL lock_timeout = ${Math.round(opts.lockTimeoutMs)}; SET LOCAL statement_timeout = ${Math.round(opts.statementTimeoutMs)}; SET LOCAL idle_in_transaction_session_timeout = 0`,
  );
  const replicaMode = await canUseReplicaMode(c);
  if (replicaMode) await c.query('SET LOCAL session_replication_role = replica');
  await c.query('SET CONSTRAINTS ALL DEFERRED');
  const { snapshot } = (await c.query<{ snapshot: string }>('SELECT pg_export_snapshot() AS snapshot')).rows[0];
  const readAt = await snapshotXmin(c);
  // The safety backup reads this transaction's snapshot, so it starts now, beside the check
  // that the approved plan still holds (a scan of the tenant's rows), not after it. When the
  // plan does not hold, it is stopped before this transaction ends. It copies the backup's
  // objects of the tables the preview found as backed up, which holds while the plan does.
  const stored = await storedPlan(c, ctx);
  const asBackedUp = stored?.as_backed_up ?? [];
  safety.start(snapshot, asBackedUp);

  /** The plan as of this snapshot, if it is the approved one and nothing blocks it; `unchecked`: see currentPlan. */
  const approvedPlan = async (unchecked: string[]): Promise<{ changed: RestorePreview } | { plan: RestorePreview; reused: boolean }> => {
    const { plan, reused } = await currentPlan(c, ctx, opts, stored, unchecked);
    if (!reused && asBackedUp.length > 0 && plan.digest === opts.approvedDigest) {
      // the tenant's rows changed since the preview, yet to the same plan: back up every table
      await safety.stop(new Error('the tenant changed since the preview'));
      safety.start(snapshot, []);
    }
    if (plan.digest !== opts.approvedDigest) {
      const unneeded = await safety.stop(new Error('the approved plan no longer holds'));
      if (unneeded) await opts.discardSafetyBackup?.(unneeded.ref);
      return { changed: plan };
    }
    if (plan.blockers.length > 0) {
      throw new TenantsafeError(
        ErrorType.RestoreBlocked,
        `The restore cannot be applied: ${plan.blockers.map((b) => b.message).join('; ')}.`,
        'Resolve the blockers (see the preview), or start a new restore with another selection or --missing-refs skip.',
      );
    }
    return { plan, reused };
  };
  // the tables the proof covers are not scanned before the writes, but proven after them; the
  // others are scanned beside the writes (see below)
  const provable = prove && stored && opts.safetyBackup ? provableTables(ctx, opts.selection, stored.plan, asBackedUp) : [];
  const decided = await approvedPlan(provable.length > 0 ? ctx.mappings.map((m) => m.table) : []);
  if ('changed' in decided) {
    // nothing live was changed yet: keep the new plan (scratch tables only) for the next approval
    await c.query('COMMIT');
    return { kind: 'plan-changed', preview: decided.changed };
  }
  const { plan, reused } = decided;
  // (not reused: a table scanned first had changed, and the plan was computed again from all)
  const proving = reused ? provable : [];
  // the tables the proof does not cover, scanned over a connection of their own reading this
  // snapshot while this one writes: awaited before commit, like the proof
  const othersUnchanged =
    proving.length > 0 ? inSnapshot(opts, snapshot, (s) => tenantRowsUnchanged(s, ctx, opts.tenantId, stored!.live_rows, stored!.read_at, proving.map((m) => m.table))) : undefined;
  othersUnchanged?.catch(() => undefined); // awaited below, or left to end by itself after a rollback
  let done: AppliedWork;
  let proven: ApplyDelta['proven'];
  try {
    done = await applyPlan({ c, ctx, opts, replicaMode, vacuums }, plan, reused);
    if (proving.length > 0) proven = await proveAsBackedUp(c, ctx, proving, plan, done.removed, (await safety.taken())?.manifest);
    if (othersUnchanged && !(await othersUnchanged)) return 'not-proven';
  } catch (err) {
    if (proving.length > 0 && mayBeStale(err)) return 'not-proven';
    throw err;
  }
  if (proving.length > 0 && !proven) return 'not-proven';
  const taken = await safety.taken();
  const vacuumed = await vacuums.finished();
  const delta: ApplyDelta = { xid: done.xid, readAt, removed: done.removed, ...(proven ? { proven: { ...unchangedAsBackedUp(ctx, opts.selection, plan, proving), ...proven } } : {}) };
  const erasures = plan.erasures?.entries.map((e) => e.erasureId);
  const result: ApplyResult = {
    applied: done.applied,
    sequencesMoved: done.sequencesMoved,
    replicaMode,
    delta,
    ...(taken ? { safetyBackup: taken.ref } : {}),
    ...(vacuumed.length ? { vacuumed } : {}),
    ...(erasures ? { erasures } : {}),
  };
  await c.query(`CREATE TABLE ${appliedMarkerTable(ctx)} (digest text PRIMARY KEY, result jsonb NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`);
  await c.query(`INSERT INTO ${appliedMarkerTable(ctx)} (digest, result) VALUES ($1, $2)`, [opts.approvedDigest, JSON.stringify(result)]);
  await c.query('COMMIT');
  return { kind: 'applied', result };
}

/** Runs `fn` in a read-only transaction of a connection of its own that reads the exported snapshot. */
async function inSnapshot<T>(opts: Pick<ApplyOptions, 'url' | 'signal'>, snapshot: string, fn: (c: Client) => Promise<T>): Promise<T> {
  const c = await connect(opts.url, 'tenantsafe-apply-check');
  const stopCancelling = cancelOnAbort(opts.url, () => [c], opts.signal);
  try {
    await c.query(`BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY; SET TRANSACTION SNAPSHOT '${snapshot}'`);
    const result = await fn(c);
    await c.query('COMMIT');
    return result;
  } finally {
    stopCancelling();
    await c.end().catch(() => undefined);
  }
}

/** What applyPlan works with: the apply's transaction and its settings. */
interface ApplyWork {
  c: Client;
  ctx: RestoreContext;
  opts: ApplyOptions;
  replicaMode: boolean;
  vacuums: DeadRowVacuums;
}

/** What applyPlan did: rows changed per table, the rows it removed (rowsToRemove), its transaction, the sequences moved. */
interface AppliedWork {
  applied: Record<string, TableChanges>;
  removed: ApplyDelta['removed'];
  xid: string;
  sequencesMoved: string[];
}

/**
 * The approved plan's writes, in the apply's transaction: deletes child → parent, updates,
 * inserts parent → child, then the foreign-key checks, the proof that no other tenant's row was
 * touched, and the sequences. `reused`: the plan's diff tables are the committed ones.
 */
async function applyPlan({ c, ctx, opts, replicaMode, vacuums }: ApplyWork, plan: RestorePreview, reused: boolean): Promise<AppliedWork> {
  const changed = ctx.mappings.filter((m) => isSelected(opts.selection, m.table) && m.live && hasChanges(plan.tables[m.table]));
  const othersBefore = opts.verifyOtherTenants && !replicaMode ? await otherTenantsRowCounts(c, ctx, changed, opts.tenantId) : undefined;
  const applied: Record<string, TableChanges> = {};
  for (const m of changed) applied[m.table] = { insert: 0, update: 0, delete: 0 };
  // The plan was computed, or found to hold, in this transaction's snapshot; a write by another
  // session since makes the statement that meets it fail (serialization failure, unique
  // violation), which is retried, and the retry's plan sees the write. So a count that differs
  // comes from something that acts the same on every attempt: not retried. (A plan whose check
  // waits for the proof: the count may differ because the tenant changed, see mayBeStale.)
  const expect = (m: TableMapping, kind: keyof TableChanges, got: number) => {
    applied[m.table][kind] = got;
    const planned = plan.tables[m.table][kind];
    if (got !== planned) {
      throw new TenantsafeError(
        ErrorType.RestoreBlocked,
        `The apply's ${kind} on ${m.table} changed ${got} rows where the approved plan said ${planned}; rolled back, nothing was changed.`,
        `Look for triggers or rules on ${m.table} that skip or add rows (a trigger enabled ALWAYS or REPLICA fires during a restore), or a row-level security policy; then start the restore again.`,
      );
    }
  };

  const removed = await rowsToRemove(c, ctx, changed, plan, opts.tenantId);
  for (const m of [...changed].reverse()) {
    if (plan.tables[m.table].delete === 0) continue;
    if (!m.key) {
      const r = await without(c, 'enable_mergejoin', () => c.query(`DELETE FROM ${liveTable(m)} l USING ${multisetSurplus(ctx, m, opts.tenantId)} v WHERE l.tableoid = v.tableoid AND l.ctid = v.ctid`));
      expect(m, 'delete', r.rowCount ?? 0);
    } else {
      const r = await probingKeys(c, plan.tables[m.table].delete, m.manifest.rows, () => c.query(`DELETE FROM ${liveTable(m)} l USING ${keySet(ctx, m, 'delete')} d WHERE ${joinOn('l', 'd', m.key!)}`));
      expect(m, 'delete', r.rowCount ?? 0);
    }
  }
  for (const m of changed) {
    if (!m.key || plan.tables[m.table].update === 0) continue;
    const set = m.columns.filter((col) => !m.key!.includes(col));
    const r = await probingKeys(c, plan.tables[m.table].update, m.manifest.rows, () =>
      c.query(
        `UPDATE ${liveTable(m)} l SET (${set.map(quoteIdent).join(', ')}) = ROW(${columnList('u', set)})
           FROM ${changedRows(ctx, m, 'update')} u WHERE ${joinOn('l', 'u', m.key!)}`,
      ),
    );
    expect(m, 'update', r.rowCount ?? 0);
  }
  const loadedWhole = new Set<string>();
  for (const m of changed) {
    const inserts = plan.tables[m.table].insert;
    if (inserts === 0) continue;
    const target = `${qualified(m.live!.schema, m.live!.name)} (${m.columns.map(quoteIdent).join(', ')})`;
    const rows = `SELECT * FROM ${m.key ? changedRows(ctx, m, 'insert') : multisetMissing(ctx, m)} x`;
    // every backed-up row goes in (the tenant was wiped): the backup object is the insert set,
    // loaded as a raw COPY FROM would, sha256-checked again (a mismatch rolls back)
    const wholeObject = loadsWhole(ctx, m, inserts);
    if (wholeObject) await vacuums.before(m.table);
    const inserted = wholeObject
      ? await copyBackupObject(opts.source, m, [], c.query(copyFrom(`COPY ${target} FROM STDIN`)))
      : reused
        ? await copyInto(opts.url, c, rows, target)
        : ((await c.query(`INSERT INTO ${target} OVERRIDING SYSTEM VALUE ${rows}`)).rowCount ?? 0);
    expect(m, 'insert', inserted);
    if (wholeObject) loadedWhole.add(m.table);
  }

  const { xid } = (await c.query<{ xid: string }>('SELECT pg_current_xact_id()::xid::text AS xid')).rows[0];
  if (replicaMode) await checkForeignKeys(c, ctx, changed, plan, loadedWhole, opts.tenantId, xid);
  if (opts.verifyOtherTenants) await assertOtherTenantsUntouched(c, ctx, changed, opts.tenantId, xid, loadedWhole, othersBefore);
  const sequencesMoved = await moveSequences(c, changed.filter((m) => applied[m.table].insert > 0));
  return { applied, removed, xid, sequencesMoved };
}

/**
 * The tables the apply may prove equal to the backup after its writes (proveAsBackedUp), instead
 * of scanning them before for a write since the preview: in an exact replace without erasures,
 * a selected table with a key whose columns are the backup's, that the safety backup reads (not
 * one it copies from the backup's objects: those are scanned), and that is not loaded whole.
 */
function provableTables(ctx: RestoreContext, selection: RestoreSelection, plan: RestorePreview, asBackedUp: string[]): TableMapping[] {
  if (!isExactReplace(selection) || hasErasures(ctx) || plan.erasures) return [];
  return ctx.mappings.filter(
    (m) => m.live && m.key && isSelected(selection, m.table) && sameColumnsAsBackup(m) && !asBackedUp.includes(m.table) && plan.tables[m.table] && !loadsWhole(ctx, m, plan.tables[m.table].insert),
  );
}

/**
 * Proves, after the plan's writes and before commit, that each table holds the backup's rows: the
 * tenant's rows as this transaction found them (the safety backup, read in its snapshot), less the
 * rows it removed, plus the rows it wrote (read back by their keys), come to the manifest's row
 * count and checksum. A write to the tenant since the preview that the plan does not undo shows
 * as a difference (a row removed that was not the tenant's, one the plan does not touch, one
 * more or less): undefined, and the apply rolls back and scans first in a new transaction.
 */
async function proveAsBackedUp(
  c: ClientBase,
  ctx: RestoreContext,
  tables: TableMapping[],
  plan: RestorePreview,
  removed: ApplyDelta['removed'],
  safety: TenantManifest | undefined,
): Promise<ApplyDelta['proven']> {
  if (!safety) return undefined;
  const proven: NonNullable<ApplyDelta['proven']> = {};
  for (const m of tables) {
    const before = safetyRowsOf(safety, m);
    if (!before) return undefined;
    const t = plan.tables[m.table];
    const writes = t.insert + t.update;
    const written =
      writes === 0
        ? noRows
        : await probingKeys(c, writes, m.manifest.rows, () =>
            rowsDigest(c, `SELECT ${columnList('l', m.manifest.copyColumns)} FROM ${liveTable(m)} l JOIN ${keySet(ctx, m, ['insert', 'update'])} k ON ${joinOn('l', 'k', m.key!)}`),
          );
    const now = adjustRows(before, removed[m.table] ?? noRows, written);
    if (now.rows !== m.manifest.rows || now.checksum !== m.manifest.rowChecksum) return undefined;
    proven[m.table] = now;
  }
  return proven;
}

/**
 * Beside the proven tables, those scanned and found unchanged since the preview, where it found
 * the tenant's rows to be the backup's (no change planned): they hold the backup's rows too.
 */
function unchangedAsBackedUp(ctx: RestoreContext, selection: RestoreSelection, plan: RestorePreview, provable: TableMapping[]): NonNullable<ApplyDelta['proven']> {
  const out: NonNullable<ApplyDelta['proven']> = {};
  for (const m of ctx.mappings) {
    const t = plan.tables[m.table];
    if (!m.live || !t || provable.includes(m) || hasChanges(t) || !isSelected(selection, m.table) || !sameColumnsAsBackup(m)) continue;
    out[m.table] = { rows: m.manifest.rows, checksum: m.manifest.rowChecksum };
  }
  return out;
}

/**
 * A step of an apply whose check waits for the proof that failed in a way a write to the tenant
 * since the preview explains (a count that differs, a key taken, a reference gone): scanned first,
 * as usual, it either finds the plan changed or fails the same way again.
 */
function mayBeStale(err: unknown): boolean {
  if (err instanceof TenantsafeError) return err.type === ErrorType.RestoreBlocked;
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' && code.startsWith('23');
}

/** Every backed-up row of the table goes in, as the backup has it: the apply loads its object (not where erasures changed the staged rows). */
const loadsWhole = (ctx: RestoreContext, m: TableMapping, inserts: number) => inserts === m.manifest.rows && sameColumnsAsBackup(m) && !hasErasures(ctx);

/**
 * Vacuums the tables the approved plan loads whole while they still hold the tenant's deleted
 * rows as dead tuples, as right after a wipe that autovacuum has not reached yet: COPY would
 * check every restored key against its dead predecessor in each unique index, a heap visit per
 * row, which costs more than the vacuum (bench/README.md). Only where
 * autovacuum would soon do the same (dead tuples at least a fifth of the table and half the rows
 * to load); SKIP_LOCKED: not while it does. VACUUM cannot run in a transaction: on a connection
 * of its own, table after table in the order the apply loads them, while the apply works (it
 * waits for a table's vacuum only before loading it). TRUNCATE false: the apply's transaction
 * holds a lock on every table it read, which the truncation that ends a vacuum would wait on for
 * up to 5 s, to give back pages the apply is about to fill.
 */
class DeadRowVacuums {
  private constructor(
    private readonly conn: Client | undefined,
    /** per table, settled once it is vacuumed (and the tables before it) */
    private readonly done: Map<string, Promise<unknown>>,
  ) {}

  /** Picks the tables (before the apply's transaction: the stored plan, the statistics) and starts vacuuming them. */
  static async start(c: ClientBase, url: string, ctx: RestoreContext): Promise<DeadRowVacuums> {
    const plan = (await storedPlan(c, ctx))?.plan;
    const tables: { key: string; name: string }[] = [];
    for (const m of ctx.mappings.filter((x) => x.live && loadsWhole(ctx, x, plan?.tables[x.table]?.insert ?? -1))) {
      const name = qualified(m.live!.schema, m.live!.name);
      const r = await c.query<{ dead: string; live: string }>(
        `SELECT coalesce(sum(s.n_dead_tup), 0) AS dead, coalesce(sum(s.n_live_tup), 0) AS live FROM pg_stat_user_tables s
          WHERE s.relid = $1::regclass OR s.relid IN (SELECT relid FROM pg_partition_tree($1::regclass))`,
        [name],
      );
      const dead = Number(r.rows[0].dead);
      if (dead >= m.manifest.rows / 2 && dead >= (dead + Number(r.rows[0].live)) / 5) tables.push({ key: m.table, name });
    }
    if (tables.length === 0) return new DeadRowVacuums(undefined, new Map());
    const conn = await connect(url, 'tenantsafe-apply-vacuum');
    let previous: Promise<unknown> = Promise.resolve();
    const done = new Map<string, Promise<unknown>>();
    for (const { key, name } of tables) {
      previous = previous.then(() => conn.query(`VACUUM (SKIP_LOCKED, TRUNCATE false) ${name}`));
      previous.catch(() => undefined); // awaited by the apply, or settled on the way out
      done.set(key, previous);
    }
    return new DeadRowVacuums(conn, done);
  }

  /** Waits until the table is vacuumed, if it is to be. */
  async before(table: string): Promise<void> {
    await this.done.get(table);
  }

  /** The tables vacuumed, once all are. */
  async finished(): Promise<string[]> {
    await Promise.all(this.done.values());
    return [...this.done.keys()];
  }

  abort(): void {
    this.conn?.end().catch(() => undefined);
  }

  async close(): Promise<void> {
    await Promise.allSettled(this.done.values());
    await this.conn?.end().catch(() => undefined);
  }
}

/**
 * Inserts rows with COPY: another session reads them from the (committed) scratch tables as COPY
 * text, this transaction loads them with COPY FROM, Postgres' batched insert path, faster than
 * INSERT ... SELECT. COPY takes identity values as given, like OVERRIDING SYSTEM VALUE.
 */
async function copyInto(url: string, into: ClientBase, rows: string, target: string): Promise<number> {
  const reader = await connect(url, 'tenantsafe-apply-read');
  try {
    const sink = into.query(copyFrom(`COPY ${target} FROM STDIN`));
    await pipeline(reader.query(copyOut(`COPY (${rows}) TO STDOUT`)), sink);
    return sink.rowCount;
  } finally {
    await reader.end();
  }
}

type JoinMethod = 'enable_hashjoin' | 'enable_mergejoin' | 'enable_nestloop';

/**
 * Runs a statement with join methods off. Merge joins, for a delete from a table without a
 * key: it matches the few row texts of the diff against every row of the table, and the planner
 * would rather sort the whole table by row text for that than hash the few. Nested loops, for a
 * check on a table just loaded whole: vacuumed before, it keeps the statistics of the emptied
 * table (a few rows), and the planner would probe it row by row.
 */
async function without<T>(c: ClientBase, joins: JoinMethod | JoinMethod[], statement: () => Promise<T>): Promise<T> {
  const settings = typeof joins === 'string' ? [joins] : joins;
  await c.query(settings.map((j) => `SET LOCAL ${j} = off;`).join(' '));
  const result = await statement();
  await c.query(settings.map((j) => `SET LOCAL ${j} = on;`).join(' '));
  return result;
}

/** How a foreign-key check's rows written meet the tables it joins: how many, and whether by the child's key too. */
type KeyProbes = { count: number; alsoChild: boolean };

/**
 * Runs a statement that joins `keys` keys (of the diff, or of rows written) to a table's live rows:
 * by probing the key's index once per key where they are few against the tenant's rows in it (a
 * tenth or less of `tableRows`, the rows backed up; the table holds at least about that many). The
 * planner would rather hash every row of the table, cheaper on paper than an index probe per key;
 * the restored tenant's pages are cached, and the probes were several times faster (a 1% change of
 * a 300k-row table: tens of ms against a few hundred).
 */
function probingKeys<T>(c: ClientBase, keys: number, tableRows: number, statement: () => Promise<T>): Promise<T> {
  return keys * 10 <= tableRows ? without(c, ['enable_hashjoin', 'enable_mergejoin'], statement) : statement();
}

function hasChanges(t: TableChanges | undefined): boolean {
  return !!t && t.insert + t.update + t.delete > 0;
}

/**
 * The row count and checksum of the rows the apply is about to delete, or to replace by
 * updating them, per table whose columns are the backup's (the others are verified in full).
 */
async function rowsToRemove(c: ClientBase, ctx: RestoreContext, tables: TableMapping[], plan: RestorePreview, tenantId: string): Promise<ApplyDelta['removed']> {
  const removed: ApplyDelta['removed'] = {};
  for (const m of tables.filter((x) => sameColumnsAsBackup(x))) {
    const { delete: deletes, update: updates } = plan.tables[m.table];
    const columns = columnList('l', m.manifest.copyColumns);
    const sets: { keys: number; sql: string }[] = [];
    if (!m.key && deletes > 0) sets.push({ keys: deletes, sql: `SELECT ${columns} FROM ${liveTable(m)} l, ${multisetSurplus(ctx, m, tenantId)} v WHERE l.tableoid = v.tableoid AND l.ctid = v.ctid` });
    for (const [kind, n] of [['delete', deletes], ['update', updates]] as const) {
      if (m.key && n > 0) sets.push({ keys: n, sql: `SELECT ${columns} FROM ${liveTable(m)} l JOIN ${keySet(ctx, m, kind)} k ON ${joinOn('l', 'k', m.key)}` });
    }
    let total = noRows;
    for (const { keys, sql } of sets) {
      // the keyless delete's row match, like the delete itself, without merge joins
      const d = m.key ? await probingKeys(c, keys, m.manifest.rows, () => rowsDigest(c, sql)) : await without(c, 'enable_mergejoin', () => rowsDigest(c, sql));
      total = adjustRows(total, noRows, d);
    }
    removed[m.table] = total;
  }
  return removed;
}

/**
 * The result recorded by the apply that committed (its worker may have died right after): of
 * this digest, or without one, the last (a restore commits one apply).
 */
export async function previouslyApplied(c: ClientBase, ctx: RestoreContext, digest?: string): Promise<ApplyResult | undefined> {
  const exists = await c.query(`SELECT to_regclass($1) AS t`, [appliedMarkerTable(ctx)]);
  if (!exists.rows[0].t) return undefined;
  const r = await c.query(`SELECT result FROM ${appliedMarkerTable(ctx)} WHERE digest = $1 OR $1 IS NULL ORDER BY applied_at DESC LIMIT 1`, [digest ?? null]);
  return r.rows[0]?.result;
}

async function canUseReplicaMode(c: ClientBase): Promise<boolean> {
  const r = await c.query(`SELECT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) OR has_parameter_privilege('session_replication_role', 'SET') AS ok`);
  return r.rows[0].ok === true;
}

/** Rows NOT of this tenant, per table: a delete cascading into them would lower the count. */
async function otherTenantsRowCounts(c: ClientBase, ctx: RestoreContext, tables: TableMapping[], tenantId: string): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const m of tables) {
    const r = await c.query(`SELECT count(*)::int AS n FROM ${liveTable(m)} l WHERE ${notTenantFilter(ctx.plan, m.live!, 'l', tenantId)}`);
    out.set(m.table, r.rows[0].n);
  }
  return out;
}

/**
 * Other tenants' rows are untouched when every row this transaction wrote (its xmin is ours)
 * is the tenant's, and no other tenant's row went missing. Deletes and updates only ever join
 * on keys taken from the tenant's rows, and their row counts were checked against the plan;
 * without replica mode a cascading delete could still reach further, so counts are compared too.
 */
async function assertOtherTenantsUntouched(
  c: ClientBase,
  ctx: RestoreContext,
  tables: TableMapping[],
  tenantId: string,
  /** this transaction's */
  ours: string,
  loadedWhole: Set<string>,
  countsBefore?: Map<string, number>,
): Promise<void> {
  for (const m of tables) {
    const proof = () =>
      c.query(`SELECT count(*)::int AS n FROM ${liveTable(m)} l WHERE l.xmin = $1::xid AND ${notTenantFilter(ctx.plan, m.live!, 'l', tenantId)}`, [ours]);
    const r = loadedWhole.has(m.table) ? await without(c, 'enable_nestloop', proof) : await proof();
    if (r.rows[0].n > 0) {
      // the preview checks what could make a row another tenant's: this is a trigger or rule that rewrote rows, which a retry would repeat
      throw new TenantsafeError(
        ErrorType.RestoreBlocked,
        `The apply wrote ${r.rows[0].n} rows of ${m.table} that are not the tenant's; rolled back, nothing was changed.`,
        `Look for triggers or rules on ${m.table} that rewrite inserted or updated rows (a trigger enabled ALWAYS or REPLICA fires during a restore).`,
      );
    }
  }
  if (countsBefore) {
    const after = await otherTenantsRowCounts(c, ctx, tables, tenantId);
    for (const [table, before] of countsBefore) {
      if (after.get(table) !== before) {
        // as deterministic as the proof above: a cascade or trigger the plan did not foresee
        throw new TenantsafeError(
          ErrorType.RestoreBlocked,
          `Other tenants' rows of ${table} went from ${before} to ${after.get(table)} during the apply; rolled back, nothing was changed.`,
          'A delete reached rows outside the restore (a foreign key with ON DELETE CASCADE or SET NULL, or a trigger): start the restore again; its preview lists the rows that reference what it deletes.',
        );
      }
    }
  }
}

/**
 * The foreign-key checks Postgres skipped in replica mode, once per key, set-based: rows we
 * inserted or updated must find their parents; rows we deleted must have no children left.
 * Postgres' own check would also lock each parent row found (FOR KEY SHARE) until commit: the
 * transaction's snapshot still shows a parent that another session deletes meanwhile. So the
 * parents of the rows written are locked too, those this apply did not write itself: a delete in
 * progress makes the apply wait (up to lock_timeout), one committed since fails it (serialization
 * failure); either way it rolls back and is retried, never leaving an orphan.
 */
async function checkForeignKeys(c: ClientBase, ctx: RestoreContext, changed: TableMapping[], plan: RestorePreview, loadedWhole: Set<string>, tenantId: string, ours: string): Promise<void> {
  const changedKeys = new Set(changed.map((m) => m.table));
  for (const [childKey, child] of ctx.tables) {
    for (const fk of child.foreignKeys) {
      const childMapping = changed.find((m) => m.table === childKey);
      const parentMapping = changed.find((m) => m.table === fk.refTable);
      if (!changedKeys.has(childKey) && !changedKeys.has(fk.refTable)) continue;
      const parent = ctx.tables.get(fk.refTable);
      if (!parent) continue;
      const parentTable = qualified(parent.schema, parent.name);
      const blocked = () =>
        new TenantsafeError(
          ErrorType.RestoreBlocked,
          `The restore would break foreign key ${fk.name} (${childKey} → ${fk.refTable}); nothing was changed.`,
          'A row outside the restore references rows it changes; preview again and resolve the blockers.',
        );
      /** `probes`: the query starts from `count` rows written, joined by key to the parent's rows (and the child's) */
      const run = (sql: string, probes?: KeyProbes) => {
        const query = () => c.query(sql);
        if (loadedWhole.has(childKey) || loadedWhole.has(fk.refTable)) return without(c, 'enable_nestloop', query);
        if (!probes) return query();
        const tableRows = Math.min(parentMapping?.manifest.rows ?? 0, probes.alsoChild ? childMapping!.manifest.rows : Infinity);
        return probingKeys(c, probes.count, tableRows, query);
      };
      const notNull = allNotNull('x', fk.columns);
      const noParent = (also = '') => `NOT EXISTS (SELECT 1 FROM ${parentTable} p WHERE ${joinOn('p', 'x', fk.refColumns, fk.columns)}${also})`;
      const oursXid = `'${BigInt(ours)}'::xid`;
      const childFrom = `${childMapping ? liveTable(childMapping) : `ONLY ${qualified(child.schema, child.name)}`} x`;
      const ownership = childMapping?.live!.ownership;
      const written = childMapping ? plan.tables[childKey].insert + plan.tables[childKey].update : 0;

      // the rows written (FROM items aliased x), found and their parents locked
      const rowsWritten: { sql: string; probes?: KeyProbes }[] = [];
      if (written > 0 && ownership && ownership.kind !== 'parent' && fk.columns.length === 1 && fk.columns[0] === ownership.column) {
        // every row written holds the tenant id in it (the tenant's rows, as backed up): one parent to find
        const r = await run(`SELECT 1 FROM ${parentTable} p WHERE p.${quoteIdent(fk.refColumns[0])} = ${quoteLiteral(tenantId)} FOR KEY SHARE OF p`);
        if ((r.rowCount ?? 0) === 0) throw blocked();
      } else if (childMapping?.key) {
        // as the diff table keeps their backed-up values (a table loaded whole: its key and join
        // columns at least), not a join of their keys with the whole child table
        const valuesKept = fk.columns.every((col) => childMapping.columns.includes(col));
        for (const kind of ['insert', 'update'] as const) {
          if (plan.tables[childKey][kind] === 0) continue;
          const count = plan.tables[childKey][kind];
          rowsWritten.push(
            valuesKept
              ? { sql: `${changedRows(ctx, childMapping, kind, fk.columns)} x`, probes: { count, alsoChild: false } }
              : { sql: `${childFrom} JOIN ${keySet(ctx, childMapping, kind)} k ON ${joinOn('k', 'x', childMapping.key)}`, probes: { count, alsoChild: true } },
          );
        }
      } else if (childMapping && written > 0) {
        rowsWritten.push({ sql: `(SELECT * FROM ${childFrom} WHERE x.xmin = ${oursXid}) x` });
      }
      for (const { sql: rows, probes } of rowsWritten) {
        // often every parent is one this apply wrote (a parent restored whole): one anti-join tells
        if (((await run(`SELECT 1 FROM ${rows} WHERE ${notNull} AND ${noParent(` AND p.xmin = ${oursXid}`)} LIMIT 1`, probes)).rowCount ?? 0) === 0) continue;
        if (((await run(`SELECT 1 FROM ${rows} WHERE ${notNull} AND ${noParent()} LIMIT 1`, probes)).rowCount ?? 0) > 0) throw blocked();
        await run(`SELECT 1 FROM ${parentTable} p WHERE (${columnList('p', fk.refColumns)}) IN (SELECT ${columnList('x', fk.columns)} FROM ${rows} WHERE ${notNull}) AND p.xmin <> ${oursXid} FOR KEY SHARE OF p`, probes);
      }

      if (parentMapping?.key && plan.tables[fk.refTable].delete > 0) {
        // the deleted keys are gone from the parent; its referencing column set is the deleted key set when the FK targets the key
        const deleted = keySet(ctx, parentMapping, 'delete');
        const targetsKey = JSON.stringify(fk.refColumns) === JSON.stringify(parentMapping.key);
        const children = targetsKey ? `${childFrom} JOIN ${deleted} d ON ${joinOn('d', 'x', fk.refColumns, fk.columns)}` : childFrom;
        const r = await run(`SELECT 1 FROM ${children} WHERE ${notNull} AND ${noParent()} LIMIT 1`);
        if ((r.rowCount ?? 0) > 0) throw blocked();
      }
    }
  }
}

/** setval past the highest restored id, for serial and identity columns; never backwards. */
async function moveSequences(c: ClientBase, tables: TableMapping[]): Promise<string[]> {
  const moved: string[] = [];
  for (const m of tables) {
    for (const col of m.live!.columns.filter((x) => x.sequence && m.columns.includes(x.name))) {
      const r = await c.query(
        `SELECT setval($1, x.m) AS v FROM (SELECT max(${quoteIdent(col.name)}) AS m FROM ${liveTable(m)}) x, ${col.sequence} s
          WHERE x.m IS NOT NULL AND x.m > s.last_value`,
        [col.sequence],
      );
      if ((r.rowCount ?? 0) > 0) moved.push(`${col.sequence} → ${r.rows[0].v}`);
    }
  }
  return moved;
}
