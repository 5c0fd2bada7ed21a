// Hostile names (issue 25, item 5): schemas, tables, columns, types and enum labels with quotes,
// semicolons, backslashes, spaces, right-to-left text and combining characters, names of exactly
// 63 bytes, and tenant ids with '/', '%', '..', newlines, tabs and over 200 characters. A tenant
// backup of each tenant, a batched backup of all, and restores of damaged tenants through the
// engine (preview, apply with a safety backup, verify) must round-trip every row exactly, leave
// the other tenants alone, raise no SQL error, and keep every stored key inside its tenant's
// prefix: proof that every name goes through quoteIdent and every value is a parameter or a
// quoted literal.
import { strict as assert } from 'node:assert';
import { randomBytes } from 'node:crypto';
import { readManifest, tenantBackupPrefix, tenantSegment } from '../lib/format/tenantManifest';
import { backupLabel, restoreLabel } from '../lib/labels';
import { qualified, quoteIdent } from '../lib/pg';
import { applyApprovedRestore, dropRestoreScratch, parseSelection, previewRestore, verifyAppliedRestore } from '../lib/restore';
import { batchBackupIds, takeTenantBatch } from '../lib/tenantBackup/batch';
import { discoverTenancy } from '../lib/tenancy';
import { checkManifestAndObjects, restoreTestTenant } from '../lib/verification/verifyBackup';
import { backUpNow, liveRows, readBackup } from './support/backups';
import { adminUrl, databaseUrl, withDb } from './support/db';
import { createTestEnv, runCli, type TestEnv } from './support/env';
import { checksumsOf } from './support/restore';

/** n bytes of UTF-8 exactly: `unit` repeated, filled up with ASCII. */
function ofBytes(n: number, unit: string, fill = 'x'): string {
  let s = '';
  while (Buffer.byteLength(s + unit) <= n) s += unit;
  while (Buffer.byteLength(s) < n) s += fill;
  return s;
}

// schemas
const S1 = `it's "app"; DROP SCHEMA public; --`;
const S2 = `\\ שלום\u200f مرحبا e\u0303 space`;
// the tenant table and column
const tenants = `Tenant's "Table"\\`;
const tenantCol = `tenant "id"; --\\`;
// a table and a column of exactly 63 bytes (PostgreSQL's limit), of two-byte letters and combining marks
const items = ofBytes(63, 'ü');
const longCol = ofBytes(63, 'e\u0303');
// a child reached by a composite foreign key, a grandchild through the child (parent ownership)
const child = `child; "rows" ' \\`;
const grand = `gränd"child\u200f`;
const mood = `mood; 'x' "y"`;

const tenantIds = [
  `o'brien"; DROP TABLE x; --`,
  'a/b%2F/../c%',
  '..',
  'line1\nline2\ttab\\back',
  `${'x'.repeat(210)}é`,
  `${'ü/'.repeat(70)}`,
  `שלום\u200f e\u0303`,
  'plain',
];

async function createHostileDatabase(name: string): Promise<void> {
  await withDb(adminUrl, async (c) => {
    await c.query(`DROP DATABASE IF EXISTS ${quoteIdent(name)}`);
    await c.query(`CREATE DATABASE ${quoteIdent(name)}`);
  });
  await withDb(databaseUrl(name), async (c) => {
    const q = quoteIdent;
    const T = qualified(S1, tenants);
    const I = qualified(S2, items);
    const C = qualified(S2, child);
    const G = qualified(S1, grand);
    await c.query(`CREATE SCHEMA ${q(S1)}; CREATE SCHEMA ${q(S2)}`);
    await c.query(`CREATE TYPE ${qualified(S1, mood)} AS ENUM ('ha''ppy', 'sad "really"', 'back\\slash; --')`);
    await c.query(`CREATE TABLE ${T} (${q(tenantCol)} text PRIMARY KEY, ${q('the "name"')} text NOT NULL)`);
    await c.query(`CREATE TABLE ${I} (
      ${q("owner's tenant")} text NOT NULL REFERENCES ${T},
      ${q('id";')} int NOT NULL,
      ${q(longCol)} text,
      ${q('mood\\')} ${qualified(S1, mood)},
      ${q('data ; json')} jsonb,
      ${q('raw\tbytes')} bytea,
      ${q('tags[]')} text[],
      PRIMARY KEY (${q("owner's tenant")}, ${q('id";')}))`);
    await c.query(`CREATE TABLE ${C} (
      ${q('child id')} bigserial PRIMARY KEY,
      ${q('parent tenant\\')} text NOT NULL,
      ${q('parent id;')} int NOT NULL,
      ${q('note "x"')} text,
      FOREIGN KEY (${q('parent tenant\\')}, ${q('parent id;')}) REFERENCES ${I} ON DELETE CASCADE)`);
    await c.query(`CREATE TABLE ${G} (
      ${q('grand id')} bigserial PRIMARY KEY,
      ${q('child ref')} bigint NOT NULL REFERENCES ${C} ON DELETE CASCADE,
      ${q("it's")} text)`);
    for (const [n, id] of tenantIds.entries()) {
      await c.query(`INSERT INTO ${T} VALUES ($1, $2)`, [id, `Tenant ${n} '; --`]);
      for (let i = 1; i <= 20; i++) {
        await c.query(`INSERT INTO ${I} VALUES ($1, $2, $3, $4, $5, $6, $7)`, [
          id,
          i,
          i % 5 === 0 ? null : `row ${i} of ${id}: tab\there, newline\nhere, backslash \\ and quote ' " ; --`,
          ['ha\'ppy', 'sad "really"', 'back\\slash; --'][i % 3],
          JSON.stringify({ who: id, "k'ey": `v"al\\${i}`, n: i }),
          Buffer.from([0, 1, 92, 39, 34, 10, 9, i]),
          [`a,b`, `"q"`, `back\\slash`, `{}`, i % 2 ? null : 'NULL'],
        ]);
        const r = await c.query(`INSERT INTO ${C} (${q('parent tenant\\')}, ${q('parent id;')}, ${q('note "x"')}) VALUES ($1, $2, $3) RETURNING ${q('child id')} AS id`, [id, i, `child of ${i}\r\n`]);
        await c.query(`INSERT INTO ${G} (${q('child ref')}, ${q("it's")}) VALUES ($1, $2)`, [r.rows[0].id, `grand ${i} \u200f e\u0303`]);
      }
    }
    await c.query('ANALYZE');
  });
}

describe('hostile identifiers and tenant ids', function () {
  this.timeout(180_000);
  const dbName = `tenantsafe_hostile_${process.pid}`;
  const url = databaseUrl(dbName);
  let env: TestEnv;
  let engine: TestEnv['engine'];
  const single = new Map<string, string>();
  let batchIds: Map<string, string>;

  const live = (tenantId: string) => liveRows(engine.config, tenantId);
  const everyone = async () => Object.fromEntries(await Promise.all(tenantIds.map(async (t) => [t, checksumsOf(await live(t))])));

  before(async function () {
    this.timeout(180_000);
    await createHostileDatabase(dbName);
    const drop = () => withDb(adminUrl, (c) => c.query(`DROP DATABASE IF EXISTS ${quoteIdent(dbName)} WITH (FORCE)`)).then(() => undefined);
    env = await createTestEnv('local', {
      db: { name: dbName, url, tenants: [], drop },
      configure: (doc) => {
        doc.tenancy = { schemas: [S1, S2], tenantTable: tenants, tenantColumn: tenantCol };
      },
    });
    engine = env.engine;
  });
  after(async () => {
    await env?.close();
    await withDb(adminUrl, (c) => c.query(`DROP DATABASE IF EXISTS ${quoteIdent(dbName)} WITH (FORCE)`));
  });

  it('finds every hostile table as the tenant\'s, by its exact name', async () => {
    const plan = await withDb(url, (c) => discoverTenancy(c, engine.config.tenancy));
    assert.deepEqual(plan.tables.map((t) => t.key).sort(), [`${S1}.${tenants}`, `${S2}.${items}`, `${S2}.${child}`, `${S1}.${grand}`].sort());
    assert.equal(plan.tables.find((t) => t.name === grand)!.ownership.kind, 'parent');
    for (const t of tenantIds) {
      const rows = await live(t);
      assert.equal(rows.get(`${S2}.${items}`)!.length, 20, JSON.stringify(t));
      assert.equal(rows.get(`${S1}.${grand}`)!.length, 20, JSON.stringify(t));
    }
  });

  it('backs up every tenant, alone and in one batch, with every row as it is, each under its own prefix', async () => {
    for (const t of tenantIds) single.set(t, await backUpNow(engine, t));
    const batchId = backupLabel(new Date(), 'tenant', randomBytes(3).toString('hex'));
    const result = await takeTenantBatch(engine, { batchId, attempt: 1, skip: [] });
    assert.deepEqual(result.failed, []);
    assert.equal(result.succeeded, tenantIds.length);
    batchIds = batchBackupIds(batchId, tenantIds);

    for (const t of tenantIds) {
      const expected = checksumsOf(await live(t));
      for (const backupId of [single.get(t)!, batchIds.get(t)!]) {
        const b = await readBackup(engine.store, t, backupId);
        assert.equal(b.manifest.tenantId, t);
        assert.deepEqual(checksumsOf(b.rows), expected, `${JSON.stringify(t)} ${backupId}`);
      }
    }

    // every key: a tenant's objects under its own prefix, its id one path segment (URI-encoded, long ones cut and hashed)
    const segments = new Map(tenantIds.map((t) => [tenantSegment(t), t]));
    assert.equal(segments.size, tenantIds.length, 'every tenant has a segment of its own');
    const keys: string[] = [];
    for await (const o of engine.store.list('')) keys.push(o.key);
    for (const key of keys) {
      assert.ok(key.split('/').every((s) => s !== '' && s !== '.' && s !== '..'), key);
      assert.ok(key.split('/').every((s) => Buffer.byteLength(s) <= 255), `${key}: every segment a name a file system holds`);
      if (!key.startsWith('tenants/')) continue;
      const [, segment, backupId] = key.split('/');
      const tenantId = segments.get(segment);
      assert.ok(tenantId !== undefined, key);
      assert.ok([single.get(tenantId), batchIds.get(tenantId)].includes(backupId), `${key}: a backup of ${JSON.stringify(tenantId)}`);
      assert.ok(key.startsWith(tenantBackupPrefix(tenantId, backupId)), key);
      if (/^[\x21-\x7e]+$/.test(tenantId) && tenantId !== '..') assert.equal(decodeURIComponent(segment), tenantId, 'a short id is its URI-encoding');
    }
    for (const t of tenantIds) assert.ok(keys.includes(`${tenantBackupPrefix(t, single.get(t)!)}manifest.json`), JSON.stringify(t));

    const rebuilt = await engine.catalog.rebuild(engine.store);
    assert.deepEqual(rebuilt.invalid, []);
    for (const t of tenantIds) assert.deepEqual((await engine.catalog.listBackups({ tenantId: t })).map((b) => b.backupId).sort(), [single.get(t)!, batchIds.get(t)!].sort());
  });

  it('verifies a backup of a hostile tenant: objects, and a restore test into a scratch schema', async () => {
    for (const t of [tenantIds[0], tenantIds[3]]) {
      const located = { backupId: single.get(t)!, kind: 'tenant' as const, prefix: tenantBackupPrefix(t, single.get(t)!) };
      const { checks, manifest } = await checkManifestAndObjects(engine.store, located);
      assert.ok(checks.every((c) => c.result === 'ok'), JSON.stringify(checks));
      const restored = await restoreTestTenant(engine, located, manifest as Awaited<ReturnType<typeof readManifest>>);
      assert.ok(restored.every((c) => c.result === 'ok'), JSON.stringify(restored));
    }
  });

  for (const [n, from] of [
    [0, 'single'],
    [3, 'batch'],
    [4, 'single'],
    [2, 'batch'],
    [1, 'batch'],
    [5, 'single'],
    [6, 'single'],
  ] as const) {
    it(`restores tenant ${JSON.stringify(tenantIds[n]).slice(0, 40)} after damage from its ${from === 'single' ? 'own' : 'batched'} backup: exactly its rows, no one else's touched`, async () => {
      const t = tenantIds[n];
      const backupId = from === 'single' ? single.get(t)! : batchIds.get(t)!;
      const before = await everyone();
      await damage(t);
      assert.notDeepEqual(checksumsOf(await live(t)), before[t], 'damaged');
      const job = { restoreId: restoreLabel(new Date(), randomBytes(3).toString('hex')), tenantId: t, backupId, selection: parseSelection({ tenantId: t }) };
      const safetyBackupId = backupLabel(new Date(), 'safety', randomBytes(3).toString('hex'));
      try {
        const preview = await previewRestore(engine, job);
        assert.deepEqual(preview.blockers, []);
        assert.ok(preview.totals.insert > 0 && preview.totals.update > 0 && preview.totals.delete > 0, JSON.stringify(preview.totals));
        const applied = await applyApprovedRestore(engine, { ...job, digest: preview.digest, safetyBackupId });
        assert.equal(applied.kind, 'applied', JSON.stringify(applied));
        const verified = await verifyAppliedRestore(engine, job, true);
        assert.ok(verified.ok, JSON.stringify(verified));
      } finally {
        await dropRestoreScratch(engine, job.restoreId);
      }
      assert.deepEqual(await everyone(), before, 'the tenant is its backup again, every other tenant as it was');
      const safety = await readManifest(engine.store, tenantBackupPrefix(t, safetyBackupId));
      assert.equal(safety.tenantId, t, 'the safety backup is under the tenant\'s own prefix');
      const scratch = await withDb(url, (c) => c.query(`SELECT nspname FROM pg_namespace WHERE nspname LIKE 'tenantsafe_restore_%'`));
      assert.deepEqual(scratch.rows, []);
    });
  }

  it('backs up and restores a hostile tenant through the CLI and the workflows (ids in workflow ids, search attributes, history)', async function () {
    this.timeout(180_000);
    await env.startWorker();
    const cli = async (...args: string[]) => {
      const r = await runCli([...args, '--json'], { configFile: env.configFile });
      assert.equal(r.code, 0, r.stderr);
      return r.json();
    };
    for (const t of [tenantIds[0], tenantIds[3], tenantIds[5]]) {
      const backup = await cli('backup', 'tenant', t, '--wait');
      assert.equal(backup.tenantId, t);
      const listed = await cli('backups', 'list', '--tenant', t);
      assert.ok(listed.some((b: { backupId: string }) => b.backupId === backup.backupId));
      const before = await everyone();
      await damage(t);
      const requested = await cli('restore', 'tenant', t, '--backup', backup.backupId, '--by', 'alice');
      assert.equal(requested.state, 'awaiting-approval', JSON.stringify(requested));
      const done = await cli('restore', 'approve', requested.restoreId, '--by', 'bob', '--digest', requested.previewDigest, '--wait');
      assert.equal(done.state, 'done');
      assert.ok(done.verification.ok);
      assert.deepEqual(await everyone(), before, JSON.stringify(t));
      const verified = await cli('verify', backup.backupId);
      assert.ok(verified.ok, JSON.stringify(verified.checks));
    }
  });

  /** Deletes, updates and inserts in every table of one tenant (values as hostile as the names). */
  async function damage(tenantId: string): Promise<void> {
    const q = quoteIdent;
    await withDb(url, async (c) => {
      await c.query('BEGIN');
      await c.query(`DELETE FROM ${qualified(S2, items)} WHERE ${q("owner's tenant")} = $1 AND ${q('id";')} IN (1, 2)`, [tenantId]);
      await c.query(`UPDATE ${qualified(S2, items)} SET ${q(longCol)} = $2, ${q('mood\\')} = 'ha''ppy' WHERE ${q("owner's tenant")} = $1 AND ${q('id";')} BETWEEN 3 AND 6`, [tenantId, `changed '; DROP TABLE x; --`]);
      await c.query(`INSERT INTO ${qualified(S2, items)} (${q("owner's tenant")}, ${q('id";')}, ${q(longCol)}) VALUES ($1, 99, 'new \\ row')`, [tenantId]);
      await c.query(
        `UPDATE ${qualified(S1, grand)} g SET ${q("it's")} = 'overwritten' FROM ${qualified(S2, child)} ch WHERE ch.${q('child id')} = g.${q('child ref')} AND ch.${q('parent tenant\\')} = $1 AND ch.${q('parent id;')} = 10`,
        [tenantId],
      );
      await c.query(`UPDATE ${qualified(S1, tenants)} SET ${q('the "name"')} = 'Renamed' WHERE ${q(tenantCol)} = $1`, [tenantId]);
      await c.query('COMMIT');
    });
  }
});
