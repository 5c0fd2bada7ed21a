import { strict as assert } from 'node:assert';
import { randomBytes } from 'node:crypto';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { parseConfig } from '../lib/config';
import { TenantsafeError } from '../lib/errors';
import { compressor, compressPart, decompressor, isDamagedInput, parseDataCompression, type DataCompression } from '../lib/format/dataCompression';

/** Runs `input`, cut into pieces, through `streams` and gives back what comes out. */
async function through(input: Buffer[], ...streams: NodeJS.ReadWriteStream[]): Promise<Buffer> {
  const out: Buffer[] = [];
  await pipeline([Readable.from(input), ...streams, new Writable({ write: (c: Buffer, _e, done) => (out.push(c), done()) })]);
  return Buffer.concat(out);
}

describe('tenant data compression (backup.compression)', () => {
  const methods: DataCompression[] = [
    { method: 'zstd', level: 1 },
    { method: 'gzip', level: 1 },
  ];
  // COPY text: repetitive lines with some noise, as a table's rows are
  const rows = Buffer.from(Array.from({ length: 20_000 }, (_, i) => `${i}\tacme\tnote ${i % 97}\t${randomBytes(6).toString('hex')}\n`).join(''));

  for (const c of methods) {
    it(`${c.method}: a stream gives back its input however it is cut, and each tenant's part of a pack decompresses alone and joined`, async () => {
      const pieces = [rows.subarray(0, 1), rows.subarray(1, 70_000), rows.subarray(70_000)];
      const packed = await through(pieces, compressor(c));
      assert.ok(packed.length < rows.length / 2, `${c.method} compresses COPY text (${packed.length} of ${rows.length} bytes)`);
      assert.deepEqual(await through([packed.subarray(0, 7), packed.subarray(7)], decompressor(c.method)), rows);

      const parts = [rows.subarray(0, 100), Buffer.alloc(0), rows.subarray(100, 300_000), rows.subarray(300_000)];
      const frames = await Promise.all(parts.map((p) => compressPart(c, p)));
      for (const [i, f] of frames.entries()) assert.deepEqual(await through([f], decompressor(c.method)), parts[i], `part ${i} alone`);
      assert.deepEqual(await through([Buffer.concat(frames)], decompressor(c.method)), rows, 'the pack as one stream');
    });

    it(`${c.method}: a cut or foreign input is told apart as damage, not as another error`, async () => {
      const packed = await through([rows], compressor(c));
      for (const [what, input] of [
        ['cut short', packed.subarray(0, packed.length - 9)],
        ['not this method', Buffer.from('plain text, no frame at all\n')],
      ] as const) {
        await assert.rejects(through([input], decompressor(c.method)), (err) => isDamagedInput(err), `${what}`);
      }
      assert.equal(isDamagedInput(new Error('connection reset')), false);
    });
  }

  it('compresses pack parts at partLevel (bare zstd: 3) and whole objects at level', async () => {
    const raw = Buffer.from(Array.from({ length: 4000 }, (_, i) => `${i}\trow ${i % 97} of tenant acme\t${(i * 7919) % 10007}\n`).join(''));
    const bare = parseDataCompression('zstd') as DataCompression;
    assert.deepEqual(await compressPart(bare, raw), await compressPart({ method: 'zstd', level: 3 }, raw));
    assert.notDeepEqual(await compressPart(bare, raw), await compressPart({ method: 'zstd', level: 1 }, raw), 'the input tells the levels apart');
  });

  it('reads zstd[:1-19] and gzip[:1-9], naming what is allowed otherwise', () => {
    assert.deepEqual(parseDataCompression('zstd'), { method: 'zstd', level: 1, partLevel: 3 });
    assert.deepEqual(parseDataCompression('zstd:1'), { method: 'zstd', level: 1 });
    assert.deepEqual(parseDataCompression('gzip'), { method: 'gzip', level: 1 });
    assert.deepEqual(parseDataCompression('zstd:19'), { method: 'zstd', level: 19 });
    assert.deepEqual(parseDataCompression('gzip:6'), { method: 'gzip', level: 6 });
    assert.deepEqual(parseDataCompression('lz4'), { error: 'must be zstd[:level] or gzip[:level]' });
    assert.deepEqual(parseDataCompression('zstd:0'), { error: "zstd's level must be from 1 to 19" });
    assert.deepEqual(parseDataCompression('zstd:-1'), { error: "zstd's level must be from 1 to 19" });
    assert.deepEqual(parseDataCompression('gzip:x'), { error: "gzip's level must be from 1 to 9" });
    assert.deepEqual(parseDataCompression('toString'), { error: 'must be zstd[:level] or gzip[:level]' });
  });

  it('defaults to zstd (level 1, pack parts 3); a config giving only compressionLevel (written before backup.compression) keeps gzip at that level; a bad value is refused by name', () => {
    const read = (backup?: Record<string, unknown>) => parseConfig({ database: { url: 'postgres://localhost/x' }, storage: { primary: { kind: 'local', path: '/tmp/x' } }, ...(backup ? { backup } : {}) }, { env: {}, source: 'test', baseDir: '/tmp' }).backup;
    assert.deepEqual(read().compression, { method: 'zstd', level: 1, partLevel: 3 });
    assert.deepEqual(read({ compressionLevel: 6 }).compression, { method: 'gzip', level: 6 });
    assert.deepEqual(read({ compressionLevel: 6, compression: 'zstd:2' }), { parallelism: 4, compressionLevel: 6, compression: { method: 'zstd', level: 2 } });
    assert.throws(
      () => read({ compression: 'brotli' }),
      (err: TenantsafeError) => /backup\.compression/.test(err.message) && /zstd\[:level\] or gzip\[:level\]/.test(err.message),
    );
  });
});
