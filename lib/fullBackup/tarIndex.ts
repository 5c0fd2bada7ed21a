// Reads the members of a tar stream as it flows past (pg_basebackup -Ft writes ustar), without
// buffering it: names, sizes and types of every member, and the bytes of the few members asked
// for (the backup_manifest that pg_basebackup appends last).
import { Transform, type TransformCallback } from 'node:stream';

const block = 512;

export interface TarMember {
  name: string;
  size: number;
  /** '0' file, '5' directory, '2' symlink, ... */
  type: string;
}

function field(header: Buffer, start: number, length: number): string {
  const raw = header.subarray(start, start + length);
  const nul = raw.indexOf(0);
  return raw.subarray(0, nul === -1 ? length : nul).toString('utf8');
}

/** Octal, or base-256 (high bit set) for members over 8 GiB. */
function sizeOf(header: Buffer): number {
  if (header[124] & 0x80) {
    let n = 0;
    for (let i = 125; i < 136; i++) n = n * 256 + header[i];
    return n;
  }
  return parseInt(field(header, 124, 12).trim() || '0', 8);
}

export class TarIndex extends Transform {
  readonly members: TarMember[] = [];
  readonly captured = new Map<string, Buffer>();
  /** true once the end-of-archive block was seen */
  complete = false;
  bytes = 0;

  private header = Buffer.alloc(0);
  /** bytes of data and padding of the current member still to pass */
  private skip = 0;
  private dataLeft = 0;
  private capture: Buffer[] | null = null;
  private captureName = '';

  constructor(private readonly captureNames: ReadonlySet<string>) {
    // room for a few MiB: the pipe keeps draining while the compressor waits for its threads
    super({ highWaterMark: 4 << 20 });
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.bytes += chunk.length;
    let off = 0;
    while (off < chunk.length && !this.complete) {
      if (this.skip > 0) {
        const n = Math.min(this.skip, chunk.length - off);
        if (this.capture && this.dataLeft > 0) {
          const take = Math.min(n, this.dataLeft);
          this.capture.push(Buffer.from(chunk.subarray(off, off + take)));
          this.dataLeft -= take;
        }
        this.skip -= n;
        off += n;
        if (this.skip === 0) this.finishMember();
        continue;
      }
      const need = block - this.header.length;
      this.header = Buffer.concat([this.header, chunk.subarray(off, off + need)]);
      off += Math.min(need, chunk.length - off);
      if (this.header.length === block) this.startMember(this.header);
    }
    done(null, chunk);
  }

  private startMember(header: Buffer): void {
    this.header = Buffer.alloc(0);
    if (header.every((b) => b === 0)) {
      this.complete = true;
      return;
    }
    const prefix = field(header, 345, 155);
    const name = (prefix ? `${prefix}/` : '') + field(header, 0, 100);
    const member = { name: name.replace(/^\.\//, ''), size: sizeOf(header), type: String.fromCharCode(header[156] || 48) };
    this.members.push(member);
    this.dataLeft = member.size;
    this.skip = Math.ceil(member.size / block) * block;
    this.capture = this.captureNames.has(member.name) ? [] : null;
    this.captureName = member.name;
    if (this.skip === 0) this.finishMember();
  }

  private finishMember(): void {
    if (this.capture) this.captured.set(this.captureName, Buffer.concat(this.capture));
    this.capture = null;
  }
}
