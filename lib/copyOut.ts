// COPY … TO STDOUT as a stream of the rows' text: pg-copy-streams' copy-to, which takes the
// connection's socket over and hands it back, with its message parser replaced by one that moves
// the CopyData payloads of each socket chunk together in place, over their headers. Its own
// parser made a Buffer view of every row and joined them per chunk into a new zero-filled buffer:
// for rows of some tens of bytes, a fifth of the CPU of reading them (bench/README.md).
import { to as copyTo, type CopyToStreamQuery } from 'pg-copy-streams';

/** the backend messages a COPY out meets (protocol-message-formats) */
const message = { copyData: 0x64, copyDone: 0x63, copyOutResponse: 0x48, errorResponse: 0x45, notice: 0x4e, notification: 0x41, parameterStatus: 0x53 };
/** the messages that may come between CopyData ones; anything else ends the COPY (CopyDone, CommandComplete, …) */
const interspersed = new Set([message.copyData, message.copyOutResponse, message.notice, message.notification, message.parameterStatus]);
/** a message's code byte and its length */
const headerBytes = 5;

/** What copyOut uses of pg-copy-streams' stream beyond its public API (checked: see usesOwnParser). */
interface CopyToInternals {
  _parse(chunk: Buffer): boolean | undefined;
  /** gives the socket back to pg, first feeding it what `_buffer` still holds */
  _detach(): void;
  _cleanup(): void;
  _buffer: { push(b: Buffer): void; size: number };
}

/** The library's internals as this version has them; another version keeps its own parser. */
function usesOwnParser(q: object): q is CopyToInternals {
  const s = q as Partial<CopyToInternals>;
  return typeof s._parse === 'function' && typeof s._detach === 'function' && typeof s._cleanup === 'function' && typeof s._buffer?.push === 'function' && s._buffer.size === 0;
}

/** `COPY (…) TO STDOUT` for client.query(): a Readable of the COPY text, as pg-copy-streams' `to` gives it. */
export function copyOut(sql: string): CopyToStreamQuery {
  const q = copyTo(sql);
  if (usesOwnParser(q)) q._parse = new CopyOutParser(q).parse;
  return q;
}

class CopyOutParser {
  /** the start of a message whose header came cut in two */
  private carry: Buffer | null = null;
  private code = 0;
  /** bytes of the current message's content not yet seen */
  private unread = 0;
  private ended = false;

  constructor(private readonly stream: CopyToInternals & CopyToStreamQuery) {}

  /** One chunk from the socket: pushes its rows' bytes; false when the reader wants no more for now. */
  parse = (chunk: Buffer): boolean | undefined => {
    if (this.ended) return false;
    const buf = this.carry ? Buffer.concat([this.carry, chunk]) : chunk;
    this.carry = null;
    // the rows' bytes are moved to the front of the chunk, over the headers already read: the
    // chunk is this stream's alone (pg's reader is detached), and no copy is made
    let o = 0;
    let i = 0;
    while (i < buf.length) {
      if (this.unread > 0) {
        const n = Math.min(this.unread, buf.length - i);
        if (this.code === message.copyData) {
          if (o !== i) buf.copyWithin(o, i, i + n);
          o += n;
        }
        i += n;
        this.unread -= n;
        continue;
      }
      if (buf.length - i < headerBytes) {
        this.carry = Buffer.from(buf.subarray(i));
        break;
      }
      const code = buf[i];
      if (!interspersed.has(code)) {
        // an ErrorResponse (pg reports it: the rows so far are not handed on, as the library does
        // too), or the end (CopyDone, then CommandComplete and ReadyForQuery, which pg reads)
        const failed = code === message.errorResponse;
        if (!failed && o > 0) this.stream.push(buf.subarray(0, o));
        this.end(buf.subarray(code === message.copyDone ? i + headerBytes : i), failed);
        return false;
      }
      this.code = code;
      this.unread = buf.readUInt32BE(i + 1) - 4;
      i += headerBytes;
    }
    return o > 0 ? this.stream.push(buf.subarray(0, o)) : true;
  };

  private end(rest: Buffer, failed: boolean): void {
    this.ended = true;
    if (rest.length > 0) this.stream._buffer.push(rest);
    this.stream._detach();
    if (failed) return;
    this.stream.push(null);
    this.stream._cleanup();
  }
}
