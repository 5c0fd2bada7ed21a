// Pins (legal hold): a pinned backup is never deleted by retention. Pins live in storage beside
// the backups (pins/<backupId>.json), so they survive a lost or rebuilt catalog. Pinning and
// unpinning as people do it (the CLI) is recorded in the audit log (lib/audit).
import type { Engine } from '../engine';
import { ErrorType, TenantsafeError } from '../errors';
import type { ObjectStore } from '../storage/types';

export interface Pin {
  backupId: string;
  reason: string;
  by: string;
  at: string;
}

const pinsPrefix = 'pins/';

function pinKey(backupId: string): string {
  return `${pinsPrefix}${encodeURIComponent(backupId)}.json`;
}

/** A pin's reason: not empty (checked before anything is asked). */
export function checkPinReason(reason: string): void {
  if (!reason.trim()) throw new TenantsafeError(ErrorType.BadInput, 'A pin needs a reason.', 'Pass --reason "<ticket or legal matter>".');
}

export async function pinBackup(store: ObjectStore, pin: Pin): Promise<Pin> {
  checkPinReason(pin.reason);
  await store.put(pinKey(pin.backupId), Buffer.from(JSON.stringify(pin, null, 2) + '\n'), { contentType: 'application/json' });
  return pin;
}

/** Removes the pin; false when there was none. */
export async function unpinBackup(store: ObjectStore, backupId: string): Promise<boolean> {
  if (!(await store.stat(pinKey(backupId)))) return false;
  await store.delete(pinKey(backupId));
  return true;
}

/** Pins the backup, then records it in the audit log (with the backup's tenant, when it has one). */
export async function pinRecorded(engine: Engine, pin: Pin): Promise<Pin> {
  const done = await pinBackup(engine.store, pin);
  const tenantId = await engine.catalog.tenantOfBackup(pin.backupId);
  await engine.audit.append({ action: 'backup.pin', by: pin.by, subject: { backupId: pin.backupId, ...(tenantId ? { tenantId } : {}) }, outcome: 'done', details: { reason: pin.reason } });
  return done;
}

/** Lifts the pin, then records it in the audit log; false (nothing recorded) when there was none. */
export async function unpinRecorded(engine: Engine, backupId: string, by: string): Promise<boolean> {
  if (!(await unpinBackup(engine.store, backupId))) return false;
  const tenantId = await engine.catalog.tenantOfBackup(backupId);
  await engine.audit.append({ action: 'backup.unpin', by, subject: { backupId, ...(tenantId ? { tenantId } : {}) }, outcome: 'done' });
  return true;
}

export async function isPinned(store: ObjectStore, backupId: string): Promise<boolean> {
  return (await store.stat(pinKey(backupId))) !== null;
}

export async function listPins(store: ObjectStore): Promise<Pin[]> {
  const pins: Pin[] = [];
  for await (const o of store.list(pinsPrefix)) pins.push(JSON.parse((await store.getBytes(o.key)).toString('utf8')) as Pin);
  return pins;
}
