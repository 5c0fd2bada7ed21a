// The alerts' activity: hands a job's outcome to the notifier (lib/alerts), which counts it once
// per idempotency key (this run and the step the workflow names) and queues the notices of a
// transition. Sending happens in the worker's background, never here: a receiver that is down
// cannot slow or fail the job. A catalog that cannot be reached fails this step (retried by its
// profile); the workflow ignores that failure too.
import { Context } from '@temporalio/activity';
import type { AlertOutcomeInput, AlertOutcomeResult } from '../lib/alerts';
import type { Engine } from '../lib/engine';
import { withFailures } from './failures';

export function createAlertActivities(engine: Engine) {
  return withFailures({
    async notifyAlert(input: AlertOutcomeInput): Promise<AlertOutcomeResult> {
      // always called by a workflow
      const { workflowExecution, workflowType } = Context.current().info;
      return engine.alerts.record({ ...input, workflowId: workflowExecution!.workflowId, runId: workflowExecution!.runId, workflowType: workflowType! });
    },
  });
}

export type AlertActivities = ReturnType<typeof createAlertActivities>;
