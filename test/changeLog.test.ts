// The change log's capture: a logical replication stream (pgoutput) on a private cluster with
// wal_level logical, acknowledged exactly as far as the reader says it stored.
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { captureChanges, prepareChangeLog } from '../lib/changeLog/capture';
import { readChangeLog, type LoggedTransaction } from '../lib/changeLog/read';
import { ReplicationStream, type Transaction } from '../lib/changeLog/replication';
import { Engine } from '../lib/engine';
import { ErrorType, type TenantsafeError } from '../lib/errors';
import { PrivateCluster } from '../lib/postgres/cluster';
import { withConnection } from '../lib/pg';
import { formatLsn, parseLsn } from '../lib/wal/names';
import { ensureSampleDatabase, sampleTenants } from '../sample/generate';
import { startSourceCluster, type SourceCluster } from './support/cluster';
import { createTestEnv, runCli, type TestEnv } from './support/env';
import { spawnWorkerProcess } from '../workers/process';
import { waitFor } from './support/wait';
import { backUpNow, readBackup } from './support/backups';
import { readManifest, tenantBackupPrefix } from '../lib/format/tenantManifest';
import { readSegmentManifest } from '../lib/format/changeLog';
import { isSealed } from '../lib/encryption';

describe('the change log stream', function () {
  this.timeout(120_000);
  let cluster: PrivateCluster;
  let dir: string;
  const sql = (text: string, params?: unknown[]) => withConnection(cluster.url(), (c) => c.query(text, params));

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tenantsafe-changelog-'));
    fs.chmodSync(dir, 0o755);
    cluster = await PrivateCluster.create({ dataDir: path.join(dir, 'data'), port: 0, ephemeral: true, settings: { wal_level: 'logical' } });
    await cluster.start();
    await sql(`CREATE TABLE t (id int PRIMARY KEY, tenant text NOT NULL, note text, big text);
               CREATE TABLE k (tenant text, v text); ALTER TABLE k REPLICA IDENTITY FULL;
               CREATE TABLE other (id int PRIMARY KEY);
               CREATE PUBLICATION p FOR TABLE t, k`);
    await sql(`SELECT pg_create_logical_replication_slot('s', 'pgoutput')`);
  });
  after(async () => {
    await cluster?.remove();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const confirmed = async () => BigInt(`0x${(await sql(`SELECT confirmed_flush_lsn::text AS l FROM pg_replication_slots WHERE slot_name = 's'`)).rows[0].l.replace('/', '').padStart(16, '0')}`);
  const lsnOf = (text: string) => {
    const [hi, lo] = text.split('/');
    return (BigInt(`0x${hi}`) << 32n) | BigInt(`0x${lo}`);
  };

  async function take(stream: ReplicationStream, n: number): Promise<Transaction[]> {
    const out: Transaction[] = [];
    while (out.length < n) out.push((await stream.next())!);
    return out;
  }

  it('gives each committed transaction whole, in commit order, with its changes as Postgres printed the values', async () => {
    const start = lsnOf((await sql(`SELECT confirmed_flush_lsn::text AS l FROM pg_replication_slots WHERE slot_name = 's'`)).rows[0].l);
    await sql(`INSERT INTO t VALUES (1, 'a', E'tab\\there', (SELECT string_agg(md5(g::text), '') FROM generate_series(1, 500) g)), (2, 'b', NULL, NULL);
               INSERT INTO k VALUES ('a', '1'), ('a', '1'); INSERT INTO other VALUES (1)`);
    await sql(`UPDATE t SET note = 'x2' WHERE id = 1`);
    await sql(`UPDATE t SET id = 3 WHERE id = 2`);
    await sql(`DELETE FROM k WHERE ctid = (SELECT min(ctid) FROM k)`);
    await sql(`BEGIN; INSERT INTO t VALUES (9, 'a'); ROLLBACK`);
    await sql(`BEGIN; DELETE FROM t WHERE id = 3; TRUNCATE k; COMMIT`);

    const stream = await ReplicationStream.open({ url: cluster.url(), slot: 's', publication: 'p', startLsn: start });
    try {
      const txns = await take(stream, 5);
      assert.ok(txns.every((x, i) => i === 0 || x.commitLsn > txns[i - 1].commitLsn), 'commit order');
      assert.ok(txns.every((x) => x.endLsn > x.commitLsn && x.commitTimeUs > 1_700_000_000_000_000n));
      const [insert, toast, keyChange, keyless, last] = txns.map((x) => x.changes);
      assert.deepEqual(insert.map((c) => c.kind === 'insert' && [c.table, c.row[0], c.row[1], c.row[2]]), [
        ['public.t', '1', 'a', 'tab\there'],
        ['public.t', '2', 'b', null],
        ['public.k', 'a', '1', undefined],
        ['public.k', 'a', '1', undefined],
      ]);
      assert.deepEqual(toast, [{ kind: 'update', table: 'public.t', row: ['1', 'a', 'x2', null], unchanged: [3] }], 'the untouched TOASTed value is not sent');
      assert.deepEqual(keyChange, [{ kind: 'update', table: 'public.t', row: ['3', 'b', null, null], before: ['2', null, null, null], beforeIsKey: true }]);
      assert.deepEqual(keyless, [{ kind: 'delete', table: 'public.k', before: ['a', '1'], beforeIsKey: false }], 'REPLICA IDENTITY FULL: the whole row');
      assert.deepEqual(last, [
        { kind: 'delete', table: 'public.t', before: ['3', null, null, null], beforeIsKey: true },
        { kind: 'truncate', tables: ['public.k'] },
      ]);
      assert.deepEqual(stream.relation('public.t')?.columns, ['id', 'tenant', 'note', 'big']);
    } finally {
      await stream.close();
    }
  });

  it('moves the slot exactly to what the reader acknowledged; reopened there, it sends what followed, once', async () => {
    const start = await confirmed();
    for (let i = 10; i < 14; i++) await sql(`INSERT INTO t VALUES ($1, 'a')`, [i]);
    const first = await ReplicationStream.open({ url: cluster.url(), slot: 's', publication: 'p', startLsn: start });
    const got = await take(first, 4);
    first.acknowledge(got[1].endLsn);
    // the status goes out at once; read it back once the server took it
    for (let i = 0; (await confirmed()) !== got[1].endLsn; i++) {
      if (i > 100) assert.fail(`the slot never reached ${got[1].endLsn}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    await first.close();
    assert.equal(await confirmed(), got[1].endLsn, 'never past what was acknowledged, though four were received');

    const again = await ReplicationStream.open({ url: cluster.url(), slot: 's', publication: 'p', startLsn: got[1].endLsn });
    try {
      const rest = await take(again, 2);
      assert.deepEqual(
        rest.map((x) => x.commitLsn),
        got.slice(2).map((x) => x.commitLsn),
        'the two not acknowledged, and nothing before them',
      );
    } finally {
      await again.close();
    }
  });
});

describe('the change log', function () {
  this.timeout(180_000);
  let source: SourceCluster;
  let env: TestEnv;
  const sample = { tenants: 4, rows: 4_000 };

  before(async () => {
    source = await startSourceCluster('app', { wal_level: 'logical', max_slot_wal_keep_size: '1GB' });
    const { url } = await ensureSampleDatabase(source.cluster.url(), 'saas', sample);
    env = await createTestEnv('local', {
      db: { name: 'saas', url, tenants: sampleTenants(sample), drop: async () => undefined },
      configure: (doc) => {
        doc.changeLog = { enabled: true, flushInterval: '200ms', replicaIdentityFull: true };
      },
    });
  });
  after(async () => {
    await env?.close();
    await source?.remove();
  });

  const sql = (text: string, params?: unknown[]) => withConnection(env.db.url, (c) => c.query(text, params));

  it('refuses to publish a table without a primary key unless allowed, naming it, and changes nothing', async () => {
    const strict = new Engine({ ...env.config, changeLog: { ...env.config.changeLog, replicaIdentityFull: false } });
    try {
      await assert.rejects(prepareChangeLog(strict), (e: TenantsafeError) => e.type === ErrorType.BadConfig && /app\.page_views/.test(e.message) && /REPLICA IDENTITY FULL/.test(e.message));
      assert.equal((await sql(`SELECT count(*)::int AS n FROM pg_publication`)).rows[0].n, 0, 'no publication made');
      assert.equal((await sql(`SELECT count(*)::int AS n FROM pg_replication_slots`)).rows[0].n, 0, 'no slot made');
    } finally {
      await strict.close();
    }
  });

  it('stores every committed change of the owned tables, once, in commit order; the slot moves only as far as stored', async () => {
    const ac = new AbortController();
    const capturing = captureChanges(env.engine, { runForMs: 120_000, signal: ac.signal });
    let lastCommit = '';
    try {
      // the slot exists once prepared: changes from here on are captured
      await waitFor('the slot', async () => (await sql(`SELECT count(*)::int AS n FROM pg_replication_slots WHERE slot_name = 'tenantsafe_changes'`)).rows[0].n === 1);
      for (let i = 0; i < 20; i++) {
        await sql(`UPDATE app.users SET display_name = $1 WHERE user_id = (SELECT min(user_id) FROM app.users WHERE tenant_id = 'acme')`, [`n${i}`]);
      }
      await sql(`INSERT INTO app.page_views (tenant_id, path, viewed_at) VALUES ('globex', '/x', now())`);
      await sql(`DELETE FROM app.page_views WHERE ctid = (SELECT min(ctid) FROM app.page_views WHERE tenant_id = 'globex')`);
      lastCommit = (await sql(`SELECT pg_current_wal_lsn()::text AS l`)).rows[0].l;
      const stream = await streamOf(env);
      await waitFor('the log to catch up', async () => parseLsn((await env.engine.catalog.getChangeLogStream(stream))?.caughtUpLsn ?? '0/0') >= parseLsn(lastCommit));
    } finally {
      ac.abort();
    }
    const progress = await capturing;
    const logged: LoggedTransaction[] = [];
    for await (const { txn } of readChangeLog(env.engine.store, env.engine.catalog, progress.stream, 0n)) logged.push(txn);
    const updates = logged.flatMap((t) => t.changes).filter((c) => c.kind === 'update' && c.table === 'app.users');
    assert.deepEqual(
      updates.map((c) => (c.kind === 'update' ? c.row[3] : null)),
      Array.from({ length: 20 }, (_, i) => `n${i}`),
      'every update once, in order (display_name is the fourth column)',
    );
    const views = logged.flatMap((t) => t.changes).filter((c) => c.kind !== 'truncate' && c.table === 'app.page_views');
    assert.deepEqual(views.map((c) => c.kind), ['insert', 'delete']);
    assert.ok(logged.every((t, i) => i === 0 || t.commitLsn > logged[i - 1].commitLsn), 'commit order');
    const slot = (await sql(`SELECT confirmed_flush_lsn::text AS l FROM pg_replication_slots WHERE slot_name = 'tenantsafe_changes'`)).rows[0].l;
    assert.ok(parseLsn(slot) >= logged.at(-1)!.endLsn, `the slot (${slot}) is past the last stored transaction`);
    assert.equal(progress.durableLsn, formatLsn(logged.at(-1)!.endLsn), 'what it reports stored is the last transaction stored');
    // encrypted by default: each segment's data under the cluster's data key, its manifest of format 2 naming it
    for (const seg of await env.engine.catalog.listChangeSegments(progress.stream, '0/0')) {
      const m = await readSegmentManifest(env.engine.store, seg.manifestKey);
      assert.deepEqual([m.formatVersion, m.encryption?.key], [2, `keys/database/${progress.stream.split('-')[0]}.json`]);
      assert.ok(isSealed(await env.engine.store.getBytes(`changelog/${progress.stream}/${m.object.key}`)), `${m.object.key} is encrypted`);
    }
  });

  it('takes a tenant backup at an exact boundary with the log: every commit before it in the backup, every one at or after it in the log', async () => {
    const ac = new AbortController();
    const capturing = captureChanges(env.engine, { runForMs: 120_000, signal: ac.signal });
    // a writer commits all along, so commits fall on both sides of the boundary
    let writing = true;
    const writer = (async () => {
      for (let i = 0; writing; i++) await sql(`INSERT INTO app.page_views (tenant_id, path, viewed_at) VALUES ('acme', $1, now())`, [`/w${i}`]);
    })();
    let backupId = '';
    try {
      await new Promise((r) => setTimeout(r, 300));
      backupId = await backUpNow(env.engine, 'acme');
      await new Promise((r) => setTimeout(r, 300));
    } finally {
      writing = false;
      await writer;
    }
    const last = (await sql(`SELECT pg_current_wal_lsn()::text AS l`)).rows[0].l;
    const stream = await streamOf(env);
    await waitFor('the log to catch up', async () => parseLsn((await env.engine.catalog.getChangeLogStream(stream))?.caughtUpLsn ?? '0/0') >= parseLsn(last));
    ac.abort();
    await capturing;

    const backup = await readBackup(env.engine.store, 'acme', backupId);
    const manifest = await readManifest(env.engine.store, tenantBackupPrefix('acme', backupId));
    assert.ok(manifest.snapshot.changeLogLsn, 'the boundary is recorded');
    const boundary = parseLsn(manifest.snapshot.changeLogLsn!);
    const pathOf = (line: string) => line.split('\t')[1];
    const inBackup = new Set(backup.rows.get('app.page_views')!.map(pathOf).filter((p) => p.startsWith('/w')));
    const after = new Set<string>();
    const before = new Set<string>();
    for await (const { txn } of readChangeLog(env.engine.store, env.engine.catalog, stream, 0n)) {
      for (const c of txn.changes) if (c.kind === 'insert' && c.table === 'app.page_views' && String(c.row[1]).startsWith('/w')) (txn.commitLsn < boundary ? before : after).add(String(c.row[1]));
    }
    assert.ok(before.size > 0 && after.size > 0, `commits on both sides (${before.size} before, ${after.size} after)`);
    assert.deepEqual([...inBackup].sort(), [...before].sort(), 'the backup holds exactly the commits before the boundary');
    assert.ok([...after].every((p) => !inBackup.has(p)), 'and none of those at or after it');
  });

  it('publishes a table made tenant-owned since the log started before a backup\'s boundary, and logs its changes from there', async () => {
    const ac = new AbortController();
    const capturing = captureChanges(env.engine, { runForMs: 120_000, signal: ac.signal });
    const stream = await streamOf(env);
    let backupId = '';
    try {
      await waitFor('the capture to run', async () => (await sql(`SELECT active FROM pg_replication_slots WHERE slot_name = 'tenantsafe_changes'`)).rows[0]?.active === true);
      await sql(`CREATE TABLE app.notes (note_id bigserial PRIMARY KEY, tenant_id text NOT NULL REFERENCES app.tenants, body text)`);
      await sql(`INSERT INTO app.notes (tenant_id, body) VALUES ('acme', 'before the backup')`);
      backupId = await backUpNow(env.engine, 'acme');
      await sql(`INSERT INTO app.notes (tenant_id, body) VALUES ('acme', 'after the backup')`);
      const last = (await sql(`SELECT pg_current_wal_lsn()::text AS l`)).rows[0].l;
      await waitFor('the log to catch up', async () => parseLsn((await env.engine.catalog.getChangeLogStream(stream))?.caughtUpLsn ?? '0/0') >= parseLsn(last));
    } finally {
      ac.abort();
      await capturing;
    }
    const manifest = await readManifest(env.engine.store, tenantBackupPrefix('acme', backupId));
    assert.ok(manifest.tables.some((t) => t.table === 'app.notes'), 'the backup reads the new table');
    assert.ok(manifest.snapshot.changeLogLsn, 'and still has a boundary: the table joined the publication before it');
    const notes: string[] = [];
    for await (const { txn } of readChangeLog(env.engine.store, env.engine.catalog, stream, parseLsn(manifest.snapshot.changeLogLsn!))) {
      for (const c of txn.changes) if (c.kind === 'insert' && c.table === 'app.notes') notes.push(String(c.row[2]));
    }
    assert.deepEqual(notes, ['after the backup'], 'its changes after the boundary are in the log');
  });

  it('runs as a workflow: a worker killed while it streams loses no change and doubles none', async () => {
    const cli = (...args: string[]) => runCli([...args, '--json'], { configFile: env.configFile });
    const stream = await streamOf(env);
    const from = parseLsn((await sql(`SELECT pg_current_wal_lsn()::text AS l`)).rows[0].l);
    let worker = await spawnWorkerProcess(env.configFile);
    try {
      const disabled = await runCli(['changelog', 'start', '--json'], { configFile: env.writeConfig('disabled.yaml', (d) => (d.changeLog.enabled = false)) });
      assert.equal(disabled.code, 2, disabled.stdout + disabled.stderr);
      assert.match(JSON.parse(disabled.stderr).error, /changeLog\.enabled is false.*HINT: Set changeLog\.enabled: true/);
      const started = await cli('changelog', 'start');
      assert.equal(started.code, 0, started.stderr);
      assert.deepEqual(started.json().warnings, [], started.stdout);
      assert.match(started.json().workflowId, /^change-log\/\d+-\d+\/[0-9a-f]{8}$/);
      const update = (i: number) => sql(`UPDATE app.users SET display_name = $1 WHERE user_id = (SELECT min(user_id) FROM app.users WHERE tenant_id = $2)`, [`k${i}`, i % 2 ? 'acme' : 'globex']);
      for (let i = 0; i < 30; i++) await update(i);
      await waitFor('the first changes stored', async () => ((await env.engine.catalog.changeLogEnd(stream)) ? parseLsn((await env.engine.catalog.changeLogEnd(stream))!.lsn) > from : false));
      worker.kill('SIGKILL');
      for (let i = 30; i < 60; i++) await update(i); // while no worker runs: the slot keeps them
      worker = await spawnWorkerProcess(env.configFile);
      const last = (await sql(`SELECT pg_current_wal_lsn()::text AS l`)).rows[0].l;
      await waitFor('the log to catch up after the restart', async () => parseLsn((await env.engine.catalog.getChangeLogStream(stream))?.caughtUpLsn ?? '0/0') >= parseLsn(last), { tries: 600 });
      const status = await cli('changelog', 'status');
      assert.equal(status.code, 0, status.stdout + status.stderr);
      assert.equal(status.json().streaming.state, 'streaming');
      assert.ok(status.json().slot.exists && status.json().slot.walStatus === 'reserved', status.stdout);
      assert.equal(status.json().maxSlotWalKeepBytes, 1 << 30);
      const stopped = await cli('changelog', 'stop');
      assert.deepEqual(stopped.json(), { stopped: true });
    } finally {
      worker.kill('SIGKILL');
    }
    const names: string[] = [];
    for await (const { txn } of readChangeLog(env.engine.store, env.engine.catalog, stream, from)) {
      for (const c of txn.changes) if (c.kind === 'update' && c.table === 'app.users' && /^k\d+$/.test(String(c.row[3]))) names.push(String(c.row[3]));
    }
    assert.deepEqual(names, Array.from({ length: 60 }, (_, i) => `k${i}`), 'every change once, in order');
  });

  it('records a gap when its slot was dropped, and logs again from a new slot', async () => {
    const stream = await streamOf(env);
    const before = await env.engine.catalog.changeLogEnd(stream);
    // the walsender of the worker killed before ends once the server notices its connection is gone
    await waitFor('the slot to be released', async () => (await sql(`SELECT active FROM pg_replication_slots WHERE slot_name = 'tenantsafe_changes'`)).rows[0].active === false);
    await sql(`SELECT pg_drop_replication_slot('tenantsafe_changes')`);
    await sql(`UPDATE app.users SET display_name = 'lost' WHERE user_id = (SELECT min(user_id) FROM app.users WHERE tenant_id = 'acme')`);
    await prepareChangeLog(env.engine);
    const gaps = await env.engine.catalog.listChangeLogGaps(stream);
    assert.equal(gaps.length, 1);
    assert.equal(gaps[0].fromLsn, before!.lsn);
    assert.match(gaps[0].reason, /dropped/);
    const keys: string[] = [];
    for await (const o of env.engine.store.list(`changelog/${stream}/gaps/`)) keys.push(o.key);
    assert.equal(keys.length, 1, 'the gap is in storage too, for a catalog rebuild');
  });
});

async function streamOf(env: TestEnv): Promise<string> {
  const r = await withConnection(env.db.url, (c) =>
    c.query<{ s: string }>(`SELECT s.system_identifier::text || '-' || d.oid AS s FROM pg_control_system() s, pg_database d WHERE d.datname = current_database()`),
  );
  return r.rows[0].s;
}


