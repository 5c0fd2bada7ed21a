// All activities, bound to one engine (config, pools, store) per worker process.
import type { Engine } from '../lib/engine';
import { createAlertActivities } from './alerts';
import { createChangeLogActivities } from './changeLog';
import { createDrActivities } from './dr';
import { createFullBackupActivities } from './fullBackup';
import { createTenantBackupActivities } from './tenantBackup';
import { createTenantRestoreActivities } from './tenantRestore';
import { createVerifyActivities } from './verify';

export function createActivities(engine: Engine) {
  return {
    ...createTenantBackupActivities(engine),
    ...createTenantRestoreActivities(engine),
    ...createFullBackupActivities(engine),
    ...createVerifyActivities(engine),
    ...createChangeLogActivities(engine),
    ...createAlertActivities(engine),
    ...createDrActivities(engine),
  };
}
