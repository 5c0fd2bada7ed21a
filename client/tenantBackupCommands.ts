// CLI commands for tenant backups: backup tenant|all, backups list|cleanup, and catalog rebuild,
// which re-indexes them (and full backups) from storage. `backup full` is a whole-database
// command (databaseCommands.ts), added to the `backup` made here.
import type { Command } from 'commander';
import type { CliCommand } from './cliCommand';
import { removeIncompleteBackups } from '../lib/tenantBackup';
import { parseDuration } from '../lib/duration';
import { globals, listAcrossDatabases, nonEmpty, positiveInt, sizeText, withClientOf, withEngine } from './commandHelpers';
import { rebuildErasures } from '../lib/erasure';
import { emit, table } from './output';

/** `backup` and `backups`; returns both, which the whole-database commands add to. */
export function registerTenantBackupCommands(program: CliCommand): { backup: CliCommand; backups: CliCommand } {
  const backup = program.command('backup').description('take backups: one tenant, every tenant, or the whole database');
  backup
    .command('tenant <tenantId>')
    .description('back up one tenant from one consistent snapshot')
    .option('--wait', 'wait for the backup to finish')
    .example('tenantsafe backup tenant acme --wait', 'tenantsafe backup tenant acme --json   # returns once checked: status running')
    .exits({ 1: 'the backup failed (with --wait), or Temporal, the database or storage is unreachable' })
    .action(async (tenantId: string, opts: { wait?: boolean }, cmd: Command) => {
      nonEmpty(tenantId, 'The tenant id', 'Pass the tenant id: `tenantsafe backup tenant <tenantId>`; `tenantsafe tenancy show --tenants` lists them.');
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
    .option('--concurrency <n>', 'batches, and big tenants\' own backups, at once', positiveInt('--concurrency'))
    .option('--batch-tenants <n>', 'at most this many tenants in one batch (default 10000); several batches share the workers', positiveInt('--batch-tenants'))
    .example('tenantsafe backup all --wait --concurrency 4')
    .exits({ 1: 'a tenant\'s backup failed (the others went on), or the run could not start' })
    .action(async (opts: { wait?: boolean; concurrency?: number; batchTenants?: number }, cmd: Command) => {
      const out = await withClientOf(cmd, (c) => c.backupAllTenants({ concurrency: opts.concurrency, batchTenants: opts.batchTenants }, opts));
      if ('failed' in out && out.failed.length > 0) process.exitCode = 1;
      emit(globals(cmd), out, () =>
        'succeeded' in out
          ? `${out.succeeded} tenant backups succeeded${out.batch ? ` (${out.batch.tenants} in ${out.batch.batches ?? 'one'} batch${out.batch.batches ? 'es' : ''}, ${out.batch.packs} packs)` : ''}, ${out.failedCount ?? out.failed.length} failed${out.failed.map((f) => `\n  ${f.tenantId}: ${f.error}`).join('')}, ${out.skipped.length} skipped`
          : `Backing up all tenants (workflow ${out.workflowId})`,
      );
    });

  const backups = program.command('backups').description('look at backups');
  backups
    .command('list')
    .description('complete backups (those with a manifest), newest first; with several databases, every one\'s (a database column) unless --database names one')
    .option('--tenant <tenantId>', 'only this tenant')
    .example('tenantsafe backups list --tenant acme', 'tenantsafe backups list --json | jq -r \'.[0].backupId\'   # the newest', 'tenantsafe backups list --database eu --tenant acme')
    .action(async (opts: { tenant?: string }, cmd: Command) => {
      const { rows: out, columns } = await listAcrossDatabases(
        cmd,
        async (e) => (await e.catalog.listBackups({ tenantId: opts.tenant })).map((b) => ({ backupId: b.backupId, tenantId: b.tenantId, status: 'completed', rows: b.rows, bytes: b.bytes, snapshotAt: b.snapshotAt })),
        { by: (b) => b.snapshotAt },
        ['backupId', 'tenantId', 'rows', 'bytes', 'snapshotAt'],
      );
      emit(globals(cmd), out, () => table(out.map((b) => ({ ...b, bytes: sizeText(b.bytes) })), columns));
    });
  backups
    .command('cleanup')
    .description('delete what interrupted backups left behind (prefixes without a manifest)')
    .option('--older-than <duration>', 'only backups started longer ago than this', '6h')
    .option('--dry-run', 'only list them')
    .example('tenantsafe backups cleanup --dry-run', 'tenantsafe backups cleanup --older-than 1d')
    .action(async (opts: { olderThan: string; dryRun?: boolean }, cmd: Command) => {
      const olderThanMs = parseDuration(opts.olderThan, '--older-than');
      const removed = await withEngine(cmd, (e) => removeIncompleteBackups(e.store, { olderThanMs, dryRun: opts.dryRun }));
      emit(globals(cmd), { removed, dryRun: !!opts.dryRun }, () =>
        removed.length === 0 ? 'Nothing to clean up.' : removed.map((r) => `${opts.dryRun ? 'would remove' : 'removed'} ${r.prefix} (${r.objects} objects)`).join('\n'),
      );
    });
  return { backup, backups };
}

export function registerCatalogCommands(program: CliCommand): void {
  program
    .command('catalog')
    .description('the backup index in Postgres')
    .command('rebuild')
    .description('rebuild the backup catalog from the manifests in storage (and the erasure ledger from its copies there)')
    .example('tenantsafe catalog rebuild')
    .action(async (_opts: unknown, cmd: Command) => {
      const out = await withEngine(cmd, async (e) => ({
        ...(await e.catalog.rebuild(e.store)),
        full: await e.catalog.rebuildFullBackups(e.store),
        changeLog: await e.catalog.rebuildChangeLog(e.store),
        erasures: await rebuildErasures(e),
      }));
      emit(globals(cmd), out, () =>
        [
          `Indexed ${out.indexed} backups (${out.added.length} added, ${out.removed.length} removed), ${out.full.indexed} full backups (${out.full.added.length} added, ${out.full.removed.length} removed).`,
          `Change log: ${out.changeLog.streams} streams, ${out.changeLog.segments} segments, ${out.changeLog.gaps} gaps.`,
          `Erasure ledger: ${out.erasures.indexed} erasures in storage, ${out.erasures.added.length} put back.`,
          ...[...out.invalid, ...out.full.invalid, ...out.changeLog.invalid, ...out.erasures.invalid].map((i) => `invalid: ${i.key}: ${i.error}`),
        ].join('\n'),
      );
    });
}
