// The tenantsafe worker: every workflow and activity on the configured task queue.
import { NativeConnection, Worker, type WorkerOptions } from '@temporalio/worker';
import { createActivities } from '../activities';
import type { Config } from '../lib/config';
import { Engine } from '../lib/engine';

export interface StartedWorker {
  worker: Worker;
  engine: Engine;
  /** resolves when the worker has stopped (after shutdown() or a fatal error) */
  done: Promise<void>;
  shutdown(): Promise<void>;
}

export const workflowsPath = require.resolve('../workflows');

export async function startWorker(
  config: Config,
  opts: { bundle?: WorkerOptions['workflowBundle']; identity?: string } = {},
): Promise<StartedWorker> {
  const engine = new Engine(config);
  const connection = await NativeConnection.connect({ address: config.temporal.address });
  const worker = await Worker.create({
    connection,
    namespace: config.temporal.namespace,
    taskQueue: config.temporal.taskQueue,
    ...(opts.bundle ? { workflowBundle: opts.bundle } : { workflowsPath }),
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
