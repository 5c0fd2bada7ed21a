// Reading the WAL archive in storage (its layout: lib/format/walArchive.ts): listing it, finding
// gaps, fetching a segment whole.
import { webcrypto } from 'node:crypto';
import { promisify } from 'node:util';
import { gunzip } from 'node:zlib';
import { ErrorType, TenantsafeError } from '../errors';
import { isSealed, requireKeyring, sealedKeyId } from '../encryption';
import type { ObjectStore } from '../storage/types';
import { historyFilePattern, historyKey, historyKeyPattern, partialKeyPattern, segmentFolder, segmentKeyPattern, walPrefix } from '../format/walArchive';
import { isSegmentName, positionKey, segmentName, segmentNumber, segmentStartLsn, timelineOf } from './names';

const gunzipAsync = promisify(gunzip);

/**
 * A WAL object's raw bytes: gunzipped, and first decrypted where it is encrypted (its header names
 * the cluster's data key; an archive written before encryption was on is plain gzip).
 */
export async function readWalObject(store: ObjectStore, key: string): Promise<Buffer> {
  const stored = await store.getBytes(key);
  if (!isSealed(stored)) return gunzipAsync(stored);
  const dataKey = await requireKeyring(store, `WAL object ${key}`).openById(sealedKeyId(stored), `WAL object ${key}`);
  return gunzipAsync(dataKey.openBuffer(stored, key));
}

export interface ArchivedSegment {
  name: string;
  key: string;
  /** stored (gzipped) size */
  bytes: number;
  /** sha256 of the raw segment, from the key */
  sha256: string;
}

export interface ArchivedPartial {
  name: string;
  key: string;
  bytes: number;
}

export interface WalArchiveListing {
  /** completed segments in WAL order */
  segments: ArchivedSegment[];
  /** segments still being written (normally one), in WAL order */
  partials: ArchivedPartial[];
  histories: string[];
}

/**
 * The whole archive, or only what lies under `prefixes` (segment folders, say), in one listing.
 * The archiver stores a segment, then deletes its partial: a partial listed here may be gone when
 * it is read, its segment complete (readPartial). (The local store reads its directories again
 * when a listed object vanishes before its size is read, so a listing never misses both.)
 */
export async function listWalArchive(store: ObjectStore, prefixes: string[] = [walPrefix]): Promise<WalArchiveListing> {
  const segments: ArchivedSegment[] = [];
  const partials: ArchivedPartial[] = [];
  const histories: string[] = [];
  for (const prefix of prefixes) for await (const o of store.list(prefix)) {
    let m = segmentKeyPattern.exec(o.key);
    if (m) {
      segments.push({ name: m[1], key: o.key, bytes: o.bytes, sha256: m[2] });
      continue;
    }
    m = partialKeyPattern.exec(o.key);
    if (m) {
      partials.push({ name: m[1], key: o.key, bytes: o.bytes });
      continue;
    }
    m = historyKeyPattern.exec(o.key);
    if (m) histories.push(m[1]);
  }
  const order = (a: { name: string }, b: { name: string }) => positionKey(a.name).localeCompare(positionKey(b.name)) || a.name.localeCompare(b.name);
  // A partial whose segment has completed meanwhile is stale: the archiver deletes it right after.
  const complete = new Set(segments.map((s) => s.name));
  return { segments: segments.sort(order), partials: partials.filter((p) => !complete.has(p.name)).sort(order), histories: histories.sort() };
}

/** The newest segment in the archive, complete or partial. */
export function newestSegment(listing: WalArchiveListing): string | null {
  const names = [...listing.segments, ...listing.partials].map((s) => s.name).sort((a, b) => positionKey(a).localeCompare(positionKey(b)));
  return names.at(-1) ?? null;
}

/** Where the archive ends at the latest: the end of its newest segment, complete or partial (0 when empty). */
export function archiveEndLsn(listing: WalArchiveListing, segmentSize: number): bigint {
  const newest = newestSegment(listing);
  return newest ? segmentStartLsn(newest, segmentSize) + BigInt(segmentSize) : 0n;
}

export interface WalGap {
  /** first and last missing segment */
  from: string;
  to: string;
  count: number;
}

/**
 * Missing segments between `from` (default: the oldest in the archive) and the newest one.
 * A position counts as present when a segment of any timeline, or a partial, holds it.
 */
export function findWalGaps(listing: WalArchiveListing, segmentSize: number, from?: string): WalGap[] {
  const newest = newestSegment(listing);
  const first = from ?? listing.segments[0]?.name ?? listing.partials[0]?.name;
  if (!newest || !first) return [];
  const present = new Set([...listing.segments, ...listing.partials].map((s) => segmentNumber(s.name, segmentSize)));
  const gaps: WalGap[] = [];
  const end = segmentNumber(newest, segmentSize);
  const timeline = timelineOf(newest);
  let open: bigint | null = null;
  const close = (n: bigint) => {
    if (open === null) return;
    gaps.push({ from: segmentName(timeline, open, segmentSize), to: segmentName(timeline, n - 1n, segmentSize), count: Number(n - open) });
    open = null;
  };
  for (let n = segmentNumber(first, segmentSize); n <= end; n++) {
    if (present.has(n)) close(n);
    else open ??= n;
  }
  close(end + 1n);
  return gaps;
}

/**
 * The raw bytes PostgreSQL's restore_command should hand over for `file` (a segment or history
 * file name), or null when the archive does not have it. A partial segment comes back padded
 * with zeros to the full size, as pg_receivewal leaves it. Throws CorruptBackup when a segment
 * does not match the sha256 in its key.
 */
export async function fetchWalFile(store: ObjectStore, listing: WalArchiveListing, file: string, segmentSize: number): Promise<Buffer | null> {
  if (historyFilePattern.test(file)) {
    return listing.histories.includes(file) ? store.getBytes(historyKey(file)) : null;
  }
  if (!isSegmentName(file)) return null;
  const complete = listing.segments.find((s) => s.name === file);
  if (complete) return completeSegment(store, complete);
  const partial = listing.partials.find((p) => p.name === file);
  if (!partial) return null;
  const read = await readPartial(store, partial);
  if (read.complete) return read.raw;
  const padded = Buffer.alloc(segmentSize);
  read.raw.copy(padded);
  return padded;
}

/**
 * A listed partial's bytes; or, when it is gone (the segment completed after the listing and the
 * archiver deleted its partial), its folder listed again and the completed segment's, checked
 * against its sha256.
 */
export async function readPartial(store: ObjectStore, partial: ArchivedPartial): Promise<{ raw: Buffer; complete: boolean }> {
  try {
    return { raw: await readWalObject(store, partial.key), complete: false };
  } catch (err) {
    if (!(err instanceof TenantsafeError && err.type === ErrorType.ObjectMissing)) throw err;
    const segment = (await listWalArchive(store, [segmentFolder(partial.name)])).segments.find((s) => s.name === partial.name);
    if (!segment) throw err;
    return { raw: await completeSegment(store, segment), complete: true };
  }
}

async function completeSegment(store: ObjectStore, complete: ArchivedSegment): Promise<Buffer> {
  // gunzip and sha256 in the thread pool: a restore prefetches the next segments while serving this one
  const raw = await readWalObject(store, complete.key);
  if (Buffer.from(await webcrypto.subtle.digest('SHA-256', raw)).toString('hex') !== complete.sha256) {
    throw new TenantsafeError(ErrorType.CorruptBackup, `WAL segment ${complete.key} does not match its sha256.`, 'Run `tenantsafe verify` on the backups that need it; restore from an earlier point or another copy.');
  }
  return raw;
}
