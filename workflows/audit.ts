// Recording a workflow's acts in the audit log (lib/audit, through the appendAudit activity).
// `append` records at once and is awaited where the act happens; `later` is for signal handlers
// (an approval, a refusal, a rejection arrive while the workflow waits): its append starts at
// once and `flush` awaits it, so the main flow acts on a decision only once the decision is
// recorded. Each append names its step (a counter, the same on replay): a retried activity
// appends once. Behind the patch `audit-log`: runs started before it record nothing.
import { patched, proxyActivities } from '@temporalio/workflow';
import type { AuditActivities } from '../activities/audit';
import type { AuditEvent } from '../lib/audit/types';
import { auditLogPatch, auditStep } from './profiles';
import { onServedDatabase } from './database';

const audit = onServedDatabase(proxyActivities<AuditActivities>(auditStep));

export interface AuditTrail {
  /** appends now (after what `later` started), awaited by the caller */
  append(event: AuditEvent): Promise<void>;
  /** starts an append from a signal handler; `flush` awaits it */
  later(event: AuditEvent): void;
  /** waits for every append `later` started; rethrows the first that failed */
  flush(): Promise<void>;
}

/** Call once, at the start of the workflow (before its first command). */
export function auditTrail(): AuditTrail {
  const on = patched(auditLogPatch);
  let steps = 0;
  const pending: Promise<void>[] = [];
  const failures: unknown[] = [];
  const start = (event: AuditEvent) => audit.appendAudit({ step: `${++steps}:${event.action}`, event }).then(() => undefined);
  const flush = async () => {
    while (pending.length > 0) await Promise.all(pending.splice(0));
    if (failures.length > 0) throw failures.shift();
  };
  return {
    async append(event) {
      if (!on) return;
      await flush();
      await start(event);
    },
    later(event) {
      if (!on) return;
      pending.push(
        start(event).catch((err: unknown) => {
          failures.push(err);
        }),
      );
    },
    flush,
  };
}
