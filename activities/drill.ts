// DR drill activities: thin steps over lib/dr. The drill itself is one activity, on one worker:
// its scratch cluster lives on that worker's disk from the restore to the teardown.
import { Context } from '@temporalio/activity';
import { databaseName } from '../lib/config';
import { drillSource, runDrill, type DrillProgress } from '../lib/dr/drill';
import { drillIdOf, storeDrillReport } from '../lib/dr/report';
import type { Engine } from '../lib/engine';
import { ErrorType, TenantsafeError } from '../lib/errors';
import type { DrDrillResult } from '../workflows/messages';
import { withFailures } from './failures';
import { heartbeatEvery } from './tenantBackup';

export interface DrillStart {
  drillId: string;
  database: string;
  backupId: string;
}

export function createDrillActivities(engine: Engine) {
  const run = () => {
    const { workflowExecution } = Context.current().info;
    return { workflowId: workflowExecution!.workflowId, runId: workflowExecution!.runId };
  };
  const targets = () => ({ rtoTargetMs: engine.config.dr.targets.rtoMs, rpoTargetMs: engine.config.dr.targets.rpoMs });

  return withFailures({
    /** Checks the input and that there is a backup to drill with; records the drill as running. */
    async startDrill(args: { database?: string; startedAt: string }): Promise<DrillStart> {
      const database = databaseName(engine.config.database.url);
      if (args.database !== undefined && args.database !== database) {
        throw new TenantsafeError(ErrorType.BadInput, `There is no database "${args.database}" in the config (it has ${database}).`, `Leave database out, or pass "${database}".`);
      }
      const backup = await drillSource(engine);
      const drillId = drillIdOf(args.startedAt, run().runId);
      await engine.catalog.recordDrEvent({ ...run(), kind: 'drill', database, status: 'running', startedAt: args.startedAt, ...targets(), details: { drillId, backupId: backup.backupId } });
      return { drillId, database, backupId: backup.backupId };
    },

    /** Restores, checks, measures, tears down, stores the report (JSON and HTML); returns its summary. */
    async runDrill(args: { drillId: string; backupId: string; startedAt: string }): Promise<DrDrillResult> {
      let progress: DrillProgress = { phase: 'fetching' };
      const stop = heartbeatEvery(2000, () => progress);
      try {
        const report = await runDrill(engine, { ...args, signal: Context.current().cancellationSignal, onProgress: (p) => (progress = p) });
        const stored = await storeDrillReport(engine.store, report);
        const count = (result: string) => report.checks.filter((c) => c.result === result).length;
        return {
          drillId: report.drillId,
          database: report.database,
          backupId: report.source.backupId,
          ok: report.ok,
          metTargets: report.metTargets,
          rtoMs: report.rto.ms,
          rpoMs: report.rpo?.ms ?? null,
          ...targets(),
          checks: { ok: count('ok'), failed: count('failed'), not_comparable: count('not_comparable') },
          problems: report.checks.filter((c) => c.result === 'failed').slice(0, 5).map((c) => `${c.check} ${c.target}: ${(c.detail ?? '').slice(0, 300)}`),
          reportKey: stored.reportKey,
          htmlKey: stored.htmlKey,
          reportSha256: stored.reportSha256,
        };
      } finally {
        stop();
      }
    },

    /** Records the drill's outcome in dr_events: the report's key and sha256, or the error that ended it. */
    async finishDrill(args: { drillId: string; startedAt: string; result?: DrDrillResult; error?: { message: string; type?: string } }): Promise<void> {
      const r = args.result;
      await engine.catalog.recordDrEvent({
        ...run(),
        kind: 'drill',
        database: databaseName(engine.config.database.url),
        status: r?.ok ? 'done' : 'failed',
        startedAt: args.startedAt,
        finishedAt: new Date().toISOString(),
        ...targets(),
        rtoMs: r?.rtoMs ?? null,
        rpoMs: r?.rpoMs ?? null,
        metTargets: r ? r.metTargets : false,
        reportKey: r?.reportKey ?? null,
        error: r ? (r.ok ? null : r.problems.join('; ') || 'a check failed') : (args.error?.message ?? 'failed'),
        details: {
          drillId: args.drillId,
          ...(r ? { backupId: r.backupId, htmlKey: r.htmlKey, reportSha256: r.reportSha256, checks: r.checks } : { errorType: args.error?.type ?? null }),
        },
      });
    },
  });
}

export type DrillActivities = ReturnType<typeof createDrillActivities>;
