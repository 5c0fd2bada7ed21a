// The health model: is every database backed up as often as its schedules say, can it be
// restored, how much would be lost now (achieved RPO), and who is waiting on whom. One report,
// computed from the catalog (and a few cheap questions to the live database: its WAL position, the
// slots, which tenants still exist), read by `tenantsafe check` and `status`, the catalog-derived
// Prometheus metrics, and the dashboard.
//
// Judgements (docs/runbooks/monitoring.md says what to do about each):
//   tenant, full    the latest attempt failed: critical; the newest backup older than its
//                   interval × warningFactor (1.5): warning, × criticalFactor (2): critical;
//                   expected but none yet: critical
//   verification    a backup still in the catalog whose newest verification failed: critical;
//                   the newest verification older than the interval (as above)
//   wal             the archiver silent for walStalledAfter (3 min): critical; achieved RPO over
//                   rpoTarget (5 min): warning, over twice it: critical; its last slice failed
//                   and nothing was archived since: warning
//   changeLog       slot missing or lost: critical; lag over changeLogLagTarget: warning, over
//                   twice it: critical; a gap in the last 24 h: warning
//   retention       a tenant (or the full backups) with fewer restore points than the policy
//                   promises by now, min(minCount, scheduled runs since its oldest): warning
//   dr              the newest DR drill failed: critical; it ran but missed dr.targets: warning;
//                   the newest passing drill older than the drill interval (the schedule's, else
//                   dr.drill.interval once a drill has run) × warningFactor / × criticalFactor;
//                   a drill schedule but no drill yet: warning
//   approval        a restore waiting for approval longer than approvalWait (1 h): warning
//   database        the live database does not answer: critical
//   temporal        (given by the caller) Temporal unreachable or no worker polls: critical
//
// Bounded with 100k tenants: tenants are judged in SQL (lib/monitoring/queries.ts); only those
// that need attention come back, the worst first, at most `flaggedCap`; per-tenant detail for the
// N worst, the configured ones, or one on request.
import type { DrEventRecord } from '../catalog';
import type { Config } from '../config';
import { databaseName } from '../config';
import { changeLogState } from '../changeLog/capture';
import { workflowScopes } from '../databaseIdentity';
import type { Engine } from '../engine';
import { withClient } from '../pg';
import { lagMarkerTime, ReplicatedStore } from '../storage/replicated';
import { discoverTenancy, existingTenants, type TenancyPlan } from '../tenancy';
import { formatLsn, parseLsn, segmentStartLsn } from '../wal/names';
import {
  readFull,
  readLastTenantFailure,
  readNewestTenantBackup,
  readPendingApprovals,
  readStalestTenant,
  readTenantDetail,
  readTenantPage,
  readTenantRows,
  readTenants,
  readVerifications,
  type FullFacts,
  type PendingApprovalFacts,
  type RunFacts,
  type TenantAggregate,
  type TenantJudgement,
  type TenantRow,
  type VerificationFacts,
} from './queries';

export type Level = 'ok' | 'warning' | 'critical';
const levelNames: Level[] = ['ok', 'warning', 'critical'];
export const levelRank = (l: Level): number => levelNames.indexOf(l);
const worst = (...ls: Level[]): Level => levelNames[Math.max(0, ...ls.map(levelRank))];

export type HealthKind = 'tenant' | 'full' | 'verification' | 'wal' | 'changeLog' | 'retention' | 'dr' | 'approval' | 'database' | 'temporal' | 'storage';

/** Each kind as people read it (status, the dashboard). */
export const healthKindNames: Record<HealthKind, string> = {
  tenant: 'tenant backups',
  full: 'full backups',
  verification: 'verification',
  wal: 'WAL archive',
  changeLog: 'change log',
  retention: 'retention',
  dr: 'DR drills',
  approval: 'approvals',
  database: 'database',
  temporal: 'Temporal',
  storage: 'storage',
};

/** What the health model holds each kind to. */
export interface Expectation {
  /** the interval it must succeed within; null: its age is not judged */
  everyMs: number | null;
  /** config: monitoring.schedules; schedule: a Temporal schedule; default: tenant backups' 24 h; off: config says off; none: no schedule */
  source: 'config' | 'schedule' | 'default' | 'off' | 'none';
  warningAfterMs: number | null;
  criticalAfterMs: number | null;
}

/** What Temporal's schedules say (read by client/health.ts; the engine does not talk to Temporal). */
export interface ScheduleFacts {
  tenantBackupEveryMs?: number;
  /** tenants with a schedule of their own */
  perTenantEveryMs?: Record<string, number>;
  fullBackupEveryMs?: number;
  verificationEveryMs?: number;
  /** the DR drill schedule */
  drillEveryMs?: number;
}

/** What the caller found out about Temporal, when it asked. */
export interface TemporalFacts {
  address: string;
  namespace: string;
  taskQueue: string;
  reachable: boolean;
  error?: string;
  /** workers polling the task queue */
  pollers?: number;
  schedules?: ScheduleFacts;
}

export interface RunLink {
  workflowId: string;
  runId: string;
  /** the run in the Temporal Web UI (temporal.uiUrl), when configured */
  url: string | null;
}

export interface SuccessEvent {
  at: string;
  backupId?: string;
  tenantId?: string;
  run?: RunLink | null;
}

export interface FailureEvent {
  at: string;
  error: string;
  errorType: string | null;
  tenantId?: string | null;
  backupId?: string | null;
  run?: RunLink | null;
}

/** One judged fact, for check/status, the dashboard's overview and alert texts. */
export interface HealthItem {
  /** stable: `<database>/<kind>/<check>` */
  id: string;
  database: string;
  kind: HealthKind;
  check: string;
  level: Level;
  /** one sentence */
  message: string;
  tenantId?: string;
  backupId?: string;
  restoreId?: string;
  run?: RunLink | null;
  /** docs/runbooks/monitoring.md#<anchor> */
  runbook: string;
}

export interface TenantHealth {
  tenantId: string;
  level: Level;
  /** its latest backup attempt failed (and nothing succeeded since) */
  failing: boolean;
  /** ok | warning | critical by the age of its newest backup */
  age: Level;
  ageSeconds: number | null;
  everyMs: number | null;
  lastSuccessAt: string | null;
  lastFailure: FailureEvent | null;
  restorePoints: number;
  promisedRestorePoints: number;
  oldestRestorableAt: string | null;
  belowRetention: boolean;
}

export interface TenantKindHealth {
  level: Level;
  expected: Expectation;
  /** tenants the catalog knows (a backup or a recent failed attempt), still in the database */
  tenants: number;
  withBackup: number;
  byLevel: Record<Level, number>;
  failing: number;
  stale: { warning: number; critical: number };
  belowRetention: number;
  restorePoints: number;
  /** the newest tenant backup of any tenant */
  lastSuccess: SuccessEvent | null;
  /** the newest failed tenant backup of any tenant */
  lastFailure: FailureEvent | null;
  /** the tenant whose newest backup is the oldest */
  stalest: { tenantId: string; at: string } | null;
  /** every tenant with a backup can be restored at least this far back */
  oldestRestorableAt: string | null;
  /** the tenants that need attention, worst first (at most topTenants) */
  worst: TenantHealth[];
  /** monitoring.tenants and those asked for */
  selected: TenantHealth[];
  /** more tenants needed attention than were read one by one (the counts are then the catalog's, unfiltered) */
  truncated: boolean;
}

export interface FullKindHealth {
  level: Level;
  expected: Expectation;
  lastSuccess: SuccessEvent | null;
  lastFailure: FailureEvent | null;
  failing: number;
  ageSeconds: number | null;
  restorePoints: number;
  promisedRestorePoints: number;
  oldestRestorableAt: string | null;
}

export interface VerificationHealth {
  level: Level;
  expected: Expectation;
  lastSuccess: SuccessEvent | null;
  lastFailure: (FailureEvent & { reportKey: string | null }) | null;
  /** backups in the catalog whose newest verification failed */
  failing: number;
  ok: number;
  unverified: number;
  ageSeconds: number | null;
  failingBackups: { backupId: string; kind: string; at: string; counts: Record<string, number>; reportKey: string | null }[];
}

export interface WalHealth {
  level: Level;
  scope: string;
  /** when the archive last grew */
  lastSuccess: SuccessEvent | null;
  /** the archiver's last failed slice */
  lastFailure: FailureEvent | null;
  /** when the archiver last reported (it does every 30 s while it runs) */
  seenAt: string | null;
  archivedLsn: string | null;
  serverLsn: string | null;
  lagBytes: number | null;
  /** achieved recovery point objective: 0 when the archive holds everything the server wrote */
  rpoSeconds: number | null;
  targetSeconds: number;
  slotActive: boolean | null;
}

export interface ChangeLogHealth {
  level: Level;
  stream: string;
  startedAt: string | null;
  /** the server time up to which every commit is stored */
  lastSuccess: SuccessEvent | null;
  /** the newest gap */
  lastFailure: FailureEvent | null;
  lagBytes: number | null;
  rpoSeconds: number | null;
  targetSeconds: number;
  gaps: number;
  recentGaps: number;
  slot: { name: string; exists: boolean; walStatus: string | null };
}

/** A drill, failover, switchover or failback as the health model, the metrics and the dashboard show it (catalog: dr_events). */
export interface DrEventSummary {
  kind: DrEventRecord['kind'];
  status: DrEventRecord['status'];
  startedAt: string;
  finishedAt: string | null;
  metTargets: boolean | null;
  rtoMs: number | null;
  rpoMs: number | null;
  rtoTargetMs: number;
  rpoTargetMs: number;
  /** drills: the report's id and keys in storage */
  drillId: string | null;
  reportKey: string | null;
  htmlKey: string | null;
  error: string | null;
  run: RunLink | null;
}

export interface DrHealth {
  level: Level;
  expected: Expectation;
  /** the newest finished drill */
  lastDrill: DrEventSummary | null;
  /** the newest drill that passed its checks (its targets aside) */
  lastSuccess: SuccessEvent | null;
  lastFailure: FailureEvent | null;
  /** since the newest drill that passed */
  ageSeconds: number | null;
  targets: { rtoSeconds: number; rpoSeconds: number };
  /** the newest drills and failovers, newest first (at most 10) */
  recent: DrEventSummary[];
}

export interface PendingApproval {
  restoreId: string;
  tenantId: string;
  backupId: string | null;
  requestedBy: string;
  since: string;
  waitSeconds: number;
  level: Level;
  run: RunLink;
}

export interface DatabaseHealth {
  database: string;
  level: Level;
  reachable: boolean;
  error?: string;
  tenant: TenantKindHealth;
  full: FullKindHealth;
  verification: VerificationHealth;
  /** null: not in use (no full backups with the postgres provider, no archiver report) */
  wal: WalHealth | null;
  /** null: changeLog.enabled is false */
  changeLog: ChangeLogHealth | null;
  retention: { level: Level; tenantsBelow: number; fullBelow: boolean };
  dr: DrHealth;
  approvals: { level: Level; count: number; waitLimitSeconds: number; oldest: PendingApproval[] };
}

export interface HealthReport {
  /** the catalog's clock */
  generatedAt: string;
  level: Level;
  /** one line: `TENANTSAFE <LEVEL> - ...` without the prefix */
  summary: string;
  /** every judged fact, critical first, then warning, then ok */
  items: HealthItem[];
  databases: DatabaseHealth[];
  temporal: TemporalFacts | null;
  thresholds: {
    warningFactor: number;
    criticalFactor: number;
    rpoTargetSeconds: number;
    changeLogLagTargetSeconds: number;
    walStalledAfterSeconds: number;
    approvalWaitSeconds: number;
  };
}

export interface HealthOptions {
  temporal?: TemporalFacts;
  /** per-tenant detail for this many of the worst tenants (default monitoring.topTenants) */
  topTenants?: number;
  /** per-tenant detail for these tenants too (besides monitoring.tenants) */
  tenants?: string[];
  /** a place to keep what is slow to find out and rarely changes (the tenancy plan), across calls */
  memo?: HealthMemo;
}

export interface HealthMemo {
  plan?: { plan: TenancyPlan; at: number };
  scopes?: { walArchiver: string; changeLog: string; at: number };
}

/** Tenants needing attention read one by one at most; more are counted, not named. */
export const flaggedCap = 10_000;
const failureLookbackMs = 7 * 86_400_000;
const recentGapMs = 86_400_000;
const memoMs = 10 * 60_000;
const defaultTenantEveryMs = 86_400_000;
export const runbookPage = 'docs/runbooks/monitoring.md';

/** The interval of each kind: config first, else Temporal's schedule, else the default. */
export function expectationsOf(config: Config, schedules?: ScheduleFacts): { tenant: Expectation; full: Expectation; verification: Expectation; perTenantEveryMs: Record<string, number> } {
  const m = config.monitoring;
  const of = (configured: number | null | undefined, scheduled: number | undefined, fallback: number | null): Expectation => {
    const [everyMs, source]: [number | null, Expectation['source']] =
      configured === null ? [null, 'off'] : configured !== undefined ? [configured, 'config'] : scheduled !== undefined ? [scheduled, 'schedule'] : fallback !== null ? [fallback, 'default'] : [null, 'none'];
    return { everyMs, source, warningAfterMs: everyMs === null ? null : everyMs * m.warningFactor, criticalAfterMs: everyMs === null ? null : everyMs * m.criticalFactor };
  };
  return {
    tenant: of(m.schedules.tenantBackup, schedules?.tenantBackupEveryMs, defaultTenantEveryMs),
    full: of(m.schedules.fullBackup, schedules?.fullBackupEveryMs, null),
    verification: of(m.schedules.verification, schedules?.verificationEveryMs, null),
    // a configured interval is for every tenant; else each tenant's own schedule counts
    perTenantEveryMs: m.schedules.tenantBackup === undefined ? (schedules?.perTenantEveryMs ?? {}) : {},
  };
}

function tenantJudgement(config: Config, expected: ReturnType<typeof expectationsOf>): TenantJudgement {
  const perTenantMinCount = Object.fromEntries(
    Object.entries(config.retention.tenants)
      .filter(([, p]) => p.minCount !== undefined)
      .map(([t, p]) => [t, p.minCount!]),
  );
  return {
    defaultEveryMs: expected.tenant.everyMs,
    perTenantEveryMs: expected.perTenantEveryMs,
    warningFactor: config.monitoring.warningFactor,
    criticalFactor: config.monitoring.criticalFactor,
    minCount: config.retention.minCount,
    perTenantMinCount,
    failureLookbackMs: Math.max(failureLookbackMs, 2 * config.monitoring.criticalFactor * (expected.tenant.everyMs ?? 0)),
  };
}

/** The run in the Temporal Web UI. */
export function runLink(config: Config, workflowId: string | null | undefined, runId: string | null | undefined): RunLink | null {
  if (!workflowId || !runId) return null;
  const ui = config.temporal.uiUrl;
  return { workflowId, runId, url: ui ? `${ui}/namespaces/${encodeURIComponent(config.temporal.namespace)}/workflows/${encodeURIComponent(workflowId)}/${encodeURIComponent(runId)}/history` : null };
}

function failureOf(config: Config, f: RunFacts | null): FailureEvent | null {
  if (!f) return null;
  return { at: f.finishedAt ?? f.startedAt, error: f.error ?? 'failed (no message recorded)', errorType: f.errorType, tenantId: f.tenantId, backupId: f.backupId, run: runLink(config, f.workflowId, f.runId) };
}

function tenantHealthOf(config: Config, r: TenantRow): TenantHealth {
  return {
    tenantId: r.tenantId,
    level: levelNames[r.level],
    failing: r.failing,
    age: levelNames[r.ageLevel],
    ageSeconds: r.ageSeconds,
    everyMs: r.everyMs,
    lastSuccessAt: r.newestAt,
    lastFailure: failureOf(config, r.failure),
    restorePoints: r.restorePoints,
    promisedRestorePoints: r.promisedPoints,
    oldestRestorableAt: r.oldestAt,
    belowRetention: r.belowRetention,
  };
}

/** A duration for people: 45s, 12m, 3h 5m, 2d 4h. */
export function durationText(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m`;
  if (s < 86_400) return `${Math.floor(s / 3600)}h${s % 3600 >= 60 ? ` ${Math.floor((s % 3600) / 60)}m` : ''}`;
  return `${Math.floor(s / 86_400)}d${s % 86_400 >= 3600 ? ` ${Math.floor((s % 86_400) / 3600)}h` : ''}`;
}

const secondsBetween = (from: string, to: string) => (Date.parse(to) - Date.parse(from)) / 1000;

function ageLevel(ageSeconds: number | null, e: Expectation): Level {
  if (e.everyMs === null || ageSeconds === null) return 'ok';
  if (ageSeconds * 1000 > e.criticalAfterMs!) return 'critical';
  if (ageSeconds * 1000 > e.warningAfterMs!) return 'warning';
  return 'ok';
}

function everyText(e: Expectation): string {
  return e.everyMs === null ? 'not scheduled' : `every ${durationText(e.everyMs / 1000)}${e.source === 'schedule' ? ' (schedule)' : e.source === 'config' ? ' (config)' : ''}`;
}

/** The tenancy plan, found again at most every 10 minutes. */
async function tenancyPlan(engine: Engine, memo: HealthMemo | undefined): Promise<TenancyPlan> {
  if (memo?.plan && Date.now() - memo.plan.at < memoMs) return memo.plan.plan;
  const plan = await withClient(engine.db, engine.config.database.url, (c) => discoverTenancy(c, engine.config.tenancy));
  if (memo) memo.plan = { plan, at: Date.now() };
  return plan;
}

async function scopesOf(engine: Engine, memo: HealthMemo | undefined): Promise<{ walArchiver: string; changeLog: string }> {
  if (memo?.scopes && Date.now() - memo.scopes.at < memoMs) return memo.scopes;
  const scopes = await workflowScopes(engine);
  if (memo) memo.scopes = { ...scopes, at: Date.now() };
  return scopes;
}

interface CatalogFacts {
  now: string;
  tenants: { aggregate: TenantAggregate; flagged: TenantRow[] };
  selected: TenantRow[];
  newestTenant: Awaited<ReturnType<typeof readNewestTenantBackup>>;
  lastTenantFailure: RunFacts | null;
  full: FullFacts;
  verification: VerificationFacts;
  approvals: { count: number; oldest: PendingApprovalFacts[] };
}

/** Computes the health report of the configured database. Throws when the catalog cannot be read. */
export async function computeHealth(engine: Engine, opts: HealthOptions = {}): Promise<HealthReport> {
  const config = engine.config;
  const db = databaseName(config.database.url);
  const m = config.monitoring;
  const expected = expectationsOf(config, opts.temporal?.schedules);
  const judgement = tenantJudgement(config, expected);
  const top = opts.topTenants ?? m.topTenants;
  const selectedIds = [...new Set([...m.tenants, ...(opts.tenants ?? [])])];

  const facts: CatalogFacts = await engine.catalog.read(async (c, s) => ({
    now: (await c.query(`SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS now`)).rows[0].now,
    tenants: await readTenants(c, s, db, judgement, flaggedCap),
    selected: await readTenantRows(c, s, db, judgement, selectedIds),
    newestTenant: await readNewestTenantBackup(c, s, db),
    lastTenantFailure: await readLastTenantFailure(c, s, db),
    full: await readFull(c, s, db),
    verification: await readVerifications(c, s, db),
    approvals: await readPendingApprovals(c, s, config.restore.approvalTimeoutMs + 86_400_000, 20),
  }));
  const now = facts.now;
  const items: HealthItem[] = [];
  const item = (kind: HealthKind, check: string, level: Level, message: string, extra: Partial<HealthItem> = {}, anchor = check) =>
    items.push({ id: `${db}/${kind}/${check}`, database: db, kind, check, level, message, ...extra, runbook: `${runbookPage}#${anchor}` });

  // The live database: reachable? Which flagged tenants still exist?
  let reachable = true;
  let dbError: string | undefined;
  let flagged = facts.tenants.flagged;
  let aggregate = facts.tenants.aggregate;
  const truncated = flagged.length > flaggedCap;
  try {
    if (!truncated && flagged.length > 0) {
      const plan = await tenancyPlan(engine, opts.memo);
      const exists = await withClient(engine.db, config.database.url, (c) => existingTenants(c, plan, flagged.map((t) => t.tenantId)));
      const gone = flagged.filter((t) => !exists.has(t.tenantId));
      if (gone.length > 0) {
        flagged = flagged.filter((t) => exists.has(t.tenantId));
        aggregate = withoutTenants(aggregate, gone);
        if (!aggregate.stalest) aggregate.stalest = await engine.catalog.read((c, s) => readStalestTenant(c, s, db, gone.map((t) => t.tenantId)));
      }
    } else {
      await withClient(engine.db, config.database.url, (c) => c.query('SELECT 1'));
    }
  } catch (err) {
    reachable = false;
    dbError = err instanceof Error ? err.message : String(err);
    item('database', 'unreachable', 'critical', `The database ${db} does not answer: ${dbError}`, {}, 'database-unreachable');
  }
  if (truncated) flagged = flagged.slice(0, flaggedCap);

  // ---- tenant backups ----
  const worstTenants = flagged.slice(0, top).map((r) => tenantHealthOf(config, r));
  const tenantLevel = worst(aggregate.failing > 0 ? 'critical' : 'ok', aggregate.staleCritical > 0 ? 'critical' : aggregate.staleWarning > 0 ? 'warning' : 'ok');
  const tenant: TenantKindHealth = {
    level: tenantLevel,
    expected: expected.tenant,
    tenants: aggregate.tenants,
    withBackup: aggregate.withBackup,
    byLevel: { ok: aggregate.byLevel[0], warning: aggregate.byLevel[1], critical: aggregate.byLevel[2] },
    failing: aggregate.failing,
    stale: { warning: aggregate.staleWarning, critical: aggregate.staleCritical },
    belowRetention: aggregate.belowRetention,
    restorePoints: aggregate.restorePoints,
    lastSuccess: facts.newestTenant
      ? { at: facts.newestTenant.at, backupId: facts.newestTenant.backupId, tenantId: facts.newestTenant.tenantId, run: runLink(config, facts.newestTenant.workflowId, facts.newestTenant.runId) }
      : null,
    lastFailure: failureOf(config, facts.lastTenantFailure),
    stalest: aggregate.stalest ? { tenantId: aggregate.stalest.tenantId, at: aggregate.stalest.newestAt } : null,
    oldestRestorableAt: aggregate.shallowestOldestAt,
    worst: worstTenants,
    selected: facts.selected.map((r) => tenantHealthOf(config, r)),
    truncated,
  };
  const failingTenants = flagged.filter((t) => t.failing);
  if (tenant.failing > 0) {
    const first = failingTenants[0];
    const named = failingTenants.slice(0, 3).map((t) => `${t.tenantId} (${t.failure?.errorType ?? 'error'}: ${firstSentence(t.failure?.error)})`);
    item('tenant', 'failed', 'critical', `${plural(tenant.failing, 'tenant backup')} failed on the latest attempt: ${named.join(', ')}${tenant.failing > named.length ? ', …' : ''}.`, {
      tenantId: first?.tenantId,
      run: runLink(config, first?.failure?.workflowId, first?.failure?.runId),
    }, 'backup-failed');
  } else {
    item('tenant', 'failed', 'ok', tenant.lastFailure ? `No tenant backup is failing (the last failure, ${tenant.lastFailure.tenantId}, was followed by a backup).` : 'No tenant backup is failing.', {}, 'backup-failed');
  }
  if (expected.tenant.everyMs !== null || Object.keys(expected.perTenantEveryMs).length > 0) {
    const staleLevel: Level = tenant.stale.critical > 0 ? 'critical' : tenant.stale.warning > 0 ? 'warning' : 'ok';
    if (tenant.tenants === 0) {
      item('tenant', 'age', 'critical', `No tenant backup yet (expected ${everyText(expected.tenant)}).`, {}, 'backup-too-old');
    } else if (staleLevel !== 'ok') {
      const stale = flagged.filter((t) => t.ageLevel > 0).slice(0, 3).map((t) => `${t.tenantId} (${durationText(t.ageSeconds ?? 0)} old)`);
      item('tenant', 'age', staleLevel, `${plural(tenant.stale.critical + tenant.stale.warning, 'tenant')} older than the schedule allows (${everyText(expected.tenant)}; warning at ×${m.warningFactor}, critical at ×${m.criticalFactor}): ${stale.join(', ')}.`, { tenantId: flagged.find((t) => t.ageLevel > 0)?.tenantId }, 'backup-too-old');
    } else {
      const stalest = tenant.stalest ? `; the stalest, ${tenant.stalest.tenantId}, is ${durationText(secondsBetween(tenant.stalest.at, now))} old` : '';
      item('tenant', 'age', 'ok', `Every tenant has a backup within its schedule (${everyText(expected.tenant)})${stalest}.`, {}, 'backup-too-old');
    }
  }

  // ---- full backups ----
  const full = judgeFull(config, facts.full, expected.full, now);
  if (full.failing > 0) {
    item('full', 'failed', 'critical', `The latest full backup failed${full.lastFailure!.errorType ? ` (${full.lastFailure!.errorType})` : ''}: ${firstSentence(full.lastFailure!.error)}`, { run: full.lastFailure!.run }, 'backup-failed');
  } else if (full.lastSuccess || full.lastFailure) {
    item('full', 'failed', 'ok', 'The latest full backup succeeded.', {}, 'backup-failed');
  }
  if (expected.full.everyMs !== null) {
    const level = full.lastSuccess ? ageLevel(full.ageSeconds, expected.full) : 'critical';
    item('full', 'age', level, full.lastSuccess ? `The newest full backup is ${durationText(full.ageSeconds!)} old (${everyText(expected.full)}).` : `No full backup yet (expected ${everyText(expected.full)}).`, { backupId: full.lastSuccess?.backupId }, 'backup-too-old');
  }

  // ---- verification ----
  const verification = judgeVerification(config, facts.verification, expected.verification, now);
  if (verification.failing > 0) {
    const names = verification.failingBackups.slice(0, 3).map((b) => b.backupId);
    item('verification', 'failed', 'critical', `${plural(verification.failing, 'backup')} failed verification: ${names.join(', ')}${verification.failing > names.length ? ', …' : ''}.`, { backupId: names[0] }, 'verification-failed');
  } else if (verification.ok > 0) {
    item('verification', 'failed', 'ok', `Every verified backup passed its newest verification (${verification.ok}; ${verification.unverified} not verified yet).`, {}, 'verification-failed');
  }
  if (expected.verification.everyMs !== null) {
    const level = verification.ageSeconds === null ? 'critical' : ageLevel(verification.ageSeconds, expected.verification);
    item('verification', 'age', level, verification.ageSeconds === null ? `No verification yet (expected ${everyText(expected.verification)}).` : `The newest verification ran ${durationText(verification.ageSeconds)} ago (${everyText(expected.verification)}).`, {}, 'verification-overdue');
  }

  // ---- DR drills ----
  const dr = judgeDr(config, await engine.catalog.listDrEvents({ database: db, limit: 50 }), opts.temporal?.schedules?.drillEveryMs, now);
  for (const [check, level, message, anchor] of dr.items) item('dr', check, level, message, {}, anchor);

  // ---- WAL archive, change log (need the live database) ----
  const wal = reachable ? await judgeWal(engine, facts.full, now, opts.memo).catch((err: unknown) => walUnknown(err)) : null;
  if (wal) {
    for (const [check, level, message, anchor] of wal.items) item('wal', check, level, message, {}, anchor);
  }
  const changeLog = reachable && config.changeLog.enabled ? await judgeChangeLog(engine, now).catch((err: unknown) => changeLogUnknown(err)) : null;
  if (changeLog) {
    for (const [check, level, message, anchor] of changeLog.items) item('changeLog', check, level, message, {}, anchor);
  }

  // ---- the secondary storage location ----
  for (const [check, level, message, anchor] of await judgeStorage(engine)) item('storage', check, level, message, {}, anchor);

  // ---- retention ----
  const fullBelow = expected.full.everyMs !== null && full.restorePoints < full.promisedRestorePoints;
  const retentionLevel: Level = tenant.belowRetention > 0 || fullBelow ? 'warning' : 'ok';
  {
    const below = flagged.filter((t) => t.belowRetention).slice(0, 3).map((t) => `${t.tenantId} (${t.restorePoints} of ${t.promisedPoints})`);
    const parts = [
      ...(tenant.belowRetention > 0 ? [`${plural(tenant.belowRetention, 'tenant')} with fewer restore points than the policy promises: ${below.join(', ')}`] : []),
      ...(fullBelow ? [`${full.restorePoints} full backups where the policy promises ${full.promisedRestorePoints}`] : []),
    ];
    item('retention', 'restore-points', retentionLevel, parts.length ? `${parts.join('; ')}.` : `Every tenant has the restore points the policy promises (${tenant.restorePoints} in all).`, {}, 'retention-violated');
  }

  // ---- approvals ----
  const approvals = facts.approvals.oldest.map((a): PendingApproval => ({
    restoreId: a.restoreId,
    tenantId: a.tenantId,
    backupId: a.backupId,
    requestedBy: a.requestedBy,
    since: a.since,
    waitSeconds: a.waitSeconds,
    level: a.waitSeconds * 1000 > m.approvalWaitMs ? 'warning' : 'ok',
    run: runLink(config, a.workflowId, a.runId)!,
  }));
  const approvalLevel = worst(...approvals.map((a) => a.level));
  if (approvals.length > 0) {
    const first = approvals[0];
    item('approval', 'pending', approvalLevel, `${plural(facts.approvals.count, 'restore')} awaiting approval; the oldest, ${first.restoreId} of ${first.tenantId} (requested by ${first.requestedBy}), for ${durationText(first.waitSeconds)}${approvalLevel === 'ok' ? '' : ` (over ${durationText(m.approvalWaitMs / 1000)})`}.`, {
      tenantId: first.tenantId,
      restoreId: first.restoreId,
      run: first.run,
    }, 'restore-awaiting-approval');
  }

  // ---- Temporal (as the caller found it) ----
  const t = opts.temporal;
  if (t) {
    if (!t.reachable) item('temporal', 'unreachable', 'critical', `Temporal at ${t.address} does not answer: ${firstSentence(t.error)} Nothing scheduled runs.`, {}, 'temporal-unreachable');
    else if (t.pollers === 0) item('temporal', 'no-worker', 'critical', `No worker polls task queue ${t.taskQueue} (namespace ${t.namespace}): nothing runs.`, {}, 'no-worker');
    else if (t.pollers !== undefined) item('temporal', 'no-worker', 'ok', `${plural(t.pollers, 'worker')} ${t.pollers === 1 ? 'polls' : 'poll'} task queue ${t.taskQueue}.`, {}, 'no-worker');
  }

  items.sort((a, b) => levelRank(b.level) - levelRank(a.level));
  const dbHealth: DatabaseHealth = {
    database: db,
    level: worst(...items.filter((i) => i.database === db).map((i) => i.level)),
    reachable,
    ...(dbError ? { error: dbError } : {}),
    tenant,
    full,
    verification,
    wal: wal?.health ?? null,
    changeLog: changeLog?.health ?? null,
    retention: { level: retentionLevel, tenantsBelow: tenant.belowRetention, fullBelow },
    dr: dr.health,
    approvals: { level: approvalLevel, count: facts.approvals.count, waitLimitSeconds: m.approvalWaitMs / 1000, oldest: approvals },
  };
  const level = worst(...items.map((i) => i.level));
  return {
    generatedAt: now,
    level,
    summary: summaryOf(items, dbHealth),
    items,
    databases: [dbHealth],
    temporal: t ?? null,
    thresholds: {
      warningFactor: m.warningFactor,
      criticalFactor: m.criticalFactor,
      rpoTargetSeconds: m.rpoTargetMs / 1000,
      changeLogLagTargetSeconds: m.changeLogLagTargetMs / 1000,
      walStalledAfterSeconds: m.walStalledAfterMs / 1000,
      approvalWaitSeconds: m.approvalWaitMs / 1000,
    },
  };
}

/** The aggregate without tenants found gone from the database. */
function withoutTenants(a: TenantAggregate, gone: TenantRow[]): TenantAggregate {
  const count = (f: (t: TenantRow) => boolean) => gone.filter(f).length;
  const byLevel: [number, number, number] = [a.byLevel[0], a.byLevel[1] - count((t) => t.level === 1), a.byLevel[2] - count((t) => t.level === 2)];
  return {
    ...a,
    tenants: a.tenants - gone.length,
    withBackup: a.withBackup - count((t) => t.newestAt !== null),
    restorePoints: a.restorePoints - gone.reduce((n, t) => n + t.restorePoints, 0),
    failing: a.failing - count((t) => t.failing),
    staleWarning: a.staleWarning - count((t) => t.ageLevel === 1),
    staleCritical: a.staleCritical - count((t) => t.ageLevel === 2),
    belowRetention: a.belowRetention - count((t) => t.belowRetention),
    byLevel,
    stalest: a.stalest && gone.some((t) => t.tenantId === a.stalest!.tenantId) ? null : a.stalest,
  };
}

function judgeFull(config: Config, f: FullFacts, expected: Expectation, now: string): FullKindHealth {
  const lastFailure = failureOf(config, f.lastFailure);
  const failing = f.lastFailure && (!f.newest || Date.parse(f.lastFailure.startedAt) > Date.parse(f.newest.startedAt)) ? 1 : 0;
  const ageSeconds = f.newest ? secondsBetween(f.newest.consistentAt, now) : null;
  const span = f.oldestAt ? secondsBetween(f.oldestAt, now) * 1000 : 0;
  const promised = f.count === 0 ? 0 : Math.min(config.retention.minCount, Math.floor(span / (expected.everyMs ?? 86_400_000)) + 1);
  const level = worst(failing ? 'critical' : 'ok', expected.everyMs === null ? 'ok' : f.newest ? ageLevel(ageSeconds, expected) : 'critical');
  return {
    level,
    expected,
    lastSuccess: f.newest ? { at: f.newest.consistentAt, backupId: f.newest.backupId, run: f.newestRun ? runLink(config, f.newestRun.workflowId, f.newestRun.runId) : null } : null,
    lastFailure,
    failing,
    ageSeconds,
    restorePoints: f.count,
    promisedRestorePoints: promised,
    oldestRestorableAt: f.oldestAt,
  };
}

function judgeVerification(_config: Config, v: VerificationFacts, expected: Expectation, now: string): VerificationHealth {
  const ageSeconds = v.lastAny ? secondsBetween(v.lastAny, now) : null;
  const level = worst(v.failed > 0 ? 'critical' : 'ok', expected.everyMs === null ? 'ok' : ageSeconds === null ? 'critical' : ageLevel(ageSeconds, expected));
  const lf = v.lastFailed;
  return {
    level,
    expected,
    lastSuccess: v.lastOk ? { at: v.lastOk.at, backupId: v.lastOk.backupId } : null,
    lastFailure: lf
      ? { at: lf.at, backupId: lf.backupId, error: `verification found ${Object.entries(lf.counts).filter(([k, n]) => k !== 'ok' && n > 0).map(([k, n]) => `${n} ${k}`).join(', ') || 'problems'}`, errorType: 'VerificationFailed', reportKey: lf.reportKey }
      : null,
    failing: v.failed,
    ok: v.ok,
    unverified: v.unverified,
    ageSeconds,
    failingBackups: v.failing,
  };
}

type JudgedItems = [check: string, level: Level, message: string, anchor: string][];

function drSummary(config: Config, e: DrEventRecord): DrEventSummary {
  const detail = (k: string) => (typeof e.details?.[k] === 'string' ? (e.details[k] as string) : null);
  return {
    kind: e.kind,
    status: e.status,
    startedAt: e.startedAt,
    finishedAt: e.finishedAt ?? null,
    metTargets: e.metTargets ?? null,
    rtoMs: e.rtoMs ?? null,
    rpoMs: e.rpoMs ?? null,
    rtoTargetMs: e.rtoTargetMs,
    rpoTargetMs: e.rpoTargetMs,
    drillId: detail('drillId'),
    reportKey: e.reportKey ?? null,
    htmlKey: detail('htmlKey'),
    error: e.error ?? null,
    run: runLink(config, e.workflowId, e.runId),
  };
}

function judgeDr(config: Config, events: DrEventRecord[], scheduledEveryMs: number | undefined, now: string): { health: DrHealth; items: JudgedItems } {
  const m = config.monitoring;
  const drills = events.filter((e) => e.kind === 'drill' && e.status !== 'running').map((e) => drSummary(config, e));
  const last = drills[0] ?? null;
  const passed = drills.find((d) => d.status === 'done') ?? null;
  const failed = drills.find((d) => d.status === 'failed') ?? null;
  // a drill schedule is what promises drills; without one, the config's interval once drills run
  const everyMs = scheduledEveryMs ?? (drills.length > 0 ? config.dr.drill.intervalMs : null);
  const expected: Expectation = {
    everyMs,
    source: scheduledEveryMs !== undefined ? 'schedule' : everyMs === null ? (config.dr.drill.intervalMs === null ? 'off' : 'none') : 'config',
    warningAfterMs: everyMs === null ? null : everyMs * m.warningFactor,
    criticalAfterMs: everyMs === null ? null : everyMs * m.criticalFactor,
  };
  const ageSeconds = passed ? secondsBetween(passed.finishedAt ?? passed.startedAt, now) : null;
  const items: JudgedItems = [];
  const s = (ms: number | null) => (ms === null ? 'not reached' : durationText(ms / 1000));
  if (last?.status === 'failed') {
    items.push(['drill-failed', 'critical', `The latest DR drill${last.drillId ? ` (${last.drillId})` : ''} failed: ${firstSentence(last.error)}`, 'dr-drills']);
  } else if (last && last.metTargets === false) {
    items.push(['drill-failed', 'warning', `The latest DR drill (${last.drillId}) missed its targets: RTO ${s(last.rtoMs)} (target ${s(last.rtoTargetMs)}), RPO ${s(last.rpoMs)} (target ${s(last.rpoTargetMs)}).`, 'dr-drills']);
  } else if (last) {
    items.push(['drill-failed', 'ok', `The latest DR drill (${last.drillId}) passed: RTO ${s(last.rtoMs)}, RPO ${s(last.rpoMs)} (targets ${s(last.rtoTargetMs)}, ${s(last.rpoTargetMs)}).`, 'dr-drills']);
  }
  if (everyMs !== null) {
    const level = passed ? ageLevel(ageSeconds, expected) : 'warning';
    items.push(['drill-age', level, passed ? `The newest passing DR drill is ${durationText(ageSeconds!)} old (${everyText(expected)}).` : `No DR drill has passed yet (expected ${everyText(expected)}).`, 'dr-drills']);
  }
  return {
    health: {
      level: worst(...items.map(([, l]) => l)),
      expected,
      lastDrill: last,
      lastSuccess: passed ? { at: passed.finishedAt ?? passed.startedAt, run: passed.run } : null,
      lastFailure: failed ? { at: failed.finishedAt ?? failed.startedAt, error: failed.error ?? 'failed', errorType: 'DrillFailed', run: failed.run } : null,
      ageSeconds,
      targets: { rtoSeconds: config.dr.targets.rtoMs / 1000, rpoSeconds: config.dr.targets.rpoMs / 1000 },
      recent: events.slice(0, 10).map((e) => drSummary(config, e)),
    },
    items,
  };
}

async function judgeWal(engine: Engine, full: FullFacts, now: string, memo: HealthMemo | undefined): Promise<{ health: WalHealth; items: JudgedItems } | null> {
  const config = engine.config;
  if (config.fullBackup.provider !== 'postgres') return null;
  const scope = (await scopesOf(engine, memo)).walArchiver;
  const progress = await engine.catalog.getWalArchiveProgress(scope);
  if (!progress && full.count === 0) return null;
  const target = config.monitoring.rpoTargetMs / 1000;
  const live = await withClient(engine.db, config.database.url, (c) =>
    c.query<{ lsn: string; seg: string; active: boolean | null }>(
      `SELECT (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END)::text AS lsn,
              (SELECT setting FROM pg_settings WHERE name = 'wal_segment_size') AS seg,
              (SELECT active FROM pg_replication_slots WHERE slot_name = $1) AS active`,
      [config.fullBackup.slot],
    ),
  );
  const { lsn: serverLsn, seg, active } = live.rows[0];
  const segmentSize = Number(seg);
  const archived = progress?.segment ? segmentStartLsn(progress.segment, segmentSize) + BigInt(progress.segmentBytes ?? segmentSize) : null;
  const lagBytes = archived === null ? null : Number(parseLsn(serverLsn) > archived ? parseLsn(serverLsn) - archived : 0n);
  // 0 while the archive holds everything; else since it last did (before its first catch-up: since it last grew)
  const since = progress?.caughtUpAt ?? progress?.archivedAt ?? null;
  const rpoSeconds = lagBytes === null ? null : lagBytes === 0 ? 0 : since ? Math.max(0, secondsBetween(since, now)) : null;
  const silentSeconds = progress ? secondsBetween(progress.seenAt, now) : null;
  const items: JudgedItems = [];
  let level: Level = 'ok';
  const add = (check: string, l: Level, message: string, anchor: string) => {
    items.push([check, l, message, anchor]);
    level = worst(level, l);
  };
  if (!progress) {
    add('stalled', 'warning', 'The WAL archiver has not reported yet (never started, or it runs a version from before monitoring: it reports once its next slice starts).', 'wal-archiving-stalled');
  } else if (silentSeconds! * 1000 > config.monitoring.walStalledAfterMs) {
    add('stalled', 'critical', `WAL archiving stalled: the archiver last reported ${durationText(silentSeconds!)} ago${active === false ? ' and nothing holds its replication slot' : ''}${progress.error ? ` (its last error: ${firstSentence(progress.error)})` : ''}.`, 'wal-archiving-stalled');
  } else if (progress.error && progress.errorAt && (!progress.archivedAt || progress.errorAt > progress.archivedAt)) {
    add('stalled', 'warning', `The WAL archiver's last slice failed ${durationText(secondsBetween(progress.errorAt, now))} ago and nothing was archived since: ${firstSentence(progress.error)}`, 'wal-archiving-stalled');
  } else {
    add('stalled', 'ok', `The WAL archiver reported ${durationText(silentSeconds!)} ago.`, 'wal-archiving-stalled');
  }
  if (rpoSeconds !== null) {
    const l: Level = rpoSeconds > 2 * target ? 'critical' : rpoSeconds > target ? 'warning' : 'ok';
    add('rpo', l, `Achieved RPO of the WAL archive: ${durationText(rpoSeconds)} (${lagBytes} bytes behind the server; target ${durationText(target)}).`, 'rpo-over-target');
  }
  return {
    health: {
      level,
      scope,
      lastSuccess: progress?.archivedAt ? { at: progress.archivedAt } : null,
      lastFailure: progress?.error && progress.errorAt ? { at: progress.errorAt, error: progress.error, errorType: null } : null,
      seenAt: progress?.seenAt ?? null,
      archivedLsn: archived === null ? null : formatLsn(archived),
      serverLsn,
      lagBytes,
      rpoSeconds,
      targetSeconds: target,
      slotActive: active,
    },
    items,
  };
}

function walUnknown(err: unknown): { health: null; items: JudgedItems } {
  return { health: null, items: [['stalled', 'warning', `The WAL archive's state could not be read: ${firstSentence(err instanceof Error ? err.message : String(err))}`, 'wal-archiving-stalled']] };
}

async function judgeChangeLog(engine: Engine, now: string): Promise<{ health: ChangeLogHealth; items: JudgedItems }> {
  const config = engine.config;
  const state = await changeLogState(engine);
  const target = config.monitoring.changeLogLagTargetMs / 1000;
  const items: JudgedItems = [];
  let level: Level = 'ok';
  const add = (check: string, l: Level, message: string, anchor: string) => {
    items.push([check, l, message, anchor]);
    level = worst(level, l);
  };
  const since = state.caughtUpAt ?? state.startedAt;
  const lagBytes = state.slot.exists ? state.slot.lagBytes : null;
  const rpoSeconds = lagBytes === null ? null : lagBytes === 0 ? 0 : since ? Math.max(0, secondsBetween(since, now)) : null;
  if (!state.startedAt) {
    add('lag', 'warning', 'changeLog.enabled is true but the change log never started: run `tenantsafe changelog start`.', 'change-log-lagging');
  } else if (!state.slot.exists) {
    add('lag', 'critical', `The change log's slot ${state.slot.name} is missing: nothing is captured (the next start records a gap).`, 'change-log-lagging');
  } else if (state.slot.walStatus === 'lost') {
    add('lag', 'critical', `The change log's slot ${state.slot.name} lost WAL it needed (wal_status lost): a gap.`, 'change-log-lagging');
  } else if (rpoSeconds !== null) {
    const l: Level = rpoSeconds > 2 * target ? 'critical' : rpoSeconds > target ? 'warning' : 'ok';
    add('lag', l, `The change log trails the database by ${durationText(rpoSeconds)} (${lagBytes} bytes; target ${durationText(target)}).`, 'change-log-lagging');
  }
  const recent = state.gaps.filter((g) => secondsBetween(g.toTime, now) * 1000 < recentGapMs);
  const newestGap = state.gaps.at(-1);
  if (recent.length > 0) {
    const g = recent.at(-1)!;
    add('gap', 'warning', `The change log has a gap from ${g.fromTime ?? g.fromLsn} to ${g.toTime} (${firstSentence(g.reason)}): tenant point-in-time restores cannot target it.`, 'change-log-gap');
  } else if (state.startedAt) {
    add('gap', 'ok', `No change-log gap in the last 24h (${state.gaps.length} in all).`, 'change-log-gap');
  }
  return {
    health: {
      level,
      stream: state.stream,
      startedAt: state.startedAt,
      lastSuccess: state.caughtUpAt ? { at: state.caughtUpAt } : null,
      lastFailure: newestGap ? { at: newestGap.toTime, error: `gap from ${newestGap.fromLsn} to ${newestGap.toLsn}: ${newestGap.reason}`, errorType: 'ChangeLogGap' } : null,
      lagBytes,
      rpoSeconds,
      targetSeconds: target,
      gaps: state.gaps.length,
      recentGaps: recent.length,
      slot: { name: state.slot.name, exists: state.slot.exists, walStatus: state.slot.walStatus },
    },
    items,
  };
}

function changeLogUnknown(err: unknown): { health: null; items: JudgedItems } {
  return { health: null, items: [['lag', 'warning', `The change log's state could not be read: ${firstSentence(err instanceof Error ? err.message : String(err))}`, 'change-log-lagging']] };
}

function plural(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? '' : 's'}`;
}

/** An error's first sentence, without its HINT (the runbook has what to do). */
function firstSentence(text: string | null | undefined): string {
  const t = (text ?? '').split(' HINT:')[0].trim();
  return t.length > 160 ? `${t.slice(0, 157)}…` : t;
}

/** The one line `tenantsafe check` prints after `TENANTSAFE <LEVEL> - `. */
function summaryOf(items: HealthItem[], d: DatabaseHealth): string {
  const bad = items.filter((i) => i.level !== 'ok');
  const counts = `${d.tenant.tenants} tenants, ${d.tenant.failing} failing, ${d.tenant.stale.warning + d.tenant.stale.critical} stale, ${d.approvals.count} awaiting approval`;
  if (bad.length === 0) return `${d.database}: all ${items.length} checks ok (${counts})`;
  const crit = bad.filter((i) => i.level === 'critical').length;
  const first = bad[0];
  return `${d.database}: ${crit ? `${crit} critical` : ''}${crit && bad.length > crit ? ', ' : ''}${bad.length > crit ? `${bad.length - crit} warning` : ''}: ${first.message.replace(/\.$/, '')}${bad.length > 1 ? ` (+${bad.length - 1} more)` : ''} (${counts})`;
}

/**
 * Several databases' reports as one (docs/fleet.md: the dashboard's overview of a fleet): each
 * database and its items named by its id (two databases of a fleet may share a name), the items
 * critical first, the worst level, a summary line per database.
 */
export function fleetReport(reports: { id: string; report: HealthReport }[]): HealthReport {
  const items = reports.flatMap(({ id, report }) => report.items.map((i) => ({ ...i, id: `${id}/${i.kind}/${i.check}`, database: id })));
  items.sort((a, b) => levelRank(b.level) - levelRank(a.level));
  const [first] = reports;
  return {
    ...first.report,
    generatedAt: reports.map((r) => r.report.generatedAt).sort()[0],
    level: worst(...reports.map((r) => r.report.level)),
    summary: reports.map(({ id, report }) => report.summary.replace(/^[^:]*:/, `${id}:`)).join('; '),
    items,
    databases: reports.flatMap(({ id, report }) => report.databases.map((d) => ({ ...d, database: id }))),
  };
}

/** The health of one tenant, on request: its judgement, newest runs, restore points and pending restores. */
export async function tenantHealth(engine: Engine, tenantId: string, opts: { temporal?: TemporalFacts; limit?: number } = {}): Promise<{
  tenantId: string;
  known: boolean;
  health: TenantHealth | null;
  runs: { status: string; startedAt: string; finishedAt: string | null; backupId: string | null; error: string | null; errorType: string | null; run: RunLink | null }[];
  restorePoints: { backupId: string; snapshotAt: string; rows: number; bytes: number; verified: boolean | null }[];
  pendingApprovals: PendingApprovalFacts[];
}> {
  const config = engine.config;
  const db = databaseName(config.database.url);
  const judgement = tenantJudgement(config, expectationsOf(config, opts.temporal?.schedules));
  const limit = opts.limit ?? 20;
  return engine.catalog.read(async (c, s) => {
    const [row] = await readTenantRows(c, s, db, judgement, [tenantId]);
    const detail = await readTenantDetail(c, s, db, tenantId, limit);
    const pending = (await readPendingApprovals(c, s, config.restore.approvalTimeoutMs + 86_400_000, 1000)).oldest.filter((p) => p.tenantId === tenantId);
    return {
      tenantId,
      known: !!row || detail.runs.length > 0,
      health: row ? tenantHealthOf(config, row) : null,
      runs: detail.runs.map((r) => ({ status: r.status, startedAt: r.startedAt, finishedAt: r.finishedAt, backupId: r.backupId, error: r.error, errorType: r.errorType, run: runLink(config, r.workflowId, r.runId) })),
      restorePoints: detail.restorePoints,
      pendingApprovals: pending,
    };
  });
}

/** A page of tenants for a list that pages on the server (the dashboard): worst first or by id, filtered by an id prefix. */
export async function tenantHealthPage(
  engine: Engine,
  page: { prefix?: string; offset?: number; limit?: number; order?: 'worst' | 'tenant'; temporal?: TemporalFacts },
): Promise<{ total: number; offset: number; tenants: TenantHealth[] }> {
  const config = engine.config;
  const judgement = tenantJudgement(config, expectationsOf(config, page.temporal?.schedules));
  const offset = Math.max(0, page.offset ?? 0);
  const limit = Math.min(500, Math.max(1, page.limit ?? 50));
  const r = await engine.catalog.read((c, s) => readTenantPage(c, s, databaseName(config.database.url), judgement, { prefix: page.prefix, offset, limit, order: page.order ?? 'worst' }));
  return { total: r.total, offset, tenants: r.rows.map((x) => tenantHealthOf(config, x)) };
}

/**
 * With storage.secondary: whether each location missed changes (lib/storage/replicated.ts keeps a
 * marker per missed change in the other location). A primary that missed writes failed and the
 * backups since live in one place only: critical; a secondary behind: warning.
 */
async function judgeStorage(engine: Engine): Promise<JudgedItems> {
  const store = engine.store;
  if (!(store instanceof ReplicatedStore)) return [];
  const items: JudgedItems = [];
  for (const [location, bad] of [['primary', 'critical'], ['secondary', 'warning']] as const) {
    const check = `${location}-behind`;
    const uri = store.location(location).uri;
    try {
      const missed = await store.lagMarkers(location);
      if (missed.length === 0) items.push([check, 'ok', `The ${location} storage ${uri} holds every change.`, 'storage-behind']);
      else items.push([check, bad, `The ${location} storage ${uri} missed ${plural(missed.length, 'change')} since ${lagMarkerTime(missed[0].key)}: run \`tenantsafe storage sync\`.`, 'storage-behind']);
    } catch (err) {
      // the markers of what this location missed are kept in the other one
      const other = location === 'primary' ? 'secondary' : 'primary';
      items.push([check, bad, `Cannot tell whether the ${location} storage ${uri} is behind: the ${other} cannot be listed (${firstSentence((err as Error).message)}).`, 'storage-behind']);
    }
  }
  return items;
}
