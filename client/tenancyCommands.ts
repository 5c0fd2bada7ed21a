// CLI commands about tenancy: `tenancy show`, the plan discovered from the schema, with row
// estimates and, on request, the tenants.
import type { Command } from 'commander';
import { redactUrl } from '../lib/config';
import { withClient } from '../lib/pg';
import { describeOwnership, discoverTenancy, estimateTenantRows, listTenants } from '../lib/tenancy';
import type { CliCommand } from './cliCommand';
import { globals, withEngine } from './commandHelpers';
import { emit, table } from './output';

export function registerTenancyCommands(program: CliCommand): void {
  program
    .command('tenancy')
    .description('how tenants are found in the schema')
    .command('show')
    .description('the resolved tenancy plan: owned tables, how each is filtered, global tables')
    .option('--tenant <tenantId>', 'estimate this tenant\'s rows per table')
    .option('--tenants', 'also list the tenants')
    .example('tenantsafe tenancy show', 'tenantsafe tenancy show --tenant acme --tenants')
    .action(async (opts: { tenant?: string; tenants?: boolean }, cmd: Command) => {
      const out = await withEngine(cmd, (e) =>
        withClient(e.db, e.config.database.url, async (c) => {
          const plan = await discoverTenancy(c, e.config.tenancy);
          const estimates = opts.tenant ? await estimateTenantRows(c, plan, opts.tenant) : undefined;
          // loaded here: the replication parser behind it is not needed by other commands
          const { tablesNeedingFullIdentity } = require('../lib/changeLog/capture') as typeof import('../lib/changeLog/capture');
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
            /** tables the change log can follow only with REPLICA IDENTITY FULL (no primary key) */
            needReplicaIdentityFull: await tablesNeedingFullIdentity(c, plan),
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
          ...(out.needReplicaIdentityFull.length
            ? [`Change log: without a primary key, these need REPLICA IDENTITY FULL (changeLog.replicaIdentityFull: true sets it): ${out.needReplicaIdentityFull.join(', ')}`]
            : []),
          ...(out.tenants ? ['', `Tenants (${out.tenants.length}): ${out.tenants.join(', ')}`] : []),
        ].join('\n'),
      );
    });
}
