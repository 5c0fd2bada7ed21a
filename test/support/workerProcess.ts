// A worker in its own process, so a test can SIGKILL it like a crashed machine.
import type { ChildProcess } from 'node:child_process';
import { temporal } from '@temporalio/proto';
import { spawnWorkerProcess } from '../../workers/process';
import type { TestEnv } from './env';

/** Starts `tenantsafe worker` on the env's config; resolves once the server has seen it poll for activities. */
export async function spawnWorker(env: TestEnv): Promise<ChildProcess> {
  const child = await spawnWorkerProcess(env.configFile);
  const deadline = Date.now() + 60_000;
  const { TASK_QUEUE_KIND_NORMAL: kind } = temporal.api.enums.v1.TaskQueueKind;
  const { TASK_QUEUE_TYPE_ACTIVITY: type } = temporal.api.enums.v1.TaskQueueType;
  // wait until the server has seen it poll for activities
  for (;;) {
    const q = await env.temporal.workflowService.describeTaskQueue({ namespace: env.config.temporal.namespace, taskQueue: { name: env.config.temporal.taskQueue, kind }, taskQueueType: type });
    if ((q.pollers ?? []).some((p) => p.identity?.includes(String(child.pid)))) return child;
    if (Date.now() > deadline) throw new Error('worker never polled');
    await new Promise((r) => setTimeout(r, 100));
  }
}

