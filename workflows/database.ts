// Which database of several a workflow run serves (docs/fleet.md): the `database` of its input,
// carried into every activity it schedules and every child or next run it starts, so the worker
// runs them on that database's engine. Absent: the default database (the only one, or the
// first), and nothing is added: the runs and histories of a single database are as before.
import { upsertSearchAttributes } from '@temporalio/workflow';
import { optionalDatabaseId } from '../lib/inputs';
import { failFast } from './inputs';
import { searchAttributes } from './messages';

// Module state is the run's own: the SDK gives each workflow run its own instances of its modules.
let served: string | undefined;

/** Call first in a workflow: checks and keeps its input's database, and sets the `Database` search attribute to it. */
export function serveDatabase(input: unknown): string | undefined {
  served = failFast(() => optionalDatabaseId(input));
  if (served !== undefined) upsertSearchAttributes([{ key: searchAttributes.database, value: served }]);
  return served;
}

/** The database this run serves; undefined: the default one. */
export function servedDatabase(): string | undefined {
  return served;
}

/** An input for an activity, a child or the next run: with the served database, when there is one. */
export function withDatabase<T extends object>(input: T): T & { database?: string } {
  return served === undefined ? input : { ...input, database: served };
}

/** Activities (from proxyActivities) whose every call carries the served database in its input. */
export function onServedDatabase<T extends object>(activities: T): T {
  return new Proxy(activities, {
    get(target, name) {
      const fn = Reflect.get(target, name) as (...args: unknown[]) => unknown;
      return (...args: unknown[]) => (served === undefined ? fn(...args) : fn({ ...(args[0] as object | undefined), database: served }, ...args.slice(1)));
    },
  });
}
