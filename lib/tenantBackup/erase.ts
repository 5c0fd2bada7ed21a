// Erasing a tenant's backups (crypto-shredding; README "Encryption at rest"): its data key is
// destroyed first, so every object encrypted under it (its own objects and its parts of shared
// packs) is unreadable from that moment; then its backups' objects and catalog rows go, and the
// audit log records who did it. Shared packs stay until retention finds them unreferenced: the
// tenant's parts in them are ciphertext without a key. Run again after a failure: it finishes.
import type { Engine } from '../engine';
import { ErrorType, TenantsafeError } from '../errors';
import { tenantSegment } from '../format/tenantManifest';
import { listPins } from '../retention/pins';

export interface TenantErasure {
  tenantId: string;
  /** the tenant had a data key, and it is destroyed */
  keyDestroyed: boolean;
  /** tenant backups forgotten by the catalog and deleted from storage */
  backups: string[];
  /** objects deleted under the tenant's own prefix (manifests, own data objects, markers) */
  objects: number;
}

/** A tenant id to erase: not empty (checked before anything is asked). */
export function checkEraseTenant(tenantId: string): void {
  if (!tenantId.trim()) throw new TenantsafeError(ErrorType.BadInput, 'Name the tenant whose backups to erase.', 'Pass its id: `tenantsafe tenant erase-backups <tenantId> --by <who>`.');
}

export async function eraseTenantBackups(engine: Engine, args: { tenantId: string; by: string }): Promise<TenantErasure> {
  checkEraseTenant(args.tenantId);
  const { store, catalog } = engine;
  const prefixes = [...new Set([`tenants/${tenantSegment(args.tenantId)}/`, `tenants/${encodeURIComponent(args.tenantId)}/`])];
  const indexed = await catalog.listBackups({ tenantId: args.tenantId });
  const ids = new Set(indexed.map((b) => b.backupId));
  for (const prefix of prefixes) for await (const o of store.list(prefix)) ids.add(o.key.slice(prefix.length).split('/')[0]);
  // a legal hold outranks an erasure request: someone decides which, and lifts the pin first
  const pinned = (await listPins(store)).filter((p) => ids.has(p.backupId)).map((p) => p.backupId);
  if (pinned.length > 0) {
    throw new TenantsafeError(ErrorType.BadInput, `Backups of tenant ${JSON.stringify(args.tenantId)} are pinned (legal hold): ${pinned.join(', ')}. Nothing was erased.`, 'Decide between the hold and the erasure; to erase, lift the pins first (`tenantsafe backups unpin <backupId>`).');
  }
  const keyDestroyed = await engine.keys.eraseTenant(args.tenantId);
  let objects = 0;
  for (const prefix of prefixes) objects += await store.deletePrefix(prefix);
  for (const id of ids) {
    await store.deletePrefix(`reports/verify/${id}/`);
    await catalog.forgetBackup(id);
  }
  const erasure: TenantErasure = { tenantId: args.tenantId, keyDestroyed, backups: [...ids].sort(), objects };
  await engine.audit.append({
    action: 'tenant.erase-backups',
    by: args.by,
    subject: { tenantId: args.tenantId },
    outcome: 'done',
    details: { keyDestroyed, backups: erasure.backups.length, objects },
  });
  return erasure;
}
