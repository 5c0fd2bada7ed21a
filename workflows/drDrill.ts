// Runbook: a disaster-recovery drill, as the weekly schedule (or `tenantsafe drill run`) starts it.
//   1. check there is a full backup to restore; record the drill as running (dr_events)
//   2. restore the newest full backup and the archived WAL into a scratch cluster, check it (row
//      counts against the live database, sample tenants against their backups), measure the
//      achieved RTO and RPO, remove the scratch cluster, store the report (lib/dr)
//   3. record the outcome against dr.targets
//   4. alert when the drill failed or missed a target; resolve the alert when one passes
import { proxyActivities, setHandler, workflowInfo } from '@temporalio/workflow';
import type { DrillActivities } from '../activities/drill';
import { announce, failureOf } from './alerts';
import { drDrillStatusQuery, type DrDrillInput, type DrDrillResult, type DrDrillStatus } from './messages';
import { restoreOnce, shortStep } from './profiles';

const step = proxyActivities<DrillActivities>(shortStep);
// a retry would restore again from the start; the next scheduled drill is that retry
const drill = proxyActivities<DrillActivities>(restoreOnce);

export async function drDrill(input: DrDrillInput): Promise<DrDrillResult> {
  const status: DrDrillStatus = { state: 'starting', drillId: null, backupId: null };
  setHandler(drDrillStatusQuery, () => status);
  const startedAt = new Date(workflowInfo().startTime).toISOString();
  let result: DrDrillResult | undefined;
  try {
    const started = await step.startDrill({ database: input?.database, startedAt });
    Object.assign(status, { state: 'drilling', drillId: started.drillId, backupId: started.backupId });
    try {
      result = await drill.runDrill({ drillId: started.drillId, backupId: started.backupId, startedAt });
    } catch (err) {
      await step.finishDrill({ drillId: started.drillId, startedAt, error: failureOf(err) }).catch(() => undefined);
      throw err;
    }
    status.state = 'recording';
    await step.finishDrill({ drillId: started.drillId, startedAt, result });
  } catch (err) {
    Object.assign(status, { state: 'failed', error: failureOf(err).message });
    await announce({ kind: 'drDrill', outcome: 'failed', step: 'outcome', error: failureOf(err) });
    throw err;
  }
  status.state = result.ok ? 'done' : 'failed';
  if (result.metTargets) await announce({ kind: 'drDrill', outcome: 'succeeded', step: 'outcome', backupId: result.backupId });
  else await announce({ kind: 'drDrill', outcome: 'failed', step: 'outcome', backupId: result.backupId, error: missed(result) });
  return result;
}

/** Why a drill that ran to its end does not count as passed. */
function missed(r: DrDrillResult): { message: string; type: string } {
  const s = (ms: number | null) => (ms === null ? 'not reached' : `${(ms / 1000).toFixed(1)} s`);
  if (!r.ok) return { type: 'DrillFailed', message: `DR drill ${r.drillId} failed: ${r.problems.join('; ')}. HINT: read the report (${r.htmlKey}); \`tenantsafe verify ${r.backupId}\` checks the backup and its WAL.` };
  return {
    type: 'DrillOverTarget',
    message: `DR drill ${r.drillId} missed its targets: RTO ${s(r.rtoMs)} (target ${s(r.rtoTargetMs)}), RPO ${s(r.rpoMs)} (target ${s(r.rpoTargetMs)}). HINT: read the report's timings (${r.htmlKey}); more frequent full backups shorten replay, a lagging WAL archive raises the RPO.`,
  };
}
