// The standby of the self-managed provider on private clusters, end to end through the CLI and a
// worker: built from the newest full backup plus the archived WAL, streaming with a slot, its
// status, synchronous mode, its refusals, promotion, and failback's first half (the old primary
// rebuilt as a standby of the new one by pg_rewind, and by a fresh copy when its directory is
// gone); and a build whose worker is killed mid-way, completed by the next worker.
import { strict as assert } from 'node:assert';
import type { ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseConfig } from '../lib/config';
import { createStandby, promoteStandby, standbyStatus, type StandbyNode } from '../lib/dr/standby';
import { Engine } from '../lib/engine';
import { ErrorType, TenantsafeError } from '../lib/errors';
import { withConnection } from '../lib/pg';
import { PrivateCluster } from '../lib/postgres/cluster';
import { freePorts } from '../lib/process';
import { spawnWorkerProcess } from '../workers/process';
import type { standbyCreate } from '../workflows';
import { standbyWorkflowIds } from '../workflows/messages';
import { startSourceCluster, stopWalArchiver, type SourceCluster } from './support/cluster';
import { adminUrl, databaseUrl } from './support/db';
import { createTestEnv, runCli, type TestEnv } from './support/env';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Resolves once `check` returns a truthy value; fails after `ms`. */
async function eventually<T>(what: string, check: () => Promise<T>, ms = 30_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await check().catch(() => undefined);
    if (value) return value;
    if (Date.now() > deadline) assert.fail(`${what} did not happen within ${ms} ms`);
    await sleep(100);
  }
}

async function ids(url: string): Promise<number[]> {
  return withConnection(url, async (c) => (await c.query<{ id: string }>(`SELECT id FROM events ORDER BY id`)).rows.map((r) => Number(r.id)));
}

async function insert(url: string, note: string, n = 1): Promise<number[]> {
  return withConnection(url, async (c) => (await c.query<{ id: string }>(`INSERT INTO events (note) SELECT $1 FROM generate_series(1, $2) RETURNING id`, [note, n])).rows.map((r) => Number(r.id)));
}

async function inRecovery(url: string): Promise<boolean> {
  return withConnection(url, async (c) => (await c.query<{ r: boolean }>(`SELECT pg_is_in_recovery() AS r`)).rows[0].r);
}

async function slotExists(url: string, slot: string): Promise<boolean> {
  return withConnection(url, async (c) => (await c.query(`SELECT 1 FROM pg_replication_slots WHERE slot_name = $1`, [slot])).rowCount !== 0);
}

/**
 * The catalog lives on the main server: the private cluster becomes a read-only standby when the
 * test fails back.
 */
async function catalogDatabase(): Promise<{ url: string; drop: () => Promise<void> }> {
  const name = `tenantsafe_test_${process.pid}_standby_catalog`;
  await withConnection(adminUrl, async (c) => {
    await c.query(`DROP DATABASE IF EXISTS "${name}"`);
    await c.query(`CREATE DATABASE "${name}"`);
  });
  return { url: databaseUrl(name), drop: () => withConnection(adminUrl, (c) => c.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`)).then(() => undefined) };
}

/** The same environment's engine over a changed config document. */
function engineWith(env: TestEnv, change: (doc: Record<string, any>) => void): Engine {
  const doc = structuredClone(env.document);
  change(doc);
  return new Engine(parseConfig(doc, { env: process.env, source: env.configFile, baseDir: env.dir }));
}

describe('standby: create, status, synchronous mode, promote and failback rebuild (self-managed)', function () {
  this.timeout(240_000);
  let source: SourceCluster;
  let env: TestEnv;
  let node: StandbyNode;
  let standbyUrl: string;
  let catalog: Awaited<ReturnType<typeof catalogDatabase>>;
  const cli = (args: string[]) => runCli([...args, '--json'], { configFile: env.configFile, timeoutMs: 200_000 });

  before(async () => {
    // wal_log_hints: what pg_rewind needs of the old primary at failback
    source = await startSourceCluster('app', { wal_log_hints: 'on' });
    await source.cluster.psql(`CREATE TABLE events (id bigserial PRIMARY KEY, note text NOT NULL)`, 'app');
    await insert(source.db.url, 'before any backup', 100);
    const [port] = await freePorts('127.0.0.1', 1);
    node = { dataDir: path.join(source.dir, 'standby'), host: '127.0.0.1', port, slot: 'tenantsafe_standby' };
    standbyUrl = `postgres://postgres@127.0.0.1:${port}/app`;
    catalog = await catalogDatabase();
    env = await createTestEnv('local', {
      db: source.db,
      configure: (doc, dir) => {
        doc.catalog = { url: catalog.url };
        doc.fullBackup = { walPartialInterval: '200ms', walSpoolDir: path.join(dir, 'spool'), archiveWait: '30s' };
        doc.verification = { scratchDir: source.dir };
        doc.dr = { standby: { dataDir: node.dataDir, port, synchronous: false, maxLag: '1MB' } };
      },
    });
    await env.startWorker();
  });

  after(async () => {
    if (env) await stopWalArchiver(env);
    await env?.close();
    await source?.remove();
    await catalog?.drop();
  });

  it('refuses standby create before there is a full backup (exit 2, HINT) and changes nothing', async () => {
    const res = await cli(['standby', 'create', '--wait']);
    assert.equal(res.code, 2, res.stdout + res.stderr);
    const err = JSON.parse(res.stderr);
    assert.equal(err.type, ErrorType.BackupNotFound);
    assert.match(err.error, /no full \(base\) backup.*HINT: Run `tenantsafe full-backup --wait`/);
    assert.equal(fs.existsSync(node.dataDir), false);
    assert.equal(await slotExists(source.db.url, node.slot), false);
  });

  it('refuses a data directory that is not its own, a provider other than postgres and an archive that does not reach the primary, changing nothing', async () => {
    const backup = await cli(['full-backup', '--wait']);
    assert.equal(backup.code, 0, backup.stderr);

    const foreign = path.join(source.dir, 'foreign');
    fs.mkdirSync(foreign);
    fs.writeFileSync(path.join(foreign, 'keep.txt'), 'mine');
    const refusal = (type: string, pattern: RegExp) => (err: unknown) => err instanceof TenantsafeError && err.type === type && pattern.test(err.message);
    await assert.rejects(createStandby(env.engine, { primaryUrl: source.db.url, standby: { ...node, dataDir: foreign }, synchronous: false }), refusal(ErrorType.BadInput, /not empty and holds no standby tenantsafe built.*HINT/));
    assert.deepEqual(fs.readdirSync(foreign), ['keep.txt']);
    await assert.rejects(createStandby(env.engine, { primaryUrl: source.db.url, standby: { ...node, port: source.cluster.port }, synchronous: false }), refusal(ErrorType.BadInput, /is the primary's/));

    const supabase = engineWith(env, (doc) => {
      doc.fullBackup = { ...doc.fullBackup, provider: 'supabase' };
      doc.supabase = { projectRef: 'abcdefghijklmnopqrst', accessToken: 'sbp_test' };
    });
    try {
      await assert.rejects(createStandby(supabase, { primaryUrl: source.db.url, standby: node, synchronous: false }), refusal(ErrorType.BadConfig, /self-managed PostgreSQL only.*provider is supabase.*HINT/));
    } finally {
      await supabase.close();
    }

    // the archiver stopped, the primary moves on: the archive cannot reach its position
    await stopWalArchiver(env);
    await insert(source.db.url, 'not archived', 10);
    await source.cluster.psql(`SELECT pg_switch_wal()`);
    const impatient = engineWith(env, (doc) => (doc.fullBackup = { ...doc.fullBackup, archiveWait: '1s' }));
    try {
      await assert.rejects(createStandby(impatient, { primaryUrl: source.db.url, standby: node, synchronous: false }), refusal(ErrorType.TargetOutsideWindow, /does not reach the primary's position.*HINT: Start the WAL archiver/));
    } finally {
      await impatient.close();
    }
    assert.equal(fs.existsSync(node.dataDir), false);
    assert.equal(await slotExists(source.db.url, node.slot), false, 'the slot it made for the attempt is gone');
    // a new base backup starts the archiver again
    assert.equal((await cli(['full-backup', '--wait'])).code, 0);
  });

  it('builds the standby from the newest full backup and the archived WAL; rows written on the primary appear on it', async () => {
    const newest = (await env.engine.catalog.listFullBackups()).at(-1)!.backupId;
    await insert(source.db.url, 'after the backup', 200);
    const started = Date.now();
    const res = await cli(['standby', 'create', '--wait']);
    assert.equal(res.code, 0, res.stderr);
    const out = res.json();
    console.log(`      standby create: ${Date.now() - started} ms from the CLI (${out.tookMs} ms in the activity)`);
    assert.equal(out.outcome, 'created');
    assert.equal(out.backupId, newest);
    assert.equal(out.dataDir, node.dataDir);
    assert.equal(out.port, node.port);
    assert.equal(out.rewindable, true);
    assert.equal(out.synchronous, false);
    assert.match(out.replayLsn, /^[0-9A-F]+\/[0-9A-F]+$/);
    assert.equal(await inRecovery(standbyUrl), true);
    const [settings] = await withConnection(standbyUrl, async (c) => (await c.query(`SELECT current_setting('restore_command') AS restore, current_setting('primary_slot_name') AS slot`)).rows);
    assert.deepEqual(settings, { restore: '', slot: node.slot }, 'streaming from the slot, no longer asking the archive');
    const fresh = await insert(source.db.url, 'streamed', 50);
    await eventually('the new rows on the standby', async () => (await ids(standbyUrl)).includes(fresh.at(-1)!));
    assert.deepEqual(await ids(standbyUrl), await ids(source.db.url));
  });

  it('reports it streaming with a small lag, its slot active (exit 0); a second create leaves it as it is', async () => {
    const res = await cli(['standby', 'status']);
    assert.equal(res.code, 0, res.stdout + res.stderr);
    const s = res.json();
    assert.equal(s.state, 'streaming');
    assert.equal(s.primaryReachable, true);
    assert.equal(s.syncState, 'async');
    assert.ok(s.lagBytes !== null && s.lagBytes < 1024 * 1024, `lag ${s.lagBytes}`);
    assert.equal(s.overMaxLag, false);
    assert.equal(s.slot.active, true);
    assert.ok(s.slot.retainedBytes >= 0);
    console.log(`      status: lag ${s.lagBytes} B, replay lag ${s.replayLagSeconds} s, slot retains ${s.slot.retainedBytes} B`);
    const human = await runCli(['standby', 'status'], { configFile: env.configFile });
    assert.match(human.stdout, /: streaming \(async\)/);

    const again = await cli(['standby', 'create', '--wait']);
    assert.equal(again.code, 0, again.stderr);
    assert.equal(again.json().outcome, 'running');
    assert.equal(again.json().backupId, null);
  });

  it('in synchronous mode the primary names the standby and pg_stat_replication says sync; asynchronous clears it', async () => {
    const sync = await createStandby(env.engine, { primaryUrl: source.db.url, standby: node, synchronous: true });
    assert.equal(sync.outcome, 'running');
    const replication = () => source.cluster.psql<{ sync_state: string; names: string }>(`SELECT sync_state, current_setting('synchronous_standby_names') AS names FROM pg_stat_replication WHERE application_name = '${node.slot}'`);
    assert.deepEqual(await replication(), [{ sync_state: 'sync', names: `"${node.slot}"` }]);
    const committed = await insert(source.db.url, 'synchronous', 1);
    await eventually('the synchronous commit on the standby', async () => (await ids(standbyUrl)).includes(committed[0]));
    const s = await standbyStatus({ primaryUrl: source.db.url, standby: node, maxLagBytes: 1 << 20 });
    assert.equal(s.syncState, 'sync');

    await createStandby(env.engine, { primaryUrl: source.db.url, standby: node, synchronous: false });
    assert.deepEqual(await replication(), [{ sync_state: 'async', names: '' }]);
  });

  it('says stopped when the standby is down (exit 1), and create starts it again', async () => {
    await (await PrivateCluster.attach(node.dataDir)).stop();
    const res = await cli(['standby', 'status']);
    assert.equal(res.code, 1);
    assert.equal(res.json().state, 'stopped');
    const again = await cli(['standby', 'create', '--wait']);
    assert.equal(again.code, 0, again.stderr);
    assert.equal(again.json().outcome, 'restarted');
    assert.equal((await cli(['standby', 'status'])).json().state, 'streaming');
  });

  let promotedRows: number[];
  let divergent: number[];

  it('promotes the standby: a new timeline from where it stopped replaying, writable; a second promotion only reads it', async () => {
    await stopWalArchiver(env); // the archiver follows the configured primary; this test moves it by hand
    const last = await insert(source.db.url, 'last before the failover', 1);
    await eventually('the last row on the standby', async () => (await ids(standbyUrl)).includes(last[0]));
    const promoted = await promoteStandby(standbyUrl);
    assert.equal(promoted.timeline, 2);
    assert.match(promoted.timelineStartLsn, /^[0-9A-F]+\/[0-9A-F]+$/);
    assert.match(promoted.promotedAt, /\.\d{6}Z$/);
    assert.equal(await inRecovery(standbyUrl), false);
    promotedRows = await insert(standbyUrl, 'on the new primary', 20);
    // the old primary, still up, takes a write the new one never sees: rewind must throw it away
    divergent = await insert(source.db.url, 'split brain', 3);
    // a retried promotion only reads where it ended
    assert.equal((await promoteStandby(standbyUrl)).timelineStartLsn, promoted.timelineStartLsn);
  });

  it('rebuilds the old primary as a standby of the new one with pg_rewind: it replays the new primary\'s writes, not its own divergent ones', async () => {
    const started = Date.now();
    const res = await cli(['standby', 'rebuild', '--data-dir', source.cluster.dataDir, '--primary', `127.0.0.1:${node.port}`]);
    assert.equal(res.code, 0, res.stdout + res.stderr);
    const out = res.json();
    console.log(`      standby rebuild (rewind): ${Date.now() - started} ms from the CLI (${out.tookMs} ms in the activity)`);
    assert.equal(out.path, 'rewind', out.reason);
    assert.equal(out.reason, null);
    assert.equal(out.port, source.cluster.port, 'on the port it had');
    assert.equal(await inRecovery(source.db.url), true);
    const more = await insert(standbyUrl, 'after failback rebuild', 5);
    await eventually('the new primary\'s rows on the old one', async () => (await ids(source.db.url)).includes(more.at(-1)!));
    const old = await ids(source.db.url);
    assert.ok(promotedRows.every((id) => old.includes(id)));
    assert.ok(divergent.every((id) => !old.includes(id)), 'the split-brain rows are gone');
    assert.deepEqual(old, await ids(standbyUrl));
    const s = await standbyStatus({ primaryUrl: standbyUrl, standby: { ...node, dataDir: source.cluster.dataDir, port: source.cluster.port }, maxLagBytes: 1 << 20 });
    assert.equal(s.state, 'streaming');
  });

  it('falls back to a fresh copy of the new primary when the old data directory is gone', async () => {
    await source.cluster.stop();
    fs.rmSync(source.cluster.dataDir, { recursive: true, force: true });
    const res = await cli(['standby', 'rebuild', '--data-dir', source.cluster.dataDir, '--primary', `127.0.0.1:${node.port}`, '--port', String(source.cluster.port)]);
    assert.equal(res.code, 0, res.stdout + res.stderr);
    const out = res.json();
    assert.equal(out.path, 'basebackup');
    assert.match(out.reason, /missing or empty/);
    assert.equal(await inRecovery(source.db.url), true);
    const more = await insert(standbyUrl, 'after the fresh copy', 5);
    await eventually('the new primary\'s rows on the copy', async () => (await ids(source.db.url)).includes(more.at(-1)!));
    assert.deepEqual(await ids(source.db.url), await ids(standbyUrl));
  });

  it('refuses to rebuild a directory that is not a data directory, and a --primary that is not host:port (exit 2), changing nothing', async () => {
    const foreign = path.join(source.dir, 'foreign');
    const res = await cli(['standby', 'rebuild', '--data-dir', foreign, '--primary', `127.0.0.1:${node.port}`, '--port', String((await freePorts('127.0.0.1', 1))[0])]);
    assert.equal(res.code, 2, res.stdout + res.stderr);
    assert.match(JSON.parse(res.stderr).error, /not a PostgreSQL data directory.*HINT/);
    assert.deepEqual(fs.readdirSync(foreign), ['keep.txt']);
    const bad = await cli(['standby', 'rebuild', '--data-dir', foreign, '--primary', 'nowhere']);
    assert.equal(bad.code, 2);
    assert.match(JSON.parse(bad.stderr).error, /is not host:port/);
  });
});

describe('standby create when the worker is killed mid-way', function () {
  this.timeout(240_000);
  let source: SourceCluster;
  let env: TestEnv;
  let node: StandbyNode;
  const workers: ChildProcess[] = [];

  before(async () => {
    source = await startSourceCluster();
    // ~40 MB of table data: extracting and catching up take long enough to be interrupted
    await source.cluster.psql(`CREATE TABLE events AS SELECT g AS id, md5(g::text) || md5((g * 7)::text) AS note FROM generate_series(1, 400000) g`, 'app');
    const [port] = await freePorts('127.0.0.1', 1);
    node = { dataDir: path.join(source.dir, 'standby'), host: '127.0.0.1', port, slot: 'tenantsafe_standby' };
    env = await createTestEnv('local', {
      db: source.db,
      configure: (doc, dir) => {
        doc.fullBackup = { walPartialInterval: '200ms', walSpoolDir: path.join(dir, 'spool') };
        doc.dr = { standby: { dataDir: node.dataDir, port } };
      },
    });
    workers.push(await spawnWorkerProcess(env.configFile));
    const backup = await runCli(['full-backup', '--wait', '--json'], { configFile: env.configFile });
    assert.equal(backup.code, 0, backup.stderr);
  });

  after(async () => {
    if (env) await stopWalArchiver(env);
    workers.forEach((w) => w.kill('SIGKILL'));
    await env?.close();
    await source?.remove();
  });

  it('cleans what the killed attempt left and builds the standby on the next worker', async () => {
    const handle = await env.temporal.workflow.start<typeof standbyCreate>('standbyCreate', {
      taskQueue: env.config.temporal.taskQueue,
      workflowId: standbyWorkflowIds.standbyCreate(),
      args: [{}],
    });
    // kill once the build has started writing the data directory
    await eventually('the build writing the data directory', async () => fs.existsSync(path.join(node.dataDir, 'base')), 60_000);
    workers[0].kill('SIGKILL');
    const marker = JSON.parse(fs.readFileSync(path.join(node.dataDir, 'tenantsafe-standby.json'), 'utf8'));
    assert.equal(marker.state, 'building', 'killed before the build finished');

    workers.push(await spawnWorkerProcess(env.configFile, 180_000)); // a loaded machine starts a worker slowly
    const result = await handle.result();
    assert.equal(result.outcome, 'rebuilt', 'the retry found the half-built directory and built it again');
    await source.cluster.psql(`INSERT INTO events VALUES (400001, 'after the kill')`, 'app');
    const url = `postgres://postgres@127.0.0.1:${node.port}/app`;
    await eventually('the row on the standby', async () => withConnection(url, async (c) => (await c.query(`SELECT 1 FROM events WHERE id = 400001`)).rowCount === 1));
    const status = await standbyStatus({ primaryUrl: source.db.url, standby: node, maxLagBytes: 1 << 20 });
    assert.equal(status.state, 'streaming');
  });
});
