// Source 2 of a tenant point-in-time restore: a PITR clone. A private cluster holds the sample;
// the WAL archiver and a base backup run in this process (the engine, no worker). Writes to
// several tenants go on around a time t, the commit time of one transaction; a snapshot exported
// right after it and held open is the reference for the tenant as committed at t.
import { strict as assert } from 'node:assert';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Client } from 'pg';
import { sha256Hex } from '../lib/checksum';
import { Engine } from '../lib/engine';
import { ErrorType, type TenantsafeError } from '../lib/errors';
import { fullBackupPrefix } from '../lib/format/fullManifest';
import { manifestFile } from '../lib/format/sealed';
import { tenantBackupPrefix } from '../lib/format/tenantManifest';
import { takeBaseBackup } from '../lib/fullBackup/basebackup';
import { backupLabel } from '../lib/labels';
import { connect } from '../lib/pg';
import { physicalWindow } from '../lib/pitr/window';
import { rebuildFromPitrClone, type PitrCloneBackup, type PitrCloneRequest } from '../lib/pointInTime/pitrClone';
import { archiveWal } from '../lib/wal/archiver';
import { parseLsn } from '../lib/wal/names';
import { ensureSampleDatabase, sampleTenants } from '../sample/generate';
import { liveRows, readBackup, sorted } from './support/backups';
import { startSourceCluster, type SourceCluster } from './support/cluster';
import { createTestEnv, type TestEnv } from './support/env';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const commitTimeSql = `to_char(pg_xact_commit_timestamp(xmin) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`;

/** One transaction per change, over several tenants: parent and child tables, and a task moved to another tenant's project. */
async function writeRound(c: Client, round: string, tenants: string[]): Promise<void> {
  for (const tenant of tenants) {
    await c.query(`INSERT INTO app.labels (tenant_id, code, color) VALUES ($1, $2, 'red')`, [tenant, round]);
    await c.query(`UPDATE app.users SET display_name = $2 WHERE user_id = (SELECT min(user_id) FROM app.users WHERE tenant_id = $1)`, [tenant, round]);
    await c.query(
      `DELETE FROM app.comments c WHERE comment_id = (
         SELECT max(c.comment_id) FROM app.comments c JOIN app.tasks t USING (task_id) JOIN app.projects p USING (project_id)
          WHERE p.tenant_id = $1 AND NOT EXISTS (SELECT FROM app.comments r WHERE r.reply_to = c.comment_id))`,
      [tenant],
    );
  }
  await c.query(
    `UPDATE app.tasks SET project_id = (SELECT min(project_id) FROM app.projects WHERE tenant_id = $2)
      WHERE task_id = (SELECT min(t.task_id) FROM app.tasks t JOIN app.projects p USING (project_id)
                        WHERE p.tenant_id = $1 AND NOT EXISTS (SELECT FROM app.task_labels l WHERE l.task_id = t.task_id))`,
    [tenants[0], tenants[1]],
  );
}

describe('a tenant rebuilt from a PITR clone', function () {
  this.timeout(300_000);
  const sample = { tenants: 4, rows: 4_000 };
  const tenant = 'acme';
  const written = ['acme', 'globex', 'initech'];
  const reason = 'the change log does not cover the range (test)';
  let source: SourceCluster;
  let env: TestEnv;
  const archiving = new AbortController();
  let archiver: Promise<unknown> | undefined;
  let writer: Client;
  let reference: Client;
  /** the commit time of the last transaction before the reference snapshot */
  let t: string;
  /** the exported reference snapshot, held open */
  let snapshot: string;
  /** WAL positions: inside the commit at t before it committed; between it and the next commit; after that one */
  let lsnBeforeT: string;
  let lsnAtT: string;
  let lsnAfterNext: string;

  const pointInTimeId = () => backupLabel(new Date(), 'pointInTime', randomBytes(3).toString('hex'));
  const rebuild = (args: Partial<PitrCloneRequest> & Pick<PitrCloneRequest, 'target'>, engine = env.engine): Promise<PitrCloneBackup> =>
    rebuildFromPitrClone(engine, { tenantId: tenant, backupId: pointInTimeId(), reason, ...args });

  async function objectsUnder(prefix: string): Promise<string[]> {
    const keys: string[] = [];
    for await (const o of env.engine.store.list(prefix)) keys.push(o.key);
    return keys;
  }

  /** No clone directory in the scratch directory, and no server running from one. */
  function assertNoClone(): void {
    assert.deepEqual(fs.readdirSync(source.dir).filter((f) => f.startsWith('tenantsafe-pitr-clone-')), [], 'clone directories left');
    const commandLines = fs
      .readdirSync('/proc')
      .filter((p) => /^\d+$/.test(p))
      .map((p) => {
        try {
          return fs.readFileSync(`/proc/${p}/cmdline`, 'utf8').replace(/\0/g, ' ');
        } catch {
          return ''; // exited meanwhile
        }
      });
    assert.deepEqual(commandLines.filter((cmd) => cmd.includes('tenantsafe-pitr-clone-')), [], 'processes of a clone left');
  }

  before(async () => {
    // autovacuum off: no commit of its own can fall between the writer's, so the one at t is the last before the next
    source = await startSourceCluster('app', { track_commit_timestamp: 'on', autovacuum: 'off' });
    const { url } = await ensureSampleDatabase(source.cluster.url(), 'saas', sample);
    env = await createTestEnv('local', {
      db: { name: 'saas', url, tenants: sampleTenants(sample), drop: async () => undefined },
      configure: (doc, dir) => {
        doc.fullBackup = { walPartialInterval: '200ms', walSpoolDir: path.join(dir, 'spool'), archiveWait: '30s' };
        doc.verification = { scratchDir: source.dir };
      },
    });
    const { config, engine } = env;
    archiver = archiveWal({
      url: config.database.url,
      store: engine.store,
      slot: config.fullBackup.slot,
      spoolDir: config.fullBackup.walSpoolDir,
      partialIntervalMs: config.fullBackup.walPartialIntervalMs,
      compressionLevel: config.backup.compressionLevel,
      runForMs: 3_600_000,
      signal: archiving.signal,
    });
    archiver.catch(() => undefined); // awaited in after()
    const fullId = backupLabel(new Date(), 'full', randomBytes(3).toString('hex'));
    const manifest = await takeBaseBackup(engine, { backupId: fullId });
    const body = await engine.store.getBytes(fullBackupPrefix(fullId) + manifestFile);
    await engine.catalog.recordFullBackup(manifest, engine.store.uri, sha256Hex(body));

    writer = await connect(url);
    await writeRound(writer, 'before', written);
    await writer.query('BEGIN');
    await writer.query(`INSERT INTO app.labels (tenant_id, code, color) VALUES ($1, 'at-t', 'green')`, [tenant]);
    lsnBeforeT = (await writer.query<{ lsn: string }>(`SELECT pg_current_wal_insert_lsn()::text AS lsn`)).rows[0].lsn;
    await writer.query('COMMIT');
    t = (await writer.query<{ t: string }>(`SELECT ${commitTimeSql} AS t FROM app.labels WHERE tenant_id = $1 AND code = 'at-t'`, [tenant])).rows[0].t;

    reference = await connect(url);
    await reference.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
    const held = await reference.query<{ snapshot: string; lsn: string }>(`SELECT pg_export_snapshot() AS snapshot, pg_current_wal_insert_lsn()::text AS lsn`);
    ({ snapshot, lsn: lsnAtT } = held.rows[0]);

    await writer.query(`UPDATE app.labels SET color = 'after-t' WHERE tenant_id = $1 AND code = 'at-t'`, [tenant]);
    lsnAfterNext = (await writer.query<{ lsn: string }>(`SELECT pg_current_wal_insert_lsn()::text AS lsn`)).rows[0].lsn;
    await writeRound(writer, 'after', written);
    await writer.query(`INSERT INTO app.tenants (tenant_id, name, plan_id, created_at) VALUES ('newco', 'New Co', (SELECT min(plan_id) FROM app.plans), now())`);
    const last = (await writer.query<{ t: string }>(`SELECT ${commitTimeSql} AS t FROM app.tenants WHERE tenant_id = 'newco'`)).rows[0].t;
    // the archive holds the commits after t, up to the last one (the window's end is in milliseconds)
    for (let i = 0; ; i++) {
      const w = await physicalWindow(engine);
      if (w.latest && Date.parse(w.latest) >= Date.parse(last)) break;
      if (i > 150) assert.fail(`the window never reached ${last}: ${JSON.stringify({ earliest: w.earliest, latest: w.latest })}`);
      await sleep(200);
    }
  });

  after(async () => {
    await reference?.end();
    await writer?.end();
    archiving.abort();
    await archiver?.catch((err: unknown) => {
      if (err !== archiving.signal.reason) throw err;
    });
    await env?.close();
    await source?.remove();
  });

  it("gives exactly the tenant's rows as committed at t: the commit at t in, the one after it out", async () => {
    const result = await rebuild({ target: { at: t } });
    assert.match(result.backupId, /^\d{8}-\d{6}P-[0-9a-f]{6}$/);
    assert.equal(result.lastCommit?.time, t, 'the last transaction included is the one committed at t, to the microsecond');
    assert.ok(parseLsn(result.lastCommit!.lsn) > parseLsn(lsnBeforeT) && parseLsn(result.lastCommit!.lsn) < parseLsn(lsnAfterNext), `${lsnBeforeT} < ${result.lastCommit!.lsn} < ${lsnAfterNext}`);

    const backup = await readBackup(env.engine.store, tenant, result.backupId);
    const expected = await liveRows(env.config, tenant, undefined, snapshot);
    assert.deepEqual([...backup.rows.keys()].sort(), [...expected.keys()].sort());
    for (const [table, rows] of expected) assert.deepEqual(sorted(backup.rows.get(table)!), sorted(rows), table);
    const labels = backup.rows.get('app.labels')!;
    assert.ok(labels.includes(`${tenant}\tat-t\tgreen`), 'the commit at t is in');
    assert.ok(!labels.some((l) => l.includes('after')), 'no commit after t is');
    const now = await liveRows(env.config, tenant);
    assert.notDeepEqual(now, expected, 'the tenant changed after t');

    const { manifest } = backup;
    assert.deepEqual(manifest.pointInTime, { source: 'pitrClone', target: { at: t }, lastCommit: result.lastCommit, reason });
    assert.deepEqual({ at: manifest.snapshot.at, lsn: manifest.snapshot.lsn }, { at: t, lsn: result.lastCommit!.lsn });
    assert.equal(await env.engine.catalog.getBackup(result.backupId).catch(() => null), null, 'the caller records it, not the rebuild');
    assertNoClone();
  });

  it('gives the same rows for an LSN between that commit and the next, as of the commit time of the last one included', async () => {
    const result = await rebuild({ target: { lsn: lsnAtT } });
    assert.equal(result.lastCommit?.time, t);
    const backup = await readBackup(env.engine.store, tenant, result.backupId);
    const expected = await liveRows(env.config, tenant, undefined, snapshot);
    for (const [table, rows] of expected) assert.deepEqual(sorted(backup.rows.get(table)!), sorted(rows), table);
    assert.deepEqual(backup.manifest.pointInTime?.target, { lsn: lsnAtT });
    assert.equal(backup.manifest.snapshot.at, t);
    assertNoClone();
  });

  it('refuses a tenant that did not exist at t (TenantNotFound), writes nothing and leaves no clone behind', async () => {
    assert.equal((await liveRows(env.config, 'newco')).get('app.tenants')!.length, 1, 'the tenant exists now');
    await assert.rejects(rebuild({ tenantId: 'newco', target: { at: t } }), (err: TenantsafeError) => {
      assert.equal(err.type, ErrorType.TenantNotFound);
      assert.ok(err.message.includes(`Tenant "newco" did not exist at ${t}`), err.message);
      assert.match(err.message, /HINT: /);
      return true;
    });
    assert.deepEqual(await objectsUnder('tenants/newco/'), []);
    assertNoClone();
  });

  it('stops and removes the clone when the rebuild is aborted', async () => {
    const aborting = new AbortController();
    const backupId = pointInTimeId();
    await assert.rejects(rebuild({ backupId, target: { at: t }, signal: aborting.signal, onProgress: (p) => p.step === 'restoring' && aborting.abort() }));
    assert.ok(aborting.signal.aborted);
    assert.deepEqual(await objectsUnder(tenantBackupPrefix(tenant, backupId)), []);
    assertNoClone();
  });

  it('refuses a clone the scratch file system cannot hold, before writing anything', async () => {
    const crowded = new Engine({ ...env.config, verification: { ...env.config.verification, scratchKeepFreePercent: 99 } });
    const before = fs.readdirSync(source.dir).sort();
    const backupId = pointInTimeId();
    try {
      await assert.rejects(rebuild({ backupId, target: { at: t } }, crowded), (err: TenantsafeError) => {
        assert.equal(err.type, ErrorType.InsufficientSpace);
        assert.match(err.message, /A PITR clone of full backup \S+ needs about [\d.]+ [MG]iB in .*: [\d.]+ [MG]iB are free, of which verification\.scratchKeepFreePercent keeps/);
        assert.match(err.message, /HINT: /);
        return true;
      });
    } finally {
      await crowded.close();
    }
    assert.deepEqual(fs.readdirSync(source.dir).sort(), before, 'nothing written to the scratch directory');
    assert.deepEqual(await objectsUnder(tenantBackupPrefix(tenant, backupId)), []);
  });

  it('refuses targets outside the window (TargetOutsideWindow), naming it', async () => {
    const window = await physicalWindow(env.engine);
    const targets = [{ at: new Date(Date.now() + 3_600_000).toISOString() }, { at: '2001-01-01T00:00:00Z' }, { lsn: 'FFFF/0' }];
    for (const target of targets) {
      await assert.rejects(rebuild({ target }), (err: TenantsafeError) => {
        assert.equal(err.type, ErrorType.TargetOutsideWindow);
        assert.ok(err.message.includes(`the recoverable window is ${window.earliest} to `), err.message);
        return true;
      });
    }
    assertNoClone();
  });
});
