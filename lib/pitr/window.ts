// The recoverable window of physical backups + the WAL archive, and the choice of base backup
// for a point-in-time target. The window starts at the consistent point of the oldest base
// backup from whose start the archive is unbroken, and ends at the newest commit archived
// (PostgreSQL can only stop at a time target once it sees a commit after it).
import type { FullBackupRecord } from '../catalog';
import type { Engine } from '../engine';
import { ErrorType, TenantsafeError } from '../errors';
import { timeWithZone } from '../inputs';
import type { ObjectStore } from '../storage/types';
import { formatMicros, microsOf, parseMicros } from '../time';
import { fetchWalFile, findWalGaps, listWalArchive, newestSegment, readPartial, type WalArchiveListing } from '../wal/archive';
import { formatLsn, parseLsn, positionKey, segmentStartLsn } from '../wal/names';
import { readWalMarks, type WalMark } from '../wal/waldump';

export type PitrTarget = { at: string } | { lsn: string } | { name: string } | { latest: true };

/** The raw target fields of a workflow input or CLI call. */
export interface PitrTargetFields {
  at?: string;
  lsn?: string;
  name?: string;
  latest?: boolean;
}

/** Exactly one of at | lsn | name | latest, each well-formed; BadInput otherwise. */
export function pitrTargetOf(fields: PitrTargetFields): PitrTarget {
  const given = (['at', 'lsn', 'name', 'latest'] as const).filter((k) => fields[k] !== undefined && fields[k] !== false);
  if (given.length !== 1) {
    throw new TenantsafeError(ErrorType.BadInput, `Give exactly one target: at, lsn, name or latest (got ${given.join(', ') || 'none'}).`, 'Pass one of --at <ISO-8601>, --lsn <lsn>, --name <restore point>, --latest.');
  }
  if (fields.at !== undefined) {
    timeWithZone(fields.at);
    // to the microsecond: a target cut to milliseconds would leave out a commit made earlier within the same one
    return { at: formatMicros(parseMicros(fields.at)) };
  }
  if (fields.lsn !== undefined) return { lsn: formatLsn(parseLsn(fields.lsn)) };
  if (fields.name !== undefined) {
    if (!fields.name.trim()) throw new TenantsafeError(ErrorType.BadInput, 'The restore point name is empty.', 'Pass --name <restore point>.');
    return { name: fields.name };
  }
  return { latest: true };
}

export interface PitrWindow {
  earliest: string | null;
  latest: string | null;
}

export interface PhysicalWindow extends PitrWindow {
  /** base backups inside the window, oldest first */
  backups: (FullBackupRecord & { wal: NonNullable<FullBackupRecord['wal']> })[];
  listing: WalArchiveListing;
  /** the end of the archived WAL */
  endLsn: string | null;
  /** the newest commit archived after the window's start (the window's latest), where it lies and its transaction */
  latestCommit: WalCommit | null;
}

interface WalCommit {
  time: string;
  lsn: string;
  xid: string;
}

export interface PitrPlan {
  backupId: string;
  target: PitrTarget;
  window: PitrWindow;
  /** where a restore point of a --name target lies */
  targetLsn?: string;
  /**
   * A time target at the newest archived commit: recovery stops after that commit, this
   * transaction's. PostgreSQL stops at a time only on seeing a commit later than it, which the
   * archive does not hold yet: it would end recovery short of the target and refuse to start.
   */
  stopAfterXid?: string;
}

/** How many segments back from the newest the window looks for the newest commit. */
const commitSearchDepth = 16;

export async function physicalWindow(engine: Engine): Promise<PhysicalWindow> {
  const all = (await engine.catalog.listFullBackups()).filter((b): b is PhysicalWindow['backups'][number] => b.method === 'basebackup' && b.wal !== null);
  const listing = await listWalArchive(engine.store);
  const empty: PhysicalWindow = { earliest: null, latest: null, backups: [], listing, endLsn: null, latestCommit: null };
  if (all.length === 0) return empty;
  const segmentSize = all[0].wal.segmentSize;
  const lastGap = findWalGaps(listing, segmentSize, all[0].wal.startSegment).at(-1);
  const backups = all.filter((b) => !lastGap || positionKey(b.wal.startSegment) > positionKey(lastGap.to));
  const newest = newestSegment(listing);
  if (backups.length === 0 || !newest) return empty;
  const end = await archiveEnd(engine.store, listing, newest, segmentSize);
  const earliest = backups[0].consistentAt;
  const lastCommit = await newestCommit(engine.store, listing, segmentSize, backups[0].wal.startSegment);
  const after = lastCommit && parseMicros(lastCommit.time) > parseMicros(earliest) ? lastCommit : null;
  return { earliest, latest: after?.time ?? earliest, backups, listing, endLsn: formatLsn(end), latestCommit: after };
}

async function archiveEnd(store: ObjectStore, listing: WalArchiveListing, newest: string, segmentSize: number): Promise<bigint> {
  const partial = listing.partials.find((p) => p.name === newest);
  const start = segmentStartLsn(newest, segmentSize);
  if (!partial) return start + BigInt(segmentSize);
  const read = await readPartial(store, partial);
  return start + BigInt(read.complete ? segmentSize : read.raw.length);
}

/** The commits and restore points of the archived segments from the newest back to `floor`. */
async function* marksNewestFirst(store: ObjectStore, listing: WalArchiveListing, segmentSize: number, floor: string): AsyncGenerator<WalMark[]> {
  const names = [...listing.segments, ...listing.partials].map((s) => s.name).filter((n) => positionKey(n) >= positionKey(floor));
  names.sort((a, b) => positionKey(b).localeCompare(positionKey(a)));
  for (const name of names) {
    const bytes = await fetchWalFile(store, listing, name, segmentSize);
    if (bytes) yield await readWalMarks(bytes, name);
  }
}

/** The newest commit in the archive (its time, to the microsecond, and LSN), looking back at most commitSearchDepth segments. */
async function newestCommit(store: ObjectStore, listing: WalArchiveListing, segmentSize: number, floor: string): Promise<WalCommit | null> {
  let looked = 0;
  for await (const marks of marksNewestFirst(store, listing, segmentSize, floor)) {
    const commit = marks.filter((m) => m.kind === 'commit').at(-1);
    if (commit) return { time: commit.time!, lsn: commit.lsn, xid: commit.xid! };
    if (++looked >= commitSearchDepth) break;
  }
  return null;
}

function describe(window: PitrWindow): string {
  return window.earliest ? `the recoverable window is ${window.earliest} to ${window.latest}` : 'there is no recoverable window (no base backup yet)';
}

function outside(what: string, window: PitrWindow): TenantsafeError {
  return new TenantsafeError(
    ErrorType.TargetOutsideWindow,
    `${what}: ${describe(window)}.`,
    window.earliest ? 'Pick a target inside the window (`tenantsafe pitr window`), or restore the newest state with --latest.' : 'Take a base backup first: `tenantsafe full-backup --wait`.',
  );
}

/** Checks a target against the window and picks the newest base backup that lies before it. */
export async function planPhysicalRestore(engine: Engine, target: PitrTarget, now: Date): Promise<PitrPlan> {
  const w = await physicalWindow(engine);
  const window = { earliest: w.earliest, latest: w.latest };
  if (w.backups.length === 0 || !w.endLsn) throw outside('There is nothing to restore', window);
  const newestFirst = [...w.backups].reverse();
  if ('latest' in target) return { backupId: newestFirst[0].backupId, target, window };
  if ('at' in target) {
    const at = parseMicros(target.at);
    if (at > microsOf(now)) throw outside(`Target ${target.at} is in the future`, window);
    if (at < parseMicros(w.earliest!)) throw outside(`Target ${target.at} is before the first base backup`, window);
    if (at > parseMicros(w.latest!)) throw outside(`Target ${target.at} is after the newest archived transaction`, window);
    const base = newestFirst.find((b) => parseMicros(b.consistentAt) <= at)!;
    const last = w.latestCommit;
    const atNewest = last && at >= parseMicros(last.time) && parseLsn(last.lsn) >= parseLsn(base.wal.stopLsn);
    return { backupId: base.backupId, target, window, ...(atNewest ? { stopAfterXid: last.xid } : {}) };
  }
  const lsnBackup = (lsn: bigint, what: string) => {
    if (lsn < parseLsn(w.backups[0].wal.stopLsn)) throw outside(`${what} is before the first base backup ends (LSN ${w.backups[0].wal.stopLsn})`, window);
    if (lsn > parseLsn(w.endLsn!)) throw outside(`${what} is after the end of the archived WAL (LSN ${w.endLsn})`, window);
    return newestFirst.find((b) => parseLsn(b.wal.stopLsn) <= lsn)!.backupId;
  };
  if ('lsn' in target) return { backupId: lsnBackup(parseLsn(target.lsn), `Target LSN ${target.lsn}`), target, window };
  const found = await findRestorePoint(engine.store, w, target.name);
  if (!found) throw outside(`There is no restore point named "${target.name}" in the archived WAL`, window);
  return { backupId: lsnBackup(parseLsn(found), `Restore point "${target.name}" (LSN ${found})`), target, window, targetLsn: found };
}

/** The LSN of the newest restore point with this name, scanning the window's WAL newest first. */
async function findRestorePoint(store: ObjectStore, w: PhysicalWindow, name: string): Promise<string | null> {
  for await (const marks of marksNewestFirst(store, w.listing, w.backups[0].wal.segmentSize, w.backups[0].wal.startSegment)) {
    const point = marks.filter((m) => m.kind === 'restore-point' && m.name === name).at(-1);
    if (point) return point.lsn;
  }
  return null;
}
