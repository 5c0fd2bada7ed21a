// CLI commands of the audit log (lib/audit; the public CLI contract: README, CLI): audit list
// (newest first, filtered by tenant, action, time) and audit verify (the hash chain recomputed
// from the first entry and held against the anchor in storage; exit 1 naming the first entry that
// does not hold). Both read the catalog (and storage) directly: no Temporal, no worker.
import type { Command } from 'commander';
import { auditActions, checkAuditFilter, subjectText, type AuditEntry, type AuditVerification } from '../lib/audit';
import type { CliCommand } from './cliCommand';
import { globals, listAcrossDatabases, positiveInt, withEngine, type Listed } from './commandHelpers';
import { emit, table } from './output';

const shortHash = (h: string | null) => (h ? `${h.slice(0, 12)}…` : null);

function listText(entries: Listed<AuditEntry>[], columns: string[]): string {
  if (entries.length === 0) return 'No audit entries.';
  const rows = entries.map((e) => ({ database: e.database, seq: e.seq, at: e.at, by: e.by, action: e.action, outcome: e.outcome, subject: subjectText(e.subject), digest: shortHash(e.digest) }));
  return table(rows, columns);
}

function verifyText(v: AuditVerification): string {
  const anchor =
    v.anchor.status === 'matches' ? `anchored in storage at entry ${v.anchor.seq} (${v.anchor.at}): matches`
      : v.anchor.status === 'none' ? 'no anchor in storage yet'
        : v.anchor.status === 'unreadable' ? `the anchor in storage could not be read (${v.anchor.error}): not checked`
          : v.anchor.status === 'not-checked' ? `the anchor (entry ${v.anchor.seq}) lies past the break: not checked`
            : `the anchor in storage names entry ${v.anchor.seq}: ${v.anchor.status}`;
  if (v.ok) return `Audit log OK: ${v.entries} entries, chain unbroken${v.head ? ` up to entry ${v.head.seq} (hash ${shortHash(v.head.hash)})` : ''}; ${anchor}.`;
  return [`Audit log BROKEN at entry ${v.broken!.seq}: ${v.broken!.problem}.`, `  ${v.entries} entries; checked up to entry ${v.head?.seq ?? 0}; ${anchor}.`].join('\n');
}

export function registerAuditCommands(program: CliCommand): void {
  const audit = program.command('audit').description('the audit log: who requested, approved, refused, rejected, pinned, failed over or deleted what, and when (tamper-evident)');
  audit
    .command('list')
    .description('entries, newest first: number, time, who, action, outcome, what it was about, the digest; with several databases, every one\'s log (a database column) unless --database names one')
    .option('--tenant <tenantId>', 'about one tenant')
    .option('--action <action>', `one action: ${auditActions.join(', ')}`)
    .option('--since <time>', 'ISO-8601 with a zone: entries at or after it')
    .option('--limit <n>', 'at most n (default 50)', positiveInt('--limit'))
    .example('tenantsafe audit list --tenant acme', 'tenantsafe audit list --action restore.approve --since 2026-11-01T00:00:00Z --limit 200')
    .action(async (opts: { tenant?: string; action?: string; since?: string; limit?: number }, cmd: Command) => {
      // bad filters fail here, before anything is connected to
      const filter = checkAuditFilter({ tenantId: opts.tenant, action: opts.action, since: opts.since, limit: opts.limit ?? 50 });
      // each database keeps its own log (its own chain, numbered from 1)
      const { rows: out, columns } = await listAcrossDatabases(cmd, (e) => e.audit.list(filter), { by: (x) => x.at, limit: filter.limit }, ['seq', 'at', 'by', 'action', 'outcome', 'subject', 'digest']);
      emit(globals(cmd), out, () => listText(out, columns));
    });
  audit
    .command('verify')
    .description('recompute the hash chain from the first entry and compare it with the anchor in storage')
    .example('tenantsafe audit verify')
    .exits({ 1: 'the chain is broken: an entry was altered, removed or inserted (the first such entry is named), or the catalog cannot be read' })
    .action(async (_opts: unknown, cmd: Command) => {
      const out = await withEngine(cmd, (e) => e.audit.verify());
      emit(globals(cmd), out, () => verifyText(out));
      if (!out.ok) process.exitCode = 1;
    });
}
