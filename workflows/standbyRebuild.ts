// Runbook: failback, step 1 (`tenantsafe standby rebuild`): the old primary's data directory, on
// this worker's machine, becomes a standby of the new primary.
//   1. stop it if it runs; pg_rewind it onto the new primary's timeline (old WAL from our archive)
//   2. when rewind cannot (directory gone, no wal_log_hints, rewind failed): a fresh pg_basebackup
//   3. standby settings, slot on the new primary, started, streaming; the path taken recorded
// Then a switchover returns the roles.
import { proxyActivities, setHandler, workflowInfo } from '@temporalio/workflow';
import type { StandbyActivities } from '../activities/standby';
import type { TenantBackupActivities } from '../activities/tenantBackup';
import type { RebuildResult } from '../lib/dr/standby';
import { rootCause } from './failures';
import { standbyRebuildStatusQuery, type StandbyRebuildInput, type StandbyRebuildStatus } from './messages';
import { shortStep, standbyBuild } from './profiles';

const step = proxyActivities<StandbyActivities & TenantBackupActivities>(shortStep);
const build = proxyActivities<StandbyActivities>(standbyBuild);

export async function standbyRebuild(input: StandbyRebuildInput): Promise<RebuildResult> {
  const { workflowId, runId } = workflowInfo();
  const status: StandbyRebuildStatus = { state: 'rebuilding' };
  setHandler(standbyRebuildStatusQuery, () => status);
  const run = { workflowId, runId, workflowType: 'standbyRebuild' };
  try {
    await step.recordRun({ ...run, status: 'running', details: { dataDir: input.dataDir, primary: input.primary } });
    const result = await build.rebuildStandby(input);
    status.state = 'done';
    await step.recordRun({ ...run, status: 'completed', details: { path: result.path, reason: result.reason, replayLsn: result.replayLsn, tookMs: result.tookMs } });
    return result;
  } catch (err) {
    const cause = rootCause(err);
    Object.assign(status, { state: 'failed', error: cause.message });
    await step.recordRun({ ...run, status: 'failed', error: cause.message, errorType: cause.type ?? null }).catch(() => undefined);
    throw err;
  }
}
