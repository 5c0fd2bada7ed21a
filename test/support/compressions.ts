// The base-backup compressions (fullBackup.compression) that the full-backup, PITR,
// verification and retention suites each run with; TENANTSAFE_TEST_COMPRESSIONS=lz4 runs one.
import { baseObjectKey, parseCompression } from '../../lib/format/fullManifest';

export const fullBackupCompressions = (process.env.TENANTSAFE_TEST_COMPRESSIONS ?? 'lz4,zstd:3,gzip').split(',');

/** The key of the tar a base backup with this compression setting writes (base.tar.lz4, ...). */
export function baseKeyOf(setting: string): string {
  const parsed = parseCompression(setting);
  if ('error' in parsed) throw new Error(`TENANTSAFE_TEST_COMPRESSIONS: ${setting} ${parsed.error}`);
  return baseObjectKey(parsed);
}
