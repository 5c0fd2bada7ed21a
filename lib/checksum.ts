// Logical row checksums: an order-independent digest of a set of rows, computed from their
// COPY text lines (under reproducibleSessionSettings). Each row is hashed with two seeded
// murmur3 lanes (64 bits); the lanes are summed mod 2^32, so row order does not matter and
// duplicate rows count. Not cryptographic: it detects lost, extra or altered rows, fast
// enough (~1.4 ns/byte, both lanes in one pass) to run inline with a backup. Specified in
// docs/format.md.
import { createHash } from 'node:crypto';
import { Transform, type Readable, type TransformCallback } from 'node:stream';
import { ErrorType, TenantsafeError } from './errors';

export const rowChecksumAlgorithm = 'murmur3x2-sum64';

const seedA = 0x9747b28c;
const seedB = 0x2545f491;
const newline = 10;

/** Finishes one murmur3 lane. */
function fmix(h: number, length: number): number {
  h ^= length;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** Accumulates rows given as newline-terminated COPY text, in chunks split anywhere. */
export class RowDigest {
  rows = 0;
  bytes = 0;
  private sumA = 0;
  private sumB = 0;
  private carry: Buffer | null = null;

  update(chunk: Buffer): void {
    this.bytes += chunk.length;
    let buf = chunk;
    if (this.carry) {
      buf = Buffer.concat([this.carry, chunk]);
      this.carry = null;
    }
    let start = 0;
    for (let nl = buf.indexOf(newline, start); nl !== -1; nl = buf.indexOf(newline, start)) {
      this.addRow(buf, start, nl);
      start = nl + 1;
    }
    if (start < buf.length) this.carry = Buffer.from(buf.subarray(start));
  }

  /** murmur3 (32-bit) of the row under both seeds, in one pass over its bytes: the lanes differ only in their state */
  private addRow(buf: Uint8Array, start: number, end: number): void {
    let a = seedA;
    let b = seedB;
    let i = start;
    const blocksEnd = end - ((end - start) & 3);
    for (; i < blocksEnd; i += 4) {
      let k = buf[i] | (buf[i + 1] << 8) | (buf[i + 2] << 16) | (buf[i + 3] << 24);
      k = Math.imul(k, 0xcc9e2d51);
      k = (k << 15) | (k >>> 17);
      k = Math.imul(k, 0x1b873593);
      a ^= k;
      a = (a << 13) | (a >>> 19);
      a = (Math.imul(a, 5) + 0xe6546b64) | 0;
      b ^= k;
      b = (b << 13) | (b >>> 19);
      b = (Math.imul(b, 5) + 0xe6546b64) | 0;
    }
    let k = 0;
    switch (end - i) {
      case 3:
        k ^= buf[i + 2] << 16;
      // falls through
      case 2:
        k ^= buf[i + 1] << 8;
      // falls through
      case 1:
        k ^= buf[i];
        k = Math.imul(k, 0xcc9e2d51);
        k = (k << 15) | (k >>> 17);
        k = Math.imul(k, 0x1b873593);
        a ^= k;
        b ^= k;
    }
    this.sumA = (this.sumA + fmix(a, end - start)) >>> 0;
    this.sumB = (this.sumB + fmix(b, end - start)) >>> 0;
    this.rows++;
  }

  /** 16 hex digits. Throws if the input did not end with a newline (a truncated row). */
  digest(): string {
    if (this.carry) {
      throw new TenantsafeError(ErrorType.CorruptBackup, `Row data ends in the middle of a row (${this.carry.length} bytes after the last newline).`, 'The object was cut short: restore from another backup; run `tenantsafe verify <backupId>` on this one.');
    }
    return this.sumA.toString(16).padStart(8, '0') + this.sumB.toString(16).padStart(8, '0');
  }
}

/** A pass-through stream that digests the COPY text flowing through it. */
export class RowDigestStream extends Transform {
  readonly digest = new RowDigest();
  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.digest.update(chunk);
    done(null, chunk);
  }
}

/**
 * The row checksum of a set of rows after some rows were removed from it and others added,
 * from the three sets' checksums alone (each lane a sum mod 2^32: sums subtract).
 */
export function adjustRowChecksum(base: string, removed: string, added: string): string {
  const lane = (hex: string, i: number) => parseInt(hex.slice(i * 8, i * 8 + 8), 16);
  return [0, 1].map((i) => ((lane(base, i) - lane(removed, i) + lane(added, i)) >>> 0).toString(16).padStart(8, '0')).join('');
}

/** The row checksum of no rows. */
export const emptyRowChecksum = new RowDigest().digest();

/** A set of rows by its count and row checksum. */
export interface RowSetDigest {
  rows: number;
  checksum: string;
}

/** No rows. */
export const noRows: RowSetDigest = { rows: 0, checksum: emptyRowChecksum };

/** The count and row checksum of a set of rows after some were removed from it and others added (adjustRowChecksum). */
export function adjustRows(base: RowSetDigest, removed: RowSetDigest, added: RowSetDigest): RowSetDigest {
  return { rows: base.rows - removed.rows + added.rows, checksum: adjustRowChecksum(base.checksum, removed.checksum, added.checksum) };
}

/** One checksum for a tenant: over every table's row count and row checksum, in table order. */
export function tenantChecksum(tables: { table: string; rows: number; rowChecksum: string }[]): string {
  const h = createHash('sha256');
  for (const t of [...tables].sort((a, b) => a.table.localeCompare(b.table))) h.update(`${t.table}\t${t.rows}\t${t.rowChecksum}\n`);
  return h.digest('hex');
}

/** A pass-through stream that sha256es and counts the bytes flowing through it. */
export class Sha256Stream extends Transform {
  private readonly hash = createHash('sha256');
  private hexDigest: string | undefined;
  bytes = 0;
  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.hash.update(chunk);
    this.bytes += chunk.length;
    done(null, chunk);
  }
  /** The sha256 of what went through, in hex; the same on every call (a hash can be finished only once). */
  hex(): string {
    this.hexDigest ??= this.hash.digest('hex');
    return this.hexDigest;
  }
}

/** The sha256 (hex) of everything a stream holds. */
export async function sha256OfStream(source: Readable): Promise<string> {
  // read directly, not through pipe(), which would leave a source's error unseen and this waiting forever
  const hash = createHash('sha256');
  for await (const chunk of source) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** JSON with object keys sorted at every level: the form checksums are taken of. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_k, v: unknown) =>
    v && typeof v === 'object' && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
      : v,
  );
}

export function sha256Hex(data: string | Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}
