// CLI commands for DR drills (the public CLI contract: README, CLI): drill run, list, show. Their
// weekly schedule is `schedule drills` (scheduleCommands.ts).
import type { Command } from 'commander';
import type { DrEventRecord } from '../lib/catalog';
import { databaseName } from '../lib/config';
import { ErrorType, TenantsafeError } from '../lib/errors';
import type { CliCommand } from './cliCommand';
import { globals, positiveInt, withClientOf, withEngine } from './commandHelpers';
import { emit, table } from './output';

// Required on use: it loads the Temporal SDK (see cli.ts).
const drills = () => require('./drills') as typeof import('./drills');

const seconds = (ms: number | null | undefined) => (ms === null || ms === undefined ? '-' : `${(ms / 1000).toFixed(1)}s`);

/** A drill as `drill list` and `drill show` print it. */
function drillRow(e: DrEventRecord) {
  return {
    drillId: String(e.details?.drillId ?? ''),
    status: e.status,
    metTargets: e.metTargets ?? null,
    startedAt: e.startedAt,
    finishedAt: e.finishedAt ?? null,
    backupId: (e.details?.backupId as string | undefined) ?? null,
    rtoMs: e.rtoMs ?? null,
    rpoMs: e.rpoMs ?? null,
    rtoTargetMs: e.rtoTargetMs,
    rpoTargetMs: e.rpoTargetMs,
    reportKey: e.reportKey ?? null,
    htmlKey: (e.details?.htmlKey as string | undefined) ?? null,
    reportSha256: (e.details?.reportSha256 as string | undefined) ?? null,
    error: e.error ?? null,
    workflowId: e.workflowId,
    runId: e.runId,
  };
}

export function registerDrillCommands(program: CliCommand): void {
  const drill = program.command('drill').disasterRecovery().description('disaster-recovery drills: restore the newest full backup and WAL into a scratch cluster, check it, measure RTO and RPO');
  drill
    .command('run')
    .description('run a drill now (exit 1 when it failed or missed dr.targets)')
    .option('--wait', 'wait for the drill to finish')
    .example('tenantsafe drill run --wait')
    .exits({ 1: 'the drill failed or missed dr.targets', 2: 'bad input, no full backup to drill (BackupNotFound), or a logical-dump provider' })
    .action(async (opts: { wait?: boolean }, cmd: Command) => {
      const out = await withClientOf(cmd, (c, cfg) => drills().startDrill(c, databaseName(cfg.database.url), opts));
      if (out.status === 'completed' && !out.metTargets) process.exitCode = 1;
      emit(globals(cmd), out, () =>
        out.status === 'completed'
          ? [
              `DR drill ${out.drillId} of backup ${out.backupId}: ${!out.ok ? 'FAILED' : out.metTargets ? 'PASSED' : 'OVER TARGET'}; RTO ${seconds(out.rtoMs)} (target ${seconds(out.rtoTargetMs)}), RPO ${seconds(out.rpoMs)} (target ${seconds(out.rpoTargetMs)})`,
              `  checks: ${Object.entries(out.checks).map(([k, n]) => `${k} ${n}`).join(', ')}; report ${out.htmlKey}`,
              ...out.problems.map((p) => `  [failed] ${p}`),
            ].join('\n')
          : `DR drill ${out.drillId ?? ''} of backup ${out.backupId ?? '-'} is running (workflow ${out.workflowId})`,
      );
    });
  drill
    .command('list')
    .description('the newest drills first, from the catalog')
    .option('--limit <n>', 'at most this many (default 20)', positiveInt('--limit'))
    .example('tenantsafe drill list --limit 5')
    .action(async (opts: { limit?: number }, cmd: Command) => {
      const out = await withEngine(cmd, async (e) => (await e.catalog.listDrEvents({ kind: 'drill', database: databaseName(e.config.database.url), limit: opts.limit ?? 20 })).map(drillRow));
      emit(globals(cmd), out, () =>
        table(
          out.map((d) => ({ ...d, rto: seconds(d.rtoMs), rpo: seconds(d.rpoMs) })),
          ['drillId', 'status', 'metTargets', 'startedAt', 'backupId', 'rto', 'rpo'],
        ),
      );
    });
  drill
    .command('show <drillId>')
    .description("one drill's record and its stored report (JSON)")
    .example('tenantsafe drill show 20261206-030000-0190a1b2 --json')
    .action(async (drillId: string, _opts: unknown, cmd: Command) => {
      const out = await withEngine(cmd, async (e) => {
        const found = (await e.catalog.listDrEvents({ kind: 'drill', limit: 1000 })).find((d) => d.details?.drillId === drillId);
        if (!found) throw new TenantsafeError(ErrorType.BadInput, `There is no drill "${drillId}".`, 'List drills with `tenantsafe drill list`.');
        const row = drillRow(found);
        return { ...row, report: row.reportKey ? JSON.parse((await e.store.getBytes(row.reportKey)).toString('utf8')) : null };
      });
      emit(globals(cmd), out, () =>
        [
          `DR drill ${out.drillId}: ${out.status}${out.metTargets === false ? ' (targets missed)' : ''}, ${out.startedAt} → ${out.finishedAt ?? '…'}`,
          `  backup ${out.backupId ?? '-'}; RTO ${seconds(out.rtoMs)} (target ${seconds(out.rtoTargetMs)}), RPO ${seconds(out.rpoMs)} (target ${seconds(out.rpoTargetMs)})`,
          ...(out.report?.checks ?? []).map((c: { check: string; target: string; result: string; detail?: string }) => `  [${c.result}] ${c.check} ${c.target}${c.detail ? ` — ${c.detail}` : ''}`),
          ...(out.error ? [`  error: ${out.error}`] : []),
          `  report ${out.htmlKey ?? '-'} (sha256 of report.json ${out.reportSha256 ?? '-'})`,
        ].join('\n'),
      );
    });
}
