// The change log in storage (docs/format.md, "Change log"): the committed transactions of the
// tenant-owned tables, in commit order, as segments. A segment's data object is written first,
// its sealed manifest last; a segment without a manifest does not exist. Gaps (WAL the log does
// not hold: its slot was lost or dropped) are sealed records of their own.
//
//   changelog/<stream>/segments/<first commit LSN>-<last end LSN>.jsonl.gz   one transaction a line
//   changelog/<stream>/segments/<first commit LSN>-<last end LSN>.json       the segment's manifest
//   changelog/<stream>/gaps/<from LSN>-<to LSN>.json
//   changelog/<stream>/started.json                                           where the log begins
//
// <stream> is the cluster's system identifier and the database's oid: a re-created database or
// a restored cluster starts a log of its own. LSNs in keys are 16 hex digits, so keys sort in
// commit order.
import type { RelationShape, Transaction } from '../changeLog/replication';
import type { EncryptionRecord } from '../encryption/keyring';
import { ErrorType, TenantsafeError } from '../errors';
import type { ObjectStore } from '../storage/types';
import { formatMicros } from '../time';
import { formatLsn } from '../wal/names';
import { manifestFormatVersion, parseSealedManifest, sealManifest } from './sealed';

export const changeLogPrefix = 'changelog/';

/** The change log of a database: one per cluster history (system identifier) and database oid. */
export function changeLogStream(info: { systemIdentifier: string; databaseOid: number }): string {
  return `${info.systemIdentifier}-${info.databaseOid}`;
}

/** The cluster a stream is of (its data key's owner): the stream id's first part. */
export function streamSystemIdentifier(stream: string): string {
  return stream.slice(0, stream.indexOf('-'));
}

export function streamPrefix(stream: string): string {
  return `${changeLogPrefix}${stream}/`;
}

const lsnKey = (lsn: bigint) => lsn.toString(16).toUpperCase().padStart(16, '0');

export function segmentKeys(stream: string, firstCommitLsn: bigint, lastEndLsn: bigint): { data: string; manifest: string } {
  const base = `${streamPrefix(stream)}segments/${lsnKey(firstCommitLsn)}-${lsnKey(lastEndLsn)}`;
  return { data: `${base}.jsonl.gz`, manifest: `${base}.json` };
}

export function gapKey(stream: string, fromLsn: bigint, toLsn: bigint): string {
  return `${streamPrefix(stream)}gaps/${lsnKey(fromLsn)}-${lsnKey(toLsn)}.json`;
}

const keyPattern = /\/(segments|gaps)\/([0-9A-F]{16})-([0-9A-F]{16})\.(json|jsonl\.gz)$/;

/** What a stream's key names: a segment's data or manifest (its first commit and last end), or a gap (from, to); undefined for any other key. */
export function changeLogObjectOfKey(key: string): { kind: 'segment' | 'gap'; from: bigint; to: bigint } | undefined {
  const m = keyPattern.exec(key);
  if (!m || (m[1] === 'gaps' && m[4] !== 'json')) return undefined;
  return { kind: m[1] === 'gaps' ? 'gap' : 'segment', from: BigInt(`0x${m[2]}`), to: BigInt(`0x${m[3]}`) };
}

/** Where the stream's log begins: a tenant backup with a boundary before it is no base for it. */
export function startKey(stream: string): string {
  return `${streamPrefix(stream)}started.json`;
}

export interface ChangeLogStart {
  formatVersion: number;
  kind: 'changeLogStart';
  stream: string;
  /** the slot's first position: every commit at or after it is logged (or a gap says otherwise) */
  lsn: string;
  at: string;
  manifestChecksum: string;
}

export interface ChangeSegmentManifest {
  formatVersion: number;
  kind: 'changeSegment';
  stream: string;
  firstCommitLsn: string;
  lastEndLsn: string;
  firstCommitTime: string;
  lastCommitTime: string;
  transactions: number;
  changes: number;
  /** each table's columns as the changes of this segment give them */
  relations: Record<string, Omit<RelationShape, 'table'>>;
  object: { key: string; bytes: number; sha256: string; rawBytes: number };
  /** format 2: the data object is encrypted under the cluster's data key (docs/format.md, "Encryption") */
  encryption?: EncryptionRecord;
  manifestChecksum: string;
}

/** 2: a segment whose data object is encrypted; unencrypted segments are still written as 1. */
export const encryptedSegmentFormatVersion = 2;

export interface ChangeLogGap {
  formatVersion: number;
  kind: 'changeLogGap';
  stream: string;
  /** the end of the last transaction the log holds before the gap, and its commit time (null: the log held nothing yet) */
  from: { lsn: string; time: string | null };
  /** where the log starts again */
  to: { lsn: string; time: string };
  reason: string;
  manifestChecksum: string;
}

/** A transaction as one line of a segment: LSNs as Postgres prints them, the commit time to the microsecond. */
export function transactionLine(t: Transaction): string {
  return JSON.stringify({ xid: t.xid, commitLsn: formatLsn(t.commitLsn), endLsn: formatLsn(t.endLsn), commitTime: formatMicros(t.commitTimeUs), changes: t.changes });
}

export function sealSegmentManifest(m: Omit<ChangeSegmentManifest, 'formatVersion' | 'kind' | 'manifestChecksum'>): ChangeSegmentManifest {
  return sealManifest({ formatVersion: m.encryption ? encryptedSegmentFormatVersion : manifestFormatVersion, kind: 'changeSegment' as const, ...m });
}

export function sealGap(g: Omit<ChangeLogGap, 'formatVersion' | 'kind' | 'manifestChecksum'>): ChangeLogGap {
  return sealManifest({ formatVersion: manifestFormatVersion, kind: 'changeLogGap' as const, ...g });
}

export function sealStart(m: Omit<ChangeLogStart, 'formatVersion' | 'kind' | 'manifestChecksum'>): ChangeLogStart {
  return sealManifest({ formatVersion: manifestFormatVersion, kind: 'changeLogStart' as const, ...m });
}

export async function readSegmentManifest(store: ObjectStore, key: string): Promise<ChangeSegmentManifest> {
  const m = parseSealedManifest<ChangeSegmentManifest>(await store.getBytes(key), key, [manifestFormatVersion, encryptedSegmentFormatVersion]);
  if ((m.formatVersion === encryptedSegmentFormatVersion) !== (m.encryption !== undefined)) {
    throw new TenantsafeError(ErrorType.CorruptBackup, `Change log segment manifest ${key} does not match its format version's encryption.`, 'The change log cannot be trusted past this segment: restore from a backup, or a PITR clone.');
  }
  return m;
}
