// Checks of what a person types (a workflow input in the Temporal UI, a CLI option) that need no
// database. Pure (no I/O, no Node builtins), so workflows run them too; each failure is BadInput
// with a HINT.
import { ErrorType, TenantsafeError } from './errors';

/** A non-empty string id under `key` of a JSON input object. */
export function requiredId(input: unknown, key: string, what: string): string {
  const id = (input as Record<string, unknown> | null)?.[key];
  if (typeof id !== 'string' || id.trim() === '') {
    throw new TenantsafeError(ErrorType.BadInput, `Input must be {"${key}": "<id>"} (got ${JSON.stringify(input)}).`, `start the workflow with a JSON object holding the ${what} id.`);
  }
  return id;
}

/** An optional integer from min to max under `key` of a JSON input object; `fallback` when absent. */
export function optionalInteger(input: unknown, key: string, min: number, max: number, fallback: number): number {
  const v = (input as Record<string, unknown> | null)?.[key];
  if (v === undefined || v === null) return fallback;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw new TenantsafeError(ErrorType.BadInput, `${key} must be an integer from ${min} to ${max} (got ${JSON.stringify(v)}).`, 'fix the workflow input.');
  }
  return v;
}

const isoWithZone = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})$/;

/** An ISO-8601 time with its time zone (without one, it would be read in the worker's zone). */
export function timeWithZone(text: string): Date {
  if (!isoWithZone.test(text) || Number.isNaN(Date.parse(text))) {
    throw new TenantsafeError(ErrorType.BadInput, `"${text}" is not an ISO-8601 time with a time zone.`, 'Write it like 2026-11-25T05:30:00Z.');
  }
  return new Date(text);
}

/** A database id of `databases` in the config (docs/fleet.md): short, lowercase, usable in a schema name, a workflow id and a folder. */
export const databaseIdPattern = /^[a-z][a-z0-9_]{0,30}$/;

/** The optional `database` of a JSON input object: a database id, or undefined. Whether the config names it, the worker checks. */
export function optionalDatabaseId(input: unknown): string | undefined {
  const v = (input as Record<string, unknown> | null)?.database;
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string' || !databaseIdPattern.test(v)) {
    throw new TenantsafeError(ErrorType.BadInput, `database must be a database id of the config: 1 to 31 lowercase letters, digits and _, starting with a letter (got ${JSON.stringify(v)}).`, 'fix the workflow input: leave database out for the default database, or give one of `databases` in the config.');
  }
  return v;
}
