// One retention run over the configured storage: the policy engine's decision for full backups
// and, per tenant, for tenant backups (with per-tenant overrides), the WAL no kept backup needs,
// and prefixes of interrupted backups. With dryRun it only reports. Deletion order makes a
// crash harmless: a backup's manifest goes first (it stops existing), then its objects, then its
// catalog row; pins are read again right before each deletion.
import { removeIncompleteBackups } from '../tenantBackup';
import type { Engine } from '../engine';
import { fullBackupPrefix } from '../format/fullManifest';
import { manifestFile } from '../format/sealed';
import { listWalArchive } from '../wal/archive';
import { isPinned, listPins } from './pins';
import { pitrAnchor, planRetention, planWalRetention, type KeepReason, type RetentionPolicy } from './policy';

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
  // A base backup of a big cluster can run for many hours: its prefix is left alone for a day at least.
  const fullIncompleteOpts = { ...incompleteOpts, olderThanMs: Math.max(incompleteOpts.olderThanMs, 86_400_000), area: 'full' as const };
  const incomplete = [...(await removeIncompleteBackups(store, incompleteOpts)), ...(await removeIncompleteBackups(store, fullIncompleteOpts))];
  return {
    dryRun: opts.dryRun,
    now: now.toISOString(),
    kept,
    removedBackups: opts.dryRun ? remove.map((r) => r.backupId) : removedBackups,
    removedWalSegments: walKeys.length,
    walKeptFrom: anchor?.startSegment ?? null,
    removedIncomplete: incomplete.map((r) => r.prefix),
  };
}
