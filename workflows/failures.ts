// Reading failures inside workflows: the operator-facing message and stable type of an error,
// looking through activity and child-workflow wrappers to the cause.
import { ApplicationFailure, CancellationScope, TemporalFailure } from '@temporalio/workflow';

export function rootCause(err: unknown): { message: string; type?: string } {
  let e: unknown = err;
  while (e instanceof TemporalFailure && e.cause) e = e.cause;
  if (e instanceof ApplicationFailure) return { message: e.message, type: e.type ?? undefined };
  return { message: e instanceof Error ? e.message : String(e) };
}

/**
 * A run failed: its status says so with the cause, and the compensations run newest-first
 * (each failure ignored), even when the workflow itself is being cancelled. The caller rethrows.
 */
export async function compensate(status: { state: string; error?: string }, err: unknown, compensations: ((cause: string, type?: string) => Promise<unknown>)[]): Promise<void> {
  const { message: cause, type } = rootCause(err);
  status.state = 'failed';
  status.error = cause;
  await CancellationScope.nonCancellable(async () => {
    for (const undo of compensations) await undo(cause, type).catch(() => undefined);
  });
}
