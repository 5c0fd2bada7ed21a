// CLI commands for the standby (the public CLI contract: README, disaster recovery): standby
// create and rebuild run as workflows on a worker of the standby's machine; standby status reads
// the two servers directly.
import type { Command } from 'commander';
import { currentRoles, nodeUrl } from '../lib/dr/failover';
import { parseHostPort, standbyStatus } from '../lib/dr/standby';
import { ErrorType, TenantsafeError } from '../lib/errors';
import type { CliCommand } from './cliCommand';
import { globals, portNumber, sizeText, withClientOf, withEngine } from './commandHelpers';
import { emit } from './output';

// Required on use: it loads the Temporal SDK (see cli.ts).
const standbyClient = () => require('./standby') as typeof import('./standby');

export function registerStandbyCommands(program: CliCommand): void {
  const standby = program.command('standby').disasterRecovery().description('the standby (self-managed PostgreSQL): build it, watch it, rebuild an old primary as one (failback)');
  standby
    .command('create')
    .description('build the standby of dr.standby from the newest full backup + archived WAL, streaming with a replication slot (leaves a healthy one as it is)')
    .option('--wait', 'wait until it streams')
    .example('tenantsafe standby create --wait')
    .exits({ 2: 'bad input, no dr.standby configured, or no full backup to build it from (BackupNotFound)' })
    .action(async (opts: { wait?: boolean }, cmd: Command) => {
      const out = await withClientOf(cmd, (c) => standbyClient().startStandbyCreate(c, opts));
      emit(globals(cmd), out, () =>
        out.status === 'running'
          ? `Building the standby from ${out.backupId ?? 'the newest full backup'} (workflow ${out.workflowId})`
          : `Standby ${out.outcome} in ${out.dataDir} on ${out.host}:${out.port}, ${out.synchronous ? 'synchronous' : 'asynchronous'}, replayed to ${out.replayLsn ?? '-'} (primary at ${out.primaryLsn ?? '-'})` +
            (out.rewindable ? '' : '\nWARNING: the primary has neither wal_log_hints nor data checksums: after a failover it cannot be rewound, and failback copies it whole.'),
      );
    });
  standby
    .command('status')
    .description('where the standby stands: streaming | catching-up | stopped | absent | not-replicating, lag in bytes and seconds; exit 1 unless streaming within dr.standby.maxLag')
    .example('tenantsafe standby status', 'tenantsafe standby status --json')
    .exits({ 1: 'the standby is not streaming, or further behind than dr.standby.maxLag' })
    .action(async (_opts: unknown, cmd: Command) => {
      // the roles as they are now: after a failover or switchover the catalog knows which is which
      const out = await withEngine(cmd, async (engine) => {
        const roles = await currentRoles(engine);
        const s = engine.config.dr.standby!;
        if (!roles.standby) throw new TenantsafeError(ErrorType.BadConfig, `Database ${roles.database} has no standby since ${roles.changedBy}.`, 'Rebuild the old primary as one (`tenantsafe standby rebuild`), or create one (`tenantsafe standby create`).');
        const standby = { dataDir: roles.standby.dataDir ?? s.dataDir, host: roles.standby.host, port: roles.standby.port, slot: s.slot };
        return { ...(await standbyStatus({ primaryUrl: nodeUrl(engine, roles.primary), standby, maxLagBytes: s.maxLagBytes })), roles: { primary: roles.primary, standby: roles.standby, standbyState: roles.standbyState, changedBy: roles.changedBy } };
      });
      if (out.state !== 'streaming' || out.overMaxLag) process.exitCode = 1;
      const seconds = (v: number | null) => (v === null ? '-' : `${v.toFixed(3)} s`);
      emit(globals(cmd), out, () =>
        [
          `Standby ${out.host}:${out.port} (${out.dataDir}): ${out.state}${out.syncState ? ` (${out.syncState})` : ''}${out.overMaxLag ? ' — OVER dr.standby.maxLag' : ''}`,
          `  roles: primary ${out.roles.primary.host}:${out.roles.primary.port}, standby ${out.roles.standby.host}:${out.roles.standby.port} ${out.roles.standbyState} (${out.roles.changedBy === 'config' ? 'as configured' : `since ${out.roles.changedBy}`})`,
          `  primary at ${out.primaryLsn ?? (out.primaryReachable ? '-' : 'unreachable')}, replayed ${out.replayLsn ?? '-'}: lag ${sizeText(out.lagBytes)}; write ${seconds(out.writeLagSeconds)}, flush ${seconds(out.flushLagSeconds)}, replay ${seconds(out.replayLagSeconds)}`,
          `  last replayed commit ${out.lastReplayedCommitAt ?? '-'}`,
          `  slot ${out.slot ? `${out.slot.name}: ${out.slot.active ? 'active' : 'inactive'}, restart ${out.slot.restartLsn ?? '-'}, retains ${sizeText(out.slot.retainedBytes)}` : 'missing'}`,
        ].join('\n'),
      );
    });
  standby
    .command('rebuild')
    .description('failback, first step: make the OLD primary\'s data directory a standby of the NEW primary (pg_rewind, else a fresh copy)')
    .requiredOption('--data-dir <dir>', 'the old primary\'s data directory, on the worker\'s machine')
    .requiredOption('--primary <host:port>', 'the new primary (the promoted standby)')
    .option('--port <n>', 'the port the rebuilt standby listens on (default: the one it used before)', portNumber('--port'))
    .option('--host <address>', 'the address it listens on (default: dr.standby.host)')
    .example('tenantsafe standby rebuild --data-dir /var/lib/postgresql/16/main --primary 10.0.0.12:5432')
    .action(async (opts: { dataDir: string; primary: string; port?: number; host?: string }, cmd: Command) => {
      parseHostPort(opts.primary); // bad input fails here, before Temporal is asked
      const out = await withClientOf(cmd, (c) => standbyClient().rebuildStandby(c, { dataDir: opts.dataDir, primary: opts.primary, port: opts.port, host: opts.host }));
      emit(globals(cmd), out, () =>
        `${out.dataDir} is a standby of ${opts.primary} on ${out.host}:${out.port} (${out.path}${out.reason ? `: ${out.reason}` : ''}), replayed to ${out.replayLsn ?? '-'}`,
      );
    });
}
