// Pushed alerts: what a workflow reports (an outcome of a job), what the notifier sends (a
// notice: a failing alert opened, or one resolved) and what each channel gets. Ids, counts and
// error messages only (docs/architecture.md, core rule 1): no row data, no secrets.

/** The jobs that alert: the workflow type that reports, one alert key per kind and subject. */
export type AlertKind =
  | 'tenantBackup'
  | 'tenantBackupsAll'
  | 'fullBackup'
  | 'verifyBackup'
  | 'verifyRecentBackups'
  | 'walArchiver'
  | 'changeLog'
  | 'tenantRestore'
  | 'applyRetention'
  | 'drDrill';

/** A run over many items (tenantBackupsAll, verifyRecentBackups): one alert sums up its failures. */
export interface AlertSummary {
  total: number;
  failed: number;
  /** the first failures (at most 20 travel), each with its error */
  items: { id: string; error: string; type?: string }[];
}

/** What a workflow reports, through the notifyAlert activity, at the end of a job (or of a slice). */
export interface AlertOutcomeInput {
  kind: AlertKind;
  outcome: 'failed' | 'succeeded';
  /** names the report within the run: workflow id + run id + step is its idempotency key */
  step: string;
  tenantId?: string;
  backupId?: string;
  error?: { message: string; type?: string };
  summary?: AlertSummary;
}

/** What the notifier made of an outcome. */
export interface AlertOutcomeResult {
  /** opened: a failing notice goes out; resolved: a resolved notice goes out; null: nothing to send */
  transition: 'opened' | 'resolved' | null;
  alertKey: string | null;
  /** the same report was counted before (a retried activity): nothing changed */
  duplicate: boolean;
  /** notices queued for delivery (one per channel) */
  queued: number;
}

export type AlertChannel = 'webhook' | 'email';

export interface AlertRunRef {
  workflowId: string;
  runId: string;
  workflowType: string;
  /** the run in the Temporal Web UI, when temporal.uiUrl is configured */
  url?: string;
}

/** One notice, as stored in the outbox and sent on every channel. */
export interface AlertNotice {
  /** stable across resends: receivers may de-duplicate by it (also the e-mail's Message-ID) */
  noticeId: string;
  event: 'failing' | 'resolved';
  alertKey: string;
  kind: AlertKind;
  /** what is failing, in words: "Tenant backup of acme (saas)" */
  title: string;
  database: string;
  tenantId?: string;
  backupId?: string;
  /** the run this notice is about: the failing run, or the one that succeeded */
  run: AlertRunRef;
  /** resolved notices: the run that opened the alert */
  openedBy?: AlertRunRef;
  error?: { message: string; type?: string };
  summary?: AlertSummary;
  openedAt: string;
  resolvedAt?: string;
  /** failures counted while the alert was open */
  failures: number;
}
