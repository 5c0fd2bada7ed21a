// Stable error type names, shared by the engine, activities (as ApplicationFailure types),
// workflows and the CLI (for exit codes). Pure TypeScript: workflows import this module too.

export const ErrorType = {
  BadConfig: 'BadConfig',
  BadInput: 'BadInput',
  TenantNotFound: 'TenantNotFound',
  BackupNotFound: 'BackupNotFound',
  TenancyUnresolved: 'TenancyUnresolved',
  DatabaseUnreachable: 'DatabaseUnreachable',
  StorageUnwritable: 'StorageUnwritable',
  StorageUnavailable: 'StorageUnavailable',
  ObjectMissing: 'ObjectMissing',
  CorruptBackup: 'CorruptBackup',
  UnsupportedFormat: 'UnsupportedFormat',
  AlreadyRunning: 'AlreadyRunning',
  TemporalUnreachable: 'TemporalUnreachable',
  NoWorker: 'NoWorker',
  SchemaDrift: 'SchemaDrift',
  RestoreBlocked: 'RestoreBlocked',
  /**
   * the restored tenant does not match its backup after the apply committed: not bad input (the
   * request was sound), not transient (verifying again reads the same rows); the safety backup undoes it
   */
  RestoreVerificationFailed: 'RestoreVerificationFailed',
  ApprovalInvalid: 'ApprovalInvalid',
  RestoreNotFound: 'RestoreNotFound',
  /** a point-in-time target the backups and WAL archive cannot reach */
  TargetOutsideWindow: 'TargetOutsideWindow',
  /** the WAL archive did not reach a base backup's stop LSN in time */
  WalArchiveBehind: 'WalArchiveBehind',
  /** PostgreSQL did not finish recovery of a restored cluster */
  RecoveryFailed: 'RecoveryFailed',
  /**
   * a scratch restore would not fit in the free space of verification.scratchDir: not bad input
   * (the request is sound), not transient (space does not come back by itself between retries);
   * an operator frees space or moves the scratch directory, then runs it again
   */
  InsufficientSpace: 'InsufficientSpace',
  /** a backup provider's API (Supabase) answered 5xx, kept rate-limiting or could not be reached */
  ProviderUnavailable: 'ProviderUnavailable',
  /**
   * a failover or switchover that would do harm as asked: the primary answers, the standby is not
   * a replicating standby, or it is further behind than dr.standby.maxLag (the loss estimate named)
   */
  FailoverRefused: 'FailoverRefused',
  /** the master key file is missing, unreadable, or lacks the master key a data key was wrapped with */
  MasterKeyUnavailable: 'MasterKeyUnavailable',
  /** an encrypted backup whose data key is gone: erased (crypto-shredding) or lost */
  DataKeyErased: 'DataKeyErased',
  /**
   * the database role lacks a grant or attribute a step needs (a table's SELECT, BYPASSRLS where
   * row-level security applies, REPLICATION): not transient (a retry is refused the same way);
   * an administrator grants it (README, Privileges), then the job runs again
   */
  InsufficientPrivilege: 'InsufficientPrivilege',
} as const;
export type ErrorType = (typeof ErrorType)[keyof typeof ErrorType];

/**
 * Errors a person fixes by changing what they asked for: CLI exit code 2, HTTP 400. (A corrupt
 * backup is not one: the request was sound and the backup is broken, exit 1; it is not retried either.)
 */
const badInputTypes: ReadonlySet<string> = new Set<ErrorType>([
  ErrorType.BadConfig,
  ErrorType.BadInput,
  ErrorType.TenantNotFound,
  ErrorType.BackupNotFound,
  ErrorType.TenancyUnresolved,
  ErrorType.UnsupportedFormat,
  ErrorType.AlreadyRunning,
  ErrorType.SchemaDrift,
  ErrorType.RestoreBlocked,
  ErrorType.ApprovalInvalid,
  ErrorType.RestoreNotFound,
  ErrorType.TargetOutsideWindow,
  ErrorType.FailoverRefused,
  ErrorType.MasterKeyUnavailable,
]);

/** Errors that may pass by themselves (a restarting database, a storage blip): worth retrying. */
const transientTypes: ReadonlySet<string> = new Set<ErrorType>([
  ErrorType.DatabaseUnreachable,
  ErrorType.StorageUnavailable,
  ErrorType.ProviderUnavailable,
]);

export function isBadInput(type: string | undefined | null): boolean {
  return type != null && badInputTypes.has(type);
}

export function isTransient(type: string | undefined | null): boolean {
  return type != null && transientTypes.has(type);
}

/** An error with a stable type and a message that ends with what the operator should do. */
export class TenantsafeError extends Error {
  constructor(
    readonly type: ErrorType,
    problem: string,
    readonly hint: string,
  ) {
    super(`${problem} HINT: ${hint}`);
    this.name = type;
  }
}
