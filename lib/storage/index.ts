// The storage drivers behind one factory; callers depend on ObjectStore only.
import type { Config, StorageConfig } from '../config';
import { ErrorType, TenantsafeError } from '../errors';
import { LocalStore } from './local';
import type { ObjectStore, StorageLocation } from './types';

export type * from './types';
export type { GcsStore, GcsStorageConfig } from './gcs';
export { LocalStore, type LocalStorageConfig } from './local';

export function createStore(cfg: StorageConfig): ObjectStore {
  if (cfg.kind !== 'gcs') return new LocalStore(cfg);
  // Required only when configured: the GCS library is slow to load, and a CLI command on local
  // storage need not wait for it.
  const { GcsStore } = require('./gcs') as typeof import('./gcs');
  return new GcsStore(cfg);
}

/** Checks a `--from` (a restore reading one location only) against the config: bad input unless that location is configured. */
export function storageLocationOf(config: Pick<Config, 'source' | 'storage'>, value: unknown): StorageLocation {
  if (value !== 'primary' && value !== 'secondary') {
    throw new TenantsafeError(
      ErrorType.BadInput,
      `--from must be primary or secondary, not ${JSON.stringify(value)}.`,
      'Use --from secondary to read the secondary location only, or leave --from out (the primary, falling over to the secondary).',
    );
  }
  if (value === 'secondary' && !config.storage.secondary) {
    throw new TenantsafeError(
      ErrorType.BadInput,
      `There is no secondary storage to read from: ${config.source} has no storage.secondary.`,
      'Add storage.secondary to the config (README, Configuration) and run `tenantsafe storage sync`, or leave --from out to read the primary.',
    );
  }
  return value;
}
