// Root hooks for the whole mocha run (filled in as the shared test stack is built).
export const mochaHooks = {};
