// Inputs, results, signals, queries and search attributes shared by workflows, the CLI and
// any service with a Temporal client. Add fields as optional so old histories still replay.
import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';
import { defineQuery } from '@temporalio/workflow';

export const searchAttributes = {
  tenantId: defineSearchAttributeKey('TenantId', SearchAttributeType.KEYWORD),
  backupKind: defineSearchAttributeKey('BackupKind', SearchAttributeType.KEYWORD),
  database: defineSearchAttributeKey('Database', SearchAttributeType.KEYWORD),
};

/** Deterministic ids: one writer per tenant (DESIGN rule 6). */
export const workflowIds = {
  tenantBackup: (tenantId: string) => `tenant-backup/${tenantId}`,
  tenantBackupsAll: () => 'tenant-backups-all',
};

export const scheduleIds = {
  tenantBackupsAll: 'schedule/tenant-backups',
  tenantBackup: (tenantId: string) => `schedule/tenant-backup/${tenantId}`,
};

// ---- tenantBackup ----

export interface TenantBackupInput {
  tenantId: string;
}

export type TenantBackupState = 'checking' | 'exporting' | 'recording' | 'done' | 'failed';

export interface TenantBackupStatus {
  state: TenantBackupState;
  tenantId: string;
  backupId: string;
  error?: string;
}

export interface TenantBackupResult {
  backupId: string;
  tenantId: string;
  status: 'completed';
  rows: number;
  bytes: number;
  snapshotAt: string;
  lsn: string;
  storageUri: string;
  tenantChecksum: string;
}

// ---- tenantBackupsAll ----

export interface TenantBackupsAllInput {
  /** how many tenant backups run at once (default 4) */
  concurrency?: number;
  /** tenants that have a schedule of their own */
  excludeTenants?: string[];
  /** carried over continue-as-new: tenants still to do, and results so far */
  remaining?: string[];
  carried?: TenantBackupsAllResult;
}

export interface TenantBackupFailure {
  tenantId: string;
  error: string;
  type?: string;
}

export interface TenantBackupsAllResult {
  succeeded: number;
  failed: TenantBackupFailure[];
  /** a backup of the tenant was already running (e.g. its own schedule): not started twice */
  skipped: string[];
  backupIds: Record<string, string>;
}

export interface TenantBackupsAllStatus {
  total: number;
  done: number;
  running: string[];
  failed: TenantBackupFailure[];
}

export const statusQuery = defineQuery<unknown>('status');
export const tenantBackupStatusQuery = defineQuery<TenantBackupStatus>('status');
export const tenantBackupsAllStatusQuery = defineQuery<TenantBackupsAllStatus>('status');
