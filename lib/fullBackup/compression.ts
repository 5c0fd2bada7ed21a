// Reading a base backup's tar back (fullBackup.compression): GNU tar runs the tool the manifest
// names (-I zstd, lz4 or gzip), so decompression and extraction run in two processes of their
// own beside the sha256 check here. pg_basebackup compresses them as it writes (basebackup.ts).
import type { BaseCompression } from '../format/fullManifest';

/** GNU tar's arguments that read a tar compressed so (`tar -x -f - <these>`). */
export function tarDecompressArgs(c: BaseCompression): string[] {
  return ['-I', c.method];
}
