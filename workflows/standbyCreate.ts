// Runbook: build the configured standby (`tenantsafe standby create`).
//   1. check: a standby configured, provider postgres, its data directory empty or one we built,
//      a base backup of the primary's timeline with an unbroken archive after it (a refusal fails
//      here; nothing is touched)
//   2. build: the newest base backup + archived WAL into the data directory, a slot on the
//      primary, started, caught up until the primary streams to it; synchronous_standby_names
//      set or cleared. A standby built earlier is left as it is; a half-built one is built again.
//   3. record the run
import { proxyActivities, setHandler, workflowInfo } from '@temporalio/workflow';
import type { StandbyActivities } from '../activities/standby';
import type { TenantBackupActivities } from '../activities/tenantBackup';
import type { CreateStandbyResult } from '../lib/dr/standby';
import { rootCause } from './failures';
import { standbyCreateStatusQuery, type StandbyCreateInput, type StandbyCreateStatus } from './messages';
import { shortStep, standbyBuild } from './profiles';

const step = proxyActivities<StandbyActivities & TenantBackupActivities>(shortStep);
const build = proxyActivities<StandbyActivities>(standbyBuild);

export async function standbyCreate(_input: StandbyCreateInput = {}): Promise<CreateStandbyResult> {
  const { workflowId, runId } = workflowInfo();
  const status: StandbyCreateStatus = { state: 'checking', backupId: null };
  setHandler(standbyCreateStatusQuery, () => status);
  const run = { workflowId, runId, workflowType: 'standbyCreate' };
  try {
    status.backupId = (await step.checkStandby({})).backupId;
    status.state = 'building';
    await step.recordRun({ ...run, backupId: status.backupId, status: 'running' });
    const result = await build.createStandby({});
    status.state = 'done';
    await step.recordRun({ ...run, backupId: status.backupId, status: 'completed', details: { outcome: result.outcome, synchronous: result.synchronous, replayLsn: result.replayLsn, tookMs: result.tookMs } });
    return result;
  } catch (err) {
    const cause = rootCause(err);
    const checked = status.state !== 'checking';
    Object.assign(status, { state: 'failed', error: cause.message });
    if (checked) await step.recordRun({ ...run, backupId: status.backupId, status: 'failed', error: cause.message, errorType: cause.type ?? null }).catch(() => undefined);
    throw err;
  }
}
