// One retention run over the configured storage: the policy engine's decision for full backups
// and, per tenant, for tenant backups (with per-tenant overrides), the WAL no kept backup needs,
// the change log no kept tenant backup extends, and prefixes of interrupted backups. With dryRun
// it only reports. Deletion order makes a crash harmless: a backup's manifest goes first (it
// stops existing), then its objects, then its catalog row; pins are read again right before each
// deletion. Change-log segments go in the other order (see removeChangeLog).
import { removeIncompleteBackups } from '../tenantBackup';
import { removeUnreferencedPacks } from '../tenantBackup/batch';
import type { Engine } from '../engine';
import { changeLogObjectOfKey, gapKey, segmentKeys, streamPrefix } from '../format/changeLog';
import { fullBackupPrefix } from '../format/fullManifest';
import { manifestFile } from '../format/sealed';
import { microsOf, parseMicros } from '../time';
import { listWalArchive } from '../wal/archive';
import { formatLsn, parseLsn } from '../wal/names';
import { isPinned, listPins } from './pins';
import { pitrAnchor, planChangeLogRetention, planRetention, planWalRetention, type KeepReason, type RetentionPolicy } from './policy';

export interface RetentionOutcome {
  dryRun: boolean;
  now: string;
  kept: { backupId: string; reasons: KeepReason[] }[];
  removedBackups: string[];
  /** WAL segments removed (or that would be) */
  removedWalSegments: number;
  /** the segment from which the archive is kept unbroken */
  walKeptFrom: string | null;
  removedIncomplete: string[];
  /** packs of batched tenant backups no manifest references any more (packs/<batchId>/<attempt>/, docs/format.md) */
  removedPacks?: string[];
  /** change-log segments removed (or that would be) */
  removedChangeSegments: number;
  /** change-log gaps removed (or that would be): they lie before everything kept */
  removedChangeLogGaps: number;
  /** per change-log stream: the segments that end at or before `upTo` go, because of `by` (a backup id, or the age horizon) */
  changeLogCuts: { stream: string; upTo: string | null; by: string }[];
}

export async function runRetention(engine: Engine, opts: { dryRun: boolean; now?: Date }): Promise<RetentionOutcome> {
  const { config, store, catalog } = engine;
  const now = opts.now ?? new Date();
  const pinned = new Set((await listPins(store)).map((p) => p.backupId));
  const policy: RetentionPolicy = config.retention;

  const full = await catalog.listFullBackups();
  const fullDecision = planRetention(full.map((b) => ({ backupId: b.backupId, at: b.consistentAt, pinned: pinned.has(b.backupId) })), policy, now);
  const kept = [...fullDecision.keep];
  const remove: { backupId: string; prefix: string }[] = fullDecision.remove.map((id) => ({ backupId: id, prefix: fullBackupPrefix(id) }));

  const tenantBackups = await catalog.listBackups();
  // a restore reads its backup from the preview to the verification, approval wait included (up
  // to restore.approvalTimeout); a row older than that by a day is a restore whose workflow ended
  // without saying so
  const inUse = await catalog.backupsInUse(new Date(now.getTime() - config.restore.approvalTimeoutMs - 86_400_000));
  for (const tenantId of new Set(tenantBackups.map((b) => b.tenantId))) {
    const mine = tenantBackups.filter((b) => b.tenantId === tenantId);
    const decision = planRetention(
      mine.map((b) => ({ backupId: b.backupId, at: b.snapshotAt, pinned: pinned.has(b.backupId), inUse: inUse.has(b.backupId) })),
      { ...policy, ...config.retention.tenants[tenantId] },
      now,
    );
    kept.push(...decision.keep);
    remove.push(...decision.remove.map((id) => ({ backupId: id, prefix: mine.find((b) => b.backupId === id)!.prefix })));
  }

  const physical = full.filter((b) => b.wal !== null).map((b) => ({ backupId: b.backupId, at: b.consistentAt, startSegment: b.wal!.startSegment, stopSegment: b.wal!.stopSegment }));
  const keptIds = new Set(fullDecision.keep.map((k) => k.backupId));
  const anchor = pitrAnchor(fullDecision, physical);
  const listing = await listWalArchive(store);
  const walToRemove = new Set(planWalRetention({ segments: listing.segments.map((s) => s.name), kept: physical.filter((b) => keptIds.has(b.backupId)), pitrFrom: anchor }));
  const walKeys = listing.segments.filter((s) => walToRemove.has(s.name)).map((s) => s.key);

  const incompleteOpts = { olderThanMs: config.retention.incompleteAfterMs, now, dryRun: opts.dryRun };
  const removedBackups: string[] = [];
  if (!opts.dryRun) {
    for (const { backupId, prefix } of remove) {
      if (await isPinned(store, backupId)) continue; // pinned since the plan was made
      await store.delete(prefix + manifestFile);
      await store.deletePrefix(prefix);
      await store.deletePrefix(`reports/verify/${backupId}/`);
      await catalog.forgetBackup(backupId);
      removedBackups.push(backupId);
    }
    for (const key of walKeys) await store.delete(key);
  }
  // Planned after the backups went: a backup pinned meanwhile was not deleted, and still needs its log.
  const gone = new Set(opts.dryRun ? remove.map((r) => r.backupId) : removedBackups);
  const changeLog = await removeChangeLog(engine, { gone, horizonUs: microsOf(now) - BigInt(changeLogDays(config.retention)) * 86_400_000_000n, dryRun: opts.dryRun });
  // A base backup of a big cluster can run for many hours: its prefix is left alone for a day at least.
  const fullIncompleteOpts = { ...incompleteOpts, olderThanMs: Math.max(incompleteOpts.olderThanMs, 86_400_000), area: 'full' as const };
  const incomplete = [...(await removeIncompleteBackups(store, incompleteOpts)), ...(await removeIncompleteBackups(store, fullIncompleteOpts))];
  // after the backups went: their packs may now be referenced by no manifest
  const removedPacks = await removeUnreferencedPacks(engine, incompleteOpts);
  return {
    dryRun: opts.dryRun,
    now: now.toISOString(),
    kept,
    removedBackups: opts.dryRun ? remove.map((r) => r.backupId) : removedBackups,
    removedWalSegments: walKeys.length,
    walKeptFrom: anchor?.startSegment ?? null,
    removedIncomplete: incomplete.map((r) => r.prefix),
    removedPacks,
    removedChangeSegments: changeLog.segments,
    removedChangeLogGaps: changeLog.gaps,
    changeLogCuts: changeLog.cuts,
  };
}

/** The change log's age horizon when no backup it extends is kept: the longest `days` of the policy and the tenants' overrides (the log holds every tenant's changes). */
function changeLogDays(retention: Engine['config']['retention']): number {
  return Math.max(retention.days, ...Object.values(retention.tenants).map((t) => t.days ?? 0));
}

/** A segment or gap to remove: its catalog row (when there is one) and its objects. */
interface ChangeLogItem {
  from: bigint;
  to: bigint;
  recorded: boolean;
  keys: Set<string>;
}

/**
 * Removes, stream by stream, the change-log segments and gaps no kept tenant backup needs
 * (planChangeLogRetention), oldest first, so what is left is always one unbroken log.
 * Readers find segments through the catalog only (readChangeLog lists the rows, then reads the
 * manifest and the data each names), so a segment's catalog row goes first, then its manifest,
 * then its data: a crash in between leaves objects no reader reaches, never a row whose objects
 * are gone. The next run finds such leftovers by listing storage (their keys name their LSNs).
 * Nothing at or after the newest recorded segment is touched (planChangeLogRetention keeps it),
 * so the segment or gap the capture is writing, objects before its row, is left alone.
 */
async function removeChangeLog(engine: Engine, opts: { gone: Set<string>; horizonUs: bigint; dryRun: boolean }): Promise<{ segments: number; gaps: number; cuts: RetentionOutcome['changeLogCuts'] }> {
  const { catalog, store } = engine;
  const bases = (await catalog.changeLogBoundaries()).filter((b) => !opts.gone.has(b.backupId));
  const out = { segments: 0, gaps: 0, cuts: [] as RetentionOutcome['changeLogCuts'] };
  for (const stream of await catalog.changeLogStreams()) {
    const recorded = await catalog.listChangeSegments(stream);
    const cut = planChangeLogRetention({
      segments: recorded.map((r) => ({ lastEndLsn: parseLsn(r.lastEndLsn), lastCommitUs: parseMicros(r.lastCommitTime) })),
      bases: bases.filter((b) => b.stream === stream).map((b) => ({ backupId: b.backupId, boundary: parseLsn(b.boundary) })),
      horizonUs: opts.horizonUs,
    });
    out.cuts.push({ stream, upTo: cut.upTo === null ? null : formatLsn(cut.upTo), by: 'backupId' in cut.by ? cut.by.backupId : `age horizon ${cut.by.horizon}` });
    // no recorded segment: no tail to tell what the capture may be writing, so storage is left alone
    if (cut.upTo === null || recorded.length === 0) continue;
    const upTo = cut.upTo;
    const items = { segment: new Map<string, ChangeLogItem>(), gap: new Map<string, ChangeLogItem>() };
    const item = (kind: 'segment' | 'gap', from: bigint, to: bigint) => {
      const name = `${from}-${to}`;
      if (!items[kind].has(name)) items[kind].set(name, { from, to, recorded: false, keys: new Set() });
      return items[kind].get(name)!;
    };
    for (const r of recorded) {
      const [first, last] = [parseLsn(r.firstCommitLsn), parseLsn(r.lastEndLsn)];
      if (last > upTo) continue;
      const keys = segmentKeys(stream, first, last);
      Object.assign(item('segment', first, last), { recorded: true }).keys.add(r.manifestKey).add(keys.data);
    }
    for (const g of await catalog.listChangeLogGaps(stream)) {
      const [from, to] = [parseLsn(g.fromLsn), parseLsn(g.toLsn)];
      if (to <= upTo) Object.assign(item('gap', from, to), { recorded: true }).keys.add(gapKey(stream, from, to));
    }
    for await (const o of store.list(streamPrefix(stream))) {
      const found = changeLogObjectOfKey(o.key);
      if (found && found.to <= upTo) item(found.kind, found.from, found.to).keys.add(o.key);
    }
    const oldestFirst = (m: Map<string, ChangeLogItem>) => [...m.values()].sort((a, b) => (a.to < b.to ? -1 : a.to > b.to ? 1 : a.from < b.from ? -1 : a.from > b.from ? 1 : 0));
    const segments = oldestFirst(items.segment);
    const gaps = oldestFirst(items.gap);
    out.segments += segments.length;
    out.gaps += gaps.length;
    if (opts.dryRun) continue;
    for (const s of segments) {
      if (s.recorded) await catalog.forgetChangeSegment({ stream, firstCommitLsn: formatLsn(s.from), lastEndLsn: formatLsn(s.to) });
      // then the manifest (a segment without one does not exist: docs/architecture.md, core rule 3), then the data
      for (const key of [...s.keys].sort((a, b) => Number(b.endsWith('.json')) - Number(a.endsWith('.json')))) await store.delete(key);
    }
    for (const g of gaps) {
      if (g.recorded) await catalog.forgetChangeLogGap({ stream, fromLsn: formatLsn(g.from), toLsn: formatLsn(g.to) });
      for (const key of g.keys) await store.delete(key);
    }
  }
  return out;
}
