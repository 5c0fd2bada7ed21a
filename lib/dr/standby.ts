// The standby of the self-managed provider (fullBackup.provider postgres): a streaming replica
// built from our newest base backup plus the archived WAL, held close by a physical replication
// slot on the primary; its status; its promotion; and the first half of failback, the old primary
// rebuilt as a standby of the new one (pg_rewind, else a fresh copy with pg_basebackup).
//
// Every function takes its nodes explicitly, so that after a failover a caller swaps the roles:
//   createStandby(engine, { primaryUrl, standby, synchronous })     → CreateStandbyResult
//   standbyStatus({ primaryUrl, standby, maxLagBytes })             → StandbyStatus
//   promoteStandby(standbyUrl)                                      → { promotedAt, timeline, timelineStartLsn, lastReplayedCommitAt }
//   rebuildAsStandby({ primaryUrl, standby, synchronous })          → RebuildResult
//   applySynchronousMode(primaryUrl, slot, synchronous)             (synchronous_standby_names on the primary)
//   nodeUrl(likeUrl, host, port)                                    (a node's URL with the primary's credentials)
// A node is { dataDir, host, port, slot }: the data directory on this machine (the worker's), the
// address it listens on, and the slot on its primary, which is also its application_name (the
// name synchronous_standby_names gives).
//
// What the primary needs: wal_level replica (or logical); max_wal_senders and
// max_replication_slots with room for the standby besides the WAL archiver; pg_hba.conf lines
// letting the standby's host make replication connections; a role with REPLICATION (pg_rewind
// also reads files through SQL: a superuser, or a role granted pg_ls_dir, pg_stat_file,
// pg_read_binary_file); full_page_writes on (the default); and wal_log_hints = on (or data
// checksums), without which a failed primary cannot be rewound and failback copies it whole.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Client } from 'pg';
import type { Engine } from '../engine';
import type { ObjectStore } from '../storage/types';
import { ErrorType, TenantsafeError } from '../errors';
import { connect, microsText, toolConnection, withConnection } from '../pg';
import { extractBaseBackup, prepareDataDir } from '../pitr/restore';
import { startWalServer } from '../pitr/walServer';
import { PrivateCluster } from '../postgres/cluster';
import { chownToPostgres, runPgTool } from '../postgres/tools';
import { logTail } from '../process';
import { findWalGaps, listWalArchive } from '../wal/archive';
import { ensureSlot } from '../wal/archiver';
import { waitForArchivedWal } from '../fullBackup/basebackup';
import { formatLsn, parseLsn, segmentOfLsn } from '../wal/names';

export interface StandbyNode {
  /** the data directory, on the machine that runs this code */
  dataDir: string;
  /** the address it listens on (listen_addresses) and is reached at */
  host: string;
  port: number;
  /** the physical replication slot on its primary; also its application_name */
  slot: string;
}

export interface StandbyProgress {
  phase: 'checking' | 'extracting' | 'copying' | 'rewinding' | 'catching-up' | 'streaming';
  bytes?: number;
  replayLsn?: string | null;
}

export interface CreateStandbyOptions {
  primaryUrl: string;
  standby: StandbyNode;
  synchronous: boolean;
  onProgress?: (p: StandbyProgress) => void;
  signal?: AbortSignal;
}

/** What a build and a rebuild report of the standby they leave streaming. */
export interface StandbyReport {
  dataDir: string;
  host: string;
  port: number;
  slot: string;
  synchronous: boolean;
  replayLsn: string | null;
  primaryLsn: string | null;
  tookMs: number;
}

/** What a build or a rebuild reports of the standby it left, and how long it took since `started`. */
function standbyReport(standby: StandbyNode, synchronous: boolean, started: number, replayLsn: string | null, primaryLsn: string | null): StandbyReport {
  return { dataDir: standby.dataDir, host: standby.host, port: standby.port, slot: standby.slot, synchronous, replayLsn, primaryLsn, tookMs: Date.now() - started };
}

export interface CreateStandbyResult extends StandbyReport {
  /** created: built now; rebuilt: a half-built directory was cleaned first; running / restarted: a standby built earlier, left as it is (started when it was stopped) */
  outcome: 'created' | 'rebuilt' | 'running' | 'restarted';
  /** the base backup it was built from (null when it existed already) */
  backupId: string | null;
  /** false when the primary has neither wal_log_hints nor data checksums: after a failover it could not be rewound, failback copies it whole */
  rewindable: boolean;
}

export type StandbyState = 'streaming' | 'catching-up' | 'stopped' | 'absent' | 'not-replicating';

export interface StandbyStatus {
  state: StandbyState;
  dataDir: string;
  host: string;
  port: number;
  primaryReachable: boolean;
  /** the primary's current WAL position (flushed: what it can send) */
  primaryLsn: string | null;
  /** the standby's last replayed and received positions */
  replayLsn: string | null;
  receiveLsn: string | null;
  /** primaryLsn - replayLsn */
  lagBytes: number | null;
  /** pg_stat_replication's lags on the primary (null when idle or not streaming) */
  writeLagSeconds: number | null;
  flushLagSeconds: number | null;
  replayLagSeconds: number | null;
  /** the commit time of the last transaction the standby replayed (pg_last_xact_replay_timestamp) */
  lastReplayedCommitAt: string | null;
  /** pg_stat_replication's sync_state: sync, async, potential, quorum */
  syncState: string | null;
  /** the primary's synchronous_standby_names */
  synchronousStandbyNames: string | null;
  slot: { name: string; active: boolean; restartLsn: string | null; retainedBytes: number | null; walStatus: string | null } | null;
  /** lagBytes is over the configured maximum (dr.standby.maxLag) */
  overMaxLag: boolean;
}

export interface PromoteResult {
  /** the promoted server's clock when promotion had finished, to the microsecond */
  promotedAt: string;
  /** the new timeline */
  timeline: number;
  /** where the new timeline starts: the end of the last record replayed before promotion */
  timelineStartLsn: string;
  /** the commit time of the last transaction replayed, when known */
  lastReplayedCommitAt: string | null;
}

export interface RebuildOptions {
  /** the NEW primary */
  primaryUrl: string;
  /** the OLD primary's node: its data directory becomes a standby of the new primary */
  standby: StandbyNode;
  synchronous: boolean;
  /**
   * Our WAL archive: pg_rewind reads from it the old primary's WAL back to the last checkpoint
   * before the timelines diverged, which the old primary has usually recycled by then.
   */
  archive?: ObjectStore;
  onProgress?: (p: StandbyProgress) => void;
  signal?: AbortSignal;
}

export interface RebuildResult extends StandbyReport {
  /** rewind: pg_rewind of the old directory; basebackup: a fresh copy of the new primary; running: it already streams from the new primary */
  path: 'rewind' | 'basebackup' | 'running';
  /** why it did not rewind (basebackup path) */
  reason: string | null;
}

/** XLOG_BLCKSZ: PostgreSQL's WAL page size (a compile-time constant nobody changes). */
const walPageSize = 8192;

/** How long a standby may replay nothing new without streaming before we call it stuck. */
const stallMs = 120_000;

/** The file that says a data directory is a standby tenantsafe built, and whether the build finished. */
const markerFile = 'tenantsafe-standby.json';

interface StandbyMarker {
  state: 'building' | 'ready';
  systemIdentifier: string;
  source: 'backup' | 'rewind' | 'basebackup';
  backupId?: string;
  at: string;
}

/** A node's URL: `like`'s user, password, database and options, at host:port. */
export function nodeUrl(like: string, host: string, port: number): string {
  const u = new URL(like);
  u.hostname = host;
  u.port = String(port);
  return u.toString();
}

/** host:port as the CLI takes it. */
export function parseHostPort(text: string): { host: string; port: number } {
  const m = /^([^:\s]+):(\d{1,5})$/.exec(text);
  if (!m || Number(m[2]) < 1 || Number(m[2]) > 65535) {
    throw new TenantsafeError(ErrorType.BadInput, `${JSON.stringify(text)} is not host:port.`, 'Pass the new primary as --primary <host>:<port>, e.g. 10.0.0.5:5432.');
  }
  return { host: m[1], port: Number(m[2]) };
}

function readMarker(dataDir: string): StandbyMarker | null {
  try {
    return JSON.parse(fs.readFileSync(path.join(dataDir, markerFile), 'utf8')) as StandbyMarker;
  } catch {
    return null;
  }
}

function writeMarker(dataDir: string, marker: Omit<StandbyMarker, 'at'>): void {
  const file = path.join(dataDir, markerFile);
  fs.writeFileSync(file, JSON.stringify({ ...marker, at: new Date().toISOString() }) + '\n');
  chownToPostgres([file]);
}

function assertAbsolute(dir: string): void {
  if (!path.isAbsolute(dir)) throw new TenantsafeError(ErrorType.BadInput, `${JSON.stringify(dir)} is not an absolute path.`, 'Give the data directory as an absolute path.');
}

function isEmptyOrMissing(dir: string): boolean {
  return !fs.existsSync(dir) || fs.readdirSync(dir).length === 0;
}

interface PrimaryFacts {
  systemIdentifier: string;
  timeline: number;
  currentLsn: string;
  rewindable: boolean;
}

/** What a primary must be to feed a standby; BadInput / BadConfig when it is not one. */
async function primaryFacts(url: string): Promise<PrimaryFacts> {
  return withConnection(url, async (c) => {
    const r = await c.query<{ sysid: string; recovering: boolean; wal_level: string; senders: number; rewindable: boolean }>(
      `SELECT system_identifier::text AS sysid, pg_is_in_recovery() AS recovering, current_setting('wal_level') AS wal_level,
              current_setting('max_wal_senders')::int AS senders,
              current_setting('wal_log_hints') = 'on' OR current_setting('data_checksums') = 'on' AS rewindable
         FROM pg_control_system()`,
    );
    const f = r.rows[0];
    if (f.recovering) throw new TenantsafeError(ErrorType.BadInput, `The server at ${hostPortOf(url)} is itself a standby (in recovery), not a primary.`, 'Name the current primary (after a failover: the promoted node).');
    if (f.wal_level === 'minimal' || f.senders < 1) {
      throw new TenantsafeError(ErrorType.BadConfig, `The primary at ${hostPortOf(url)} cannot feed a standby (wal_level ${f.wal_level}, max_wal_senders ${f.senders}).`, 'Set wal_level = replica and max_wal_senders of at least 3 on the primary, then restart it.');
    }
    // flushed: what a walsender, and so the WAL archiver, can have; records past it wait in memory for the next flush
    const pos = await c.query<{ lsn: string; timeline: number }>(`SELECT pg_current_wal_flush_lsn()::text AS lsn, ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int AS timeline`);
    return { systemIdentifier: f.sysid, timeline: pos.rows[0].timeline, currentLsn: pos.rows[0].lsn, rewindable: f.rewindable };
  });
}

export function hostPortOf(url: string): string {
  const u = new URL(url);
  return `${u.hostname}:${u.port || 5432}`;
}

function assertNotThePrimary(primaryUrl: string, node: StandbyNode): void {
  if (hostPortOf(primaryUrl) === `${node.host}:${node.port}`) {
    throw new TenantsafeError(ErrorType.BadInput, `The standby's address ${node.host}:${node.port} is the primary's.`, 'Give the standby a port (dr.standby.port, --port) other than the primary\'s.');
  }
}

/** The settings that make a data directory a standby of `primaryUrl`, on the node's address. */
function standbySettings(primaryUrl: string, node: StandbyNode, restoreCommand: string): Record<string, string> {
  const conninfo = new URL(primaryUrl);
  conninfo.searchParams.set('application_name', node.slot);
  return {
    listen_addresses: node.host,
    primary_conninfo: conninfo.toString(),
    primary_slot_name: node.slot,
    restore_command: restoreCommand,
    recovery_target_timeline: 'latest',
    hot_standby: 'on',
    // so that this node too can be rewound once it has been promoted and has failed in turn
    wal_log_hints: 'on',
  };
}

/**
 * A copy of a primary carries its synchronous_standby_names (ALTER SYSTEM, postgresql.auto.conf):
 * promoted, it would wait for a standby it does not have. A new primary gets its own by
 * applySynchronousMode.
 */
function dropSynchronousNames(dataDir: string): void {
  const file = path.join(dataDir, 'postgresql.auto.conf');
  if (!fs.existsSync(file)) return;
  const text = fs.readFileSync(file, 'utf8');
  const kept = text.split('\n').filter((l) => !/^\s*synchronous_standby_names\s*=/.test(l));
  fs.writeFileSync(file, kept.join('\n'));
}

/**
 * Synchronous: the primary's synchronous_standby_names names this standby, so every commit waits
 * for it (RPO 0). Asynchronous: cleared, if it named this standby (another setting is left alone).
 */
export async function applySynchronousMode(primaryUrl: string, slot: string, synchronous: boolean): Promise<void> {
  await withConnection(primaryUrl, async (c) => {
    const current = (await c.query<{ names: string }>(`SELECT current_setting('synchronous_standby_names') AS names`)).rows[0].names;
    const ours = `"${slot}"`;
    if (synchronous && current !== ours) await c.query(`ALTER SYSTEM SET synchronous_standby_names = '${ours}'`);
    else if (!synchronous && (current === ours || current === slot)) await c.query(`ALTER SYSTEM RESET synchronous_standby_names`);
    else return;
    await c.query(`SELECT pg_reload_conf()`);
  });
}

/** Makes sure the slot exists on the primary and nobody holds it (a walsender of a standby we stopped lets go within seconds). Returns whether it was created. */
async function freeSlot(primaryUrl: string, slot: string): Promise<boolean> {
  return withConnection(primaryUrl, async (c) => {
    const existed = (await c.query(`SELECT 1 FROM pg_replication_slots WHERE slot_name = $1`, [slot])).rowCount !== 0;
    for (let i = 0; ; i++) {
      const holder = await ensureSlot(c, slot);
      if (!holder) return !existed;
      if (i > 100) {
        throw new TenantsafeError(ErrorType.BadConfig, `Replication slot "${slot}" on the primary is in use by process ${holder} (another standby?).`, 'Set dr.standby.slot to a slot no other standby uses, or stop that standby.');
      }
      await sleep(100);
    }
  });
}

/** Drops the slot once no walsender holds it (one of a standby just stopped lets go within seconds). */
async function dropSlot(primaryUrl: string, slot: string): Promise<void> {
  await withConnection(primaryUrl, async (c) => {
    for (let i = 0; i < 50; i++) {
      const r = await c.query<{ active: boolean }>(`SELECT active FROM pg_replication_slots WHERE slot_name = $1`, [slot]);
      if (r.rowCount === 0) return;
      if (!r.rows[0].active) {
        await c.query(`SELECT pg_drop_replication_slot($1)`, [slot]);
        return;
      }
      await sleep(100);
    }
  });
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

interface ReplicationRow {
  state: string;
  sync_state: string;
  replay_lsn: string | null;
}

async function replicationOf(c: Client, slot: string): Promise<ReplicationRow | undefined> {
  const r = await c.query<ReplicationRow>(`SELECT state, sync_state, replay_lsn::text FROM pg_stat_replication WHERE application_name = $1 ORDER BY backend_start DESC LIMIT 1`, [slot]);
  return r.rows[0];
}

/** Waits until the primary streams to the standby; fails when the standby stops, the archive served a bad segment, or it makes no progress for stallMs. */
async function waitUntilStreaming(cluster: PrivateCluster, primaryUrl: string, slot: string, walErrors: string[], onProgress?: (p: StandbyProgress) => void, signal?: AbortSignal): Promise<string | null> {
  const primary = await connect(primaryUrl, 'tenantsafe-standby');
  try {
    let last: string | null = null;
    let movedAt = Date.now();
    for (;;) {
      signal?.throwIfAborted();
      if (!cluster.isRunning() || walErrors.length > 0) throw standbyFailed(cluster, walErrors, 'stopped while catching up');
      const [replay] = await cluster.psql<{ lsn: string | null }>(`SELECT pg_last_wal_replay_lsn()::text AS lsn`).catch(() => [{ lsn: null }]);
      const row = await replicationOf(primary, slot);
      onProgress?.({ phase: row?.state === 'streaming' ? 'streaming' : 'catching-up', replayLsn: replay.lsn });
      if (row?.state === 'streaming') return replay.lsn;
      if (replay.lsn !== last) {
        last = replay.lsn;
        movedAt = Date.now();
      } else if (Date.now() - movedAt > stallMs) {
        throw standbyFailed(cluster, walErrors, `has replayed nothing for ${stallMs / 1000} s and does not stream from the primary`);
      }
      await sleep(200);
    }
  } finally {
    await primary.end();
  }
}

function standbyFailed(cluster: PrivateCluster, walErrors: string[], what: string): TenantsafeError {
  return new TenantsafeError(
    ErrorType.RecoveryFailed,
    `The standby in ${cluster.dataDir} ${what}${walErrors.length ? ` (WAL archive: ${walErrors.join('; ')})` : ''}:${logTail(cluster.logFile)}`,
    'Read the server log above. "could not connect to the primary server": let the standby\'s host make replication connections (pg_hba.conf, a role with REPLICATION); then run the command again.',
  );
}

/** Checks what `standby create` can check without changing anything; returns the base backup it would start from, or null when a standby is already there. */
export async function checkStandbyCreate(engine: Engine, opts: Pick<CreateStandbyOptions, 'primaryUrl' | 'standby'>): Promise<{ backupId: string | null; primary: PrimaryFacts; marker: StandbyMarker | null }> {
  if (engine.config.fullBackup.provider !== 'postgres') {
    throw new TenantsafeError(
      ErrorType.BadConfig,
      `tenantsafe builds standbys of self-managed PostgreSQL only (fullBackup.provider postgres); this config's provider is ${engine.config.fullBackup.provider}.`,
      'On Supabase, use the provider\'s read replicas; remove dr.standby from this config.',
    );
  }
  const { standby } = opts;
  assertAbsolute(standby.dataDir);
  assertNotThePrimary(opts.primaryUrl, standby);
  const primary = await primaryFacts(opts.primaryUrl);
  const marker = readMarker(standby.dataDir);
  if (!marker && !isEmptyOrMissing(standby.dataDir)) {
    throw new TenantsafeError(ErrorType.BadInput, `${standby.dataDir} is not empty and holds no standby tenantsafe built; nothing was changed.`, 'Point dr.standby.dataDir at an empty or missing directory (or remove this one, if nothing in it is needed).');
  }
  if (marker && marker.systemIdentifier !== primary.systemIdentifier) {
    throw new TenantsafeError(
      ErrorType.BadInput,
      `${standby.dataDir} holds a standby of another cluster (system ${marker.systemIdentifier}; the primary's is ${primary.systemIdentifier}); nothing was changed.`,
      'Remove that directory, or point dr.standby.dataDir elsewhere.',
    );
  }
  if (marker?.state === 'ready') return { backupId: null, primary, marker };
  const backup = await newestBaseBackup(engine, primary);
  return { backupId: backup.backupId, primary, marker };
}

async function newestBaseBackup(engine: Engine, primary: PrimaryFacts) {
  const backups = (await engine.catalog.listFullBackups()).filter((b) => b.method === 'basebackup' && b.wal !== null);
  const backup = backups.at(-1);
  if (!backup?.wal) {
    throw new TenantsafeError(ErrorType.BackupNotFound, 'There is no full (base) backup to build the standby from; nothing was changed.', 'Run `tenantsafe full-backup --wait` (it also starts the WAL archiver), then `tenantsafe standby create` again.');
  }
  if (backup.wal.timeline !== primary.timeline) {
    throw new TenantsafeError(
      ErrorType.TargetOutsideWindow,
      `The newest base backup ${backup.backupId} is of timeline ${backup.wal.timeline}, the primary is on timeline ${primary.timeline} (a failover since); nothing was changed.`,
      'Take a base backup of the current primary (`tenantsafe full-backup --wait`), then run standby create again.',
    );
  }
  const gap = findWalGaps(await listWalArchive(engine.store), backup.wal.segmentSize, backup.wal.startSegment).at(-1);
  if (gap) {
    throw new TenantsafeError(
      ErrorType.TargetOutsideWindow,
      `The WAL archive misses ${gap.from} to ${gap.to}, after the newest base backup ${backup.backupId}: a standby cannot be built from it; nothing was changed.`,
      'Take a new base backup (`tenantsafe full-backup --wait`), then run standby create again.',
    );
  }
  return { ...backup, wal: backup.wal };
}

/**
 * Builds the standby (see the top of this file). Idempotent: a standby built earlier is left as it
 * is (started if stopped); a half-built directory (marker `building`) is cleaned and built again.
 */
export async function createStandby(engine: Engine, opts: CreateStandbyOptions): Promise<CreateStandbyResult> {
  const started = Date.now();
  const { standby, primaryUrl } = opts;
  opts.onProgress?.({ phase: 'checking' });
  const check = await checkStandbyCreate(engine, opts);
  const done = (outcome: CreateStandbyResult['outcome'], replayLsn: string | null, primaryLsn: string | null): CreateStandbyResult => ({
    outcome,
    backupId: outcome === 'created' || outcome === 'rebuilt' ? check.backupId : null,
    ...standbyReport(standby, opts.synchronous, started, replayLsn, primaryLsn),
    rewindable: check.primary.rewindable,
  });

  if (check.marker?.state === 'ready') {
    const cluster = await PrivateCluster.create({ dataDir: standby.dataDir, port: standby.port, settings: standbySettings(primaryUrl, standby, '') });
    const wasRunning = cluster.isRunning();
    await cluster.start();
    const [{ recovering }] = await cluster.psql<{ recovering: boolean }>(`SELECT pg_is_in_recovery() AS recovering`);
    if (!recovering) {
      throw new TenantsafeError(
        ErrorType.BadInput,
        `${standby.dataDir} was promoted: it is a primary now, not a standby; nothing was changed.`,
        'After a failover the old primary becomes the standby: `tenantsafe standby rebuild --data-dir <old primary dir> --primary <new primary host:port>`.',
      );
    }
    const replayLsn = await waitUntilStreaming(cluster, primaryUrl, standby.slot, [], opts.onProgress, opts.signal);
    await applySynchronousMode(primaryUrl, standby.slot, opts.synchronous);
    return done(wasRunning ? 'running' : 'restarted', replayLsn, (await primaryFacts(primaryUrl)).currentLsn);
  }

  const backup = await newestBaseBackup(engine, check.primary);
  if (check.marker) await removeDataDir(standby.dataDir);
  const createdSlot = await freeSlot(primaryUrl, standby.slot);
  // The slot keeps the primary's WAL from here on; the archive must hold everything before it.
  const { currentLsn, timeline } = await primaryFacts(primaryUrl);
  // The archive's partial segment ends at its last non-zero byte, which may lie a few bytes short
  // of the last record's end until the next record comes; the WAL page holding the position starts
  // with a header that is never zero, so reaching that page's start proves the archiver has come this far.
  const reach = formatLsn(parseLsn(currentLsn) & ~BigInt(walPageSize - 1));
  try {
    const { wal } = backup;
    await waitForArchivedWal(engine.store, { ...wal, stopLsn: reach, stopSegment: segmentOfLsn(reach, timeline, wal.segmentSize) }, engine.config.fullBackup.archiveWaitMs, opts.signal);
  } catch (err) {
    if (createdSlot) await dropSlot(primaryUrl, standby.slot).catch(() => undefined);
    if (!(err instanceof TenantsafeError && err.type === ErrorType.WalArchiveBehind)) throw err;
    throw new TenantsafeError(
      ErrorType.TargetOutsideWindow,
      `The WAL archive does not reach the primary's position ${currentLsn} within fullBackup.archiveWait (${err.message.replace(/ HINT:.*/, '')}); nothing was changed.`,
      'Start the WAL archiver (`tenantsafe full-backup --wait` starts it; `tenantsafe wal status` shows it), then run standby create again.',
    );
  }

  let cluster: PrivateCluster | undefined;
  let replayLsn: string | null;
  try {
    fs.mkdirSync(standby.dataDir, { recursive: true, mode: 0o700 });
    writeMarker(standby.dataDir, { state: 'building', systemIdentifier: check.primary.systemIdentifier, source: 'backup', backupId: backup.backupId });
    await extractBaseBackup(engine.store, backup, standby.dataDir, (bytes) => opts.onProgress?.({ phase: 'extracting', bytes }), opts.signal);
    prepareDataDir(standby.dataDir, 'standby.signal');
    dropSynchronousNames(standby.dataDir);
    fs.rmSync(path.join(standby.dataDir, 'log'), { recursive: true, force: true }); // the primary's server log, copied with it

    // the archive as it is now, up to the slot's start at least: replay goes on by streaming from there
    const walServer = await startWalServer({ store: engine.store, listing: await listWalArchive(engine.store), segmentSize: backup.wal.segmentSize, spoolBeside: standby.dataDir, firstSegment: backup.wal.startSegment });
    try {
      cluster = await PrivateCluster.create({ dataDir: standby.dataDir, port: standby.port, settings: standbySettings(primaryUrl, standby, walServer.restoreCommand) });
      await cluster.start();
      replayLsn = await waitUntilStreaming(cluster, primaryUrl, standby.slot, walServer.errors, opts.onProgress, opts.signal);
      // streaming from the slot now: the archive's server goes with this process, so the standby must not ask it again
      cluster.appendConfig({ restore_command: '' });
      await cluster.psql(`SELECT pg_reload_conf()`);
    } finally {
      await walServer.stop();
    }
  } catch (err) {
    // nothing streams from the slot now: it would keep the primary's WAL until its disk fills (the run again makes it anew)
    await cluster?.stop('immediate').catch(() => undefined);
    await dropSlot(primaryUrl, standby.slot).catch(() => undefined);
    throw err;
  }
  writeMarker(standby.dataDir, { state: 'ready', systemIdentifier: check.primary.systemIdentifier, source: 'backup', backupId: backup.backupId });
  await applySynchronousMode(primaryUrl, standby.slot, opts.synchronous);
  return done(check.marker ? 'rebuilt' : 'created', replayLsn, (await primaryFacts(primaryUrl)).currentLsn);
}

/** Stops the server of a data directory, if one runs, and removes the directory. */
async function removeDataDir(dataDir: string): Promise<void> {
  // a base backup holds no postmaster.pid: only a server started here leaves one
  if (fs.existsSync(path.join(dataDir, 'postmaster.pid'))) {
    chownToPostgres([dataDir], true); // an attempt killed while extracting as root left files pg_ctl cannot read
    const result = await runPgTool('pg_ctl', ['stop', '-D', dataDir, '-m', 'immediate', '-w', '-t', '60']);
    // "no server running" (exit 3) is what we want too
    if (result.code !== 0 && !/no server running|PID file .* does not exist/i.test(result.output)) {
      throw new TenantsafeError(ErrorType.DatabaseUnreachable, `pg_ctl stop ${dataDir} failed: ${result.output}`, 'Stop that server by hand, then run the command again.');
    }
  }
  fs.rmSync(dataDir, { recursive: true, force: true });
}

/** Where a standby stands; run on the standby's machine, it tells a stopped standby from an absent one. */
export async function standbyStatus(opts: { primaryUrl: string; standby: StandbyNode; maxLagBytes: number }): Promise<StandbyStatus> {
  const { standby } = opts;
  const status: StandbyStatus = {
    state: 'absent',
    dataDir: standby.dataDir,
    host: standby.host,
    port: standby.port,
    primaryReachable: false,
    primaryLsn: null,
    replayLsn: null,
    receiveLsn: null,
    lagBytes: null,
    writeLagSeconds: null,
    flushLagSeconds: null,
    replayLagSeconds: null,
    lastReplayedCommitAt: null,
    syncState: null,
    synchronousStandbyNames: null,
    slot: null,
    overMaxLag: false,
  };
  let replication: { state: string; sync_state: string; write_lag: number | null; flush_lag: number | null; replay_lag: number | null } | undefined;
  try {
    await withConnection(opts.primaryUrl, async (c) => {
      const r = await c.query<{ lsn: string; names: string }>(`SELECT pg_current_wal_flush_lsn()::text AS lsn, current_setting('synchronous_standby_names') AS names`);
      Object.assign(status, { primaryReachable: true, primaryLsn: r.rows[0].lsn, synchronousStandbyNames: r.rows[0].names });
      const rep = await c.query(
        `SELECT state, sync_state, extract(epoch FROM write_lag)::float8 AS write_lag, extract(epoch FROM flush_lag)::float8 AS flush_lag, extract(epoch FROM replay_lag)::float8 AS replay_lag
           FROM pg_stat_replication WHERE application_name = $1 ORDER BY backend_start DESC LIMIT 1`,
        [standby.slot],
      );
      replication = rep.rows[0];
      const slot = await c.query<{ active: boolean; restart_lsn: string | null; wal_status: string | null; retained: string | null }>(
        `SELECT active, restart_lsn::text, wal_status, pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint::text AS retained FROM pg_replication_slots WHERE slot_name = $1`,
        [standby.slot],
      );
      const s = slot.rows[0];
      if (s) status.slot = { name: standby.slot, active: s.active, restartLsn: s.restart_lsn, retainedBytes: s.retained === null ? null : Number(s.retained), walStatus: s.wal_status };
    });
  } catch {
    // the primary is down or is not a primary: the standby's side is still worth reporting
  }
  if (replication) {
    Object.assign(status, { syncState: replication.sync_state, writeLagSeconds: replication.write_lag, flushLagSeconds: replication.flush_lag, replayLagSeconds: replication.replay_lag });
  }
  let standbySide: { recovering: boolean; replay: string | null; receive: string | null; last_commit: string | null };
  try {
    standbySide = await withConnection(nodeUrl(opts.primaryUrl, standby.host, standby.port), async (c) => {
      const r = await c.query(
        `SELECT pg_is_in_recovery() AS recovering, pg_last_wal_replay_lsn()::text AS replay, pg_last_wal_receive_lsn()::text AS receive, ${microsText('pg_last_xact_replay_timestamp()')} AS last_commit`,
      );
      return r.rows[0];
    });
  } catch {
    status.state = fs.existsSync(path.join(standby.dataDir, 'PG_VERSION')) ? 'stopped' : 'absent';
    return status;
  }
  Object.assign(status, { replayLsn: standbySide.replay, receiveLsn: standbySide.receive, lastReplayedCommitAt: standbySide.last_commit });
  if (status.primaryLsn && standbySide.replay) status.lagBytes = Math.max(0, Number(parseLsn(status.primaryLsn) - parseLsn(standbySide.replay)));
  status.overMaxLag = status.lagBytes !== null && status.lagBytes > opts.maxLagBytes;
  if (!standbySide.recovering || !replication) status.state = 'not-replicating';
  else status.state = replication.state === 'streaming' ? 'streaming' : 'catching-up';
  return status;
}

/**
 * Promotes a standby (`pg_promote`, waiting until it is done) and says where its recovery ended.
 * Idempotent: a server already promoted (a retried step) is only read, its promotedAt then the
 * time of that read. The new primary has no standby yet: a synchronous_standby_names it inherited
 * from the old primary would make every commit wait for none, so it is cleared.
 */
export async function promoteStandby(standbyUrl: string): Promise<PromoteResult> {
  return withConnection(standbyUrl, async (c) => {
    const [{ recovering }] = (await c.query<{ recovering: boolean }>(`SELECT pg_is_in_recovery() AS recovering`)).rows;
    if (recovering) {
      const [{ promoted }] = (await c.query<{ promoted: boolean }>(`SELECT pg_promote(wait => true, wait_seconds => 60) AS promoted`)).rows;
      if (!promoted) throw new TenantsafeError(ErrorType.DatabaseUnreachable, `The standby at ${hostPortOf(standbyUrl)} did not finish its promotion within 60 s.`, 'Read its server log (it may still be replaying WAL); the step is retried.');
    }
    await c.query(`ALTER SYSTEM SET synchronous_standby_names = ''`);
    await c.query(`SELECT pg_reload_conf()`);
    // after recovery, pg_last_wal_replay_lsn stays at the end of the last record replayed: where the new timeline branches off
    const r = await c.query<{ at: string; timeline: number; start: string; replayed: string | null }>(
      `SELECT ${microsText('clock_timestamp()')} AS at, ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int AS timeline,
              pg_last_wal_replay_lsn()::text AS start, ${microsText('pg_last_xact_replay_timestamp()')} AS replayed`,
    );
    const row = r.rows[0];
    return { promotedAt: row.at, timeline: row.timeline, timelineStartLsn: row.start, lastReplayedCommitAt: row.replayed };
  });
}

/** The system identifier and WAL segment size in a data directory's pg_control. */
async function controlDataOf(dataDir: string): Promise<{ systemIdentifier: string | null; segmentSize: number }> {
  const r = await runPgTool('pg_controldata', ['-D', dataDir]);
  return { systemIdentifier: /Database system identifier:\s+(\d+)/.exec(r.output)?.[1] ?? null, segmentSize: Number(/Bytes per WAL segment:\s+(\d+)/.exec(r.output)?.[1] ?? 16 << 20) };
}

/** pg_rewind of the old primary onto the new one's timeline; the reason it could not, or null when it did. */
async function rewind(primaryUrl: string, target: PrivateCluster, archive: ObjectStore | undefined): Promise<string | null> {
  const args = ['--target-pgdata', target.dataDir];
  const { segmentSize } = await controlDataOf(target.dataDir);
  const walServer = archive ? await startWalServer({ store: archive, listing: await listWalArchive(archive), segmentSize, spoolBeside: target.dataDir }) : undefined;
  try {
    if (walServer) {
      // pg_rewind --restore-target-wal asks the target's own restore_command; the standby's settings replace it after
      target.appendConfig({ restore_command: walServer.restoreCommand });
      args.push('--restore-target-wal');
    }
    // A primary promoted moments ago still names its old timeline in pg_control until its first
    // checkpoint: pg_rewind would then see one timeline and rewind nothing (PostgreSQL's docs ask
    // for a CHECKPOINT on a recently promoted source).
    await withConnection(primaryUrl, (c) => c.query('CHECKPOINT'));
    const source = toolConnection(primaryUrl, 'tenantsafe-rewind');
    const r = await runPgTool('pg_rewind', [...args, '--source-server', source.conninfo], { env: source.env });
    return r.code === 0 ? null : `pg_rewind failed: ${r.output.split('\n').slice(-3).join(' ')}`;
  } finally {
    await walServer?.stop();
  }
}

/**
 * Failback's first half: the old primary's data directory becomes a standby of the new primary.
 * Stopped if it runs; rewound with pg_rewind onto the new primary's timeline; when that cannot be
 * (no directory, no wal_log_hints or checksums, rewind failed) a fresh copy of the new primary
 * replaces it. Refuses a directory of another cluster.
 */
export async function rebuildAsStandby(opts: RebuildOptions): Promise<RebuildResult> {
  const started = Date.now();
  const { standby, primaryUrl } = opts;
  assertAbsolute(standby.dataDir);
  assertNotThePrimary(primaryUrl, standby);
  const primary = await primaryFacts(primaryUrl);
  const result = (path: RebuildResult['path'], reason: string | null, replayLsn: string | null, primaryLsn: string | null): RebuildResult => ({
    path,
    reason,
    ...standbyReport(standby, opts.synchronous, started, replayLsn, primaryLsn),
  });

  let reason: string | null = null;
  const marker = readMarker(standby.dataDir);
  if (isEmptyOrMissing(standby.dataDir)) reason = 'the data directory is missing or empty';
  else if (!fs.existsSync(path.join(standby.dataDir, 'PG_VERSION'))) {
    if (marker?.state !== 'building' || marker.systemIdentifier !== primary.systemIdentifier) {
      throw new TenantsafeError(ErrorType.BadInput, `${standby.dataDir} is not a PostgreSQL data directory; nothing was changed.`, 'Pass the old primary\'s data directory as --data-dir (or a missing directory, for a fresh copy).');
    }
    reason = 'an earlier copy was interrupted';
  } else {
    const sysid = (await controlDataOf(standby.dataDir)).systemIdentifier;
    if (sysid !== primary.systemIdentifier) {
      throw new TenantsafeError(
        ErrorType.BadInput,
        `${standby.dataDir} holds another cluster (system ${sysid ?? 'unknown'}; the new primary's is ${primary.systemIdentifier}); nothing was changed.`,
        'Pass the data directory of the old primary of this database.',
      );
    }
  }

  await freeSlotOrAlreadyStreaming(primaryUrl, standby);
  if (reason === null) {
    const cluster = await PrivateCluster.create({ dataDir: standby.dataDir, port: standby.port });
    if (cluster.isRunning()) {
      const [{ recovering }] = await cluster.psql<{ recovering: boolean }>(`SELECT pg_is_in_recovery() AS recovering`).catch(() => [{ recovering: false }]);
      if (recovering && (await streamingTo(primaryUrl, standby.slot))) {
        await applySynchronousMode(primaryUrl, standby.slot, opts.synchronous);
        return result('running', null, null, (await primaryFacts(primaryUrl)).currentLsn);
      }
      await cluster.stop('fast');
    }
    opts.onProgress?.({ phase: 'rewinding' });
    reason = await rewind(primaryUrl, cluster, opts.archive);
  }
  if (reason !== null) {
    opts.onProgress?.({ phase: 'copying' });
    await freshCopy(primaryUrl, standby, primary.systemIdentifier);
  }

  prepareDataDir(standby.dataDir, 'standby.signal');
  dropSynchronousNames(standby.dataDir);
  writeMarker(standby.dataDir, { state: 'building', systemIdentifier: primary.systemIdentifier, source: reason === null ? 'rewind' : 'basebackup' });
  const cluster = await PrivateCluster.create({ dataDir: standby.dataDir, port: standby.port, settings: standbySettings(primaryUrl, standby, '') });
  let replayLsn: string | null;
  try {
    await cluster.start();
    replayLsn = await waitUntilStreaming(cluster, primaryUrl, standby.slot, [], opts.onProgress, opts.signal);
  } catch (err) {
    await cluster.stop('immediate').catch(() => undefined);
    throw err;
  }
  writeMarker(standby.dataDir, { state: 'ready', systemIdentifier: primary.systemIdentifier, source: reason === null ? 'rewind' : 'basebackup' });
  await applySynchronousMode(primaryUrl, standby.slot, opts.synchronous);
  return result(reason === null ? 'rewind' : 'basebackup', reason, replayLsn, (await primaryFacts(primaryUrl)).currentLsn);
}

async function streamingTo(primaryUrl: string, slot: string): Promise<boolean> {
  return withConnection(primaryUrl, async (c) => (await replicationOf(c, slot))?.state === 'streaming');
}

/** The slot exists on the new primary; held only by this node (then it is left streaming) or by nobody. */
async function freeSlotOrAlreadyStreaming(primaryUrl: string, node: StandbyNode): Promise<void> {
  if (await streamingTo(primaryUrl, node.slot)) return;
  await freeSlot(primaryUrl, node.slot);
}

/**
 * pg_basebackup of the new primary into a directory beside the old one, which it then replaces:
 * an interrupted copy never leaves a half-written directory under the old one's name. A marker
 * in the old place says a copy was under way, so a run after a crash copies again.
 */
async function freshCopy(primaryUrl: string, node: StandbyNode, systemIdentifier: string): Promise<void> {
  const copy = `${node.dataDir}.tenantsafe-copy`;
  await removeDataDir(node.dataDir);
  fs.rmSync(copy, { recursive: true, force: true });
  fs.mkdirSync(node.dataDir, { recursive: true, mode: 0o700 });
  writeMarker(node.dataDir, { state: 'building', systemIdentifier, source: 'basebackup' });
  fs.mkdirSync(copy, { mode: 0o700 });
  chownToPostgres([copy]);
  const source = toolConnection(primaryUrl, 'tenantsafe-standby-copy');
  const r = await runPgTool('pg_basebackup', ['-D', copy, '-d', source.conninfo, '-X', 'stream', '-c', 'fast', '-S', node.slot], { env: source.env });
  if (r.code !== 0) {
    fs.rmSync(copy, { recursive: true, force: true });
    throw new TenantsafeError(ErrorType.DatabaseUnreachable, `pg_basebackup of the new primary ${hostPortOf(primaryUrl)} failed: ${r.output}`, 'Check that the new primary accepts replication connections from this host (pg_hba.conf, a role with REPLICATION), then run the command again.');
  }
  fs.rmSync(node.dataDir, { recursive: true, force: true });
  fs.renameSync(copy, node.dataDir);
}
