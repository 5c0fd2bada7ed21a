// The servers shared by the whole mocha run: one Temporal dev server (from temporal-dev.yaml,
// in memory, on free ports), one fake-gcs-server, and the workflow bundle built once.
import { bundleWorkflowCode, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { startFakeGcs } from '../doubles/fakeGcs';
import { loadTemporalDevConfig, startTemporalDevServer } from '../../client/temporalDevServer';
import { workflowsPath } from '../../workers/worker';

export interface TestStack {
  temporalAddress: string;
  namespace: string;
  gcs: Awaited<ReturnType<typeof startFakeGcs>>;
  bundle: WorkflowBundleWithSourceMap;
  stop(): Promise<void>;
}

let stack: Promise<TestStack> | undefined;

async function start(): Promise<TestStack> {
  // Workers log expected failures (bad input is tested on purpose); keep the test output readable.
  // (An env var, not Runtime.install: the SDK drops its runtime whenever the last worker stops.)
  process.env.TENANTSAFE_LOG_LEVEL ??= 'ERROR';
  const cfg = loadTemporalDevConfig(undefined, { port: 0, uiPort: 0, httpPort: 0, metricsPort: 0, dbFilename: null });
  const [temporal, gcs, bundle] = await Promise.all([
    startTemporalDevServer(cfg, {}),
    startFakeGcs({}),
    bundleWorkflowCode({ workflowsPath, logger: { log() {}, info() {}, warn() {}, error: console.error, debug() {}, trace() {} } as never }),
  ]);
  return {
    temporalAddress: temporal.address,
    namespace: temporal.namespace,
    gcs,
    bundle,
    async stop() {
      await Promise.all([temporal.stop(), gcs.stop()]);
    },
  };
}

/** The shared stack, started on first use. */
export function testStack(): Promise<TestStack> {
  stack ??= start();
  return stack;
}

export function testStackIfStarted(): Promise<TestStack | undefined> {
  return stack ?? Promise.resolve(undefined);
}

export async function stopTestStack(): Promise<void> {
  if (stack) await (await stack).stop();
  stack = undefined;
}
