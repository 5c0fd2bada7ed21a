// The audit log's activity: appends one entry (lib/audit) for a workflow. Its idempotency key is
// this run and the step the workflow names, so a retry (a worker died after the commit, a lost
// completion) finds the entry already there and appends nothing. The run is recorded with it.
import { Context } from '@temporalio/activity';
import type { AuditEvent } from '../lib/audit/types';
import type { Engine } from '../lib/engine';
import { withFailures } from './failures';

export interface AuditAppendInput {
  /** names the entry within the run: workflow id + run id + step is its idempotency key */
  step: string;
  event: AuditEvent;
}

export function createAuditActivities(engine: Engine) {
  return withFailures({
    async appendAudit(input: AuditAppendInput): Promise<{ seq: number; duplicate: boolean }> {
      // always called by a workflow
      const { workflowId, runId } = Context.current().info.workflowExecution!;
      const event = { ...input.event, details: { ...input.event.details, workflowId, runId } };
      const { entry, duplicate } = await engine.audit.append(event, { idempotencyKey: `${workflowId}/${runId}/${input.step}` });
      return { seq: entry.seq, duplicate };
    },
  });
}

export type AuditActivities = ReturnType<typeof createAuditActivities>;
