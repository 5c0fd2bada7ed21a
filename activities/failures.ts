// Turns engine errors into Temporal failures: bad input and broken backups fail the activity
// for good (non-retryable, stable type); transient ones (database or storage down, a connection
// lost to a restart or a failover) retry.
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import { isTransient, TenantsafeError } from '../lib/errors';
import { connectionError, isConnectionLost, privilegeError } from '../lib/pg';

/** `role`: the database role the activities log in as, named when it lacks a privilege. */
export function toFailure(err: unknown, role?: string): unknown {
  const typed = isConnectionLost(err) ? connectionError(undefined, err) : privilegeError(err, role);
  if (typed instanceof TenantsafeError) {
    return ApplicationFailure.create({ message: typed.message, type: typed.type, nonRetryable: !isTransient(typed.type) });
  }
  return typed;
}

/** Wraps every activity of a set so engine errors reach the workflow typed. */
export function withFailures<T extends Record<string, (input: any) => Promise<unknown>>>(activities: T, role?: string): T {
  return Object.fromEntries(
    Object.entries(activities).map(([name, fn]) => [
      name,
      async (input: unknown) => {
        try {
          return await fn(input);
        } catch (err) {
          // A cancelled step reports its cancellation, not the error the cancellation caused (its
          // connection ended, its statement cancelled): the workflow then ends cancelled.
          const cancelled = Context.current().cancellationSignal;
          if (cancelled.aborted) throw cancelled.reason;
          throw toFailure(err, role);
        }
      },
    ]),
  ) as T;
}
