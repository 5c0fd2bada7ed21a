// How tenant backups' data is compressed (`backup.compression`): each table's COPY text, in an
// object of its own or as a tenant's part of a pack. The manifest's `data.compression` names the
// method; readers take any method listed here. zstd costs a fraction of gzip's CPU for smaller
// output; gzip stays for backups written before it and for stores read with gzip tools.
import type { Transform } from 'node:stream';
import { promisify } from 'node:util';
import { createGunzip, createGzip, gzip, gzipSync } from 'node:zlib';
import { Compressor, CompressStream, DecompressStream } from 'zstd-napi';

export const dataCompressionMethods = ['zstd', 'gzip'] as const;
export type DataCompressionMethod = (typeof dataCompressionMethods)[number];

export interface DataCompression {
  method: DataCompressionMethod;
  level: number;
  /** the level of pack parts, when not `level` */
  partLevel?: number;
}

/** the levels each method takes */
const levels: Record<DataCompressionMethod, LevelRange> = { zstd: { min: 1, max: 19, default: 1 }, gzip: { min: 1, max: 9, default: 1 } };
/**
 * Bare `zstd`: level 1 for a table's own object, the stream that bounds a big tenant's backup;
 * level 3 for the parts of packs, compressed one small tenant's rows at a time, where level 1's
 * small tables lose the most (about a tenth more bytes) and level 3 costs little (bench/README.md).
 */
const zstdPartLevel = 3;

/** Reads `zstd[:level]` or `gzip[:level]`; an error names what is allowed. */
export function parseDataCompression(text: string): DataCompression | { error: string } {
  const parsed = parseMethodAndLevel(text, levels);
  return text === 'zstd' ? { ...parsed, partLevel: zstdPartLevel } : parsed;
}

/** the levels a compression method takes, and the one a bare method name means */
export interface LevelRange {
  min: number;
  max: number;
  default: number;
}

/**
 * Reads `<method>[:<level>]` for the methods `levels` lists, each with its range of levels (a
 * method whose range is one level takes none); an error names what is allowed.
 */
export function parseMethodAndLevel<M extends string>(text: string, levels: Record<M, LevelRange>): { method: M; level: number } | { error: string } {
  const [method, level, ...rest] = text.split(':');
  const range = Object.hasOwn(levels, method) ? levels[method as M] : undefined;
  if (!range || rest.length > 0) {
    const forms = (Object.keys(levels) as M[]).map((m) => (levels[m].min === levels[m].max ? m : `${m}[:level]`));
    return { error: `must be ${forms.slice(0, -1).join(', ')} or ${forms[forms.length - 1]}` };
  }
  if (level === undefined) return { method: method as M, level: range.default };
  if (range.min === range.max) return { error: `${method} takes no level` };
  const n = /^-?\d+$/.test(level) ? Number(level) : NaN;
  if (!(n >= range.min && n <= range.max)) return { error: `${method}'s level must be from ${range.min} to ${range.max}` };
  return { method: method as M, level: n };
}

export function isDataCompressionMethod(method: unknown): method is DataCompressionMethod {
  return typeof method === 'string' && (dataCompressionMethods as readonly string[]).includes(method);
}

/**
 * A stream compressing a table's COPY text. zstd compresses on the calling thread: at its low
 * levels it costs less CPU than handing gzip its input through the thread pool does.
 */
export function compressor(c: DataCompression): Transform {
  return c.method === 'zstd' ? new CompressStream({ compressionLevel: c.level }) : createGzip({ level: c.level });
}

/**
 * A stream giving back the COPY text. gunzip hands out chunkSize pieces, each a trip to the
 * thread pool and through every stream after it: 256 KiB pieces, not the default 16 KiB.
 */
export function decompressor(method: DataCompressionMethod): Transform {
  return method === 'zstd' ? new DecompressStream() : createGunzip({ chunkSize: 256 * 1024 });
}

/** how an object's name ends, after `.copy` */
export const fileExtensions: Record<DataCompressionMethod, string> = { zstd: '.zst', gzip: '.gz' };

/** what a store is told an unencrypted object holds */
export const contentTypes: Record<DataCompressionMethod, string> = { zstd: 'application/zstd', gzip: 'application/gzip' };

/** Whether an error of a decompressor says its input is not what that method wrote (damaged or cut short). */
export function isDamagedInput(err: unknown): boolean {
  const e = err as { code?: string; message?: string };
  if (e?.code === 'Z_DATA_ERROR' || e?.code === 'Z_BUF_ERROR') return true;
  return /incorrect header check|unexpected end of file|Unknown frame descriptor|ended in middle of compressed data|Data corruption detected|doesn't match checksum|Corrupted block detected|Src size is incorrect/.test(e?.message ?? '');
}

const gzipAsync = promisify(gzip);
/** one zstd context for every small part: making one per part would cost more than the compression */
let partCompressor: { level: number; cctx: Compressor } | undefined;

/**
 * One tenant's part of a pack, compressed as a frame (gzip member) of its own. A small gzip
 * part is compressed here with a window and hash no bigger than it needs (the same output): a
 * trip to the thread pool and a full-size zlib state cost several times the compression of a
 * few rows. zstd's reused context needs neither.
 */
export function compressPart(c: DataCompression, raw: Buffer): Promise<Buffer> {
  if (c.method === 'zstd') {
    const level = c.partLevel ?? c.level;
    if (partCompressor?.level !== level) {
      const cctx = new Compressor();
      cctx.setParameters({ compressionLevel: level });
      partCompressor = { level, cctx };
    }
    return Promise.resolve(partCompressor.cctx.compress(raw));
  }
  if (raw.length > smallGzipPart) return gzipAsync(raw, { level: c.level });
  return Promise.resolve(gzipSync(raw, { level: c.level, windowBits: Math.min(15, Math.max(10, Math.ceil(Math.log2(raw.length + 262)))), memLevel: 6 }));
}
const smallGzipPart = 64 << 10;
