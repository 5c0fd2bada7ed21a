// Times to the microsecond, as Postgres keeps them. A JavaScript Date holds milliseconds: a commit
// time printed from one and given back as a restore target could fall before the commit it
// names. These keep microseconds since the Unix epoch as a bigint. Pure.
import { ErrorType, TenantsafeError } from './errors';

const isoWithZone = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?(Z|[+-]\d{2}:?\d{2})$/;

/** ISO-8601 with a zone, to the microsecond (digits beyond the sixth are dropped, as Postgres rounds within them). */
export function parseMicros(text: string): bigint {
  const m = isoWithZone.exec(text);
  const ms = m ? Date.parse(`${m[1]}-${m[2]}-${m[3]}T${m[4]}:${m[5]}:${m[6] ?? '00'}${m[8]}`) : NaN;
  if (!m || Number.isNaN(ms)) {
    throw new TenantsafeError(ErrorType.BadInput, `"${text}" is not an ISO-8601 time with a time zone.`, 'Write it like 2026-11-25T05:30:00.123456Z.');
  }
  return BigInt(ms) * 1000n + BigInt((m[7] ?? '').padEnd(6, '0').slice(0, 6));
}

/** 2026-11-25T05:30:00.123456Z */
export function formatMicros(us: bigint): string {
  const ms = Number(us / 1000n);
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, `.${String(((us % 1_000_000n) + 1_000_000n) % 1_000_000n).padStart(6, '0')}Z`);
}

export function microsOf(date: Date): bigint {
  return BigInt(date.getTime()) * 1000n;
}
