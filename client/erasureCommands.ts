// CLI commands of the erasure ledger (lib/erasure; README, "Erasure ledger"): erasure record (a
// subject-level erasure: a tenant's row by table and key, who, why; checked against the live
// schema, then the audit log's entry) and erasure list. Both use the catalog and the database
// directly: no Temporal, no worker.
import type { Command } from 'commander';
import { checkErasureRequest, keyText, listErasures, recordErasure, type ErasureRecord } from '../lib/erasure';
import type { CliCommand } from './cliCommand';
import { globals, listAcrossDatabases, nonEmpty, requester, requesterOption, withEngine, type Listed } from './commandHelpers';
import { emit, table } from './output';

const collect = (value: string, previous: string[] = []) => [...previous, value];

function listText(entries: Listed<ErasureRecord>[], columns: string[]): string {
  if (entries.length === 0) return 'No erasures recorded.';
  const rows = entries.map((e) => ({ database: e.database, id: e.erasureId, tenant: e.tenantId, table: e.table, key: keyText(e.key), by: e.by, at: e.erasedAt, reason: e.reason ?? '' }));
  return table(rows, columns);
}

export function registerErasureCommands(program: CliCommand): void {
  const erasure = program.command('erasure').description('the erasure ledger: subject-level erasures every later restore of older data applies again');
  erasure
    .command('record')
    .description('record that a row (a person) was erased: restores of data older than now leave it out, and the rows that depend on it')
    .requiredOption('--tenant <tenantId>', 'the tenant the row belongs to')
    .requiredOption('--table <schema.table>', 'a tenant-owned table, e.g. app.users')
    .requiredOption('--key <column=value>', 'the row\'s primary key, once per key column', collect)
    .addOption(requesterOption('who records it'))
    .option('--reason <text>', 'why, e.g. a ticket number')
    .example('tenantsafe erasure record --tenant acme --table app.users --key user_id=42 --by dpo --reason "GDPR art. 17, ticket 991"')
    .action(async (opts: { tenant: string; table: string; key: string[]; by?: string; reason?: string }, cmd: Command) => {
      const request = { tenantId: opts.tenant, table: opts.table, key: opts.key, by: requester(opts.by), reason: opts.reason };
      // bad arguments fail here, before anything is connected to
      checkErasureRequest(request);
      const out = await withEngine(cmd, (e) => recordErasure(e, request));
      emit(globals(cmd), out, () =>
        [
          `Erasure #${out.erasureId} recorded: ${out.table} ${keyText(out.key)} of tenant ${out.tenantId}, by ${out.by} at ${out.erasedAt}.`,
          out.stillLive ? `The row is still in the live database: delete it there too (the ledger keeps restores from bringing it back; it does not delete).` : '',
        ]
          .filter(Boolean)
          .join('\n'),
      );
    });
  erasure
    .command('list')
    .description('the ledger, oldest first: id, tenant, table, key, who, when, why; with several databases, every one\'s (a database column) unless --database names one')
    .option('--tenant <tenantId>', 'of one tenant')
    .example('tenantsafe erasure list --tenant acme')
    .action(async (opts: { tenant?: string }, cmd: Command) => {
      if (opts.tenant !== undefined) nonEmpty(opts.tenant, '--tenant', 'Pass --tenant <tenantId>, or leave it out for every tenant.');
      const { rows: out, columns } = await listAcrossDatabases(cmd, (e) => listErasures(e, { tenantId: opts.tenant }), { by: (x) => x.erasedAt, oldestFirst: true }, ['id', 'tenant', 'table', 'key', 'by', 'at', 'reason']);
      emit(globals(cmd), out, () => listText(out, columns));
    });
}
