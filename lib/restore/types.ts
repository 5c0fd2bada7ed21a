// Tenant restore: what is asked, and the preview shown to the approver. Plain data: previews
// carry counts, keys (a few, as samples) and digests, never row contents.
import type { PointInTimeSource } from '../format/tenantManifest';
import type { StorageLocation } from '../storage/types';

export type RestoreMode = 'replace' | 'missing-only';
export type ChangeKind = 'insert' | 'update' | 'delete';
export const changeKinds: readonly ChangeKind[] = ['insert', 'update', 'delete'];

/** What to do with backed-up rows that reference a global row (e.g. a plan) that is gone. */
export type MissingRefsPolicy = 'refuse' | 'skip';

export interface RestoreSelection {
  mode: RestoreMode;
  /** only these tables (keys like app.users); undefined = all */
  tables?: string[];
  /** only these kinds of change; undefined = all the mode allows */
  changes?: ChangeKind[];
  missingRefs: MissingRefsPolicy;
}

/** A restore as the engine runs it: the request checked and its backup picked. */
export interface RestoreJob {
  restoreId: string;
  tenantId: string;
  backupId: string;
  selection: RestoreSelection;
  /** a restore to a point in time: the backup is the tenant rebuilt there, by the preview, before it stages it */
  pointInTime?: PointInTimePlan;
  /** read (and write) this storage location only; none: the primary, falling over to the secondary */
  from?: StorageLocation;
}

/** How a tenant is rebuilt at a point in time (lib/pointInTime): the source, and why that one. */
export interface PointInTimePlan {
  source: 'changeLog' | 'pitrClone';
  /** a time (ISO-8601, microseconds; a commit at exactly that time is in) or an LSN */
  target: { at: string } | { lsn: string };
  reason: string;
  /** changeLog: the tenant backup the log is replayed onto, and the log */
  baseBackupId?: string;
  stream?: string;
}

export interface TableChanges {
  insert: number;
  update: number;
  delete: number;
}

export interface TablePreview extends TableChanges {
  /** a few keys of each kind, as text, for the approver to look at */
  samples: Partial<Record<ChangeKind, string[]>>;
  /** a hash over the keys of each kind: the plan's identity, so a digest binds the exact rows */
  keysHash: Record<ChangeKind, string>;
  /** no primary key: rows are matched as whole rows, copies counted (duplicates allowed) */
  wholeTable?: boolean;
  /** in the restore (selection and mode); false = shown for information only */
  selected: boolean;
  /** every difference found, when the mode or selection applies only part of it */
  found?: TableChanges;
}

export interface DriftItem {
  table: string;
  column?: string;
  kind: 'table-dropped' | 'table-added' | 'column-added' | 'column-dropped' | 'column-retyped' | 'key-changed';
  from?: string;
  to?: string;
  /** how it is handled, in words */
  policy: string;
}

/** Something that stops the apply until the operator acts; the preview says what and how. */
export interface Blocker {
  kind: 'missing-global-refs' | 'selection-needs-parents' | 'parent-of-another-tenant' | 'selection-orphans-children' | 'key-conflict' | 'unique-conflict' | 'referenced-by-others' | 'drift' | 'erasure-unmatched';
  table: string;
  rows: number;
  message: string;
}

export interface RestorePreview {
  restoreId: string;
  tenantId: string;
  backupId: string;
  snapshotAt: string;
  selection: RestoreSelection;
  tables: Record<string, TablePreview>;
  totals: TableChanges;
  drift: DriftItem[];
  warnings: string[];
  blockers: Blocker[];
  /** a restore to a point in time: where the backup came from, the last commit it includes, and why that source */
  pointInTime?: PointInTimePreview;
  /** erasures of the ledger recorded after the backup's snapshot, applied again to its rows (absent: none) */
  erasures?: ErasuresPreview;
  /** sha256 over everything above: what an approval is bound to */
  digest: string;
}

/**
 * The erasures a restore applies again (lib/restore/erasures.ts): the ledger's entries recorded
 * after the backup's snapshot, and the backed-up rows left out because of them, per table: the
 * subjects' own and those that depend on them through foreign keys.
 */
export interface ErasuresPreview {
  entries: ErasureSubject[];
  rows: Record<string, number>;
  total: number;
}

/** An erasure of the ledger as a preview names it; `key` only in the catalog's copy, never in Temporal. */
export interface ErasureSubject {
  erasureId: number;
  table: string;
  key?: Record<string, string>;
  by: string;
  erasedAt: string;
}

/** A restore to a point in time, as its rebuilt backup's manifest records it (source, target, last commit, base, why). */
export type PointInTimePreview = PointInTimeSource;

/** A backup of the tenant as the apply found it, read from the apply transaction's own snapshot. */
export interface SafetyBackupRef {
  backupId: string;
  manifestSha256: string;
}

export interface ApplyDelta {
  xid: string;
  readAt: string;
  removed: Record<string, { rows: number; checksum: string }>;
  /**
   * Per table, the row count and checksum the apply proved its tenant rows to have, inside its
   * transaction before commit (the backup's): proven from the safety backup and the rows changed,
   * or scanned unchanged since a preview that found them as backed up
   */
  proven?: Record<string, { rows: number; checksum: string }>;
}

export interface ApplyResult {
  applied: Record<string, TableChanges>;
  /** the tenant's rows before this apply: restoring it undoes the restore */
  safetyBackup?: SafetyBackupRef;
  sequencesMoved: string[];
  /** apply ran with session_replication_role = replica (no per-row FK checks, no triggers) */
  replicaMode: boolean;
  /**
   * What the apply changed, for a verification that reads only that: its transaction, the
   * snapshot it read (snapshotXmin), and per changed table the rows it removed (deleted, or the
   * old versions of those it updated) as a row count and checksum in the backup's column order.
   */
  delta?: ApplyDelta;
  /** tables vacuumed before the apply loaded them whole (they held the tenant's deleted rows) */
  vacuumed?: string[];
  /** the erasures of the ledger the applied plan left out (ids): what the verification holds the tenant to */
  erasures?: number[];
  alreadyApplied?: boolean;
}

export interface RestoreVerification {
  ok: boolean;
  tables: { table: string; expected: string; actual: string; ok: boolean; note?: string }[];
  otherTenantsUnchanged: boolean;
}
