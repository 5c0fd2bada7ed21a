// Stream plumbing.
import { open, type FileHandle } from 'node:fs/promises';
import { Readable, Transform, Writable, type TransformCallback } from 'node:stream';

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

const readBufferBytes = 1 << 20;
const minReadBytes = 128 << 10;

/**
 * Reads a file while another process writes it (as `tail -f` does), to its end once `writerDone()`
 * says the writer has exited; a file never created ends empty (the caller judges the writer's
 * exit). `onRead` hears how far it has read, so the caller may free what lies behind. Between
 * polls it waits `pollMs`, or until `wake()` (the caller saw the writer exit).
 */
export class FollowedFile extends Readable {
  private file: FileHandle | null = null;
  private position = 0;
  private buffer = Buffer.alloc(0);
  private filled = 0;
  private endWait: (() => void) | null = null;

  constructor(
    private readonly path: string,
    private readonly writerDone: () => boolean,
    private readonly opts: { pollMs?: number; onRead?: (position: number) => void } = {},
  ) {
    super({ highWaterMark: 1 << 20 });
  }

  get bytesRead(): number {
    return this.position;
  }

  /** Ends the wait between two polls now: the last poll, once the writer has exited, need not wait its turn. */
  wake(): void {
    this.endWait?.();
  }

  private waitToPoll(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => this.endWait?.(), ms);
      this.endWait = () => {
        clearTimeout(timer);
        this.endWait = null;
        resolve();
      };
    });
  }

  override _read(): void {
    this.readMore().catch((err: unknown) => this.destroy(err as Error));
  }

  private async readMore(): Promise<void> {
    const pollMs = this.opts.pollMs ?? 20;
    // Reads fill one buffer piece by piece, each piece handed on as a view of it: a new buffer per
    // read, however little it found, made the garbage collector run for memory never used.
    if (this.buffer.length - this.filled < minReadBytes) {
      this.buffer = Buffer.allocUnsafe(readBufferBytes);
      this.filled = 0;
    }
    const { buffer, filled } = this;
    for (;;) {
      // destroyed while it waited: opening the file again would leak its handle
      if (this.destroyed) return;
      // sampled before the read: what the writer wrote before it exited is there to read
      const done = this.writerDone();
      if (!this.file) {
        try {
          this.file = await open(this.path, 'r');
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
          if (done) return void this.push(null);
          await this.waitToPoll(pollMs);
          continue;
        }
      }
      const { bytesRead } = await this.file.read(buffer, filled, buffer.length - filled, this.position);
      if (bytesRead > 0) {
        this.position += bytesRead;
        this.filled = filled + bytesRead;
        this.opts.onRead?.(this.position);
        return void this.push(buffer.subarray(filled, filled + bytesRead));
      }
      if (done) return void this.push(null);
      await this.waitToPoll(pollMs);
    }
  }

  override _destroy(err: Error | null, callback: (err?: Error | null) => void): void {
    this.wake();
    const file = this.file;
    this.file = null;
    (file ? file.close() : Promise.resolve()).then(() => callback(err), () => callback(err));
  }
}
