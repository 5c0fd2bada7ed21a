// CLI commands for Temporal Schedules: schedule tenant-backups|list, and the daily schedules of
// whole-database work (full-backups, retention, verification).
import type { Command } from 'commander';
import { databaseName } from '../lib/config';
import { parseDuration } from '../lib/duration';
import { ErrorType, TenantsafeError } from '../lib/errors';
import { globals, positiveInt, withClientOf } from './commandHelpers';
import { dailyDefaults, type DailyScheduleKind } from './dailySchedules';
import { emit, table } from './output';
import type { ScheduleSummary } from './schedules';

// Required on use: it loads the Temporal SDK (see cli.ts).
const schedules = () => require('./schedules') as typeof import('./schedules');

export function registerScheduleCommands(program: Command): void {
  const schedule = program.command('schedule').description('Temporal Schedules');
  schedule
    .command('tenant-backups')
    .description('back up all tenants every <duration>; with --tenant, give one tenant its own interval')
    .option('--every <duration>', 'interval, e.g. 24h')
    .option('--tenant <tenantId>', 'a per-tenant override')
    .option('--concurrency <n>', 'tenant backups at once (all-tenants schedule)', positiveInt('--concurrency'))
    .option('--remove', 'delete the schedule instead')
    .action(async (opts: { every?: string; tenant?: string; concurrency?: number; remove?: boolean }, cmd: Command) => {
      const out = await withClientOf(cmd, async (c, cfg) => {
        if (opts.remove) return schedules().removeTenantBackupSchedule(c.temporal, cfg.temporal.taskQueue, opts.tenant);
        if (!opts.every) throw new TenantsafeError(ErrorType.BadInput, '--every is required.', 'Pass --every 24h (or --remove).');
        return schedules().scheduleTenantBackups(c.temporal, cfg.temporal.taskQueue, { everyMs: parseDuration(opts.every, '--every'), tenantId: opts.tenant, concurrency: opts.concurrency });
      });
      emit(globals(cmd), out, () => ('removed' in out ? `Removed ${out.removed}` : `Schedule ${out.scheduleId}: ${out.workflowType} every ${out.every}, next run ${out.nextRunAt}`));
    });
  schedule
    .command('list')
    .description('tenantsafe schedules')
    .action(async (_opts: unknown, cmd: Command) => {
      const out = await withClientOf(cmd, (c) => schedules().listSchedules(c.temporal));
      emit(globals(cmd), out, () => table(out as unknown as Record<string, unknown>[], ['scheduleId', 'workflowType', 'every', 'paused', 'nextRunAt']));
    });
  schedule
    .command('drills')
    .description('run a DR drill every <duration> (default: dr.drill.interval of the config, weekly)')
    .option('--every <duration>', 'interval, e.g. 7d')
    .option('--remove', 'delete the schedule instead')
    .action(async (opts: { every?: string; remove?: boolean }, cmd: Command) => {
      const out = await withClientOf<ScheduleSummary | { removed: string }>(cmd, async (c, cfg) => {
        const everyMs = opts.every ? parseDuration(opts.every, '--every') : cfg.dr.drill.intervalMs;
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
    schedule
      .command(kind)
      .description(`run ${kind === 'full-backups' ? 'a full backup' : kind === 'retention' ? 'retention' : 'verification of recent backups'} daily (UTC)`)
      .option('--at <HH:MM>', 'time of day, UTC', dailyDefaults[kind])
      .option('--catchup-window <duration>', 'how late a run missed during an outage may still start', '6h')
      .option('--dry-run', 'retention: only report')
      .option('--remove', 'delete the schedule instead')
      .action(async (opts: { at: string; catchupWindow: string; dryRun?: boolean; remove?: boolean }, cmd: Command) => {
        const catchupWindowMs = parseDuration(opts.catchupWindow, '--catchup-window');
        const out = await withClientOf<ScheduleSummary | { removed: string }>(cmd, (c, cfg) =>
          opts.remove ? schedules().removeDailySchedule(c.temporal, kind) : schedules().scheduleDaily(c.temporal, cfg.temporal.taskQueue, kind, { at: opts.at, catchupWindowMs, dryRun: opts.dryRun }),
        );
        emit(globals(cmd), out, () => ('removed' in out ? `Removed ${out.removed}` : `Schedule ${out.scheduleId}: ${out.workflowType} daily at ${out.at}, next run ${out.nextRunAt}`));
      });
  }
}
