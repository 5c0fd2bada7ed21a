// Runbook: planned switchover to the standby, losing nothing (issue 21; docs/architecture.md).
//   1. plan (bad input fails here): both servers must answer, the standby must be streaming
//   2. pause the endpoint: clients wait while their transactions finish
//   3. demote the primary: read-only, its sessions ended; its WAL position now is its last
//   4. wait until the standby replayed that position (nothing committed is left behind)
//   5. promote the standby
//   6. point the endpoint at it and resume the clients; check a write reaches it
//   7. record: the time clients waited (pause → first write), loss 0, the new roles (the old
//      primary stays up read-only, to be rebuilt as the new standby with pg_rewind)
// A failure before the promotion undoes the demotion and resumes the endpoint (saga). The audit
// log (lib/audit) records the request and the outcome.
import { ApplicationFailure, CancellationScope, proxyActivities, setHandler, upsertSearchAttributes, workflowInfo } from '@temporalio/workflow';
import type { DrActivities, DrOutcomeInput } from '../activities/dr';
import type { DrEventRecord } from '../lib/catalog';
import type { DrPlan } from '../lib/dr/failover';
import { ErrorType } from '../lib/errors';
import { drLabel } from '../lib/labels';
import { auditTrail } from './audit';
import { compensate, drMoveEnding, rootCause } from './failures';
import { searchAttributes, switchoverStatusQuery, type SwitchoverInput, type SwitchoverResult, type SwitchoverStatus } from './messages';
import { drStep, shortStep } from './profiles';

const step = proxyActivities<DrActivities>(shortStep);
const dr = proxyActivities<DrActivities>(drStep);

export async function switchover(input: SwitchoverInput): Promise<SwitchoverResult> {
  const { runId, startTime } = workflowInfo();
  const switchoverId = drLabel(startTime, 'switchover', runId);
  const status: SwitchoverStatus = { state: 'preparing', switchoverId, requestedBy: input.requestedBy };
  const audit = auditTrail();
  setHandler(switchoverStatusQuery, () => status);
  if (typeof input.requestedBy !== 'string' || input.requestedBy.trim() === '') {
    throw ApplicationFailure.nonRetryable('requestedBy is required: who asks for this switchover. HINT: pass --by <name> (CLI) or "requestedBy" in the workflow input.', ErrorType.BadInput);
  }
  let plan: DrPlan | undefined;
  const event = (extra: Pick<DrEventRecord, 'status'> & Partial<DrEventRecord>): DrOutcomeInput['event'] => ({
    kind: 'switchover',
    database: plan!.database,
    reason: 'planned switchover',
    requestedBy: input.requestedBy,
    startedAt: startTime.toISOString(),
    rtoTargetMs: plan!.targets.rtoMs,
    rpoTargetMs: plan!.targets.rpoMs,
    details: { switchoverId },
    ...extra,
  });
  const compensations: (() => Promise<unknown>)[] = [];

  const subject = () => ({ switchoverId, ...((plan?.database ?? input.database) ? { database: plan?.database ?? input.database } : {}) });
  const outcome = (state: 'done' | 'failed' | 'refused' | 'cancelled', details: Record<string, unknown>) => audit.append({ action: 'switchover.outcome', by: 'tenantsafe', subject: subject(), outcome: state, details });

  try {
    await audit.append({ action: 'switchover.request', by: input.requestedBy, subject: subject(), outcome: 'accepted' });
    plan = await step.prepareDrMove({ kind: 'switchover', database: input.database });
    const nodes = { primary: plan.primary, standby: plan.standby };
    Object.assign(status, { database: plan.database, primary: `${plan.primary.host}:${plan.primary.port}`, standby: `${plan.standby.host}:${plan.standby.port}` });
    upsertSearchAttributes([{ key: searchAttributes.database, value: plan.database }]);
    // the same judgement as a failover's, with a primary that must answer: a standby not streaming, or behind, refuses
    const probe = await dr.probeDrPrimary({ ...nodes });
    if (probe.lost) {
      throw ApplicationFailure.nonRetryable(`The primary at ${status.primary} does not answer: a switchover needs it. HINT: use \`tenantsafe failover\` when the primary is lost.`, ErrorType.FailoverRefused);
    }
    await step.assessDrStandby({ ...nodes, probe, force: true });
    await step.recordDrOutcome({ event: event({ status: 'running' }) });

    status.state = 'pausing';
    const pausedAt = Date.now();
    compensations.unshift(() => step.resumeDrEndpoint());
    await step.pauseDrEndpoint();
    status.state = 'demoting';
    compensations.unshift(() => step.undoDrDemotion(nodes));
    const { finalLsn } = await step.demoteDrPrimary(nodes);
    status.finalLsn = finalLsn;
    status.state = 'catching-up';
    await dr.awaitDrReplay({ ...nodes, lsn: finalLsn });

    status.state = 'promoting';
    compensations.length = 0; // past the promotion there is no way back but another switchover
    await dr.promoteDrStandby({ ...nodes, lastKnownLsn: finalLsn });
    status.state = 'switching';
    await step.switchDrEndpoint(nodes);
    status.state = 'checking-write';
    const { writtenAt } = await dr.checkDrWrite(nodes);
    status.durationMs = Date.parse(writtenAt) - pausedAt;
    status.state = 'done';
    await step.recordDrOutcome({
      event: event({
        status: 'done',
        finishedAt: writtenAt,
        rtoMs: status.durationMs,
        rpoMs: 0,
        dataLossBytes: 0,
        metTargets: status.durationMs <= plan.targets.rtoMs,
        details: { switchoverId, finalLsn, oldPrimary: nodes.primary, newPrimary: nodes.standby },
      }),
      roles: { database: plan.database, primary: plan.standby, standby: plan.primary, standbyState: 'needs-rebuild' },
    });
    await outcome('done', { durationMs: status.durationMs, finalLsn, dataLossBytes: 0, newPrimary: status.standby });
    return { state: 'done', switchoverId, database: plan.database, primary: status.standby, standby: status.primary, finalLsn, durationMs: status.durationMs, dataLossBytes: 0 };
  } catch (err) {
    const lastState = status.state;
    await compensate(status, err, compensations);
    const { type } = rootCause(err);
    const ending = drMoveEnding(err);
    if (plan) {
      await CancellationScope.nonCancellable(() => step.recordDrOutcome({ event: event({ status: ending, finishedAt: new Date().toISOString(), error: status.error }) }).catch(() => undefined));
    }
    await CancellationScope.nonCancellable(() => outcome(ending, { error: status.error, errorType: type, state: lastState }).catch(() => undefined));
    throw err;
  }
}
