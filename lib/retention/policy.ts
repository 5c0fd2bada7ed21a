// The retention policy engine: which backups to keep and which WAL segments they need. Pure:
// it is given the backups, the pins and `now`, and returns a decision; nothing here reads a
// clock or touches storage, so a 400-day calendar can be simulated in milliseconds.
//
// A backup is kept when any rule keeps it:
//   pinned     a pin (legal hold) is on it
//   in-use     a restore not finished yet reads it (waiting for approval, applying)
//   min-count  it is one of the newest `minCount` backups (never deleted, whatever their age)
//   recent     it is younger than `days` days
//   daily/weekly/monthly/yearly (GFS)  it is the newest backup of one of the newest N UTC days
//              (ISO weeks, months, years) that have a backup
// WAL: every kept physical backup keeps the segments from its start to its stop (it can be
// restored to its own consistent point); the WAL from the start of the oldest backup kept by
// `min-count` or `recent` onward is kept whole, so point-in-time recovery reaches back that
// far. GFS-only and pinned older backups do not hold the archive open in between.
import { positionKey } from '../wal/names';

export interface RetentionPolicy {
  days: number;
  minCount: number;
  daily: number;
  weekly: number;
  monthly: number;
  yearly: number;
}

export type KeepReason = 'pinned' | 'in-use' | 'min-count' | 'recent' | 'daily' | 'weekly' | 'monthly' | 'yearly';

export interface RetentionCandidate {
  backupId: string;
  /** when the backup's data is from (ISO-8601): its snapshot or consistent point */
  at: string;
  pinned: boolean;
  /** a restore not finished yet reads it */
  inUse?: boolean;
}

export interface RetentionDecision {
  keep: { backupId: string; reasons: KeepReason[] }[];
  remove: string[];
}

const dayMs = 86_400_000;

/** The UTC calendar buckets of a moment, for the GFS tiers. */
function buckets(at: Date): Record<'daily' | 'weekly' | 'monthly' | 'yearly', string> {
  const iso = at.toISOString();
  // ISO week: the week of the Thursday of this week; weeks start on Monday.
  const thursday = new Date(Date.UTC(at.getUTCFullYear(), at.getUTCMonth(), at.getUTCDate() + 3 - ((at.getUTCDay() + 6) % 7)));
  const week = Math.floor((thursday.getTime() - Date.UTC(thursday.getUTCFullYear(), 0, 1)) / (7 * dayMs)) + 1;
  return { daily: iso.slice(0, 10), weekly: `${thursday.getUTCFullYear()}-W${week}`, monthly: iso.slice(0, 7), yearly: iso.slice(0, 4) };
}

export function planRetention(backups: RetentionCandidate[], policy: RetentionPolicy, now: Date): RetentionDecision {
  const newestFirst = [...backups].sort((a, b) => b.at.localeCompare(a.at) || b.backupId.localeCompare(a.backupId));
  const tiers = ['daily', 'weekly', 'monthly', 'yearly'] as const;
  const used = { daily: new Set<string>(), weekly: new Set<string>(), monthly: new Set<string>(), yearly: new Set<string>() };
  const cutoff = now.getTime() - policy.days * dayMs;
  const keep: RetentionDecision['keep'] = [];
  const remove: string[] = [];
  newestFirst.forEach((b, index) => {
    const reasons: KeepReason[] = [];
    if (b.pinned) reasons.push('pinned');
    if (b.inUse) reasons.push('in-use');
    if (index < policy.minCount) reasons.push('min-count');
    if (Date.parse(b.at) > cutoff) reasons.push('recent');
    const bucket = buckets(new Date(b.at));
    for (const tier of tiers) {
      if (used[tier].has(bucket[tier]) || used[tier].size >= policy[tier]) continue;
      used[tier].add(bucket[tier]);
      reasons.push(tier);
    }
    if (reasons.length > 0) keep.push({ backupId: b.backupId, reasons });
    else remove.push(b.backupId);
  });
  return { keep, remove };
}

export interface WalNeeds {
  backupId: string;
  startSegment: string;
  stopSegment: string;
}

/**
 * The archived segments that no kept backup needs. `pitrFrom` is the backup whose start the
 * archive must reach back to unbroken (the oldest kept by min-count or recent). With no kept
 * physical backup at all nothing is removed: WAL is never pruned on its own.
 */
export function planWalRetention(args: { segments: string[]; kept: WalNeeds[]; pitrFrom: WalNeeds | null }): string[] {
  if (args.kept.length === 0) return [];
  const from = args.pitrFrom ? positionKey(args.pitrFrom.startSegment) : null;
  const needed = (segment: string) => {
    const p = positionKey(segment);
    return (from !== null && p >= from) || args.kept.some((b) => p >= positionKey(b.startSegment) && p <= positionKey(b.stopSegment));
  };
  return args.segments.filter((s) => !needed(s));
}

/**
 * The kept backup from whose start the WAL must stay continuous: the oldest kept for being
 * recent or among the newest; failing those (minCount 0, nothing recent) the newest kept, so
 * the WAL being archived now is never pruned.
 */
export function pitrAnchor<T extends { backupId: string; at: string }>(decision: RetentionDecision, backups: T[]): T | null {
  const byAge = (ids: Set<string>) => backups.filter((b) => ids.has(b.backupId)).sort((a, b) => a.at.localeCompare(b.at));
  const pitr = byAge(new Set(decision.keep.filter((k) => k.reasons.includes('recent') || k.reasons.includes('min-count')).map((k) => k.backupId)));
  return pitr[0] ?? byAge(new Set(decision.keep.map((k) => k.backupId))).at(-1) ?? null;
}
