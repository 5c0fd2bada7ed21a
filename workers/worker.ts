// The tenantsafe worker: every workflow and activity on the configured task queue.
import { DefaultLogger, NativeConnection, Runtime, Worker, type LogLevel, type WorkerOptions } from '@temporalio/worker';
import { createActivities } from '../activities';
import type { Config } from '../lib/config';
import { Engine } from '../lib/engine';
import { workflowBundlePath } from './bundle';

export interface StartedWorker {
  worker: Worker;
  engine: Engine;
  /** resolves when the worker has stopped (after shutdown() or a fatal error) */
  done: Promise<void>;
  shutdown(): Promise<void>;
}

export const workflowsPath = require.resolve('../workflows');

/**
 * The SDK logs every bundling step at INFO; operators want warnings and errors. The level comes
 * from TENANTSAFE_LOG_LEVEL (TRACE, DEBUG, INFO, WARN, ERROR). A runtime installed earlier in the
 * process (tests install their own) is kept.
 */
export function installRuntime(): void {
  try {
    Runtime.install({ logger: new DefaultLogger((process.env.TENANTSAFE_LOG_LEVEL as LogLevel | undefined) ?? 'WARN') });
  } catch {
    // already installed
  }
}

export async function startWorker(
  config: Config,
  opts: { bundle?: WorkerOptions['workflowBundle']; identity?: string } = {},
): Promise<StartedWorker> {
  installRuntime();
  const engine = new Engine(config);
  const connection = await NativeConnection.connect({ address: config.temporal.address });
  const worker = await Worker.create({
    connection,
    namespace: config.temporal.namespace,
    taskQueue: config.temporal.taskQueue,
    workflowBundle: opts.bundle ?? { codePath: workflowBundlePath() },
    activities: createActivities(engine),
    ...(opts.identity ? { identity: opts.identity } : {}),
    // Lets in-flight activities finish their current step on a graceful stop.
    shutdownGraceTime: '10s',
  });
  const done = worker.run().finally(async () => {
    await engine.close();
    await connection.close();
  });
  return {
    worker,
    engine,
    done,
    async shutdown() {
      if (worker.getState() === 'RUNNING') worker.shutdown();
      await done;
    },
  };
}
