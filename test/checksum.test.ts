import { strict as assert } from 'node:assert';
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { adjustRowChecksum, RowDigest, sha256OfStream } from '../lib/checksum';

const digest = (text: string, chunk = text.length) => {
  const d = new RowDigest();
  const bytes = Buffer.from(text);
  for (let i = 0; i < bytes.length; i += chunk) d.update(bytes.subarray(i, i + chunk));
  return d.digest();
};

describe('row checksum (murmur3x2-sum64, docs/format.md)', () => {
  it('hashes a row with MurmurHash3 x86 32-bit under both seeds: the published vector, and the values backups hold', () => {
    // MurmurHash3_x86_32("The quick brown fox jumps over the lazy dog", 0x9747b28c) = 0x2fa826cd (lane A)
    assert.equal(digest('The quick brown fox jumps over the lazy dog\n'), '2fa826cd1d05219d');
    assert.equal(digest('1\tacme\t\\N\n22\tglobex\t{"x": 1}\nabc\n\n'), '2dfae0ee4c1edea1');
  });

  it('is the same however the rows are split into chunks and in whatever order they come, and subtracts', () => {
    const rows = ['1\tacme\t\\N', '22\tglobex\t{"x": 1}', 'abc', '', 'é\tx'];
    const all = digest(rows.map((r) => `${r}\n`).join(''));
    for (const chunk of [1, 2, 3, 5, 64]) assert.equal(digest(rows.map((r) => `${r}\n`).join(''), chunk), all, `chunks of ${chunk}`);
    assert.equal(digest([...rows].reverse().map((r) => `${r}\n`).join('')), all, 'order');
    const removed = digest(`${rows[1]}\n${rows[3]}\n`);
    const added = digest('new\n');
    assert.equal(adjustRowChecksum(all, removed, added), digest([rows[0], rows[2], rows[4], 'new'].map((r) => `${r}\n`).join('')));
  });
});

describe('sha256 of a stream', () => {
  it('is the sha256 of every byte, and fails with the source when the source fails part-way (not waiting forever)', async () => {
    const pieces = [Buffer.from('abc'), Buffer.alloc(70_000, 7), Buffer.from('z')];
    assert.equal(await sha256OfStream(Readable.from(pieces)), createHash('sha256').update(Buffer.concat(pieces)).digest('hex'));
    const failing = Readable.from(
      (async function* () {
        yield Buffer.from('abc');
        throw new Error('the object went away');
      })(),
    );
    await assert.rejects(sha256OfStream(failing), /the object went away/);
  });
});
