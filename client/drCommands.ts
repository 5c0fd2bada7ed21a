// CLI commands of disaster recovery: failover (and its approve, reject, status), switchover.
import { Option, type Command } from 'commander';
import { refusedApproval } from '../lib/audit';
import { databaseName } from '../lib/config';
import { checkDrConfigured } from '../lib/dr/failover';
import { ErrorType, TenantsafeError } from '../lib/errors';
import type { FailoverResult, FailoverStatus, SwitchoverResult, SwitchoverStatus } from '../workflows/messages';
import type { FailoverRef, FailoverRequested, TenantsafeDr } from './drClient';
import type { TenantsafeClient } from './client';
import { requiredInHelp, type CliCommand } from './cliCommand';
import { config, deciderHelp, globals, requester, requesterOption, withClientOf, withEngine } from './commandHelpers';
import { emit } from './output';
import { WorkflowError } from './workflowError';

function lossText(s: Pick<FailoverStatus, 'lossEstimate'>): string {
  const l = s.lossEstimate;
  if (!l) return 'not estimated yet';
  if (l.bytes === null) return 'unknown (the old primary\'s WAL is not readable here and no probe answered)';
  return `${l.bytes} bytes of WAL${l.ms !== null ? `, ${l.ms} ms of commits` : ''} (${l.source})`;
}

function failoverText(s: FailoverStatus | FailoverRequested | FailoverResult): string {
  const lines = [`Failover ${s.failoverId}${s.database ? ` of ${s.database}` : ''}: ${s.state}`];
  if (s.primary) lines.push(`  primary ${s.primary}, standby ${s.standby}`);
  if ('lossEstimate' in s) lines.push(`  estimated loss: ${lossText(s)}`);
  if (s.rtoMs !== undefined) lines.push(`  RTO ${s.rtoMs} ms, data loss ${s.dataLossBytes ?? 'unknown'} bytes${s.rpoMs != null ? ` (${s.rpoMs} ms)` : ''}, targets ${s.metTargets ? 'met' : 'NOT met'}`);
  if ('refused' in s) for (const r of s.refused) lines.push(`  refused: ${r.by}: ${r.reason}`);
  if (s.state === 'awaiting-approval' && 'requestedBy' in s) {
    lines.push('', `Waits for approval until ${s.expiresAt} (someone other than ${s.requestedBy}):`, `  tenantsafe failover approve ${s.failoverId} --by <name>`, `  tenantsafe failover reject ${s.failoverId} --by <name> --reason <text>`);
  }
  if ('error' in s && s.error) lines.push(`  error: ${s.error}`);
  return lines.join('\n');
}

function switchoverText(s: SwitchoverStatus | SwitchoverResult): string {
  return [
    `Switchover ${s.switchoverId}${s.database ? ` of ${s.database}` : ''}: ${s.state}`,
    ...(s.primary ? [`  ${s.state === 'done' ? `new primary ${s.primary}, old primary ${s.standby} (read-only: rebuild it as the standby)` : `primary ${s.primary}, standby ${s.standby}`}`] : []),
    ...(s.durationMs !== undefined ? [`  clients waited ${s.durationMs} ms; data loss 0 (the standby replayed the old primary up to ${s.finalLsn})`] : []),
  ].join('\n');
}

/** The run behind a failover id, from the catalog's dr_events. */
async function failoverRef(cmd: Command, failoverId: string): Promise<FailoverRef> {
  return withEngine(cmd, async (e) => {
    const found = (await e.catalog.listDrEvents({ kind: 'failover', database: databaseName(e.config.database.url), limit: 1000 })).find((d) => d.details?.failoverId === failoverId);
    if (!found) throw new TenantsafeError(ErrorType.BadInput, `There is no failover ${failoverId} of this database.`, 'Copy the id `tenantsafe failover` printed; `tenantsafe failover status <id>` shows one.');
    return { workflowId: found.workflowId, runId: found.runId };
  });
}

/**
 * approve's and reject's --by, --reason and --wait. Commander gives an option of `failover` to
 * failover wherever it is written (after `approve <id>` too), so they are read from there; each
 * sub-command declares its own only for its help. --by must have been typed: a decision names a
 * person, never the requester's default.
 */
function decision(cmd: Command, verb: string): { by: string; reason?: string; wait?: boolean } {
  const opts = cmd.optsWithGlobals<{ by?: string; reason?: string; wait?: boolean }>();
  if (cmd.parent?.getOptionValueSource('by') !== 'cli' || !opts.by) throw new TenantsafeError(ErrorType.BadInput, `Say who ${verb}: --by is required.`, `Pass --by <who> (someone other than the requester).`);
  return { by: opts.by, reason: opts.reason, wait: opts.wait };
}

const withDr = <T>(cmd: Command, fn: (dr: TenantsafeDr, client: TenantsafeClient) => Promise<T>) =>
  withClientOf(cmd, (client) => {
    const { TenantsafeDr } = require('./drClient') as typeof import('./drClient');
    return fn(new TenantsafeDr(client), client);
  });

export function registerDrCommands(program: CliCommand): void {
  const failover = program
    .command('failover')
    .disasterRecovery()
    .description('fail over to the standby when the primary is lost: probes, approval, fencing, promotion, the endpoint switched, RTO and loss recorded')
    // required, but checked by the action (with a HINT): commander would ask approve and reject for it too
    .addOption(requiredInHelp(new Option('--reason <text>', 'why (kept in the catalog)')))
    .addOption(requesterOption('who asks (cannot approve it)'))
    .option('--force', 'fail over even though the primary answers, or the standby is further behind than dr.standby.maxLag')
    .option('--wait', 'wait until the failover is done')
    .example('tenantsafe failover --reason "primary host lost"', 'tenantsafe failover --reason "primary host lost" --by alice --wait')
    .exits({ 1: 'the failover failed after it started (the message says where it stopped)', 2: 'bad input, or refused (FailoverRefused: the primary answers, the standby is too far behind, nothing configured): nothing was changed' })
    .action(async (opts: { reason?: string; by?: string; force?: boolean; wait?: boolean }, cmd: Command) => {
      if (!opts.reason) throw new TenantsafeError(ErrorType.BadInput, 'A failover needs a reason.', 'Pass --reason <text>, e.g. --reason "primary host lost".');
      const requestedBy = requester(opts.by);
      const cfg = config(cmd);
      checkDrConfigured(cfg); // what needs no server fails here, before a workflow starts (it checks again)
      // the global --database: here the database's name (default: the configured one)
      const named = globals(cmd).database;
      const database = named ?? databaseName(cfg.database.url);
      const out = await withDr(cmd, (dr) => dr.failover(database, { reason: opts.reason!, requestedBy, force: opts.force, database: named }, { wait: opts.wait }));
      emit(globals(cmd), out, () => failoverText(out));
      if ('errorType' in out && out.state === 'failed') throw new WorkflowError(out.error ?? 'The failover failed.', out.errorType);
    });
  failover
    .command('approve <failoverId>')
    .description('approve a failover waiting for approval (not by whoever asked for it)')
    .addOption(requiredInHelp(new Option('--by <who>', deciderHelp('approves'))))
    .option('--wait', 'wait until the failover is done')
    .example('tenantsafe failover approve 20261206-071500X-3f9a2c --by bob --wait')
    .exits({ 2: 'bad input, or an approval that does not count (by the requester, expired)' })
    .action(async (failoverId: string, _opts: unknown, cmd: Command) => {
      const { by, wait } = decision(cmd, 'approves');
      const ref = await failoverRef(cmd, failoverId);
      const out = await withEngine(cmd, (e) =>
        withDr(cmd, (dr) =>
          dr.approve(ref, failoverId, by, {
            wait,
            // refused here, it never reaches the workflow: the audit log hears of it from here
            onRefused: (refusal, failover) => e.audit.appendBestEffort(refusedApproval({ failover }, { by }, refusal.reason, 'cli')),
          }),
        ),
      );
      emit(globals(cmd), out, () => failoverText(out));
    });
  failover
    .command('reject <failoverId>')
    .description('reject a failover: nothing is changed')
    .addOption(requiredInHelp(new Option('--by <who>', deciderHelp('rejects'))))
    .option('--reason <text>', 'why')
    .example('tenantsafe failover reject 20261206-071500X-3f9a2c --by bob --reason "the primary is back"')
    .action(async (failoverId: string, _opts: unknown, cmd: Command) => {
      const { by, reason } = decision(cmd, 'rejects');
      const ref = await failoverRef(cmd, failoverId);
      const out = await withDr(cmd, (dr) => dr.reject(ref, { by, reason }));
      emit(globals(cmd), out, () => failoverText(out));
    });
  failover
    .command('status <failoverId>')
    .description('state, the loss estimate, approvals, RTO and loss once done')
    .example('tenantsafe failover status 20261206-071500X-3f9a2c')
    .action(async (failoverId: string, _opts: unknown, cmd: Command) => {
      const ref = await failoverRef(cmd, failoverId);
      const out = await withDr(cmd, (dr) => dr.status(ref));
      emit(globals(cmd), out, () => failoverText(out));
    });
  program
    .command('switchover')
    .disasterRecovery()
    .description('planned move to the standby with no loss: endpoint paused, primary read-only, standby caught up and promoted, endpoint switched')
    .addOption(requesterOption())
    .option('--wait', 'wait until the switchover is done')
    .example('tenantsafe switchover --wait', 'tenantsafe switchover --by alice --database saas --wait')
    .exits({ 2: 'bad input, or refused (no standby or endpoint configured, the standby not replicating): nothing was changed' })
    .action(async (opts: { by?: string; wait?: boolean }, cmd: Command) => {
      const requestedBy = requester(opts.by);
      const cfg = config(cmd);
      checkDrConfigured(cfg);
      // the global --database: here the database's name (default: the configured one)
      const named = globals(cmd).database;
      const database = named ?? databaseName(cfg.database.url);
      const out = await withDr(cmd, (dr) => dr.switchover(database, { requestedBy, database: named }, { wait: opts.wait }));
      emit(globals(cmd), out, () => switchoverText(out));
    });
}
