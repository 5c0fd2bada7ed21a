import { strict as assert } from 'node:assert';
import { Wakeup } from '../lib/wakeup';

const timed = async (p: Promise<void>) => {
  const t = performance.now();
  await p;
  return performance.now() - t;
};

describe('Wakeup', () => {
  it('waits its interval when nothing wakes it', async () => {
    assert.ok((await timed(new Wakeup().wait(60))) >= 55);
  });

  it('ends a wait on wake()', async () => {
    const w = new Wakeup();
    setTimeout(() => w.wake(), 10);
    assert.ok((await timed(w.wait(5_000))) < 1_000);
  });

  it('keeps a wake that came while nobody waited for the next wait only', async () => {
    const w = new Wakeup();
    w.wake(); // the waiter was busy: a segment completed during its pass
    w.wake();
    assert.ok((await timed(w.wait(5_000))) < 1_000, 'the next wait returns at once');
    assert.ok((await timed(w.wait(60))) >= 55, 'the one after waits again');
  });

  it('ends a wait when the signal aborts', async () => {
    const w = new Wakeup();
    const abort = new AbortController();
    setTimeout(() => abort.abort(), 10);
    assert.ok((await timed(w.wait(5_000, abort.signal))) < 1_000);
    assert.ok((await timed(w.wait(5_000, abort.signal))) < 1_000, 'and returns at once once it has');
  });
});
