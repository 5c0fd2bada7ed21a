// Packs (docs/format.md, "Packs"): one object holding many small tenants' data of one table, each
// tenant's part a frame (gzip member) of its own, addressed by offset, length and sha256 in that tenant's
// manifest, so a restore reads only its byte range. The batch's COPY arrives grouped by tenant
// (`tenant \t row`); the splitter cuts it into parts, the writer compresses them (zstd in
// process; gzip's big parts on the thread pool) and appends them, in order, to the pack.
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { PassThrough, Writable, type TransformCallback } from 'node:stream';
import { RowDigest } from '../checksum';
import { ErrorType, TenantsafeError } from '../errors';
import type { DataKey } from '../encryption';
import { compressPart, type DataCompression } from '../format/dataCompression';
import type { BatchedPart } from '../format/tenantManifest';
import type { ObjectStore, PutResult } from '../storage/types';

/** One tenant's part of a pack, as its manifest records it. */
export type PackPart = BatchedPart;

/** Appends tenants' parts to one pack object as they complete, compressing a few at once. */
export class PackWriter {
  readonly parts = new Map<string, PackPart>();
  private readonly out = new PassThrough();
  private readonly put: Promise<PutResult>;
  private readonly inFlight: { tenantId: string; member: Promise<Buffer>; part: Omit<PackPart, 'offset' | 'bytes' | 'sha256'> }[] = [];
  private offset = 0;

  /** `dataKeys`: each tenant's part is encrypted on its own under its tenant's key (lib/encryption) */
  constructor(
    store: ObjectStore,
    readonly key: string,
    private readonly compression: DataCompression,
    signal?: AbortSignal,
    private readonly dataKeys?: ReadonlyMap<string, DataKey>,
  ) {
    this.put = store.put(key, this.out, { contentType: 'application/octet-stream', signal });
    // awaited in finish(); a failure meanwhile also ends the writes waiting for drain
    this.put.catch(() => undefined);
    // an abort before the store began reading would otherwise be an unhandled 'error' (put reports it)
    this.out.on('error', () => undefined);
  }

  async add(tenantId: string, raw: Buffer, digest: RowDigest): Promise<void> {
    const dataKey = this.dataKeys?.get(tenantId);
    this.inFlight.push({
      tenantId,
      member: dataKey ? compressPart(this.compression, raw).then((b) => dataKey.sealBuffer(b)) : compressPart(this.compression, raw),
      part: { rows: digest.rows, rawBytes: digest.bytes, rowChecksum: digest.digest() },
    });
    // libuv's pool has 4 threads: three compress, one is left for the file system
    if (this.inFlight.length >= 3) await this.writeOldest();
  }

  /** Writes what is still being compressed, one empty member for the tenants without a part, and ends the pack. */
  async finish(tenantIds: readonly string[]): Promise<{ key: string; bytes: number; sha256: string }> {
    while (this.inFlight.length > 0) await this.writeOldest();
    const empty = tenantIds.filter((t) => !this.parts.has(t));
    if (this.dataKeys) {
      // encrypted, each tenant's empty part is its own: an erased tenant's parts must all be unreadable
      for (const t of empty) await this.add(t, Buffer.alloc(0), new RowDigest());
      while (this.inFlight.length > 0) await this.writeOldest();
    } else if (empty.length > 0) {
      // the part of every tenant with no row in the table: one empty frame per pack, shared
      const emptyMember = await compressPart(this.compression, Buffer.alloc(0));
      const offset = this.offset;
      await this.write(emptyMember);
      const part: PackPart = { offset, bytes: emptyMember.length, sha256: sha256Of(emptyMember), rows: 0, rawBytes: 0, rowChecksum: new RowDigest().digest() };
      for (const t of empty) this.parts.set(t, part);
    }
    this.out.end();
    const put = await this.put;
    if (put.bytes !== this.offset) {
      throw new TenantsafeError(ErrorType.StorageUnavailable, `Pack ${this.key} was stored with ${put.bytes} bytes, ${this.offset} were written.`, 'Storage lost data on the way: the batch is retried by itself.');
    }
    return { key: this.key, bytes: put.bytes, sha256: put.sha256 };
  }

  /** Nothing of the pack becomes visible. */
  abort(err: Error): void {
    this.out.destroy(err);
  }

  private async writeOldest(): Promise<void> {
    const { tenantId, member, part } = this.inFlight.shift()!;
    const buf = await member;
    this.parts.set(tenantId, { offset: this.offset, bytes: buf.length, sha256: sha256Of(buf), ...part });
    await this.write(buf);
  }

  private async write(buf: Buffer): Promise<void> {
    this.offset += buf.length;
    if (!this.out.write(buf)) await Promise.race([once(this.out, 'drain'), this.put]);
  }
}


const sha256Of = (buf: Buffer) => createHash('sha256').update(buf).digest('hex');

/**
 * Takes COPY text whose first field is the tenant id (as COPY writes it); hands each tenant's
 * rows, without that field, to the pack as one part. `grouped`: the lines come grouped by tenant
 * and each part goes as soon as the next tenant starts; else every tenant's rows are gathered in
 * memory and the parts go at the end (no sort in Postgres: for tables small enough). The rows
 * are byte for byte those a single-tenant COPY writes, so the row checksums are the same.
 * `others`: what a row of an id outside the batch means: the query filtered by the batch, so
 * the query and the reader disagree (refuse); or the query read every row (skip it: a value
 * of the tenant column that is no tenant).
 */
export class TenantSplitter extends Writable {
  private readonly open = new Map<string, { chunks: Buffer[]; digest: RowDigest }>();
  /** the tenant whose rows are coming (`skipped`: an id outside the batch, its rows dropped) */
  private current: { tenantId: string; field: Buffer; chunks: Buffer[]; digest: RowDigest; skipped?: boolean } | null = null;
  private carry: Buffer | null = null;

  /** `fields`: each tenant id of the batch as COPY text writes it, to the id */
  constructor(
    private readonly fields: Map<string, string>,
    private readonly pack: PackWriter,
    private readonly grouped: boolean,
    private readonly others: 'refuse' | 'skip' = 'refuse',
  ) {
    super();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, done: (err?: Error | null) => void): void {
    this.consume(chunk).then(() => done(), done);
  }

  override _final(done: TransformCallback): void {
    if (this.carry) return done(new TenantsafeError(ErrorType.CorruptBackup, `COPY output ended in the middle of a row (${this.carry.length} bytes).`, 'The batch is retried by itself.'));
    const flush = async () => {
      await this.endPart();
      for (const [tenantId, part] of this.open) await this.pack.add(tenantId, Buffer.concat(part.chunks), part.digest);
      this.open.clear();
    };
    flush().then(() => done(), done);
  }

  private async consume(chunk: Buffer): Promise<void> {
    const buf = this.carry ? Buffer.concat([this.carry, chunk]) : chunk;
    this.carry = null;
    // this chunk's rows without their first field, in runs of one tenant each
    const out = Buffer.allocUnsafe(buf.length);
    let o = 0;
    let runStart = 0;
    let pos = 0;
    while (pos < buf.length) {
      const nl = buf.indexOf(10, pos);
      if (nl === -1) break;
      const tab = buf.indexOf(9, pos);
      if (tab === -1 || tab > nl) throw new TenantsafeError(ErrorType.CorruptBackup, 'A batched COPY row has no tenant field.', 'Report this: the batch query and its reader disagree.');
      const cur = this.current;
      if (!cur || tab - pos !== cur.field.length || buf.compare(cur.field, 0, cur.field.length, pos, tab) !== 0) {
        this.closeRun(out.subarray(runStart, o));
        runStart = o;
        const field = buf.subarray(pos, tab);
        const tenantId = this.fields.get(field.toString('utf8'));
        if (tenantId === undefined && this.others === 'refuse') {
          throw new TenantsafeError(ErrorType.CorruptBackup, `A batched COPY row names tenant ${JSON.stringify(field.toString('utf8'))}, which is not in the batch.`, 'Report this: the batch query and its reader disagree.');
        }
        if (tenantId === undefined) {
          await this.endPart();
          this.current = { tenantId: '', field: Buffer.from(field), chunks: [], digest: new RowDigest(), skipped: true };
        } else if (this.grouped) {
          await this.endPart();
          this.current = { tenantId, field: Buffer.from(field), chunks: [], digest: new RowDigest() };
        } else {
          let part = this.open.get(tenantId);
          if (!part) this.open.set(tenantId, (part = { chunks: [], digest: new RowDigest() }));
          this.current = { tenantId, field: Buffer.from(field), ...part };
        }
      }
      if (!this.current!.skipped) o += buf.copy(out, o, tab + 1, nl + 1);
      pos = nl + 1;
    }
    this.closeRun(out.subarray(runStart, o));
    if (pos < buf.length) this.carry = Buffer.from(buf.subarray(pos));
  }

  private closeRun(run: Buffer): void {
    if (run.length === 0 || !this.current) return;
    this.current.chunks.push(run);
    this.current.digest.update(run);
  }

  private async endPart(): Promise<void> {
    const cur = this.current;
    if (!cur || !this.grouped || cur.skipped) return;
    this.current = null;
    await this.pack.add(cur.tenantId, Buffer.concat(cur.chunks), cur.digest);
  }
}

/** A value as COPY text writes it (backslash escapes; docs: COPY, "Text Format"). */
export function copyTextField(value: string): string {
  return value.replace(/[\\\n\r\t\b\f\v]/g, (c) => ({ '\\': '\\\\', '\n': '\\n', '\r': '\\r', '\t': '\\t', '\b': '\\b', '\f': '\\f', '\v': '\\v' })[c]!);
}
