import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { gunzipSync } from 'node:zlib';
import { FieldPicker } from '../lib/restore/stage';
import { FirstLines, ParallelGzip, Rechunk } from '../lib/streams';
import { compressor, tarDecompressArgs } from '../lib/fullBackup/compression';
import { pipeline } from 'node:stream/promises';
import { baseObjectOf, type BaseCompression } from '../lib/format/fullManifest';

describe('ParallelGzip', () => {
  // Half random, half repetitive: blocks compress at different speeds, so they finish out of order.
  const input = Buffer.concat(Array.from({ length: 40 }, (_, i) => (i % 2 ? randomBytes(7_000 + i) : Buffer.alloc(9_000 + i, `row ${i};`))));
  const chunks = (size: number) => Array.from({ length: Math.ceil(input.length / size) }, (_, i) => input.subarray(i * size, (i + 1) * size));

  it('writes gzip members in input order that gunzip, Node and the gzip tool read back as the input', async () => {
    const out = await buffer(Readable.from(chunks(5_000)).pipe(new ParallelGzip({ level: 1, blockSize: 32_768, threads: 3 })));
    assert.ok(gunzipSync(out).equals(input));
    const tool = spawnSync('gzip', ['-dc'], { input: out, maxBuffer: 1 << 26 });
    assert.equal(tool.status, 0, tool.stderr.toString());
    assert.ok(tool.stdout.equals(input));
    // one member per block: each starts with the gzip magic and deflate method
    const members = out.reduce((n, _b, i) => n + (out[i] === 0x1f && out[i + 1] === 0x8b && out[i + 2] === 8 && out[i + 3] === 0 ? 1 : 0), 0);
    assert.ok(members >= Math.floor(input.length / 32_768), `${members} members`);
  });

  it('passes a short stream, and an empty one, through as valid gzip', async () => {
    const short = await buffer(Readable.from([Buffer.from('abc')]).pipe(new ParallelGzip({ level: 6, blockSize: 1 << 20 })));
    assert.equal(gunzipSync(short).toString(), 'abc');
    const empty = await buffer(Readable.from([]).pipe(new ParallelGzip({ level: 6, blockSize: 1 << 20 })));
    assert.equal(gunzipSync(empty).length, 0);
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

describe('base backup compressors', () => {
  const input = Buffer.concat([randomBytes(200_000), Buffer.alloc(300_000, 'row;')]);
  for (const c of [{ method: 'lz4', level: 1 }, { method: 'zstd', level: 3 }, { method: 'gzip', level: 1 }] as const) {
    it(`${c.method}: what it writes, the tool tar runs (${tarDecompressArgs(c).join(' ')}) reads back as the input, smaller`, async () => {
      const packer = compressor(c);
      const [out] = await Promise.all([buffer(packer.output), pipeline(Readable.from([input]), packer.input), packer.done]);
      assert.ok(out.length < input.length * 0.6, `${out.length} bytes`);
      const tool = spawnSync(c.method, ['-d', '-c'], { input: out, maxBuffer: 1 << 26 });
      assert.equal(tool.status, 0, tool.stderr.toString());
      assert.ok(tool.stdout.equals(input));
    });
  }

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
