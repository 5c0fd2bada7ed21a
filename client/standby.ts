// The typed client for the standby (disaster recovery, self-managed provider): building it and
// rebuilding an old primary as one. Like client.ts it talks to Temporal only.
import type { CreateStandbyResult, RebuildResult } from '../lib/dr/standby';
import type { standbyCreate, standbyRebuild } from '../workflows';
import { standbyCreateStatusQuery, standbyWorkflowIds, type StandbyRebuildInput } from '../workflows/messages';
import { pollStatus, resultOf, type TenantsafeClient } from './client';

/** What `standby create` prints without --wait while it builds: the build's result fields come with --wait. */
export type StandbyCreateOutcome = (CreateStandbyResult & { status: 'completed' }) | { status: 'running'; workflowId: string; backupId: string | null };

/** Starts the build, or joins the running one; returns once its checks passed (a refusal fails here), or its result with `wait`. */
export async function startStandbyCreate(client: TenantsafeClient, opts: { wait?: boolean } = {}): Promise<StandbyCreateOutcome> {
  await client.assertWorkerPolling();
  const handle = await client.temporal.workflow.start<typeof standbyCreate>('standbyCreate', {
    taskQueue: client.settings.taskQueue,
    workflowId: standbyWorkflowIds.standbyCreate(),
    args: [{}],
    workflowIdConflictPolicy: 'USE_EXISTING',
  });
  const completed = async (): Promise<StandbyCreateOutcome> => ({ ...(await resultOf(handle)), status: 'completed' });
  if (opts.wait) return completed();
  const status = await pollStatus(handle, standbyCreateStatusQuery, (s) => s.state !== 'checking');
  if (status.state !== 'building') return completed();
  return { status: 'running', workflowId: handle.workflowId, backupId: status.backupId };
}

/** Rebuilds an old primary as a standby of the new one and waits for the result. */
export async function rebuildStandby(client: TenantsafeClient, input: StandbyRebuildInput): Promise<RebuildResult> {
  await client.assertWorkerPolling();
  const handle = await client.temporal.workflow.start<typeof standbyRebuild>('standbyRebuild', {
    taskQueue: client.settings.taskQueue,
    workflowId: standbyWorkflowIds.standbyRebuild(input.dataDir),
    args: [input],
    workflowIdConflictPolicy: 'FAIL',
  });
  return resultOf(handle);
}
