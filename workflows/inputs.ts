// Validation of workflow inputs typed by hand in the Temporal UI: fail fast, never retry.
import { ApplicationFailure } from '@temporalio/workflow';
import { ErrorType } from '../lib/errors';

export function requireTenantId(input: unknown): string {
  return requireId(input, 'tenantId', 'tenant');
}

export function requireBackupId(input: unknown): string {
  return requireId(input, 'backupId', 'backup');
}

function requireId(input: unknown, key: string, what: string): string {
  const id = (input as Record<string, unknown> | null)?.[key];
  if (typeof id !== 'string' || id.trim() === '') {
    throw ApplicationFailure.nonRetryable(
      `Input must be {"${key}": "<id>"} (got ${JSON.stringify(input)}). HINT: start the workflow with a JSON object holding the ${what} id.`,
      ErrorType.BadInput,
    );
  }
  return id;
}

export function optionalInteger(input: unknown, key: string, min: number, max: number, fallback: number): number {
  const v = (input as Record<string, unknown> | null)?.[key];
  if (v === undefined || v === null) return fallback;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw ApplicationFailure.nonRetryable(`${key} must be an integer from ${min} to ${max} (got ${JSON.stringify(v)}). HINT: fix the workflow input.`, ErrorType.BadInput);
  }
  return v;
}

