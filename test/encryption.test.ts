import { strict as assert } from 'node:assert';
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { gunzipSync } from 'node:zlib';
import { decompress as zstdDecompress } from 'zstd-napi';
import { parseConfig } from '../lib/config';
import { isSealed, Keyring, LocalKeyFile, sealedKeyId, tenantKeyPath } from '../lib/encryption';
import { chunkBytes, openBuffer, OpenStream, sealBuffer, SealStream } from '../lib/encryption/sealedObject';
import { Engine } from '../lib/engine';
import { ErrorType, TenantsafeError } from '../lib/errors';
import { manifestFile, sealManifest, writeManifest } from '../lib/format/sealed';
import { readManifest, tenantBackupPrefix, type TenantManifest } from '../lib/format/tenantManifest';
import { backupLabel, restoreLabel } from '../lib/labels';
import { createStore } from '../lib/storage';
import { dropRestoreScratch, parseSelection, previewRestore } from '../lib/restore';
import { batchBackupIds, takeTenantBatch } from '../lib/tenantBackup/batch';
import { eraseTenantBackups } from '../lib/tenantBackup/erase';
import { checkManifestAndObjects } from '../lib/verification/verifyBackup';
import { backUpNow } from './support/backups';
import { freshDatabase, type TestDatabase } from './support/db';
import { damageAndRestore } from './support/restore';

describe('encryption at rest', function () {
  let db: TestDatabase;
  let dir: string;
  let engine: Engine;
  const storeDir = () => path.join(dir, 'backups');
  const keyFile = () => path.join(dir, 'etc', 'tenantsafe.key');
  /** an engine over the same database and store; `encryption` as a config would give it */
  const engineWith = (encryption?: Record<string, unknown>, backup?: Record<string, unknown>) =>
    new Engine(parseConfig({ database: { url: db.url }, storage: { primary: { kind: 'local', path: storeDir() } }, ...(encryption ? { encryption } : {}), ...(backup ? { backup } : {}) }, { env: {}, source: 'test', baseDir: path.join(dir, 'etc') }));

  before(async function () {
    this.timeout(120_000);
    db = await freshDatabase();
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tenantsafe-encryption-'));
    fs.mkdirSync(path.join(dir, 'etc'));
    engine = engineWith();
  });
  after(async () => {
    await engine?.close();
    await db?.drop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  /** A restore's preview of the backup fails with this error type. */
  async function previewFails(e: Engine, tenantId: string, backupId: string, type: string, message: RegExp): Promise<void> {
    const job = { restoreId: restoreLabel(new Date(), randomBytes(3).toString('hex')), tenantId, backupId, selection: parseSelection({ tenantId }) };
    try {
      await assert.rejects(previewRestore(e, job), (err: TenantsafeError) => {
        assert.equal(err.type, type, err.message);
        assert.match(err.message, message);
        assert.match(err.message, /HINT: /);
        return true;
      });
    } finally {
      // lanes of a failed staging may still be ending: a drop that meets them deadlocks, and is tried again
      for (let i = 0; ; i++) {
        try {
          await dropRestoreScratch(e, job.restoreId);
          break;
        } catch (err) {
          if (i === 20 || (err as { code?: string }).code !== '40P01') throw err;
          await new Promise((resolve) => setTimeout(resolve, 250));
        }
      }
    }
  }

  /** sha256 of every stored object under these areas. */
  function storedDigests(...areas: string[]): Map<string, string> {
    const out = new Map<string, string>();
    for (const area of areas) {
      const root = path.join(storeDir(), area);
      if (!fs.existsSync(root)) continue;
      for (const f of fs.readdirSync(root, { recursive: true }) as string[]) {
        const file = path.join(root, f);
        if (fs.statSync(file).isFile()) out.set(path.join(area, f), createHash('sha256').update(fs.readFileSync(file)).digest('hex'));
      }
    }
    return out;
  }

  const tenantManifest = (tenantId: string, backupId: string) => readManifest(engine.store, tenantBackupPrefix(tenantId, backupId));

  it('encrypts a single-tenant backup under its tenant key, made on first use with the master key file beside the config, and restores it exactly', async function () {
    this.timeout(120_000);
    assert.ok(!fs.existsSync(keyFile()), 'no key file before the first encrypted backup');
    const backupId = await backUpNow(engine, 'acme');
    assert.ok(fs.existsSync(keyFile()), 'the first backup of a new repository made the master key file');
    assert.equal(fs.statSync(keyFile()).mode & 0o777, 0o600);
    const m = await tenantManifest('acme', backupId);
    // zstd by default: format 6 (4 with gzip)
    assert.equal(m.formatVersion, 6);
    assert.equal(m.data.compression, 'zstd');
    assert.deepEqual(m.encryption && { cipher: m.encryption.cipher, key: m.encryption.key }, { cipher: 'aes-256-gcm-chunked', key: tenantKeyPath('acme') });
    const wrapped = JSON.parse(fs.readFileSync(path.join(storeDir(), tenantKeyPath('acme')), 'utf8'));
    assert.equal(wrapped.keyId, m.encryption!.keyId);
    assert.equal(wrapped.masterKeyId, new LocalKeyFile(keyFile()).currentKeyId());
    for (const t of m.tables) {
      const stored = fs.readFileSync(path.join(storeDir(), tenantBackupPrefix('acme', backupId), t.object.key));
      assert.ok(isSealed(stored) && sealedKeyId(stored) === m.encryption!.keyId, `${t.table}: encrypted under acme's key`);
      assert.throws(() => zstdDecompress(stored), `${t.table}: not readable as zstd`);
    }
    await damageAndRestore(engine, 'acme', backupId);
  });

  it('encrypts each tenant\'s part of a batch\'s packs on its own under that tenant\'s key, and restores a tenant from its parts', async function () {
    this.timeout(120_000);
    const batchId = backupLabel(new Date(), 'tenant', randomBytes(3).toString('hex'));
    const tenants = db.tenants.map((t) => t.tenantId);
    await takeTenantBatch(engine, { batchId, attempt: 1, skip: [] });
    const ids = batchBackupIds(batchId, tenants);
    const keyIds = new Set<string>();
    for (const tenantId of ['globex', 'initech']) {
      const m = await tenantManifest(tenantId, ids.get(tenantId)!);
      assert.equal(m.formatVersion, 6);
      assert.ok(m.batch, 'a batched manifest');
      keyIds.add(m.encryption!.keyId);
      for (const t of m.tables) {
        const pack = fs.readFileSync(path.join(storeDir(), t.object.key));
        const part = pack.subarray(t.object.packOffset!, t.object.packOffset! + t.object.bytes);
        assert.ok(isSealed(part) && sealedKeyId(part) === m.encryption!.keyId, `${tenantId} ${t.table}: its part alone, under its key`);
      }
    }
    assert.equal(keyIds.size, 2, 'two tenants, two keys');
    await damageAndRestore(engine, 'globex', ids.get('globex')!);
  });

  it('detects a flipped byte in an encrypted object: the restore fails with CorruptBackup and verify reports checksum_mismatch', async function () {
    this.timeout(120_000);
    const backupId = await backUpNow(engine, 'initech');
    const m = await tenantManifest('initech', backupId);
    const biggest = [...m.tables].sort((a, b) => b.object.bytes - a.object.bytes)[0];
    const file = path.join(storeDir(), tenantBackupPrefix('initech', backupId), biggest.object.key);
    const bytes = fs.readFileSync(file);
    const at = 28 + Math.floor((bytes.length - 28) / 2);
    bytes[at] ^= 0x01;
    fs.writeFileSync(file, bytes);
    try {
      await previewFails(engine, 'initech', backupId, ErrorType.CorruptBackup, new RegExp(`${biggest.object.key.replace(/[.]/g, '\\.')}.*(AES-GCM|sha256)`));
      const located = { backupId, kind: 'tenant' as const, prefix: tenantBackupPrefix('initech', backupId) };
      const checks = await checkManifestAndObjects(engine.store, located);
      assert.deepEqual(checks.checks.filter((c) => c.result !== 'ok').map((c) => [c.target, c.result]), [[biggest.object.key, 'checksum_mismatch']]);
      assert.match(checks.checks.find((c) => c.result !== 'ok')!.detail!, /AES-GCM authentication/);
    } finally {
      bytes[at] ^= 0x01;
      fs.writeFileSync(file, bytes);
    }
    assert.ok((await checkManifestAndObjects(engine.store, { backupId, kind: 'tenant', prefix: tenantBackupPrefix('initech', backupId) })).checks.every((c) => c.result === 'ok'));
  });

  it('refuses a manifest that names another tenant\'s data key, even sealed anew (one tenant\'s erasure must not spare another\'s backup)', async function () {
    this.timeout(60_000);
    const backupId = await backUpNow(engine, 'globex');
    const prefix = tenantBackupPrefix('globex', backupId);
    const { manifestChecksum: _, ...m } = await readManifest(engine.store, prefix);
    await writeManifest(engine.store, prefix, sealManifest({ ...m, encryption: { ...m.encryption!, key: tenantKeyPath('acme') } }));
    await assert.rejects(readManifest(engine.store, prefix), (err: TenantsafeError) => err.type === ErrorType.CorruptBackup && /names "keys\/tenants\/acme\.json" as its data key, not its tenant's keys\/tenants\/globex\.json/.test(err.message));
    const { encryption: __, ...plain } = m;
    await writeManifest(engine.store, prefix, sealManifest(plain));
    await assert.rejects(readManifest(engine.store, prefix), (err: TenantsafeError) => err.type === ErrorType.CorruptBackup && /is of format 6 and records no encryption/.test(err.message));
    await writeManifest(engine.store, prefix, sealManifest(m));
    assert.equal((await readManifest(engine.store, prefix)).encryption?.key, tenantKeyPath('globex'));
  });

  it('refuses to read without the master key, or with another one, naming the key file and what to do', async function () {
    this.timeout(120_000);
    const backupId = await backUpNow(engine, 'acme');
    const missing = engineWith({ keyFile: path.join(dir, 'nowhere', 'tenantsafe.key') });
    const otherFile = path.join(dir, 'other.key');
    LocalKeyFile.create(otherFile);
    const other = engineWith({ keyFile: otherFile });
    try {
      await previewFails(missing, 'acme', backupId, ErrorType.MasterKeyUnavailable, /master key file .*nowhere\/tenantsafe\.key does not exist/);
      await previewFails(other, 'acme', backupId, ErrorType.MasterKeyUnavailable, /wrapped by master key local-[0-9a-f]{16}, which the key file .*other\.key does not hold/);
      // a new backup refuses too, rather than making a second master key for a repository that has keys
      await assert.rejects(backUpNow(missing, 'globex'), (err: TenantsafeError) => err.type === ErrorType.MasterKeyUnavailable);
      assert.ok(!fs.existsSync(path.join(dir, 'nowhere', 'tenantsafe.key')));
    } finally {
      await missing.close();
      await other.close();
    }
  });

  it('rotates the master key: data keys re-wrapped, every backup object unchanged byte for byte, the old key retired, restores work', async function () {
    this.timeout(120_000);
    const backupId = await backUpNow(engine, 'globex');
    const before = storedDigests('tenants', 'packs');
    const oldKeys = fs.readFileSync(keyFile());
    const oldMaster = new LocalKeyFile(keyFile()).currentKeyId();
    const rotated = await engine.keys.rotate();
    assert.notEqual(rotated.masterKeyId, oldMaster);
    assert.deepEqual(rotated.retired, [oldMaster]);
    assert.ok(rotated.rewrapped >= 3, `re-wrapped ${rotated.rewrapped}`);
    assert.deepEqual(storedDigests('tenants', 'packs'), before, 'no backup object was rewritten');
    const status = await engine.keys.status();
    assert.deepEqual(status.masterKeys, [rotated.masterKeyId]);
    assert.deepEqual(Object.keys(status.dataKeys), [rotated.masterKeyId]);
    // the old key file alone no longer opens anything
    const oldFile = path.join(dir, 'old.key');
    fs.writeFileSync(oldFile, oldKeys, { mode: 0o600 });
    const old = engineWith({ keyFile: oldFile });
    try {
      await previewFails(old, 'globex', backupId, ErrorType.MasterKeyUnavailable, new RegExp(`wrapped by master key ${rotated.masterKeyId}`));
    } finally {
      await old.close();
    }
    await damageAndRestore(engine, 'globex', backupId);
  });

  it('erases a tenant\'s backups: its key destroyed, its backups gone, its parts in shared packs unreadable, the other tenants of the batch still restore', async function () {
    this.timeout(180_000);
    const batchId = backupLabel(new Date(), 'tenant', randomBytes(3).toString('hex'));
    const tenants = db.tenants.map((t) => t.tenantId);
    await takeTenantBatch(engine, { batchId, attempt: 1, skip: [] });
    const ids = batchBackupIds(batchId, tenants);
    const victim = tenants.find((t) => !['acme', 'globex', 'initech'].includes(t))!;
    const own = await backUpNow(engine, victim);
    const prefix = tenantBackupPrefix(victim, ids.get(victim)!);
    const keptManifest = fs.readFileSync(path.join(storeDir(), prefix, manifestFile));
    const m: TenantManifest = await tenantManifest(victim, ids.get(victim)!);
    const packs = storedDigests('packs');

    const erasure = await eraseTenantBackups(engine, { tenantId: victim, by: 'dpo@example.com' });
    assert.equal(erasure.keyDestroyed, true);
    assert.ok(erasure.backups.includes(own) && erasure.backups.includes(ids.get(victim)!), JSON.stringify(erasure.backups));
    assert.ok(!fs.existsSync(path.join(storeDir(), tenantKeyPath(victim))), 'its key file is gone');
    assert.ok(!fs.existsSync(path.join(storeDir(), tenantBackupPrefix(victim, own))), 'its own backup\'s objects are gone');
    assert.deepEqual((await engine.catalog.listBackups({ tenantId: victim })).map((b) => b.backupId), []);
    assert.deepEqual(storedDigests('packs'), packs, 'the shared packs stay until retention');
    const [entry] = await engine.audit.list({ tenantId: victim, action: 'tenant.erase-backups', limit: 1 });
    assert.deepEqual([entry?.by, entry?.outcome, entry?.details.keyDestroyed], ['dpo@example.com', 'done', true]);

    // its manifest put back from somewhere (a copy): its parts still cannot be read, and a restore says why
    fs.mkdirSync(path.join(storeDir(), prefix), { recursive: true });
    fs.writeFileSync(path.join(storeDir(), prefix, manifestFile), keptManifest);
    await engine.catalog.recordBackup(m, engine.store.uri, prefix, createHash('sha256').update(keptManifest).digest('hex'));
    await previewFails(engine, victim, ids.get(victim)!, ErrorType.DataKeyErased, /data key keys\/tenants\/.* is gone \(erased/);
    const verified = await checkManifestAndObjects(engine.store, { backupId: ids.get(victim)!, kind: 'tenant', prefix });
    assert.ok(verified.checks.some((c) => c.target === tenantKeyPath(victim) && c.result === 'missing'), JSON.stringify(verified.checks));
    await eraseTenantBackups(engine, { tenantId: victim, by: 'dpo@example.com' });

    await damageAndRestore(engine, 'initech', ids.get('initech')!);
  });

  it('still restores a backup written without encryption and with gzip (format 2, as before both), and writes such backups when configured so', async function () {
    this.timeout(120_000);
    const plain = engineWith({ enabled: false }, { compressionLevel: 1 });
    try {
      const backupId = await backUpNow(plain, 'acme');
      const m = await tenantManifest('acme', backupId);
      assert.equal(m.formatVersion, 2, 'a config giving only compressionLevel (written before backup.compression) keeps gzip');
      assert.equal(m.data.compression, 'gzip');
      assert.equal(m.encryption, undefined);
      for (const t of m.tables) gunzipSync(fs.readFileSync(path.join(storeDir(), tenantBackupPrefix('acme', backupId), t.object.key)));
      await damageAndRestore(engine, 'acme', backupId);
    } finally {
      await plain.close();
    }
  });
});

describe('encrypted object streams', () => {
  /** `bytes` cut into pieces of random sizes, some smaller than the header, some spanning several chunks */
  const pieces = (bytes: Buffer) => {
    const out: Buffer[] = [];
    for (let at = 0; at < bytes.length; ) {
      const size = [1, 7, 28, 1000, chunkBytes - 3, chunkBytes + 16, 3 * chunkBytes + 5][Math.floor(Math.random() * 7)];
      out.push(bytes.subarray(at, at + size));
      at += size;
    }
    return out;
  };
  const through = async (stream: NodeJS.ReadWriteStream, input: Buffer[]) => {
    const out: Buffer[] = [];
    await pipeline(Readable.from(input), stream, new Writable({ write: (chunk: Buffer, _enc, done) => (out.push(chunk), done()) }));
    return Buffer.concat(out);
  };

  it('seals and opens a stream however it is cut into pieces, the same bytes as the whole-buffer functions', async function () {
    const key = randomBytes(32);
    const keyId = randomBytes(16);
    for (const size of [0, 1, chunkBytes, chunkBytes + 1, 4 * chunkBytes + 12345]) {
      const plain = randomBytes(size);
      const sealed = await through(new SealStream(key, keyId), pieces(plain));
      assert.deepEqual(openBuffer(key, sealed, 'x'), plain, `sealed stream of ${size} bytes opens as a buffer`);
      assert.deepEqual(await through(new OpenStream(() => key, 'x'), pieces(sealed)), plain, `sealed stream of ${size} bytes opens as a stream`);
      assert.deepEqual(await through(new OpenStream(() => key, 'x'), pieces(sealBuffer(key, keyId, plain))), plain, `sealed buffer of ${size} bytes opens as a stream`);
    }
  });
});

describe('data keys made by writers racing for one owner', () => {
  it('gives every first writer the same key, the stored one, in this process and across processes (stores of one directory by other paths)', async function () {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tenantsafe-keyring-'));
    try {
      fs.mkdirSync(path.join(dir, 'repo'));
      // each path of the same directory is a store of its own uri: as other processes' stores are, it shares no key creation in this one
      const paths = [path.join(dir, 'repo')];
      for (const i of [1, 2, 3]) {
        paths.push(path.join(dir, `alias-${i}`));
        fs.symlinkSync(paths[0], paths[i]);
      }
      const keyFile = path.join(dir, 'master.key');
      LocalKeyFile.create(keyFile);
      const keyrings = paths.map((p) => new Keyring(createStore({ kind: 'local', path: p }), { enabled: true, keyFile }));
      const askers = [...keyrings, ...keyrings].map((k) => k.forTenant('acme'));
      const keys = await Promise.all(askers);
      const stored = JSON.parse(fs.readFileSync(path.join(dir, 'repo', tenantKeyPath('acme')), 'utf8')) as { keyId: string };
      assert.deepEqual(new Set(keys.map((k) => k!.id)), new Set([stored.keyId]), 'one key, the stored one, for every writer');
      for (const k of keys) await keyrings[0].confirm(k);
      assert.deepEqual((await keyrings[0].forTenants(['acme', 'globex']))!.get('acme')!.id, stored.keyId);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
