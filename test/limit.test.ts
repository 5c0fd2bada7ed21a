import { strict as assert } from 'node:assert';
import { allDone, mapLimit } from '../lib/limit';

const after = <T>(ms: number, value: T, fail = false) => new Promise<T>((resolve, reject) => setTimeout(() => (fail ? reject(new Error(String(value))) : resolve(value)), ms));

describe('allDone', () => {
  it('gives every result in order', async () => {
    assert.deepEqual(await allDone([after(20, 'a'), after(5, 1), Promise.resolve(undefined)] as const), ['a', 1, undefined]);
  });

  it('rejects with the first failure only once every promise has settled', async () => {
    let slowDone = false;
    const slow = after(80, 'slow').then((v) => ((slowDone = true), v));
    await assert.rejects(allDone([after(5, 'first', true), slow, after(30, 'second', true)]), /^Error: first$/);
    assert.ok(slowDone, 'it waited for the slow one');
  });
});

describe('mapLimit', () => {
  it('runs at most `limit` calls at once and keeps the items\' order', async () => {
    let running = 0;
    let most = 0;
    const out = await mapLimit([30, 10, 20, 5, 15], 2, async (ms, i) => {
      most = Math.max(most, ++running);
      await after(ms, null);
      running--;
      return i;
    });
    assert.deepEqual(out, [0, 1, 2, 3, 4]);
    assert.equal(most, 2);
  });

  it('on a failure starts no new call and rejects once the calls in flight have finished', async () => {
    const started: number[] = [];
    let inFlightDone = false;
    await assert.rejects(
      mapLimit([0, 1, 2, 3], 2, async (i) => {
        started.push(i);
        if (i === 0) return after(5, i, true);
        await after(60, i);
        inFlightDone = true;
        return i;
      }),
      /^Error: 0$/,
    );
    assert.ok(inFlightDone, 'the call in flight finished first');
    assert.deepEqual(started, [0, 1]);
  });
});
