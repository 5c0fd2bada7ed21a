// The typed client: what the CLI, the dashboard and other services use to drive tenantsafe.
// It talks to Temporal only; row data and secrets never pass through it.
import { Client, Connection, WorkflowExecutionAlreadyStartedError, WorkflowFailedError, type WorkflowHandle } from '@temporalio/client';
import { ApplicationFailure, TemporalFailure, type QueryDefinition } from '@temporalio/common';
import { temporal } from '@temporalio/proto';
import type { Config } from '../lib/config';
import { ErrorType, TenantsafeError } from '../lib/errors';
import { approvalInvalid, approvalRefusal, checkRestoreRequest, rejectionRefusal, type ApprovalRefusal } from '../lib/restore/rules';
import type { ErasuresPreview, PointInTimePreview } from '../lib/restore/types';
import {
  approveSignal,
  databaseScoped,
  rejectSignal,
  searchAttributes,
  tenantBackupStatusQuery,
  tenantRestoreStatusQuery,
  workflowIds,
  type ApproveSignal,
  type OnDatabase,
  type RejectSignal,
  type TenantBackupResult,
  type TenantBackupsAllInput,
  type TenantBackupsAllResult,
  type TenantRestoreInput,
  type TenantRestoreResult,
  type TenantRestoreStatus,
} from '../workflows/messages';
import type { tenantBackup, tenantBackupsAll, tenantRestore } from '../workflows';
import { temporalConnectionOptions } from './temporalConnection';
import { WorkflowError } from './workflowError';

/** What this client's calls throw when a workflow fails. */
export { WorkflowError };

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
    /** with several databases in the config: the id of the one this client's workflows serve (docs/fleet.md) */
    readonly database?: string,
  ) {}

  /** `database`: the id of the database the workflows it starts serve, when the config names several (Config.databaseId). */
  static async connect(settings: TemporalSettings, database?: string): Promise<TenantsafeClient> {
    let connection: Connection;
    try {
      connection = await Connection.connect({ ...temporalConnectionOptions(settings), connectTimeout: '5s' });
    } catch (err) {
      if (err instanceof TenantsafeError) throw err;
      throw new TenantsafeError(
        ErrorType.TemporalUnreachable,
        `Cannot reach Temporal at ${settings.address}${settings.tls || settings.apiKey ? ' over TLS' : ''}: ${(err as Error).message}.`,
        settings.tls || settings.apiKey
          ? 'Check temporal.address, temporal.tls (the CA, the client certificate and key, serverName) and temporal.apiKey against the server.'
          : 'Start it with `tenantsafe dev`, or set temporal.address in the config (and temporal.tls for a secured server).',
      );
    }
    return new TenantsafeClient(new Client({ connection, namespace: settings.namespace }), connection, settings, database);
  }

  async close(): Promise<void> {
    await this.connection.close();
  }

  readonly restores = new TenantsafeRestores(this);

  /** A workflow id of this client's database (`databaseScoped`). */
  workflowId(id: string): string {
    return databaseScoped(id, this.database);
  }

  /** A workflow input with this client's database, when it has one. */
  onDatabase<T extends object>(input: T): T & OnDatabase {
    return this.database === undefined ? input : { ...input, database: this.database };
  }

  /** The search attributes a run of this client's database starts with (its workflow sets them too). */
  databaseAttributes(): { key: typeof searchAttributes.database; value: string }[] {
    return this.database === undefined ? [] : [{ key: searchAttributes.database, value: this.database }];
  }

  /**
   * Registers in the namespace the search attributes tenantsafe's workflows set (a dev server gets
   * them from temporal-dev.yaml; a real cluster does not, and the first workflow setting one
   * would fail). Idempotent; an attribute of that name with another type is refused.
   */
  async registerSearchAttributes(): Promise<{ registered: string[]; present: string[] }> {
    const keyword = temporal.api.enums.v1.IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD;
    const namespace = this.settings.namespace;
    const listed = await this.connection.operatorService.listSearchAttributes({ namespace });
    const existing = listed.customAttributes ?? {};
    const wanted = Object.values(searchAttributes).map((k) => k.name);
    const clashing = wanted.filter((name) => name in existing && existing[name] !== keyword);
    if (clashing.length > 0) {
      throw new TenantsafeError(
        ErrorType.BadConfig,
        `Namespace ${namespace} has search attribute(s) ${clashing.join(', ')} of another type than Keyword.`,
        'tenantsafe needs them as Keyword: remove them from the namespace (temporal operator search-attribute remove) or use another namespace.',
      );
    }
    const missing = wanted.filter((name) => !(name in existing));
    if (missing.length > 0) {
      await this.connection.operatorService.addSearchAttributes({ namespace, searchAttributes: Object.fromEntries(missing.map((name) => [name, keyword])) });
    }
    return { registered: missing, present: wanted.filter((name) => name in existing) };
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
      workflowId: this.workflowId(workflowIds.tenantBackup(tenantId)),
      args: [this.onDatabase({ tenantId })],
      workflowIdConflictPolicy: 'USE_EXISTING',
      typedSearchAttributes: [
        { key: searchAttributes.tenantId, value: tenantId },
        { key: searchAttributes.backupKind, value: 'tenant' },
        ...this.databaseAttributes(),
      ],
    });
    if (opts.wait) return outcomeOf(await resultOf(handle), handle.workflowId);
    const status = await pollStatus(handle, tenantBackupStatusQuery, (s) => s.state !== 'checking');
    if (status.state === 'failed' || status.state === 'cancelled' || status.state === 'done') {
      // failed checks surface as the workflow's error; a finished one has its result
      return outcomeOf(await resultOf(handle), handle.workflowId);
    }
    return { backupId: status.backupId, tenantId, status: 'running', rows: null, bytes: null, snapshotAt: null, workflowId: handle.workflowId };
  }

  async backupAllTenants(input: TenantBackupsAllInput, opts: { wait?: boolean } = {}): Promise<TenantBackupsAllResult | { workflowId: string; status: 'running' }> {
    await this.assertWorkerPolling();
    const handle = await this.temporal.workflow.start<typeof tenantBackupsAll>('tenantBackupsAll', {
      taskQueue: this.settings.taskQueue,
      workflowId: this.workflowId(workflowIds.tenantBackupsAll()),
      args: [this.onDatabase(input)],
      workflowIdConflictPolicy: 'USE_EXISTING',
      typedSearchAttributes: this.databaseAttributes(),
    });
    return opts.wait ? resultOf(handle) : { workflowId: handle.workflowId, status: 'running' };
  }
}

/** Where a restore runs: the workflow execution behind a restore id. */
export interface RestoreRef {
  workflowId: string;
  runId?: string;
}

/** What `restore tenant` prints: the contract's fields, plus the state and what blocks it. */
export interface RestoreRequested {
  restoreId: string;
  previewDigest: string | null;
  state: TenantRestoreStatus['state'];
  backupId: string | null;
  preview: {
    tables: Record<string, { insert: number; update: number; delete: number }>;
    warnings: string[];
    blockers: string[];
    drift: string[];
    /** a restore to a point in time: the source, the last commit included, and why */
    pointInTime?: PointInTimePreview;
    /** erasures of the ledger applied again: the entries (ids, tables, who, when) and the rows left out per table */
    erasures?: ErasuresPreview;
  } | null;
  error?: string;
  errorType?: string;
  workflowId: string;
}

export class TenantsafeRestores {
  constructor(private readonly client: TenantsafeClient) {}

  private handle(ref: RestoreRef) {
    return this.client.temporal.workflow.getHandle<typeof tenantRestore>(ref.workflowId, ref.runId);
  }

  /** Starts a restore and returns its preview (or why there is none). One restore per tenant at a time. */
  async request(input: TenantRestoreInput): Promise<RestoreRequested> {
    // what needs no database fails here, before a workflow starts (the workflow checks it again)
    checkRestoreRequest(input);
    await this.client.assertWorkerPolling();
    const workflowId = this.client.workflowId(workflowIds.tenantRestore(input.tenantId));
    let handle;
    try {
      handle = await this.client.temporal.workflow.start<typeof tenantRestore>('tenantRestore', {
        taskQueue: this.client.settings.taskQueue,
        workflowId,
        args: [this.client.onDatabase(input)],
        workflowIdConflictPolicy: 'FAIL',
        typedSearchAttributes: [
          { key: searchAttributes.tenantId, value: input.tenantId },
          { key: searchAttributes.backupKind, value: 'restore' },
          ...this.client.databaseAttributes(),
        ],
      });
    } catch (err) {
      if (!(err instanceof WorkflowExecutionAlreadyStartedError)) throw err;
      const running = await this.client.temporal.workflow.getHandle(workflowId).query(tenantRestoreStatusQuery).catch(() => undefined);
      throw new TenantsafeError(
        ErrorType.AlreadyRunning,
        `A restore of tenant "${input.tenantId}" is already running${running ? ` (restore ${running.restoreId}, ${running.state})` : ''}; one restore per tenant at a time.`,
        `Wait for it, or reject it: tenantsafe restore reject ${running?.restoreId ?? '<restoreId>'} --by <you>.`,
      );
    }
    const status = await pollStatus(handle, tenantRestoreStatusQuery, (s) => s.state !== 'previewing');
    const requested = requestedOf(status, workflowId);
    if (status.state !== 'failed' && status.state !== 'cancelled') return requested;
    // the workflow's failure carries the stable type (bad input, drift, corrupt object, blocked)
    const failure = await resultOf(handle).then(
      () => undefined,
      (err: unknown) => err,
    );
    return { ...requested, error: failure instanceof Error ? failure.message : status.error, errorType: failure instanceof WorkflowError ? failure.type : undefined };
  }

  async status(ref: RestoreRef): Promise<TenantRestoreStatus> {
    return this.handle(ref).query(tenantRestoreStatusQuery);
  }

  /**
   * Approves by signal, after checking the rules the workflow applies to it (lib/restore/rules.ts),
   * so a person gets the reason at once. `onRefused` hears of an approval refused here, which the
   * workflow never sees (the CLI and the dashboard record it in the audit log); one the workflow
   * refuses it records itself.
   */
  async approve(
    ref: RestoreRef,
    approval: ApproveSignal,
    opts: { wait?: boolean; onRefused?: (refusal: ApprovalRefusal, restore: TenantRestoreStatus) => Promise<void> } = {},
  ): Promise<TenantRestoreStatus | TenantRestoreResult> {
    const handle = this.handle(ref);
    const before = await handle.query(tenantRestoreStatusQuery);
    const refusal = approvalRefusal(before, approval);
    if (refusal) {
      await opts.onRefused?.(refusal, before);
      throw approvalInvalid(refusal);
    }
    await handle.signal(approveSignal, approval);
    const after = await pollStatus(handle, tenantRestoreStatusQuery, (s) => s.approvals.some((a) => a.by === approval.by) || s.refused.length > before.refused.length || s.state !== 'awaiting-approval');
    // the restore moved on between the check and the signal (it expired, say)
    const refused = after.refused.slice(before.refused.length).find((r) => r.by === approval.by);
    if (refused) throw approvalInvalid({ reason: `The approval was refused: ${refused.reason}`, hint: 'Check the restore status and approve the current preview.' });
    return opts.wait ? resultOf(handle) : after;
  }

  /** Rejects by signal, once the restore is known to still wait for a decision; a rejection that came too late is an error, not a success. */
  async reject(ref: RestoreRef, rejection: RejectSignal): Promise<TenantRestoreStatus> {
    const refusal = rejectionRefusal(rejection);
    if (refusal) throw approvalInvalid(refusal);
    const handle = this.handle(ref);
    const before = await handle.query(tenantRestoreStatusQuery);
    if (before.state !== 'previewing' && before.state !== 'awaiting-approval') {
      throw approvalInvalid({ reason: `Restore ${before.restoreId} is ${before.state}: too late to reject it`, hint: `See \`tenantsafe restore status ${before.restoreId}\`; a restore that was applied is undone by restoring its safety backup.` });
    }
    await handle.signal(rejectSignal, rejection);
    const after = await pollStatus(handle, tenantRestoreStatusQuery, (s) => s.state === 'rejected' || s.refused.length > before.refused.length);
    const refused = after.refused.slice(before.refused.length).find((r) => r.by === rejection.by);
    if (refused && after.state !== 'rejected') throw approvalInvalid({ reason: `The rejection was refused: ${refused.reason}`, hint: 'Check the restore status.' });
    return after;
  }

  async result(ref: RestoreRef): Promise<TenantRestoreResult> {
    return resultOf(this.handle(ref));
  }
}

function requestedOf(s: TenantRestoreStatus, workflowId: string): RestoreRequested {
  return {
    restoreId: s.restoreId,
    previewDigest: s.preview?.digest ?? null,
    state: s.state,
    backupId: s.backupId ?? null,
    preview: s.preview
      ? {
          tables: Object.fromEntries(Object.entries(s.preview.tables).map(([k, t]) => [k, { insert: t.insert, update: t.update, delete: t.delete }])),
          warnings: s.preview.warnings,
          blockers: s.preview.blockers.map((b) => b.message),
          drift: s.preview.drift.map((d) => `${d.table}${d.column ? `.${d.column}` : ''}: ${d.kind}, ${d.policy}`),
          ...(s.preview.pointInTime ? { pointInTime: s.preview.pointInTime } : {}),
          ...(s.preview.erasures ? { erasures: s.preview.erasures } : {}),
        }
      : null,
    ...(s.error ? { error: s.error } : {}),
    workflowId,
  };
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

/**
 * Asks a workflow's status query until `done(status)` or the workflow closes: again each time the
 * workflow writes history events, long-polling for them (the server holds the call until one is
 * written), not on a timer: asking on a short timer kept the Temporal server and this client
 * busy on the same cores as the preview it waits for.
 */
export async function pollStatus<S>(handle: WorkflowHandle, query: QueryDefinition<S>, done: (s: S) => boolean, timeoutMs = 600_000): Promise<S> {
  const started = Date.now();
  const { workflowService, options } = handle.client;
  let nextPageToken: Uint8Array | undefined;
  for (;;) {
    const status = await handle.query(query);
    if (done(status)) return status;
    if (Date.now() - started > timeoutMs) {
      throw new TenantsafeError(ErrorType.NoWorker, `Workflow ${handle.workflowId} did not reach the expected state within ${timeoutMs / 1000} s.`, `Check that a worker polls its task queue (\`tenantsafe worker\`) and look at the workflow in the Temporal UI.`);
    }
    const page = await workflowService.getWorkflowExecutionHistory({
      namespace: options.namespace,
      execution: { workflowId: handle.workflowId },
      waitNewEvent: true,
      skipArchival: true,
      nextPageToken,
    });
    // no token to wait on: the history is complete, the workflow closed
    if (!page.nextPageToken?.length) return handle.query(query);
    nextPageToken = page.nextPageToken;
  }
}
