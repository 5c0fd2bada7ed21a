// The audit log's plain data (lib/audit; docs/format.md, "The audit log"): what is recorded, by
// whom, about what. Workflows import these types; the engine, the CLI and the dashboard the values.

/**
 * What an entry records. `<thing>.request` and `.approve`/`.reject` are people's acts (refused
 * ones too, with outcome `refused`); `<thing>.outcome` is how a run ended; the rest act at once.
 */
export const auditActions = [
  'restore.request',
  'restore.preview',
  'restore.approve',
  'restore.reject',
  'restore.outcome',
  'backup.pin',
  'backup.unpin',
  'failover.request',
  'failover.approve',
  'failover.reject',
  'failover.outcome',
  'switchover.request',
  'switchover.outcome',
  'retention.delete',
  'tenant.erase-backups',
  'erasure',
] as const;
export type AuditAction = (typeof auditActions)[number];

/**
 * What an entry's act was about: ids only (docs/architecture.md, core rule 1). `tenantId` is a
 * column of its own too (`audit list --tenant`).
 */
export interface AuditSubject {
  tenantId?: string;
  backupId?: string;
  restoreId?: string;
  failoverId?: string;
  switchoverId?: string;
  database?: string;
}

/**
 * `accepted` / `refused`: a request or decision that counted or did not (the reason in details);
 * `awaiting-approval`: a preview offered for approval; `done`, `failed`, `cancelled`, `rejected`,
 * `expired`: how a run ended.
 */
export type AuditOutcome = 'accepted' | 'refused' | 'awaiting-approval' | 'done' | 'failed' | 'cancelled' | 'rejected' | 'expired';

/** One act to record: the log adds its number, time and hashes. */
export interface AuditEvent {
  action: AuditAction;
  /** who acted: a person's name, `schedule:<id>`, or `unknown` when a workflow input named no one */
  by: string;
  subject: AuditSubject;
  /** the preview digest approved, rejected or applied, where there is one */
  digest?: string | null;
  outcome: AuditOutcome;
  /** counts, reasons, error types: small, no row data, no secrets */
  details?: Record<string, unknown>;
}

/** An entry as stored: numbered from 1 without gaps, each hashing the one before. */
export interface AuditEntry {
  seq: number;
  /** ISO-8601 UTC to the microsecond, as the catalog keeps it */
  at: string;
  by: string;
  action: string;
  subject: AuditSubject;
  digest: string | null;
  outcome: string;
  details: Record<string, unknown>;
  /** the previous entry's hash (64 zeros before the first) */
  prevHash: string;
  /** sha256 of prevHash, a newline and the canonical JSON of the fields above but the hashes */
  hash: string;
}
