// Whole-database backups of a private cluster, end to end through the CLI and a worker: base
// backups with streamed WAL, point-in-time recovery into new clusters, the window and its
// errors, verification of base backups and their WAL, and retention on real storage.
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { gzipSync } from 'node:zlib';
import type { Client } from 'pg';
import { connect, microsText, withConnection } from '../lib/pg';
import { snapshotOrigin } from '../lib/tenantBackup/export';
import type { SnapshotOrigin } from '../lib/format/tenantManifest';
import { createFullBackupProvider } from '../lib/fullBackup/provider';
import { pitrTargetOf } from '../lib/pitr/window';
import { PrivateCluster } from '../lib/postgres/cluster';
import { freePorts } from '../lib/process';
import { createStore } from '../lib/storage';
import type { ObjectStore } from '../lib/storage/types';
import { parseMicros } from '../lib/time';
import { fetchWalFile, listWalArchive, readWalObject } from '../lib/wal/archive';
import { partialKey, segmentKey } from '../lib/format/walArchive';
import { sha256Hex } from '../lib/checksum';
import { segmentOfLsn } from '../lib/wal/names';
import { databaseWorkflowIds } from '../workflows/messages';
import { physicalBackupStack, startSourceCluster, type SourceCluster } from './support/cluster';
import { createTestEnv, runCli, type TestEnv } from './support/env';
import { workflowScopes } from '../lib/databaseIdentity';
import { waitFor } from './support/wait';
import { baseKeyOf, fullBackupCompressions } from './support/compressions';
import { parseConfig } from '../lib/config';
import { Engine } from '../lib/engine';
import { readFullManifest } from '../lib/format/fullManifest';
import { isSealed, sealedKeyId } from '../lib/encryption';
import { sealManifest, writeManifest } from '../lib/format/sealed';

interface Row {
  id: number;
  /** client clock, just after COMMIT returned */
  committedAt: number;
}

/** Commits one row every few milliseconds until stopped; can pause to leave a quiet gap. */
class Writer {
  readonly rows: Row[] = [];
  private stopped = false;
  private pause = false;
  private loop: Promise<void> = Promise.resolve();
  /** the INSERT under way, if any: its row is counted once it settles */
  private inFlight: Promise<unknown> = Promise.resolve();
  constructor(private readonly client: Client) {}

  start(): void {
    this.loop = (async () => {
      while (!this.stopped) {
        if (!this.pause) {
          this.inFlight = this.client.query<{ id: number }>(`INSERT INTO events (note) VALUES ('row') RETURNING id`).then((r) => this.rows.push({ id: Number(r.rows[0].id), committedAt: Date.now() }));
          await this.inFlight;
        }
        await sleep(5);
      }
    })();
  }

  /** Runs `during` while no row is written; returns the id of the last row before. */
  async paused<T>(during: () => Promise<T>): Promise<{ lastBefore: number; result: T }> {
    this.pause = true;
    // an INSERT in flight when the pause began commits before `during`: wait for it (a loaded
    // machine took longer than a fixed sleep, and its row then counted as after the pause)
    await this.inFlight.catch(() => undefined);
    const lastBefore = this.rows.at(-1)!.id;
    try {
      return { lastBefore, result: await during() };
    } finally {
      this.pause = false;
    }
  }

  /** A quiet moment: a time between the last commit before it and the first after. */
  async quietMoment(ms: number): Promise<{ at: string; lastBefore: number }> {
    const { lastBefore, result: at } = await this.paused(async () => {
      await sleep(ms / 2);
      const mid = new Date().toISOString();
      await sleep(ms / 2);
      return mid;
    });
    return { at, lastBefore };
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.loop;
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

for (const compression of fullBackupCompressions) describe(`full backups and point-in-time recovery (postgres provider, ${compression})`, function () {
  this.timeout(180_000);
  let source: SourceCluster;
  let env: TestEnv;
  let store: ObjectStore;
  let writerClient: Client;
  let writer: Writer;
  const cli = (args: string[]) => runCli([...args, '--json'], { configFile: env.configFile });

  before(async function () {
    // commit times as Postgres keeps them (pg_last_committed_xact), to hold the window's latest against
    source = await startSourceCluster('app', { track_commit_timestamp: 'on' });
    await source.cluster.psql(`CREATE TABLE events (id bigserial PRIMARY KEY, note text NOT NULL)`, 'app');
    env = await createTestEnv('local', {
      db: source.db,
      configure: (doc, dir) => {
        doc.fullBackup = { walPartialInterval: '200ms', walSpoolDir: path.join(dir, 'spool'), archiveWait: '30s', compression };
        doc.verification = { scratchDir: source.dir };
        doc.retention = { days: 0, minCount: 1 };
      },
    });
    store = env.engine.store;
    await env.startWorker();
    writerClient = await connect(source.db.url);
    writer = new Writer(writerClient);
    writer.start();
    await sleep(300);
  });

  after(async () => {
    await writer?.stop();
    await writerClient?.end();
    const archiver = env && env.temporal.workflow.getHandle(databaseWorkflowIds.walArchiver((await workflowScopes(env.engine)).walArchiver));
    await archiver?.cancel().catch(() => undefined);
    await archiver?.result().catch(() => undefined);
    await env?.close();
    await source?.remove();
  });

  /** Waits until the window's latest moment reaches `at` (the archive is a fraction of a second behind). */
  async function windowReaches(at: string): Promise<{ earliest: string; latest: string }> {
    for (let i = 0; ; i++) {
      const w = await cli(['pitr', 'window']);
      assert.equal(w.code, 0, w.stderr);
      if (parseMicros(w.json().latest) >= parseMicros(at)) return w.json();
      if (i > 100) assert.fail(`the window never reached ${at}: ${w.stdout}`);
      await sleep(200);
    }
  }

  async function restoredIds(port: number): Promise<number[]> {
    const rows = await withConnection(`postgres://postgres@127.0.0.1:${port}/app`, (c) => c.query<{ id: string }>(`SELECT id FROM events ORDER BY id`));
    return rows.rows.map((r) => Number(r.id));
  }

  async function originOf(url: string): Promise<SnapshotOrigin> {
    const c = await connect(url);
    try {
      return await snapshotOrigin(c);
    } finally {
      await c.end();
    }
  }

  let first: { backupId: string; startLsn: string; stopLsn: string; finishedAt: string };
  let quiet: { at: string; lastBefore: number };

  it('takes a base backup while rows are written, and prints the contract fields', async () => {
    const res = await cli(['full-backup', '--wait']);
    assert.equal(res.code, 0, res.stderr);
    const out = res.json();
    assert.deepEqual(Object.keys(out).sort(), ['backupId', 'bytes', 'finishedAt', 'kind', 'startLsn', 'status', 'stopLsn', 'workflowId']);
    assert.equal(out.kind, 'physical');
    assert.match(out.backupId, /^\d{8}-\d{6}F-[0-9a-f]{6}$/);
    assert.match(out.startLsn, /^[0-9A-F]+\/[0-9A-F]+$/);
    assert.ok(out.bytes > 100_000);
    first = out;
    const keys: string[] = [];
    for await (const o of store.list(`full/${out.backupId}/`)) keys.push(o.key.slice(`full/${out.backupId}/`.length));
    assert.deepEqual(keys.sort(), ['backup_manifest', baseKeyOf(compression), 'manifest.json', 'started.json']);
    // encrypted by default: the base tar and the WAL under the cluster's data key (the restores below decrypt them)
    const manifest = await readFullManifest(store, `full/${out.backupId}/`);
    assert.equal(manifest.formatVersion, 2);
    assert.equal(manifest.encryption?.key, `keys/database/${manifest.systemIdentifier}.json`);
    const base = await store.getBytes(`full/${out.backupId}/${baseKeyOf(compression)}`);
    assert.ok(isSealed(base) && sealedKeyId(base) === manifest.encryption!.keyId, 'the base tar is encrypted');
    const segments = (await listWalArchive(store)).segments;
    assert.ok(segments.length > 0 && (await Promise.all(segments.map(async (seg) => isSealed(await store.getBytes(seg.key))))).every(Boolean), 'every WAL segment is encrypted');
    const listed = await cli(['full-backups', 'list']);
    assert.deepEqual(listed.json().map((b: { backupId: string }) => b.backupId), [out.backupId]);
  });

  it('restores to a time between two known commits and gets exactly the rows committed before it', async () => {
    await sleep(500);
    quiet = await writer.quietMoment(800);
    await sleep(500);
    await windowReaches(quiet.at);
    const target = path.join(source.dir, 'at-time');
    const res = await cli(['pitr', 'restore', '--at', quiet.at, '--target', target, '--port', String((await freePorts('127.0.0.1', 1))[0])]);
    assert.equal(res.code, 0, res.stderr);
    const out = res.json();
    assert.deepEqual(Object.keys(out).sort(), ['dataDir', 'lsn', 'port', 'recoveredTo']);
    assert.equal(out.dataDir, target);
    assert.match(out.recoveredTo, /\.\d{6}Z$/, 'the last commit replayed, to the microsecond');
    assert.ok(parseMicros(out.recoveredTo) <= parseMicros(quiet.at), `recovered to ${out.recoveredTo}, target ${quiet.at}`);
    const expected = writer.rows.filter((r) => r.id <= quiet.lastBefore).map((r) => r.id);
    assert.ok(expected.length > 50, `rows before the target: ${expected.length}`);
    assert.ok(writer.rows.some((r) => r.id > quiet.lastBefore), 'rows were committed after the target too');
    assert.deepEqual(await restoredIds(out.port), expected);
    // the same system on a new timeline: a tenant restore there compares no row versions with backups read before
    const [was, now] = await Promise.all([originOf(source.db.url), originOf(`postgres://postgres@127.0.0.1:${out.port}/app`)]);
    assert.equal(now.systemIdentifier, was.systemIdentifier);
    assert.ok(now.timeline > was.timeline, `timeline ${was.timeline} → ${now.timeline}`);
  });

  it('refuses targets in the future, before the first backup and past the archive, naming the window (exit 2)', async () => {
    const cases = [
      { at: new Date(Date.now() + 3_600_000).toISOString(), why: /is in the future/ },
      { at: '2001-01-01T00:00:00Z', why: /is before the first base backup/ },
      { lsn: 'FFFF/0', why: /after the end of the archived WAL/ },
      { name: 'no-such-point', why: /no restore point named "no-such-point"/ },
    ];
    const window = (await cli(['pitr', 'window'])).json();
    for (const c of cases) {
      const flag = 'at' in c ? ['--at', c.at!] : 'lsn' in c ? ['--lsn', c.lsn!] : ['--name', c.name!];
      const res = await cli(['pitr', 'restore', ...flag, '--target', path.join(source.dir, 'never')]);
      assert.equal(res.code, 2, `${flag.join(' ')}: ${res.stderr}`);
      const err = JSON.parse(res.stderr);
      assert.equal(err.type, 'TargetOutsideWindow');
      assert.match(err.error, c.why);
      assert.ok(err.error.includes(`the recoverable window is ${window.earliest} to `), err.error);
      assert.match(err.error, /HINT: /);
    }
    assert.equal(fs.existsSync(path.join(source.dir, 'never')), false, 'nothing was restored');
    const notEmpty = await cli(['pitr', 'restore', '--latest', '--target', source.cluster.dataDir]);
    assert.equal(notEmpty.code, 2);
    assert.match(JSON.parse(notEmpty.stderr).error, /is not empty: tenantsafe restores into a new cluster/);
    const twoTargets = await cli(['pitr', 'restore', '--latest', '--at', quiet.at, '--target', '/tmp/x']);
    assert.equal(twoTargets.code, 2);
  });

  it('restores to a named restore point and to the latest archived commit', async () => {
    const { lastBefore: lastAtMark, result: mark } = await writer.paused(() => cli(['pitr', 'mark', 'before-cleanup']));
    assert.equal(mark.code, 0, mark.stderr);
    await sleep(300);
    await writer.stop();
    const lastEver = writer.rows.at(-1)!;
    await windowReaches(new Date(lastEver.committedAt - 50).toISOString());

    const named = await cli(['pitr', 'restore', '--name', 'before-cleanup', '--target', path.join(source.dir, 'named'), '--port', String((await freePorts('127.0.0.1', 1))[0])]);
    assert.equal(named.code, 0, named.stderr);
    assert.deepEqual(await restoredIds(named.json().port), writer.rows.filter((r) => r.id <= lastAtMark).map((r) => r.id), 'exactly the rows before the mark');

    const latest = await cli(['pitr', 'restore', '--latest', '--target', path.join(source.dir, 'latest')]);
    assert.equal(latest.code, 0, latest.stderr);
    assert.equal(latest.json().port, null, 'without --port the restored cluster is stopped');
    const restored = await PrivateCluster.attach(latest.json().dataDir);
    await restored.start();
    assert.deepEqual(await restoredIds(restored.port), writer.rows.map((r) => r.id), 'every committed row, the last one included');
    await restored.stop();
  });

  it('prints the window\'s latest to the microsecond, as Postgres keeps it: given back as --at, it restores that very commit', async () => {
    const newestCommit = async () =>
      (await withConnection(source.db.url, (c) => c.query<{ at: string }>(`SELECT ${microsText('(pg_last_committed_xact()).timestamp')} AS at`))).rows[0].at;
    let latest = '';
    // the writer has stopped: the archive reaches the newest commit within a moment (the
    // worker's own catalog writes, about one a second while the archive grows, may move it on
    // between the window and the plan: then both are read again)
    const provider = createFullBackupProvider(env.engine);
    let plan: Awaited<ReturnType<typeof provider.planRestore>> | undefined;
    await waitFor('the window to reach the newest commit, and a plan for it with no commit after it', async () => {
      const [w, newest] = await Promise.all([cli(['pitr', 'window']), newestCommit()]);
      latest = w.json().latest;
      if (latest !== newest) return false;
      // as the activities do, with no commit after it in the archive: recovery cannot wait for one
      plan = await provider.planRestore(pitrTargetOf({ at: latest }), path.join(source.dir, 'at-newest'), new Date());
      return plan.stopAfterXid !== undefined;
    }, { tries: 150, intervalMs: 200, state: async () => `window ${latest}, newest commit ${await newestCommit()}, plan ${JSON.stringify(plan)}` });
    assert.match(latest, /\.\d{6}Z$/);
    assert.ok(plan?.stopAfterXid, 'recovery stops after the newest commit, not at its time');
    const alone = await provider.restore({ plan, target: path.join(source.dir, 'at-newest') });
    assert.equal(alone.recoveredTo, latest);
    // and through the CLI and the workflow
    const port = (await freePorts('127.0.0.1', 1))[0];
    const res = await cli(['pitr', 'restore', '--at', latest, '--target', path.join(source.dir, 'at-latest'), '--port', String(port)]);
    assert.equal(res.code, 0, res.stderr);
    assert.equal(res.json().recoveredTo, latest, 'recovered to that commit, printed the same way');
    assert.deepEqual(await restoredIds(port), writer.rows.map((r) => r.id), 'every committed row');
  });

  if (compression === 'gzip') {
    it('restores, with lz4 configured now, a base backup made before compression was a choice (base.tar.gz, no compression in its manifest)', async () => {
      const prefix = `full/${first.backupId}/`;
      const { compression: recorded, manifestChecksum: _checksum, ...older } = await readFullManifest(store, prefix);
      assert.deepEqual(recorded, { method: 'gzip', level: 1 });
      // what tenantsafe wrote before: the same gzip tar, a manifest without the field
      const sha256 = await writeManifest(store, prefix, sealManifest(older));
      await env.engine.catalog.recordFullBackup(await readFullManifest(store, prefix), store.uri, sha256);
      const switched = new Engine(parseConfig({ ...env.document, fullBackup: { ...env.document.fullBackup, compression: 'lz4' } }, { env: process.env, source: 'test', baseDir: env.dir }));
      try {
        assert.equal(switched.config.fullBackup.compression.method, 'lz4');
        const provider = createFullBackupProvider(switched);
        const target = path.join(source.dir, 'before-the-choice');
        const plan = await provider.planRestore(pitrTargetOf({ latest: true }), target, new Date());
        assert.equal(plan.backupId, first.backupId);
        await provider.restore({ plan, target });
        const restored = await PrivateCluster.attach(target);
        await restored.start();
        assert.deepEqual(await restoredIds(restored.port), writer.rows.map((r) => r.id), 'every committed row');
        await restored.stop();
      } finally {
        await switched.close();
      }
    });
  }

  it('fails a restore whose WAL holds a damaged segment, naming it', async () => {
    // the first segment replay needs (the newest one may still be rewritten by the archiver)
    const listing = await listWalArchive(store);
    const startSegment = segmentOfLsn(first.startLsn, 1, 1 << 20).slice(8);
    const damaged = listing.segments.find((s) => s.name.slice(8) === startSegment)!;
    const original = await store.getBytes(damaged.key);
    // one byte of the segment changed, stored as valid gzip: only the sha256 can tell (a bit
    // flipped in the gzip stream itself may fall on padding deflate ignores)
    const raw = await readWalObject(store, damaged.key);
    raw[Math.floor(raw.length / 2)] ^= 0x01;
    await store.put(damaged.key, gzipSync(raw));
    try {
      const res = await cli(['pitr', 'restore', '--latest', '--target', path.join(source.dir, 'damaged-wal')]);
      assert.equal(res.code, 1, res.stderr + res.stdout);
      assert.match(JSON.parse(res.stderr).error, new RegExp(`did not complete recovery .*WAL archive: ${damaged.name}: `));
    } finally {
      await store.put(damaged.key, original);
    }
  });

  it('verifies a base backup: object checksums, WAL, pg_verifybackup and a real restore all pass', async () => {
    const res = await cli(['verify', first.backupId]);
    assert.equal(res.code, 0, res.stderr + res.stdout);
    const out = res.json();
    assert.deepEqual(Object.keys(out).sort(), ['checks', 'ok']);
    assert.equal(out.ok, true);
    const kinds = new Set(out.checks.map((c: { check: string }) => c.check));
    assert.deepEqual([...kinds].sort(), ['manifest', 'object', 'pg_verifybackup', 'restore', 'wal']);
    const reports: string[] = [];
    for await (const o of store.list(`reports/verify/${first.backupId}/`)) reports.push(path.extname(o.key));
    assert.deepEqual(reports.sort(), ['.json', '.txt']);
  });

  it('catches a flipped byte in a base backup and a missing WAL segment, counting each', async () => {
    const second = (await cli(['full-backup', '--wait'])).json();
    const root = env.config.storage.primary.kind === 'local' ? env.config.storage.primary.path : '';
    const base = path.join(root, 'full', second.backupId, baseKeyOf(compression));
    const bytes = fs.readFileSync(base);
    bytes[Math.floor(bytes.length / 2)] ^= 0x01;
    fs.writeFileSync(base, bytes);
    const flipped = await cli(['verify', second.backupId]);
    assert.equal(flipped.code, 1);
    const problems = flipped.json().checks.filter((c: { result: string }) => c.result !== 'ok');
    assert.deepEqual(problems.map((c: { check: string; target: string; result: string }) => [c.check, c.target, c.result]), [
      ['object', baseKeyOf(compression), 'checksum_mismatch'],
      ['restore', 'restore test', 'other'],
    ]);

    // the first backup's start segment goes missing from the archive
    const listing = await listWalArchive(store);
    const startSegment = listing.segments.find((s) => s.name.slice(8) === segmentOfLsn(first.startLsn, 1, 1 << 20).slice(8))!;
    await store.delete(startSegment.key);
    const missing = await cli(['verify', first.backupId]);
    assert.equal(missing.code, 1);
    const walProblems = missing.json().checks.filter((c: { check: string; result: string }) => c.check === 'wal' && c.result !== 'ok');
    assert.deepEqual(walProblems.map((c: { target: string; result: string }) => [c.target, c.result]), [[startSegment.name, 'missing']]);
    const status = await runCli(['wal', 'status', '--json'], { configFile: env.configFile });
    assert.equal(status.code, 1, 'wal status exits 1 on a gap');
    assert.deepEqual(status.json().gaps, [{ from: startSegment.name, to: startSegment.name, count: 1 }]);
  });

  it('applies retention: keeps the pinned and the newest backup, removes the rest and the WAL only they needed', async () => {
    const newest = (await cli(['full-backup', '--wait'])).json();
    // oldest first here, as retention thinks of them (the list is newest first)
    const all = (await cli(['full-backups', 'list'])).json().map((b: { backupId: string }) => b.backupId).reverse();
    assert.equal(all.length, 3);
    assert.equal(all[2], newest.backupId);
    const pin = await cli(['backups', 'pin', all[1], '--reason', 'LEGAL-42']);
    assert.equal(pin.code, 0, pin.stderr);

    const dry = await cli(['retention', 'apply', '--dry-run']);
    assert.equal(dry.code, 0, dry.stderr);
    assert.deepEqual(dry.json().removedBackups, [all[0]]);
    assert.equal((await cli(['full-backups', 'list'])).json().length, 3, 'a dry run deletes nothing');

    const before = await listWalArchive(store);
    const applied = (await cli(['retention', 'apply'])).json();
    assert.deepEqual(applied.removedBackups, [all[0]]);
    const kept = (await cli(['full-backups', 'list'])).json();
    assert.deepEqual(kept.map((b: { backupId: string }) => b.backupId), [newest.backupId, all[1]], 'newest first');
    const after = await listWalArchive(store);
    assert.equal(after.segments.length, before.segments.length - applied.removedWalSegments);
    assert.ok(applied.removedWalSegments > 0, 'WAL only the removed backup needed was pruned');

    // The pinned backup keeps the WAL that makes it consistent; the archive is unbroken from the newest on.
    const walChecks = async (id: string) => (await cli(['verify', id])).json().checks.filter((c: { check: string }) => c.check === 'wal') as { target: string; result: string; detail?: string }[];
    const isGap = (c: { detail?: string }) => c.detail?.startsWith('gap of') ?? false;
    const pinnedWal = await walChecks(all[1]);
    assert.ok(pinnedWal.filter((c) => !isGap(c)).every((c) => c.result === 'ok'), JSON.stringify(pinnedWal));
    assert.ok(pinnedWal.some((c) => isGap(c) && c.result === 'missing'), 'the WAL between the pinned and the newest backup went');
    const newestWal = await walChecks(newest.backupId);
    assert.ok(newestWal.length > 0 && newestWal.every((c) => c.result === 'ok'), JSON.stringify(newestWal));
    assert.equal((await cli(['pitr', 'window'])).json().earliest, kept[0].consistentAt, 'the window starts at the newest backup');
  });
});


describe('a base backup of a cluster whose own archive_command fails (another tool archiving its WAL)', function () {
  this.timeout(180_000);
  let stack: Awaited<ReturnType<typeof physicalBackupStack>> | undefined;

  // PostgreSQL ends a backup without its WAL only once archive_command has archived the last segment: never, here
  before(async () => (stack = await physicalBackupStack({ archive_mode: 'on', archive_command: 'false' })));
  after(async () => stack?.close());

  it('completes without waiting for that archive_command, keeps no streamed WAL beside the base, and restores from the WAL archive', async () => {
    const env = stack!.env;
    const cli = (args: string[]) => runCli([...args, '--json'], { configFile: env.configFile });
    const res = await cli(['full-backup', '--wait']);
    assert.equal(res.code, 0, res.stderr);
    const { backupId } = res.json();
    const keys: string[] = [];
    for await (const o of env.engine.store.list(`full/${backupId}/`)) keys.push(o.key.slice(`full/${backupId}/`.length));
    assert.deepEqual(keys.sort(), ['backup_manifest', baseKeyOf('lz4'), 'manifest.json', 'started.json']);
    const verified = await cli(['verify', backupId]);
    assert.equal(verified.code, 0, verified.stderr + verified.stdout);
    assert.equal(verified.json().ok, true, verified.stdout);
  });
});

describe('the WAL archive read for a recovery', () => {
  it('lists, in one listing, a segment stored while its folder was read and whose partial went before its size was read', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tenantsafe-wal-'));
    const fsp = require('node:fs/promises') as { stat: typeof fs.promises.stat };
    const realStat = fsp.stat;
    try {
      const archive = createStore({ kind: 'local', path: dir });
      const [older, newest] = ['000000010000000000000002', '000000010000000000000003'];
      const full = (b: number) => Buffer.alloc(1 << 16, b);
      await archive.put(segmentKey(older, sha256Hex(full(2))), gzipSync(full(2)));
      await archive.put(partialKey(newest), gzipSync(full(3).subarray(0, 100)));
      // the archiver completes the newest segment just after the listing read the folder: the
      // segment stored, then the partial deleted, before the listing reads the partial's size
      let completed = false;
      fsp.stat = (async (file: fs.PathLike, ...rest: []) => {
        if (!completed && String(file).endsWith(partialKey(newest))) {
          completed = true;
          await archive.put(segmentKey(newest, sha256Hex(full(3))), gzipSync(full(3)));
          await archive.delete(partialKey(newest));
        }
        return realStat(file, ...rest);
      }) as typeof fsp.stat;
      let listings = 0;
      const counted = new Proxy(archive, { get: (t, k) => (k === 'list' ? (prefix: string) => (listings++, t.list(prefix)) : Reflect.get(t, k)) });
      const listing = await listWalArchive(counted);
      assert.ok(completed, 'the segment completed during the listing');
      assert.deepEqual([listing.segments.map((x) => x.name), listing.partials.map((x) => x.name)], [[older, newest], []], 'the newest segment is listed');
      assert.equal(listings, 1, 'the archive is listed once');
    } finally {
      fsp.stat = realStat;
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('serves a segment that completed after the listing, its partial gone meanwhile', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tenantsafe-wal-'));
    try {
      const archive = createStore({ kind: 'local', path: dir });
      const name = '000000010000000000000003';
      const segmentSize = 1 << 20;
      const full = Buffer.alloc(segmentSize, 7);
      await archive.put(partialKey(name), gzipSync(full.subarray(0, 1000)));
      const listing = await listWalArchive(archive);
      assert.deepEqual(listing.partials.map((p) => p.name), [name]);
      // what the archiver does when the segment completes: the segment, then the partial goes
      await archive.put(segmentKey(name, sha256Hex(full)), gzipSync(full));
      await archive.delete(partialKey(name));
      assert.deepEqual(await fetchWalFile(archive, listing, name, segmentSize), full);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
