// Turns engine errors into Temporal failures: bad input and broken backups fail the activity
// for good (non-retryable, stable type); transient ones (database or storage down) retry.
import { ApplicationFailure } from '@temporalio/common';
import { isTransient, TenantsafeError } from '../lib/errors';

export function toFailure(err: unknown): unknown {
  if (err instanceof TenantsafeError) {
    return ApplicationFailure.create({ message: err.message, type: err.type, nonRetryable: !isTransient(err.type) });
  }
  return err;
}

/** Wraps every activity of a set so engine errors reach the workflow typed. */
export function withFailures<T extends Record<string, (input: any) => Promise<unknown>>>(activities: T): T {
  return Object.fromEntries(
    Object.entries(activities).map(([name, fn]) => [
      name,
      async (input: unknown) => {
        try {
          return await fn(input);
        } catch (err) {
          throw toFailure(err);
        }
      },
    ]),
  ) as T;
}
