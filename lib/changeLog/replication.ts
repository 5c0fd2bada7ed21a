// A logical replication stream of committed transactions, decoded from Postgres' built-in
// pgoutput plugin, and acknowledged only as far as the caller says its copy is durable.
//
// pgoutput messages are decoded by pg-logical-replication's parser. Its stream service is not
// used: with manual acknowledgement it still acknowledges what it received on a timer, reports
// one byte past the position given (a transaction starting exactly there is skipped after a
// reconnect) and resumes from what it received rather than from what was stored. Here the
// position the server hears is always the end of the last transaction the caller made durable.
import { PgoutputParser } from 'pg-logical-replication/dist/output-plugins/pgoutput/pgoutput-parser.js';
import type { Pgoutput } from 'pg-logical-replication';
import type { Client } from 'pg';
import { ErrorType, TenantsafeError } from '../errors';
import { connect, quoteIdent, quoteLiteral } from '../pg';
import { formatLsn, parseLsn } from '../wal/names';

/** A table's shape as the stream last described it: its columns in order, and its replica identity. */
export interface RelationShape {
  table: string;
  columns: string[];
  /** the replica identity's columns: the primary key, or every column with REPLICA IDENTITY FULL */
  identity: string[];
  identityKind: 'default' | 'full' | 'index' | 'nothing';
}

/** A value as Postgres prints it (text), null, or `unchanged`: a TOASTed value an update left alone (not sent). */
export type Value = string | null;

export type Change =
  | { kind: 'insert'; table: string; row: Value[] }
  | {
      kind: 'update';
      table: string;
      row: Value[];
      /** positions in `row` of TOASTed values the update left as they were: not sent */
      unchanged?: number[];
      /** the row before: every column (identity FULL), or only the key columns (others null) when the key changed */
      before?: Value[];
      beforeIsKey?: boolean;
    }
  | { kind: 'delete'; table: string; before: Value[]; beforeIsKey: boolean }
  | { kind: 'truncate'; tables: string[] };

export interface Transaction {
  xid: number;
  /** where its commit record starts: the order of commits */
  commitLsn: bigint;
  /** where its commit record ends: what is acknowledged once it is durable */
  endLsn: bigint;
  /** microseconds since the Unix epoch */
  commitTimeUs: bigint;
  changes: Change[];
  /** the shape of each table it changed, as the stream gave it then (columns of the rows, in order) */
  relations: Record<string, RelationShape>;
}

export interface StreamOptions {
  url: string;
  slot: string;
  publication: string;
  /** the end of the last transaction stored: the server sends what commits after it */
  startLsn: bigint;
  applicationName?: string;
  /** transactions received but not yet taken before the socket is paused */
  maxQueued?: number;
}

/** Postgres counts time in microseconds since 2000-01-01. */
const postgresEpochUs = 946_684_800_000_000n;

export class ReplicationStream {
  private readonly parser = new PgoutputParser();
  private readonly relations = new Map<number, RelationShape>();
  private readonly queue: Transaction[] = [];
  private current: Transaction | undefined;
  private failure: Error | undefined;
  private ended = false;
  private wake: (() => void) | undefined;
  /** the end of the last transaction the caller made durable */
  private acknowledged: bigint;
  /** the end of the last transaction received */
  private received = 0n;
  /** what the server hears as written, flushed and applied: never past what the caller made durable */
  private reported: bigint;
  private caughtUp: { lsn: bigint; serverTimeUs: bigint } | undefined;
  private readonly maxQueued: number;

  private constructor(
    private readonly client: Client,
    startLsn: bigint,
    maxQueued: number,
  ) {
    this.acknowledged = startLsn;
    this.reported = startLsn;
    this.maxQueued = maxQueued;
  }

  static async open(opts: StreamOptions): Promise<ReplicationStream> {
    const client = await connect(opts.url, opts.applicationName ?? 'tenantsafe-changelog', { replication: 'database' });
    const stream = new ReplicationStream(client, opts.startLsn, opts.maxQueued ?? 64);
    client.on('error', (err) => stream.fail(err));
    client.on('end', () => stream.fail(new TenantsafeError(ErrorType.DatabaseUnreachable, 'The replication connection closed.', 'It is opened again by the next attempt.')));
    const connection = (client as unknown as { connection: ReplicationConnection }).connection;
    connection.on('copyData', (msg: { chunk: Buffer }) => {
      try {
        stream.receive(msg.chunk, connection);
      } catch (err) {
        stream.fail(err as Error);
      }
    });
    const started = client.query(
      `START_REPLICATION SLOT ${quoteIdent(opts.slot)} LOGICAL ${formatLsn(opts.startLsn)} (proto_version '1', publication_names ${quoteLiteral(quoteIdent(opts.publication))})`,
    );
    // resolves when the server ends the stream, rejects when it refuses it or the connection drops
    started.then(
      () => stream.fail(new TenantsafeError(ErrorType.DatabaseUnreachable, 'The server ended the replication stream.', 'It is opened again by the next attempt.')),
      (err: Error) => stream.fail(err),
    );
    await new Promise<void>((resolve, reject) => {
      connection.once('replicationStart', () => resolve());
      started.catch(reject);
    });
    return stream;
  }

  /**
   * The next committed transaction, in commit order; waits for one, at most `timeoutMs` (then
   * undefined). The timer exists only while it waits: one made for every transaction (an
   * AbortSignal.timeout) cost the capture more CPU under load than decoding.
   */
  async next(signal?: AbortSignal, timeoutMs?: number): Promise<Transaction | undefined> {
    while (this.queue.length === 0) {
      if (this.failure) throw this.failure;
      if (signal?.aborted || this.ended) return undefined;
      const timedOut = await new Promise<boolean>((resolve) => {
        const done = (expired: boolean) => {
          clearTimeout(timer);
          signal?.removeEventListener('abort', aborted);
          this.wake = undefined;
          resolve(expired);
        };
        const aborted = () => done(false);
        const timer = timeoutMs === undefined ? undefined : setTimeout(() => done(true), timeoutMs);
        this.wake = () => done(false);
        signal?.addEventListener('abort', aborted, { once: true });
      });
      if (timedOut) return undefined;
    }
    const txn = this.queue.shift()!;
    if (this.queue.length < this.maxQueued / 2) this.socket()?.resume();
    return txn;
  }

  /**
   * The server's WAL position and clock at its last keepalive, if by then every transaction it
   * had sent was made durable by the caller: no change of ours lies before that position.
   */
  get caughtUpTo(): { lsn: bigint; serverTimeUs: bigint } | undefined {
    return this.caughtUp;
  }

  /** Tells the server the caller's copy is durable up to the end of this transaction. */
  acknowledge(endLsn: bigint): void {
    if (endLsn > this.acknowledged) this.acknowledged = endLsn;
    if (this.acknowledged > this.reported) this.reported = this.acknowledged;
    this.sendStatus(false);
  }

  /** The shape of a table as the stream last described it (columns of a change's row, in order). */
  relation(table: string): RelationShape | undefined {
    return [...this.relations.values()].find((r) => r.table === table);
  }

  async close(): Promise<void> {
    this.ended = true;
    this.wake?.();
    await this.client.end().catch(() => undefined);
  }

  private socket(): { pause(): void; resume(): void } | undefined {
    return (this.client as unknown as { connection: ReplicationConnection }).connection.stream;
  }

  private fail(err: Error): void {
    if (this.ended) return;
    this.failure ??= err;
    this.wake?.();
  }

  private receive(chunk: Buffer, connection: ReplicationConnection): void {
    if (chunk[0] === 0x6b /* k: keepalive */) {
      const walEnd = chunk.readBigUInt64BE(1);
      // Nothing in flight and all received made durable: no change of ours lies before walEnd,
      // so the slot may move on (else an idle publication would hold the server's WAL).
      if (this.current === undefined && this.received <= this.acknowledged) {
        this.caughtUp = { lsn: walEnd, serverTimeUs: chunk.readBigInt64BE(9) + postgresEpochUs };
        if (walEnd > this.reported) this.reported = walEnd;
      }
      if (chunk[17] === 1) this.sendStatus(false, connection);
      return;
    }
    if (chunk[0] !== 0x77 /* w: XLogData */) return;
    this.caughtUp = undefined;
    this.decode(this.parser.parse(chunk.subarray(25)));
  }

  private decode(msg: Pgoutput.Message): void {
    switch (msg.tag) {
      case 'begin':
        // the parser gives microseconds since the Unix epoch already
        this.current = { xid: msg.xid >>> 0, commitLsn: parseLsn(msg.commitLsn!), endLsn: 0n, commitTimeUs: BigInt(msg.commitTime as bigint), changes: [], relations: {} };
        return;
      case 'relation': {
        // values stay as Postgres printed them: every column's parser is the identity
        for (const c of msg.columns) c.parser = (raw: string) => raw;
        this.relations.set(msg.relationOid, {
          table: `${msg.schema}.${msg.name}`,
          columns: msg.columns.map((c) => c.name),
          identity: msg.keyColumns,
          identityKind: msg.replicaIdentity,
        });
        return;
      }
      case 'insert':
        this.push({ kind: 'insert', table: this.tableOf(msg.relation), row: this.values(msg.relation, msg.new) });
        return;
      case 'update': {
        const row = this.values(msg.relation, msg.new);
        const unchanged = msg.relation.columns.flatMap((c, i) => (msg.new[c.name] === undefined ? [i] : []));
        const before = msg.old ?? msg.key;
        this.push({
          kind: 'update',
          table: this.tableOf(msg.relation),
          row,
          ...(unchanged.length ? { unchanged } : {}),
          ...(before ? { before: this.values(msg.relation, before), beforeIsKey: !msg.old } : {}),
        });
        return;
      }
      case 'delete':
        this.push({ kind: 'delete', table: this.tableOf(msg.relation), before: this.values(msg.relation, (msg.old ?? msg.key)!), beforeIsKey: !msg.old });
        return;
      case 'truncate':
        this.push({ kind: 'truncate', tables: msg.relations.map((r) => this.tableOf(r)) });
        return;
      case 'commit': {
        const txn = this.current;
        if (!txn) throw new TenantsafeError(ErrorType.CorruptBackup, 'The replication stream sent a commit without its begin.', 'Restart the change log; report it if it happens again.');
        txn.endLsn = parseLsn(msg.commitEndLsn!);
        this.received = txn.endLsn;
        this.current = undefined;
        this.queue.push(txn);
        if (this.queue.length >= this.maxQueued) this.socket()?.pause();
        this.wake?.();
        return;
      }
      default:
        // type and origin messages: types are read as text anyway; origins are not ours to filter
        return;
    }
  }

  private push(change: Change): void {
    if (!this.current) throw new TenantsafeError(ErrorType.CorruptBackup, 'The replication stream sent a change outside a transaction.', 'Restart the change log; report it if it happens again.');
    this.current.changes.push(change);
  }

  private tableOf(relation: Pgoutput.MessageRelation): string {
    const shape = this.relations.get(relation.relationOid);
    if (shape && this.current) this.current.relations[shape.table] = shape;
    return `${relation.schema}.${relation.name}`;
  }

  /** A tuple's values in the relation's column order; a value not sent (unchanged TOAST) is null here, see `unchanged`. */
  private values(relation: Pgoutput.MessageRelation, tuple: Record<string, unknown>): Value[] {
    return relation.columns.map((c) => {
      const v = tuple[c.name];
      return v === undefined || v === null ? null : String(v);
    });
  }

  /** Standby status update: written, flushed and applied are all the caller's durable position. */
  private sendStatus(replyRequested: boolean, connection = (this.client as unknown as { connection: ReplicationConnection }).connection): void {
    const buf = Buffer.alloc(34);
    buf[0] = 0x72; // r
    buf.writeBigUInt64BE(this.reported, 1);
    buf.writeBigUInt64BE(this.reported, 9);
    buf.writeBigUInt64BE(this.reported, 17);
    buf.writeBigInt64BE(BigInt(Date.now()) * 1000n - postgresEpochUs, 25);
    buf[33] = replyRequested ? 1 : 0;
    connection.sendCopyFromChunk(buf);
  }
}

interface ReplicationConnection {
  on(event: 'copyData', listener: (msg: { chunk: Buffer }) => void): void;
  once(event: 'replicationStart', listener: () => void): void;
  sendCopyFromChunk(chunk: Buffer): void;
  stream?: { pause(): void; resume(): void };
}
