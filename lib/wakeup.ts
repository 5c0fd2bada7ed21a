// A wait that another event may end early, without losing a wake that comes while nobody waits.

/**
 * `wait(ms)` resolves after `ms`, on `wake()`, or when the signal aborts. A `wake()` while no one
 * waits is kept for the next `wait`, which then returns at once: the event it stands for (a file
 * that appeared while the waiter was busy) must not wait out a whole interval.
 */
export class Wakeup {
  private pending = false;
  private endWait: (() => void) | null = null;

  wake(): void {
    if (this.endWait) this.endWait();
    else this.pending = true;
  }

  wait(ms: number, signal?: AbortSignal): Promise<void> {
    if (this.pending || signal?.aborted) {
      this.pending = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', done);
        this.endWait = null;
        resolve();
      };
      const timer = setTimeout(done, ms);
      signal?.addEventListener('abort', done, { once: true });
      this.endWait = done;
    });
  }
}
