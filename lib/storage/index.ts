// The storage drivers behind one factory; callers depend on ObjectStore only.
import type { StorageConfig } from '../config';
import { LocalStore } from './local';
import type { ObjectStore } from './types';

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
