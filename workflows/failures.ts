// Reading failures inside workflows: the operator-facing message and stable type of an error,
// looking through activity and child-workflow wrappers to the cause.
import { ApplicationFailure, CancellationScope, isCancellation, TemporalFailure } from '@temporalio/workflow';
import { isBadInput } from '../lib/errors';

export function rootCause(err: unknown): { message: string; type?: string } {
  let e: unknown = err;
  while (e instanceof TemporalFailure && e.cause) e = e.cause;
  if (e instanceof ApplicationFailure) return { message: e.message, type: e.type ?? undefined };
  return { message: e instanceof Error ? e.message : String(e) };
}

/** How a run that did not complete ended: cancelled (through Temporal, by a person or its parent) or failed. */
export type Ending = 'cancelled' | 'failed';

export function endingOf(err: unknown): Ending {
  return isCancellation(err) ? 'cancelled' : 'failed';
}

/** How a failover or switchover that did not complete ended, as its DR event and audit record say: bad input changed nothing (a refusal). */
export function drMoveEnding(err: unknown): Ending | 'refused' {
  return endingOf(err) === 'cancelled' ? 'cancelled' : isBadInput(rootCause(err).type) ? 'refused' : 'failed';
}

/**
 * A run failed or was cancelled: its status says which, with the cause, and the compensations run
 * newest-first (each failure ignored), even when the workflow itself is being cancelled. The
 * caller rethrows.
 */
export async function compensate(status: { state: string; error?: string }, err: unknown, compensations: ((cause: string, type: string | undefined, ending: Ending) => Promise<unknown>)[]): Promise<void> {
  const { message: cause, type } = rootCause(err);
  const ending = endingOf(err);
  status.state = ending;
  status.error = cause;
  await CancellationScope.nonCancellable(async () => {
    for (const undo of compensations) await undo(cause, type, ending).catch(() => undefined);
  });
}
