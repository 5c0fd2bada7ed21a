// Validation of workflow inputs typed by hand in the Temporal UI: fail fast, never retry.
import { ApplicationFailure } from '@temporalio/workflow';
import { ErrorType } from '../lib/errors';

export function requireTenantId(input: unknown): string {
  const tenantId = (input as { tenantId?: unknown } | null)?.tenantId;
  if (typeof tenantId !== 'string' || tenantId.trim() === '') {
    throw ApplicationFailure.nonRetryable(
      `Input must be {"tenantId": "<id>"} (got ${JSON.stringify(input)}). HINT: start the workflow with a JSON object holding the tenant id.`,
      ErrorType.BadInput,
    );
  }
  return tenantId;
}

export function optionalInteger(input: unknown, key: string, min: number, max: number, fallback: number): number {
  const v = (input as Record<string, unknown> | null)?.[key];
  if (v === undefined || v === null) return fallback;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw ApplicationFailure.nonRetryable(`${key} must be an integer from ${min} to ${max} (got ${JSON.stringify(v)}). HINT: fix the workflow input.`, ErrorType.BadInput);
  }
  return v;
}

export function requireBackupId(input: unknown): string {
  const backupId = (input as { backupId?: unknown } | null)?.backupId;
  if (typeof backupId !== 'string' || backupId.trim() === '') {
    throw ApplicationFailure.nonRetryable(
      `Input must be {"backupId": "<id>"} (got ${JSON.stringify(input)}). HINT: start the workflow with a JSON object holding the backup id.`,
      ErrorType.BadInput,
    );
  }
  return backupId;
}
