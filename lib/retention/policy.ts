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
// Change log: segments follow the tenant backups they extend (planChangeLogRetention).
import { formatMicros } from '../time';
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

/** Where retention may cut one change-log stream, and why there. */
export interface ChangeLogCut {
  /** segments that end at or before this LSN may go, and gaps that end there or before (null: nothing goes) */
  upTo: bigint | null;
  /** the oldest kept backup the log extends (its boundary), or the age horizon when no such backup is kept */
  by: { backupId: string } | { horizon: string };
}

/**
 * How much of one change-log stream no kept backup needs. A point-in-time rebuild reads the
 * transactions after its base backup's boundary (snapshot.changeLogLsn), so a segment that ends
 * at or before the oldest boundary among the kept backups of the stream (every tenant's: the log
 * is shared) is read by none. The restore window promises the log from its oldest base on, and
 * the planner trusts the catalog to hold it whole from there: nothing after that boundary goes.
 * With no such backup kept, the segments whose last commit is older than the age horizon go (the
 * log serves no restore then; the horizon keeps what the policy calls recent, as it would keep a
 * backup). The newest segment always stays: the capture resumes from its end and a gap found
 * later starts there.
 */
export function planChangeLogRetention(args: {
  segments: { lastEndLsn: bigint; lastCommitUs: bigint }[];
  /** the kept backups of this stream with an exact boundary */
  bases: { backupId: string; boundary: bigint }[];
  horizonUs: bigint;
}): ChangeLogCut {
  const tail = args.segments.reduce<bigint | null>((max, s) => (max === null || s.lastEndLsn > max ? s.lastEndLsn : max), null);
  const belowTail = (lsn: bigint | null) => (lsn === null || tail === null || lsn < tail ? lsn : tail - 1n);
  const oldest = [...args.bases].sort((a, b) => (a.boundary < b.boundary ? -1 : a.boundary > b.boundary ? 1 : a.backupId.localeCompare(b.backupId)))[0];
  if (oldest) return { upTo: belowTail(oldest.boundary), by: { backupId: oldest.backupId } };
  const aged = args.segments.filter((s) => s.lastCommitUs <= args.horizonUs && s.lastEndLsn !== tail).map((s) => s.lastEndLsn);
  const upTo = aged.length ? aged.reduce((max, l) => (l > max ? l : max)) : null;
  return { upTo: belowTail(upTo), by: { horizon: formatMicros(args.horizonUs) } };
}
