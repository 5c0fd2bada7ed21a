// Tenant restore activities: thin steps over lib/restore. The full preview (with sample keys and
// erased subjects' keys) goes to the catalog; Temporal gets counts and digests only.
import { Context } from '@temporalio/activity';
import type { RestoreRecord } from '../lib/catalog';
import { databaseName } from '../lib/config';
import type { Engine } from '../lib/engine';
import {
  applyApprovedRestore,
  checkRestoreRequest,
  dropRestoreScratch,
  previewRestore,
  resolveRestoreSource,
  verifyAppliedRestore,
  type ApplyResult,
  type RestoreJob,
  type RestorePreview,
  type PointInTimePlan,
  type RestoreSelection,
  type RestoreVerification,
} from '../lib/restore';
import type { StorageLocation } from '../lib/storage/types';
import type { PreviewSummary, TenantRestoreInput } from '../workflows/messages';
import { databaseRole } from '../lib/pg';
import { withFailures } from './failures';
import { recordTenantBackup } from '../lib/tenantBackup';
import { heartbeatEvery } from './tenantBackup';
import { describeTarget, planPointInTime, rebuildPointInTime } from '../lib/pointInTime';
import { pointInTimeLabel } from '../lib/labels';

export interface PreparedRestore {
  backupId: string;
  /** the backup's snapshot time, or the point in time asked for */
  snapshotAt: string;
  /** a restore to a point in time: how the tenant is rebuilt there */
  pointInTime?: PointInTimePlan;
  selection: RestoreSelection;
  approvalsRequired: number;
  approvalTimeoutMs: number;
  database: string;
}

export type ApplyStepResult = { kind: 'applied'; result: ApplyResult } | { kind: 'plan-changed'; preview: PreviewSummary };

function summarize(p: RestorePreview): PreviewSummary {
  const tables = Object.fromEntries(
    Object.entries(p.tables).map(([k, t]) => [k, { insert: t.insert, update: t.update, delete: t.delete, selected: t.selected, ...(t.wholeTable ? { wholeTable: true } : {}) }]),
  );
  // the erased subjects' keys stay in the catalog's copy: Temporal gets their ids and tables
  const erasures = p.erasures && { ...p.erasures, entries: p.erasures.entries.map(({ key: _inCatalogOnly, ...e }) => e) };
  return { ...p, tables, ...(erasures ? { erasures } : {}) };
}

export function createTenantRestoreActivities(engine: Engine) {
  const recordPreview = (job: RestoreJob, preview: RestorePreview) =>
    engine.catalog.recordRestore({ ...identity(), restoreId: job.restoreId, tenantId: job.tenantId, state: 'awaiting-approval', requestedBy: '', digest: preview.digest, preview });
  /** a restore `--from` one storage location reads (and writes) only there */
  const engineOf = (job: { from?: StorageLocation }) => engine.from(job.from);
  // these activities always run inside a tenantRestore workflow
  const identity = () => {
    const { workflowId, runId } = Context.current().info.workflowExecution!;
    return { workflowId, runId };
  };

  return withFailures({
    /** Validates the request and picks the backup. Bad input fails here, before anything is staged. */
    async prepareTenantRestore(input: TenantRestoreInput & { restoreId: string }): Promise<PreparedRestore> {
      const request = checkRestoreRequest(input);
      const engine = engineOf(input);
      const { source } = request;
      // a point in time: the preview rebuilds the tenant there first, under an id of this restore's
      const pointInTime = 'pointInTime' in source ? await planPointInTime(engine, request.tenantId, source.pointInTime) : undefined;
      const backup = 'pointInTime' in source ? undefined : await resolveRestoreSource(engine, { tenantId: request.tenantId, source });
      const backupId = backup?.backupId ?? pointInTimeLabel(input.restoreId);
      await engine.catalog.recordRestore({ ...identity(), restoreId: input.restoreId, tenantId: request.tenantId, backupId, state: 'previewing', requestedBy: request.requestedBy });
      const { restore, database } = engine.config;
      return {
        backupId,
        snapshotAt: backup?.snapshotAt ?? describeTarget(pointInTime!.target),
        ...(pointInTime ? { pointInTime } : {}),
        selection: request.selection,
        approvalsRequired: restore.approvers,
        approvalTimeoutMs: restore.approvalTimeoutMs,
        database: databaseName(database.url),
      };
    },

    async previewTenantRestore(job: RestoreJob): Promise<PreviewSummary> {
      const engine = engineOf(job);
      let progress: object = { phase: 'staging' };
      const stop = heartbeatEvery(2000, () => progress);
      try {
        const signal = Context.current().cancellationSignal;
        if (job.pointInTime) {
          progress = { phase: 'rebuilding' };
          await rebuildPointInTime(engine, { tenantId: job.tenantId, backupId: job.backupId, plan: job.pointInTime, signal, onProgress: (p) => (progress = { phase: 'rebuilding', ...p }) });
        }
        const preview = await previewRestore(engine, job, { onProgress: (p) => (progress = { phase: 'staging', ...p }), signal });
        await recordPreview(job, preview);
        return summarize(preview);
      } finally {
        stop();
      }
    },

    /**
     * The single transaction, with the safety backup taken from its snapshot. Idempotent: a retry
     * after a commit finds the applied marker (and records the safety backup, if the crash came first).
     */
    async applyTenantRestore(job: RestoreJob & { digest: string; safetyBackupId: string }): Promise<ApplyStepResult> {
      const engine = engineOf(job);
      const stop = heartbeatEvery(2000, () => ({ phase: 'applying' }));
      try {
        const outcome = await applyApprovedRestore(engine, job, Context.current().cancellationSignal);
        if (outcome.kind === 'applied') {
          const { delta: _forTheVerification, ...result } = outcome.result; // it reads the delta from the database
          if (result.safetyBackup) await recordTenantBackup(engine, { tenantId: job.tenantId, ...result.safetyBackup });
          return { kind: 'applied', result };
        }
        await recordPreview(job, outcome.preview);
        return { kind: 'plan-changed', preview: summarize(outcome.preview) };
      } finally {
        stop();
      }
    },

    async verifyTenantRestore(args: RestoreJob & { otherTenantsUnchanged: boolean }): Promise<RestoreVerification> {
      const stop = heartbeatEvery(2000, () => ({ phase: 'verifying' }));
      try {
        return await verifyAppliedRestore(engineOf(args), args, args.otherTenantsUnchanged);
      } finally {
        stop();
      }
    },

    async dropRestoreScratch({ restoreId }: { restoreId: string }): Promise<void> {
      await dropRestoreScratch(engine, restoreId);
    },

    async recordRestore(r: Omit<RestoreRecord, 'workflowId' | 'runId'>): Promise<void> {
      await engine.catalog.recordRestore({ ...identity(), ...r });
    },
  }, databaseRole(engine.config.database.url));
}

export type TenantRestoreActivities = ReturnType<typeof createTenantRestoreActivities>;
