// Prometheus metrics (prom-client): what a worker measures as activities finish, and the gauges
// derived from the health model (lib/monitoring/health.ts), served at /metrics by the worker and
// the dashboard server. Every name and label is listed in README.md#metrics; labels are bounded
// (kinds, steps, workflow and error types, databases; tenants only for the N worst and those
// configured).
//
// Catalog-derived gauges are read from a health report computed at most every
// monitoring.cacheTtl: a scrape never waits for the catalog once a report exists (a stale one is
// served while the next is computed), so it stays fast with 100k tenants.
import type * as http from 'node:http';
import { timingSafeEqual } from 'node:crypto';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { HealthReport, Level } from './health';

const levelValue: Record<Level, number> = { ok: 0, warning: 1, critical: 2 };
const seconds = (iso: string | null | undefined) => (iso ? Date.parse(iso) / 1000 : undefined);

/** Long jobs: a second to half a day. */
const jobBuckets = [1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14_400, 43_200];

/** What a worker measures (workers/metrics.ts records it from an activity interceptor). */
export class WorkerMetrics {
  readonly backupDuration: Histogram<'kind' | 'database'>;
  readonly backupBytes: Counter<'kind' | 'database'>;
  readonly backupRows: Counter<'kind' | 'database'>;
  readonly restoreDuration: Histogram<'step' | 'database'>;
  readonly restoreRows: Counter<'change' | 'database'>;
  readonly verificationDuration: Histogram<'step' | 'database'>;
  readonly verifications: Counter<'kind' | 'result' | 'database'>;
  readonly failures: Counter<'workflow' | 'type' | 'database'>;
  readonly activityFailures: Counter<'activity' | 'type' | 'database'>;
  readonly walSegments: Counter<'database'>;
  readonly changeLogTransactions: Counter<'database'>;

  /**
   * `defaultDatabase`: with several databases (docs/fleet.md), the id of the one an activity whose
   * input names none serves; every metric then has a `database` label. None: the label sets of a
   * single database, as before.
   */
  constructor(
    readonly registry: Registry,
    private readonly defaultDatabase?: string,
  ) {
    const r = [registry];
    const labels = <L extends string>(...names: L[]): (L | 'database')[] => (defaultDatabase === undefined ? names : [...names, 'database']);
    this.backupDuration = new Histogram({ name: 'tenantsafe_backup_duration_seconds', help: 'Time a backup took to write (the export activity, successful attempts), by kind: tenant, full.', labelNames: labels('kind'), buckets: jobBuckets, registers: r });
    this.backupBytes = new Counter({ name: 'tenantsafe_backup_bytes_total', help: 'Bytes written to storage by completed backups, by kind.', labelNames: labels('kind'), registers: r });
    this.backupRows = new Counter({ name: 'tenantsafe_backup_rows_total', help: 'Rows exported by completed tenant backups.', labelNames: labels('kind'), registers: r });
    this.restoreDuration = new Histogram({ name: 'tenantsafe_restore_duration_seconds', help: 'Time a tenant restore step took, by step: preview, apply, verify.', labelNames: labels('step'), buckets: jobBuckets, registers: r });
    this.restoreRows = new Counter({ name: 'tenantsafe_restore_rows_total', help: 'Rows changed by applied tenant restores, by change: insert, update, delete.', labelNames: labels('change'), registers: r });
    this.verificationDuration = new Histogram({ name: 'tenantsafe_verification_duration_seconds', help: 'Time a verification step took, by step: objects, wal, restore_test.', labelNames: labels('step'), buckets: jobBuckets, registers: r });
    this.verifications = new Counter({ name: 'tenantsafe_verifications_total', help: 'Verification reports written, by backup kind (tenant, full) and result (ok, failed).', labelNames: labels('kind', 'result'), registers: r });
    this.failures = new Counter({ name: 'tenantsafe_failures_total', help: 'Failed runs (once per run, as recorded in the catalog), by workflow type and error type.', labelNames: labels('workflow', 'type'), registers: r });
    this.activityFailures = new Counter({ name: 'tenantsafe_activity_failures_total', help: 'Failed activity attempts (each retry counts), by activity and error type.', labelNames: labels('activity', 'type'), registers: r });
    this.walSegments = new Counter({ name: 'tenantsafe_wal_segments_archived_total', help: 'Completed WAL segments the archiver uploaded (counted when a slice ends).', labelNames: labels(), registers: r });
    this.changeLogTransactions = new Counter({ name: 'tenantsafe_changelog_transactions_total', help: 'Transactions the change log stored (counted when a slice ends).', labelNames: labels(), registers: r });
  }

  /** The `database` label of an activity's measurements, from its input (none with a single database). */
  databaseOf(input: unknown): { database?: string } {
    if (this.defaultDatabase === undefined) return {};
    const named = (input as { database?: unknown } | undefined)?.database;
    return { database: typeof named === 'string' ? named : this.defaultDatabase };
  }
}

/**
 * The latest health report, computed at most every `ttlMs`. The first call waits for one; a later
 * call finding it stale starts the next and waits for it up to `waitMs` (a scrape stays fast),
 * else gets the one at hand while the next is computed in the background.
 */
export class HealthCache {
  private report: HealthReport | null = null;
  private computedAt = 0;
  private refreshing: Promise<void> | null = null;
  /** why the last computation failed (the report at hand is then older) */
  error: Error | null = null;
  durationMs = 0;

  constructor(
    private readonly compute: () => Promise<HealthReport>,
    private readonly ttlMs: number,
    private readonly waitMs = 50,
  ) {}

  async get(): Promise<HealthReport | null> {
    if (!this.report && !this.error) await this.refresh();
    else if (Date.now() - this.computedAt >= this.ttlMs) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([this.refresh(), new Promise((resolve) => (timer = setTimeout(resolve, this.waitMs)))]);
      clearTimeout(timer);
    }
    return this.report;
  }

  /** Computes a report now (once at a time); never rejects: a failure is kept in `error`. */
  refresh(): Promise<void> {
    this.refreshing ??= (async () => {
      const started = Date.now();
      try {
        this.report = await this.compute();
        this.error = null;
      } catch (err) {
        this.error = err instanceof Error ? err : new Error(String(err));
      } finally {
        this.computedAt = Date.now();
        this.durationMs = this.computedAt - started;
        this.refreshing = null;
      }
    })();
    return this.refreshing;
  }
}

type G<L extends string> = Gauge<L>;

/**
 * The health reports the gauges show: one database's (`database` absent), or with several
 * (docs/fleet.md) each database's, its id in `database`.
 */
export type HealthSources = HealthCache | { database: string; cache: HealthCache }[];

/** Each database's cache; one database's has no id. */
export function healthCaches(sources: HealthSources): { database: string | undefined; cache: HealthCache }[] {
  return Array.isArray(sources) ? sources : [{ database: undefined, cache: sources }];
}

/**
 * Registers the catalog-derived gauges on `registry`, read from the caches at each scrape. With
 * several databases every gauge's `database` label is the database's id (the report's own is its
 * name, which two databases of a fleet may share), and the gauges without one (up, refresh
 * duration, generated) gain it; one database's label sets are as before.
 */
export function registerHealthMetrics(registry: Registry, sources: HealthSources): void {
  const fleet = Array.isArray(sources);
  const caches = healthCaches(sources);
  let applied: (HealthReport | null)[] = [];
  let pending: Promise<void> | null = null;
  const gauges: Gauge<string>[] = [];
  // prom-client calls collect() of each gauge in turn; the first of a scrape reads the caches and
  // sets them all, the rest find it done.
  const update = () => {
    pending ??= (async () => {
      const reports = await Promise.all(caches.map((c) => c.cache.get()));
      caches.forEach(({ database, cache }) => {
        const labels = database === undefined ? {} : { database };
        up.set(labels, cache.error ? 0 : 1);
        refreshDuration.set(labels, cache.durationMs / 1000);
      });
      if (reports.some((r, i) => r !== applied[i])) {
        for (const g of gauges) g.reset();
        reports.forEach((report, i) => report && apply(report, caches[i].database));
        applied = reports;
      }
    })().finally(() => setImmediate(() => (pending = null)));
    return pending;
  };
  const gauge = <L extends string>(name: string, help: string, labelNames: L[]): G<L> => {
    const g = new Gauge<L>({ name, help, labelNames, registers: [registry], collect: update });
    gauges.push(g as unknown as Gauge<string>);
    return g;
  };
  const fleetLabel: 'database'[] = fleet ? ['database'] : [];
  const up = new Gauge({ name: 'tenantsafe_health_up', help: '1 when the last health computation read the catalog, 0 when it failed (the other tenantsafe_ gauges then show the last report).', labelNames: fleetLabel, registers: [registry], collect: update });
  const refreshDuration = new Gauge({ name: 'tenantsafe_health_refresh_duration_seconds', help: 'How long the last health computation took.', labelNames: fleetLabel, registers: [registry] });
  const generated = gauge('tenantsafe_health_generated_timestamp_seconds', 'When the health report the gauges show was computed (catalog clock).', fleetLabel);
  const status = gauge('tenantsafe_health_status', 'Health by kind: 0 ok, 1 warning, 2 critical (kind: tenant, full, verification, wal, changeLog, retention, dr, approval, database).', ['database', 'kind']);
  const lastSuccess = gauge('tenantsafe_last_success_timestamp_seconds', 'Newest success by kind: tenant (newest tenant backup of any tenant), full, verification (newest passed), wal (the archive last grew), changeLog (caught up to). Absent: never.', ['database', 'kind']);
  const lastFailure = gauge('tenantsafe_last_failure_timestamp_seconds', 'Newest failure by kind: tenant, full (failed runs), verification (failed report), wal (failed archiver slice), changeLog (newest gap). Absent: never.', ['database', 'kind']);
  const failing = gauge('tenantsafe_failing', 'Subjects whose latest attempt failed, by kind: tenant (tenants), full (0 or 1), verification (backups whose newest verification failed).', ['database', 'kind']);
  const stale = gauge('tenantsafe_stale', 'Subjects older than the schedule allows, by kind and severity (warning: over interval x warningFactor, critical: over interval x criticalFactor).', ['database', 'kind', 'severity']);
  const interval = gauge('tenantsafe_schedule_interval_seconds', 'The interval each kind must succeed within (absent: not judged).', ['database', 'kind']);
  const tenants = gauge('tenantsafe_tenants', 'Tenants the catalog knows, by health level.', ['database', 'level']);
  const stalest = gauge('tenantsafe_stalest_tenant_backup_timestamp_seconds', 'The newest backup of the tenant backed up least recently: every tenant has a backup at least this new.', ['database']);
  const points = gauge('tenantsafe_restore_points', 'Restore points, by kind: tenant (tenant backups of all tenants), full (full backups).', ['database', 'kind']);
  const oldestRestorable = gauge('tenantsafe_oldest_restorable_timestamp_seconds', 'How far back restores reach, by kind: tenant (every tenant at least this far), full (the oldest full backup).', ['database', 'kind']);
  const violations = gauge('tenantsafe_retention_violations', 'Subjects with fewer restore points than the retention policy promises, by kind: tenant (tenants), full (0 or 1).', ['database', 'kind']);
  const verified = gauge('tenantsafe_verified_backups', 'Backups in the catalog by the result of their newest verification: ok, failed, unverified.', ['database', 'result']);
  const walLag = gauge('tenantsafe_wal_archive_lag_bytes', 'WAL the server wrote that the archive does not hold yet.', ['database']);
  const walSeen = gauge('tenantsafe_wal_archiver_last_seen_timestamp_seconds', 'When the WAL archiver last reported (every 30 s while it runs).', ['database']);
  const walStalledAfter = gauge('tenantsafe_wal_stalled_after_seconds', 'How long the WAL archiver may be silent before archiving counts as stalled (monitoring.walStalledAfter).', ['database']);
  const rpo = gauge('tenantsafe_rpo_seconds', 'Achieved recovery point objective, by source: wal (the WAL archive), changeLog: how much would be lost now (0: everything is stored).', ['database', 'source']);
  const rpoTarget = gauge('tenantsafe_rpo_target_seconds', 'The RPO target, by source (monitoring.rpoTarget, monitoring.changeLogLagTarget).', ['database', 'source']);
  const changeLogLag = gauge('tenantsafe_changelog_lag_bytes', "WAL the change log's slot holds that the log has not stored yet.", ['database']);
  const gaps = gauge('tenantsafe_changelog_gaps', 'Gaps in the change log (kept until retention removes them).', ['database']);
  const lastGap = gauge('tenantsafe_changelog_last_gap_timestamp_seconds', 'When the newest change-log gap ended.', ['database']);
  const approvals = gauge('tenantsafe_pending_approvals', 'Restores awaiting approval.', ['database']);
  const oldestApproval = gauge('tenantsafe_oldest_pending_approval_timestamp_seconds', 'Since when the longest-waiting restore awaits approval (absent: none).', ['database']);
  const approvalLimit = gauge('tenantsafe_approval_wait_limit_seconds', 'How long a restore may await approval before it is a warning (monitoring.approvalWait).', ['database']);
  const drillSuccess = gauge('tenantsafe_dr_drill_last_success_timestamp_seconds', 'When the newest DR drill that passed its checks finished (absent: none yet).', ['database']);
  const drillMet = gauge('tenantsafe_dr_drill_met_targets', 'The newest finished DR drill: 1 passed within dr.targets, 0 failed or missed a target (absent: none yet).', ['database']);
  const drillAchieved = gauge('tenantsafe_dr_drill_achieved_seconds', 'What the newest finished DR drill achieved, by objective: rto (drill start to the restored cluster answering, checks passed), rpo (what a recovery then would have lost). Absent: not reached.', ['database', 'objective']);
  const moveAchieved = gauge('tenantsafe_dr_failover_achieved_seconds', 'What the newest finished failover or switchover (kind) achieved, by objective: rto (primary lost, or clients paused, to the first write through the endpoint), rpo (commits lost). Absent: none, or not measured.', ['database', 'kind', 'objective']);
  const moveMet = gauge('tenantsafe_dr_failover_met_targets', 'The newest finished failover or switchover (kind): 1 within dr.targets, 0 not (absent: none yet).', ['database', 'kind']);
  const moveAt = gauge('tenantsafe_dr_failover_last_timestamp_seconds', 'When the newest finished failover or switchover (kind) finished.', ['database', 'kind']);
  const drTarget = gauge('tenantsafe_dr_target_seconds', 'The DR targets every drill and failover is judged against, by objective: rto, rpo (dr.targets).', ['database', 'objective']);
  const tStatus = gauge('tenantsafe_tenant_health_status', 'Per tenant (the monitoring.topTenants worst and monitoring.tenants): 0 ok, 1 warning, 2 critical.', ['database', 'tenant']);
  const tSuccess = gauge('tenantsafe_tenant_last_success_timestamp_seconds', "Per tenant (as above): its newest backup's snapshot time.", ['database', 'tenant']);
  const tFailure = gauge('tenantsafe_tenant_last_failure_timestamp_seconds', 'Per tenant (as above): its newest failed backup run.', ['database', 'tenant']);
  const tPoints = gauge('tenantsafe_tenant_restore_points', 'Per tenant (as above): its restore points (tenant backups).', ['database', 'tenant']);
  const tOldest = gauge('tenantsafe_tenant_oldest_restorable_timestamp_seconds', 'Per tenant (as above): its oldest restore point.', ['database', 'tenant']);

  const set = <L extends string>(g: G<L>, labels: Partial<Record<L, string>>, value: number | null | undefined) => {
    if (value !== null && value !== undefined && Number.isFinite(value)) g.set(labels, value);
  };

  /** `id`: the database's id in a fleet, its label in place of the report's database name */
  function apply(report: HealthReport, id: string | undefined): void {
    set(generated, id === undefined ? {} : { database: id }, seconds(report.generatedAt));
    for (const d of report.databases) {
      const database = id ?? d.database;
      const kinds = { tenant: d.tenant, full: d.full, verification: d.verification, wal: d.wal, changeLog: d.changeLog, retention: d.retention, approval: d.approvals } as const;
      for (const [kind, h] of Object.entries(kinds)) if (h) set(status, { database, kind }, levelValue[h.level]);
      set(status, { database, kind: 'database' }, d.reachable ? 0 : 2);
      for (const [kind, h] of Object.entries({ tenant: d.tenant, full: d.full, verification: d.verification, wal: d.wal, changeLog: d.changeLog })) {
        if (!h) continue;
        set(lastSuccess, { database, kind }, seconds(h.lastSuccess?.at));
        set(lastFailure, { database, kind }, seconds(h.lastFailure?.at));
      }
      set(failing, { database, kind: 'tenant' }, d.tenant.failing);
      set(failing, { database, kind: 'full' }, d.full.failing);
      set(failing, { database, kind: 'verification' }, d.verification.failing);
      set(stale, { database, kind: 'tenant', severity: 'warning' }, d.tenant.stale.warning);
      set(stale, { database, kind: 'tenant', severity: 'critical' }, d.tenant.stale.critical);
      for (const [kind, h] of [['full', d.full], ['verification', d.verification]] as const) {
        const age = h.ageSeconds;
        const e = h.expected;
        const never = e.everyMs !== null && age === null;
        set(stale, { database, kind, severity: 'warning' }, e.everyMs === null ? 0 : !never && age! * 1000 > e.warningAfterMs! && age! * 1000 <= e.criticalAfterMs! ? 1 : 0);
        set(stale, { database, kind, severity: 'critical' }, e.everyMs === null ? 0 : never || age! * 1000 > e.criticalAfterMs! ? 1 : 0);
      }
      for (const [kind, e] of [['tenant', d.tenant.expected], ['full', d.full.expected], ['verification', d.verification.expected]] as const) set(interval, { database, kind }, e.everyMs === null ? null : e.everyMs / 1000);
      for (const level of ['ok', 'warning', 'critical'] as const) set(tenants, { database, level }, d.tenant.byLevel[level]);
      set(stalest, { database }, seconds(d.tenant.stalest?.at));
      set(points, { database, kind: 'tenant' }, d.tenant.restorePoints);
      set(points, { database, kind: 'full' }, d.full.restorePoints);
      set(oldestRestorable, { database, kind: 'tenant' }, seconds(d.tenant.oldestRestorableAt));
      set(oldestRestorable, { database, kind: 'full' }, seconds(d.full.oldestRestorableAt));
      set(violations, { database, kind: 'tenant' }, d.retention.tenantsBelow);
      set(violations, { database, kind: 'full' }, d.retention.fullBelow ? 1 : 0);
      set(verified, { database, result: 'ok' }, d.verification.ok);
      set(verified, { database, result: 'failed' }, d.verification.failing);
      set(verified, { database, result: 'unverified' }, d.verification.unverified);
      if (d.wal) {
        set(walLag, { database }, d.wal.lagBytes);
        set(walSeen, { database }, seconds(d.wal.seenAt));
        set(walStalledAfter, { database }, report.thresholds.walStalledAfterSeconds);
        set(rpo, { database, source: 'wal' }, d.wal.rpoSeconds);
        set(rpoTarget, { database, source: 'wal' }, d.wal.targetSeconds);
      }
      if (d.changeLog) {
        set(changeLogLag, { database }, d.changeLog.lagBytes);
        set(rpo, { database, source: 'changeLog' }, d.changeLog.rpoSeconds);
        set(rpoTarget, { database, source: 'changeLog' }, d.changeLog.targetSeconds);
        set(gaps, { database }, d.changeLog.gaps);
        set(lastGap, { database }, seconds(d.changeLog.lastFailure?.at));
      }
      set(status, { database, kind: 'dr' }, levelValue[d.dr.level]);
      set(interval, { database, kind: 'drill' }, d.dr.expected.everyMs === null ? null : d.dr.expected.everyMs / 1000);
      set(drillSuccess, { database }, seconds(d.dr.lastSuccess?.at));
      const drill = d.dr.lastDrill;
      if (drill) set(drillMet, { database }, drill.metTargets ? 1 : 0);
      set(drillAchieved, { database, objective: 'rto' }, drill?.rtoMs === null || drill?.rtoMs === undefined ? null : drill.rtoMs / 1000);
      set(drillAchieved, { database, objective: 'rpo' }, drill?.rpoMs === null || drill?.rpoMs === undefined ? null : drill.rpoMs / 1000);
      for (const kind of ['failover', 'switchover'] as const) {
        const move = d.dr.recent.find((e) => e.kind === kind && e.status === 'done');
        if (!move) continue;
        set(moveAt, { database, kind }, seconds(move.finishedAt ?? undefined));
        if (move.metTargets !== null) set(moveMet, { database, kind }, move.metTargets ? 1 : 0);
        set(moveAchieved, { database, kind, objective: 'rto' }, move.rtoMs === null ? null : move.rtoMs / 1000);
        set(moveAchieved, { database, kind, objective: 'rpo' }, move.rpoMs === null ? null : move.rpoMs / 1000);
      }
      set(drTarget, { database, objective: 'rto' }, d.dr.targets.rtoSeconds);
      set(drTarget, { database, objective: 'rpo' }, d.dr.targets.rpoSeconds);
      set(approvals, { database }, d.approvals.count);
      set(oldestApproval, { database }, seconds(d.approvals.oldest[0]?.since));
      set(approvalLimit, { database }, d.approvals.waitLimitSeconds);
      const perTenant = new Map([...d.tenant.worst, ...d.tenant.selected].map((t) => [t.tenantId, t]));
      for (const t of perTenant.values()) {
        const labels = { database, tenant: t.tenantId };
        set(tStatus, labels, levelValue[t.level]);
        set(tSuccess, labels, seconds(t.lastSuccessAt));
        set(tFailure, labels, seconds(t.lastFailure?.at));
        set(tPoints, labels, t.restorePoints);
        set(tOldest, labels, seconds(t.oldestRestorableAt));
      }
    }
  }
}

/** A registry with Node's process metrics (process_*, nodejs_*). */
export function processRegistry(): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  return registry;
}

/** Answers GET /metrics from `registry`, asking for `Authorization: Bearer <token>` when one is set. */
export async function serveMetrics(registry: Registry, req: http.IncomingMessage, res: http.ServerResponse, token?: string): Promise<void> {
  if (token) {
    const given = Buffer.from(/^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1] ?? '');
    const expected = Buffer.from(token);
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
      res.writeHead(401, { 'content-type': 'text/plain', 'www-authenticate': 'Bearer' });
      res.end('missing or wrong bearer token (monitoring.metricsToken)\n');
      return;
    }
  }
  const body = await registry.metrics();
  res.writeHead(200, { 'content-type': registry.contentType });
  res.end(body);
}
