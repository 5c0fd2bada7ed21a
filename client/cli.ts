// The `tenantsafe` CLI (DESIGN: public contract). Every command takes --json; exit 0 ok,
// 1 failed, 2 bad input.
import * as os from 'node:os';
import { Command } from 'commander';
import { removeIncompleteBackups } from '../lib/backup/tenantBackup';
import { defaultDevLayout, loadConfig, redactUrl, type Config } from '../lib/config';
import { parseDuration } from '../lib/duration';
import { Engine } from '../lib/engine';
import { ErrorType, TenantsafeError } from '../lib/errors';
import { withClient } from '../lib/pg';
import { removeStaleScratchSchemas, scratchSchemaName } from '../lib/restore';
import { describeOwnership, discoverTenancy, estimateTenantRows, listTenants } from '../lib/tenancy';
import type { TenantRestoreInput } from '../workflows/messages';
import { runWorkerUntilSignal } from '../workers/main';
import { TenantsafeClient, WorkflowError, type RestoreRequested } from './client';
import { startDashboardServer } from './server';
import { registerDatabaseCommands } from './databaseCommands';
import { runDemo } from './demo';
import { startDevStack } from './dev';
import { emit, reportError, table, type OutputOptions } from './output';
import { listSchedules, removeTenantBackupSchedule, scheduleTenantBackups } from './schedules';

interface GlobalOptions extends OutputOptions {
  config?: string;
}

function globals(cmd: Command): GlobalOptions {
  return cmd.optsWithGlobals<GlobalOptions>();
}

function config(cmd: Command): Config {
  return loadConfig({ path: globals(cmd).config });
}

async function withEngine<T>(cmd: Command, fn: (engine: Engine) => Promise<T>): Promise<T> {
  const engine = new Engine(config(cmd));
  try {
    return await fn(engine);
  } finally {
    await engine.close();
  }
}

async function withClientOf<T>(cmd: Command, fn: (client: TenantsafeClient, cfg: Config) => Promise<T>): Promise<T> {
  const cfg = config(cmd);
  const client = await TenantsafeClient.connect(cfg.temporal);
  try {
    return await fn(client, cfg);
  } finally {
    await client.close();
  }
}

function positiveInt(name: string) {
  return (v: string) => {
    if (!/^\d+$/.test(v) || Number(v) < 1) throw new TenantsafeError(ErrorType.BadInput, `${name} must be a positive integer (got "${v}").`, `Pass ${name} <n>.`);
    return Number(v);
  };
}

const list = (v: string) => v.split(',').map((x) => x.trim()).filter(Boolean);

const defaultUser = () => process.env.TENANTSAFE_USER ?? os.userInfo().username;

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
    ...(r.state === 'awaiting-approval' ? ['', `Approve (someone else): tenantsafe restore approve ${r.restoreId} --by <name> --digest ${r.previewDigest}`] : []),
  ].join('\n');
}

/** A scratch schema belongs to a running restore when its workflow is still open. */
async function restoreIsRunning(engine: Engine, client: TenantsafeClient, schema: string): Promise<boolean> {
  const r = (await engine.catalog.listRestores()).find((x) => scratchSchemaName(x.restoreId) === schema);
  if (!r) return false;
  const d = await client.temporal.workflow.getHandle(r.workflowId, r.runId).describe().catch(() => undefined);
  return d?.status.name === 'RUNNING';
}

const sizeText = (n: number | null) => (n === null ? '-' : n >= 1 << 20 ? `${(n / (1 << 20)).toFixed(1)} MiB` : n >= 1024 ? `${(n / 1024).toFixed(1)} KiB` : `${n} B`);

export function buildProgram(): Command {
  const program = new Command('tenantsafe')
    .description('Backup, point-in-time recovery and tenant-level restore for multi-tenant PostgreSQL')
    .option('--config <path>', 'tenantsafe.yaml (default: $TENANTSAFE_CONFIG, ./tenantsafe.yaml, else embedded defaults)')
    .option('--json', 'machine-readable output')
    .showHelpAfterError()
    .exitOverride();

  const backup = program.command('backup').description('take backups');
  backup
    .command('tenant <tenantId>')
    .description('back up one tenant from one consistent snapshot')
    .option('--wait', 'wait for the backup to finish')
    .action(async (tenantId: string, opts: { wait?: boolean }, cmd: Command) => {
      const out = await withClientOf(cmd, (c) => c.backupTenant(tenantId, opts));
      emit(globals(cmd), out, () =>
        out.status === 'completed'
          ? `Backup ${out.backupId} of tenant ${out.tenantId}: ${out.rows} rows, ${sizeText(out.bytes)}, snapshot at ${out.snapshotAt}`
          : `Backup ${out.backupId} of tenant ${out.tenantId} is running (workflow ${out.workflowId}); list it with \`tenantsafe backups list --tenant ${out.tenantId}\``,
      );
    });
  backup
    .command('all')
    .description('back up every tenant, a few at a time')
    .option('--wait', 'wait for all of them')
    .option('--concurrency <n>', 'tenant backups at once', positiveInt('--concurrency'))
    .action(async (opts: { wait?: boolean; concurrency?: number }, cmd: Command) => {
      const out = await withClientOf(cmd, (c) => c.backupAllTenants({ concurrency: opts.concurrency }, opts));
      if ('failed' in out && out.failed.length > 0) process.exitCode = 1;
      emit(globals(cmd), out, () =>
        'succeeded' in out
          ? `${out.succeeded} tenant backups succeeded, ${out.failed.length} failed${out.failed.map((f) => `\n  ${f.tenantId}: ${f.error}`).join('')}, ${out.skipped.length} skipped`
          : `Backing up all tenants (workflow ${out.workflowId})`,
      );
    });

  const backups = program.command('backups').description('look at backups');
  backups
    .command('list')
    .description('complete backups (those with a manifest), newest first')
    .option('--tenant <tenantId>', 'only this tenant')
    .action(async (opts: { tenant?: string }, cmd: Command) => {
      const list = await withEngine(cmd, (e) => e.catalog.listBackups({ tenantId: opts.tenant }));
      const out = list.map((b) => ({ backupId: b.backupId, tenantId: b.tenantId, status: 'completed', rows: b.rows, bytes: b.bytes, snapshotAt: b.snapshotAt }));
      emit(globals(cmd), out, () => table(out.map((b) => ({ ...b, bytes: sizeText(b.bytes) })), ['backupId', 'tenantId', 'rows', 'bytes', 'snapshotAt']));
    });
  backups
    .command('cleanup')
    .description('delete what interrupted backups left behind (prefixes without a manifest)')
    .option('--older-than <duration>', 'only backups started longer ago than this', '6h')
    .option('--dry-run', 'only list them')
    .action(async (opts: { olderThan: string; dryRun?: boolean }, cmd: Command) => {
      const olderThanMs = parseDuration(opts.olderThan, '--older-than');
      const removed = await withEngine(cmd, (e) => removeIncompleteBackups(e.store, { olderThanMs, dryRun: opts.dryRun }));
      emit(globals(cmd), { removed, dryRun: !!opts.dryRun }, () =>
        removed.length === 0 ? 'Nothing to clean up.' : removed.map((r) => `${opts.dryRun ? 'would remove' : 'removed'} ${r.prefix} (${r.objects} objects)`).join('\n'),
      );
    });

  program
    .command('tenancy')
    .description('how tenants are found in the schema')
    .command('show')
    .description('the resolved tenancy plan: owned tables, how each is filtered, global tables')
    .option('--tenant <tenantId>', 'estimate this tenant\'s rows per table')
    .option('--tenants', 'also list the tenants')
    .action(async (opts: { tenant?: string; tenants?: boolean }, cmd: Command) => {
      const out = await withEngine(cmd, (e) =>
        withClient(e.db, e.config.database.url, async (c) => {
          const plan = await discoverTenancy(c, e.config.tenancy);
          const estimates = opts.tenant ? await estimateTenantRows(c, plan, opts.tenant) : undefined;
          return {
            database: redactUrl(e.config.database.url),
            tenantTable: plan.tenantTable,
            tenantColumn: plan.tenantColumn,
            tables: plan.tables.map((t) => ({
              table: t.key,
              filter: describeOwnership(t),
              depth: t.depth,
              partitions: t.partitions.length || undefined,
              primaryKey: t.primaryKey,
              generatedColumns: t.columns.filter((c) => c.generated).map((c) => c.name),
              estimatedRows: estimates ? estimates[t.key] : t.estimatedRows,
              alternatives: t.alternatives,
            })),
            globalTables: plan.globalTables,
            warnings: plan.warnings,
            fingerprint: plan.fingerprint,
            ...(opts.tenants ? { tenants: await listTenants(c, plan) } : {}),
          };
        }),
      );
      emit(globals(cmd), out, () =>
        [
          `Tenants: ${out.tenantTable} (${out.tenantColumn})   database ${out.database}`,
          '',
          table(
            out.tables.map((t) => ({ ...t, partitions: t.partitions ?? '' })),
            ['table', 'estimatedRows', 'filter'],
          ),
          '',
          `Rows: ${opts.tenant ? `estimated for tenant ${opts.tenant}` : 'all tenants (pg_class.reltuples)'}`,
          `Global tables (not backed up with a tenant): ${out.globalTables.map((g) => `${g.key}${g.referencedBy.length ? ` (referenced by ${g.referencedBy.join(', ')})` : ''}`).join('; ') || 'none'}`,
          ...out.warnings.map((w) => `warning: ${w}`),
          ...(out.tenants ? ['', `Tenants (${out.tenants.length}): ${out.tenants.join(', ')}`] : []),
        ].join('\n'),
      );
    });

  const restore = program.command('restore').description('restore a tenant: preview, approval, safety backup, apply, verify');
  const refOf = async (cmd: Command, restoreId: string) =>
    withEngine(cmd, async (e) => {
      const r = await e.catalog.getRestore(restoreId);
      return { workflowId: r.workflowId, runId: r.runId };
    });
  restore
    .command('tenant <tenantId>')
    .description('stage a backup and preview what restoring it would change; waits for the preview')
    .option('--backup <backupId>', 'the backup to restore')
    .option('--at <time>', 'ISO-8601: the newest backup taken at or before this time')
    .option('--mode <mode>', 'replace (the tenant becomes exactly the backup) or missing-only (re-insert missing rows)', 'replace')
    .option('--tables <list>', 'only these tables, comma-separated (e.g. app.users,app.projects)', list)
    .option('--changes <list>', 'only these kinds of change: insert,update,delete', list)
    .option('--missing-refs <policy>', 'rows referencing global rows that are gone: refuse or skip', 'refuse')
    .option('--by <who>', 'who asks (cannot approve it)', defaultUser())
    .action(async (tenantId: string, opts: { backup?: string; at?: string; mode: string; tables?: string[]; changes?: string[]; missingRefs: string; by: string }, cmd: Command) => {
      const out = await withClientOf(cmd, (c) =>
        c.restores.request({
          tenantId,
          backupId: opts.backup,
          at: opts.at,
          mode: opts.mode as TenantRestoreInput['mode'],
          tables: opts.tables,
          changes: opts.changes as TenantRestoreInput['changes'],
          missingRefs: opts.missingRefs as TenantRestoreInput['missingRefs'],
          requestedBy: opts.by,
        }),
      );
      emit(globals(cmd), out, () => restoreText(out));
      if (out.error) throw new WorkflowError(out.error, out.errorType);
    });
  restore
    .command('approve <restoreId>')
    .description('approve the current preview (four-eyes: not the requester)')
    .requiredOption('--by <who>', 'who approves')
    .requiredOption('--digest <digest>', 'the digest of the preview you reviewed')
    .option('--wait', 'wait until the restore is applied and verified')
    .action(async (restoreId: string, opts: { by: string; digest: string; wait?: boolean }, cmd: Command) => {
      const ref = await refOf(cmd, restoreId);
      const out = await withClientOf(cmd, (c) => c.restores.approve(ref, { by: opts.by, digest: opts.digest }, { wait: opts.wait }));
      emit(globals(cmd), out, () => `Restore ${restoreId}: ${out.state}${'safetyBackupId' in out && out.safetyBackupId ? ` (safety backup ${out.safetyBackupId})` : ''}`);
    });
  restore
    .command('reject <restoreId>')
    .description('reject the restore: nothing is changed')
    .requiredOption('--by <who>', 'who rejects')
    .option('--reason <text>', 'why')
    .action(async (restoreId: string, opts: { by: string; reason?: string }, cmd: Command) => {
      const ref = await refOf(cmd, restoreId);
      const out = await withClientOf(cmd, (c) => c.restores.reject(ref, { by: opts.by, reason: opts.reason }));
      emit(globals(cmd), out, () => `Restore ${restoreId}: ${out.state}`);
    });
  restore
    .command('status <restoreId>')
    .description('state, preview, approvals, outcome')
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
    .action(async (opts: { dryRun?: boolean }, cmd: Command) => {
      const removed = await withClientOf(cmd, (client) =>
        withEngine(cmd, (e) => removeStaleScratchSchemas(e, (schema) => restoreIsRunning(e, client, schema), opts.dryRun)),
      );
      emit(globals(cmd), { removed, dryRun: !!opts.dryRun }, () => (removed.length ? removed.map((r) => `${opts.dryRun ? 'would drop' : 'dropped'} ${r}`).join('\n') : 'Nothing to clean up.'));
    });

  program
    .command('dashboard')
    .description('serve the HTTP API (restore approval relay) until interrupted')
    .action(async (_opts: unknown, cmd: Command) => {
      const cfg = config(cmd);
      const engine = new Engine(cfg);
      const client = await TenantsafeClient.connect(cfg.temporal);
      const server = await startDashboardServer(cfg, engine, client);
      process.stderr.write(`tenantsafe dashboard: ${server.url}\n`);
      await new Promise<void>((resolve) => process.once('SIGINT', () => resolve()).once('SIGTERM', () => resolve()));
      await server.close();
      await client.close();
      await engine.close();
    });

  const schedule = program.command('schedule').description('Temporal Schedules');
  schedule
    .command('tenant-backups')
    .description('back up all tenants every <duration>; with --tenant, give one tenant its own interval')
    .option('--every <duration>', 'interval, e.g. 24h')
    .option('--tenant <tenantId>', 'a per-tenant override')
    .option('--concurrency <n>', 'tenant backups at once (all-tenants schedule)', positiveInt('--concurrency'))
    .option('--remove', 'delete the schedule instead')
    .action(async (opts: { every?: string; tenant?: string; concurrency?: number; remove?: boolean }, cmd: Command) => {
      const out = await withClientOf(cmd, async (c, cfg) => {
        if (opts.remove) return removeTenantBackupSchedule(c.temporal, cfg.temporal.taskQueue, opts.tenant);
        if (!opts.every) throw new TenantsafeError(ErrorType.BadInput, '--every is required.', 'Pass --every 24h (or --remove).');
        return scheduleTenantBackups(c.temporal, cfg.temporal.taskQueue, { everyMs: parseDuration(opts.every, '--every'), tenantId: opts.tenant, concurrency: opts.concurrency });
      });
      emit(globals(cmd), out, () => ('removed' in out ? `Removed ${out.removed}` : `Schedule ${out.scheduleId}: ${out.workflowType} every ${out.every}, next run ${out.nextRunAt}`));
    });
  schedule
    .command('list')
    .description('tenantsafe schedules')
    .action(async (_opts: unknown, cmd: Command) => {
      const out = await withClientOf(cmd, (c) => listSchedules(c.temporal));
      emit(globals(cmd), out, () => table(out as unknown as Record<string, unknown>[], ['scheduleId', 'workflowType', 'every', 'paused', 'nextRunAt']));
    });

  program
    .command('catalog')
    .description('the backup index in Postgres')
    .command('rebuild')
    .description('rebuild the backup catalog from the manifests in storage')
    .action(async (_opts: unknown, cmd: Command) => {
      const out = await withEngine(cmd, async (e) => ({ ...(await e.catalog.rebuild(e.store)), full: await e.catalog.rebuildFullBackups(e.store) }));
      emit(globals(cmd), out, () =>
        [
          `Indexed ${out.indexed} backups (${out.added.length} added, ${out.removed.length} removed), ${out.full.indexed} full backups (${out.full.added.length} added, ${out.full.removed.length} removed).`,
          ...[...out.invalid, ...out.full.invalid].map((i) => `invalid: ${i.key}: ${i.error}`),
        ].join('\n'),
      );
    });

  registerDatabaseCommands(program, { backups, schedule }, { globals, withEngine, withClientOf, positiveInt, sizeText });

  program
    .command('worker')
    .description('run a worker on the configured task queue until interrupted')
    .action(async (_opts: unknown, cmd: Command) => {
      await runWorkerUntilSignal(config(cmd));
    });

  const layoutOptions = (cmd: Command) =>
    cmd
      .option('--home <dir>', 'where the embedded stack keeps its cluster, Temporal state and backups', defaultDevLayout.home)
      .option('--pg-port <n>', 'port of the private Postgres', positiveInt('--pg-port'), defaultDevLayout.pgPort)
      .option('--temporal-port <n>', 'port of the Temporal dev server', positiveInt('--temporal-port'), defaultDevLayout.temporalPort)
      .option('--ui-port <n>', 'port of the Temporal Web UI', positiveInt('--ui-port'), defaultDevLayout.uiPort);
  type LayoutFlags = { home: string; pgPort: number; temporalPort: number; uiPort: number };
  const log = (line: string) => process.stderr.write(`${line}\n`);

  layoutOptions(program.command('dev'))
    .description('start Temporal (dev server), a worker and, with no config, a private Postgres with the sample database')
    .action(async (opts: LayoutFlags, cmd: Command) => {
      const stack = await startDevStack({ configPath: globals(cmd).config, layout: opts, log });
      log('tenantsafe dev: up; Ctrl-C stops it');
      await new Promise<void>((resolve) => process.once('SIGINT', () => resolve()).once('SIGTERM', () => resolve()));
      await stack.stop();
    });

  layoutOptions(program.command('demo'))
    .description('the main job end to end on the embedded defaults: back up a tenant, damage it, preview, approve, restore, verify')
    .option('--tenant <tenantId>', 'the tenant to work on', 'globex')
    .option('--keep', 'leave the stack running afterwards')
    .action(async (opts: LayoutFlags & { tenant: string; keep?: boolean }, cmd: Command) => {
      const out = await runDemo({ configPath: globals(cmd).config, layout: opts, log, tenantId: opts.tenant, keep: !!opts.keep });
      emit(globals(cmd), out, () =>
        out.tenantMatchesBackup
          ? `Demo done: tenant ${out.tenantId} restored from ${out.backup.backupId} and verified equal to it (restore ${out.restore.restoreId}).`
          : `Demo FAILED: tenant ${out.tenantId} does not match its backup after restore ${out.restore.restoreId}.`,
      );
      if (!out.tenantMatchesBackup) process.exitCode = 1;
    });

  return program;
}

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
    return Number(process.exitCode ?? 0);
  } catch (err) {
    return reportError({ json: argv.includes('--json') }, err);
  }
}
