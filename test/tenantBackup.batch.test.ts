import { strict as assert } from 'node:assert';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseConfig } from '../lib/config';
import { Engine } from '../lib/engine';
import { backupLabel, restoreLabel } from '../lib/labels';
import { readManifest, tenantBackupPrefix } from '../lib/format/tenantManifest';
import { connect } from '../lib/pg';
import { applyApprovedRestore, dropRestoreScratch, parseSelection, previewRestore, verifyAppliedRestore } from '../lib/restore';
import { batchBackupIds, batchPrefix, takeTenantBatch } from '../lib/tenantBackup/batch';
import { takeTenantBackup } from '../lib/tenantBackup';
import { damageTenant } from '../sample/damage';
import { liveRows, readBackup, digestOf } from './support/backups';
import { freshDatabase, type TestDatabase } from './support/db';
import { checksumsOf } from './support/restore';

describe('batched tenant backups', function () {
  let db: TestDatabase;
  let engine: Engine;
  let dir: string;

  before(async function () {
    this.timeout(120_000);
    db = await freshDatabase();
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tenantsafe-batch-'));
    engine = new Engine(parseConfig({ database: { url: db.url }, storage: { primary: { kind: 'local', path: dir } } }, { env: {}, source: 'test', baseDir: dir }));
  });
  after(async () => {
    await engine?.close();
    await db?.drop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const newBatchId = () => backupLabel(new Date(), 'tenant', randomBytes(3).toString('hex'));

  it('gives every tenant of a batch the backup a single-tenant backup of the same snapshot gives it, rows and checksums, in packs', async function () {
    this.timeout(120_000);
    const holder = await connect(db.url);
    try {
      await holder.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
      const snapshot = (await holder.query<{ s: string }>('SELECT pg_export_snapshot() AS s')).rows[0].s;
      // changes after the snapshot: neither backup may see them
      await connect(db.url).then(async (c) => {
        await damageTenant(c, 'globex');
        await c.end();
      });
      const batchId = newBatchId();
      const result = await takeTenantBatch(engine, { batchId, attempt: 1, skip: ['initech'], snapshot });
      const tenants = db.tenants.map((t) => t.tenantId).filter((t) => t !== 'initech');
      assert.equal(result.succeeded, tenants.length);
      assert.deepEqual(result.failed, []);
      const ids = batchBackupIds(batchId, tenants);
      for (const tenantId of tenants) {
        const batched = await readBackup(engine.store, tenantId, ids.get(tenantId)!);
        const single = await takeTenantBackup(engine, { tenantId, backupId: backupLabel(new Date(), 'tenant', randomBytes(3).toString('hex')), snapshot });
        const alone = await readManifest(engine.store, single.prefix);
        const m = batched.manifest;
        assert.equal(m.formatVersion, 2);
        assert.deepEqual(
          m.tables.map((t) => [t.table, t.rows, t.rowChecksum, t.rawBytes]),
          alone.tables.map((t) => [t.table, t.rows, t.rowChecksum, t.rawBytes]),
          `${tenantId}: the batch's tables equal the single backup's`,
        );
        assert.equal(m.tenantChecksum, alone.tenantChecksum);
        for (const t of m.tables) {
          assert.ok(t.object.key.startsWith(batchPrefix(batchId)) && t.object.packOffset !== undefined, `${t.table} is a part of a pack`);
          assert.equal(digestOf(batched.rows.get(t.table)!), t.rowChecksum);
        }
        assert.deepEqual(batched.keys, ['manifest.json'], 'the tenant prefix holds its manifest only');
      }
      assert.equal(fs.existsSync(path.join(dir, 'tenants', 'initech')), false, 'a skipped tenant is not backed up');
      const recorded = await engine.catalog.listBackups({});
      assert.deepEqual(recorded.filter((b) => b.backupId.startsWith(batchId.slice(0, 16))).map((b) => b.tenantId).sort(), [...tenants].sort());
    } finally {
      await holder.end();
    }
  });

  it('restores a tenant from its parts of the packs alone, reading only its byte ranges', async function () {
    this.timeout(120_000);
    const tenantId = 'acme';
    const batchId = newBatchId();
    await takeTenantBatch(engine, { batchId, attempt: 1, skip: [] });
    const backupId = batchBackupIds(batchId, db.tenants.map((t) => t.tenantId)).get(tenantId)!;
    const expected = checksumsOf((await readBackup(engine.store, tenantId, backupId)).rows);
    await connect(db.url).then(async (c) => {
      await damageTenant(c, tenantId);
      await c.end();
    });
    assert.notDeepEqual(checksumsOf(await liveRows(engine.config, tenantId)), expected);

    const store = engine.store;
    const wholePacks: string[] = [];
    const ranges: { key: string; offset: number; length: number }[] = [];
    const get = store.get.bind(store);
    const getRange = store.getRange.bind(store);
    store.get = async (key) => {
      if (key.startsWith('packs/')) wholePacks.push(key);
      return get(key);
    };
    store.getRange = async (key, range) => {
      ranges.push({ key, ...range });
      return getRange(key, range);
    };
    const job = { restoreId: restoreLabel(new Date(), randomBytes(3).toString('hex')), tenantId, backupId, selection: parseSelection({ tenantId }) };
    try {
      const preview = await previewRestore(engine, job);
      await applyApprovedRestore(engine, { ...job, digest: preview.digest });
      const verified = await verifyAppliedRestore(engine, job, true);
      assert.equal(verified.ok, true, JSON.stringify(verified.tables.filter((t) => !t.ok)));
    } finally {
      store.get = get;
      store.getRange = getRange;
      await dropRestoreScratch(engine, job.restoreId);
    }
    assert.deepEqual(checksumsOf(await liveRows(engine.config, tenantId)), expected, 'the tenant is its backup again');
    assert.deepEqual(wholePacks, [], 'no pack was read whole');
    const manifest = await readManifest(store, tenantBackupPrefix(tenantId, backupId));
    const own = new Set(manifest.tables.map((t) => `${t.object.key}@${t.object.packOffset}+${t.object.bytes}`));
    assert.ok(ranges.length > 0);
    assert.deepEqual(ranges.filter((r) => !own.has(`${r.key}@${r.offset}+${r.length}`)), [], 'only its own ranges were read');
  });
});
