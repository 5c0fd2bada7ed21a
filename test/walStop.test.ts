// Whole-database backups and the WAL archiver through the CLI, on a private cluster: `backup full`
// and its old name `full-backup` print the same contract, `full-backups list` is newest first,
// and `wal stop` leaves the archiver's replication slot (saying so, with the SQL to drop it)
// unless `--drop-slot`, which drops it, so the primary keeps no WAL for it any more.
import { strict as assert } from 'node:assert';
import { connect } from '../lib/pg';
import { physicalBackupStack, type SourceCluster } from './support/cluster';
import { runCli, type TestEnv } from './support/env';
import { waitFor } from './support/wait';

describe('full backups and wal stop through the CLI (postgres provider, private cluster)', function () {
  this.timeout(180_000);
  let source: SourceCluster;
  let env: TestEnv;
  const slotName = 'tenantsafe'; // fullBackup.slot's default
  const cli = async (...args: string[]) => runCli([...args, '--json'], { configFile: env.configFile });

  /** The archiver's slot as the server sees it, and the WAL it keeps. */
  async function slot(): Promise<{ active: boolean; retained: number } | null> {
    const c = await connect(source.db.url);
    try {
      const r = await c.query<{ active: boolean; retained: string }>(
        `SELECT active, pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint::text AS retained FROM pg_replication_slots WHERE slot_name = $1`,
        [slotName],
      );
      return r.rows[0] ? { active: r.rows[0].active, retained: Number(r.rows[0].retained) } : null;
    } finally {
      await c.end();
    }
  }

  let stack: Awaited<ReturnType<typeof physicalBackupStack>> | undefined;

  before(async function () {
    this.timeout(240_000);
    stack = await physicalBackupStack();
    ({ source, env } = stack);
    await source.cluster.psql(`CREATE TABLE events (id bigserial PRIMARY KEY, note text NOT NULL)`, 'app');
  });
  after(async () => {
    await stack?.close();
  });

  let first: { backupId: string };
  it('takes a full backup as `backup full`, and as `full-backup` with the same fields; lists them newest first', async () => {
    const res = await cli('backup', 'full', '--wait');
    assert.equal(res.code, 0, res.stderr);
    first = res.json();
    await source.cluster.psql(`INSERT INTO events (note) SELECT 'row ' || g FROM generate_series(1, 1000) g`, 'app');
    const old = await cli('full-backup', '--wait');
    assert.equal(old.code, 0, old.stderr);
    const second = old.json();
    assert.deepEqual(Object.keys(second).sort(), Object.keys(first).sort());
    assert.deepEqual(Object.keys(first).sort(), ['backupId', 'bytes', 'finishedAt', 'kind', 'startLsn', 'status', 'stopLsn', 'workflowId']);
    assert.equal(second.workflowId, (first as { workflowId?: string }).workflowId, 'the same workflow id: one code path');
    assert.notEqual(second.backupId, first.backupId);

    const listed = await cli('full-backups', 'list');
    assert.equal(listed.code, 0, listed.stderr);
    assert.deepEqual(listed.json().map((b: { backupId: string }) => b.backupId), [second.backupId, first.backupId]);
    const text = await runCli(['full-backups', 'list'], { configFile: env.configFile });
    assert.ok(text.stdout.indexOf(second.backupId) < text.stdout.indexOf(first.backupId), text.stdout);
  });

  it('stops the archiver but leaves its slot, warning that WAL piles up on the primary and how to drop it', async () => {
    assert.equal((await slot())?.active, true, 'the archiver streams from its slot');
    const res = await cli('wal', 'stop');
    assert.equal(res.code, 0, res.stderr);
    const out = res.json();
    assert.equal(out.stopped, true);
    assert.equal(out.slot.name, slotName);
    assert.equal(out.slot.existed, true);
    assert.equal(out.slot.dropped, false);
    assert.equal(out.warnings.length, 1);
    assert.match(out.warnings[0], /replication slot "tenantsafe" stays .*the primary keeps every WAL segment from its position, without bound \(max_slot_wal_keep_size is unlimited\)/);
    assert.match(out.warnings[0], /tenantsafe wal stop --drop-slot.*SELECT pg_drop_replication_slot\('tenantsafe'\);/);
    const human = await runCli(['wal', 'stop'], { configFile: env.configFile });
    assert.equal(human.code, 0, human.stderr);
    assert.match(human.stdout, /^The WAL archiver was not running\nwarning: replication slot "tenantsafe" stays/);

    // the slot is still there and holds back WAL written since
    await waitFor('the receiver let go of the slot', async () => (await slot())?.active === false, { tries: 100, intervalMs: 100 });
    const before = (await slot())!.retained;
    await source.cluster.psql(`INSERT INTO events (note) SELECT repeat('x', 500) FROM generate_series(1, 5000) g; SELECT pg_switch_wal();`, 'app');
    assert.ok((await slot())!.retained > before + 1_000_000, 'the slot keeps the WAL written after the stop');
  });

  it('drops the slot with --drop-slot, so the primary keeps no WAL for it; the next full backup makes a new one', async () => {
    await cli('wal', 'start');
    await waitFor('the archiver streams again', async () => (await slot())?.active === true, { tries: 100, intervalMs: 100 });
    const res = await cli('wal', 'stop', '--drop-slot');
    assert.equal(res.code, 0, res.stderr);
    const out = res.json();
    assert.equal(out.stopped, true);
    assert.deepEqual({ existed: out.slot.existed, dropped: out.slot.dropped }, { existed: true, dropped: true });
    assert.deepEqual(out.warnings, []);
    assert.equal(await slot(), null, 'the slot is gone');

    const again = await cli('wal', 'stop', '--drop-slot');
    assert.equal(again.code, 0, again.stderr);
    assert.deepEqual({ stopped: again.json().stopped, existed: again.json().slot.existed, dropped: again.json().slot.dropped, warnings: again.json().warnings }, { stopped: false, existed: false, dropped: false, warnings: [] });

    const full = await cli('backup', 'full', '--wait');
    assert.equal(full.code, 0, full.stderr);
    assert.notEqual(await slot(), null, 'a full backup makes the slot again');
  });
});
