// Pushed alerts: the notifier. Workflows report the outcome of a job (through the notifyAlert
// activity); the notifier counts it against the alert's state in the catalog (lib/alerts/store.ts)
// and, on a transition (failing → open, open → resolved), queues one notice per channel. Delivery
// runs in the background of the worker process, not in the reporting activity: a webhook or mail
// server that is down delays nothing and fails nothing; its notice is tried again with back-off
// (alerts.retryInterval doubling up to alerts.maxRetryInterval) until it is accepted or
// alerts.giveUpAfter has passed. Any worker delivers what another left (a lease, then a retry).
import { createHash } from 'node:crypto';
import type { Catalog } from '../catalog';
import { databaseName, type Config } from '../config';
import { configuredChannels, sendNotice } from './channels';
import { alertTitle, runUrl, sanitizeMessage } from './format';
import { claimDelivery, countOutcome, markFailed, markSent, nextDueInMs, pruneAlerts } from './store';
import type { AlertChannel, AlertNotice, AlertOutcomeInput, AlertOutcomeResult, AlertRunRef } from './types';

export type { AlertOutcomeInput, AlertOutcomeResult } from './types';

/** An outcome as the activity hands it over: the report plus the run that made it. */
export interface AlertOutcome extends AlertOutcomeInput {
  workflowId: string;
  runId: string;
  workflowType: string;
}

export type AlertLog = (level: 'warn' | 'error', message: string) => void;

/** Logs to stderr at or above TENANTSAFE_LOG_LEVEL (the worker's level; WARN by default). */
export const stderrAlertLog: AlertLog = (level, message) => {
  const threshold = (process.env.TENANTSAFE_LOG_LEVEL ?? 'WARN').toUpperCase();
  if (level === 'warn' && threshold === 'ERROR') return;
  console.error(`tenantsafe alerts [${level}]: ${message}`);
};

/** How often a worker looks for notices another process left, when nothing wakes it sooner. */
const pollMs = 15_000;
/** The most items of a summary that travel in a notice. */
const summaryItems = 20;

/** The alert a job's outcome counts towards: one per kind and subject. */
export function alertSubject(o: Pick<AlertOutcome, 'kind' | 'tenantId' | 'backupId' | 'workflowId'>, database: string): string {
  switch (o.kind) {
    case 'tenantBackup':
    case 'tenantRestore':
      return `${database}/${o.tenantId}`;
    case 'verifyBackup':
      return `${database}/${o.backupId}`;
    case 'walArchiver':
    case 'changeLog':
      // long-lived, one per cluster (or database) and store: their workflow id names the scope
      return o.workflowId;
    default:
      return database;
  }
}

/** Every secret the config holds: masked in whatever an alert says. */
export function configSecrets(config: Config): string[] {
  const passwordOf = (url: string) => {
    try {
      return decodeURIComponent(new URL(url).password);
    } catch {
      return '';
    }
  };
  const { alerts } = config;
  return [
    passwordOf(config.database.url),
    passwordOf(config.catalog.url),
    config.supabase?.accessToken ?? '',
    config.dashboard.token ?? '',
    config.dashboard.sessionSecret ?? '',
    ...config.dashboard.users.flatMap((u) => [u.token ?? '', u.password ?? '']),
    config.monitoring.metricsToken ?? '',
    alerts.webhook?.url ?? '',
    ...Object.values(alerts.webhook?.headers ?? {}),
    ...Object.values(alerts.webhook?.headers ?? {}).map((v) => v.replace(/^(Bearer|Basic|Token)\s+/i, '')),
    alerts.email?.smtp.password ?? '',
  ].filter((s) => s.length > 0);
}

export class Notifier {
  readonly channels: AlertChannel[];
  private readonly secrets: string[];
  private loop: Promise<void> | undefined;
  private stopped = false;
  private kicked = false;
  private wake: (() => void) | undefined;
  private timer: NodeJS.Timeout | undefined;
  private prunedAt = 0;

  constructor(
    private readonly config: Config,
    private readonly catalog: Catalog,
    private readonly log: AlertLog = stderrAlertLog,
  ) {
    this.channels = configuredChannels(config.alerts);
    this.secrets = configSecrets(config);
  }

  sanitize(message: string): string {
    return sanitizeMessage(message, this.secrets);
  }

  /**
   * Counts a job's outcome, exactly once per idempotency key (workflow id + run id + step), and
   * queues the notices of a transition. With no channel configured it does nothing.
   */
  async record(o: AlertOutcome): Promise<AlertOutcomeResult> {
    if (this.channels.length === 0) return { transition: null, alertKey: null, duplicate: false, queued: 0 };
    const database = databaseName(this.config.database.url);
    const subject = alertSubject(o, database);
    const alertKey = `${o.kind}:${subject}`;
    const run = this.runRef(o.workflowId, o.runId, o.workflowType);
    const error = o.error && { message: this.sanitize(o.error.message), ...(o.error.type ? { type: o.error.type } : {}) };
    const summary = o.summary && {
      total: o.summary.total,
      failed: o.summary.failed,
      items: o.summary.items.slice(0, summaryItems).map((i) => ({ id: i.id, error: this.sanitize(i.error), ...(i.type ? { type: i.type } : {}) })),
    };
    const title = alertTitle(o.kind, { database, tenantId: o.tenantId, backupId: o.backupId });
    const keyId = createHash('sha256').update(alertKey).digest('hex').slice(0, 16);
    const counted = await countOutcome(
      this.catalog,
      { alertKey, kind: o.kind, subject, idempotencyKey: `${o.workflowId}/${o.runId}/${o.step}`, outcome: o.outcome, run, error },
      this.channels,
      (a): AlertNotice => ({
        noticeId: `${keyId}.${a.sequence}.${a.event}`,
        event: a.event,
        alertKey,
        kind: o.kind,
        title,
        database,
        ...(o.tenantId ? { tenantId: o.tenantId } : {}),
        ...(o.backupId ? { backupId: o.backupId } : {}),
        run,
        ...(a.event === 'resolved' ? { openedBy: this.runRef(a.openedBy.workflowId, a.openedBy.runId, a.openedBy.workflowType) } : {}),
        ...(a.event === 'failing' && error ? { error } : {}),
        ...(a.event === 'failing' && summary ? { summary } : {}),
        openedAt: a.openedAt,
        ...(a.resolvedAt ? { resolvedAt: a.resolvedAt } : {}),
        failures: a.failures,
      }),
    );
    if (counted.queued > 0) this.kick();
    if (Date.now() - this.prunedAt > 3_600_000) {
      this.prunedAt = Date.now();
      await pruneAlerts(this.catalog).catch((err) => this.log('warn', `pruning old alert records failed: ${this.sanitize(String(err))}`));
    }
    return { alertKey, ...counted };
  }

  private runRef(workflowId: string, runId: string, workflowType: string): AlertRunRef {
    const { uiUrl, namespace } = this.config.temporal;
    return { workflowId, runId, workflowType, ...(uiUrl ? { url: runUrl(uiUrl, namespace, workflowId, runId) } : {}) };
  }

  /** Starts delivering in the background (the worker does, so notices other processes left go out too). */
  start(): void {
    if (this.loop || this.channels.length === 0) return;
    this.stopped = false;
    this.loop = this.deliverForever();
  }

  /** Delivers soon: something was queued. */
  kick(): void {
    this.kicked = true;
    if (!this.loop) this.start();
    else this.wake?.();
  }

  /** Stops delivering once the attempt under way ends (each is bounded by alerts.timeout). */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.wake?.();
    await this.loop;
    this.loop = undefined;
  }

  private async deliverForever(): Promise<void> {
    while (!this.stopped) {
      this.kicked = false;
      let waitMs = pollMs;
      try {
        await this.deliverDue();
        const next = await nextDueInMs(this.catalog, this.channels);
        if (next !== undefined) waitMs = Math.min(pollMs, Math.max(20, next));
      } catch (err) {
        this.log('warn', `cannot read the queued notices from the catalog, trying again in ${pollMs / 1000} s: ${this.sanitize(String((err as Error)?.message ?? err))}`);
      }
      if (this.stopped || this.kicked) continue;
      await new Promise<void>((resolve) => {
        this.wake = resolve;
        this.timer = setTimeout(resolve, waitMs);
        this.timer.unref();
      });
      this.wake = undefined;
    }
  }

  /** Sends every notice that is due, one at a time; returns how many attempts it made. */
  async deliverDue(): Promise<number> {
    const { timeoutMs, retryIntervalMs, maxRetryIntervalMs, giveUpAfterMs } = this.config.alerts;
    let attempts = 0;
    while (!this.stopped) {
      const d = await claimDelivery(this.catalog, timeoutMs + 30_000, this.channels);
      if (!d) break;
      attempts++;
      try {
        await sendNotice(this.config.alerts, d.channel, d.notice);
        await markSent(this.catalog, d.deliveryId);
      } catch (err) {
        const why = this.sanitize((err as Error)?.message ?? String(err));
        const retryMs = Math.min(maxRetryIntervalMs, retryIntervalMs * 2 ** Math.min(d.attempts - 1, 30));
        const status = await markFailed(this.catalog, d.deliveryId, why, retryMs, giveUpAfterMs);
        if (status === 'abandoned') {
          this.log('error', `gave up the ${d.channel} notice ${d.notice.noticeId} (${d.notice.alertKey}, ${d.notice.event}) after ${d.attempts} attempts: ${why}`);
        } else {
          this.log('warn', `the ${d.channel} notice ${d.notice.noticeId} (${d.notice.alertKey}, ${d.notice.event}) was not delivered (attempt ${d.attempts}), trying again in ${retryMs < 1000 ? `${retryMs} ms` : `${Math.round(retryMs / 1000)} s`}: ${why}`);
        }
      }
    }
    return attempts;
  }
}
