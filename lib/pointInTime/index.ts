// Tenant point-in-time restore, without Temporal: what can be restored (the windows of each
// source), which source a target takes and why, and rebuilding the tenant at the target as a
// tenant backup (kind pointInTime) that the ordinary restore then previews and applies.
//   1. the change log: the newest tenant backup with an exact boundary before the target, plus
//      the logged changes after it (changeLogReplay.ts): fast, independent of the database's size;
//   2. a PITR clone: the whole database recovered to the target in a scratch cluster, the tenant
//      exported from it (pitrClone.ts): exact wherever full backups and WAL reach, slower.
// Else the target is outside every window: bad input, naming the windows.
import type { Engine } from '../engine';
import { ErrorType, TenantsafeError } from '../errors';
import { changeLogStream } from '../format/changeLog';
import { databaseIdentity } from '../databaseIdentity';
import { physicalWindow } from '../pitr/window';
import { recordTenantBackup } from '../tenantBackup';
import { formatMicros, parseMicros } from '../time';
import { parseLsn } from '../wal/names';
import type { PointInTimePlan } from '../restore/types';
import { ChangeLogCannot, rebuildFromChangeLog, type PointInTimeTarget } from './changeLogReplay';
import { rebuildFromPitrClone } from './pitrClone';

export interface SourceWindow {
  /** null: the source cannot restore this tenant at all */
  earliest: string | null;
  latest: string | null;
  gaps: { from: string | null; to: string; reason: string }[];
}

export interface RestoreWindows {
  tenantId: string;
  changeLog: SourceWindow;
  pitrClone: SourceWindow;
  /** restoring a whole tenant backup (--backup, --backup-before) */
  backups: SourceWindow;
}

const none = (): SourceWindow => ({ earliest: null, latest: null, gaps: [] });

/**
 * The earliest target a base backup serves: its snapshot time (read after the snapshot, so every
 * commit it holds is earlier). Backups written before snapshot times kept microseconds hold them
 * cut to the millisecond (they end in 000): the snapshot may be up to 999 µs later than that.
 */
function servesFrom(snapshotAt: string): bigint {
  const us = parseMicros(snapshotAt);
  return us % 1000n === 0n ? us + 999n : us;
}


interface ChangeLogView {
  stream: string;
  /** tenant backups with an exact boundary taken since the log started, oldest first */
  bases: { backupId: string; snapshotAt: string; boundary: string }[];
  gaps: Awaited<ReturnType<Engine['catalog']['listChangeLogGaps']>>;
  /** how far the log reaches: a time and an LSN (every commit up to them is logged) */
  latest: { time: string; lsn: string } | null;
}

async function changeLogView(engine: Engine, tenantId: string): Promise<ChangeLogView | undefined> {
  const origin = await databaseIdentity(engine);
  const stream = changeLogStream(origin);
  const started = await engine.catalog.getChangeLogStream(stream);
  if (!started) return undefined;
  const gaps = await engine.catalog.listChangeLogGaps(stream);
  const end = await engine.catalog.changeLogEnd(stream);
  const candidates = [
    ...(started.caughtUpAt && started.caughtUpLsn ? [{ time: started.caughtUpAt, lsn: started.caughtUpLsn }] : []),
    ...(end ? [{ time: end.time, lsn: end.lsn }] : []),
  ].sort((a, b) => (parseMicros(b.time) > parseMicros(a.time) ? 1 : -1));
  const bases = (await engine.catalog.changeLogBases(tenantId, origin)).filter((b) => parseLsn(b.boundary) >= parseLsn(started.startedLsn));
  return { stream, bases, gaps, latest: candidates[0] ?? null };
}

export async function restoreWindows(engine: Engine, tenantId: string): Promise<RestoreWindows> {
  const view = await changeLogView(engine, tenantId);
  const changeLog: SourceWindow = view?.bases.length ? changeLogWindow(view) : none();
  const physical = engine.config.fullBackup.provider === 'postgres' ? await physicalWindow(engine) : undefined;
  const pitrClone: SourceWindow = physical?.earliest ? { earliest: physical.earliest, latest: physical.latest, gaps: [] } : none();
  const tenantBackups = (await engine.catalog.listBackups({ tenantId })).filter((b) => b.kind === 'tenant');
  const backups: SourceWindow = tenantBackups.length ? { earliest: tenantBackups.at(-1)!.snapshotAt, latest: tenantBackups[0].snapshotAt, gaps: [] } : none();
  return { tenantId, changeLog, pitrClone, backups };
}

/**
 * Which source rebuilds the tenant at the target, and why: the change log when it covers the
 * stretch from a base backup to the target without a gap, else a PITR clone when full backups
 * and WAL reach the target, else TargetOutsideWindow naming every window.
 */
export async function planPointInTime(
  engine: Engine,
  tenantId: string,
  target: PointInTimeTarget,
  opts: { now?: Date; changeLogCannot?: string } = {},
): Promise<PointInTimePlan> {
  const wanted = describeTarget(target);
  if ('at' in target && parseMicros(target.at) > BigInt((opts.now ?? new Date()).getTime()) * 1000n) {
    throw new TenantsafeError(ErrorType.BadInput, `${target.at} is in the future.`, 'Pick a time in the past: `tenantsafe restore window --tenant <id>` shows what can be restored.');
  }
  const choice = opts.changeLogCannot ? { whyNot: opts.changeLogCannot } : changeLogChoice(await changeLogView(engine, tenantId), target, wanted);
  if ('plan' in choice) return choice.plan;
  const { whyNot } = choice;
  const windows = await restoreWindows(engine, tenantId);
  const clone = windows.pitrClone;
  const inClone =
    clone.earliest !== null && ('lsn' in target || (parseMicros(target.at) >= parseMicros(clone.earliest) && parseMicros(target.at) <= parseMicros(clone.latest ?? clone.earliest)));
  if (inClone) return { source: 'pitrClone', target, reason: `${whyNot}; full backups and the WAL archive reach ${wanted}: a PITR clone of the database recovers to it` };
  throw new TenantsafeError(
    ErrorType.TargetOutsideWindow,
    `Tenant "${tenantId}" cannot be restored to ${wanted}: ${whyNot}; the PITR clone's window is ${describe(clone)}; tenant backups ${describe(windows.backups)}.`,
    'Pick a target inside a window (`tenantsafe restore window --tenant <id>`), or restore a backup with --backup.',
  );
}

/**
 * The log restores from its oldest base to how far it reaches, except across a gap: after the
 * last gap it restores again only from a base taken after it.
 */
function changeLogWindow(view: ChangeLogView): SourceWindow {
  const lastGap = view.gaps.at(-1);
  const baseAfterLastGap = !lastGap || view.bases.some((b) => parseLsn(b.boundary) >= parseLsn(lastGap.toLsn));
  return {
    earliest: formatMicros(servesFrom(view.bases[0].snapshotAt)),
    latest: baseAfterLastGap ? (view.latest?.time ?? null) : (lastGap.fromTime ?? formatMicros(servesFrom(view.bases[0].snapshotAt))),
    gaps: view.gaps.map((g) => ({ from: g.fromTime, to: g.toTime, reason: g.reason })),
  };
}

/** The change log's plan for the target, or why it cannot take it. */
function changeLogChoice(view: ChangeLogView | undefined, target: PointInTimeTarget, wanted: string): { plan: PointInTimePlan } | { whyNot: string } {
  if (!view) return { whyNot: 'no change log runs for this database' };
  const base = [...view.bases].reverse().find((b) => ('at' in target ? servesFrom(b.snapshotAt) <= parseMicros(target.at) : parseLsn(b.boundary) <= parseLsn(target.lsn)));
  if (!base) return { whyNot: `the change log has no tenant backup of this tenant to start from before ${wanted}` };
  // commits after a gap's start and before its end were never logged
  const gap = view.gaps.find(
    (g) => parseLsn(g.toLsn) > parseLsn(base.boundary) && ('at' in target ? g.fromTime === null || parseMicros(g.fromTime) < parseMicros(target.at) : parseLsn(g.fromLsn) < parseLsn(target.lsn)),
  );
  if (gap) {
    return { whyNot: `the change log has a gap from ${gap.fromTime ?? gap.fromLsn} to ${gap.toTime} (${gap.reason}) between backup ${base.backupId} and ${wanted}` };
  }
  const reached = view.latest && ('at' in target ? parseMicros(view.latest.time) >= parseMicros(target.at) : parseLsn(view.latest.lsn) >= parseLsn(target.lsn));
  if (!reached) return { whyNot: `the change log reaches only ${view.latest?.time ?? 'nothing yet'}` };
  return {
    plan: { source: 'changeLog', target, baseBackupId: base.backupId, stream: view.stream, reason: `the change log covers ${base.snapshotAt} (backup ${base.backupId}) to ${view.latest!.time} without a gap` },
  };
}

/** A target as people read it: the time, or the LSN. */
export function describeTarget(target: PointInTimeTarget): string {
  return 'at' in target ? target.at : `LSN ${target.lsn}`;
}

function describe(w: SourceWindow): string {
  return w.earliest ? `${w.earliest} to ${w.latest}` : 'empty';
}

/**
 * Rebuilds the tenant at the planned point and records it as a backup (kind pointInTime) under
 * `backupId`; a change log that turns out unable to (ChangeLogCannot) gives way to a PITR clone
 * where full backups reach the target. Safe to run again: a backup already recorded is kept.
 */
export async function rebuildPointInTime(
  engine: Engine,
  args: { tenantId: string; backupId: string; plan: PointInTimePlan; signal?: AbortSignal; onProgress?: (p: object) => void },
): Promise<void> {
  const recorded = await engine.catalog.getBackup(args.backupId).catch(() => undefined);
  if (recorded) return;
  const { plan } = args;
  let summary;
  if (plan.source === 'changeLog') {
    try {
      const base = await engine.catalog.getBackup(plan.baseBackupId!);
      summary = (await rebuildFromChangeLog(engine, { tenantId: args.tenantId, backupId: args.backupId, base, stream: plan.stream!, target: plan.target, reason: plan.reason, signal: args.signal })).backup;
    } catch (err) {
      if (!(err instanceof ChangeLogCannot)) throw err;
      // the log still covers the target: plan again without it, which names every window when no clone can reach it
      const fallback = await planPointInTime(engine, args.tenantId, plan.target, { changeLogCannot: `the change log cannot rebuild this tenant exactly: ${err.message}` });
      summary = await rebuildFromPitrClone(engine, { tenantId: args.tenantId, backupId: args.backupId, target: plan.target, reason: fallback.reason, signal: args.signal, onProgress: args.onProgress });
    }
  } else {
    summary = await rebuildFromPitrClone(engine, { tenantId: args.tenantId, backupId: args.backupId, target: plan.target, reason: plan.reason, signal: args.signal, onProgress: args.onProgress });
  }
  await recordTenantBackup(engine, { tenantId: args.tenantId, backupId: args.backupId, manifestSha256: summary.manifestSha256 });
}

