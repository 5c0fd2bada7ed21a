// The storage drivers behind one factory; callers depend on ObjectStore only.
import type { StorageConfig } from '../config';
import { GcsStore } from './gcs';
import { LocalStore } from './local';
import type { ObjectStore } from './types';

export type * from './types';
export { GcsStore, type GcsStorageConfig } from './gcs';
export { LocalStore, type LocalStorageConfig } from './local';

export function createStore(cfg: StorageConfig): ObjectStore {
  return cfg.kind === 'gcs' ? new GcsStore(cfg) : new LocalStore(cfg);
}
