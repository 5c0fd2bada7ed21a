// Tenant backup activities: thin steps over lib/backup. Idempotent by backup id.
import { Context } from '@temporalio/activity';
import type { ExportProgress } from '../lib/tenantBackup/export';
import {
  checkTenantBackup,
  discardIncompleteBackup,
  recordTenantBackup,
  takeTenantBackup,
  type TenantBackupCheck,
  type TenantBackupSummary,
} from '../lib/tenantBackup';
import type { RunRecord } from '../lib/catalog';
import { databaseName } from '../lib/config';
import type { Engine } from '../lib/engine';
import { tenantBackupPrefix } from '../lib/format/tenantManifest';
import { largeTenants, planTenantRanges, takeTenantBatch, type BatchProgress, type BatchSlot, type TenantBatchResult } from '../lib/tenantBackup/batch';
import { withClient, databaseRole } from '../lib/pg';
import { discoverTenancy, listTenants, type TenantRange } from '../lib/tenancy';
import { withFailures } from './failures';
import { joinBatchSignal, type BatchJoin, type TenantBackupBatcherInput } from '../workflows/messages';

export interface TenantRef {
  tenantId: string;
}

export interface BackupRef {
  tenantId: string;
  backupId: string;
}

/** Heartbeats the latest progress every few seconds, also while one long table is copied. */
export function heartbeatEvery<T>(ms: number, latest: () => T): () => void {
  const ctx = Context.current();
  ctx.heartbeat(latest());
  const timer = setInterval(() => ctx.heartbeat(latest()), ms);
  return () => clearInterval(timer);
}

export function createTenantBackupActivities(engine: Engine) {
  return withFailures({
    async checkTenantBackup({ tenantId }: TenantRef): Promise<TenantBackupCheck> {
      return checkTenantBackup(engine, tenantId);
    },

    /**
     * The whole export in one activity: a snapshot lives in one process, so a retry starts a
     * new snapshot and rewrites every object of this backup id (never a mix of two snapshots).
     */
    async takeTenantBackup({ tenantId, backupId, requireTenant }: BackupRef & { requireTenant?: boolean }): Promise<TenantBackupSummary> {
      let progress: ExportProgress | { phase: string } = { phase: 'starting' };
      const stop = heartbeatEvery(2000, () => progress);
      try {
        return await takeTenantBackup(engine, {
          tenantId,
          backupId,
          requireTenant,
          onProgress: (p) => (progress = { ...p, current: [...p.current] }),
          signal: Context.current().cancellationSignal,
        });
      } finally {
        stop();
      }
    },

    async recordTenantBackup(args: BackupRef & { manifestSha256: string }): Promise<void> {
      await recordTenantBackup(engine, args);
    },

    async discardIncompleteBackup({ tenantId, backupId }: BackupRef): Promise<{ objectsRemoved: number }> {
      return { objectsRemoved: await discardIncompleteBackup(engine.store, tenantBackupPrefix(tenantId, backupId)) };
    },

    /** Tenants big enough for a backup of their own (from statistics; no scan). */
    async findLargeTenants({ minRows }: { minRows: number }): Promise<string[]> {
      return largeTenants(engine, minRows);
    },

    /** The tenants but `skip` cut into ranges of at most `maxTenants`, a batch each. */
    async planTenantBatches({ skip, maxTenants }: { skip: string[]; maxTenants: number }): Promise<TenantRange[]> {
      return planTenantRanges(engine, { skip, maxTenants });
    },

    /**
     * Every tenant but `skip` (in `range`, when the run has several batches; `only` these, for
     * the batcher of scheduled runs, each one's backup then reported) from one snapshot, in packs
     * (lib/tenantBackup/batch.ts). A retry (the worker died) keeps what an earlier attempt
     * completed and removes its orphan packs.
     */
    async takeTenantBatch({ batchId, skip, range, slot, only }: { batchId: string; skip: string[]; range?: TenantRange; slot?: BatchSlot; only?: string[] }): Promise<TenantBatchResult> {
      let progress: BatchProgress | { phase: string } = { phase: 'starting' };
      const stop = heartbeatEvery(2000, () => progress);
      try {
        return await takeTenantBatch(engine, {
          batchId,
          skip,
          range,
          slot,
          only,
          attempt: Context.current().info.attempt,
          onProgress: (p) => (progress = { ...p }),
          signal: Context.current().cancellationSignal,
        });
      } finally {
        stop();
      }
    },

    /**
     * A scheduled tenantBackup run joins the next batch of its database's batcher, which this
     * starts when none runs (signal-with-start: workflows cannot, activities can). A retry sends
     * the join again; the batcher keeps one per run.
     */
    async joinTenantBatch({ batcherId, batcher, join }: { batcherId: string; batcher: TenantBackupBatcherInput; join: BatchJoin }): Promise<void> {
      const { client, info } = Context.current();
      await client.workflow.signalWithStart('tenantBackupBatcher', { workflowId: batcherId, taskQueue: info.taskQueue, args: [batcher], signal: joinBatchSignal, signalArgs: [join] });
    },

    /** Every tenant, or those in `range` (a batch's that failed as a whole). */
    async listTenants({ range }: { range?: TenantRange }): Promise<string[]> {
      const { url } = engine.config.database;
      return withClient(engine.db, url, async (c) => listTenants(c, await discoverTenancy(c, engine.config.tenancy), range));
    },

    async recordRun(run: RunRecord): Promise<void> {
      await engine.catalog.recordRun({ database: databaseName(engine.config.database.url), ...run });
    },
  }, databaseRole(engine.config.database.url));
}

export type TenantBackupActivities = ReturnType<typeof createTenantBackupActivities>;
