// All activities, bound to one engine (config, pools, store) per worker process.
import type { Engine } from '../lib/engine';
import { createAlertActivities } from './alerts';
import { createAuditActivities } from './audit';
import { createChangeLogActivities } from './changeLog';
import { createDrillActivities } from './drill';
import { createDrActivities } from './dr';
import { createFullBackupActivities } from './fullBackup';
import { createStandbyActivities } from './standby';
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
    ...createAuditActivities(engine),
    ...createStandbyActivities(engine),
    ...createDrillActivities(engine),
    ...createDrActivities(engine),
  };
}
