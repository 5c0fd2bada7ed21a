// All activities, bound to one engine (config, pools, store) per worker process.
import type { Engine } from '../lib/engine';
import { createTenantBackupActivities } from './tenantBackup';
import { createTenantRestoreActivities } from './tenantRestore';

export function createActivities(engine: Engine) {
  return { ...createTenantBackupActivities(engine), ...createTenantRestoreActivities(engine) };
}
