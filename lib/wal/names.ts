// WAL positions and segment file names, as PostgreSQL spells them. An LSN is "H/L" (two hex
// halves of a 64-bit byte position); a segment name is 24 hex digits: timeline, then the
// segment number split in two (high part, low part), each 8 digits. Pure TypeScript.
import { ErrorType, TenantsafeError } from '../errors';

const segmentPattern = /^([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})$/;
const lsnPattern = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/;

export function isLsn(text: string): boolean {
  return lsnPattern.test(text);
}

export function parseLsn(lsn: string): bigint {
  const m = lsnPattern.exec(lsn);
  if (!m) throw new TenantsafeError(ErrorType.BadInput, `"${lsn}" is not an LSN.`, 'Write an LSN the way PostgreSQL prints it, e.g. 0/3000148.');
  return (BigInt(`0x${m[1]}`) << 32n) | BigInt(`0x${m[2]}`);
}

export function formatLsn(position: bigint): string {
  return `${(position >> 32n).toString(16).toUpperCase()}/${(position & 0xffffffffn).toString(16).toUpperCase()}`;
}

export function isSegmentName(name: string): boolean {
  return segmentPattern.test(name);
}

/** Segments per 4 GiB "log id": the low half of a name counts up to this, then the high half steps. */
function segmentsPerLogId(segmentSize: number): bigint {
  return 0x100000000n / BigInt(segmentSize);
}

export function segmentNumber(name: string, segmentSize: number): bigint {
  const m = segmentPattern.exec(name);
  if (!m) throw new TenantsafeError(ErrorType.BadInput, `"${name}" is not a WAL segment name.`, 'A segment name is 24 hex digits.');
  return BigInt(`0x${m[2]}`) * segmentsPerLogId(segmentSize) + BigInt(`0x${m[3]}`);
}

export function timelineOf(name: string): number {
  return parseInt(name.slice(0, 8), 16);
}

export function segmentName(timeline: number, segNo: bigint, segmentSize: number): string {
  const per = segmentsPerLogId(segmentSize);
  const hex = (n: bigint | number) => n.toString(16).toUpperCase().padStart(8, '0');
  return hex(timeline) + hex(segNo / per) + hex(segNo % per);
}

/** The segment that holds the byte at `lsn`. */
export function segmentOfLsn(lsn: string, timeline: number, segmentSize: number): string {
  return segmentName(timeline, parseLsn(lsn) / BigInt(segmentSize), segmentSize);
}

/** The LSN of the first byte of a segment. */
export function segmentStartLsn(name: string, segmentSize: number): bigint {
  return segmentNumber(name, segmentSize) * BigInt(segmentSize);
}

/** Every segment from `first` to `last`, both included, on the timeline of `last`. */
export function segmentRange(first: string, last: string, segmentSize: number): string[] {
  const out: string[] = [];
  const end = segmentNumber(last, segmentSize);
  for (let n = segmentNumber(first, segmentSize); n <= end; n++) out.push(segmentName(timelineOf(last), n, segmentSize));
  return out;
}

/** Position in the WAL stream regardless of timeline: the last 16 hex digits sort like the segment number. */
export function positionKey(name: string): string {
  return name.slice(8);
}
