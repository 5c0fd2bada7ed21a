// Runbook: back up together the tenants whose own schedules fall due together (one per database).
//   1. a scheduled tenantBackup run joins (signal `join`, sent with signal-with-start: the first
//      one starts this workflow); gather until no tenant joined for `quietMs`, at the latest
//      `maxWaitMs` after the first, or until `batchTenants` joined
//   2. the big tenants (pg_stats' estimate, as tenantBackupsAll judges them) go back to their runs,
//      each to back itself up with its own parallel export
//   3. the others in one batch: one snapshot, one scan per table, packs, each tenant's manifest
//      last (takeTenantBatch, lib/tenantBackup/batch.ts, the batches of tenantBackupsAll). A worker
//      killed meanwhile: Temporal retries the step, which keeps the tenants already finished and
//      deletes the orphan packs
//   4. each waiting run gets its own outcome (signal `batchOutcome`): its backup, its failure, or
//      `own` when the batch failed as a whole (each run then backs its tenant up on its own, so a
//      failure is one tenant's, with its own error)
// Tenants joining while a batch runs wait for the next one. Idle for `quietMs` (at least a
// second): the run ends, and the next join starts a new one. Continues as new between batches
// when the history grows long, carrying the tenants waiting.
import {
  ActivityFailure,
  CancellationScope,
  condition,
  ContinueAsNew,
  continueAsNew,
  getExternalWorkflowHandle,
  isCancellation,
  proxyActivities,
  setHandler,
  sleep,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { TenantBackupActivities } from '../activities/tenantBackup';
import { backupLabel } from '../lib/labels';
import { onServedDatabase, serveDatabase } from './database';
import { optionalInteger } from './inputs';
import {
  batchOutcomeSignal,
  joinBatchSignal,
  leaveBatchSignal,
  searchAttributes,
  tenantBackupBatcherStatusQuery,
  type BatchJoin,
  type BatchOutcome,
  type TenantBackupBatcherInput,
  type TenantBackupBatcherResult,
  type TenantBackupBatcherStatus,
} from './messages';
import { bulkCopyUntilStopped, shortStep } from './profiles';

const step = onServedDatabase(proxyActivities<TenantBackupActivities>(shortStep));
// a cancelled batcher tells its runs to back up on their own only once the batch has stopped writing
const copy = onServedDatabase(proxyActivities<TenantBackupActivities>(bulkCopyUntilStopped));

export async function tenantBackupBatcher(input: TenantBackupBatcherInput = {}): Promise<TenantBackupBatcherResult> {
  serveDatabase(input);
  const quietMs = optionalInteger(input, 'quietMs', 0, 3_600_000, 5_000);
  const maxWaitMs = optionalInteger(input, 'maxWaitMs', 0, 86_400_000, 60_000);
  // each tenant's backup comes back in the step's result: 2,000 of them stay far below Temporal's 2 MB payload limit
  const batchTenants = optionalInteger(input, 'batchTenants', 1, 2_000, 500);
  const bigTenantRows = optionalInteger(input, 'bigTenantRows', 1, Number.MAX_SAFE_INTEGER, 100_000);
  upsertSearchAttributes([{ key: searchAttributes.backupKind, value: 'tenant-batch' }]);

  const waiting: BatchJoin[] = [...(input.carried?.waiting ?? [])];
  /** the tenants of the batch running now */
  let current: BatchJoin[] = [];
  const totals: TenantBackupBatcherResult = input.carried?.totals ?? { batches: 0, tenants: 0, failed: 0, own: 0 };
  let lastBatchAt = input.carried?.lastBatchAt ?? 0;
  let lastJoin = Date.now();
  let state: TenantBackupBatcherStatus['state'] = 'gathering';
  setHandler(tenantBackupBatcherStatusQuery, () => ({ state, waiting: waiting.length, running: current.length, totals: { ...totals } }));
  setHandler(joinBatchSignal, (join) => {
    // a retried join activity sends it again
    if (current.some((j) => j.runId === join.runId) || waiting.some((j) => j.runId === join.runId)) return;
    waiting.push(join);
    lastJoin = Date.now();
  });
  setHandler(leaveBatchSignal, (leave) => {
    const i = waiting.findIndex((j) => j.runId === leave.runId);
    if (i >= 0) waiting.splice(i, 1);
  });

  /** Signals a waiting run its outcome; a run that ended meanwhile (cancelled, gave up waiting) is not told. */
  const tell = (join: BatchJoin, outcome: BatchOutcome) =>
    getExternalWorkflowHandle(join.workflowId, join.runId)
      .signal(batchOutcomeSignal, outcome)
      .catch(() => undefined);

  /** The batch of these runs' tenants: each tenant's outcome. */
  const backUp = async (batch: BatchJoin[], batchId: string): Promise<Map<string, BatchOutcome>> => {
    const outcomes = new Map<string, BatchOutcome>();
    const tenants = [...new Set(batch.map((j) => j.tenantId))];
    try {
      const big = new Set(await step.findLargeTenants({ minRows: bigTenantRows }));
      for (const tenantId of tenants.filter((t) => big.has(t))) outcomes.set(tenantId, { tenantId, own: 'big-tenant' });
      const small = tenants.filter((t) => !big.has(t));
      if (small.length === 0) return outcomes;
      const r = await copy.takeTenantBatch({ batchId, skip: [], only: small });
      totals.batches++;
      for (const b of r.backups ?? []) {
        const { backupId, tenantId, rows, bytes, snapshotAt, lsn, storageUri, tenantChecksum } = b;
        outcomes.set(tenantId, { tenantId, database: r.database ?? '', backup: { backupId, tenantId, status: 'completed', rows, bytes, snapshotAt, lsn, storageUri, tenantChecksum, batchId } });
      }
      for (const f of [...r.failed, ...(r.missing ?? [])]) outcomes.set(f.tenantId, { tenantId: f.tenantId, failure: { error: f.error, ...(f.type ? { type: f.type } : {}) } });
    } catch (err) {
      // a cancellation (or a bug) is no failure of the batch
      if (!(err instanceof ActivityFailure) || isCancellation(err)) throw err;
      // the batch failed as a whole: each run backs its tenant up on its own
      for (const tenantId of tenants) if (!outcomes.has(tenantId)) outcomes.set(tenantId, { tenantId, own: 'batch-failed' });
    }
    // a tenant the batch did not report (more failures than it lists): on its own, with its own error
    for (const tenantId of tenants) if (!outcomes.has(tenantId)) outcomes.set(tenantId, { tenantId, own: 'batch-failed' });
    return outcomes;
  };

  try {
    for (;;) {
      if (waiting.length === 0) {
        state = 'gathering';
        // idle: the run ends unless a tenant joins soon (a later join starts a new run)
        if (!(await condition(() => waiting.length > 0, Math.max(quietMs, 1000))) && waiting.length === 0) break;
      }
      // gather: until no tenant joined for quietMs, at the latest maxWaitMs after now, or a full batch
      const first = Date.now();
      for (;;) {
        const left = Math.min(lastJoin + quietMs, first + maxWaitMs) - Date.now();
        if (left <= 0 || waiting.length >= batchTenants) break;
        await condition(() => waiting.length >= batchTenants, left);
      }
      // backup ids are unique within a batch and a second (batchBackupIds): one batch a second at most
      const nextSecond = (Math.floor(lastBatchAt / 1000) + 1) * 1000;
      if (Date.now() < nextSecond) await sleep(nextSecond - Date.now());
      if (waiting.length === 0) continue;

      current = waiting.splice(0, batchTenants);
      state = 'backing-up';
      lastBatchAt = Date.now();
      const outcomes = await backUp(current, backupLabel(new Date(lastBatchAt), 'tenant', workflowInfo().runId));
      for (const o of outcomes.values()) {
        if ('backup' in o) totals.tenants++;
        else if ('failure' in o) totals.failed++;
        else totals.own++;
      }
      await Promise.all(current.map((j) => tell(j, outcomes.get(j.tenantId)!)));
      current = [];
      if (workflowInfo().continueAsNewSuggested) {
        await continueAsNew<typeof tenantBackupBatcher>({ ...input, carried: { waiting, totals, lastBatchAt } });
      }
    }
  } catch (err) {
    if (err instanceof ContinueAsNew) throw err;
    // cancelled or failed: no run waits in vain; each backs its tenant up on its own
    await CancellationScope.nonCancellable(() => Promise.all([...current, ...waiting].map((j) => tell(j, { tenantId: j.tenantId, own: 'batcher-stopped' }))));
    throw err;
  }
  return totals;
}
