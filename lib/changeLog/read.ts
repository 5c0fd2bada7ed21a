// Reading the change log back: the transactions of a stream after a position, in commit order,
// each segment's bytes checked against its manifest, and a transaction that two segments hold
// (sent again after a crash, before the catalog knew the first) given once.
import { promisify } from 'node:util';
import { gunzip } from 'node:zlib';
import type { Catalog } from '../catalog';
import { sha256Hex } from '../checksum';
import { ErrorType, TenantsafeError } from '../errors';
import { requireKeyring } from '../encryption';
import { readSegmentManifest, streamPrefix, type ChangeSegmentManifest } from '../format/changeLog';
import type { ObjectStore } from '../storage/types';
import { parseMicros } from '../time';
import { formatLsn, parseLsn } from '../wal/names';
import type { Change } from './replication';

const gunzipAsync = promisify(gunzip);

/** A transaction as the log holds it: LSNs as bigints, the commit time in microseconds. */
export interface LoggedTransaction {
  xid: number;
  commitLsn: bigint;
  endLsn: bigint;
  commitTimeUs: bigint;
  /** the commit time as stored (ISO-8601, microseconds) */
  commitTime: string;
  changes: Change[];
}

/** The columns of each table as a segment's changes give them. */
export type SegmentRelations = ChangeSegmentManifest['relations'];

/**
 * The stream's transactions whose commit starts at or after `fromLsn`, in commit order, with the
 * columns of the segment each came from. The caller stops reading where it wants.
 */
export async function* readChangeLog(
  store: ObjectStore,
  catalog: Catalog,
  stream: string,
  fromLsn: bigint,
): AsyncGenerator<{ txn: LoggedTransaction; relations: SegmentRelations }> {
  let last = -1n;
  for (const seg of await catalog.listChangeSegments(stream, formatLsn(fromLsn))) {
    const manifest = await readSegmentManifest(store, seg.manifestKey);
    const key = streamPrefix(stream) + manifest.object.key;
    const stored = await store.getBytes(key);
    if (sha256Hex(stored) !== manifest.object.sha256) {
      throw new TenantsafeError(ErrorType.CorruptBackup, `Change log segment ${key} does not match its manifest's sha256.`, 'The change log cannot be trusted past this segment: restore from a backup, or a PITR clone.');
    }
    const gzipped = manifest.encryption ? (await requireKeyring(store, `Change log segment ${key}`).open(manifest.encryption, `Change log segment ${key}`)).openBuffer(stored, key) : stored;
    for (const line of (await gunzipAsync(gzipped)).toString('utf8').split('\n')) {
      if (!line) continue;
      const t = JSON.parse(line) as { xid: number; commitLsn: string; endLsn: string; commitTime: string; changes: Change[] };
      const commitLsn = parseLsn(t.commitLsn);
      if (commitLsn < fromLsn || commitLsn <= last) continue;
      last = commitLsn;
      yield { txn: { xid: t.xid, commitLsn, endLsn: parseLsn(t.endLsn), commitTimeUs: parseMicros(t.commitTime), commitTime: t.commitTime, changes: t.changes }, relations: manifest.relations };
    }
  }
}
