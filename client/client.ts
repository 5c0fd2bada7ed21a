// The typed client: what the CLI, the dashboard and other services use to drive tenantsafe.
// It talks to Temporal only; row data and secrets never pass through it.
import { Client, Connection, WorkflowExecutionAlreadyStartedError, WorkflowFailedError, type WorkflowHandle } from '@temporalio/client';
import { ApplicationFailure, TemporalFailure, type QueryDefinition } from '@temporalio/common';
import { temporal } from '@temporalio/proto';
import type { Config } from '../lib/config';
import { ErrorType, TenantsafeError } from '../lib/errors';
import {
  searchAttributes,
  tenantBackupStatusQuery,
  workflowIds,
  type TenantBackupResult,
  type TenantBackupsAllInput,
  type TenantBackupsAllResult,
} from '../workflows/messages';
import type { tenantBackup, tenantBackupsAll } from '../workflows';

export type TemporalSettings = Config['temporal'];

/** What `backup tenant` prints: the contract's fields, filled in once the backup is done. */
export interface TenantBackupOutcome {
  backupId: string;
  tenantId: string;
  status: 'running' | 'completed';
  rows: number | null;
  bytes: number | null;
  snapshotAt: string | null;
  workflowId: string;
}

export class TenantsafeClient {
  private constructor(
    readonly temporal: Client,
    private readonly connection: Connection,
    readonly settings: TemporalSettings,
  ) {}

  static async connect(settings: TemporalSettings): Promise<TenantsafeClient> {
    let connection: Connection;
    try {
      connection = await Connection.connect({ address: settings.address, connectTimeout: '5s' });
    } catch (err) {
      throw new TenantsafeError(
        ErrorType.TemporalUnreachable,
        `Cannot reach Temporal at ${settings.address}: ${(err as Error).message}.`,
        'Start it with `tenantsafe dev`, or set temporal.address in the config.',
      );
    }
    return new TenantsafeClient(new Client({ connection, namespace: settings.namespace }), connection, settings);
  }

  async close(): Promise<void> {
    await this.connection.close();
  }

  /** Fails with a clear message when no worker polls the task queue (the workflow would just wait). */
  async assertWorkerPolling(): Promise<void> {
    const res = await this.temporal.workflowService.describeTaskQueue({
      namespace: this.settings.namespace,
      taskQueue: { name: this.settings.taskQueue, kind: temporal.api.enums.v1.TaskQueueKind.TASK_QUEUE_KIND_NORMAL },
      taskQueueType: temporal.api.enums.v1.TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
    });
    if ((res.pollers ?? []).length === 0) {
      throw new TenantsafeError(
        ErrorType.NoWorker,
        `No worker is polling task queue "${this.settings.taskQueue}" in namespace "${this.settings.namespace}" at ${this.settings.address}.`,
        'Start one with `tenantsafe worker` (or `tenantsafe dev`) using the same config.',
      );
    }
  }

  /**
   * Starts a tenant backup, or joins the one already running for the tenant (same workflow id).
   * Returns once the backup has passed its checks, or with its result when `wait` is set.
   */
  async backupTenant(tenantId: string, opts: { wait?: boolean } = {}): Promise<TenantBackupOutcome> {
    await this.assertWorkerPolling();
    const handle = await this.temporal.workflow.start<typeof tenantBackup>('tenantBackup', {
      taskQueue: this.settings.taskQueue,
      workflowId: workflowIds.tenantBackup(tenantId),
      args: [{ tenantId }],
      workflowIdConflictPolicy: 'USE_EXISTING',
      typedSearchAttributes: [
        { key: searchAttributes.tenantId, value: tenantId },
        { key: searchAttributes.backupKind, value: 'tenant' },
      ],
    });
    if (opts.wait) return outcomeOf(await resultOf(handle), handle.workflowId);
    const status = await waitForStatus(handle, tenantBackupStatusQuery, (s) => s.state !== 'checking');
    if (status.state === 'failed' || status.state === 'done') {
      // failed checks surface as the workflow's error; a finished one has its result
      return outcomeOf(await resultOf(handle), handle.workflowId);
    }
    return { backupId: status.backupId, tenantId, status: 'running', rows: null, bytes: null, snapshotAt: null, workflowId: handle.workflowId };
  }

  async backupAllTenants(input: TenantBackupsAllInput, opts: { wait?: boolean } = {}): Promise<TenantBackupsAllResult | { workflowId: string; status: 'running' }> {
    await this.assertWorkerPolling();
    const handle = await this.temporal.workflow.start<typeof tenantBackupsAll>('tenantBackupsAll', {
      taskQueue: this.settings.taskQueue,
      workflowId: workflowIds.tenantBackupsAll(),
      args: [input],
      workflowIdConflictPolicy: 'USE_EXISTING',
    });
    return opts.wait ? resultOf(handle) : { workflowId: handle.workflowId, status: 'running' };
  }
}

function outcomeOf(r: TenantBackupResult, workflowId: string): TenantBackupOutcome {
  return { backupId: r.backupId, tenantId: r.tenantId, status: r.status, rows: r.rows, bytes: r.bytes, snapshotAt: r.snapshotAt, workflowId };
}

/** A workflow's result; its failure becomes a TenantsafeError-like error keeping the stable type. */
export async function resultOf<T>(handle: WorkflowHandle<(...args: any[]) => Promise<T>>): Promise<T> {
  try {
    return await handle.result();
  } catch (err) {
    throw unwrapFailure(err);
  }
}

export class WorkflowError extends Error {
  constructor(
    message: string,
    readonly type: string | undefined,
  ) {
    super(message);
  }
}

export function unwrapFailure(err: unknown): unknown {
  if (!(err instanceof WorkflowFailedError) && !(err instanceof TemporalFailure)) {
    if (err instanceof WorkflowExecutionAlreadyStartedError) {
      return new TenantsafeError(ErrorType.AlreadyRunning, `Workflow ${err.workflowId} is already running.`, 'Wait for it, or look at it in the Temporal UI.');
    }
    return err;
  }
  let e: unknown = err;
  while ((e instanceof WorkflowFailedError || e instanceof TemporalFailure) && e.cause) e = e.cause;
  if (e instanceof ApplicationFailure) return new WorkflowError(e.message, e.type ?? undefined);
  return new WorkflowError((e as Error).message, undefined);
}

/** Polls a status query until `done(status)` or the workflow closes. */
export async function waitForStatus<S>(handle: WorkflowHandle, query: QueryDefinition<S>, done: (s: S) => boolean, timeoutMs = 120_000): Promise<S> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const status = await handle.query(query);
    if (done(status)) return status;
    const { status: wf } = await handle.describe();
    if (wf.name !== 'RUNNING') return status;
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${handle.workflowId}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}
