// `tenantsafe doctor`'s Temporal half: the server reached with the config's connection settings,
// the namespace, the search attributes the workflows set, and workers polling the task queue.
import { temporal } from '@temporalio/proto';
import type { Config } from '../lib/config';
import { failedLine, type DoctorLine } from '../lib/doctor';
import { searchAttributes } from '../workflows/messages';
import { TenantsafeClient } from './client';

export async function temporalChecks(config: Config): Promise<DoctorLine[]> {
  const t = config.temporal;
  let client: TenantsafeClient;
  try {
    client = await TenantsafeClient.connect(t);
  } catch (err) {
    return [failedLine('temporal', err, 'Check temporal.address.')];
  }
  const service = client.temporal.workflowService;
  try {
    const lines: DoctorLine[] = [];
    try {
      await service.describeNamespace({ namespace: t.namespace });
      lines.push({ check: 'temporal', status: 'ok', detail: `${t.address}${t.tls || t.apiKey ? ' (TLS)' : ''}, namespace ${t.namespace}` });
    } catch (err) {
      return [{ check: 'temporal', status: 'critical', detail: `${t.address}: namespace ${t.namespace}: ${(err as Error).message}`, hint: 'Create the namespace (temporal operator namespace create), or fix temporal.namespace.' }];
    }
    const listed = await client.temporal.connection.operatorService.listSearchAttributes({ namespace: t.namespace }).catch(() => null);
    const missing = Object.values(searchAttributes).map((k) => k.name).filter((name) => listed && !(name in (listed.customAttributes ?? {})));
    lines.push(
      !listed
        ? { check: 'search attributes', status: 'warning', detail: 'could not be listed (Temporal Cloud lists them in its own API)', hint: 'Make sure TenantId, BackupKind and Database (Keyword) exist in the namespace.' }
        : missing.length
          ? { check: 'search attributes', status: 'critical', detail: `${missing.join(', ')} missing: the first workflow that sets one fails`, hint: 'Run `tenantsafe temporal setup` (on Temporal Cloud: add them as Keyword in the namespace settings).' }
          : { check: 'search attributes', status: 'ok', detail: 'TenantId, BackupKind, Database' },
    );
    const pollers = async (type: temporal.api.enums.v1.TaskQueueType) =>
      (await service.describeTaskQueue({ namespace: t.namespace, taskQueue: { name: t.taskQueue, kind: temporal.api.enums.v1.TaskQueueKind.TASK_QUEUE_KIND_NORMAL }, taskQueueType: type })).pollers ?? [];
    const [workflowPollers, activityPollers] = await Promise.all([pollers(temporal.api.enums.v1.TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW), pollers(temporal.api.enums.v1.TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY)]);
    lines.push(
      workflowPollers.length && activityPollers.length
        ? { check: 'workers', status: 'ok', detail: `${new Set([...workflowPollers, ...activityPollers].map((p) => p.identity)).size} polling task queue ${t.taskQueue}` }
        : { check: 'workers', status: 'critical', detail: `no worker polls task queue ${t.taskQueue}${workflowPollers.length ? ' for activities' : ''}: workflows would wait`, hint: 'Start one with `tenantsafe worker` and this config, on a host with the PostgreSQL tools.' },
    );
    return lines;
  } finally {
    await client.close();
  }
}
