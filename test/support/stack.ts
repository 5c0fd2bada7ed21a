// The servers shared by the whole mocha run: one Temporal dev server (from temporal-dev.yaml,
// in memory, on free ports), one fake-gcs-server, and the workflow bundle built once.
// The fault suite (test/faults) asks for a durable stack first: Temporal keeps its state in a
// sqlite file and fake-gcs on disk, so either can be stopped and started again on its port.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { bundleWorkflowCode, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { startFakeGcs } from '../doubles/fakeGcs';
import { loadTemporalDevConfig, startTemporalDevServer, type TemporalDevServer } from '../../client/temporalDevServer';
import { workflowsPath } from '../../workers/worker';

export interface TestStack {
  temporalAddress: string;
  namespace: string;
  gcs: Awaited<ReturnType<typeof startFakeGcs>>;
  bundle: WorkflowBundleWithSourceMap;
  /** durable stacks only: stops the Temporal server, runs `meanwhile`, starts it again on the same port and file */
  restartTemporal(meanwhile?: () => Promise<void>): Promise<void>;
  /** durable stacks only: stops the storage emulator, runs `meanwhile`, starts it again on the same port and files */
  restartGcs(meanwhile?: () => Promise<void>): Promise<void>;
  stop(): Promise<void>;
}

let stack: Promise<TestStack> | undefined;
let durable = false;

/** Makes the stack durable (restartable); call before anything starts it. */
export function useDurableTestStack(): void {
  if (stack) throw new Error('useDurableTestStack: the test stack has started already');
  durable = true;
}

async function start(): Promise<TestStack> {
  // Workers log expected failures (bad input is tested on purpose); keep the test output readable.
  // (An env var, not Runtime.install: the SDK drops its runtime whenever the last worker stops.)
  process.env.TENANTSAFE_LOG_LEVEL ??= 'ERROR';
  const dir = durable ? fs.mkdtempSync(path.join(os.tmpdir(), 'tenantsafe-stack-')) : undefined;
  const cfg = loadTemporalDevConfig(undefined, { port: 0, uiPort: 0, httpPort: 0, metricsPort: 0, dbFilename: dir ? path.join(dir, 'temporal.sqlite') : null });
  const gcsOptions = dir ? { backend: 'filesystem' as const, root: path.join(dir, 'gcs') } : {};
  if (dir) fs.mkdirSync(gcsOptions.root!, { recursive: true });
  let [temporal, gcs, bundle]: [TemporalDevServer, Awaited<ReturnType<typeof startFakeGcs>>, WorkflowBundleWithSourceMap] = await Promise.all([
    startTemporalDevServer(cfg, {}),
    startFakeGcs(gcsOptions),
    bundleWorkflowCode({ workflowsPath, logger: { log() {}, info() {}, warn() {}, error: console.error, debug() {}, trace() {} } as never }),
  ]);
  const port = (address: string) => Number(address.slice(address.lastIndexOf(':') + 1));
  const needsDurable = (what: string) => {
    if (!dir) throw new Error(`${what}: the test stack is in memory (call useDurableTestStack first)`);
  };
  const self: TestStack = {
    temporalAddress: temporal.address,
    namespace: temporal.namespace,
    gcs,
    bundle,
    async restartTemporal(meanwhile) {
      needsDurable('restartTemporal');
      await temporal.stop();
      await meanwhile?.();
      temporal = await startTemporalDevServer({ ...cfg, port: port(temporal.address) }, {});
    },
    async restartGcs(meanwhile) {
      needsDurable('restartGcs');
      await gcs.stop();
      await meanwhile?.();
      gcs = await startFakeGcs({ ...gcsOptions, port: gcs.port });
      self.gcs = gcs;
    },
    async stop() {
      await Promise.all([temporal.stop(), gcs.stop()]);
      if (dir) fs.rmSync(dir, { recursive: true, force: true });
    },
  };
  return self;
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
