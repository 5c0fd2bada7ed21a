// Runbook: restore one tenant (docs/architecture.md, core rule 5).
//   1. check the request and pick the backup (bad input fails here, nothing staged)
//   2. stage the backup in a scratch schema, checking every object; preview the changes
//   3. wait for approval of exactly this preview, by someone other than the requester
//      (rejected → stop; no decision before the deadline → expired; nothing changed either way)
//   4. apply in one transaction, backing the tenant up first as that transaction sees it (the
//      safety backup, so this restore can be undone); if the live data moved since the preview,
//      the plan (and its digest) changed: back to 3 with the new preview
//   5. verify the tenant against the backup's checksums
// Whatever happens, the scratch schema is dropped at the end. A failure alerts (lib/alerts); the
// tenant's next restore that completes resolves it. The audit log (lib/audit) records the request,
// each preview offered, every approval and rejection (refused ones too, as they arrive) and the
// outcome; an approval is recorded before it is acted on.
import {
  ApplicationFailure,
  CancellationScope,
  condition,
  patched,
  proxyActivities,
  proxyLocalActivities,
  setHandler,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { ApplyStepResult, TenantRestoreActivities } from '../activities/tenantRestore';
import { ErrorType } from '../lib/errors';
import { backupLabel, restoreLabel } from '../lib/labels';
import type { RestoreJob } from '../lib/restore/index';
import { approvalRefusal, rejectionOf, rejectionRefusal } from '../lib/restore/rules';
import { announce, announceFailure, failureOf } from './alerts';
import { auditTrail } from './audit';
import { endingOf, rootCause } from './failures';
import { requireTenantId } from './inputs';
import {
  approveSignal,
  rejectSignal,
  searchAttributes,
  tenantRestoreStatusQuery,
  type TenantRestoreInput,
  type TenantRestoreResult,
  type TenantRestoreStatus,
} from './messages';
import { bulkCopy, bulkCopyUntilStopped, cancelWaitsForTheStep, localShortSteps, localStep, shortStep } from './profiles';
import { onServedDatabase, serveDatabase, servedDatabase } from './database';

const step = onServedDatabase(proxyActivities<TenantRestoreActivities>(shortStep));
const localSteps = onServedDatabase(proxyLocalActivities<TenantRestoreActivities>(localStep));
const copyOnce = onServedDatabase(proxyActivities<TenantRestoreActivities>(bulkCopy));
const copyUntilStopped = onServedDatabase(proxyActivities<TenantRestoreActivities>(bulkCopyUntilStopped));

export async function tenantRestore(input: TenantRestoreInput): Promise<TenantRestoreResult> {
  serveDatabase(input);
  const tenantId = requireTenantId(input);
  const { runId, startTime } = workflowInfo();
  const restoreId = restoreLabel(startTime, runId);
  const copy = patched(cancelWaitsForTheStep) ? copyUntilStopped : copyOnce;
  // the short steps (the check, the restore's record, the scratch's drop, the alert) in the
  // worker: around the preview and the apply, they were round trips through the server
  const local = patched(localShortSteps);
  const quick = local ? localSteps : step;
  const status: TenantRestoreStatus = { state: 'previewing', restoreId, tenantId, requestedBy: input.requestedBy, approvals: [], refused: [] };
  const audit = auditTrail();
  const subject = () => ({ tenantId, restoreId, ...(status.backupId ? { backupId: status.backupId } : {}) });
  // a signal may carry anything: the log keeps what was named, as text
  const named = (v: unknown) => (typeof v === 'string' ? v : '');
  setHandler(tenantRestoreStatusQuery, () => status);
  setHandler(approveSignal, (a) => {
    const refusal = approvalRefusal(status, a);
    if (refusal) status.refused.push({ by: String(a?.by), reason: refusal.reason, at: new Date().toISOString() });
    else status.approvals.push({ by: a.by, digest: a.digest, at: new Date().toISOString() });
    audit.later({
      action: 'restore.approve',
      by: named(a?.by),
      subject: subject(),
      digest: named(a?.digest),
      outcome: refusal ? 'refused' : 'accepted',
      details: refusal ? { reason: refusal.reason, state: status.state } : { approvals: status.approvals.length, required: status.approvalsRequired },
    });
  });
  setHandler(rejectSignal, (r) => {
    const refusal = rejectionRefusal(r);
    const counts = !refusal && (status.state === 'previewing' || status.state === 'awaiting-approval');
    const tooLate = `arrived while ${status.state}: too late`;
    if (counts) status.rejection = rejectionOf(r);
    else status.refused.push({ by: String(r?.by), reason: refusal ? refusal.reason : `rejection ${tooLate}`, at: new Date().toISOString() });
    audit.later({
      action: 'restore.reject',
      by: named(r?.by),
      subject: subject(),
      digest: status.preview?.digest,
      outcome: counts ? 'accepted' : 'refused',
      details: { ...(named(r?.reason) ? { reason: r.reason } : {}), ...(counts ? {} : { refusal: refusal ? refusal.reason : tooLate }) },
    });
  });
  upsertSearchAttributes([
    { key: searchAttributes.tenantId, value: tenantId },
    { key: searchAttributes.backupKind, value: 'restore' },
  ]);
  const record = (extra: object = {}) =>
    quick.recordRestore({ restoreId, tenantId, state: status.state, requestedBy: input.requestedBy, approvedBy: status.approvals.map((a) => a.by), error: status.error ?? null, ...extra });
  const outcome = (state: 'done' | 'rejected' | 'expired' | 'failed' | 'cancelled', details: Record<string, unknown>) =>
    audit.append({ action: 'restore.outcome', by: 'tenantsafe', subject: subject(), digest: status.preview?.digest, outcome: state, details });
  const finish = async (state: TenantRestoreResult['state']): Promise<TenantRestoreResult> => {
    status.state = state;
    await record({ result: { applied: status.applied, verification: status.verification, rejection: status.rejection } });
    await outcome(state, {
      ...(state === 'done' ? { approvedBy: status.approvals.map((a) => a.by), safetyBackupId: status.safetyBackupId, changed: changedRows(status.applied?.applied), verified: status.verification?.ok } : {}),
      ...(state === 'rejected' ? { rejectedBy: status.rejection?.by, reason: status.rejection?.reason } : {}),
      ...(state === 'expired' ? { expiredAt: status.expiresAt } : {}),
    });
    // a person's rejection or silence is no failure: only a restore that completes resolves the tenant's restore alert
    if (state === 'done') await announce({ kind: 'tenantRestore', outcome: 'succeeded', step: 'outcome', tenantId, backupId: status.backupId }, { local });
    const { backupId, safetyBackupId, applied, verification, rejection } = status;
    return { state, restoreId, tenantId, backupId, safetyBackupId, applied, verification, rejection };
  };

  try {
    const { tenantId: _named, requestedBy: _by, ...asked } = input;
    await audit.append({ action: 'restore.request', by: input.requestedBy, subject: { tenantId, restoreId, ...(input.backupId ? { backupId: input.backupId } : {}) }, outcome: 'accepted', details: asked });
    const prepared = await quick.prepareTenantRestore({ ...input, restoreId });
    upsertSearchAttributes([{ key: searchAttributes.database, value: servedDatabase() ?? prepared.database }]);
    status.backupId = prepared.backupId;
    status.approvalsRequired = prepared.approvalsRequired;
    const job: RestoreJob = {
      restoreId,
      tenantId,
      backupId: prepared.backupId,
      selection: prepared.selection,
      ...(prepared.pointInTime ? { pointInTime: prepared.pointInTime } : {}),
      ...(input.from ? { from: input.from } : {}),
    };

    let preview = await copy.previewTenantRestore(job);
    for (;;) {
      status.preview = preview;
      if (preview.blockers.length > 0) {
        throw ApplicationFailure.nonRetryable(
          `The restore cannot be applied: ${preview.blockers.map((b) => b.message).join('; ')}. HINT: resolve the blockers, or start a new restore with another --tables selection or --missing-refs skip.`,
          ErrorType.RestoreBlocked,
        );
      }
      status.state = 'awaiting-approval';
      status.approvals = [];
      status.expiresAt = new Date(Date.now() + prepared.approvalTimeoutMs).toISOString();
      await record({ digest: preview.digest });
      await audit.append({
        action: 'restore.preview',
        by: 'tenantsafe',
        subject: subject(),
        digest: preview.digest,
        outcome: 'awaiting-approval',
        details: { totals: preview.totals, required: prepared.approvalsRequired, expiresAt: status.expiresAt, ...(status.planChanged ? { planChanged: true } : {}) },
      });
      const decided = await condition(() => !!status.rejection || status.approvals.length >= prepared.approvalsRequired, prepared.approvalTimeoutMs);
      // decided at once (a decision arriving from now on is too late), acted on once it is in the log
      status.state = status.rejection ? 'rejected' : decided ? 'applying' : 'expired';
      await audit.flush();
      if (status.rejection) return await finish('rejected');
      if (!decided) return await finish('expired');

      status.state = 'applying';
      await record();
      const safetyBackupId = backupLabel(new Date(), 'safety', runId);
      const outcome: ApplyStepResult = await copy.applyTenantRestore({ ...job, digest: preview.digest, safetyBackupId });
      if (outcome.kind === 'plan-changed') {
        status.planChanged = true;
        preview = outcome.preview;
        continue;
      }
      status.applied = outcome.result;
      status.safetyBackupId = outcome.result.safetyBackup?.backupId;
      break;
    }

    status.state = 'verifying';
    await record({ safetyBackupId: status.safetyBackupId });
    // the apply compared every other tenant's rows before and after, inside its transaction
    status.verification = await copy.verifyTenantRestore({ ...job, otherTenantsUnchanged: true });
    if (!status.verification.ok) {
      const bad = status.verification.tables.filter((t) => !t.ok).map((t) => `${t.table} (expected ${t.expected}, got ${t.actual})`);
      throw ApplicationFailure.nonRetryable(
        `The restored tenant does not match the backup: ${bad.join('; ')}. HINT: restore safety backup ${status.safetyBackupId} to undo, and investigate concurrent writes to the tenant.`,
        ErrorType.RestoreVerificationFailed,
      );
    }
    return await finish('done');
  } catch (err) {
    const ending = endingOf(err);
    status.state = ending;
    status.error = rootCause(err).message;
    await CancellationScope.nonCancellable(() => record().catch(() => undefined));
    const failure = failureOf(err);
    await CancellationScope.nonCancellable(() => outcome(ending, { error: failure.message, errorType: failure.type }).catch(() => undefined));
    await announceFailure(err, { kind: 'tenantRestore', step: 'outcome', tenantId, backupId: status.backupId });
    throw err;
  } finally {
    await CancellationScope.nonCancellable(() => quick.dropRestoreScratch({ restoreId }));
    // a decision that arrived at the very end (refused: too late) is still recorded
    await CancellationScope.nonCancellable(() => audit.flush().catch(() => undefined));
  }
}

/** Rows the apply inserted, updated and deleted, over every table. */
function changedRows(applied: Record<string, { insert: number; update: number; delete: number }> | undefined): { insert: number; update: number; delete: number } | undefined {
  if (!applied) return undefined;
  const sum = { insert: 0, update: 0, delete: 0 };
  for (const t of Object.values(applied)) {
    sum.insert += t.insert;
    sum.update += t.update;
    sum.delete += t.delete;
  }
  return sum;
}
