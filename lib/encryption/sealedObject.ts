// The encrypted object format (docs/format.md, "Encryption"): AES-256-GCM in chunks, so a reader
// checks each chunk's tag before it hands its bytes on (a whole-object GCM would release
// unchecked plaintext until the very end), and a cut or reordered object fails like a flipped byte.
//
//   header   'TSE1' | data key id (16 bytes) | nonce prefix (8 random bytes)        28 bytes
//   chunk i  AES-256-GCM of up to 256 KiB of plaintext, then its 16-byte tag
//            nonce: nonce prefix | i (uint32 big-endian); additional data: header | final flag (1: last chunk)
//
// Every object ends with exactly one final chunk (possibly empty), so an object cut at a chunk
// boundary fails too.
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import { ErrorType, TenantsafeError } from '../errors';

export const sealedMagic = Buffer.from('TSE1');
export const keyIdBytes = 16;
const prefixBytes = 8;
export const headerBytes = sealedMagic.length + keyIdBytes + prefixBytes;
export const chunkBytes = 256 << 10;
const tagBytes = 16;
/** what the objects' manifests name the scheme by */
export const objectCipher = 'aes-256-gcm-chunked';

/** True when the bytes start as an encrypted object does (objects without a manifest: the WAL archive). */
export function isSealed(head: Buffer): boolean {
  return head.length >= headerBytes && head.subarray(0, sealedMagic.length).equals(sealedMagic);
}

/** The data key id an encrypted object names in its header (hex). */
export function sealedKeyId(head: Buffer): string {
  return head.subarray(sealedMagic.length, sealedMagic.length + keyIdBytes).toString('hex');
}

function nonce(prefix: Buffer, i: number): Buffer {
  const n = Buffer.alloc(12);
  prefix.copy(n, 0);
  n.writeUInt32BE(i, prefixBytes);
  return n;
}

function aad(header: Buffer, final: boolean): Buffer {
  return Buffer.concat([header, Buffer.from([final ? 1 : 0])]);
}

function sealChunk(key: Buffer, header: Buffer, i: number, plain: Buffer, final: boolean): Buffer[] {
  const c = createCipheriv('aes-256-gcm', key, nonce(header.subarray(headerBytes - prefixBytes), i));
  c.setAAD(aad(header, final));
  return [c.update(plain), c.final(), c.getAuthTag()];
}

function openChunk(key: Buffer, header: Buffer, i: number, sealed: Buffer, final: boolean, name: string): Buffer {
  const d = createDecipheriv('aes-256-gcm', key, nonce(header.subarray(headerBytes - prefixBytes), i));
  d.setAAD(aad(header, final));
  d.setAuthTag(sealed.subarray(sealed.length - tagBytes));
  try {
    const plain = d.update(sealed.subarray(0, sealed.length - tagBytes));
    const rest = d.final(); // GCM is a stream mode: empty, unless a future OpenSSL buffers
    return rest.length === 0 ? plain : Buffer.concat([plain, rest]);
  } catch {
    throw tampered(name, `chunk ${i} fails its AES-GCM authentication`);
  }
}

export function tampered(name: string, what: string): TenantsafeError {
  return new TenantsafeError(ErrorType.CorruptBackup, `Encrypted object ${name} is damaged: ${what} (altered, cut short, or not written under this key).`, 'Restore from another backup; run `tenantsafe verify <backupId>` on this one.');
}

function newHeader(keyId: Buffer): Buffer {
  return Buffer.concat([sealedMagic, keyId, randomBytes(prefixBytes)]);
}

/** Encrypts a whole buffer (a pack's part, a WAL segment). */
export function sealBuffer(key: Buffer, keyId: Buffer, plain: Buffer): Buffer {
  const header = newHeader(keyId);
  const out: Buffer[] = [header];
  let i = 0;
  for (let at = 0; ; at += chunkBytes, i++) {
    const final = plain.length - at <= chunkBytes;
    out.push(...sealChunk(key, header, i, plain.subarray(at, at + chunkBytes), final));
    if (final) break;
  }
  return Buffer.concat(out);
}

/** Decrypts and checks a whole buffer; CorruptBackup naming `name` when it does not authenticate. */
export function openBuffer(key: Buffer, sealed: Buffer, name: string): Buffer {
  if (!isSealed(sealed)) throw tampered(name, 'it has no encryption header');
  const header = sealed.subarray(0, headerBytes);
  const out: Buffer[] = [];
  let i = 0;
  for (let at = headerBytes; ; at += chunkBytes + tagBytes, i++) {
    const rest = sealed.length - at;
    if (rest < tagBytes) throw tampered(name, 'it ends inside a chunk');
    const final = rest <= chunkBytes + tagBytes;
    out.push(openChunk(key, header, i, sealed.subarray(at, at + Math.min(rest, chunkBytes + tagBytes)), final, name));
    if (final) break;
  }
  return Buffer.concat(out);
}

/** Collects chunks until more than `size` bytes are at hand (so the chunk taken is known not to be the last). */
class ChunkBuffer {
  private parts: Buffer[] = [];
  length = 0;
  push(b: Buffer): void {
    this.parts.push(b);
    this.length += b.length;
  }
  /** The first `n` bytes: a view into the first part when it holds them, a copy only when they straddle parts. */
  take(n: number): Buffer {
    this.length -= n;
    const first = this.parts[0];
    if (first && first.length >= n) {
      if (first.length === n) this.parts.shift();
      else this.parts[0] = first.subarray(n);
      return first.subarray(0, n);
    }
    const out = Buffer.allocUnsafe(n);
    let at = 0;
    while (at < n) {
      const part = this.parts[0];
      const used = part.copy(out, at, 0, n - at);
      at += used;
      if (used === part.length) this.parts.shift();
      else this.parts[0] = part.subarray(used);
    }
    return out;
  }
}

/** Encrypts a stream into the format above. */
export class SealStream extends Transform {
  private readonly header: Buffer;
  private readonly pending = new ChunkBuffer();
  private i = 0;
  constructor(
    private readonly key: Buffer,
    keyId: Buffer,
  ) {
    // a reader gets each sealed piece as it is: in byte mode, read() joins all it has queued into a new buffer
    super({ readableObjectMode: true, readableHighWaterMark: 4 });
    this.header = newHeader(keyId);
    this.push(this.header);
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.pending.push(chunk);
    while (this.pending.length > chunkBytes) for (const b of sealChunk(this.key, this.header, this.i++, this.pending.take(chunkBytes), false)) this.push(b);
    done();
  }
  override _flush(done: TransformCallback): void {
    for (const b of sealChunk(this.key, this.header, this.i++, this.pending.take(this.pending.length), true)) this.push(b);
    done();
  }
}

/** Decrypts a stream of the format above, each chunk checked before its bytes go on. */
export class OpenStream extends Transform {
  private header: Buffer | null = null;
  private readonly pending = new ChunkBuffer();
  private i = 0;
  constructor(
    private readonly key: (keyId: string) => Buffer,
    private readonly name: string,
  ) {
    super();
  }
  private keyBytes: Buffer | null = null;
  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    try {
      this.pending.push(chunk);
      if (!this.header) {
        if (this.pending.length < headerBytes) return done();
        const header = Buffer.from(this.pending.take(headerBytes));
        if (!isSealed(header)) throw tampered(this.name, 'it has no encryption header');
        this.keyBytes = this.key(sealedKeyId(header));
        this.header = header;
      }
      while (this.pending.length > chunkBytes + tagBytes) this.push(openChunk(this.keyBytes!, this.header, this.i++, this.pending.take(chunkBytes + tagBytes), false, this.name));
      done();
    } catch (err) {
      done(err as Error);
    }
  }
  override _flush(done: TransformCallback): void {
    try {
      if (!this.header || this.pending.length < tagBytes) throw tampered(this.name, 'it ends before its last chunk');
      this.push(openChunk(this.keyBytes!, this.header, this.i++, this.pending.take(this.pending.length), true, this.name));
      done();
    } catch (err) {
      done(err as Error);
    }
  }
}
