// The typed client for DR drills (Temporal only): start one, or join the one running.
import { searchAttributes, drDrillStatusQuery, drWorkflowIds, type DrDrillResult } from '../workflows/messages';
import type { drDrill } from '../workflows';
import { pollStatus, resultOf, type TenantsafeClient } from './client';

export type DrillOutcome = (DrDrillResult & { status: 'completed'; workflowId: string }) | { status: 'running'; workflowId: string; drillId: string | null; backupId: string | null };

/** Starts a drill of the database (or joins the running one); returns once it passed its first check, or its result with `wait`. */
export async function startDrill(client: TenantsafeClient, database: string, opts: { wait?: boolean } = {}): Promise<DrillOutcome> {
  await client.assertWorkerPolling();
  const handle = await client.temporal.workflow.start<typeof drDrill>('drDrill', {
    taskQueue: client.settings.taskQueue,
    workflowId: drWorkflowIds.drDrill(database),
    args: [{}],
    workflowIdConflictPolicy: 'USE_EXISTING',
    typedSearchAttributes: [{ key: searchAttributes.database, value: database }],
  });
  const done = (r: DrDrillResult): DrillOutcome => ({ ...r, status: 'completed', workflowId: handle.workflowId });
  if (opts.wait) return done(await resultOf(handle));
  const status = await pollStatus(handle, drDrillStatusQuery, (s) => s.state !== 'starting');
  if (status.state === 'failed' || status.state === 'done') return done(await resultOf(handle));
  return { status: 'running', workflowId: handle.workflowId, drillId: status.drillId, backupId: status.backupId };
}
