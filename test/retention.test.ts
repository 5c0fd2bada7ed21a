// The retention engine over a simulated calendar: 400 days of daily 02:00 backups (with an
// outage at the end), the policy applied every day at 03:00 with an injected clock; and on a
// real catalog, the backups restores are reading.
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseConfig } from '../lib/config';
import { Engine } from '../lib/engine';
import { pitrAnchor, planRetention, planWalRetention, type RetentionPolicy } from '../lib/retention/policy';
import { runRetention } from '../lib/retention/run';
import { positionKey, segmentName } from '../lib/wal/names';
import { backUpNow } from './support/backups';
import { freshDatabase, withDb, type TestDatabase } from './support/db';

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
