// Failover and switchover steps: thin calls into lib/dr. The endpoint's and the servers' URLs
// (they may hold passwords) are read from the config here, never passed through history.
import { Context } from '@temporalio/activity';
import type { DrEventRecord, DrNode, DrRoles } from '../lib/catalog';
import { checkWrite, drPlan, fenceServer, lossEstimate, nodeUrl, probePrimary, standbyPosition, unfenceServer, waitForReplay, judgeFailover, type DrPlan, type LossEstimate, type ProbeOutcome, type StandbyPosition } from '../lib/dr/failover';
import { promoteStandby } from '../lib/dr/standby';
import { holdEndpoint, pointEndpoint, resumeEndpoint } from '../lib/dr/endpoint';
import type { Engine } from '../lib/engine';
import { ErrorType, TenantsafeError } from '../lib/errors';
import { withFailures } from './failures';

/** How long the write check through the endpoint keeps trying before the step fails (and is retried). */
const writeCheckTimeoutMs = 30_000;
/** How long a switchover waits for the standby to replay the old primary's last WAL. */
const replayTimeoutMs = 60_000;

export interface DrPrepareInput {
  kind: 'failover' | 'switchover';
  database?: string;
}

export interface DrNodes {
  primary: DrNode;
  standby: DrNode;
}

export interface DrAssessInput extends DrNodes {
  probe: ProbeOutcome;
  force: boolean;
}

export interface DrPromoteInput extends DrNodes {
  /** the old primary's WAL position when last seen (a probe or its fence) */
  lastKnownLsn: string | null;
}

export interface DrOutcomeInput {
  event: Omit<DrEventRecord, 'runId' | 'workflowId'>;
  /** the roles to record (a finished failover or switchover) */
  roles?: Omit<DrRoles, 'changedBy'>;
}

export function createDrActivities(engine: Engine) {
  const endpointOf = () => {
    const endpoint = engine.config.dr.endpoint;
    if (!endpoint) throw new TenantsafeError(ErrorType.BadConfig, 'dr.endpoint is no longer configured.', 'Configure dr.endpoint again and retry the workflow.');
    return endpoint;
  };
  const runOf = () => {
    const { workflowId, runId } = Context.current().info.workflowExecution!;
    return { workflowId, runId };
  };
  const nodesOf = async (input: DrNodes) => {
    const plan = await drPlan(engine);
    return { plan, primaryUrl: nodeUrl(engine, input.primary), standbyUrl: nodeUrl(engine, input.standby) };
  };

  return withFailures({
    /** The plan, with no URL or secret: bad input (no standby, no endpoint) fails here, before anything changes. */
    async prepareDrMove(input: DrPrepareInput): Promise<DrPlan> {
      const { endpoint: _secretBearing, ...plan } = await drPlan(engine, input.database);
      return plan;
    },

    async probeDrPrimary(input: DrNodes): Promise<ProbeOutcome> {
      const { plan, primaryUrl } = await nodesOf(input);
      return probePrimary(primaryUrl, plan, (n) => Context.current().heartbeat({ probe: n }));
    },

    /** Where the standby is and what promoting it would lose; refuses (bad input) what would do harm, unless forced. */
    async assessDrStandby(input: DrAssessInput): Promise<{ standby: StandbyPosition; loss: LossEstimate }> {
      const { plan, standbyUrl } = await nodesOf(input);
      const standby = await standbyPosition(standbyUrl, plan.probeTimeoutMs);
      const loss = await lossEstimate(input.primary.dataDir, input.probe.lastLsn, standby);
      judgeFailover({ ...plan, primary: input.primary, standby: input.standby }, input.probe, standby, loss, input.force);
      return { standby, loss };
    },

    /**
     * Fences the old primary: the endpoint drops its connections and holds new clients (KILL), then
     * names the standby (read-only until promoted: no write reaches the old primary through it,
     * even if PgBouncer restarts now); the server, when it answers, becomes read-only.
     */
    async fenceDrPrimary(input: DrNodes): Promise<{ fencedLsn: string | null }> {
      const { plan, primaryUrl } = await nodesOf(input);
      const endpoint = endpointOf();
      await holdEndpoint(endpoint, 'kill');
      await pointEndpoint(endpoint, { host: input.standby.host, port: input.standby.port, dbname: plan.database });
      return { fencedLsn: await fenceServer(primaryUrl, plan.probeTimeoutMs) };
    },

    /** A switchover's first step: clients wait at the endpoint while their transactions finish. */
    async pauseDrEndpoint(): Promise<void> {
      await holdEndpoint(endpointOf(), 'pause');
    },

    /** A switchover's demotion: the primary read-only, its sessions ended; its last WAL position. */
    async demoteDrPrimary(input: DrNodes): Promise<{ finalLsn: string }> {
      const { plan, primaryUrl } = await nodesOf(input);
      const finalLsn = await fenceServer(primaryUrl, plan.probeTimeoutMs);
      if (!finalLsn) throw new TenantsafeError(ErrorType.FailoverRefused, `The primary at ${input.primary.host}:${input.primary.port} does not answer: a switchover needs it.`, 'Use `tenantsafe failover` when the primary is lost.');
      return { finalLsn };
    },

    async awaitDrReplay(input: DrNodes & { lsn: string }): Promise<StandbyPosition> {
      const { standbyUrl } = await nodesOf(input);
      return waitForReplay(standbyUrl, input.lsn, replayTimeoutMs);
    },

    /** Compensation of a switchover that failed before the promotion: the primary takes writes again. */
    async undoDrDemotion(input: DrNodes): Promise<void> {
      const { primaryUrl } = await nodesOf(input);
      await unfenceServer(primaryUrl);
    },

    /** Compensation of a switchover that failed before the promotion: the held clients go on (to the primary the file still names). */
    async resumeDrEndpoint(): Promise<void> {
      await resumeEndpoint(endpointOf());
    },

    /** Promotes the standby and measures what the old primary had that it lacks. */
    async promoteDrStandby(input: DrPromoteInput): Promise<{ loss: LossEstimate }> {
      const { standbyUrl } = await nodesOf(input);
      const end = await promoteStandby(standbyUrl);
      return { loss: await lossEstimate(input.primary.dataDir, input.lastKnownLsn, { lsn: end.timelineStartLsn, lastReplayAt: end.lastReplayedCommitAt }) };
    },

    /** Points the endpoint at the new primary (again: harmless when it already does) and lets the clients through. */
    async switchDrEndpoint(input: DrNodes): Promise<void> {
      const { plan } = await nodesOf(input);
      const endpoint = endpointOf();
      await pointEndpoint(endpoint, { host: input.standby.host, port: input.standby.port, dbname: plan.database });
      await resumeEndpoint(endpoint);
    },

    /** The first write through the endpoint that commits on the new primary: the RTO's end. */
    async checkDrWrite(input: DrNodes): Promise<{ writtenAt: string }> {
      return checkWrite(endpointOf(), input.standby, writeCheckTimeoutMs);
    },

    /** A DR event's start or outcome in the catalog, and the roles it left. */
    async recordDrOutcome(input: DrOutcomeInput): Promise<void> {
      const run = runOf();
      if (input.roles) await engine.catalog.setDrRoles({ ...input.roles, changedBy: `${run.workflowId}/${run.runId}` });
      await engine.catalog.recordDrEvent({ ...input.event, ...run });
    },
  });
}

export type DrActivities = ReturnType<typeof createDrActivities>;
