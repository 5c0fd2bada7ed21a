// The restore plan: every table's diff, the blockers found across tables, and the digest an
// approval is bound to; stored in the scratch schema with what tells the apply whether it still
// holds. And the preview's staging, which computes it: lanes that stage and diff table by table,
// all reading the live tables as of one snapshot.
import type { ClientBase } from 'pg';
import type { BackupRecord } from '../catalog';
import { canonicalJson, sha256Hex } from '../checksum';
import type { Engine } from '../engine';
import { connect, withClient } from '../pg';
import { findReferenceBlockers } from './blockers';
import { erasureBlockers, erasuresPreview, erasuresWarning, hasErasures, reapplyErasures } from './erasures';
import { diffTable, sampleSize, unchangedTableDiff, type TableDiff } from './diff';
import type { RestoreContext } from './mapping';
import { one, planStateTable } from './sql';
import { backupSource, stageBackup, stageInFull, type BackupSource, type StageOptions } from './stage';
import { comparableBackupXmin, stagingOf, tenantRowVersions, type Staging } from './stagingDecision';
import { changeKinds, type Blocker, type RestoreJob, type RestorePreview, type RestoreSelection, type TableChanges, type TablePreview } from './types';

export interface PlanArgs {
  tenantId: string;
  backupId: string;
  snapshotAt: string;
  selection: RestoreSelection;
}

/** What the caller learns of the staging as it goes, and how it stops it. */
export type StagingHooks = { onProgress?: (p: { tablesDone: number; tablesTotal: number; rows: number }) => void; signal?: AbortSignal };

/** Stages the backup into the scratch schema and computes (and stores) the plan. */
export function stageAndPlan(engine: Engine, ctx: RestoreContext, backup: BackupRecord, job: RestoreJob, hooks: StagingHooks): Promise<RestorePreview> {
  const args: PlanArgs = { tenantId: job.tenantId, backupId: job.backupId, snapshotAt: backup.snapshotAt, selection: job.selection };
  const stageOptions = { url: engine.config.database.url, ...backupSource(engine.store, backup.prefix, ctx.manifest), parallelism: engine.config.backup.parallelism, ...hooks };
  const whole = job.selection.missingRefs === 'skip' || hasErasures(ctx);
  return whole ? stageThenPlan(engine, ctx, args, stageOptions) : stageAndDiffInLanes(engine, ctx, args, stageOptions);
}

/**
 * Stages everything, then diffs table by table in one transaction: with --missing-refs skip a
 * child's diff needs its parents' skipped rows; with erasures to apply again, every table's staged
 * rows without the erased ones and those depending on them.
 */
async function stageThenPlan(engine: Engine, ctx: RestoreContext, args: PlanArgs, stageOptions: StageOptions): Promise<RestorePreview> {
  await stageBackup(ctx, stageOptions);
  return withClient(engine.db, engine.config.database.url, async (c) => {
    await c.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
    try {
      await reapplyErasures(c, ctx);
      return await computePlan(c, ctx, args);
    } finally {
      await c.query('COMMIT');
    }
  });
}

/**
 * Each lane diffs a table as soon as it has staged it, all lanes reading the live tables as of
 * one exported snapshot; the checks across tables run after, on the diffs the lanes committed.
 */
async function stageAndDiffInLanes(engine: Engine, ctx: RestoreContext, args: PlanArgs, stageOptions: StageOptions): Promise<RestorePreview> {
  const diffs = new Map<string, TableDiff>();
  const staging = new Map<string, Staging>();
  const exporter = await connect(engine.config.database.url, 'tenantsafe-preview');
  let readAt: string;
  try {
    await exporter.query('BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY');
    const { snapshot } = (await exporter.query<{ snapshot: string }>('SELECT pg_export_snapshot() AS snapshot')).rows[0];
    readAt = await snapshotXmin(exporter);
    const backupXmin = await comparableBackupXmin(exporter, ctx.manifest);
    await stageBackup(ctx, stageOptions, {
      snapshot,
      // asked first: how much each table needs (nothing where the tenant's rows are the very
      // ones backed up; keys where it has none, as after a wipe)
      unchanged: async (c, m) => {
        staging.set(m.table, await stagingOf(c, ctx, m, args, backupXmin));
        return staging.get(m.table) === 'nothing';
      },
      // a table the tenant has no row in: its keys are all the diff needs (a table without one: none;
      // where no check needs them either, the first few, the preview's sample)
      toStage: async (_c, m) => {
        const how = staging.get(m.table);
        if (how === 'first-keys') return { columns: m.joinColumns, firstRows: sampleSize };
        if (how !== 'keys') return undefined;
        return { columns: m.key ? m.joinColumns : [] };
      },
      work: async (c, m) => {
        const how = staging.get(m.table);
        diffs.set(m.table, how === 'nothing' ? unchangedTableDiff(m, args) : await diffTable(c, ctx, m, args, { keysOnly: how === 'keys' || how === 'first-keys', backupXmin }));
      },
    });
    await exporter.query('COMMIT');
  } finally {
    await exporter.end();
  }
  const asBackedUp = [...staging].filter(([, how]) => how === 'nothing').map(([table]) => table);
  return withClient(engine.db, engine.config.database.url, (c) => assemblePlan(c, ctx, args, diffs, readAt, asBackedUp));
}

/**
 * Computes the plan in one transaction (REPEATABLE READ in the apply), so every count sees the
 * same moment. The digest binds the exact rows: approvals are for this plan only.
 */
export async function computePlan(c: ClientBase, ctx: RestoreContext, args: PlanArgs): Promise<RestorePreview> {
  const diffs = new Map<string, TableDiff>();
  const backupXmin = await diffableBackupXmin(c, ctx);
  for (const m of ctx.mappings) diffs.set(m.table, await diffTable(c, ctx, m, args, { backupXmin }));
  return assemblePlan(c, ctx, args, diffs, await snapshotXmin(c));
}

/** The backup's snapshot xmin as a diff may use it (DiffOptions): where the staged rows are the backup's, not less the erased ones. */
export async function diffableBackupXmin(c: ClientBase, ctx: RestoreContext): Promise<string | undefined> {
  return hasErasures(ctx) ? undefined : comparableBackupXmin(c, ctx.manifest);
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
async function assemblePlan(c: ClientBase, ctx: RestoreContext, args: PlanArgs, diffs: Map<string, TableDiff>, readAt: string, asBackedUp: string[] = []): Promise<RestorePreview> {
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
  const erasures = await erasuresPreview(c, ctx);
  if (erasures) warnings.push(erasuresWarning(erasures));
  blockers.push(...erasureBlockers(ctx));
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
    ...(ctx.manifest.pointInTime ? { pointInTime: ctx.manifest.pointInTime } : {}),
    ...(erasures ? { erasures } : {}),
  };
  const result = { ...preview, digest: sha256Hex(canonicalJson(preview)) };
  const liveRows = Object.fromEntries(ctx.mappings.filter((m) => m.live).map((m) => [m.table, diffs.get(m.table)!.liveRows]));
  await c.query(`DROP TABLE IF EXISTS ${planStateTable(ctx)}`);
  await c.query(
    `CREATE UNLOGGED TABLE ${planStateTable(ctx)} AS SELECT $1::jsonb AS plan, $2::jsonb AS live_rows, $3::xid8 AS read_at, $4::text AS schema, $5::jsonb AS as_backed_up`,
    [JSON.stringify(result), JSON.stringify(liveRows), readAt, ctx.plan.fingerprint, JSON.stringify(asBackedUp)],
  );
  return result;
}

/**
 * Whether the tenant's rows are the very row versions the plan was computed against. Any
 * insert or update writes a version whose xmin is a transaction the plan's snapshot did not see
 * (not older than its xmin, `readAt`); a delete alone lowers the count. So: same count and no
 * version that young means the same rows: in every table, so a row tied to the tenant by a parent
 * written since (moved in) shows in its parent's table. (A version can also look young without
 * being new, a frozen one from before a wraparound: then the plan is recomputed, merely slower.)
 * `skipped`: tables not looked at, the caller proving them otherwise (apply.ts).
 */
export async function tenantRowsUnchanged(c: ClientBase, ctx: RestoreContext, tenantId: string, liveRows: Record<string, number>, readAt: string, skipped: string[]): Promise<boolean> {
  for (const m of ctx.mappings.filter((x) => x.live && !skipped.includes(x.table))) {
    const now = await tenantRowVersions(c, ctx, m, tenantId, readAt);
    if (now.rows !== liveRows[m.table] || now.writtenSince) return false;
  }
  return true;
}

export interface StoredPlan {
  plan: RestorePreview;
  live_rows: Record<string, number>;
  read_at: string;
  schema: string;
  as_backed_up: string[];
}

/**
 * The plan the last preview (or apply) stored, with what tells whether it still holds; and the
 * tables the preview found to hold the very row versions the backup read (staged nothing), as
 * long as the plan holds (none in a plan stored before this was recorded).
 */
export async function storedPlan(c: ClientBase, ctx: RestoreContext): Promise<StoredPlan | undefined> {
  const exists = await one(c, `SELECT to_regclass('${planStateTable(ctx).replace(/'/g, "''")}') IS NOT NULL AS yes`);
  if (!exists.yes) return undefined;
  // no row: crash recovery emptied the unlogged table
  const state = await one<StoredPlan | undefined>(c, `SELECT plan, live_rows, read_at::text, schema, to_jsonb(s) -> 'as_backed_up' AS as_backed_up FROM ${planStateTable(ctx)} s`);
  return state && { ...state, as_backed_up: state.as_backed_up ?? [] };
}

/**
 * The plan as of now: the last one computed (`stored`, as storedPlan read it in this
 * transaction), when neither the tenant's rows nor the schema changed since (a scan of the
 * tenant's row versions, cheaper than a diff); else recomputed. `reused`: its diff tables are the
 * committed ones, readable from other sessions too. `unchecked`: tables whose rows are not
 * scanned here, the caller confirming them otherwise (the apply: its proof after the writes, and
 * its scan beside them, see apply.ts).
 */
export async function currentPlan(
  c: ClientBase,
  ctx: RestoreContext,
  args: PlanArgs & { source: BackupSource },
  stored: StoredPlan | undefined,
  unchecked: string[] = [],
): Promise<{ plan: RestorePreview; reused: boolean }> {
  if (stored) {
    const unchanged =
      stored.schema === ctx.plan.fingerprint &&
      canonicalJson(stored.plan.selection) === canonicalJson(args.selection) &&
      canonicalJson(stored.plan.erasures?.entries.map((e) => e.erasureId) ?? []) === canonicalJson(ctx.erasures?.map((e) => e.erasureId) ?? []) &&
      (await tenantRowsUnchanged(c, ctx, args.tenantId, stored.live_rows, stored.read_at, unchecked));
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
