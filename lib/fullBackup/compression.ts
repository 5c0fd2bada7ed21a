// Reading a base backup's tar back (fullBackup.compression; pg_basebackup compresses it as it
// writes, basebackup.ts): the tool the manifest names (zstd, lz4 or gzip) decompresses in a
// process of its own straight into `tar -x`, beside the decryption or sha256 check here.
import type { BaseCompression } from '../format/fullManifest';

/** The command that decompresses a tar compressed so, from stdin to stdout. */
export function decompressCommand(c: BaseCompression): [string, string[]] {
  return [c.method, ['-d', '-c', '-q']];
}

/**
 * GNU tar's arguments to extract a tar from stdin into `dir`. Records of 1 MiB (-b 2048) instead
 * of tar's 10 KiB: reading a pipe 10 KiB at a time made extraction a third slower.
 */
export function tarExtractArgs(dir: string): string[] {
  return ['-x', '-b', '2048', '-f', '-', '-C', dir];
}
