// One conformance suite for every storage driver (local directory, GCS on fake-gcs-server),
// plus what only one driver can show: partial files of a killed local writer, a GCS endpoint
// that dies.
import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { Storage } from '@google-cloud/storage';
import { startFakeGcs, type FakeGcs } from './doubles/fakeGcs';
import { freePorts } from '../lib/process';
import { ErrorType, TenantsafeError } from '../lib/errors';
import { createStore, type ObjectInfo, type ObjectStore } from '../lib/storage';
import { ReplicatedStore } from '../lib/storage/replicated';

const MiB = 1024 * 1024;

/** A stream of `total` random bytes made 64 KiB at a time; sha256() once it has been read. */
function generated(total: number, opts: { failAt?: number; onChunk?: (sent: number) => void } = {}) {
  const hash = createHash('sha256');
  let sent = 0;
  async function* chunks(): AsyncGenerator<Buffer> {
    while (sent < total) {
      if (opts.failAt !== undefined && sent >= opts.failAt) throw new Error('the source failed on purpose');
      const chunk = randomBytes(Math.min(64 * 1024, total - sent));
      hash.update(chunk);
      sent += chunk.length;
      opts.onChunk?.(sent);
      yield chunk;
    }
  }
  return { stream: Readable.from(chunks()), sha256: () => hash.digest('hex') };
}

async function digestOf(stream: Readable): Promise<{ sha256: string; bytes: number }> {
  const hash = createHash('sha256');
  let bytes = 0;
  for await (const chunk of stream) {
    hash.update(chunk as Buffer);
    bytes += (chunk as Buffer).length;
  }
  return { sha256: hash.digest('hex'), bytes };
}

async function listed(store: ObjectStore, prefix: string): Promise<ObjectInfo[]> {
  const out: ObjectInfo[] = [];
  for await (const o of store.list(prefix)) out.push(o);
  return out;
}

const keysOf = async (store: ObjectStore, prefix: string) => (await listed(store, prefix)).map((o) => o.key);

async function rejectsWith(promise: Promise<unknown>, type: ErrorType): Promise<TenantsafeError> {
  let caught: unknown;
  await assert.rejects(promise, (err) => ((caught = err), true));
  assert.ok(caught instanceof TenantsafeError, `expected a TenantsafeError ${type}, got ${String(caught)}`);
  assert.equal(caught.type, type, caught.message);
  return caught;
}

/** Every file under dir, relative to it. */
function filesUnder(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  return (fs.readdirSync(dir, { recursive: true, withFileTypes: true }) as fs.Dirent[])
    .filter((d) => d.isFile())
    .map((d) => path.relative(dir, path.join(d.parentPath, d.name)));
}

interface Driver {
  name: string;
  before(): Promise<void>;
  after(): Promise<void>;
  /** an empty store of its own for each test */
  fresh(): Promise<ObjectStore>;
  /** a store that cannot be written, for reasons that hold even for root */
  unwritable(): ObjectStore[];
}

let tmp: string;
let serial = 0;

const local: Driver = {
  name: 'local',
  async before() {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tenantsafe-storage-test-'));
  },
  async after() {
    fs.rmSync(tmp, { recursive: true, force: true });
  },
  async fresh() {
    return createStore({ kind: 'local', path: path.join(tmp, `store-${++serial}`) });
  },
  unwritable() {
    const file = path.join(tmp, 'a-regular-file');
    fs.writeFileSync(file, 'not a directory');
    return [createStore({ kind: 'local', path: path.join(file, 'backups') }), createStore({ kind: 'local', path: file })];
  },
};

let emulator: FakeGcs;
const bucket = 'conformance';

const gcs: Driver = {
  name: 'gcs',
  async before() {
    emulator = await startFakeGcs({});
    await emulator.createBucket(bucket);
  },
  async after() {
    await emulator?.stop();
  },
  async fresh() {
    return createStore({ kind: 'gcs', bucket, prefix: `run/${++serial}`, apiEndpoint: emulator.url });
  },
  unwritable() {
    return [createStore({ kind: 'gcs', bucket: 'no-such-bucket', prefix: 'backups', apiEndpoint: emulator.url })];
  },
};

/** Both locations as one (storage.secondary configured): a local primary and a local secondary. */
const replicated: Driver = {
  name: 'replicated (primary + secondary)',
  before: () => local.before(),
  after: () => local.after(),
  async fresh() {
    return new ReplicatedStore(await local.fresh(), await local.fresh());
  },
  unwritable() {
    const [a, b] = local.unwritable();
    return [new ReplicatedStore(a, b)];
  },
};

for (const driver of [local, gcs, replicated]) {
  describe(`${driver.name} storage conformance`, () => {
    let store: ObjectStore;
    before(() => driver.before());
    after(() => driver.after());
    beforeEach(async () => {
      store = await driver.fresh();
    });

    it('streams several megabytes in and reads back the same bytes, size and sha256', async () => {
      const size = 9 * MiB + 7; // more than one 8 MiB upload chunk, and not a round number
      const source = generated(size);
      const put = await store.put('tenants/acme/t1/data.bin', source.stream);
      const expected = source.sha256();
      assert.deepEqual(put, { key: 'tenants/acme/t1/data.bin', bytes: size, sha256: expected });
      assert.deepEqual(await digestOf(await store.get('tenants/acme/t1/data.bin')), { sha256: expected, bytes: size });
      assert.deepEqual(await store.stat('tenants/acme/t1/data.bin'), { key: 'tenants/acme/t1/data.bin', bytes: size });
    });

    it('stores a Buffer and returns its sha256 and size', async () => {
      const data = Buffer.from('{"formatVersion":1}\n');
      const put = await store.put('m/manifest.json', data, { contentType: 'application/json' });
      assert.deepEqual(put, { key: 'm/manifest.json', bytes: data.length, sha256: createHash('sha256').update(data).digest('hex') });
      assert.deepEqual(await store.getBytes('m/manifest.json'), data);
    });

    it('overwrites an existing object with the new content', async () => {
      await store.put('k', Buffer.from('old content, longer'));
      await store.put('k', generated(3 * MiB).stream);
      await store.put('k', Buffer.from('new'));
      assert.equal((await store.getBytes('k')).toString(), 'new');
      assert.deepEqual(await store.stat('k'), { key: 'k', bytes: 3 });
      assert.deepEqual(await keysOf(store, ''), ['k']);
    });

    it('stores with putIfAbsent only where no object is: of writers racing for a key exactly one stores, the others get null and leave its bytes', async () => {
      const body = (i: number) => Buffer.from(`{"writer":${i}}\n`);
      const results = await Promise.all(Array.from({ length: 6 }, (_, i) => store.putIfAbsent('keys/tenants/acme.json', body(i), { contentType: 'application/json' })));
      const winners = results.flatMap((r, i) => (r ? [i] : []));
      assert.equal(winners.length, 1, JSON.stringify(results));
      const won = winners[0];
      assert.deepEqual(results[won], { key: 'keys/tenants/acme.json', bytes: body(won).length, sha256: createHash('sha256').update(body(won)).digest('hex') });
      assert.deepEqual(await store.getBytes('keys/tenants/acme.json'), body(won));
      assert.equal(await store.putIfAbsent('keys/tenants/acme.json', Buffer.from('later')), null);
      assert.deepEqual(await store.getBytes('keys/tenants/acme.json'), body(won), 'a later writer changes nothing');
      assert.deepEqual(await keysOf(store, ''), ['keys/tenants/acme.json']);
      await store.delete('keys/tenants/acme.json');
      assert.ok(await store.putIfAbsent('keys/tenants/acme.json', Buffer.from('again')), 'stores again once the object is gone');
    });

    it('reads a byte range: exactly those bytes, an empty range as nothing, a missing object as ObjectMissing', async () => {
      const data = Buffer.from(Array.from({ length: 3 * MiB + 11 }, (_, i) => (i * 7 + (i >> 10)) & 0xff));
      await store.put('packs/b1/0001.pack', data);
      const read = async (offset: number, length: number) => Buffer.concat(await (await store.getRange('packs/b1/0001.pack', { offset, length })).toArray());
      assert.deepEqual(await read(0, 5), data.subarray(0, 5));
      assert.deepEqual(await read(MiB + 3, 2 * MiB), data.subarray(MiB + 3, 3 * MiB + 3));
      assert.deepEqual(await read(data.length - 4, 4), data.subarray(data.length - 4));
      assert.equal((await read(17, 0)).length, 0);
      await rejectsWith(store.getRange('packs/b1/none.pack', { offset: 0, length: 1 }), ErrorType.ObjectMissing);
    });

    it('reports a missing object as null from stat and as ObjectMissing from get and getBytes', async () => {
      await store.put('present/x', Buffer.from('x'));
      assert.equal(await store.stat('present/y'), null);
      assert.equal(await store.stat('present'), null, 'a key prefix is not an object');
      const err = await rejectsWith(store.get('present/y'), ErrorType.ObjectMissing);
      assert.match(err.message, /present\/y/);
      await rejectsWith(store.getBytes('nothing/here'), ErrorType.ObjectMissing);
    });

    it('lists the objects whose key starts with the prefix, in key order, with their sizes', async () => {
      for (const key of ['c', 'ab', 'a/b', 'a-c', 'a/a/x', 'b/2']) await store.put(key, Buffer.from(key));
      // Byte order: '-' (0x2d) < '/' (0x2f) < 'b' (0x62).
      assert.deepEqual(await keysOf(store, 'a'), ['a-c', 'a/a/x', 'a/b', 'ab']);
      assert.deepEqual(await listed(store, 'a/'), [{ key: 'a/a/x', bytes: 5 }, { key: 'a/b', bytes: 3 }]);
      assert.deepEqual(await keysOf(store, ''), ['a-c', 'a/a/x', 'a/b', 'ab', 'b/2', 'c']);
      assert.deepEqual(await keysOf(store, 'a/a/x'), ['a/a/x']);
      assert.deepEqual(await keysOf(store, 'zz'), []);
    });

    it('deletes idempotently', async () => {
      await store.put('d/x', Buffer.from('x'));
      await store.put('d/y', Buffer.from('y'));
      await store.delete('d/x');
      await store.delete('d/x');
      await store.delete('never/existed');
      assert.equal(await store.stat('d/x'), null);
      assert.deepEqual(await keysOf(store, ''), ['d/y']);
    });

    it('deletes everything under a prefix, and nothing else, and counts what it deleted', async () => {
      for (const key of ['tenants/acme/1/a', 'tenants/acme/1/b', 'tenants/acorn/2/a', 'tenants/bob/1/a', 'tenantsX']) {
        await store.put(key, Buffer.from(key));
      }
      assert.equal(await store.deletePrefix('tenants/acme/'), 2);
      assert.deepEqual(await keysOf(store, ''), ['tenants/acorn/2/a', 'tenants/bob/1/a', 'tenantsX']);
      assert.equal(await store.deletePrefix('tenants/ac'), 1, 'a prefix may end inside a name');
      assert.equal(await store.deletePrefix('tenants/ac'), 0);
      assert.deepEqual(await keysOf(store, ''), ['tenants/bob/1/a', 'tenantsX']);
      assert.equal(await store.deletePrefix(''), 2);
      assert.deepEqual(await keysOf(store, ''), []);
    });

    it('leaves nothing visible, and the old object intact, when the source of a streaming put fails half-way', async () => {
      await store.put('t/data.bin', Buffer.from('previous backup'));
      const source = generated(20 * MiB, { failAt: 10 * MiB });
      await assert.rejects(store.put('t/data.bin', source.stream), /the source failed on purpose/);
      await assert.rejects(store.put('t/new.bin', generated(20 * MiB, { failAt: 10 * MiB }).stream), /the source failed on purpose/);
      assert.deepEqual(await listed(store, ''), [{ key: 't/data.bin', bytes: 15 }]);
      assert.equal((await store.getBytes('t/data.bin')).toString(), 'previous backup');
      assert.equal(await store.stat('t/new.bin'), null);
    });

    it('leaves nothing visible when a streaming put is aborted through its signal', async () => {
      const abort = new AbortController();
      const source = generated(20 * MiB, { onChunk: (sent) => sent >= 9 * MiB && abort.abort() });
      await assert.rejects(store.put('t/aborted.bin', source.stream, { signal: abort.signal }), { name: 'AbortError' });
      await assert.rejects(store.put('t/aborted.bin', Buffer.from('x'), { signal: abort.signal }), { name: 'AbortError' });
      assert.deepEqual(await keysOf(store, ''), []);
    });

    it('rejects keys and prefixes that could escape the store or alias another key', async () => {
      for (const key of ['../x', '/x', 'a//b', 'a/../b', './a', 'a/', '', 'a\0b']) {
        for (const op of [
          () => store.put(key, Buffer.from('x')),
          () => store.get(key),
          () => store.getBytes(key),
          () => store.stat(key),
          () => store.delete(key),
        ]) {
          const err = await rejectsWith(op(), ErrorType.BadInput);
          assert.match(err.message, /HINT:/);
        }
      }
      for (const prefix of ['../', '/a', 'a//', 'a/../']) {
        await rejectsWith(listed(store, prefix), ErrorType.BadInput);
        await rejectsWith(store.deletePrefix(prefix), ErrorType.BadInput);
      }
      assert.deepEqual(await keysOf(store, ''), []);
    });

    it('writes many small objects at once (putMany): each visible whole, sizes and sha256 as put gives them', async () => {
      const objects = Array.from({ length: 40 }, (_, i) => ({ key: `tenants/t${i}/b1/manifest.json`, body: Buffer.from(`{"tenant":${i}}\n`.repeat(i + 1)), contentType: 'application/json' }));
      const stored = await store.putMany([...objects, { key: 'tenants/t0/b1/manifest.json', body: Buffer.from('overwritten') }]);
      assert.equal(stored.length, objects.length + 1);
      for (const [i, o] of objects.entries()) {
        assert.deepEqual(stored[i], { key: o.key, bytes: o.body.length, sha256: createHash('sha256').update(o.body).digest('hex') });
        if (i > 0) assert.deepEqual(await store.getBytes(o.key), o.body);
      }
      assert.equal((await store.getBytes('tenants/t0/b1/manifest.json')).toString(), 'overwritten');
      assert.equal((await keysOf(store, 'tenants/')).length, objects.length);
      assert.deepEqual(await store.putMany([]), []);
    });

    it('probes a writable store without leaving anything behind', async () => {
      await store.probe();
      await store.probe();
      assert.deepEqual(await keysOf(store, ''), []);
    });

    it('fails the probe of an unwritable store with StorageUnwritable and a hint', async () => {
      for (const bad of driver.unwritable()) {
        const err = await rejectsWith(bad.probe(), ErrorType.StorageUnwritable);
        assert.match(err.message, /HINT: \S/);
        await rejectsWith(bad.put('k', Buffer.from('x')), ErrorType.StorageUnwritable);
        await rejectsWith(bad.put('k', generated(MiB).stream), ErrorType.StorageUnwritable);
        await rejectsWith(bad.putMany([{ key: 'a/manifest.json', body: Buffer.from('x') }, { key: 'b/manifest.json', body: Buffer.from('y') }]), ErrorType.StorageUnwritable);
      }
    });
  });
}

describe('local storage', () => {
  let dir: string;
  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tenantsafe-local-test-'));
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('writes a large object that comes in pieces of every size (chunks and their tags apart, empty ones) byte for byte', async () => {
    // more than one background sync's worth, in the shapes an encrypted stream and a followed file give
    const sizes = [256 * 1024, 0, 16, 1, 3 * MiB + 5, 64 * 1024 - 1];
    const hash = createHash('sha256');
    let total = 0;
    const pieces = function* () {
      for (let i = 0; total < 40 * MiB; i++) {
        const piece = randomBytes(sizes[i % sizes.length]);
        hash.update(piece);
        total += piece.length;
        yield piece;
      }
    };
    const store = createStore({ kind: 'local', path: path.join(dir, 'large') });
    const put = await store.put('base/base.tar.zst', Readable.from(pieces()));
    const sha256 = hash.digest('hex');
    assert.deepEqual(put, { key: 'base/base.tar.zst', bytes: total, sha256 });
    assert.deepEqual(await digestOf(await store.get('base/base.tar.zst')), { sha256, bytes: total });
  });

  it('hides the partial files of a killed writer from list and removes them with deletePrefix', async () => {
    const root = path.join(dir, 'killed');
    const store = createStore({ kind: 'local', path: root });
    await store.put('b1/data.bin', Buffer.from('complete'));
    // What a writer killed before its rename leaves: a hidden partial next to where the object goes.
    fs.writeFileSync(path.join(root, 'b1', '.data2.bin.partial-4242-0a1b2c'), 'half');
    fs.mkdirSync(path.join(root, 'b1', 'sub'));
    fs.writeFileSync(path.join(root, 'b1', 'sub', '.x.partial-4242-ff'), 'half');
    assert.deepEqual(await listed(store, ''), [{ key: 'b1/data.bin', bytes: 8 }]);
    assert.deepEqual(await keysOf(store, 'b1/data2'), []);
    assert.equal(await store.stat('b1/data2.bin'), null);
    assert.equal(await store.deletePrefix('b1/'), 1);
    assert.deepEqual(filesUnder(root), []);
    assert.ok(!fs.existsSync(path.join(root, 'b1')), 'the emptied directory is removed too');
  });

  it('removes a partial file whose object name matches a prefix ending inside a name', async () => {
    const root = path.join(dir, 'partial-prefix');
    const store = createStore({ kind: 'local', path: root });
    fs.mkdirSync(path.join(root, 't'), { recursive: true });
    fs.writeFileSync(path.join(root, 't', '.acme.partial-1-aa'), 'half');
    fs.writeFileSync(path.join(root, 't', '.bob.partial-1-bb'), 'half');
    assert.equal(await store.deletePrefix('t/ac'), 0, 'partial files are not objects, so not counted');
    assert.deepEqual(filesUnder(root), [path.join('t', '.bob.partial-1-bb')]);
  });

  it('leaves no partial file on disk after a failed or aborted put', async () => {
    const root = path.join(dir, 'failed');
    const store = createStore({ kind: 'local', path: root });
    await assert.rejects(store.put('x/y', generated(4 * MiB, { failAt: MiB }).stream), /on purpose/);
    const abort = new AbortController();
    await assert.rejects(store.put('x/z', generated(4 * MiB, { onChunk: (n) => n > MiB && abort.abort() }).stream, { signal: abort.signal }), { name: 'AbortError' });
    assert.deepEqual(filesUnder(root), []);
  });

  it('makes nothing of a putMany visible, and leaves no partial file, when one of its objects cannot be written', async () => {
    const root = path.join(dir, 'many');
    const store = createStore({ kind: 'local', path: root });
    await store.put('blocked', Buffer.from('a file where a directory must be'));
    const objects = ['a/manifest.json', 'blocked/manifest.json', 'c/manifest.json'].map((key) => ({ key, body: Buffer.from(key) }));
    const err = await rejectsWith(store.putMany(objects), ErrorType.StorageUnwritable);
    assert.match(err.message, /blocked/);
    assert.deepEqual(await keysOf(store, ''), ['blocked']);
    assert.deepEqual(filesUnder(root).filter((f) => f.includes('.partial-')), []);
  });

  it('copies a putMany to the secondary, holding manifests back while the secondary is behind (replicated)', async () => {
    const primary = createStore({ kind: 'local', path: path.join(dir, 'rp') });
    const secondaryRoot = path.join(dir, 'rs');
    fs.writeFileSync(secondaryRoot, 'not a directory: the secondary is down');
    const store = new ReplicatedStore(primary, createStore({ kind: 'local', path: secondaryRoot }), () => undefined);
    const objects = (n: number) => [{ key: `packs/b${n}/shared.json`, body: Buffer.from(`s${n}`) }, { key: `tenants/t/b${n}/manifest.json`, body: Buffer.from(`m${n}`) }];
    await store.putMany(objects(1));
    assert.deepEqual(await keysOf(primary, 'tenants/'), ['tenants/t/b1/manifest.json'], 'the primary has it all');
    assert.deepEqual((await store.lagMarkers('secondary')).length, 2, 'both missed copies are recorded');
    fs.rmSync(secondaryRoot);
    await store.putMany(objects(2));
    assert.deepEqual(await keysOf(store.secondary, 'packs/'), ['packs/b2/shared.json'], 'objects are copied once the secondary is back');
    assert.deepEqual(await keysOf(store.secondary, 'tenants/'), [], 'a manifest is held back while the secondary misses objects');
    assert.equal((await store.lagMarkers('secondary')).length, 3);
  });

  it('creates a missing root directory on probe and names the path when it cannot', async () => {
    const root = path.join(dir, 'new', 'deeper');
    await createStore({ kind: 'local', path: root }).probe();
    assert.ok(fs.statSync(root).isDirectory());
    assert.deepEqual(filesUnder(root), []);
    fs.writeFileSync(path.join(root, 'blocker'), '');
    const err = await rejectsWith(createStore({ kind: 'local', path: path.join(root, 'blocker', 'x') }).put('k', Buffer.from('x')), ErrorType.StorageUnwritable);
    assert.match(err.message, /blocker/);
  });
});

describe('gcs storage', () => {
  let gcsServer: FakeGcs;
  before(async () => {
    gcsServer = await startFakeGcs({});
    await gcsServer.createBucket('layout');
  });
  after(async () => {
    await gcsServer?.stop();
  });

  it('keeps objects under the configured prefix with their sha256 in custom metadata', async () => {
    const store = createStore({ kind: 'gcs', bucket: 'layout', prefix: 'team/backups', apiEndpoint: gcsServer.url });
    assert.equal(store.uri, 'gs://layout/team/backups');
    const streamed = await store.put('t/stream.bin', generated(2 * MiB).stream);
    const buffered = await store.put('t/manifest.json', Buffer.from('{}'));
    const raw = new Storage({ apiEndpoint: gcsServer.url }).bucket('layout');
    const [files] = await raw.getFiles();
    assert.deepEqual(
      files.map((f) => [f.name, f.metadata.metadata?.sha256]),
      [['team/backups/t/manifest.json', buffered.sha256], ['team/backups/t/stream.bin', streamed.sha256]],
    );
  });

  it('fails the reader, not the process, when a read fails before the reader starts (here a range past the end)', async () => {
    const store = createStore({ kind: 'gcs', bucket: 'layout', prefix: 'early-error', apiEndpoint: gcsServer.url });
    await store.put('k', Buffer.from('hello'));
    const stream = await store.getRange('k', { offset: 100, length: 5 });
    await new Promise((resolve) => setTimeout(resolve, 300)); // the GET answered and failed meanwhile
    await assert.rejects(stream.toArray(), (err: { code?: number }) => err.code === 416, 'Range Not Satisfiable, for the reader');
  });

  it('uses STORAGE_EMULATOR_HOST when the config names no endpoint, with or without scheme and /storage/v1', async () => {
    const saved = process.env.STORAGE_EMULATOR_HOST;
    try {
      for (const [i, host] of [gcsServer.url, `${gcsServer.url}/storage/v1/`, `127.0.0.1:${gcsServer.port}`].entries()) {
        process.env.STORAGE_EMULATOR_HOST = host;
        const store = createStore({ kind: 'gcs', bucket: 'layout', prefix: `env${i}` });
        await store.put('buffer', Buffer.from('b'));
        await store.put('stream', generated(MiB).stream);
        assert.deepEqual(await listed(store, ''), [{ key: 'buffer', bytes: 1 }, { key: 'stream', bytes: MiB }], host);
      }
    } finally {
      if (saved === undefined) delete process.env.STORAGE_EMULATOR_HOST;
      else process.env.STORAGE_EMULATOR_HOST = saved;
    }
  });

  it('reports StorageUnavailable within 15 seconds when the endpoint is down', async () => {
    const dead = await startFakeGcs({});
    await dead.createBucket('dead');
    const killed = createStore({ kind: 'gcs', bucket: 'dead', prefix: '', apiEndpoint: dead.url });
    await killed.put('x', Buffer.from('x'));
    dead.kill();
    await dead.stop();
    const [closedPort] = await freePorts('127.0.0.1', 1);
    const closed = createStore({ kind: 'gcs', bucket: 'dead', prefix: '', apiEndpoint: `http://127.0.0.1:${closedPort}` });
    for (const store of [killed, closed]) {
      for (const [what, op] of [
        ['probe', () => store.probe()],
        ['stat', () => store.stat('x')],
        ['get', () => store.get('x')],
        ['list', () => listed(store, '')],
        ['put of a stream', () => store.put('y', generated(MiB).stream)],
      ] as const) {
        const started = Date.now();
        const err = await rejectsWith(op(), ErrorType.StorageUnavailable);
        assert.ok(Date.now() - started < 15_000, `${what} took ${Date.now() - started} ms`);
        assert.match(err.message, new RegExp(`127\\.0\\.0\\.1:\\d+.*HINT: `));
      }
    }
  });

  it('keeps the filesystem emulator\'s temporary files (.<name><random>, renamed into place) in a directory of its own, gone when it stops', async () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tenantsafe-gcs-tmp-'));
    const server = await startFakeGcs({ backend: 'filesystem', root });
    try {
      const bucket = `leftover-${randomBytes(4).toString('hex')}`;
      await server.createBucket(bucket);
      await createStore({ kind: 'gcs', bucket, prefix: '', apiEndpoint: server.url }).put('k', Buffer.from('x'));
      // the server's environment: where Go's os.TempDir() puts them
      const [pid] = execFileSync('ps', ['-eo', 'pid=,args='], { encoding: 'utf8' })
        .split('\n')
        .filter((l) => l.includes(`-port ${server.port} `) && !l.includes('setpriv'))
        .map((l) => Number(l.trim().split(' ')[0]));
      const tmp = fs.readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0').find((v) => v.startsWith('TMPDIR='))?.slice('TMPDIR='.length);
      assert.ok(tmp && path.resolve(tmp) !== path.resolve(os.tmpdir()) && fs.statSync(tmp).isDirectory(), `TMPDIR of the emulator: ${tmp}`);
      assert.deepEqual(fs.readdirSync(os.tmpdir()).filter((f) => f.startsWith(`.${bucket}`)), [], `no .${bucket}* file in ${os.tmpdir()}`);
      await server.stop();
      assert.equal(fs.existsSync(tmp), false, 'its temporary directory goes with it');
    } finally {
      await server.stop();
      fs.rmSync(root, { recursive: true, force: true });
    }
  });

  it('fails a streaming put with StorageUnavailable when storage dies mid-way, and never shows the object', async () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tenantsafe-gcs-crash-'));
    const [port] = await freePorts('127.0.0.1', 1);
    let server = await startFakeGcs({ port, backend: 'filesystem', root });
    try {
      await server.createBucket('crash');
      const store = createStore({ kind: 'gcs', bucket: 'crash', prefix: 'p', apiEndpoint: server.url });
      await store.put('complete.bin', generated(MiB).stream);
      const dying = server;
      // Killed after the first 8 MiB chunk has gone out, while the second is being read.
      const source = generated(24 * MiB, { onChunk: (sent) => sent === 12 * MiB && dying.kill() });
      const started = Date.now();
      await rejectsWith(store.put('big.bin', source.stream), ErrorType.StorageUnavailable);
      assert.ok(Date.now() - started < 15_000);
      await server.stop();
      server = await startFakeGcs({ port, backend: 'filesystem', root });
      // The object finished before the crash is there after the restart: so absence means something.
      assert.deepEqual(await listed(store, ''), [{ key: 'complete.bin', bytes: MiB }]);
      assert.equal(await store.stat('big.bin'), null);
    } finally {
      await server.stop();
      fs.rmSync(root, { recursive: true, force: true });
    }
  });
});
