// Stream plumbing.
import { availableParallelism } from 'node:os';
import { Transform, Writable, type TransformCallback } from 'node:stream';
import { promisify } from 'node:util';
import { gzip } from 'node:zlib';

const gzipAsync = promisify(gzip);

/** A sink that drops what it is given: the end of a pipeline that only checks what flows through it. */
export function discard(): Writable {
  return new Writable({ write: (_chunk, _enc, done) => done() });
}

/** Passes the first `n` lines on and drops the rest (the checks before it still see every line). */
export class FirstLines extends Transform {
  constructor(private left: number) {
    super();
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    let end = 0;
    while (this.left > 0 && end < chunk.length) {
      const newline = chunk.indexOf(10, end);
      end = newline === -1 ? chunk.length : newline + 1;
      if (newline !== -1) this.left--;
    }
    done(null, end > 0 ? chunk.subarray(0, end) : undefined);
  }
}

/**
 * Gathers small chunks into pieces of at least `size` bytes. A pipe hands Node 64 KiB at a time:
 * passed on as they come, each becomes a write of its own to a file or another process (a
 * thread-pool trip or a context switch per 64 KiB), which cost the base backup and its restore
 * more than the copying here.
 */
export class Rechunk extends Transform {
  private parts: Buffer[] = [];
  private held = 0;

  constructor(private readonly size: number) {
    super({ highWaterMark: size });
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.parts.push(chunk);
    this.held += chunk.length;
    if (this.held < this.size) return done();
    done(null, this.piece());
  }

  override _flush(done: TransformCallback): void {
    done(null, this.held > 0 ? this.piece() : undefined);
  }

  private piece(): Buffer {
    const piece = this.parts.length === 1 ? this.parts[0] : Buffer.concat(this.parts, this.held);
    this.parts = [];
    this.held = 0;
    return piece;
  }
}

/**
 * gzip on several threads, as pigz does: the stream is cut into blocks of `blockSize`, each block
 * is compressed on its own in the thread pool and written out, in order, as one gzip member.
 * Concatenated members are one valid gzip file (RFC 1952 2.2): gunzip, tar -z and Node's zlib
 * read them as one stream. Each block costs ~20 bytes and starts without the previous 32 KiB of
 * history. Large blocks keep zlib's thread-pool round trips few (fed the 64 KiB a pipe read
 * yields, one gzip stream spent much of its time handing chunks over), and the block buffers are
 * reused: allocating a new one per block made V8 collect garbage twice as often (bench/README.md).
 */
export class ParallelGzip extends Transform {
  /** compressed blocks in input order, oldest first */
  private readonly inFlight: Promise<Buffer>[] = [];
  private readonly spare: Buffer[] = [];
  private block: Buffer | null = null;
  private filled = 0;
  private blocks = 0;
  private readonly threads: number;

  constructor(private readonly opts: { level: number; blockSize: number; threads?: number }) {
    super();
    // libuv's pool has 4 threads by default: leave one for file system work
    this.threads = opts.threads ?? Math.max(1, Math.min(availableParallelism(), 3));
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.fill(chunk, 0).then(() => done(), done);
  }

  override _flush(done: TransformCallback): void {
    const drain = async () => {
      // an empty input still becomes valid gzip: one empty member
      if (this.filled > 0 || this.blocks === 0) await this.compressBlock();
      while (this.inFlight.length > 0) await this.pushOldest();
    };
    drain().then(() => done(), done);
  }

  private async fill(chunk: Buffer, from: number): Promise<void> {
    for (let off = from; off < chunk.length; ) {
      this.block ??= this.spare.pop() ?? Buffer.allocUnsafe(this.opts.blockSize);
      const n = chunk.copy(this.block, this.filled, off);
      this.filled += n;
      off += n;
      if (this.filled === this.block.length) await this.compressBlock();
    }
  }

  /** Hands the current block to the thread pool; waits while every thread is busy. */
  private async compressBlock(): Promise<void> {
    const block = this.block ?? Buffer.alloc(0);
    const compressed = gzipAsync(block.subarray(0, this.filled), { level: this.opts.level, chunkSize: 256 << 10 });
    this.block = null;
    this.filled = 0;
    this.blocks++;
    // The buffer is free again once zlib is done with it, whatever the outcome (awaited in order by pushOldest).
    void compressed.then(() => block.length > 0 && this.spare.push(block), () => undefined);
    this.inFlight.push(compressed);
    if (this.inFlight.length >= this.threads) await this.pushOldest();
  }

  private async pushOldest(): Promise<void> {
    this.push(await this.inFlight.shift()!);
  }
}
