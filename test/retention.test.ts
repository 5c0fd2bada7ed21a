// The retention engine over a simulated calendar: 400 days of daily 02:00 backups (with an
// outage at the end), the policy applied every day at 03:00 with an injected clock; on a real
// catalog, the backups restores are reading; and on a private logical cluster, the change log
// that follows the tenant backups it extends.
import { strict as assert } from 'node:assert';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { captureChanges } from '../lib/changeLog/capture';
import { readChangeLog } from '../lib/changeLog/read';
import { parseConfig } from '../lib/config';
import { Engine } from '../lib/engine';
import { streamPrefix } from '../lib/format/changeLog';
import { backupLabel } from '../lib/labels';
import { withConnection } from '../lib/pg';
import { planPointInTime } from '../lib/pointInTime';
import { rebuildFromChangeLog } from '../lib/pointInTime/changeLogReplay';
import { pitrAnchor, planChangeLogRetention, planRetention, planWalRetention, type RetentionPolicy } from '../lib/retention/policy';
import { runRetention } from '../lib/retention/run';
import { formatMicros } from '../lib/time';
import { formatLsn, parseLsn, positionKey, segmentName } from '../lib/wal/names';
import { ensureSampleDatabase, sampleTenants } from '../sample/generate';
import { backUpNow, readBackup } from './support/backups';
import { startSourceCluster, type SourceCluster } from './support/cluster';
import { freshDatabase, withDb, type TestDatabase } from './support/db';
import { createTestEnv, type TestEnv } from './support/env';
import { waitFor } from './support/wait';

const segmentSize = 16 * 1024 * 1024;
const dayMs = 86_400_000;
const day0 = Date.UTC(2026, 0, 1); // a Thursday
/** WAL segments archived per day; a backup's start and stop are the first two of its day */
const segmentsPerDay = 10;

interface SimBackup {
  backupId: string;
  at: string;
  day: number;
  startSegment: string;
  stopSegment: string;
}

function backupOf(day: number): SimBackup {
  return {
    backupId: `day-${String(day).padStart(3, '0')}`,
    at: new Date(day0 + day * dayMs + 2 * 3_600_000).toISOString(),
    day,
    startSegment: segmentName(1, BigInt(day * segmentsPerDay), segmentSize),
    stopSegment: segmentName(1, BigInt(day * segmentsPerDay + 1), segmentSize),
  };
}

/** The newest backup day of each of the `count` newest buckets that hold a backup. */
function newestPerBucket(days: number[], bucket: (day: number) => string, count: number): number[] {
  const newest = new Map<string, number>();
  for (const d of [...days].sort((a, b) => b - a)) if (!newest.has(bucket(d))) newest.set(bucket(d), d);
  return [...newest.values()].slice(0, count);
}

describe('retention over a simulated 400-day calendar', () => {
  const policy: RetentionPolicy = { days: 30, minCount: 3, daily: 7, weekly: 4, monthly: 6, yearly: 2 };
  const pinnedDay = 100;
  const lastBackupDay = 339; // an outage: no backups on days 340 to 399
  let backups: SimBackup[] = [];
  let segments: string[] = [];
  const removedEver = new Set<string>();

  before(() => {
    for (let day = 0; day < 400; day++) {
      if (day <= lastBackupDay) {
        backups.push(backupOf(day));
        for (let i = 0; i < segmentsPerDay; i++) segments.push(segmentName(1, BigInt(day * segmentsPerDay + i), segmentSize));
      }
      const now = new Date(day0 + day * dayMs + 3 * 3_600_000);
      const candidates = backups.map((b) => ({ backupId: b.backupId, at: b.at, pinned: b.day === pinnedDay }));
      const decision = planRetention(candidates, policy, now);
      const kept = new Set(decision.keep.map((k) => k.backupId));
      const keptBackups = backups.filter((b) => kept.has(b.backupId));
      const anchor = pitrAnchor(decision, keptBackups);
      const walGone = new Set(planWalRetention({ segments, kept: keptBackups, pitrFrom: anchor }));
      decision.remove.forEach((id) => removedEver.add(id));
      backups = keptBackups;
      segments = segments.filter((s) => !walGone.has(s));

      // Checked every simulated day, not only at the end.
      const present = new Set(segments);
      for (const b of backups) {
        for (let n = b.day * segmentsPerDay; n <= b.day * segmentsPerDay + 1; n++) {
          assert.ok(present.has(segmentName(1, BigInt(n), segmentSize)), `day ${day}: kept ${b.backupId} lost WAL segment ${n}`);
        }
      }
      if (anchor) {
        const from = anchor.day * segmentsPerDay;
        const newest = Math.min(day, lastBackupDay) * segmentsPerDay + segmentsPerDay - 1;
        for (let n = from; n <= newest; n++) assert.ok(present.has(segmentName(1, BigInt(n), segmentSize)), `day ${day}: the archive is broken at ${n} after ${anchor.backupId}`);
      }
      assert.ok(backups.some((b) => b.day === pinnedDay) || day < pinnedDay, `day ${day}: the pinned backup was deleted`);
    }
  });

  it('keeps exactly what the policy says: pinned, the newest three, 7 daily, 4 weekly, 6 monthly, 2 yearly', () => {
    const days = Array.from({ length: lastBackupDay + 1 }, (_, d) => d);
    const date = (d: number) => new Date(day0 + d * dayMs);
    const expected = new Set([
      pinnedDay,
      ...days.slice(-3),
      ...newestPerBucket(days, (d) => String(d), 7),
      // ISO weeks start on Monday; day 0 is a Thursday, so day -3 is the Monday of its week
      ...newestPerBucket(days, (d) => String(Math.floor((d + 3) / 7)), 4),
      ...newestPerBucket(days, (d) => `${date(d).getUTCFullYear()}-${date(d).getUTCMonth()}`, 6),
      ...newestPerBucket(days, (d) => String(date(d).getUTCFullYear()), 2),
    ]);
    assert.deepEqual(backups.map((b) => b.day).sort((a, b) => a - b), [...expected].sort((a, b) => a - b));
    const keptDates = backups.map((b) => date(b.day).toISOString().slice(0, 10));
    for (const monthEnd of ['2026-07-31', '2026-08-31', '2026-09-30', '2026-10-31', '2026-11-30']) assert.ok(keptDates.includes(monthEnd), `monthly: ${monthEnd}`);
    assert.ok(!keptDates.includes('2026-06-30'), 'the seventh month back is gone');
    assert.ok(!removedEver.has(backupOf(pinnedDay).backupId));
  });

  it('keeps the WAL unbroken from the oldest of the newest three backups, and only consistency WAL before it', () => {
    const anchorDay = lastBackupDay - 2;
    const continuous = segments.filter((s) => positionKey(s) >= positionKey(backupOf(anchorDay).startSegment));
    assert.equal(continuous.length, (lastBackupDay - anchorDay + 1) * segmentsPerDay);
    const older = segments.filter((s) => positionKey(s) < positionKey(backupOf(anchorDay).startSegment));
    const olderKept = backups.filter((b) => b.day < anchorDay);
    assert.equal(older.length, olderKept.length * 2, 'two segments (start, stop) for each older kept backup');
  });

  it('applies a tenant\'s override on top of the same policy', () => {
    const now = new Date(day0 + 60 * dayMs);
    const daily = Array.from({ length: 60 }, (_, d) => ({ backupId: `t-${d}`, at: backupOf(d).at, pinned: false }));
    const base = planRetention(daily, { ...policy, daily: 0, weekly: 0, monthly: 0, yearly: 0 }, now);
    const longer = planRetention(daily, { ...policy, daily: 0, weekly: 0, monthly: 0, yearly: 0, ...{ days: 45 } }, now);
    assert.equal(base.keep.length, 30);
    assert.equal(longer.keep.length, 45);
    assert.deepEqual(base.keep.find((k) => k.backupId === 't-59')!.reasons, ['min-count', 'recent']);
  });
});

describe('retention of tenant backups a restore reads', () => {
  let db: TestDatabase;
  let engine: Engine;
  let dir: string;
  const tenantId = 'globex';
  const ids: string[] = [];

  before(async function () {
    this.timeout(120_000);
    db = await freshDatabase({ tenants: 3, rows: 2_000 });
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tenantsafe-retention-'));
    const doc = { database: { url: db.url }, storage: { primary: { kind: 'local', path: dir } }, retention: { days: 0, minCount: 1 } };
    engine = new Engine(parseConfig(doc, { env: {}, source: 'test', baseDir: dir }));
    for (const at of [Date.now() - 2_000, Date.now()]) ids.push(await backUpNow(engine, tenantId, new Date(at)));
  });
  after(async () => {
    await engine?.close();
    await db?.drop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('keeps a backup while a restore of it waits for approval or applies, not for a restore row left behind', async () => {
    const [older, newer] = ids;
    const removed = async () => (await runRetention(engine, { dryRun: true })).removedBackups;
    assert.deepEqual(await removed(), [older], 'only the newest is kept (days 0, minCount 1)');

    const restore = { restoreId: 'r-in-use', tenantId, workflowId: 'tenant-restore/globex', runId: 'run', backupId: older, state: 'awaiting-approval', requestedBy: 'alice' };
    await engine.catalog.recordRestore(restore);
    const outcome = await runRetention(engine, { dryRun: true });
    assert.deepEqual(outcome.removedBackups, [], 'the backup a restore waits to apply stays');
    assert.deepEqual(outcome.kept.find((k) => k.backupId === older)?.reasons, ['in-use']);
    assert.ok(outcome.kept.some((k) => k.backupId === newer));

    // a restore row not updated for longer than the approval timeout and a day: its workflow is gone
    await withDb(db.url, (c) => c.query(`UPDATE ${engine.config.catalog.schema}.restores SET updated_at = now() - interval '3 days' WHERE restore_id = $1`, [restore.restoreId]));
    assert.deepEqual(await removed(), [older]);
    // and a finished one does not hold it either
    await engine.catalog.recordRestore({ ...restore, state: 'done' });
    assert.deepEqual(await removed(), [older]);
  });
});

describe('retention of the change log: segments follow the tenant backups they extend', () => {
  const seg = (end: number, commitUs: number) => ({ lastEndLsn: BigInt(end), lastCommitUs: BigInt(commitUs) });
  const segments = [seg(100, 1_000), seg(200, 2_000), seg(300, 3_000), seg(400, 4_000)];

  it('cuts at the oldest boundary among the kept backups of every tenant, never into the newest segment', () => {
    const cut = planChangeLogRetention({ segments, bases: [{ backupId: 'acme-2', boundary: 350n }, { backupId: 'globex-1', boundary: 250n }], horizonUs: 10_000n });
    assert.deepEqual(cut, { upTo: 250n, by: { backupId: 'globex-1' } });
    const late = planChangeLogRetention({ segments, bases: [{ backupId: 'acme-3', boundary: 900n }], horizonUs: 0n });
    assert.equal(late.upTo, 399n, 'a boundary past the newest segment: that segment stays all the same');
  });

  it('with no backup the log extends, keeps the segments younger than the age horizon, and the newest whatever its age', () => {
    assert.deepEqual(planChangeLogRetention({ segments, bases: [], horizonUs: 2_500n }), { upTo: 200n, by: { horizon: formatMicros(2_500n) } });
    assert.equal(planChangeLogRetention({ segments, bases: [], horizonUs: 99_000n }).upTo, 300n, 'all old: all but the newest');
    assert.equal(planChangeLogRetention({ segments, bases: [], horizonUs: 500n }).upTo, null, 'all young: none');
    assert.equal(planChangeLogRetention({ segments: [], bases: [], horizonUs: 99_000n }).upTo, null);
  });
});

describe('retention of the change log on a logical cluster', function () {
  this.timeout(240_000);
  let source: SourceCluster;
  let env: TestEnv;
  let stream: string;
  let capture: { stop(): Promise<void> };
  const sample = { tenants: 3, rows: 2_000 };
  const sql = (text: string, params?: unknown[]) => withConnection(env.db.url, (c) => c.query(text, params));
  const view = (tenantId: string, p: string) => sql(`INSERT INTO app.page_views (tenant_id, path, viewed_at) VALUES ($1, $2, now())`, [tenantId, p]);
  /** Waits until every commit so far is in a stored segment. */
  const logCaughtUp = async () => {
    const last = parseLsn((await sql(`SELECT pg_current_wal_lsn()::text AS l`)).rows[0].l);
    await waitFor('the log to catch up', async () => parseLsn((await env.engine.catalog.getChangeLogStream(stream))?.caughtUpLsn ?? '0/0') >= last);
  };
  const ids: Record<'acme1' | 'globex' | 'acme2', string> = { acme1: '', globex: '', acme2: '' };
  let mark: { commitTime: string };

  before(async () => {
    source = await startSourceCluster('app', { wal_level: 'logical' });
    const { url } = await ensureSampleDatabase(source.cluster.url(), 'saas', sample);
    env = await createTestEnv('local', {
      db: { name: 'saas', url, tenants: sampleTenants(sample), drop: async () => undefined },
      configure: (doc) => {
        doc.changeLog = { enabled: true, flushInterval: '100ms', replicaIdentityFull: true };
        // each tenant keeps only its newest backup
        doc.retention = { days: 0, minCount: 1 };
      },
    });
    const ac = new AbortController();
    const running = captureChanges(env.engine, { runForMs: 600_000, signal: ac.signal });
    capture = { stop: async () => (ac.abort(), void (await running)) };
    await waitFor('the slot', async () => (await sql(`SELECT count(*)::int AS n FROM pg_replication_slots WHERE slot_name = 'tenantsafe_changes'`)).rows[0].n === 1);
    stream = (await sql(`SELECT s.system_identifier::text || '-' || d.oid AS s FROM pg_control_system() s, pg_database d WHERE d.datname = current_database()`)).rows[0].s;

    // acme's first backup, globex's only one, acme's second, with commits of both tenants around them
    await view('globex', '/w1');
    await logCaughtUp();
    ids.acme1 = await backUpNow(env.engine, 'acme');
    await view('globex', '/w2');
    await logCaughtUp();
    ids.globex = await backUpNow(env.engine, 'globex');
    await view('globex', '/w3');
    await logCaughtUp();
    ids.acme2 = await backUpNow(env.engine, 'acme');
    await view('acme', '/w4');
    await view('globex', '/mark');
    await logCaughtUp();
    await view('globex', '/too-late');
    await logCaughtUp();
    for await (const { txn } of readChangeLog(env.engine.store, env.engine.catalog, stream, 0n)) {
      if (txn.changes.some((c) => c.kind === 'insert' && c.row[1] === '/mark')) mark = txn;
    }
    assert.ok(mark, 'the marked commit is in the log');
  });
  after(async () => {
    await capture?.stop().catch(() => undefined);
    await env?.close();
    await source?.remove();
  });

  const storedSegments = async () => {
    const keys: string[] = [];
    for await (const o of env.engine.store.list(`${streamPrefix(stream)}segments/`)) keys.push(o.key);
    return keys;
  };
  const boundaryOf = async (backupId: string) => parseLsn((await env.engine.catalog.changeLogBoundaries()).find((b) => b.backupId === backupId)!.boundary);

  it('removes the segments that end at or before the oldest boundary any tenant\'s kept backup has, and keeps every one after it', async () => {
    const cut = await boundaryOf(ids.globex);
    assert.ok(cut < (await boundaryOf(ids.acme2)), 'globex\'s backup is the oldest kept one with a boundary');
    const before = await env.engine.catalog.listChangeSegments(stream);
    const old = before.filter((s) => parseLsn(s.lastEndLsn) <= cut);
    assert.ok(old.length >= 2, `segments before the cut: ${old.length}`);
    // a crash of an earlier run between a segment's catalog row and its objects: objects no reader reaches
    const leftover = old[0];
    await env.engine.catalog.forgetChangeSegment(leftover);

    const dry = await runRetention(env.engine, { dryRun: true });
    assert.deepEqual(dry.removedBackups, [ids.acme1]);
    assert.equal(dry.removedChangeSegments, old.length, 'the leftover counted with the recorded ones');
    assert.deepEqual(dry.changeLogCuts, [{ stream, upTo: formatLsn(cut), by: ids.globex }]);
    assert.equal((await env.engine.catalog.listChangeSegments(stream)).length, before.length - 1, 'a dry run deletes nothing');
    assert.equal((await storedSegments()).length, before.length * 2);

    const applied = await runRetention(env.engine, { dryRun: false });
    assert.deepEqual(applied.removedBackups, [ids.acme1]);
    assert.equal(applied.removedChangeSegments, old.length);
    const after = await env.engine.catalog.listChangeSegments(stream);
    assert.ok(after.every((s) => parseLsn(s.lastEndLsn) > cut), 'every recorded segment left ends after the cut');
    const younger = before.filter((s) => parseLsn(s.lastEndLsn) > cut).map((s) => s.manifestKey);
    assert.deepEqual(after.map((s) => s.manifestKey).filter((k) => younger.includes(k)), younger, 'and every one after it is still there');
    const stored = await storedSegments();
    assert.equal(stored.length, after.length * 2, 'storage holds exactly the recorded segments, data and manifest');
    assert.ok(!stored.some((k) => k.includes(leftover.manifestKey.slice(0, -'.json'.length))), 'the leftover is gone too');
  });

  it('still rebuilds a tenant at a point in time from the oldest kept backup, and from the newest', async () => {
    const globexPlan = await planPointInTime(env.engine, 'globex', { at: mark.commitTime });
    assert.equal(globexPlan.source, 'changeLog');
    assert.equal(globexPlan.baseBackupId, ids.globex);
    const base = await env.engine.catalog.getBackup(ids.globex);
    const backupId = backupLabel(new Date(), 'pointInTime', randomBytes(3).toString('hex'));
    await rebuildFromChangeLog(env.engine, { tenantId: 'globex', backupId, base, stream, target: { at: mark.commitTime }, reason: 'test' });
    const paths = (await readBackup(env.engine.store, 'globex', backupId)).rows.get('app.page_views')!.map((l) => l.split('\t')[1]);
    assert.ok(['/w1', '/w2', '/w3', '/mark'].every((p) => paths.includes(p)), 'before the backup from it, after it from the log, the point itself');
    assert.ok(!paths.includes('/too-late'));
    assert.equal((await planPointInTime(env.engine, 'acme', { at: mark.commitTime })).baseBackupId, ids.acme2);
  });

  it('cuts at the next oldest boundary once the oldest backup goes', async () => {
    await backUpNow(env.engine, 'globex');
    const applied = await runRetention(env.engine, { dryRun: false });
    assert.deepEqual(applied.removedBackups, [ids.globex]);
    const cut = await boundaryOf(ids.acme2);
    assert.deepEqual(applied.changeLogCuts, [{ stream, upTo: formatLsn(cut), by: ids.acme2 }]);
    assert.ok((await env.engine.catalog.listChangeSegments(stream)).every((s) => parseLsn(s.lastEndLsn) > cut));
  });
});
