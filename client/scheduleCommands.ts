// CLI commands for Temporal Schedules of tenant backups: schedule tenant-backups|list. The daily
// schedules of whole-database work join the same `schedule` command from databaseCommands.ts.
import type { Command } from 'commander';
import { parseDuration } from '../lib/duration';
import { ErrorType, TenantsafeError } from '../lib/errors';
import { globals, positiveInt, withClientOf } from './commandHelpers';
import { emit, table } from './output';
import { listSchedules, removeTenantBackupSchedule, scheduleTenantBackups } from './schedules';

/** `schedule`; returns it for the whole-database commands to add their daily schedules to. */
export function registerScheduleCommands(program: Command): { schedule: Command } {
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
        if (opts.remove) return removeTenantBackupSchedule(c.temporal, cfg.temporal.taskQueue, opts.tenant);
        if (!opts.every) throw new TenantsafeError(ErrorType.BadInput, '--every is required.', 'Pass --every 24h (or --remove).');
        return scheduleTenantBackups(c.temporal, cfg.temporal.taskQueue, { everyMs: parseDuration(opts.every, '--every'), tenantId: opts.tenant, concurrency: opts.concurrency });
      });
      emit(globals(cmd), out, () => ('removed' in out ? `Removed ${out.removed}` : `Schedule ${out.scheduleId}: ${out.workflowType} every ${out.every}, next run ${out.nextRunAt}`));
    });
  schedule
    .command('list')
    .description('tenantsafe schedules')
    .action(async (_opts: unknown, cmd: Command) => {
      const out = await withClientOf(cmd, (c) => listSchedules(c.temporal));
      emit(globals(cmd), out, () => table(out as unknown as Record<string, unknown>[], ['scheduleId', 'workflowType', 'every', 'paused', 'nextRunAt']));
    });
  return { schedule };
}
