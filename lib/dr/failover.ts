// Failover and switchover, the engine's side (the workflows in workflows/failover.ts and
// workflows/switchover.ts put the steps in order): which server is primary and which standby
// (the catalog's roles, else the config), probing the primary, judging the standby, fencing the
// old primary on the server, promoting, the write check through the endpoint, and what was lost.
//
// Fencing on the server is `ALTER SYSTEM SET default_transaction_read_only = on` + reload, and the
// client backends terminated: it works from a worker on any host (pg_ctl would need the data
// directory), and it outlives a restart (postgresql.auto.conf), so an old primary someone starts
// again still refuses ordinary writes. The hard fence is the endpoint, which no longer names it.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { databaseName, type Config, type DrEndpointConfig, type DrStandbyConfig } from '../config';
import type { DrNode, DrRoles } from '../catalog';
import type { Engine } from '../engine';
import { ErrorType, TenantsafeError } from '../errors';
import { connect, microsText, withConnection } from '../pg';
import { runPgTool } from '../postgres/tools';
import { parseMicros } from '../time';
import { parseLsn } from '../wal/names';
import { readWalMarksFrom } from '../wal/waldump';
import { hostPortOf, nodeUrl as urlOfNode } from './standby';

/** Everything a failover or switchover needs to know, resolved from the config and the catalog. */
export interface DrPlan {
  /** the database's name (database.url's): the workflows' ids and the catalog's records use it */
  database: string;
  primary: DrNode;
  standby: DrNode;
  standbyState: DrRoles['standbyState'];
  approval: 'required' | 'automatic';
  probes: number;
  probeIntervalMs: number;
  probeTimeoutMs: number;
  approvalTimeoutMs: number;
  maxLagBytes: number;
  synchronous: boolean;
  targets: { rpoMs: number; rtoMs: number };
}

const refused = (problem: string, hint: string) => new TenantsafeError(ErrorType.FailoverRefused, problem, hint);

/** The standby and the endpoint a failover or switchover needs, or a bad-config error naming the missing one (the CLI checks before it starts a workflow). */
export function checkDrConfigured(config: Config): { standby: DrStandbyConfig; endpoint: DrEndpointConfig } {
  const { standby, endpoint } = config.dr;
  if (!standby) throw new TenantsafeError(ErrorType.BadConfig, 'No standby is configured (dr.standby): there is nothing to fail over to.', 'Configure dr.standby and create it (`tenantsafe standby create`).');
  if (!endpoint) {
    throw new TenantsafeError(ErrorType.BadConfig, 'No application endpoint is configured (dr.endpoint): applications could not be moved to the new primary.', 'Put PgBouncer in front of the database and configure dr.endpoint (README, Disaster recovery).');
  }
  return { standby, endpoint };
}

/** The plan, or why there can be none (no standby, no endpoint, another database asked for): bad input. */
export async function drPlan(engine: Engine, askedDatabase?: string): Promise<DrPlan & { endpoint: DrEndpointConfig }> {
  const { dr } = engine.config;
  const database = databaseName(engine.config.database.url);
  if (askedDatabase !== undefined && askedDatabase !== database) {
    throw new TenantsafeError(ErrorType.BadInput, `This configuration serves database "${database}", not "${askedDatabase}".`, `Leave out "database", or use the configuration of ${askedDatabase}.`);
  }
  const { standby, endpoint } = checkDrConfigured(engine.config);
  const roles = await currentRoles(engine);
  if (!roles.standby) throw new TenantsafeError(ErrorType.BadConfig, `Database ${database} has no standby since ${roles.changedBy}.`, 'Create one (`tenantsafe standby create`) first.');
  return {
    database,
    primary: roles.primary,
    standby: roles.standby,
    standbyState: roles.standbyState,
    approval: dr.failover.approval,
    probes: dr.failover.probes,
    probeIntervalMs: dr.failover.probeIntervalMs,
    probeTimeoutMs: dr.failover.probeTimeoutMs,
    approvalTimeoutMs: dr.failover.approvalTimeoutMs,
    maxLagBytes: standby.maxLagBytes,
    synchronous: standby.synchronous,
    targets: dr.targets,
    endpoint,
  };
}

/**
 * Which server is the primary and which the standby now: the catalog's record after a failover,
 * switchover or rebuild, else the config (database.url and dr.standby). Needs dr.standby.
 */
export async function currentRoles(engine: Engine): Promise<DrRoles> {
  const { dr } = engine.config;
  const database = databaseName(engine.config.database.url);
  const standby = dr.standby;
  if (!standby) throw new TenantsafeError(ErrorType.BadConfig, 'No standby is configured (dr.standby).', 'Add dr.standby: {dataDir, port} to the config (README, Disaster recovery).');
  const recorded = await engine.catalog.getDrRoles(database);
  if (recorded) return recorded;
  const url = new URL(engine.config.database.url);
  return {
    database,
    primary: { host: url.hostname, port: Number(url.port || 5432), dataDir: dr.primaryDataDir },
    standby: { host: standby.host, port: standby.port, dataDir: standby.dataDir },
    standbyState: 'streaming',
    changedBy: 'config',
  };
}

/** database.url with another server's host and port (same user, password, database). */
export function nodeUrl(engine: Engine, node: Pick<DrNode, 'host' | 'port'>): string {
  return urlOfNode(engine.config.database.url, node.host, node.port);
}

export interface ProbeOutcome {
  /** every probe failed */
  lost: boolean;
  /** ISO-8601: when the first of the failed probes in a row began (the RTO's start) */
  firstFailedAt: string | null;
  /** the primary's WAL position at the last probe that answered */
  lastLsn: string | null;
  failures: string[];
}

/**
 * Asks the primary `probes` times, `intervalMs` apart, each within `timeoutMs`. Lost only when
 * every one of them fails: one dropped packet is no reason to fail over.
 */
export async function probePrimary(url: string, plan: Pick<DrPlan, 'probes' | 'probeIntervalMs' | 'probeTimeoutMs'>, onProbe: (n: number) => void = () => undefined): Promise<ProbeOutcome> {
  let firstFailedAt: string | null = null;
  let lastLsn: string | null = null;
  const failures: string[] = [];
  for (let n = 1; n <= plan.probes; n++) {
    onProbe(n);
    const startedAt = new Date().toISOString();
    try {
      lastLsn = await withTimeout(plan.probeTimeoutMs, `no answer within ${plan.probeTimeoutMs} ms`, () => currentLsn(url, plan.probeTimeoutMs));
      firstFailedAt = null;
      failures.length = 0;
    } catch (err) {
      firstFailedAt ??= startedAt;
      failures.push(`${startedAt}: ${(err as Error).message}`);
    }
    if (n < plan.probes) await sleep(plan.probeIntervalMs);
  }
  return { lost: failures.length === plan.probes, firstFailedAt, lastLsn, failures };
}

async function currentLsn(url: string, timeoutMs: number): Promise<string> {
  const c = await connect(url, 'tenantsafe-dr-probe', { timeoutMs });
  try {
    const r = await c.query<{ lsn: string; recovering: boolean }>(`SELECT pg_current_wal_lsn()::text AS lsn, pg_is_in_recovery() AS recovering`);
    return r.rows[0].lsn;
  } finally {
    await c.end().catch(() => undefined);
  }
}

/** Where the standby is: what it received and replayed, and whether it streams from the primary. */
export interface StandbyPosition {
  inRecovery: boolean;
  streaming: boolean;
  /** the end of what it will have replayed once promoted (received or replayed, whichever is further) */
  lsn: string | null;
  /** the commit time of the last transaction it replayed */
  lastReplayAt: string | null;
}

export async function standbyPosition(url: string, timeoutMs: number): Promise<StandbyPosition> {
  const c = await connect(url, 'tenantsafe-dr', { timeoutMs }).catch((err: Error) => {
    throw refused(`The standby at ${hostPortOf(url)} is unreachable: ${err.message}`, 'Start the standby (or check dr.standby.host and port); a failover needs a standby to promote.');
  });
  try {
    const r = await c.query<{ recovering: boolean; received: string | null; replayed: string | null; at: string | null; streaming: boolean }>(
      `SELECT pg_is_in_recovery() AS recovering, pg_last_wal_receive_lsn()::text AS received, pg_last_wal_replay_lsn()::text AS replayed,
              ${microsText('pg_last_xact_replay_timestamp()')} AS at,
              EXISTS (SELECT FROM pg_stat_wal_receiver WHERE status = 'streaming') AS streaming`,
    );
    const row = r.rows[0];
    const positions = [row.received, row.replayed].filter((x): x is string => x !== null);
    const lsn = positions.length ? positions.reduce((a, b) => (parseLsn(a) >= parseLsn(b) ? a : b)) : null;
    return { inRecovery: row.recovering, streaming: row.streaming, lsn, lastReplayAt: row.at };
  } finally {
    await c.end().catch(() => undefined);
  }
}

/** What a failover now would lose: the old primary's last commit (or last LSN) against the standby. */
export interface LossEstimate {
  /** WAL bytes the old primary wrote that the standby lacks; null when the old primary's end is unknown */
  bytes: number | null;
  /** commit time of the old primary's last commit minus the standby's last replayed one, when both are known */
  ms: number | null;
  /** where the old primary's end came from */
  source: 'wal-on-disk' | 'last-probe' | 'unknown';
  oldPrimaryLsn: string | null;
  standbyLsn: string | null;
}

/**
 * The loss of promoting the standby at `standby`: with the old primary's data directory on this
 * host, its last commit read from the WAL it left (exact, even after kill -9); else its position
 * at the last probe that answered (bytes only); else unknown.
 */
export async function lossEstimate(oldPrimaryDataDir: string | null, lastProbeLsn: string | null, standby: Pick<StandbyPosition, 'lsn' | 'lastReplayAt'>): Promise<LossEstimate> {
  const lastCommit = oldPrimaryDataDir ? await lastCommitOnDisk(oldPrimaryDataDir) : null;
  const standbyEnd = standby.lsn === null ? null : parseLsn(standby.lsn);
  if (lastCommit && standbyEnd !== null) {
    const lost = parseLsn(lastCommit.lsn) >= standbyEnd;
    const ms = lost && standby.lastReplayAt ? Number((parseMicros(lastCommit.time) - parseMicros(standby.lastReplayAt)) / 1000n) : lost ? null : 0;
    return { bytes: lost ? Number(parseLsn(lastCommit.lsn) - standbyEnd) : 0, ms, source: 'wal-on-disk', oldPrimaryLsn: lastCommit.lsn, standbyLsn: standby.lsn };
  }
  if (lastProbeLsn && standbyEnd !== null) {
    const gap = parseLsn(lastProbeLsn) - standbyEnd;
    return { bytes: gap > 0n ? Number(gap) : 0, ms: null, source: 'last-probe', oldPrimaryLsn: lastProbeLsn, standbyLsn: standby.lsn };
  }
  return { bytes: null, ms: null, source: 'unknown', oldPrimaryLsn: null, standbyLsn: standby.lsn };
}

/** The last commit a (possibly crashed) cluster wrote: its WAL from the latest checkpoint on, read with pg_waldump. */
async function lastCommitOnDisk(dataDir: string): Promise<{ lsn: string; time: string } | null> {
  if (!fs.existsSync(path.join(dataDir, 'pg_wal'))) return null;
  const control = await runPgTool('pg_controldata', ['-D', dataDir], { env: { LC_ALL: 'C' } });
  const redo = /Latest checkpoint's REDO location:\s+(\S+)/.exec(control.output)?.[1];
  const timeline = /Latest checkpoint's TimeLineID:\s+(\d+)/.exec(control.output)?.[1];
  if (control.code !== 0 || !redo || !timeline) return null;
  const commits = (await readWalMarksFrom(path.join(dataDir, 'pg_wal'), redo, Number(timeline))).filter((m) => m.kind === 'commit');
  const last = commits[commits.length - 1];
  return last ? { lsn: last.lsn, time: last.time! } : null;
}

/**
 * Refuses a failover that would do harm, unless forced: a primary that answers, a standby that is
 * not one (promoted already, or a fenced old primary), a standby further behind than maxLagBytes.
 * The loss estimate is in the message, so whoever forces it knows the price.
 */
export function judgeFailover(plan: Pick<DrPlan, 'maxLagBytes' | 'standbyState' | 'primary' | 'standby'>, probe: ProbeOutcome, standby: StandbyPosition, loss: LossEstimate, force: boolean): void {
  if (!standby.inRecovery || plan.standbyState !== 'streaming') {
    throw refused(
      `The standby at ${plan.standby.host}:${plan.standby.port} is not replicating (${standby.inRecovery ? `its state is ${plan.standbyState}` : 'it is not in recovery: a primary itself'}); promoting it would not recover the primary's data.`,
      'Rebuild it as a standby of the primary first (`tenantsafe standby create`); nothing was changed.',
    );
  }
  if (!probe.lost && !force) {
    throw refused(
      `The primary at ${plan.primary.host}:${plan.primary.port} answered ${probe.failures.length ? 'some' : 'every one'} of the probes: it is not lost.`,
      'Use `tenantsafe switchover` for a planned move with no loss, or pass --force to fail over anyway (the primary is fenced); nothing was changed.',
    );
  }
  if (loss.bytes !== null && loss.bytes > plan.maxLagBytes && !force) {
    throw refused(
      `The standby is ${loss.bytes} bytes of WAL behind the primary (dr.standby.maxLag ${plan.maxLagBytes})${loss.ms !== null ? `, about ${loss.ms} ms of commits` : ''}: a failover now would lose them.`,
      `Bring the standby closer (is it streaming?), or pass --force to accept the loss of ${loss.bytes} bytes${loss.ms !== null ? ` (${loss.ms} ms)` : ''}; nothing was changed.`,
    );
  }
}

/**
 * Fences a server that still answers: read-only by default for every new transaction (kept across
 * a restart), its client sessions ended. Returns its WAL position after that: the last LSN it
 * wrote. Null when it is unreachable (the endpoint alone fences it then).
 */
export async function fenceServer(url: string, timeoutMs: number): Promise<string | null> {
  let c;
  try {
    c = await connect(url, 'tenantsafe-dr-fence', { timeoutMs });
  } catch {
    return null;
  }
  try {
    await c.query(`ALTER SYSTEM SET default_transaction_read_only = on`);
    await c.query(`SELECT pg_reload_conf()`);
    await c.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()`);
    const r = await c.query<{ lsn: string }>(`SELECT pg_current_wal_lsn()::text AS lsn`);
    return r.rows[0].lsn;
  } finally {
    await c.end().catch(() => undefined);
  }
}

/** Takes a server's fence down again (a switchover that failed before the promotion). */
export async function unfenceServer(url: string): Promise<void> {
  await withConnection(url, async (c) => {
    await c.query(`ALTER SYSTEM RESET default_transaction_read_only`);
    await c.query(`SELECT pg_reload_conf()`);
  });
}

/** Waits until the standby has replayed `lsn` (a switchover's final position of the old primary). */
export async function waitForReplay(url: string, lsn: string, timeoutMs: number): Promise<StandbyPosition> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const position = await withConnection(url, async (c) => {
      const r = await c.query<{ replayed: string | null; at: string | null }>(`SELECT pg_last_wal_replay_lsn()::text AS replayed, ${microsText('pg_last_xact_replay_timestamp()')} AS at`);
      return r.rows[0];
    });
    if (position.replayed && parseLsn(position.replayed) >= parseLsn(lsn)) return { inRecovery: true, streaming: true, lsn: position.replayed, lastReplayAt: position.at };
    if (Date.now() > deadline) {
      throw new TenantsafeError(
        ErrorType.DatabaseUnreachable,
        `The standby replayed up to ${position.replayed ?? 'nothing'}, not the primary's last position ${lsn}, within ${timeoutMs} ms.`,
        'Check that the standby streams from the primary (`tenantsafe standby status`), then run the switchover again.',
      );
    }
    await sleep(50);
  }
}

/**
 * Writes through the endpoint until a write commits on the expected server (a transaction that
 * takes a transaction id commits a record), or the deadline passes. Returns when it first did.
 */
export async function checkWrite(endpoint: DrEndpointConfig, expected: Pick<DrNode, 'port'>, timeoutMs: number): Promise<{ writtenAt: string; attempts: number; lastError?: string }> {
  const deadline = Date.now() + timeoutMs;
  let lastError = '';
  for (let attempts = 1; ; attempts++) {
    try {
      const c = await connect(endpoint.url, 'tenantsafe-dr-check', { pgbouncer: true, timeoutMs: 2_000 });
      try {
        const results = (await c.query(`BEGIN READ WRITE; SELECT txid_current()::text AS xid, inet_server_port() AS port; COMMIT`)) as unknown as { rows: { port: number | null }[] }[];
        const port = results[1].rows[0].port;
        if (port === null || port === expected.port) return { writtenAt: new Date().toISOString(), attempts };
        lastError = `the write reached the server on port ${port}, not ${expected.port}`;
      } finally {
        await c.end().catch(() => undefined);
      }
    } catch (err) {
      lastError = (err as Error).message;
    }
    if (Date.now() > deadline) {
      throw new TenantsafeError(
        ErrorType.DatabaseUnreachable,
        `No write reached the new primary through the endpoint (${endpoint.database}) within ${timeoutMs} ms; the last attempt: ${lastError}.`,
        'Check PgBouncer (SHOW DATABASES on its admin console) and the new primary; the step is retried.',
      );
    }
    await sleep(100);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function withTimeout<T>(ms: number, message: string, fn: () => Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([fn(), new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(message)), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}
