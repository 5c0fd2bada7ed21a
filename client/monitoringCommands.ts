// CLI commands over the health model (lib/monitoring/health.ts): `check`, one line and an exit
// code for a monitoring system (Nagios-style, like `barman check --nagios`), and `status`, the
// overview as text, failing items first.
import type { Command } from 'commander';
import type { Config } from '../lib/config';
import type { Engine } from '../lib/engine';
import type { DatabaseHealth, HealthItem, HealthReport, Level, TemporalFacts } from '../lib/monitoring/health';
import type { tenantHealth } from '../lib/monitoring/health';
import type { TenantsafeClient } from './client';
import type { CliCommand } from './cliCommand';
import { config as configOf, globals, positiveInt, sizeText } from './commandHelpers';
import { emit, table } from './output';

// Required on use: they load the change log's parser and the Temporal SDK (see cli.ts).
const health = () => require('../lib/monitoring/health') as typeof import('../lib/monitoring/health');
const clientHealth = () => require('./health') as typeof import('./health');

/** Exit codes of `check`: Nagios' 0 OK, 1 WARNING, 2 CRITICAL. */
const checkExitCode: Record<Level, number> = { ok: 0, warning: 1, critical: 2 };

interface Options {
  temporal?: boolean;
}

/** Temporal's facts, or why there are none (unreachable counts as critical in the report). */
async function temporalFactsOf(cfg: Config): Promise<TemporalFacts> {
  const { TenantsafeClient: Client } = require('./client') as typeof import('./client');
  let client: TenantsafeClient;
  try {
    client = await Client.connect(cfg.temporal);
  } catch (err) {
    const { address, namespace, taskQueue } = cfg.temporal;
    return { address, namespace, taskQueue, reachable: false, error: err instanceof Error ? err.message : String(err) };
  }
  try {
    return await clientHealth().temporalFacts(client.temporal, cfg);
  } finally {
    await client.close();
  }
}

async function withHealthEngine<T>(cmd: Command, fn: (engine: Engine, cfg: Config) => Promise<T>): Promise<T> {
  const cfg = configOf(cmd);
  const { Engine } = require('../lib/engine') as typeof import('../lib/engine');
  const engine = new Engine(cfg);
  try {
    return await fn(engine, cfg);
  } finally {
    await engine.close();
  }
}

async function reportOf(cmd: Command, opts: Options & { tenants?: number }): Promise<HealthReport> {
  return withHealthEngine(cmd, async (engine, cfg) => {
    const temporal = opts.temporal === false ? undefined : await temporalFactsOf(cfg);
    return health().computeHealth(engine, { ...(temporal ? { temporal } : {}), ...(opts.tenants ? { topTenants: opts.tenants } : {}) });
  });
}

/** Nagios performance data: label=value[unit];warn;crit */
function perfData(r: HealthReport): string {
  const d = r.databases[0];
  const parts = [
    `tenants=${d.tenant.tenants}`,
    `tenants_failing=${d.tenant.failing};;1`,
    `tenants_stale=${d.tenant.stale.warning + d.tenant.stale.critical};1;;`,
    `restore_points=${d.tenant.restorePoints + d.full.restorePoints}`,
    `verification_failed=${d.verification.failing};;1`,
    `pending_approvals=${d.approvals.count}`,
  ];
  if (d.wal?.rpoSeconds != null) parts.push(`rpo_wal=${d.wal.rpoSeconds.toFixed(1)}s;${d.wal.targetSeconds};${2 * d.wal.targetSeconds}`);
  if (d.changeLog?.rpoSeconds != null) parts.push(`rpo_changelog=${d.changeLog.rpoSeconds.toFixed(1)}s;${d.changeLog.targetSeconds};${2 * d.changeLog.targetSeconds}`);
  return parts.join(' ');
}

export function checkLine(r: HealthReport): string {
  return `TENANTSAFE ${r.level.toUpperCase()} - ${r.summary} | ${perfData(r)}`;
}

function itemLine(i: HealthItem): string {
  const run = i.run ? `\n${' '.repeat(26)}run: ${i.run.url ?? `${i.run.workflowId} ${i.run.runId}`}` : '';
  const help = i.level === 'ok' ? '' : `\n${' '.repeat(26)}runbook: ${i.runbook}`;
  return `${i.level.toUpperCase().padEnd(9)} ${health().healthKindNames[i.kind].padEnd(15)} ${i.message}${run}${help}`;
}

function when(at: string | null | undefined, now: string, durationText: (s: number) => string): string {
  return at ? `${at} (${durationText((Date.parse(now) - Date.parse(at)) / 1000)} ago)` : '-';
}

/** The overview as text: failing items first, then a table by kind, the worst tenants, pending approvals. */
export function statusText(r: HealthReport, durationText: (s: number) => string): string {
  const lines: string[] = [];
  for (const d of r.databases) lines.push(`tenantsafe status: ${d.database} at ${r.generatedAt}: ${r.level.toUpperCase()}`, '');
  lines.push(...r.items.map(itemLine), '');
  for (const d of r.databases) lines.push(...databaseText(d, r.generatedAt, durationText));
  return lines.join('\n').trimEnd();
}

function databaseText(d: DatabaseHealth, now: string, durationText: (s: number) => string): string[] {
  const every = (ms: number | null | undefined) => (ms == null ? 'not judged' : `every ${durationText(ms / 1000)}`);
  const kinds = [
    { kind: 'tenant backups', level: d.tenant.level, lastSuccess: when(d.tenant.lastSuccess?.at, now, durationText), lastFailure: when(d.tenant.lastFailure?.at, now, durationText), schedule: every(d.tenant.expected.everyMs) },
    { kind: 'full backups', level: d.full.level, lastSuccess: when(d.full.lastSuccess?.at, now, durationText), lastFailure: when(d.full.lastFailure?.at, now, durationText), schedule: every(d.full.expected.everyMs) },
    { kind: 'verification', level: d.verification.level, lastSuccess: when(d.verification.lastSuccess?.at, now, durationText), lastFailure: when(d.verification.lastFailure?.at, now, durationText), schedule: every(d.verification.expected.everyMs) },
    ...(d.wal ? [{ kind: 'WAL archive', level: d.wal.level, lastSuccess: when(d.wal.lastSuccess?.at, now, durationText), lastFailure: when(d.wal.lastFailure?.at, now, durationText), schedule: `RPO ${d.wal.rpoSeconds === null ? '?' : durationText(d.wal.rpoSeconds)} (target ${durationText(d.wal.targetSeconds)})` }] : []),
    ...(d.dr.lastDrill || d.dr.expected.everyMs !== null ? [{ kind: 'DR drills', level: d.dr.level, lastSuccess: when(d.dr.lastSuccess?.at, now, durationText), lastFailure: when(d.dr.lastFailure?.at, now, durationText), schedule: `${every(d.dr.expected.everyMs)}; RTO ${d.dr.lastDrill?.rtoMs == null ? '?' : durationText(d.dr.lastDrill.rtoMs / 1000)} (target ${durationText(d.dr.targets.rtoSeconds)})` }] : []),
    ...(d.changeLog ? [{ kind: 'change log', level: d.changeLog.level, lastSuccess: when(d.changeLog.lastSuccess?.at, now, durationText), lastFailure: when(d.changeLog.lastFailure?.at, now, durationText), schedule: `lag ${d.changeLog.rpoSeconds === null ? '?' : durationText(d.changeLog.rpoSeconds)} (target ${durationText(d.changeLog.targetSeconds)})` }] : []),
  ];
  const t = d.tenant;
  const out = [table(kinds, ['kind', 'level', 'lastSuccess', 'lastFailure', 'schedule']), ''];
  out.push(
    `Tenants: ${t.tenants} (${t.byLevel.ok} ok, ${t.byLevel.warning} warning, ${t.byLevel.critical} critical); ${t.failing} failing, ${t.stale.warning + t.stale.critical} older than their schedule allows, ${t.belowRetention} below retention; ${t.restorePoints} restore points${t.oldestRestorableAt ? `, every tenant restorable back to ${t.oldestRestorableAt}` : ''}.`,
  );
  if (t.worst.length > 0) {
    out.push(
      '',
      `Tenants needing attention (worst ${t.worst.length}${t.truncated ? ', more not listed' : ''}):`,
      table(
        t.worst.map((x) => ({
          tenant: x.tenantId,
          level: x.level,
          lastBackup: x.lastSuccessAt ?? 'never',
          age: x.ageSeconds === null ? '-' : durationText(x.ageSeconds),
          points: `${x.restorePoints}/${x.promisedRestorePoints}`,
          lastFailure: x.failing && x.lastFailure ? `${x.lastFailure.errorType ?? 'error'} at ${x.lastFailure.at}` : '-',
        })),
        ['tenant', 'level', 'lastBackup', 'age', 'points', 'lastFailure'],
      ),
    );
  }
  if (d.approvals.count > 0) {
    out.push(
      '',
      `Restores awaiting approval (${d.approvals.count}):`,
      table(
        d.approvals.oldest.map((a) => ({ restore: a.restoreId, tenant: a.tenantId, requestedBy: a.requestedBy, waiting: durationText(a.waitSeconds), level: a.level })),
        ['restore', 'tenant', 'requestedBy', 'waiting', 'level'],
      ),
    );
  }
  if (d.verification.failingBackups.length > 0) {
    out.push('', 'Backups that failed verification:', table(d.verification.failingBackups.map((b) => ({ backup: b.backupId, kind: b.kind, at: b.at, report: b.reportKey ?? '-' })), ['backup', 'kind', 'at', 'report']));
  }
  return out;
}

function tenantText(t: Awaited<ReturnType<typeof tenantHealth>>, durationText: (s: number) => string): string {
  if (!t.known) return `Tenant ${t.tenantId}: the catalog has no backup and no recent backup attempt of it.`;
  const h = t.health;
  const lines = [
    h
      ? `Tenant ${t.tenantId}: ${h.level.toUpperCase()}; newest backup ${h.lastSuccessAt ?? 'never'}${h.ageSeconds === null ? '' : ` (${durationText(h.ageSeconds)} old, ${h.everyMs === null ? 'not judged' : `every ${durationText(h.everyMs / 1000)}`})`}; ${h.restorePoints} restore point${h.restorePoints === 1 ? '' : 's'} (the policy promises ${h.promisedRestorePoints} by now) back to ${h.oldestRestorableAt ?? '-'}${h.failing ? `; FAILING: ${h.lastFailure?.errorType ?? 'error'}: ${h.lastFailure?.error}` : ''}`
      : `Tenant ${t.tenantId}: no restore point.`,
    '',
    'Recent backup runs:',
    table(t.runs.map((r) => ({ started: r.startedAt, status: r.status, backup: r.backupId ?? '-', error: r.error ? `${r.errorType ?? 'error'}: ${r.error.split(' HINT:')[0]}` : '-', run: r.run?.url ?? r.run?.runId ?? '-' })), ['started', 'status', 'backup', 'error', 'run']),
    '',
    'Restore points (newest first):',
    table(t.restorePoints.map((p) => ({ backup: p.backupId, snapshotAt: p.snapshotAt, rows: p.rows, size: sizeText(p.bytes), verified: p.verified === null ? '-' : p.verified ? 'ok' : 'FAILED' })), ['backup', 'snapshotAt', 'rows', 'size', 'verified']),
  ];
  if (t.pendingApprovals.length > 0) lines.push('', `Awaiting approval: ${t.pendingApprovals.map((a) => `${a.restoreId} (by ${a.requestedBy}, ${durationText(a.waitSeconds)})`).join(', ')}`);
  return lines.join('\n');
}

/** check and doctor answer as monitoring plugins do (Nagios): 2 is critical, not bad input. */
const pluginExitCodes = { 0: 'ok', 1: 'warning', 2: 'critical (also when the config or the catalog cannot be read)' };

export function registerMonitoringCommands(program: CliCommand): void {
  program
    .command('check')
    .description('one line for a monitoring system: TENANTSAFE OK|WARNING|CRITICAL - ...; exit 0 ok, 1 warning, 2 critical')
    .option('--no-temporal', 'do not ask Temporal (schedules, workers): judge by config alone')
    .example('tenantsafe check', 'tenantsafe check --no-temporal --json')
    .exits(pluginExitCodes)
    .action(async (opts: Options, cmd: Command) => {
      const json = !!globals(cmd).json;
      let report: HealthReport;
      try {
        report = await reportOf(cmd, opts);
      } catch (err) {
        // the catalog or the config cannot be read: that is critical, said on one line like the rest
        const message = (err instanceof Error ? err.message : String(err)).split('\n').map((l) => l.trim()).filter(Boolean).join(' ');
        emit({ json }, { status: 'critical', exitCode: 2, summary: `cannot judge: ${message}`, problems: [] }, () => `TENANTSAFE CRITICAL - cannot judge: ${message}`);
        process.exitCode = 2;
        return;
      }
      const problems = report.items.filter((i) => i.level !== 'ok');
      const counts = { critical: problems.filter((i) => i.level === 'critical').length, warning: problems.filter((i) => i.level === 'warning').length, ok: report.items.length - problems.length };
      emit({ json }, { status: report.level, exitCode: checkExitCode[report.level], summary: report.summary, generatedAt: report.generatedAt, counts, problems }, () => checkLine(report));
      process.exitCode = checkExitCode[report.level];
    });

  program
    .command('doctor')
    .description('preflight checks of this deployment, each on its line with a HINT when it fails: config, database and role privileges for the features configured, server settings, PostgreSQL tools, storage, scratch disk, clock, Temporal, search attributes, workers; exit 0 ok, 1 warning, 2 critical')
    .option('--no-temporal', 'check the database, tools and storage only')
    .example('tenantsafe doctor', 'tenantsafe doctor --no-temporal --json')
    .exits(pluginExitCodes)
    .action(async (opts: Options, cmd: Command) => {
      const { engineChecks, failedLine, verdict } = require('../lib/doctor') as typeof import('../lib/doctor');
      let lines: import('../lib/doctor').DoctorLine[];
      try {
        const cfg = configOf(cmd);
        const { Engine } = require('../lib/engine') as typeof import('../lib/engine');
        const engine = new Engine(cfg);
        try {
          lines = await engineChecks(engine);
        } finally {
          await engine.close();
        }
        if (opts.temporal !== false) lines.push(...(await (require('./doctor') as typeof import('./doctor')).temporalChecks(cfg)));
      } catch (err) {
        lines = [failedLine('config', err, 'Fix the config.')];
      }
      const status = verdict(lines);
      const label = { ok: 'OK', warning: 'WARNING', critical: 'CRITICAL' } as const;
      emit(globals(cmd), { status, exitCode: checkExitCode[status], checks: lines }, () =>
        [
          ...lines.flatMap((l) => [`${label[l.status].padEnd(9)} ${l.check}: ${l.detail}`, ...(l.hint ? [`${' '.repeat(10)}HINT: ${l.hint}`] : [])]),
          `tenantsafe doctor: ${status === 'ok' ? 'all checks passed' : `${lines.filter((l) => l.status === 'critical').length} critical, ${lines.filter((l) => l.status === 'warning').length} warning(s)`}`,
        ].join('\n'),
      );
      process.exitCode = checkExitCode[status];
    });

  program
    .command('status')
    .description('the health overview: failing items first, each kind, the worst tenants, pending approvals; --tenant for one tenant')
    .option('--tenant <tenantId>', 'one tenant: its runs, restore points and pending restores')
    .option('--tenants <n>', 'list the n worst tenants (default monitoring.topTenants)', positiveInt('--tenants'))
    .option('--no-temporal', 'do not ask Temporal (schedules, workers): judge by config alone')
    .example('tenantsafe status', 'tenantsafe status --tenant acme')
    .exits({ 0: 'it could judge (whatever it found: `check` gives a monitoring system an exit code)' })
    .action(async (opts: Options & { tenant?: string; tenants?: number }, cmd: Command) => {
      const { durationText } = health();
      if (opts.tenant) {
        const tenantId = opts.tenant;
        const out = await withHealthEngine(cmd, async (engine, cfg) => {
          const temporal = opts.temporal === false ? undefined : await temporalFactsOf(cfg);
          return health().tenantHealth(engine, tenantId, temporal ? { temporal } : {});
        });
        emit(globals(cmd), out, () => tenantText(out, durationText));
        return;
      }
      const report = await reportOf(cmd, opts);
      emit(globals(cmd), report, () => statusText(report, durationText));
    });
}
