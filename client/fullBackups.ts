// The typed client for whole-database work: full backups, the WAL archiver, point-in-time
// restores, verification and retention. Like client.ts it talks to Temporal only.
import { WorkflowNotFoundError, type Workflow, type WorkflowHandle, type WorkflowStartOptions } from '@temporalio/client';
import type { QueryDefinition } from '@temporalio/common';
import type { PitrRestoreResult } from '../lib/pitr/restore';
import {
  databaseWorkflowIds,
  fullBackupStatusQuery,
  searchAttributes,
  walArchiverStatusQuery,
  changeLogStatusQuery,
  type ApplyRetentionResult,
  type ChangeLogStatus,
  type FullBackupResult,
  type PitrRestoreInput,
  type VerifyBackupResult,
  type WalArchiverStatus,
} from '../workflows/messages';
import type { applyRetention, changeLog, fullBackup, pitrRestore, verifyBackup, walArchiver } from '../workflows';
import { resultOf, pollStatus, type TenantsafeClient } from './client';

/** Starts a workflow of ours on the configured task queue, its input on the client's database. */
function start<W extends Workflow>(client: TenantsafeClient, type: string, workflowId: string, args: Parameters<W>, conflict: 'USE_EXISTING' | 'FAIL' = 'USE_EXISTING'): Promise<WorkflowHandle<W>> {
  // the SDK's conditional args type cannot be checked against a generic W; the callers' args are typed
  const [input, ...rest] = args as unknown[];
  const options = {
    taskQueue: client.settings.taskQueue,
    workflowId,
    args: [client.onDatabase((input ?? {}) as object), ...rest],
    workflowIdConflictPolicy: conflict,
    typedSearchAttributes: client.databaseAttributes(),
  } as unknown as WorkflowStartOptions<W>;
  return client.temporal.workflow.start<W>(type, options);
}

/** What `full-backup` prints: the contract's fields, null until the backup is done. */
export type FullBackupOutcome = { [K in keyof FullBackupResult]: K extends 'backupId' ? string : FullBackupResult[K] | null } & { status: 'running' | 'completed'; workflowId: string };

/** Starts a full backup, or joins the running one; returns once its checks passed, or its result with `wait`. */
export async function startFullBackup(client: TenantsafeClient, opts: { wait?: boolean } = {}): Promise<FullBackupOutcome> {
  await client.assertWorkerPolling();
  const handle = await client.temporal.workflow.start<typeof fullBackup>('fullBackup', {
    taskQueue: client.settings.taskQueue,
    workflowId: client.workflowId(databaseWorkflowIds.fullBackup()),
    args: [client.onDatabase({})],
    workflowIdConflictPolicy: 'USE_EXISTING',
    typedSearchAttributes: [{ key: searchAttributes.backupKind, value: 'full' }, ...client.databaseAttributes()],
  });
  const done = (r: FullBackupResult): FullBackupOutcome => ({ ...r, status: 'completed', workflowId: handle.workflowId });
  if (opts.wait) return done(await resultOf(handle));
  const status = await pollStatus(handle, fullBackupStatusQuery, (s) => s.state !== 'checking');
  if (status.state === 'failed' || status.state === 'cancelled' || status.state === 'done') return done(await resultOf(handle));
  return { backupId: status.backupId, kind: null, bytes: null, startLsn: null, stopLsn: null, finishedAt: null, status: 'running', workflowId: handle.workflowId };
}

/** Restores to a point in time and waits for the result (restores are not fire-and-forget). */
export async function restorePointInTime(client: TenantsafeClient, input: PitrRestoreInput): Promise<PitrRestoreResult> {
  await client.assertWorkerPolling();
  const handle = await start<typeof pitrRestore>(client, 'pitrRestore', client.workflowId(databaseWorkflowIds.pitrRestore(input.target)), [input], 'FAIL');
  return resultOf(handle);
}

export async function verifyBackupNow(client: TenantsafeClient, backupId: string): Promise<VerifyBackupResult> {
  await client.assertWorkerPolling();
  const handle = await start<typeof verifyBackup>(client, 'verifyBackup', client.workflowId(databaseWorkflowIds.verifyBackup(backupId)), [{ backupId }]);
  return resultOf(handle);
}

/** `requestedBy`: who asks, for the audit log (a run that deletes records it). */
export async function applyRetentionNow(client: TenantsafeClient, dryRun: boolean, requestedBy?: string): Promise<ApplyRetentionResult> {
  await client.assertWorkerPolling();
  const handle = await start<typeof applyRetention>(client, 'applyRetention', client.workflowId(databaseWorkflowIds.applyRetention()), [{ dryRun, ...(requestedBy ? { requestedBy } : {}) }]);
  return resultOf(handle);
}

/** Starts the WAL archiver unless it runs; returns its status. */
export async function startWalArchiver(client: TenantsafeClient, scope: string, input: { sliceMs?: number } = {}): Promise<WalArchiverStatus> {
  await client.assertWorkerPolling();
  const handle = await start<typeof walArchiver>(client, 'walArchiver', databaseWorkflowIds.walArchiver(scope), [input]);
  return handle.query(walArchiverStatusQuery);
}

export async function startChangeLog(client: TenantsafeClient, scope: string, input: { sliceMs?: number } = {}): Promise<ChangeLogStatus> {
  await client.assertWorkerPolling();
  const handle = await start<typeof changeLog>(client, 'changeLog', databaseWorkflowIds.changeLog(scope), [input]);
  return handle.query(changeLogStatusQuery);
}

export const stopWalArchiver = (client: TenantsafeClient, scope: string) => stopRunning(client, databaseWorkflowIds.walArchiver(scope));
export const walArchiverStatus = (client: TenantsafeClient, scope: string) => statusIfRunning(client, databaseWorkflowIds.walArchiver(scope), walArchiverStatusQuery);
export const stopChangeLog = (client: TenantsafeClient, scope: string) => stopRunning(client, databaseWorkflowIds.changeLog(scope));
export const changeLogStatus = (client: TenantsafeClient, scope: string) => statusIfRunning(client, databaseWorkflowIds.changeLog(scope), changeLogStatusQuery);

/** Whether a full backup runs now (it needs the WAL archiver's slot: the archive must reach its end). */
export async function fullBackupRunning(client: TenantsafeClient): Promise<boolean> {
  try {
    return (await client.temporal.workflow.getHandle(client.workflowId(databaseWorkflowIds.fullBackup())).describe()).status.name === 'RUNNING';
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) return false;
    throw err;
  }
}

/** Cancels a long-running workflow (the archiver, the change log: each stores what it has, then stops); false when it was not running. */
async function stopRunning(client: TenantsafeClient, workflowId: string): Promise<boolean> {
  const handle = client.temporal.workflow.getHandle(workflowId);
  try {
    if ((await handle.describe()).status.name !== 'RUNNING') return false;
    await handle.cancel();
    await handle.result().catch(() => undefined);
    return true;
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) return false;
    throw err;
  }
}

/** A long-running workflow's status, or null when it is not running. */
async function statusIfRunning<S>(client: TenantsafeClient, workflowId: string, query: QueryDefinition<S>): Promise<S | null> {
  const handle = client.temporal.workflow.getHandle(workflowId);
  try {
    if ((await handle.describe()).status.name !== 'RUNNING') return null;
    return await handle.query(query);
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) return null;
    throw err;
  }
}
