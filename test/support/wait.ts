// Waiting in tests for something another process does: polled, with a bound and a message that
// says what never happened (and, when given, what the state was then).
import { strict as assert } from 'node:assert';

export async function waitFor(what: string, probe: () => Promise<boolean>, opts: { tries?: number; intervalMs?: number; state?: () => Promise<string> } = {}): Promise<void> {
  for (let i = 0; !(await probe()); i++) {
    if (i > (opts.tries ?? 300)) assert.fail(`never: ${what}${opts.state ? ` (${await opts.state()})` : ''}`);
    await new Promise((resolve) => setTimeout(resolve, opts.intervalMs ?? 100));
  }
}
