// Inputs, results, signals, queries and search attributes shared by workflows, the CLI and
// any service with a Temporal client. Add fields as optional so old histories still replay.
import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';
import { defineQuery, defineSignal } from '@temporalio/workflow';
import type { ApplyResult, ChangeKind, RestorePreview, RestoreVerification } from '../lib/restore/types';
import type { PitrWindow } from '../lib/pitr/window';
import type { RetentionOutcome } from '../lib/retention/run';
import type { StorageLocation } from '../lib/storage/types';
import type { VerificationCheck } from '../lib/verification/verifyBackup';

export const searchAttributes = {
  tenantId: defineSearchAttributeKey('TenantId', SearchAttributeType.KEYWORD),
  backupKind: defineSearchAttributeKey('BackupKind', SearchAttributeType.KEYWORD),
  database: defineSearchAttributeKey('Database', SearchAttributeType.KEYWORD),
};

/**
 * What every input of the workflows that serve one database takes (docs/fleet.md): with several
 * databases in the config, the id of the one it is about; absent, the default database (the
 * only one, or the first). The run carries it into its activities, children and next runs.
 */
export interface OnDatabase {
  database?: string;
}

/**
 * A workflow or schedule id of one database of several: `eu/tenant-backup/acme`,
 * `schedule/eu/tenant-backups`, so two databases' tenants of one id never share a writer or a
 * schedule. Without a database, the id as it always was.
 */
export function databaseScoped(id: string, database: string | undefined): string {
  if (database === undefined) return id;
  return id.startsWith('schedule/') ? `schedule/${database}/${id.slice('schedule/'.length)}` : `${database}/${id}`;
}

/** Deterministic ids: one writer per tenant (docs/architecture.md, core rule 6). */
export const workflowIds = {
  tenantBackup: (tenantId: string) => `tenant-backup/${tenantId}`,
  tenantBackupsAll: () => 'tenant-backups-all',
  /** one per database: gathers the scheduled tenant backups that fall due together into batches */
  tenantBackupBatcher: () => 'tenant-backup-batcher',
  tenantRestore: (tenantId: string) => `tenant-restore/${tenantId}`,
};

export const scheduleIds = {
  tenantBackupsAll: 'schedule/tenant-backups',
  tenantBackup: (tenantId: string) => `schedule/tenant-backup/${tenantId}`,
};

// ---- tenantBackup ----

export interface TenantBackupInput {
  /** with several databases: the one it serves (OnDatabase) */
  database?: string;
  tenantId: string;
  /**
   * set by tenantBackupsAll: its one alert sums up the failures of the batch, so this run alerts
   * only when it succeeds (resolving an alert of the tenant's own), not when it fails
   */
  inBatch?: boolean;
  /**
   * set by the tenant's own schedule (client/schedules.ts): the run hands its tenant to the
   * database's tenantBackupBatcher, so tenants whose schedules fall due together are backed up
   * in one batch, from one snapshot; the run still ends with its tenant's result or failure.
   * Absent (`backup tenant`, the UI): a backup of its own.
   */
  scheduled?: boolean;
}

/** batching: a scheduled run waiting for its tenant's part of a batch (tenantBackupBatcher) */
export type TenantBackupState = 'checking' | 'batching' | 'exporting' | 'recording' | 'done' | 'failed' | 'cancelled';

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
  /** a scheduled run backed up in a batch (tenantBackupBatcher): the batch's id (its packs: packs/<batchId>/) */
  batchId?: string;
}

// ---- tenantBackupBatcher: the scheduled tenant backups that fall due together, in one batch ----

export interface TenantBackupBatcherInput {
  /** with several databases: the one it serves (OnDatabase) */
  database?: string;
  /** a batch starts once no tenant joined for this long (default 5000 ms) */
  quietMs?: number;
  /** ... and at the latest this long after its first tenant joined (default 60000 ms) */
  maxWaitMs?: number;
  /** at most this many tenants in one batch, up to 2000; more wait for the next (default 500) */
  batchTenants?: number;
  /** a tenant the statistics estimate at this many rows or more is backed up by its own run, not in the batch (default 100000) */
  bigTenantRows?: number;
  /** carried over continue-as-new: tenants waiting, totals so far */
  carried?: { waiting: BatchJoin[]; totals: TenantBackupBatcherResult; lastBatchAt?: number };
}

/** A scheduled tenantBackup run asking for its tenant's part of the next batch (the `join` signal; `leave` takes it back). */
export interface BatchJoin {
  tenantId: string;
  /** the run that waits for the outcome (a schedule's runs have ids of its action's id and the time: tenant-backup/<tenant>-<time>) */
  workflowId: string;
  runId: string;
}

/**
 * What the batcher tells a waiting run (the `batchOutcome` signal): its tenant's backup, its
 * failure, or `own`: back it up on your own (a big tenant, or the batch failed as a whole).
 */
export type BatchOutcome =
  | { tenantId: string; backup: TenantBackupResult; database: string }
  | { tenantId: string; failure: { error: string; type?: string } }
  | { tenantId: string; own: 'big-tenant' | 'batch-failed' | 'batcher-stopped' };

export interface TenantBackupBatcherResult {
  batches: number;
  /** tenants backed up in the batches */
  tenants: number;
  /** tenants whose part of a batch failed (their runs failed with the error) */
  failed: number;
  /** tenants sent back to back up on their own (big ones, and those of a batch that failed as a whole) */
  own: number;
}

export interface TenantBackupBatcherStatus {
  state: 'gathering' | 'backing-up';
  /** tenants waiting for the next batch */
  waiting: number;
  /** tenants in the batch running now */
  running: number;
  totals: TenantBackupBatcherResult;
}

export const joinBatchSignal = defineSignal<[BatchJoin]>('join');
export const leaveBatchSignal = defineSignal<[BatchJoin]>('leave');
export const batchOutcomeSignal = defineSignal<[BatchOutcome]>('batchOutcome');
export const tenantBackupBatcherStatusQuery = defineQuery<TenantBackupBatcherStatus>('status');

// ---- tenantBackupsAll ----

export interface TenantBackupsAllInput {
  /** with several databases: the one it serves (OnDatabase) */
  database?: string;
  /** how many tenant backups of their own (big tenants; all when not batched) run at once (default 4) */
  concurrency?: number;
  /** false: every tenant its own tenantBackup child, as before batches (default true) */
  batched?: boolean;
  /** a tenant the statistics estimate at this many rows or more is backed up on its own, not in the batch (default 100000) */
  bigTenantRows?: number;
  /** at most this many tenants in one batch: more make several, `concurrency` at a time, which several workers share (default 10000) */
  batchTenants?: number;
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
  /** the batches: how many tenants they backed up, their size and packs; the first batch's id, and how many there were when more than one */
  batch?: { batchId: string; tenants: number; rows: number; bytes: number; packs: number; orphanPacksRemoved: number; batches?: number };
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
  /** with several databases: the one it serves (OnDatabase) */
  database?: string;
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
  /** 'secondary': read the backups from storage.secondary only; none: the primary, falling over to the secondary */
  from?: StorageLocation;
}

export type TenantRestoreState = 'previewing' | 'awaiting-approval' | 'applying' | 'verifying' | 'done' | 'rejected' | 'expired' | 'failed' | 'cancelled';

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

export interface FullBackupInput {
  /** with several databases: the one it serves (OnDatabase) */
  database?: string;
}

export type FullBackupState = 'checking' | 'backing-up' | 'recording' | 'done' | 'failed' | 'cancelled';

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
  /** with several databases: the one it serves (OnDatabase) */
  database?: string;
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
  /** with several databases: the one it serves (OnDatabase) */
  database?: string;
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
  /** with several databases: the one it serves (OnDatabase) */
  database?: string;
  at?: string;
  lsn?: string;
  name?: string;
  latest?: boolean;
  /** postgres: an empty data directory on the worker; supabase: the project ref (an in-place restore) */
  target: string;
  /** start the restored cluster on this port and leave it running */
  port?: number;
  /** 'secondary': read the base backup and WAL from storage.secondary only; none: the primary, falling over to the secondary */
  from?: StorageLocation;
}

export interface PitrRestoreStatus {
  state: 'planning' | 'restoring' | 'done' | 'failed';
  backupId: string | null;
  window: PitrWindow | null;
  error?: string;
}

export interface VerifyBackupInput {
  /** with several databases: the one it serves (OnDatabase) */
  database?: string;
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
  /** with several databases: the one it serves (OnDatabase) */
  database?: string;
  /** tenant backups never verified to verify in this run (default: verification.tenantBackupsPerRun) */
  tenantBackups?: number;
}

export interface VerifyRecentBackupsResult {
  verified: { backupId: string; ok: boolean }[];
  failed: { backupId: string; error: string }[];
}

export interface ApplyRetentionInput {
  /** with several databases: the one it serves (OnDatabase) */
  database?: string;
  dryRun?: boolean;
  /** who asks, for the audit log: a person (`retention apply --by`), `schedule:<id>` for a scheduled run */
  requestedBy?: string;
}

export type ApplyRetentionResult = RetentionOutcome;

export const fullBackupStatusQuery = defineQuery<FullBackupStatus>('status');
export const walArchiverStatusQuery = defineQuery<WalArchiverStatus>('status');
export const changeLogStatusQuery = defineQuery<ChangeLogStatus>('status');
export const pitrRestoreStatusQuery = defineQuery<PitrRestoreStatus>('status');

// ---- disaster recovery: the standby (self-managed provider) ----

export const standbyWorkflowIds = {
  /** one build of the configured standby at a time (a second `standby create` joins it) */
  standbyCreate: () => 'standby-create',
  /** one rebuild of a data directory at a time */
  standbyRebuild: (dataDir: string) => `standby-rebuild/${dataDir}`,
};

export type StandbyCreateInput = Record<string, never>;

export interface StandbyCreateStatus {
  /** checking: nothing changed yet (a refusal fails here); building: the data directory is being written */
  state: 'checking' | 'building' | 'done' | 'failed';
  /** the base backup it starts from (null when a standby is there already) */
  backupId: string | null;
  error?: string;
}

/** Failback's first half: the old primary's data directory (on the worker's machine) becomes a standby of the new primary. */
export interface StandbyRebuildInput {
  dataDir: string;
  /** the new primary, host:port (the credentials are database.url's) */
  primary: string;
  /** the port the rebuilt standby listens on; default: the one its directory's settings name */
  port?: number;
  /** the address it listens on; default dr.standby.host */
  host?: string;
}

export interface StandbyRebuildStatus {
  state: 'rebuilding' | 'done' | 'failed';
  error?: string;
}

export const standbyCreateStatusQuery = defineQuery<StandbyCreateStatus>('status');
export const standbyRebuildStatusQuery = defineQuery<StandbyRebuildStatus>('status');

// ---- disaster recovery: failover, switchover ----

/** One failover or switchover per database at a time (the conflict policy refuses a second). */
export const drWorkflowIds = {
  failover: (database: string) => `failover/${database}`,
  switchover: (database: string) => `switchover/${database}`,
  /** one drill of a database at a time (a second start joins the running one) */
  drDrill: (database: string) => `dr-drill/${database}`,
};

export interface FailoverInput {
  /** why (kept in the catalog's dr_events) */
  reason: string;
  /** who asks; when approval is required, someone else approves */
  requestedBy: string;
  /** fail over even though the primary answers, or the standby is further behind than dr.standby.maxLag */
  force?: boolean;
  /** the database's name; the configured one when absent */
  database?: string;
}

export type FailoverState =
  | 'probing'
  | 'checking-standby'
  | 'awaiting-approval'
  | 'fencing'
  | 'promoting'
  | 'switching'
  | 'checking-write'
  | 'done'
  | 'rejected'
  | 'expired'
  | 'failed';

/** What a failover would lose, as the status and the refusal show it (lib/dr/failover.ts LossEstimate). */
export interface FailoverLoss {
  bytes: number | null;
  ms: number | null;
  source: 'wal-on-disk' | 'last-probe' | 'unknown';
}

export interface FailoverApproveSignal {
  by: string;
  /** the failover id the approver reviewed: an approval meant for another run is refused */
  digest?: string;
}

export interface FailoverStatus {
  state: FailoverState;
  failoverId: string;
  database?: string;
  reason: string;
  requestedBy: string;
  force: boolean;
  approval?: 'required' | 'automatic';
  /** host:port */
  primary?: string;
  standby?: string;
  /** when the first of the failed probes began: the RTO's start */
  primaryLostAt?: string | null;
  lossEstimate?: FailoverLoss;
  approvals: { by: string; at: string }[];
  refused: { by: string; reason: string; at: string }[];
  rejection?: RejectSignal;
  expiresAt?: string;
  /** measured once done */
  rtoMs?: number;
  dataLossBytes?: number | null;
  rpoMs?: number | null;
  metTargets?: boolean;
  error?: string;
}

export type FailoverResult = Pick<FailoverStatus, 'failoverId' | 'database' | 'primary' | 'standby' | 'rtoMs' | 'dataLossBytes' | 'rpoMs' | 'metTargets' | 'rejection'> & {
  state: 'done' | 'rejected' | 'expired';
};

export interface SwitchoverInput {
  requestedBy: string;
  database?: string;
}

export type SwitchoverState = 'preparing' | 'pausing' | 'demoting' | 'catching-up' | 'promoting' | 'switching' | 'checking-write' | 'done' | 'failed' | 'cancelled';

export interface SwitchoverStatus {
  state: SwitchoverState;
  switchoverId: string;
  database?: string;
  requestedBy: string;
  primary?: string;
  standby?: string;
  /** the old primary's last WAL position, which the standby replayed before its promotion */
  finalLsn?: string;
  /** from the endpoint paused to the first write through it on the new primary */
  durationMs?: number;
  error?: string;
}

export type SwitchoverResult = Pick<SwitchoverStatus, 'switchoverId' | 'database' | 'primary' | 'standby' | 'finalLsn' | 'durationMs'> & { state: 'done'; dataLossBytes: 0 };

export const failoverApproveSignal = defineSignal<[FailoverApproveSignal]>('approve');
export const failoverStatusQuery = defineQuery<FailoverStatus>('status');
export const switchoverStatusQuery = defineQuery<SwitchoverStatus>('status');

// ---- disaster recovery: drills ----

export const drScheduleIds = {
  drills: 'schedule/dr-drills',
};

export interface DrDrillInput {
  /** the configured database's name (the only one, for now); absent: the first */
  database?: string;
}

export type DrDrillState = 'starting' | 'drilling' | 'recording' | 'done' | 'failed';

export interface DrDrillStatus {
  state: DrDrillState;
  drillId: string | null;
  backupId: string | null;
  error?: string;
}

/** A drill's outcome: the report itself stays in storage (reportKey, htmlKey). */
export interface DrDrillResult {
  drillId: string;
  database: string;
  backupId: string;
  /** every check passed or was not comparable */
  ok: boolean;
  /** ok, and the achieved RTO and RPO within dr.targets */
  metTargets: boolean;
  rtoMs: number | null;
  rpoMs: number | null;
  rtoTargetMs: number;
  rpoTargetMs: number;
  /** checks by result: ok, failed, not_comparable */
  checks: Record<string, number>;
  /** the first failed checks, in words */
  problems: string[];
  reportKey: string;
  htmlKey: string;
  reportSha256: string;
}

export const drDrillStatusQuery = defineQuery<DrDrillStatus>('status');
