// Reading failures inside workflows: the operator-facing message and stable type of an error,
// looking through activity and child-workflow wrappers to the cause.
import { ApplicationFailure, TemporalFailure } from '@temporalio/workflow';

export function rootCause(err: unknown): { message: string; type?: string } {
  let e: unknown = err;
  while (e instanceof TemporalFailure && e.cause) e = e.cause;
  if (e instanceof ApplicationFailure) return { message: e.message, type: e.type ?? undefined };
  return { message: e instanceof Error ? e.message : String(e) };
}
