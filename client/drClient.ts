// The typed client of failover and switchover (for the CLI and other services): start one (one
// per database at a time, either kind), approve or reject a failover after checking the rules
// its workflow applies (lib/restore/rules.ts), read its status.
import { WorkflowExecutionAlreadyStartedError, type WorkflowHandle } from '@temporalio/client';
import { ErrorType, TenantsafeError } from '../lib/errors';
import { approvalInvalid, approvalRefusal, type ApprovalRefusal, type ApprovalTarget } from '../lib/restore/rules';
import type { failover, switchover } from '../workflows';
import {
  drWorkflowIds,
  failoverApproveSignal,
  failoverStatusQuery,
  rejectSignal,
  searchAttributes,
  switchoverStatusQuery,
  type FailoverInput,
  type FailoverResult,
  type FailoverStatus,
  type RejectSignal,
  type SwitchoverInput,
  type SwitchoverResult,
  type SwitchoverStatus,
} from '../workflows/messages';
import { pollStatus, resultOf, type RestoreRef, type TenantsafeClient } from './client';

/** Where a failover runs: its workflow execution (the catalog's dr_events know it by failover id). */
export type FailoverRef = RestoreRef;

/** What `failover` prints once the workflow has judged the primary and the standby. */
export type FailoverRequested = FailoverStatus & { workflowId: string; errorType?: string };

const checkingStates: FailoverStatus['state'][] = ['probing', 'checking-standby'];

function approvalTarget(s: FailoverStatus): ApprovalTarget {
  return { restoreId: s.failoverId, what: 'failover', state: s.state, requestedBy: s.requestedBy, preview: { digest: s.failoverId }, approvals: s.approvals };
}

export class TenantsafeDr {
  constructor(private readonly client: TenantsafeClient) {}

  /**
   * Starts a failover and returns once it has probed the primary and judged the standby: waiting
   * for approval, under way (automatic policy), or refused (the error and its type set).
   */
  async failover(database: string, input: FailoverInput, opts: { wait?: boolean } = {}): Promise<FailoverRequested | FailoverResult> {
    const handle = (await this.start('failover', database, input)) as WorkflowHandle<typeof failover>;
    if (opts.wait) return resultOf(handle);
    const status = await pollStatus(handle, failoverStatusQuery, (s) => !checkingStates.includes(s.state));
    if (status.state !== 'failed') return { ...status, workflowId: handle.workflowId };
    const failure = await resultOf(handle).then(
      () => undefined,
      (err: unknown) => err as Error & { type?: string },
    );
    return { ...status, workflowId: handle.workflowId, error: failure?.message ?? status.error, errorType: failure?.type };
  }

  async switchover(database: string, input: SwitchoverInput, opts: { wait?: boolean } = {}): Promise<SwitchoverResult | (SwitchoverStatus & { workflowId: string })> {
    const handle = (await this.start('switchover', database, input)) as WorkflowHandle<typeof switchover>;
    if (opts.wait) return resultOf(handle);
    const status = await pollStatus(handle, switchoverStatusQuery, (s) => s.state !== 'preparing');
    if (status.state === 'failed' || status.state === 'cancelled') await resultOf(handle); // throws its failure, with the stable type
    return { ...status, workflowId: handle.workflowId };
  }

  async status(ref: FailoverRef): Promise<FailoverStatus> {
    return this.client.temporal.workflow.getHandle(ref.workflowId, ref.runId).query(failoverStatusQuery);
  }

  /**
   * Approves failover `failoverId` (the run at `ref`): refused at once when the workflow would
   * refuse it (`onRefused` hears of it: the workflow never does).
   */
  async approve(
    ref: FailoverRef,
    failoverId: string,
    by: string,
    opts: { wait?: boolean; onRefused?: (refusal: ApprovalRefusal, failover: FailoverStatus) => Promise<void> } = {},
  ): Promise<FailoverStatus | FailoverResult> {
    const handle = this.client.temporal.workflow.getHandle<typeof failover>(ref.workflowId, ref.runId);
    const before = await handle.query(failoverStatusQuery);
    const refusal = approvalRefusal(approvalTarget(before), { by, digest: failoverId });
    if (refusal) {
      await opts.onRefused?.(refusal, before);
      throw approvalInvalid(refusal);
    }
    await handle.signal(failoverApproveSignal, { by, digest: failoverId });
    const after = await pollStatus(handle, failoverStatusQuery, (s) => s.approvals.some((a) => a.by === by) || s.refused.length > before.refused.length || s.state !== 'awaiting-approval');
    const refused = after.refused.slice(before.refused.length).find((r) => r.by === by);
    if (refused) throw approvalInvalid({ reason: `The approval was refused: ${refused.reason}`, hint: `Check \`tenantsafe failover status ${failoverId}\`.` });
    return opts.wait ? resultOf(handle) : after;
  }

  async reject(ref: FailoverRef, rejection: RejectSignal): Promise<FailoverStatus> {
    const handle = this.client.temporal.workflow.getHandle(ref.workflowId, ref.runId);
    await handle.signal(rejectSignal, rejection);
    return pollStatus(handle, failoverStatusQuery, (s) => s.state === 'rejected' || s.refused.some((r) => r.by === rejection.by));
  }

  /** One failover or switchover per database: a second of either kind while one runs is refused. */
  private async start(kind: 'failover' | 'switchover', database: string, input: FailoverInput | SwitchoverInput): Promise<WorkflowHandle> {
    await this.client.assertWorkerPolling();
    const other = kind === 'failover' ? 'switchover' : 'failover';
    const otherRunning = await this.client.temporal.workflow
      .getHandle(drWorkflowIds[other](database))
      .describe()
      .then((d) => d.status.name === 'RUNNING')
      .catch(() => false);
    if (otherRunning) throw this.alreadyRunning(other, database, undefined);
    try {
      return await this.client.temporal.workflow.start(kind, {
        taskQueue: this.client.settings.taskQueue,
        workflowId: drWorkflowIds[kind](database),
        args: [input],
        workflowIdConflictPolicy: 'FAIL',
        typedSearchAttributes: [{ key: searchAttributes.database, value: database }],
      });
    } catch (err) {
      if (!(err instanceof WorkflowExecutionAlreadyStartedError)) throw err;
      const running = await this.client.temporal.workflow.getHandle(drWorkflowIds[kind](database)).query<{ state: string; failoverId?: string; switchoverId?: string }>('status').catch(() => undefined);
      throw this.alreadyRunning(kind, database, running);
    }
  }

  private alreadyRunning(kind: string, database: string, running: { state: string; failoverId?: string; switchoverId?: string } | undefined): TenantsafeError {
    const id = running?.failoverId ?? running?.switchoverId;
    return new TenantsafeError(
      ErrorType.AlreadyRunning,
      `A ${kind} of database "${database}" is already running${id ? ` (${id}, ${running!.state})` : ''}; one failover or switchover at a time.`,
      kind === 'failover' ? `Follow it (\`tenantsafe failover status ${id ?? '<id>'}\`), or reject it: tenantsafe failover reject ${id ?? '<id>'} --by <you>.` : 'Wait for it to finish (`temporal workflow show`), then try again.',
    );
  }
}
