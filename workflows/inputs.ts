// Workflow inputs typed by hand in the Temporal UI: checked by the pure rules of lib/inputs.ts,
// failing the run at once, never retried.
import { ApplicationFailure } from '@temporalio/workflow';
import { TenantsafeError } from '../lib/errors';
import * as check from '../lib/inputs';

/** Runs a pure check from lib/: its TenantsafeError fails the workflow for good, keeping its type. */
export function failFast<T>(run: () => T): T {
  try {
    return run();
  } catch (err) {
    if (err instanceof TenantsafeError) throw ApplicationFailure.nonRetryable(err.message, err.type);
    throw err;
  }
}

export function requireTenantId(input: unknown): string {
  return failFast(() => check.requiredId(input, 'tenantId', 'tenant'));
}

export function requireBackupId(input: unknown): string {
  return failFast(() => check.requiredId(input, 'backupId', 'backup'));
}

export function optionalInteger(input: unknown, key: string, min: number, max: number, fallback: number): number {
  return failFast(() => check.optionalInteger(input, key, min, max, fallback));
}
