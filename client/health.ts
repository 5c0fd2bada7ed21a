// The health report with what only Temporal knows: the schedules' intervals (what "too old"
// means) and whether a worker polls the task queue. Used by `tenantsafe check`/`status`, the
// dashboard server and the worker's /metrics; the judging is the engine's (lib/monitoring).
import type { Client } from '@temporalio/client';
import { temporal as proto } from '@temporalio/proto';
import { databaseIds, type Config } from '../lib/config';
import type { Engine } from '../lib/engine';
import { computeHealth, type HealthMemo, type HealthOptions, type HealthReport, type ScheduleFacts, type TemporalFacts } from '../lib/monitoring/health';
import { HealthCache, type HealthSources } from '../lib/monitoring/metrics';
import { databaseScheduleIds, databaseScoped, drScheduleIds, scheduleIds } from '../workflows/messages';

const dayMs = 86_400_000;

/** What Temporal says: reachable, pollers on the task queue, schedule intervals. Never throws. */
export async function temporalFacts(client: Client, config: Config, opts: { timeoutMs?: number } = {}): Promise<TemporalFacts> {
  const { address, namespace, taskQueue } = config.temporal;
  const base = { address, namespace, taskQueue };
  const deadline = new Date(Date.now() + (opts.timeoutMs ?? 5000));
  try {
    return await client.withDeadline(deadline, async () => {
      const q = await client.workflowService.describeTaskQueue({
        namespace,
        taskQueue: { name: taskQueue, kind: proto.api.enums.v1.TaskQueueKind.TASK_QUEUE_KIND_NORMAL },
        taskQueueType: proto.api.enums.v1.TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
      });
      return { ...base, reachable: true, pollers: (q.pollers ?? []).length, schedules: await scheduleFacts(client, config.databaseId) };
    });
  } catch (err) {
    return { ...base, reachable: false, error: err instanceof Error ? err.message : String(err) };
  }
}

/**
 * The intervals of tenantsafe's schedules (client/schedules.ts) of the database (with several, its
 * own: docs/fleet.md): tenant backups (all, per tenant), daily full backups and verification, DR drills.
 */
async function scheduleFacts(client: Client, database: string | undefined): Promise<ScheduleFacts> {
  const facts: ScheduleFacts = {};
  const id = (scheduleId: string) => databaseScoped(scheduleId, database);
  for await (const s of client.schedule.list()) {
    const every = Number(s.memo?.everyMs ?? s.spec?.intervals?.[0]?.every ?? NaN);
    if (s.scheduleId === id(scheduleIds.tenantBackupsAll) && Number.isFinite(every)) facts.tenantBackupEveryMs = every;
    else if (s.scheduleId.startsWith(id(scheduleIds.tenantBackup(''))) && typeof s.memo?.tenantId === 'string' && Number.isFinite(every)) {
      (facts.perTenantEveryMs ??= {})[s.memo.tenantId] = every;
    } else if (s.scheduleId === id(databaseScheduleIds.fullBackups)) facts.fullBackupEveryMs = dayMs;
    else if (s.scheduleId === id(databaseScheduleIds.verification)) facts.verificationEveryMs = dayMs;
    else if (s.scheduleId === drScheduleIds.drills && Number.isFinite(every)) facts.drillEveryMs = every;
  }
  // tenants with their own schedule are judged by it; the others by the all-tenants one (24 h when there is none)
  if (facts.perTenantEveryMs && facts.tenantBackupEveryMs === undefined) facts.tenantBackupEveryMs = dayMs;
  return facts;
}

/** The health report, with Temporal's facts when a client is given. */
export async function collectHealth(engine: Engine, client: Client | null, opts: Omit<HealthOptions, 'temporal'> = {}): Promise<HealthReport> {
  const temporal = client ? await temporalFacts(client, engine.config) : undefined;
  return computeHealth(engine, { ...opts, ...(temporal ? { temporal } : {}) });
}

/**
 * What /metrics shows (the worker's, the dashboard's), recomputed at most every `ttlMs`: the
 * engine's database (`memo` shared with the caller), or when the config names several (docs/fleet.md)
 * every one's, each judged by its own catalog and schedules.
 */
export function healthSources(engine: Engine, client: Client, ttlMs: number, memo: HealthMemo = {}): HealthSources {
  const ids = databaseIds(engine.config);
  if (ids.length === 0) return new HealthCache(() => collectHealth(engine, client, { memo }), ttlMs);
  return ids.map((database) => {
    // the tenancy plan and workflow scopes are each database's own
    const own: HealthMemo = {};
    return { database, cache: new HealthCache(() => collectHealth(engine.forDatabase(database), client, { memo: own }), ttlMs) };
  });
}
