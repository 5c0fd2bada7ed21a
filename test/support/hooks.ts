// Root hooks for the whole mocha run: the shared servers stop once at the end.
import { stopTestStack } from './stack';

export const mochaHooks = {
  async afterAll(this: Mocha.Context) {
    this.timeout(60_000);
    await stopTestStack();
  },
};
