// Temporal Schedules for tenant backups (never cron). One schedule backs up all tenants;
// a tenant with its own interval gets its own schedule and is left out of the all-tenants one.
// A tenant's schedule starts its tenantBackup run marked `scheduled`: runs whose schedules fall
// due together (the same interval fires at the same instants) are backed up in one batch by the
// database's tenantBackupBatcher, each run still ending with its tenant's result. A schedule
// created before has no mark and starts backups of their own until it is written again.
//
// Overlap policy SKIP: if the previous run is still going when the next is due, the next is
// skipped rather than queued; queued runs would pile up behind a slow one and then start
// back to back. Catch-up window = the interval: after an outage, one missed run is made up.
import { ScheduleAlreadyRunning, ScheduleOverlapPolicy, type Client, type ScheduleDescription, type ScheduleOptionsAction, type ScheduleSpec } from '@temporalio/client';
import { ErrorType, TenantsafeError } from '../lib/errors';
import { databaseScheduleIds, databaseScoped, databaseWorkflowIds, drScheduleIds, drWorkflowIds, scheduleIds, workflowIds, type TenantBackupInput, type TenantBackupsAllInput } from '../workflows/messages';
import { parseTimeOfDay, type DailyScheduleKind } from './dailySchedules';

export interface ScheduleSummary {
  scheduleId: string;
  workflowType: string;
  every: string;
  tenantId: string | null;
  /** with several databases: the one it serves */
  database?: string;
  paused: boolean;
  /** daily schedules: the time of day, UTC */
  at?: string;
  /** a tenant's own schedule: whether its runs join the batch of the tenants falling due with it (false: written before batching, each run a backup of its own) */
  batched?: boolean;
  nextRunAt: string | null;
  lastRunAt: string | null;
}

export interface TenantBackupScheduleRequest {
  everyMs: number;
  /** with several databases: the one the schedule backs up (its id and its runs' ids name it) */
  database?: string;
  tenantId?: string;
  concurrency?: number;
}

function msToDurationText(ms: number): string {
  return `${Math.round(ms / 1000)}s`;
}

async function upsertSchedule(client: Client, scheduleId: string, everyMs: number, action: ScheduleOptionsAction, memo: Record<string, unknown>, calendar?: { spec: ScheduleSpec; catchupWindowMs: number }): Promise<void> {
  const spec = calendar?.spec ?? { intervals: [{ every: everyMs }] };
  const policies = { overlap: ScheduleOverlapPolicy.SKIP, catchupWindow: calendar?.catchupWindowMs ?? everyMs };
  try {
    await client.schedule.create({ scheduleId, spec, action, policies, memo });
  } catch (err) {
    if (!(err instanceof ScheduleAlreadyRunning)) throw err;
    await client.schedule.getHandle(scheduleId).update((prev) => ({ ...prev, spec, action, policies }));
  }
}

async function describeOrNull(client: Client, scheduleId: string): Promise<ScheduleDescription | null> {
  try {
    return await client.schedule.getHandle(scheduleId).describe();
  } catch (err) {
    if ((err as Error).name === 'ScheduleNotFoundError') return null;
    throw err;
  }
}

/** A per-tenant schedule just created or deleted: schedule listing (visibility) may not show it yet. */
type ScheduleChange = { added?: string; removed?: string };

/** Tenants of the database with their own schedule, read from the schedules themselves (Temporal holds the state). */
async function tenantsWithOwnSchedule(client: Client, database: string | undefined, change: ScheduleChange): Promise<string[]> {
  const out = new Set<string>();
  for await (const s of client.schedule.list()) {
    const tenantId = s.memo?.tenantId;
    if (s.scheduleId.startsWith(databaseScoped(scheduleIds.tenantBackup(''), database)) && typeof tenantId === 'string') out.add(tenantId);
  }
  if (change.added) out.add(change.added);
  if (change.removed) out.delete(change.removed);
  return [...out].sort();
}

async function upsertAllTenantsSchedule(client: Client, taskQueue: string, everyMs: number, concurrency: number | undefined, database: string | undefined, change: ScheduleChange = {}): Promise<void> {
  const input: TenantBackupsAllInput = { excludeTenants: await tenantsWithOwnSchedule(client, database, change), ...(concurrency ? { concurrency } : {}), ...onDatabase(database) };
  await upsertSchedule(
    client,
    databaseScoped(scheduleIds.tenantBackupsAll, database),
    everyMs,
    { type: 'startWorkflow', workflowType: 'tenantBackupsAll', taskQueue, workflowId: databaseScoped(workflowIds.tenantBackupsAll(), database), args: [input] },
    { everyMs, ...onDatabase(database) },
  );
}

/** `{database}` when there is one: a schedule's input and memo. */
const onDatabase = (database: string | undefined) => (database === undefined ? {} : { database });

export async function scheduleTenantBackups(client: Client, taskQueue: string, req: TenantBackupScheduleRequest): Promise<ScheduleSummary> {
  const { database } = req;
  if (req.tenantId) {
    const id = databaseScoped(scheduleIds.tenantBackup(req.tenantId), database);
    await upsertSchedule(
      client,
      id,
      req.everyMs,
      {
        type: 'startWorkflow',
        workflowType: 'tenantBackup',
        taskQueue,
        workflowId: databaseScoped(workflowIds.tenantBackup(req.tenantId), database),
        args: [{ tenantId: req.tenantId, scheduled: true, ...onDatabase(database) } satisfies TenantBackupInput],
      },
      { tenantId: req.tenantId, everyMs: req.everyMs, ...onDatabase(database) },
    );
    await refreshExclusions(client, taskQueue, database, { added: req.tenantId });
    return summarize(client, id);
  }
  await upsertAllTenantsSchedule(client, taskQueue, req.everyMs, req.concurrency, database);
  return summarize(client, databaseScoped(scheduleIds.tenantBackupsAll, database));
}

export async function removeTenantBackupSchedule(client: Client, taskQueue: string, tenantId?: string, database?: string): Promise<{ removed: string }> {
  const id = databaseScoped(tenantId ? scheduleIds.tenantBackup(tenantId) : scheduleIds.tenantBackupsAll, database);
  if (!(await describeOrNull(client, id))) {
    throw new TenantsafeError(ErrorType.BadInput, `There is no schedule ${id}.`, 'List schedules with `tenantsafe schedule list`.');
  }
  await client.schedule.getHandle(id).delete();
  if (tenantId) await refreshExclusions(client, taskQueue, database, { removed: tenantId });
  return { removed: id };
}

/** Keeps the all-tenants schedule's exclusions equal to the tenants that have their own. */
async function refreshExclusions(client: Client, taskQueue: string, database: string | undefined, change: ScheduleChange): Promise<void> {
  const all = await describeOrNull(client, databaseScoped(scheduleIds.tenantBackupsAll, database));
  if (!all || all.action.type !== 'startWorkflow') return;
  const previous = (all.action.args?.[0] ?? {}) as TenantBackupsAllInput;
  await upsertAllTenantsSchedule(client, taskQueue, Number(all.memo?.everyMs ?? 86_400_000), previous.concurrency, database, change);
}

async function summarize(client: Client, scheduleId: string): Promise<ScheduleSummary> {
  const d = (await describeOrNull(client, scheduleId))!;
  const every = d.spec.intervals?.[0]?.every;
  return {
    scheduleId,
    workflowType: d.action.type === 'startWorkflow' ? d.action.workflowType : d.action.type,
    every: every ? msToDurationText(Number(every)) : '',
    tenantId: typeof d.memo?.tenantId === 'string' ? d.memo.tenantId : null,
    ...(typeof d.memo?.database === 'string' ? { database: d.memo.database } : {}),
    ...(d.spec.calendars?.[0]?.comment?.startsWith('daily at ') ? { at: d.spec.calendars[0].comment.slice('daily at '.length) } : {}),
    ...(d.action.type === 'startWorkflow' && d.action.workflowType === 'tenantBackup' ? { batched: (d.action.args?.[0] as TenantBackupInput | undefined)?.scheduled === true } : {}),
    paused: d.state.paused,
    nextRunAt: d.info.nextActionTimes[0]?.toISOString() ?? null,
    lastRunAt: d.info.recentActions.at(-1)?.takenAt.toISOString() ?? null,
  };
}

export async function listSchedules(client: Client): Promise<ScheduleSummary[]> {
  const ids: string[] = [];
  for await (const s of client.schedule.list()) if (s.scheduleId.startsWith('schedule/')) ids.push(s.scheduleId);
  return Promise.all(ids.sort().map((id) => summarize(client, id)));
}

// ---- daily schedules of whole-database work (02:00 UTC full backups, retention, verification) ----
//
// Calendar schedules in UTC. Overlap SKIP (a backup still running at the next 02:00 is not
// joined by a second one); the catch-up window says how late a run missed during an outage may
// still start (6 h by default: a full backup at 08:00 is still worth having, one at 20:00 would
// collide with the day's traffic and the next run).

export interface DailyScheduleRequest {
  /** HH:MM, UTC (the CLI's --time) */
  time: string;
  catchupWindowMs: number;
  /** retention: only report what would be deleted */
  dryRun?: boolean;
  /** with several databases: the one the schedule serves */
  database?: string;
}

const dailyScheduleIds: Record<DailyScheduleKind, string> = {
  'full-backups': databaseScheduleIds.fullBackups,
  retention: databaseScheduleIds.retention,
  verification: databaseScheduleIds.verification,
};

function dailyAction(kind: DailyScheduleKind, taskQueue: string, req: DailyScheduleRequest): ScheduleOptionsAction {
  const { database } = req;
  const start = (workflowType: string, workflowId: string, input: object): ScheduleOptionsAction => ({ type: 'startWorkflow', workflowType, taskQueue, workflowId: databaseScoped(workflowId, database), args: [{ ...input, ...onDatabase(database) }] });
  if (kind === 'full-backups') return start('fullBackup', databaseWorkflowIds.fullBackup(), {});
  if (kind === 'retention') return start('applyRetention', databaseWorkflowIds.applyRetention(), { dryRun: !!req.dryRun, requestedBy: `schedule:${databaseScoped(databaseScheduleIds.retention, database)}` });
  return start('verifyRecentBackups', databaseWorkflowIds.verifyRecentBackups(), {});
}

export async function scheduleDaily(client: Client, taskQueue: string, kind: DailyScheduleKind, req: DailyScheduleRequest): Promise<ScheduleSummary> {
  const { hour, minute } = parseTimeOfDay(req.time, kind);
  const id = databaseScoped(dailyScheduleIds[kind], req.database);
  await upsertSchedule(client, id, 86_400_000, dailyAction(kind, taskQueue, req), onDatabase(req.database), {
    spec: { calendars: [{ hour, minute, comment: `daily at ${req.time} UTC` }] },
    catchupWindowMs: req.catchupWindowMs,
  });
  return summarize(client, id);
}

export async function removeDailySchedule(client: Client, kind: DailyScheduleKind, database?: string): Promise<{ removed: string }> {
  const id = databaseScoped(dailyScheduleIds[kind], database);
  if (!(await describeOrNull(client, id))) {
    throw new TenantsafeError(ErrorType.BadInput, `There is no schedule ${id}.`, 'List schedules with `tenantsafe schedule list`.');
  }
  await client.schedule.getHandle(id).delete();
  return { removed: id };
}

// ---- DR drills (weekly by default: dr.drill.interval) ----

/** Creates or updates the drill schedule: a drDrill of the database every `everyMs` (overlap SKIP, catch-up window the interval). */
export async function scheduleDrills(client: Client, taskQueue: string, database: string, everyMs: number): Promise<ScheduleSummary> {
  await upsertSchedule(client, drScheduleIds.drills, everyMs, { type: 'startWorkflow', workflowType: 'drDrill', taskQueue, workflowId: drWorkflowIds.drDrill(database), args: [{}] }, { everyMs });
  return summarize(client, drScheduleIds.drills);
}

/** Deletes the drill schedule; false when there was none. */
export async function removeDrillSchedule(client: Client): Promise<boolean> {
  if (!(await describeOrNull(client, drScheduleIds.drills))) return false;
  await client.schedule.getHandle(drScheduleIds.drills).delete();
  return true;
}
