import { strict as assert } from 'node:assert';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { connect } from '../lib/pg';
import { loadConfig } from '../lib/config';
import type { ObjectStore } from '../lib/storage/types';
import { tenantBackupPrefix } from '../lib/format/tenantManifest';
import { workflowIds } from '../workflows/messages';
import { digestOf, liveRows, readBackup, sorted } from './support/backups';
import { withDb } from './support/db';
import { testStack } from './support/stack';
import { startWorker } from '../workers/worker';
import { createTestEnv, dbPassword, runCli, type StorageKind, type TestEnv } from './support/env';

for (const storage of ['local', 'gcs'] as StorageKind[]) {
  describe(`tenant backup (${storage} storage)`, function () {
    let env: TestEnv;
    let store: ObjectStore;

    before(async function () {
      this.timeout(180_000);
      env = await createTestEnv(storage);
      store = env.engine.store;
      await env.startWorker();
    });
    after(async () => env?.close());

    async function backupViaCli(tenantId: string) {
      const res = await runCli(['backup', 'tenant', tenantId, '--wait', '--json'], { configFile: env.configFile });
      assert.equal(res.code, 0, res.stderr);
      return res.json<{ backupId: string; tenantId: string; status: string; rows: number; bytes: number; snapshotAt: string }>();
    }

    it('backs up a tenant and its manifest matches the objects byte for byte and row for row', async () => {
      const out = await backupViaCli('globex');
      assert.deepEqual(Object.keys(out).sort(), ['backupId', 'bytes', 'rows', 'snapshotAt', 'status', 'tenantId', 'workflowId']);
      assert.equal(out.status, 'completed');
      const backup = await readBackup(store, 'globex', out.backupId);
      const { manifest } = backup;
      assert.equal(manifest.tables.length, 12);
      assert.equal(manifest.totals.rows, out.rows);
      const prefix = tenantBackupPrefix('globex', out.backupId);
      for (const t of manifest.tables) {
        const body = await store.getBytes(prefix + t.object.key);
        assert.equal(createHash('sha256').update(body).digest('hex'), t.object.sha256, `${t.table} sha256`);
        assert.equal(body.length, t.object.bytes, `${t.table} size`);
        assert.equal(backup.rows.get(t.table)!.length, t.rows, `${t.table} rows`);
        assert.equal(digestOf(backup.rows.get(t.table)!), t.rowChecksum, `${t.table} row checksum`);
      }
      // nothing under the prefix but the objects, the manifest and the start marker
      assert.deepEqual(sorted(backup.keys), sorted([...manifest.tables.map((t) => t.object.key), 'manifest.json', 'started.json']));
      const listed = await runCli(['backups', 'list', '--tenant', 'globex', '--json'], { configFile: env.configFile });
      assert.deepEqual(listed.json()[0], { backupId: out.backupId, tenantId: 'globex', status: 'completed', rows: out.rows, bytes: out.bytes, snapshotAt: out.snapshotAt });
      assert.match(out.snapshotAt, /\.\d{6}Z$/, 'the snapshot time as Postgres read it, to the microsecond');
      assert.equal(manifest.snapshot.at, out.snapshotAt);
    });

    it('holds exactly the tenant\'s rows, table by table, and none of another tenant', async () => {
      const out = await backupViaCli('initech');
      const backup = await readBackup(store, 'initech', out.backupId);
      const mine = await liveRows(env.config, 'initech');
      const others = await Promise.all(env.db.tenants.filter((t) => t.tenantId !== 'initech').map((t) => liveRows(env.config, t.tenantId)));
      for (const [table, rows] of backup.rows) {
        assert.ok(rows.length > 0, `${table} has rows for initech`);
        assert.deepEqual(sorted(rows), sorted(mine.get(table)!), `${table}: backup equals the live rows`);
        const foreign = new Set(others.flatMap((o) => o.get(table)!));
        // page_views may hold identical rows of two tenants only if paths and times coincide; they do not here
        assert.equal(rows.filter((r) => foreign.has(r)).length, 0, `${table}: no row of another tenant`);
      }
      const tenantCol = backup.manifest.tables.find((t) => t.table === 'app.users')!.copyColumns.indexOf('tenant_id');
      assert.ok(backup.rows.get('app.users')!.every((r) => r.split('\t')[tenantCol] === 'initech'));
    });

    it('is consistent while other sessions write: every table shows the same moment', async () => {
      const writer = await connect(env.db.url);
      await writer.query(`CREATE TABLE IF NOT EXISTS public.writer_progress (n int)`);
      let stop = false;
      let committed = 0;
      const writes = (async () => {
        while (!stop) {
          const n = committed + 1;
          // one transaction touches three tables: a consistent read sees all of it or none
          await writer.query('BEGIN');
          await writer.query(`INSERT INTO app.users (tenant_id, email, display_name, created_at) VALUES ('acme', $1, $2, now())`, [`writer${n}@acme.example`, `writer ${n}`]);
          await writer.query(`INSERT INTO app."AuditLog" (tenant_id, "Actor", "eventType", "At") VALUES ('acme', $1, 'writer', now())`, [`writer ${n}`]);
          await writer.query(`UPDATE app.invoices SET total = $1 WHERE tenant_id = 'acme' AND issued_on = '2025-12-01'`, [n]);
          await writer.query('COMMIT');
          committed = n;
        }
      })();
      while (committed < 20) await new Promise((r) => setTimeout(r, 10));
      const out = await backupViaCli('acme');
      const duringBackup = committed;
      stop = true;
      await writes;
      await writer.end();

      const backup = await readBackup(store, 'acme', out.backupId);
      const writerUsers = backup.rows.get('app.users')!.filter((r) => r.includes('\twriter ')).length;
      const writerAudits = backup.rows.get('app.AuditLog')!.filter((r) => r.includes('\twriter\t')).length;
      const invoiceTotal = backup.rows.get('app.invoices')!.map((r) => r.split('\t')).find((c) => c[3] === '2025-12-01')![4];
      assert.ok(writerUsers >= 20 && writerUsers <= duringBackup, `writer rows in backup: ${writerUsers} (committed during: ${duringBackup})`);
      assert.equal(writerAudits, writerUsers, 'AuditLog shows the same moment as users');
      assert.equal(Number(invoiceTotal), writerUsers, 'invoices show the same moment as users');
    });

    it('does not list a backup whose manifest is missing, and cleanup removes what it left', async () => {
      const out = await backupViaCli('umbrella');
      const prefix = tenantBackupPrefix('umbrella', out.backupId);
      await store.delete(prefix + 'manifest.json');
      const rebuilt = await runCli(['catalog', 'rebuild', '--json'], { configFile: env.configFile });
      assert.equal(rebuilt.code, 0, rebuilt.stderr);
      assert.ok(rebuilt.json().removed.includes(out.backupId));
      const listed = await runCli(['backups', 'list', '--json'], { configFile: env.configFile });
      assert.ok(!listed.json().some((b: { backupId: string }) => b.backupId === out.backupId));
      assert.ok(listed.json().length >= 1, 'other backups are still listed');
      const cleaned = await runCli(['backups', 'cleanup', '--older-than', '0s', '--json'], { configFile: env.configFile });
      assert.deepEqual(cleaned.json().removed.map((r: { prefix: string }) => r.prefix), [prefix]);
      const left: string[] = [];
      for await (const o of store.list(prefix)) left.push(o.key);
      assert.deepEqual(left, []);
    });

    it('refuses an unknown tenant with exit code 2, and writes nothing', async () => {
      const before = await runCli(['backups', 'list', '--json'], { configFile: env.configFile });
      const res = await runCli(['backup', 'tenant', 'no-such-tenant', '--wait', '--json'], { configFile: env.configFile });
      assert.equal(res.code, 2);
      const err = JSON.parse(res.stderr);
      assert.equal(err.type, 'TenantNotFound');
      assert.match(err.error, /Tenant "no-such-tenant" does not exist.*HINT/);
      const keys: string[] = [];
      for await (const o of store.list('tenants/no-such-tenant/')) keys.push(o.key);
      assert.deepEqual(keys, []);
      const after = await runCli(['backups', 'list', '--json'], { configFile: env.configFile });
      assert.deepEqual(after.json(), before.json());
    });

    it('keeps the database password and all row data out of the workflow history', async () => {
      const out = await backupViaCli('globex');
      const handle = env.temporal.workflow.getHandle(workflowIds.tenantBackup('globex'));
      assert.equal((await handle.result()).backupId, out.backupId);
      const history = await handle.fetchHistory();
      // payloads serialise as base64: decode every one next to the raw JSON
      const raw = JSON.stringify(history);
      const text = raw + [...raw.matchAll(/"data":"([A-Za-z0-9+/=]+)"/g)].map((m) => Buffer.from(m[1], 'base64').toString('utf8')).join('\n');
      assert.ok(text.includes('globex') && text.includes('"rows"'), 'history was decoded');
      assert.ok(env.config.database.url.includes(dbPassword));
      assert.ok(!text.includes(dbPassword), 'no password');
      for (const rowValue of ['user1@globex.example', 'First! on', 'ünïcödé', 'multi\\nline', 'Globex Inc.']) {
        assert.ok(!text.includes(rowValue), `history holds row data: ${rowValue}`);
      }
    });
  });
}

describe('tenant backup failures', function () {
  let env: TestEnv;

  /** Runs `backup tenant acme` against a worker that uses the given config file. */
  async function backupWithWorkerOn(file: string) {
    const worker = await startWorker(loadConfig({ path: file }), { bundle: (await testStack()).bundle });
    try {
      return await runCli(['backup', 'tenant', 'acme', '--wait', '--json'], { configFile: file });
    } finally {
      await worker.shutdown();
    }
  }

  before(async function () {
    this.timeout(180_000);
    env = await createTestEnv('local');
  });
  after(async () => env?.close());

  it('rejects a malformed config with exit code 2 and names the key', async () => {
    const file = env.writeConfig('bad.yaml', (d) => (d.storage.primary.kind = 'ftp'));
    const res = await runCli(['backup', 'tenant', 'acme', '--json'], { configFile: file });
    assert.equal(res.code, 2);
    assert.match(JSON.parse(res.stderr).error, /storage\.primary\.kind: must be one of local, gcs \(got "ftp"\)/);
  });

  it('fails with exit code 1 and says the database is unreachable, leaving no backup', async () => {
    const file = env.writeConfig('unreachable.yaml', (d) => {
      d.database.url = 'postgres://postgres:pw@127.0.0.1:1/nowhere';
      d.temporal.taskQueue += '-unreachable';
    });
    const res = await backupWithWorkerOn(file);
    assert.equal(res.code, 1);
    const err = JSON.parse(res.stderr);
    assert.equal(err.type, 'DatabaseUnreachable');
    assert.match(err.error, /postgres:\/\/postgres:\*\*\*@127\.0\.0\.1:1\/nowhere is unreachable.*HINT/);
    assert.equal(fs.existsSync(path.join(env.dir, 'backups', 'tenants')), false);
  });

  it('fails with exit code 1 when storage is not writable, leaving no backup', async () => {
    fs.writeFileSync(path.join(env.dir, 'a-file'), '');
    const file = env.writeConfig('unwritable.yaml', (d) => {
      d.storage.primary.path = path.join(env.dir, 'a-file', 'backups');
      d.temporal.taskQueue += '-unwritable';
    });
    const res = await backupWithWorkerOn(file);
    assert.equal(res.code, 1);
    const err = JSON.parse(res.stderr);
    assert.equal(err.type, 'StorageUnwritable');
    assert.match(err.error, /a-file.*HINT/);
    await withDb(env.db.url, async (c) => {
      const r = await c.query(`SELECT count(*)::int AS n FROM tenantsafe.runs WHERE status = 'failed' AND tenant_id = 'acme'`);
      assert.ok(r.rows[0].n >= 1, 'the failed run is recorded in the catalog');
      const b = await c.query(`SELECT count(*)::int AS n FROM tenantsafe.backups`);
      assert.equal(b.rows[0].n, 0);
    });
  });

  it('says how to start a worker when none is polling', async () => {
    const file = env.writeConfig('noworker.yaml', (d) => (d.temporal.taskQueue += '-nobody'));
    const res = await runCli(['backup', 'tenant', 'acme', '--json'], { configFile: file });
    assert.equal(res.code, 1);
    assert.match(JSON.parse(res.stderr).error, /No worker is polling task queue .*HINT: Start one with `tenantsafe worker`/);
  });
});
