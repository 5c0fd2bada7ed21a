// Retention as the dashboard shows it for one tenant: each restore point with why the policy keeps
// it (lib/retention/policy.ts, the same rules the retention run applies), what the next run would
// remove, and what expires next. Pure: given the points, pins, restores in use, policy and now.
import { planRetention, type KeepReason, type RetentionPolicy } from '../retention/policy';

export interface RetainedPoint {
  backupId: string;
  at: string;
  /** why it is kept now; empty: the next retention run removes it */
  reasons: KeepReason[];
  pinned: boolean;
}

export interface RetentionView {
  policy: RetentionPolicy;
  /** newest first */
  points: RetainedPoint[];
  /** removed by the next retention run */
  removable: string[];
  /**
   * The kept point that loses its last reason first while no backup is added: one kept only as
   * recent goes `days` after it was taken. (A newer backup can take an older one out of the
   * min-count or a GFS tier sooner.) null: none goes by age alone.
   */
  nextToGo: { backupId: string; at: string; goesAt: string } | null;
}

const dayMs = 86_400_000;

export function retentionView(points: { backupId: string; at: string }[], pins: Set<string>, inUse: Set<string>, policy: RetentionPolicy, now: Date): RetentionView {
  const decision = planRetention(points.map((p) => ({ backupId: p.backupId, at: p.at, pinned: pins.has(p.backupId), inUse: inUse.has(p.backupId) })), policy, now);
  const reasons = new Map(decision.keep.map((k) => [k.backupId, k.reasons]));
  const retained = [...points]
    .sort((a, b) => b.at.localeCompare(a.at) || b.backupId.localeCompare(a.backupId))
    .map((p) => ({ backupId: p.backupId, at: p.at, reasons: reasons.get(p.backupId) ?? [], pinned: pins.has(p.backupId) }));
  const byAge = retained
    .filter((p) => p.reasons.length === 1 && p.reasons[0] === 'recent')
    .map((p) => ({ backupId: p.backupId, at: p.at, goesAt: new Date(Date.parse(p.at) + policy.days * dayMs).toISOString() }))
    .sort((a, b) => a.goesAt.localeCompare(b.goesAt));
  return { policy, points: retained, removable: decision.remove, nextToGo: byAge[0] ?? null };
}
