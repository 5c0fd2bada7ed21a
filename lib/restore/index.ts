// Tenant restore, step by step, without Temporal (docs/architecture.md, core rule 5):
//   resolve the backup → stage + preview → (approval, outside) → apply → verify → drop scratch.
import { writeTenantBackup } from '../tenantBackup';
import type { BackupRecord } from '../catalog';
import { sha256Hex } from '../checksum';
import type { Engine } from '../engine';
import { requireKeyring } from '../encryption';
import { erasuresAfter } from '../erasure';
import { ErrorType, TenantsafeError } from '../errors';
import { parseManifest, tenantBackupPrefix, type TenantManifest } from '../format/tenantManifest';
import { manifestFile } from '../format/sealed';
import { quoteIdent, withClient } from '../pg';
import { formatMicros, parseMicros } from '../time';
import { applyRestore, previouslyApplied, type ApplyOutcome } from './apply';
import { loadRestoreContext, scratchSchemaName, scratchSchemaPattern, type RestoreContext } from './mapping';
import { scratchSurvived, stageAndPlan, type StagingHooks } from './plan';
import type { RestoreSource } from './rules';
import { backupSource } from './stage';
import type { RestoreJob, RestorePreview, RestoreVerification, SafetyBackupRef } from './types';
import { verifyRestore } from './verifyApplied';

export * from './rules';
export * from './types';
export { scratchSchemaName } from './mapping';

/** The backup to restore, of a checked request: the one named, or the newest at or before its time. */
export async function resolveRestoreSource(engine: Engine, { tenantId, source }: { tenantId: string; source: Exclude<RestoreSource, { pointInTime: unknown }> }): Promise<BackupRecord> {
  if ('backupId' in source) {
    const backup = await engine.catalog.getBackup(source.backupId);
    if (backup.tenantId !== tenantId) {
      throw new TenantsafeError(
        ErrorType.BadInput,
        `Backup ${source.backupId} is of tenant "${backup.tenantId}", not "${tenantId}".`,
        `List the tenant's backups with \`tenantsafe backups list --tenant ${tenantId}\`.`,
      );
    }
    return backup;
  }
  // to the microsecond: a backup's printed snapshotAt given back finds that very backup
  const backup = await engine.catalog.latestBackupAtOrBefore(tenantId, formatMicros(parseMicros(source.backupBefore)));
  if (!backup) {
    const all = (await engine.catalog.listBackups({ tenantId })).filter((b) => b.kind === 'tenant');
    const window = all.length ? `from ${all.at(-1)!.snapshotAt} to now` : 'empty: the tenant has no backup';
    throw new TenantsafeError(ErrorType.BadInput, `No backup of tenant "${tenantId}" was taken at or before ${source.backupBefore}; the restorable window is ${window}.`, 'Pick a time inside the window.');
  }
  return backup;
}

/** The manifest, checked against the sha256 the catalog recorded when the backup was made. */
async function manifestOf(engine: Engine, backup: BackupRecord): Promise<TenantManifest> {
  const key = backup.prefix + manifestFile;
  const body = await engine.store.getBytes(key);
  if (sha256Hex(body) !== backup.manifestSha256) {
    throw new TenantsafeError(ErrorType.CorruptBackup, `Manifest ${key} changed since the backup was recorded (sha256 differs).`, 'Restore from another backup; run `tenantsafe verify` on this one.');
  }
  return parseManifest(body, key, engine.store);
}

/** What a restore works from: the backup mapped onto the live schema, and the erasures recorded after its snapshot. */
async function contextFor(engine: Engine, backup: BackupRecord, restoreId: string): Promise<RestoreContext> {
  const manifest = await manifestOf(engine, backup);
  const ctx = await withClient(engine.db, engine.config.database.url, (c) => loadRestoreContext(c, { tenancy: engine.config.tenancy, manifest, restoreId }));
  const erasures = await erasuresAfter(engine, backup.tenantId, backup.snapshotAt);
  return erasures.length ? { ...ctx, erasures } : ctx;
}

/** Stages the backup (checking every object) and computes the preview. */
export async function previewRestore(engine: Engine, job: RestoreJob, hooks: StagingHooks = {}): Promise<RestorePreview> {
  const backup = await engine.catalog.getBackup(job.backupId);
  const ctx = await contextFor(engine, backup, job.restoreId);
  // its data key first: an erased tenant's or a missing master key fails here, even where nothing would need staging
  if (ctx.manifest.encryption) await requireKeyring(engine.store, `Backup ${job.backupId}`).open(ctx.manifest.encryption, `Backup ${job.backupId}`);
  const unknown = job.selection.tables?.filter((t) => !ctx.mappings.some((m) => m.table === t));
  if (unknown?.length) {
    throw new TenantsafeError(ErrorType.BadInput, `Table(s) ${unknown.join(', ')} are not in backup ${job.backupId}.`, `Tables in it: ${ctx.mappings.map((m) => m.table).join(', ')}.`);
  }
  const preview = await stageAndPlan(engine, ctx, backup, job, hooks);
  const drift = preview.blockers.find((b) => b.kind === 'drift');
  if (drift) {
    throw new TenantsafeError(ErrorType.SchemaDrift, `Schema drift cannot be mapped: ${drift.message}.`, 'Restore the schema first, or leave the table out with --tables.');
  }
  return preview;
}

/** Applies the approved plan; with a safety backup id, the tenant as the apply found it is backed up under it first. */
export async function applyApprovedRestore(engine: Engine, job: RestoreJob & { digest: string; safetyBackupId?: string }, signal?: AbortSignal): Promise<ApplyOutcome> {
  const backup = await engine.catalog.getBackup(job.backupId);
  const ctx = await contextFor(engine, backup, job.restoreId);
  const { restore, database } = engine.config;
  // Crash recovery empties unlogged tables, the staged rows and the stored plan among them:
  // staged again as the preview did, a tenant unchanged since gives the approved plan back.
  const scratchLost = await withClient(engine.db, database.url, async (c) => !(await previouslyApplied(c, ctx)) && !(await scratchSurvived(c, ctx)));
  if (scratchLost) await stageAndPlan(engine, ctx, backup, job, { signal });
  return applyRestore(ctx, {
    url: database.url,
    tenantId: job.tenantId,
    backupId: job.backupId,
    snapshotAt: backup.snapshotAt,
    selection: job.selection,
    approvedDigest: job.digest,
    lockTimeoutMs: restore.lockTimeoutMs,
    statementTimeoutMs: restore.statementTimeoutMs,
    verifyOtherTenants: restore.verifyOtherTenants,
    source: backupSource(engine.store, backup.prefix, ctx.manifest),
    safetyBackup: job.safetyBackupId
      ? async (snapshot, safetySignal, asBackedUp) => {
          // the tenant may be gone entirely (that may be why it is restored): then it is empty
          const s = await writeTenantBackup(engine, {
            tenantId: job.tenantId,
            backupId: job.safetyBackupId!,
            requireTenant: false,
            snapshot,
            signal: safetySignal,
            asBackedUp: { manifest: ctx.manifest, prefix: backup.prefix, tables: asBackedUp },
          });
          return { ref: { backupId: s.manifest.backupId, manifestSha256: s.manifestSha256 }, manifest: s.manifest };
        }
      : undefined,
    discardSafetyBackup: async (ref) => {
      await engine.store.deletePrefix(tenantBackupPrefix(job.tenantId, ref.backupId));
    },
    signal,
  });
}

export async function verifyAppliedRestore(engine: Engine, job: RestoreJob, otherTenantsUnchanged: boolean): Promise<RestoreVerification> {
  const backup = await engine.catalog.getBackup(job.backupId);
  const found = await contextFor(engine, backup, job.restoreId);
  const applied = await withClient(engine.db, engine.config.database.url, (c) => previouslyApplied(c, found));
  // held to the erasures the apply left out, not to one recorded since
  const erasures = found.erasures?.filter((e) => applied?.erasures?.includes(e.erasureId));
  const ctx = { ...found, erasures: erasures?.length ? erasures : undefined };
  const safety = applied?.safetyBackup && (await safetyManifest(engine, job.tenantId, applied.safetyBackup));
  return verifyRestore(ctx, {
    delta: applied?.delta && safety ? { applied: applied.delta, changes: applied.applied, safety } : undefined,
    url: engine.config.database.url,
    tenantId: job.tenantId,
    backupId: job.backupId,
    snapshotAt: backup.snapshotAt,
    selection: job.selection,
    otherTenantsUnchanged,
    parallelism: engine.config.backup.parallelism,
    source: backupSource(engine.store, backup.prefix, ctx.manifest),
  });
}

/**
 * The manifest of a restore's safety backup, if it reads back with the sha256 the apply
 * recorded; else none, and the verification reads every row (it does not need the store).
 */
async function safetyManifest(engine: Engine, tenantId: string, ref: SafetyBackupRef): Promise<TenantManifest | undefined> {
  const key = tenantBackupPrefix(tenantId, ref.backupId) + manifestFile;
  const body = await engine.store.getBytes(key).catch(() => undefined);
  return body && sha256Hex(body) === ref.manifestSha256 ? parseManifest(body, key, engine.store) : undefined;
}

export async function dropRestoreScratch(engine: Engine, restoreId: string): Promise<void> {
  await withClient(engine.db, engine.config.database.url, (c) => c.query(`DROP SCHEMA IF EXISTS ${quoteIdent(scratchSchemaName(restoreId))} CASCADE`));
}

/** Scratch schemas left by restores that are no longer running (a terminated workflow, say). */
export async function removeStaleScratchSchemas(engine: Engine, isActive: (schema: string) => Promise<boolean>, dryRun = false): Promise<string[]> {
  return withClient(engine.db, engine.config.database.url, async (c) => {
    const r = await c.query<{ name: string }>(`SELECT nspname AS name FROM pg_namespace WHERE nspname LIKE $1 ORDER BY 1`, [scratchSchemaPattern]);
    const removed: string[] = [];
    for (const { name } of r.rows) {
      if (await isActive(name)) continue;
      if (!dryRun) await c.query(`DROP SCHEMA ${quoteIdent(name)} CASCADE`);
      removed.push(name);
    }
    return removed;
  });
}
