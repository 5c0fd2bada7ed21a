// All activities, bound to one engine (config, pools, store) per worker process; with several
// databases, to the engine of the database each call's input names (docs/fleet.md).
import { databaseIds } from '../lib/config';
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
import { toFailure } from './failures';
import { createVerifyActivities } from './verify';

export function createActivities(engine: Engine) {
  const own = activitiesOf(engine);
  if (databaseIds(engine.config).length === 0) return own;
  const sets = new Map<Engine, typeof own>([[engine, own]]);
  const dispatch = (name: string) => async (input?: { database?: unknown }, ...rest: unknown[]) => {
    const { database, ...ownInput } = input ?? {};
    let target: Engine;
    try {
      target = engine.forDatabase(database === undefined ? undefined : String(database));
    } catch (err) {
      throw toFailure(err);
    }
    if (!sets.has(target)) sets.set(target, activitiesOf(target));
    const fn = sets.get(target)![name as keyof typeof own] as (...args: unknown[]) => Promise<unknown>;
    return fn(input === undefined ? undefined : ownInput, ...rest);
  };
  return Object.fromEntries(Object.keys(own).map((name) => [name, dispatch(name)])) as unknown as typeof own;
}

/** The activities of one database's engine. */
function activitiesOf(engine: Engine) {
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
