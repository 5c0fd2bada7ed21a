// Root hooks for the whole mocha run: the shared servers stop once at the end.
import { recordHistories } from './histories';
import { stopTestStack, testStackIfStarted } from './stack';

export const mochaHooks = {
  async afterAll(this: Mocha.Context) {
    this.timeout(60_000);
    const stack = await testStackIfStarted();
    if (process.env.RECORD_HISTORIES && stack) console.log(`recorded histories of ${(await recordHistories(stack.temporalAddress, stack.namespace)).join(', ')}`);
    await stopTestStack();
  },
};
