// Runbook: fail over to the standby when the primary is lost (issue 21; docs/architecture.md).
//   1. plan: the standby and the endpoint configured, which server is primary now (bad input fails here)
//   2. probe the primary dr.failover.probes times: it is lost only if every probe fails (else refuse, unless forced)
//   3. the standby: reachable, in recovery, not further behind than dr.standby.maxLag (else refuse,
//      unless forced; the loss estimate in the message and the status)
//   4. wait for an approval by someone other than the requester (dr.failover.approval: automatic skips it)
//   5. fence: the endpoint drops every connection and holds new clients, and names the standby
//      (read-only until promoted); the old primary, if it answers, becomes read-only
//   6. promote the standby (pg_promote), measuring what the old primary had that it lacks
//   7. let the clients through the endpoint, check a write reaches the new primary
//   8. record: RTO (first failed probe → first write), data loss, targets met, the new roles
// Nothing changes before step 5; a refusal, rejection or expiry leaves everything as it was.
// The audit log (lib/audit) records the request, every approval and rejection (refused ones too)
// and the outcome; an approval is recorded before the fence.
import { ApplicationFailure, CancellationScope, condition, proxyActivities, setHandler, upsertSearchAttributes, workflowInfo } from '@temporalio/workflow';
import type { DrActivities, DrOutcomeInput } from '../activities/dr';
import type { DrEventRecord } from '../lib/catalog';
import type { DrPlan } from '../lib/dr/failover';
import { ErrorType } from '../lib/errors';
import { drLabel } from '../lib/labels';
import { approvalRefusal, rejectionOf, rejectionRefusal } from '../lib/restore/rules';
import { auditTrail } from './audit';
import { drMoveEnding, rootCause } from './failures';
import { failoverApproveSignal, failoverStatusQuery, rejectSignal, searchAttributes, type FailoverInput, type FailoverResult, type FailoverStatus } from './messages';
import { drStep, shortStep } from './profiles';

const step = proxyActivities<DrActivities>(shortStep);
const dr = proxyActivities<DrActivities>(drStep);

export async function failover(input: FailoverInput): Promise<FailoverResult> {
  const { runId, startTime } = workflowInfo();
  const failoverId = drLabel(startTime, 'failover', runId);
  const status: FailoverStatus = { state: 'probing', failoverId, reason: input.reason, requestedBy: input.requestedBy, force: !!input.force, approvals: [], refused: [] };
  const now = () => new Date().toISOString();
  const audit = auditTrail();
  const subject = () => ({ failoverId, ...(status.database ? { database: status.database } : {}) });
  const named = (v: unknown) => (typeof v === 'string' ? v : '');
  setHandler(failoverStatusQuery, () => status);
  setHandler(failoverApproveSignal, (a) => {
    // an approval without the id approves this run; one naming another run's is refused
    const refusal = approvalRefusal(
      { restoreId: failoverId, what: 'failover', state: status.state, requestedBy: status.requestedBy, preview: { digest: failoverId }, approvals: status.approvals },
      { by: a?.by, digest: a?.digest ?? failoverId },
    );
    if (refusal) status.refused.push({ by: String(a?.by), reason: refusal.reason, at: now() });
    else status.approvals.push({ by: a.by, at: now() });
    audit.later({ action: 'failover.approve', by: named(a?.by), subject: subject(), outcome: refusal ? 'refused' : 'accepted', details: refusal ? { reason: refusal.reason, state: status.state } : {} });
  });
  setHandler(rejectSignal, (r) => {
    const refusal = rejectionRefusal(r);
    const counts = !refusal && ['probing', 'checking-standby', 'awaiting-approval'].includes(status.state);
    const tooLate = `arrived while ${status.state}: too late`;
    if (counts) status.rejection = rejectionOf(r);
    else status.refused.push({ by: String(r?.by), reason: refusal ? refusal.reason : `rejection ${tooLate}`, at: now() });
    audit.later({
      action: 'failover.reject',
      by: named(r?.by),
      subject: subject(),
      outcome: counts ? 'accepted' : 'refused',
      details: { ...(named(r?.reason) ? { reason: r.reason } : {}), ...(counts ? {} : { refusal: refusal ? refusal.reason : tooLate }) },
    });
  });

  if (typeof input.reason !== 'string' || input.reason.trim() === '') {
    throw ApplicationFailure.nonRetryable('A failover needs a reason. HINT: pass --reason <text> (CLI) or "reason" in the workflow input.', ErrorType.BadInput);
  }
  if (typeof input.requestedBy !== 'string' || input.requestedBy.trim() === '') {
    throw ApplicationFailure.nonRetryable('requestedBy is required: who asks for this failover. HINT: pass --by <name> (CLI) or "requestedBy" in the workflow input.', ErrorType.BadInput);
  }
  let plan: DrPlan | undefined;
  const event = (extra: Pick<DrEventRecord, 'status'> & Partial<DrEventRecord>): DrOutcomeInput['event'] => ({
    kind: 'failover' as const,
    database: plan!.database,
    reason: input.reason,
    requestedBy: input.requestedBy,
    startedAt: startTime.toISOString(),
    rtoTargetMs: plan!.targets.rtoMs,
    rpoTargetMs: plan!.targets.rpoMs,
    details: { failoverId, force: !!input.force },
    ...extra,
  });
  const outcome = (state: 'done' | 'rejected' | 'expired' | 'failed' | 'refused' | 'cancelled', details: Record<string, unknown>) =>
    audit.append({ action: 'failover.outcome', by: 'tenantsafe', subject: subject(), outcome: state === 'refused' ? 'refused' : state, details });
  const finish = async (state: 'rejected' | 'expired'): Promise<FailoverResult> => {
    status.state = state;
    await step.recordDrOutcome({ event: event({ status: 'refused', finishedAt: now(), error: state === 'rejected' ? `rejected by ${status.rejection?.by}: ${status.rejection?.reason ?? ''}` : 'no approval in time' }) });
    await outcome(state, state === 'rejected' ? { rejectedBy: status.rejection?.by, reason: status.rejection?.reason } : { expiredAt: status.expiresAt });
    return { state, failoverId, database: plan!.database, rejection: status.rejection };
  };

  try {
    await audit.append({ action: 'failover.request', by: input.requestedBy, subject: { failoverId, ...(input.database ? { database: input.database } : {}) }, outcome: 'accepted', details: { reason: input.reason, force: !!input.force } });
    plan = await step.prepareDrMove({ kind: 'failover', database: input.database });
    const nodes = { primary: plan.primary, standby: plan.standby };
    Object.assign(status, { database: plan.database, approval: plan.approval, primary: `${plan.primary.host}:${plan.primary.port}`, standby: `${plan.standby.host}:${plan.standby.port}` });
    upsertSearchAttributes([{ key: searchAttributes.database, value: plan.database }]);
    await step.recordDrOutcome({ event: event({ status: 'running' }) });

    const probe = await dr.probeDrPrimary(nodes);
    status.primaryLostAt = probe.firstFailedAt;
    status.state = 'checking-standby';
    const { loss } = await step.assessDrStandby({ ...nodes, probe, force: !!input.force });
    status.lossEstimate = { bytes: loss.bytes, ms: loss.ms, source: loss.source };

    if (plan.approval === 'required') {
      status.state = 'awaiting-approval';
      status.expiresAt = new Date(Date.now() + plan.approvalTimeoutMs).toISOString();
      const decided = await condition(() => !!status.rejection || status.approvals.length > 0, plan.approvalTimeoutMs);
      // decided at once (a decision arriving from now on is too late), acted on once it is in the log
      status.state = status.rejection ? 'rejected' : decided ? 'fencing' : 'expired';
      await audit.flush();
      if (status.rejection) return await finish('rejected');
      if (!decided) return await finish('expired');
    } else {
      await audit.flush();
      if (status.rejection) return await finish('rejected');
    }

    status.state = 'fencing';
    const { fencedLsn } = await step.fenceDrPrimary(nodes);
    status.state = 'promoting';
    const promoted = await dr.promoteDrStandby({ ...nodes, lastKnownLsn: fencedLsn ?? probe.lastLsn });
    status.state = 'switching';
    await step.switchDrEndpoint(nodes);
    status.state = 'checking-write';
    const { writtenAt } = await dr.checkDrWrite(nodes);

    // the RTO runs from the primary lost (a forced failover of a primary that answered: from the request)
    const lostAt = Date.parse(probe.firstFailedAt ?? startTime.toISOString());
    status.rtoMs = Date.parse(writtenAt) - lostAt;
    status.dataLossBytes = promoted.loss.bytes;
    status.rpoMs = promoted.loss.ms;
    // an unknown loss (the old primary's data directory not on this host, no probe answered) is judged on the RTO alone
    const rpoMet = promoted.loss.ms !== null ? promoted.loss.ms <= plan.targets.rpoMs : promoted.loss.bytes === null || promoted.loss.bytes === 0;
    status.metTargets = status.rtoMs <= plan.targets.rtoMs && rpoMet;
    status.state = 'done';
    await step.recordDrOutcome({
      event: event({
        status: 'done',
        finishedAt: writtenAt,
        rtoMs: status.rtoMs,
        rpoMs: status.rpoMs,
        dataLossBytes: status.dataLossBytes,
        metTargets: status.metTargets,
        details: { failoverId, force: !!input.force, primaryLostAt: probe.firstFailedAt, approvedBy: status.approvals.map((a) => a.by), loss: promoted.loss, oldPrimary: nodes.primary, newPrimary: nodes.standby },
      }),
      roles: { database: plan.database, primary: plan.standby, standby: plan.primary, standbyState: 'fenced' },
    });
    await outcome('done', {
      approval: plan.approval,
      approvedBy: status.approvals.map((a) => a.by),
      rtoMs: status.rtoMs,
      dataLossBytes: status.dataLossBytes,
      rpoMs: status.rpoMs,
      metTargets: status.metTargets,
      newPrimary: status.standby,
    });
    const { database, primary, standby, rtoMs, dataLossBytes, rpoMs, metTargets } = status;
    return { state: 'done', failoverId, database, primary: standby, standby: primary, rtoMs, dataLossBytes, rpoMs, metTargets };
  } catch (err) {
    const cause = rootCause(err);
    const lastState = status.state;
    status.state = 'failed';
    status.error = cause.message;
    // bad input (refused, misconfigured) changed nothing: a refusal, not a failure
    const ending = drMoveEnding(err);
    if (plan) {
      await CancellationScope.nonCancellable(() => step.recordDrOutcome({ event: event({ status: ending, finishedAt: now(), error: cause.message }) }).catch(() => undefined));
    }
    await CancellationScope.nonCancellable(() => outcome(ending, { error: cause.message, errorType: cause.type, state: lastState }).catch(() => undefined));
    throw err;
  } finally {
    await CancellationScope.nonCancellable(() => audit.flush().catch(() => undefined));
  }
}
