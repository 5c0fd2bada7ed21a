// Standby activities: thin steps over lib/dr/standby.ts. They run on a worker of the machine that
// holds the standby's data directory (dr.standby.dataDir; for a rebuild, the old primary's).
import { Context } from '@temporalio/activity';
import type { DrNode } from '../lib/catalog';
import type { DrStandbyConfig } from '../lib/config';
import { currentRoles } from '../lib/dr/failover';
import { checkStandbyCreate, createStandby, nodeUrl, parseHostPort, rebuildAsStandby, type CreateStandbyResult, type RebuildResult, type StandbyProgress } from '../lib/dr/standby';
import type { Engine } from '../lib/engine';
import { ErrorType, TenantsafeError } from '../lib/errors';
import { PrivateCluster } from '../lib/postgres/cluster';
import type { StandbyRebuildInput } from '../workflows/messages';
import { withFailures } from './failures';
import { heartbeatEvery } from './tenantBackup';

export function createStandbyActivities(engine: Engine) {
  const configured = (): DrStandbyConfig => {
    const standby = engine.config.dr.standby;
    if (!standby) throw new TenantsafeError(ErrorType.BadConfig, 'No standby is configured (dr.standby).', 'Add dr.standby: {dataDir, port} to the config (README, disaster recovery).');
    return standby;
  };
  const node = (s: DrStandbyConfig) => ({ dataDir: s.dataDir, host: s.host, port: s.port, slot: s.slot });
  /** Runs a long step with its progress in the heartbeat, cancellation passed on. */
  const heartbeating = async <T>(fn: (onProgress: (p: StandbyProgress) => void, signal: AbortSignal) => Promise<T>): Promise<T> => {
    let progress: StandbyProgress = { phase: 'checking' };
    const stop = heartbeatEvery(2000, () => progress);
    try {
      return await fn((p) => (progress = p), Context.current().cancellationSignal);
    } finally {
      stop();
    }
  };

  return withFailures({
    /** What can be refused before anything changes: config, provider, the data directory, the base backup. */
    async checkStandby(_: Record<string, never>): Promise<{ backupId: string | null }> {
      const { backupId } = await checkStandbyCreate(engine, { primaryUrl: engine.config.database.url, standby: node(configured()) });
      return { backupId };
    },

    /** Idempotent: a retry after a killed worker cleans the half-built directory and builds again. */
    async createStandby(_: Record<string, never>): Promise<CreateStandbyResult> {
      const standby = configured();
      return heartbeating((onProgress, signal) => createStandby(engine, { primaryUrl: engine.config.database.url, standby: node(standby), synchronous: standby.synchronous, onProgress, signal }));
    },

    async rebuildStandby(input: StandbyRebuildInput): Promise<RebuildResult> {
      const standby = configured();
      const primary = parseHostPort(input.primary);
      const port = input.port ?? (await ownPort(input.dataDir));
      const result = await heartbeating((onProgress, signal) =>
        rebuildAsStandby({
          primaryUrl: nodeUrl(engine.config.database.url, primary.host, primary.port),
          standby: { dataDir: input.dataDir, host: input.host ?? standby.host, port, slot: standby.slot },
          synchronous: standby.synchronous,
          archive: engine.store,
          onProgress,
          signal,
        }),
      );
      // the roles from now on: failover and switchover (and standby status) read them
      const roles = await currentRoles(engine);
      const same = (n: DrNode | null): n is DrNode => !!n && n.host === primary.host && n.port === primary.port;
      const { workflowId, runId } = Context.current().info.workflowExecution ?? { workflowId: 'standby-rebuild', runId: '' };
      await engine.catalog.setDrRoles({
        database: roles.database,
        primary: same(roles.primary) ? roles.primary : same(roles.standby) ? roles.standby : { ...primary, dataDir: null },
        standby: { host: result.host, port: result.port, dataDir: input.dataDir },
        standbyState: 'streaming',
        changedBy: `${workflowId}/${runId}`,
      });
      return result;
    },
  });
}

/** The port a data directory tenantsafe started before listens on. */
async function ownPort(dataDir: string): Promise<number> {
  try {
    return (await PrivateCluster.attach(dataDir)).port;
  } catch {
    throw new TenantsafeError(ErrorType.BadInput, `${dataDir} names no port of its own (it is missing, or tenantsafe did not start it).`, 'Pass --port <n>: the port the rebuilt standby listens on.');
  }
}

export type StandbyActivities = ReturnType<typeof createStandbyActivities>;
