// CLI commands for Temporal Schedules: schedule tenant-backups|list, and the daily schedules of
// whole-database work (full-backups, retention, verification) at a time of day, --time HH:MM
// (once --at, which everywhere else is an ISO-8601 time: still taken, hidden and deprecated).
import { Option, type Command } from 'commander';
import { databaseName } from '../lib/config';
import { parseDuration } from '../lib/duration';
import { ErrorType, TenantsafeError } from '../lib/errors';
import type { CliCommand } from './cliCommand';
import { config, globals, intervalOption, nonEmpty, positiveInt, withClientOf } from './commandHelpers';
import { dailyDefaults, parseTimeOfDay, type DailyScheduleKind } from './dailySchedules';
import { emit, table } from './output';
import type { ScheduleSummary } from './schedules';

// Required on use: it loads the Temporal SDK (see cli.ts).
const schedules = () => require('./schedules') as typeof import('./schedules');

/** The time of day of a daily schedule: --time, or its old spelling --at (a warning on stderr); checked before Temporal is asked. */
function timeOfDay(cmd: Command, kind: DailyScheduleKind, opts: { time: string; at?: string }): string {
  if (opts.at === undefined) {
    parseTimeOfDay(opts.time, kind);
    return opts.time;
  }
  if (cmd.getOptionValueSource('time') === 'cli') throw new TenantsafeError(ErrorType.BadInput, 'Give the time of day once: --at is the old spelling of --time.', `Pass --time ${opts.time} alone.`);
  parseTimeOfDay(opts.at, kind, '--at');
  process.stderr.write(`tenantsafe: warning: \`schedule ${kind} --at\` is deprecated (--at is an ISO-8601 time everywhere else): write --time ${opts.at}\n`);
  return opts.at;
}

export function registerScheduleCommands(program: CliCommand): void {
  const schedule = program.command('schedule').description('Temporal Schedules');
  schedule
    .command('tenant-backups')
    .description('back up all tenants every <duration>; with --tenant, give one tenant its own interval')
    .option('--every <duration>', 'interval, e.g. 24h (required unless --remove)')
    .option('--tenant <tenantId>', 'a per-tenant override')
    .option('--concurrency <n>', 'tenant backups at once (all-tenants schedule)', positiveInt('--concurrency'))
    .option('--remove', 'delete the schedule instead')
    .example('tenantsafe schedule tenant-backups --every 24h --concurrency 4', 'tenantsafe schedule tenant-backups --tenant acme --every 6h', 'tenantsafe schedule tenant-backups --tenant acme --remove')
    .action(async (opts: { every?: string; tenant?: string; concurrency?: number; remove?: boolean }, cmd: Command) => {
      if (!opts.remove && !opts.every) throw new TenantsafeError(ErrorType.BadInput, '--every is required.', 'Pass --every 24h (or --remove).');
      if (opts.tenant !== undefined) nonEmpty(opts.tenant, '--tenant', 'Pass --tenant <tenantId>, or leave it out for the all-tenants schedule.');
      const everyMs = opts.every && !opts.remove ? intervalOption(opts.every, '--every') : 0;
      const out = await withClientOf(cmd, async (c, cfg) => {
        if (opts.remove) return schedules().removeTenantBackupSchedule(c.temporal, cfg.temporal.taskQueue, opts.tenant, cfg.databaseId);
        return schedules().scheduleTenantBackups(c.temporal, cfg.temporal.taskQueue, { everyMs, tenantId: opts.tenant, concurrency: opts.concurrency, database: cfg.databaseId });
      });
      emit(globals(cmd), out, () => ('removed' in out ? `Removed ${out.removed}` : `Schedule ${out.scheduleId}: ${out.workflowType} every ${out.every}, next run ${out.nextRunAt}`));
    });
  schedule
    .command('list')
    .description('tenantsafe\'s schedules, by id (a schedule is not an event: there is no newer or older); with several databases, every one\'s (a database column) unless --database names one')
    .example('tenantsafe schedule list', 'tenantsafe schedule list --database eu')
    .action(async (_opts: unknown, cmd: Command) => {
      const only = globals(cmd).database === undefined ? undefined : config(cmd).databaseId;
      const all = await withClientOf(cmd, (c) => schedules().listSchedules(c.temporal), { anyDatabase: true });
      const out = only === undefined ? all : all.filter((s) => s.database === only);
      emit(globals(cmd), out, () => table(out as unknown as Record<string, unknown>[], [...(out.some((s) => s.database) ? ['database'] : []), 'scheduleId', 'workflowType', 'every', 'paused', 'nextRunAt']));
    });
  schedule
    .command('drills')
    .disasterRecovery()
    .description('run a DR drill every <duration> (default: dr.drill.interval of the config, weekly)')
    .option('--every <duration>', 'interval, e.g. 7d')
    .option('--remove', 'delete the schedule instead')
    .example('tenantsafe schedule drills --every 7d', 'tenantsafe schedule drills --remove')
    .action(async (opts: { every?: string; remove?: boolean }, cmd: Command) => {
      const every = opts.every ? intervalOption(opts.every, '--every') : undefined;
      const out = await withClientOf<ScheduleSummary | { removed: string }>(cmd, async (c, cfg) => {
        const everyMs = every ?? cfg.dr.drill.intervalMs;
        if (opts.remove) {
          if (!(await schedules().removeDrillSchedule(c.temporal))) throw new TenantsafeError(ErrorType.BadInput, 'There is no drill schedule.', 'List schedules with `tenantsafe schedule list`.');
          return { removed: 'schedule/dr-drills' };
        }
        if (everyMs === null) throw new TenantsafeError(ErrorType.BadInput, 'dr.drill.interval is off in the config and no --every was given.', 'Pass --every 7d, or set dr.drill.interval.');
        return schedules().scheduleDrills(c.temporal, cfg.temporal.taskQueue, databaseName(cfg.database.url), everyMs);
      });
      emit(globals(cmd), out, () => ('removed' in out ? `Removed ${out.removed}` : `Schedule ${out.scheduleId}: ${out.workflowType} every ${out.every}, next run ${out.nextRunAt}`));
    });
  for (const kind of ['full-backups', 'retention', 'verification'] as DailyScheduleKind[]) {
    const daily = schedule
      .command(kind)
      .description(`run ${kind === 'full-backups' ? 'a full backup' : kind === 'retention' ? 'retention' : 'verification of recent backups'} daily (UTC)`)
      .option('--time <HH:MM>', 'time of day, UTC (the old spelling --at HH:MM still works, deprecated)', dailyDefaults[kind])
      .addOption(new Option('--at <HH:MM>', 'deprecated: --time').hideHelp())
      .option('--catchup-window <duration>', 'how late a run missed during an outage may still start', '6h');
    if (kind === 'retention') daily.option('--dry-run', 'each run only reports what it would delete');
    daily
      .option('--remove', 'delete the schedule instead')
      .example(`tenantsafe schedule ${kind} --time ${dailyDefaults[kind]}`, `tenantsafe schedule ${kind} --remove`)
      .action(async (opts: { time: string; at?: string; catchupWindow: string; dryRun?: boolean; remove?: boolean }, cmd: Command) => {
        const catchupWindowMs = parseDuration(opts.catchupWindow, '--catchup-window');
        const time = opts.remove ? opts.time : timeOfDay(cmd, kind, opts);
        const out = await withClientOf<ScheduleSummary | { removed: string }>(cmd, (c, cfg) =>
          opts.remove ? schedules().removeDailySchedule(c.temporal, kind, cfg.databaseId) : schedules().scheduleDaily(c.temporal, cfg.temporal.taskQueue, kind, { time, catchupWindowMs, dryRun: opts.dryRun, database: cfg.databaseId }),
        );
        emit(globals(cmd), out, () => ('removed' in out ? `Removed ${out.removed}` : `Schedule ${out.scheduleId}: ${out.workflowType} daily at ${out.at}, next run ${out.nextRunAt}`));
      });
  }
}
