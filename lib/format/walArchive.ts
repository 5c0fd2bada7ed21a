// The WAL archive in storage (docs/format.md, "WAL archive"): completed segments, gzipped, named
// with the sha256 of their raw bytes; the segment being written as one `.partial` object that
// is overwritten as it grows (trailing zeros stripped); timeline history files as they are.

export const walPrefix = 'wal/';

/** Segments are grouped by their first 16 hex digits (timeline + log id: 4 GiB of WAL a folder). */
export function segmentFolder(name: string): string {
  return `${walPrefix}${name.slice(0, 16)}/`;
}

export function segmentKey(name: string, sha256: string): string {
  return `${segmentFolder(name)}${name}-${sha256}.gz`;
}

export function partialKey(name: string): string {
  return `${segmentFolder(name)}${name}.partial.gz`;
}

export function historyKey(file: string): string {
  return `${walPrefix}history/${file}`;
}

export const historyFilePattern = /^[0-9A-F]{8}\.history$/;
export const segmentKeyPattern = /^wal\/[0-9A-F]{16}\/([0-9A-F]{24})-([0-9a-f]{64})\.gz$/;
export const partialKeyPattern = /^wal\/[0-9A-F]{16}\/([0-9A-F]{24})\.partial\.gz$/;
export const historyKeyPattern = /^wal\/history\/([0-9A-F]{8}\.history)$/;
