// CLI commands for tenant restore: restore tenant (request and preview), approve, reject,
// status, and cleanup of scratch schemas that restores no longer running left behind.
import type { Command } from 'commander';
import { refusedApproval } from '../lib/audit';
import type { Engine } from '../lib/engine';
import type { RestoreWindows, SourceWindow } from '../lib/pointInTime';
import { removeStaleScratchSchemas, scratchSchemaName, type ErasuresPreview, type PointInTimePreview } from '../lib/restore';
import { checkRestoreRequest } from '../lib/restore/rules';
import type { TenantRestoreInput, TenantRestoreState } from '../workflows/messages';
import type { RestoreRequested, TenantsafeClient } from './client';
import type { CliCommand } from './cliCommand';
import { deciderArg, deciderHelp, digestArg, fromOption, fromOptionHelp, globals, list, listAcrossDatabases, nonEmpty, positiveInt, requester, requesterOption, restoreIdArg, withClientOf, withEngine } from './commandHelpers';
import { emit, table } from './output';
import { WorkflowError } from './workflowError';
import { ErrorType, TenantsafeError } from '../lib/errors';

/** The states `restore list --state` takes (TenantRestoreState). */
const restoreStates = ['previewing', 'awaiting-approval', 'applying', 'verifying', 'done', 'rejected', 'expired', 'failed', 'cancelled'] as const satisfies readonly TenantRestoreState[];

function restoreText(r: RestoreRequested): string {
  const rows = Object.entries(r.preview?.tables ?? {})
    .filter(([, t]) => t.insert + t.update + t.delete > 0)
    .map(([table, t]) => ({ table, ...t }));
  return [
    `Restore ${r.restoreId} of backup ${r.backupId ?? '?'}: ${r.state}`,
    ...(r.preview ? ['', table(rows, ['table', 'insert', 'update', 'delete'])] : []),
    ...(r.preview?.drift ?? []).map((d) => `drift: ${d}`),
    ...(r.preview?.warnings ?? []).map((w) => `warning: ${w}`),
    ...(r.preview?.blockers ?? []).map((b) => `BLOCKED: ${b}`),
    ...(r.preview?.pointInTime ? ['', pointInTimeText(r.preview.pointInTime)] : []),
    ...(r.preview?.erasures ? ['', erasuresText(r.preview.erasures)] : []),
    ...(r.state === 'awaiting-approval' ? ['', `Approve (someone else): tenantsafe restore approve ${r.restoreId} --by <name> --digest ${r.previewDigest}`] : []),
  ].join('\n');
}

/** The erasures the restore applies again: rows left out per table, and the ledger's entries (their keys: `erasure list`). */
function erasuresText(e: ErasuresPreview): string {
  const rows = Object.entries(e.rows).map(([t, n]) => `  ${n} row${n === 1 ? '' : 's'} in ${t}`);
  const subjects = e.entries.map((x) => `  erasure #${x.erasureId}: a row of ${x.table}, recorded by ${x.by} at ${x.erasedAt}`);
  return [`Erasures re-applied (${e.total} backed-up rows left out):`, ...rows, 'Subjects (keys: tenantsafe erasure list):', ...subjects].join('\n');
}

/** Where a point-in-time restore's rows come from, up to which commit, and why. */
function pointInTimeText(p: PointInTimePreview): string {
  const last = p.lastCommit ? `the last commit included ends at ${p.lastCommit.lsn}, committed ${p.lastCommit.time}` : 'no commit after the base backup';
  const from = p.source === 'changeLog' ? `the change log, replayed onto backup ${p.baseBackupId}` : 'a PITR clone of the database';
  return `Rebuilt as of ${p.target.at ?? `LSN ${p.target.lsn}`} from ${from}: ${last}.\nWhy: ${p.reason}.`;
}

function windowText(w: RestoreWindows): string {
  const line = (name: string, s: SourceWindow) =>
    `${name.padEnd(10)} ${s.earliest ? `${s.earliest} to ${s.latest}` : '(none)'}${s.gaps.map((g) => `\n           gap: ${g.from ?? '?'} to ${g.to} (${g.reason})`).join('')}`;
  return [`Tenant ${w.tenantId} can be restored to any moment in:`, line('changeLog', w.changeLog), line('pitrClone', w.pitrClone), line('backups', w.backups) + ' (whole backups only)'].join('\n');
}

/** A scratch schema belongs to a running restore when its workflow is still open. */
async function restoreIsRunning(engine: Engine, client: TenantsafeClient, schema: string): Promise<boolean> {
  const r = (await engine.catalog.listRestores()).find((x) => scratchSchemaName(x.restoreId) === schema);
  if (!r) return false;
  const d = await client.temporal.workflow.getHandle(r.workflowId, r.runId).describe().catch(() => undefined);
  return d?.status.name === 'RUNNING';
}

export function registerRestoreCommands(program: CliCommand): void {
  const restore = program.command('restore').description('restore a tenant: preview, approval, safety backup, apply, verify');
  // the id is checked before the catalog is asked (a malformed one is not found either)
  const refOf = async (cmd: Command, restoreId: string) =>
    withEngine(cmd, async (e) => {
      const r = await e.catalog.getRestore(restoreIdArg(restoreId));
      return { workflowId: r.workflowId, runId: r.runId };
    });
  restore
    .command('tenant <tenantId>')
    .description('stage a backup and preview what restoring it would change; waits for the preview')
    .option('--backup <backupId>', 'the backup to restore')
    .option('--at <time>', 'ISO-8601 with a zone: the tenant exactly as committed then (microseconds kept; a commit at that very time included)')
    .option('--lsn <lsn>', 'the tenant exactly as committed up to this WAL position')
    .option('--backup-before <time>', 'ISO-8601: the newest backup taken at or before this time')
    .option('--mode <mode>', 'replace (the tenant becomes exactly the backup) or missing-only (re-insert missing rows)', 'replace')
    .option('--tables <list>', 'only these tables, comma-separated (e.g. app.users,app.projects)', list)
    .option('--changes <list>', 'only these kinds of change: insert,update,delete', list)
    .option('--missing-refs <policy>', 'rows referencing global rows that are gone: refuse or skip', 'refuse')
    .addOption(requesterOption('who asks (cannot approve it)'))
    .option('--from <location>', fromOptionHelp)
    .exactlyOneOf('What to restore', '--backup', '--at', '--lsn', '--backup-before')
    .example(
      'tenantsafe restore tenant acme --backup 20261125-093000T-1a2b3c',
      'tenantsafe restore tenant acme --at 2026-11-25T09:30:00.123456Z --tables app.users',
      'tenantsafe restore tenant acme --backup-before 2026-11-25T00:00:00Z --mode missing-only',
    )
    .exits({ 1: 'the preview could not be made (storage, database or Temporal failed)', 2: 'bad input, blocked by the preview (RestoreBlocked), or outside every restore window; nothing was changed' })
    .action(async (tenantId: string, opts: { backup?: string; at?: string; lsn?: string; backupBefore?: string; mode: string; tables?: string[]; changes?: string[]; missingRefs: string; by?: string; from?: string }, cmd: Command) => {
      const from = fromOption(cmd, opts.from);
      const input: TenantRestoreInput = {
        tenantId,
        backupId: opts.backup,
        at: opts.at,
        lsn: opts.lsn,
        backupBefore: opts.backupBefore,
        mode: opts.mode as TenantRestoreInput['mode'],
        tables: opts.tables,
        changes: opts.changes as TenantRestoreInput['changes'],
        missingRefs: opts.missingRefs as TenantRestoreInput['missingRefs'],
        requestedBy: requester(opts.by),
        ...(from ? { from } : {}),
      };
      checkRestoreRequest(input); // bad input fails here, before Temporal is asked
      const out = await withClientOf(cmd, (c) => c.restores.request(input));
      emit(globals(cmd), out, () => restoreText(out));
      if (out.error) throw new WorkflowError(out.error, out.errorType);
    });
  restore
    .command('window')
    .description('what a tenant can be restored to: per source (change log, PITR clone, whole backups) the earliest and latest moment, and gaps')
    .requiredOption('--tenant <tenantId>', 'the tenant')
    .example('tenantsafe restore window --tenant acme')
    .action(async (opts: { tenant: string }, cmd: Command) => {
      nonEmpty(opts.tenant, '--tenant', 'Pass --tenant <tenantId>.');
      const out = await withEngine(cmd, (e) => (require('../lib/pointInTime') as typeof import('../lib/pointInTime')).restoreWindows(e, opts.tenant));
      emit(globals(cmd), out, () => windowText(out));
    });
  restore
    .command('approve <restoreId>')
    .description('approve the current preview (four-eyes: not the requester)')
    .requiredOption('--by <who>', deciderHelp('approves'))
    .requiredOption('--digest <digest>', 'the digest of the preview you reviewed')
    .option('--wait', 'wait until the restore is applied and verified')
    .example('tenantsafe restore approve 20261125-094500R-4d5e6f --by bob --digest <previewDigest> --wait')
    .exits({ 1: 'the apply or its verification failed (with --wait)', 2: 'bad input, or an approval that does not count (ApprovalInvalid: by the requester, another digest, expired)' })
    .action(async (restoreId: string, opts: { by: string; digest: string; wait?: boolean }, cmd: Command) => {
      restoreIdArg(restoreId);
      deciderArg(opts.by);
      digestArg(opts.digest);
      const approval = { by: opts.by, digest: opts.digest };
      const out = await withEngine(cmd, async (e) => {
        const r = await e.catalog.getRestore(restoreId);
        return withClientOf(cmd, (c) =>
          c.restores.approve({ workflowId: r.workflowId, runId: r.runId }, approval, {
            wait: opts.wait,
            // refused here, it never reaches the workflow: the audit log hears of it from here
            onRefused: (refusal, restore) => e.audit.appendBestEffort(refusedApproval({ restore }, approval, refusal.reason, 'cli')),
          }),
        );
      });
      emit(globals(cmd), out, () => `Restore ${restoreId}: ${out.state}${'safetyBackupId' in out && out.safetyBackupId ? ` (safety backup ${out.safetyBackupId})` : ''}`);
    });
  restore
    .command('reject <restoreId>')
    .description('reject the restore: nothing is changed')
    .requiredOption('--by <who>', deciderHelp('rejects'))
    .option('--reason <text>', 'why')
    .example('tenantsafe restore reject 20261125-094500R-4d5e6f --by bob --reason "wrong backup"')
    .action(async (restoreId: string, opts: { by: string; reason?: string }, cmd: Command) => {
      restoreIdArg(restoreId);
      deciderArg(opts.by);
      const ref = await refOf(cmd, restoreId);
      const out = await withClientOf(cmd, (c) => c.restores.reject(ref, { by: opts.by, reason: opts.reason }));
      emit(globals(cmd), out, () => `Restore ${restoreId}: ${out.state}`);
    });
  restore
    .command('list')
    .description('restores, newest first: id, tenant, state, backup, who asked and approved, the safety backup; with several databases, every one\'s (a database column) unless --database names one')
    .option('--tenant <tenantId>', 'of one tenant')
    .option('--state <state>', 'in one state: previewing, awaiting-approval, applying, verifying, done, rejected, expired, failed')
    .option('--limit <n>', 'at most n (default 50)', positiveInt('--limit'))
    .example('tenantsafe restore list --tenant acme', 'tenantsafe restore list --state awaiting-approval')
    .action(async (opts: { tenant?: string; state?: string; limit?: number }, cmd: Command) => {
      if (opts.state !== undefined && !(restoreStates as readonly string[]).includes(opts.state)) {
        throw new TenantsafeError(ErrorType.BadInput, `--state must be one of ${restoreStates.join(', ')} (got "${opts.state}").`, 'Pass --state awaiting-approval, say.');
      }
      const limit = opts.limit ?? 50;
      const { rows: out, columns } = await listAcrossDatabases(
        cmd,
        async (e) =>
          (await e.catalog.listRestores({ tenantId: opts.tenant, state: opts.state, limit })).map((r) => ({ restoreId: r.restoreId, tenantId: r.tenantId, state: r.state, backupId: r.backupId ?? null, requestedBy: r.requestedBy, approvedBy: r.approvedBy ?? [], safetyBackupId: r.safetyBackupId ?? null, createdAt: r.createdAt, error: r.error ?? null })),
        { by: (r) => r.createdAt ?? '', limit },
        ['restoreId', 'tenantId', 'state', 'backupId', 'requestedBy', 'approvedBy', 'safetyBackupId', 'createdAt'],
      );
      emit(globals(cmd), out, () => (out.length ? table(out.map((r) => ({ ...r, approvedBy: r.approvedBy.join(',') })) as unknown as Record<string, unknown>[], columns) : 'No restores.'));
    });
  restore
    .command('status <restoreId>')
    .description('state, preview, approvals, outcome')
    .example('tenantsafe restore status 20261125-094500R-4d5e6f')
    .action(async (restoreId: string, _opts: unknown, cmd: Command) => {
      const ref = await refOf(cmd, restoreId);
      const out = await withClientOf(cmd, (c) => c.restores.status(ref));
      emit(globals(cmd), out, () =>
        [
          `Restore ${out.restoreId} of tenant ${out.tenantId}: ${out.state}${out.error ? ` (${out.error})` : ''}`,
          `  requested by ${out.requestedBy}; approvals ${out.approvals.map((a) => a.by).join(', ') || 'none'} of ${out.approvalsRequired ?? '?'}`,
          ...out.refused.map((r) => `  refused: ${r.by}: ${r.reason}`),
          ...(out.safetyBackupId ? [`  safety backup ${out.safetyBackupId}`] : []),
          ...(out.verification ? [`  verification: ${out.verification.ok ? 'ok' : 'FAILED'}`] : []),
        ].join('\n'),
      );
    });
  restore
    .command('cleanup')
    .description('drop scratch schemas left by restores that are no longer running')
    .option('--dry-run', 'only list them')
    .example('tenantsafe restore cleanup --dry-run')
    .action(async (opts: { dryRun?: boolean }, cmd: Command) => {
      const removed = await withClientOf(cmd, (client) =>
        withEngine(cmd, (e) => removeStaleScratchSchemas(e, (schema) => restoreIsRunning(e, client, schema), opts.dryRun)),
      );
      emit(globals(cmd), { removed, dryRun: !!opts.dryRun }, () => (removed.length ? removed.map((r) => `${opts.dryRun ? 'would drop' : 'dropped'} ${r}`).join('\n') : 'Nothing to clean up.'));
    });
}
