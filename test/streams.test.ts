import { strict as assert } from 'node:assert';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { FieldPicker } from '../lib/restore/stage';
import { FirstLines, FollowedFile, Rechunk } from '../lib/streams';
import { baseObjectOf, type BaseCompression } from '../lib/format/fullManifest';

describe('FollowedFile', () => {
  it('reads a file while another process appends to it, to its end once the writer has exited', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'tenantsafe-followed-'));
    const file = path.join(dir, 'growing');
    try {
      // the file appears only after a while, then grows in pieces with pauses between them
      const writer = spawn('sh', ['-c', `sleep 0.1; for i in $(seq 1 20); do head -c 70000 /dev/urandom >> ${file}; sleep 0.02; done`]);
      let exited = false;
      writer.once('exit', () => (exited = true));
      const positions: number[] = [];
      const read = await buffer(new FollowedFile(file, () => exited, { pollMs: 5, onRead: (p) => positions.push(p) }));
      assert.ok(exited, 'it ended only once the writer had exited');
      assert.equal(read.length, 20 * 70_000);
      assert.ok(read.equals(readFileSync(file)));
      assert.ok(positions.length > 1 && positions.at(-1) === read.length, `read at ${positions.join(', ')}`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('ends at once when woken after the writer exits, not at its next poll', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'tenantsafe-followed-'));
    const file = path.join(dir, 'written');
    try {
      writeFileSync(file, 'all of it');
      let exited = false;
      const followed = new FollowedFile(file, () => exited, { pollMs: 60_000 });
      const reading = buffer(followed);
      await new Promise((resolve) => setTimeout(resolve, 50)); // read what is there, now waiting to poll again
      const wokenAt = Date.now();
      exited = true;
      followed.wake();
      assert.equal((await reading).toString(), 'all of it');
      assert.ok(Date.now() - wokenAt < 5_000, `ended ${Date.now() - wokenAt} ms after wake()`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('ends empty when the writer exited without making the file', async () => {
    const read = await buffer(new FollowedFile(path.join(os.tmpdir(), 'tenantsafe-never-written'), () => true));
    assert.equal(read.length, 0);
  });
});

describe('Rechunk', () => {
  it('passes every byte in order, in pieces of at least the size but the last', async () => {
    const input = randomBytes(300_000);
    const pieces: Buffer[] = [];
    for await (const piece of Readable.from(Array.from({ length: 30 }, (_, i) => input.subarray(i * 10_000, (i + 1) * 10_000))).pipe(new Rechunk(64_000))) pieces.push(piece);
    assert.ok(Buffer.concat(pieces).equals(input));
    assert.ok(pieces.length <= 5 && pieces.slice(0, -1).every((p) => p.length >= 64_000), `pieces of ${pieces.map((p) => p.length).join(', ')} bytes`);
  });
});

describe('base backup compression', () => {
  it('reads the tar of a manifest by its recorded compression, gzip when it records none, and refuses one it does not know', () => {
    const object = (key: string) => ({ key, bytes: 1, sha256: 'x' });
    const objects = ['base.tar.gz', 'base.tar.lz4', 'base.tar.zst', 'backup_manifest'].map(object);
    assert.deepEqual(baseObjectOf({ objects }), { object: object('base.tar.gz'), compression: { method: 'gzip', level: 1 } });
    assert.equal(baseObjectOf({ objects, compression: { method: 'zstd', level: 3 } }).object.key, 'base.tar.zst');
    assert.throws(() => baseObjectOf({ objects: [object('base.tar.gz')], compression: { method: 'lz4', level: 1 } }), /CorruptBackup|lists no base\.tar\.lz4/);
    const unknown = { method: 'brotli', level: 1 } as unknown as BaseCompression;
    assert.throws(() => baseObjectOf({ objects, compression: unknown }), (err: Error) => err.name === 'UnsupportedFormat' && /"brotli".*HINT:/.test(err.message));
  });
});

describe('FieldPicker', () => {
  const lines = ['1\tacme\t\\N\ta\\tb\t2026-01-01', '22\tglobex\t{"x": 1}\t\t', '333\t\\N\tz\ty\tx'];
  const input = Buffer.from(lines.map((l) => `${l}\n`).join(''));
  const pick = (keep: boolean[]) => lines.map((l) => `${l.split('\t').filter((_f, i) => keep[i]).join('\t')}\n`).join('');

  it('keeps the marked fields of every line, however the lines are split into chunks', async () => {
    for (const keep of [[true, false, true], [false, true, false, false, true], [true, true, true, true, true], [false, false, false, true]]) {
      for (const size of [1, 2, 3, 7, input.length]) {
        const chunks = Array.from({ length: Math.ceil(input.length / size) }, (_, i) => input.subarray(i * size, (i + 1) * size));
        const out = await buffer(Readable.from(chunks).pipe(new FieldPicker(keep)));
        assert.equal(out.toString(), pick(keep), `keep ${keep}, chunks of ${size}`);
      }
    }
  });
});

describe('FirstLines', () => {
  const input = Buffer.from(Array.from({ length: 50 }, (_, i) => `${i}\tline ${'x'.repeat(i)}\n`).join(''));
  const firstLines = (n: number) => input.toString().split('\n').slice(0, n).map((l) => `${l}\n`).join('');

  it('passes the first n lines whole and nothing after, however the lines are split into chunks', async () => {
    for (const size of [1, 3, 7, 64, input.length]) {
      const chunks = Array.from({ length: Math.ceil(input.length / size) }, (_, i) => input.subarray(i * size, (i + 1) * size));
      for (const n of [0, 1, 5, 50, 60]) {
        const out = await buffer(Readable.from(chunks).pipe(new FirstLines(n)));
        assert.equal(out.toString(), firstLines(Math.min(n, 50)), `${n} lines in chunks of ${size}`);
      }
    }
  });
});
