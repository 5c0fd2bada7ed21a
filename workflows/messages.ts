// Inputs, results, signals, queries and search attributes shared by workflows, the CLI and
// any service with a Temporal client. Add fields as optional so old histories still replay.
import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';
import { defineQuery, defineSignal } from '@temporalio/workflow';
import type { ApplyResult, ChangeKind, RestorePreview, RestoreVerification } from '../lib/restore/types';
import type { PitrWindow } from '../lib/pitr/window';
import type { RetentionOutcome } from '../lib/retention/run';
import type { VerificationCheck } from '../lib/verification/verifyBackup';

export const searchAttributes = {
  tenantId: defineSearchAttributeKey('TenantId', SearchAttributeType.KEYWORD),
  backupKind: defineSearchAttributeKey('BackupKind', SearchAttributeType.KEYWORD),
  database: defineSearchAttributeKey('Database', SearchAttributeType.KEYWORD),
};

/** Deterministic ids: one writer per tenant (docs/architecture.md, core rule 6). */
export const workflowIds = {
  tenantBackup: (tenantId: string) => `tenant-backup/${tenantId}`,
  tenantBackupsAll: () => 'tenant-backups-all',
  tenantRestore: (tenantId: string) => `tenant-restore/${tenantId}`,
};

export const scheduleIds = {
  tenantBackupsAll: 'schedule/tenant-backups',
  tenantBackup: (tenantId: string) => `schedule/tenant-backup/${tenantId}`,
};

// ---- tenantBackup ----

export interface TenantBackupInput {
  tenantId: string;
  /**
   * set by tenantBackupsAll: its one alert sums up the failures of the batch, so this run alerts
   * only when it succeeds (resolving an alert of the tenant's own), not when it fails
   */
  inBatch?: boolean;
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
  /** how many tenant backups of their own (big tenants; all when not batched) run at once (default 4) */
  concurrency?: number;
  /** false: every tenant its own tenantBackup child, as before batches (default true) */
  batched?: boolean;
  /** a tenant the statistics estimate at this many rows or more is backed up on its own, not in the batch (default 100000) */
  bigTenantRows?: number;
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
  /** the failures (in a batch, the first 100: failedCount has them all) */
  failed: TenantBackupFailure[];
  /** every failure, when the batch listed only some */
  failedCount?: number;
  /** a backup of the tenant was already running (e.g. its own schedule): not started twice */
  skipped: string[];
  /** the backups of tenants backed up on their own; a batch's are in the catalog (100k ids would not fit a result) */
  backupIds: Record<string, string>;
  /** the batch: how many tenants it backed up, its size and packs */
  batch?: { batchId: string; tenants: number; rows: number; bytes: number; packs: number; orphanPacksRemoved: number };
}

export interface TenantBackupsAllStatus {
  /** batch: the small tenants from one snapshot; own: tenants backed up one by one */
  phase?: 'batch' | 'own';
  total: number;
  done: number;
  running: string[];
  failed: TenantBackupFailure[];
}

// ---- tenantRestore ----

export interface TenantRestoreInput {
  tenantId: string;
  /** exactly one of backupId, at, lsn and backupBefore */
  backupId?: string;
  /** ISO-8601 with a zone: the tenant exactly as committed then (a commit at that very time included) */
  at?: string;
  /** the tenant exactly as committed up to this WAL position */
  lsn?: string;
  /** ISO-8601: the newest backup taken at or before this time */
  backupBefore?: string;
  mode?: 'replace' | 'missing-only';
  tables?: string[];
  changes?: ChangeKind[];
  /** rows referencing global rows that are gone: refuse (default) or skip them */
  missingRefs?: 'refuse' | 'skip';
  /** who asks; they cannot approve it themselves */
  requestedBy: string;
}

export type TenantRestoreState = 'previewing' | 'awaiting-approval' | 'applying' | 'verifying' | 'done' | 'rejected' | 'expired' | 'failed';

/** The preview as it travels through Temporal: counts and digests, no sample keys. */
export type PreviewSummary = Omit<RestorePreview, 'tables'> & {
  tables: Record<string, { insert: number; update: number; delete: number; selected: boolean; wholeTable?: boolean }>;
};

export interface ApproveSignal {
  by: string;
  /** the digest of the preview being approved */
  digest: string;
}

export interface RejectSignal {
  by: string;
  reason?: string;
}

export interface TenantRestoreStatus {
  state: TenantRestoreState;
  restoreId: string;
  tenantId: string;
  requestedBy: string;
  backupId?: string;
  preview?: PreviewSummary;
  approvalsRequired?: number;
  approvals: { by: string; digest: string; at: string }[];
  /** approvals and rejections that did not count, and why (self-approval, stale digest, ...) */
  refused: { by: string; reason: string; at: string }[];
  expiresAt?: string;
  /** set when the plan changed between approval and apply: a new approval is needed */
  planChanged?: boolean;
  safetyBackupId?: string;
  applied?: ApplyResult;
  verification?: RestoreVerification;
  rejection?: RejectSignal;
  error?: string;
}

export type TenantRestoreResult = Pick<TenantRestoreStatus, 'restoreId' | 'tenantId' | 'backupId' | 'safetyBackupId' | 'applied' | 'verification' | 'rejection'> & {
  state: 'done' | 'rejected' | 'expired';
};

export const approveSignal = defineSignal<[ApproveSignal]>('approve');
export const rejectSignal = defineSignal<[RejectSignal]>('reject');
export const tenantRestoreStatusQuery = defineQuery<TenantRestoreStatus>('status');

export const tenantBackupStatusQuery = defineQuery<TenantBackupStatus>('status');
export const tenantBackupsAllStatusQuery = defineQuery<TenantBackupsAllStatus>('status');

// ---- whole-database backups: full backup, WAL archiving, PITR, verification, retention ----

export const databaseWorkflowIds = {
  /** one full backup of the configured database at a time */
  fullBackup: () => 'full-backup',
  /**
   * one WAL archiver per cluster and store (scope: lib/databaseIdentity.ts): it owns the
   * replication slot. Without a scope, the id of runs started before it had one.
   */
  walArchiver: (scope?: string) => (scope ? `wal-archiver/${scope}` : 'wal-archiver'),
  /** one change log per database and store: it owns the logical slot */
  changeLog: (scope: string) => `change-log/${scope}`,
  /** one restore into a target directory at a time */
  pitrRestore: (target: string) => `pitr-restore/${target}`,
  verifyBackup: (backupId: string) => `verify-backup/${backupId}`,
  verifyRecentBackups: () => 'verify-recent-backups',
  applyRetention: () => 'apply-retention',
};

export const databaseScheduleIds = {
  fullBackups: 'schedule/full-backups',
  retention: 'schedule/retention',
  verification: 'schedule/verification',
};

export type FullBackupInput = Record<string, never>;

export type FullBackupState = 'checking' | 'backing-up' | 'recording' | 'done' | 'failed';

export interface FullBackupStatus {
  state: FullBackupState;
  backupId: string;
  error?: string;
}

export interface FullBackupResult {
  backupId: string;
  /** physical: pg_basebackup of the cluster (provider postgres); logical: pg_dump of the database (provider supabase) */
  kind: 'physical' | 'logical';
  bytes: number;
  startLsn: string | null;
  stopLsn: string | null;
  finishedAt: string;
}

export interface WalArchiverInput {
  /** how long one archiving activity runs before the workflow starts the next (default 1 h) */
  sliceMs?: number;
  /** carried over continue-as-new */
  carried?: { restarts: number; segmentsArchived: number };
}

export interface WalArchiverStatus {
  state: 'streaming' | 'backing-off' | 'stopped';
  segmentsArchived: number;
  lastSegment: string | null;
  restarts: number;
  lastError: string | null;
}

export interface ChangeLogInput {
  /** how long one streaming activity runs before the workflow starts the next (default 1 h) */
  sliceMs?: number;
  /** carried over continue-as-new */
  carried?: { restarts: number; segments: number; transactions: number };
}

export interface ChangeLogStatus {
  state: 'streaming' | 'backing-off' | 'stopped';
  segments: number;
  transactions: number;
  /** the end of the last transaction stored */
  durableLsn: string | null;
  /** the server time up to which every commit is stored */
  caughtUpAt: string | null;
  restarts: number;
  lastError: string | null;
}

export interface PitrRestoreInput {
  at?: string;
  lsn?: string;
  name?: string;
  latest?: boolean;
  /** postgres: an empty data directory on the worker; supabase: the project ref (an in-place restore) */
  target: string;
  /** start the restored cluster on this port and leave it running */
  port?: number;
}

export interface PitrRestoreStatus {
  state: 'planning' | 'restoring' | 'done' | 'failed';
  backupId: string | null;
  window: PitrWindow | null;
  error?: string;
}

export interface VerifyBackupInput {
  backupId: string;
  /** set by verifyRecentBackups: its one alert sums up the failures, so this run alerts only when it succeeds */
  inBatch?: boolean;
}

export interface VerifyBackupResult {
  backupId: string;
  ok: boolean;
  counts: Record<string, number>;
  checks: VerificationCheck[];
  /** the JSON report in storage (a .txt beside it) */
  reportKey: string;
}

export interface VerifyRecentBackupsInput {
  /** tenant backups never verified to verify in this run (default: verification.tenantBackupsPerRun) */
  tenantBackups?: number;
}

export interface VerifyRecentBackupsResult {
  verified: { backupId: string; ok: boolean }[];
  failed: { backupId: string; error: string }[];
}

export interface ApplyRetentionInput {
  dryRun?: boolean;
}

export type ApplyRetentionResult = RetentionOutcome;

export const fullBackupStatusQuery = defineQuery<FullBackupStatus>('status');
export const walArchiverStatusQuery = defineQuery<WalArchiverStatus>('status');
export const changeLogStatusQuery = defineQuery<ChangeLogStatus>('status');
export const pitrRestoreStatusQuery = defineQuery<PitrRestoreStatus>('status');
