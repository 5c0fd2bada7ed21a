// The tenantsafe worker: every workflow and activity on the configured task queue.
import { temporal } from '@temporalio/proto';
import { DefaultLogger, NativeConnection, Runtime, Worker, type ActivityInterceptorsFactory, type LogLevel, type WorkerOptions } from '@temporalio/worker';
import { createActivities } from '../activities';
import { databaseIds, type Config } from '../lib/config';
import { Engine } from '../lib/engine';
import { temporalConnectionOptions } from '../client/temporalConnection';
import { workflowBundlePath } from './bundle';
import { ErrorType, TenantsafeError } from '../lib/errors';
import { startWorkerMonitoring } from './metrics';

export interface StartedWorker {
  worker: Worker;
  engine: Engine;
  /** resolves when the worker has stopped (after shutdown() or a fatal error) */
  done: Promise<void>;
  /** its Prometheus endpoint (worker.metricsPort), when on */
  metricsUrl: string | null;
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
  opts: {
    bundle?: WorkerOptions['workflowBundle'];
    identity?: string;
    /** around every activity, after the metrics' (tests inject faults with them: test/audit.test.ts) */
    activityInterceptors?: ActivityInterceptorsFactory[];
  } = {},
): Promise<StartedWorker> {
  installRuntime();
  const engine = new Engine(config);
  const connection = await NativeConnection.connect(temporalConnectionOptions(config.temporal));
  let monitoring: Awaited<ReturnType<typeof startWorkerMonitoring>> = null;
  let worker: Worker;
  try {
    monitoring = await startWorkerMonitoring(config, engine, connection);
    worker = await Worker.create({
      connection,
      namespace: config.temporal.namespace,
      taskQueue: config.temporal.taskQueue,
      workflowBundle: opts.bundle ?? { codePath: workflowBundlePath() },
      activities: createActivities(engine),
      interceptors: { activity: [...(monitoring ? [monitoring.interceptor] : []), ...(opts.activityInterceptors ?? [])] },
      ...(opts.identity ? { identity: opts.identity } : {}),
      // Lets in-flight activities finish their current step on a graceful stop.
      shutdownGraceTime: '10s',
      // A cancellation reaches an activity only in the answer to a heartbeat the worker sends,
      // which it would hold back for up to 80% of the heartbeat timeout (12 s of bulkCopy's 15):
      // sent every 2 s (as the long steps heartbeat), a cancelled step lets go of its locks and
      // child processes within seconds.
      maxHeartbeatThrottleInterval: '2s',
    });
  } catch (err) {
    await monitoring?.close();
    await engine.close();
    await connection.close();
    throw err;
  }
  // notices queued by this worker's activities, or left by a worker that stopped, go out from here
  // (each database's from its own catalog)
  for (const e of new Set([engine, ...databaseIds(config).map((id) => engine.forDatabase(id))])) e.alerts.start();
  const done = worker.run().finally(async () => {
    await monitoring?.close();
    await engine.close();
    await connection.close();
  });
  await untilPolling(connection, worker, done);
  return {
    worker,
    engine,
    done,
    metricsUrl: monitoring?.url ?? null,
    async shutdown() {
      if (worker.getState() === 'RUNNING') worker.shutdown();
      await done;
    },
  };
}

/**
 * Resolves once the server lists this worker among its task queue's pollers, of workflow tasks and
 * of activity tasks: run() returns before the first polls arrive, and a client that checks for a
 * worker right away (the demo's first backup, `tenantsafe worker` saying it polls) found none.
 */
async function untilPolling(connection: NativeConnection, worker: Worker, done: Promise<void>, timeoutMs = 60_000): Promise<void> {
  const { namespace, taskQueue, identity } = worker.options;
  const { TASK_QUEUE_TYPE_WORKFLOW, TASK_QUEUE_TYPE_ACTIVITY } = temporal.api.enums.v1.TaskQueueType;
  let stopped = false;
  done.then(
    () => (stopped = true),
    () => (stopped = true),
  );
  const deadline = Date.now() + timeoutMs;
  for (const taskQueueType of [TASK_QUEUE_TYPE_WORKFLOW, TASK_QUEUE_TYPE_ACTIVITY]) {
    for (;;) {
      const q = await connection.workflowService.describeTaskQueue({ namespace, taskQueue: { name: taskQueue, kind: temporal.api.enums.v1.TaskQueueKind.TASK_QUEUE_KIND_NORMAL }, taskQueueType });
      if ((q.pollers ?? []).some((p) => p.identity === identity)) break;
      if (stopped) {
        await done; // its error, if it failed
        throw new TenantsafeError(ErrorType.NoWorker, `The worker stopped before it polled task queue ${taskQueue}.`, 'Read the worker log above for the reason.');
      }
      if (Date.now() > deadline) {
        worker.shutdown();
        await done.catch(() => undefined);
        throw new TenantsafeError(ErrorType.NoWorker, `The worker did not poll task queue ${taskQueue} within ${timeoutMs / 1000} s.`, 'Check that the Temporal server at temporal.address answers, and the namespace exists.');
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}
