// CLI commands for whole-database work (the public CLI contract: README, CLI): backup full (once
// `full-backup`, still taken), pitr window, pitr restore, a logical dump restored elsewhere, verify,
// retention, pins and the WAL archiver. Their daily schedules are in scheduleCommands.ts.
import type { Command } from 'commander';
import { ErrorType, TenantsafeError } from '../lib/errors';
import { restoreLogicalDump } from '../lib/fullBackup/logicalDump';
import { createFullBackupProvider } from '../lib/fullBackup/provider';
import { microsText, withClient } from '../lib/pg';
import { pitrTargetOf } from '../lib/pitr/window';
import { checkPinReason, listPins, pinRecorded, unpinRecorded } from '../lib/retention/pins';
import { findWalGaps, listWalArchive, newestSegment } from '../lib/wal/archive';
import { dropWalSlot, walSlotState, type WalSlotState } from '../lib/wal/archiver';
import { workflowScopes } from '../lib/databaseIdentity';
import { changeLogState, prepareChangeLog } from '../lib/changeLog/capture';
import type { CliCommand } from './cliCommand';
import { backupIdArg, fromOption, fromOptionHelp, globals, list, listAcrossDatabases, nonEmpty, portNumber, requester, requesterOption, sizeText, withClientOf, withEngine } from './commandHelpers';
import { locateBackup } from '../lib/verification/verifyBackup';
import { emit, table } from './output';
import { databaseWorkflowIds, type ChangeLogStatus } from '../workflows/messages';

// Required on use: it loads the Temporal SDK (see cli.ts).
const fullBackups = () => require('./fullBackups') as typeof import('./fullBackups');

/** `backup full` and its old name `full-backup`: one definition, so options and output cannot drift apart. */
function fullBackupCommand(cmd: CliCommand, example: string): void {
  cmd
    .option('--wait', 'wait for the backup to finish')
    .example(`${example} --wait`, `${example} --json   # returns once checked: status running`)
    .exits({ 1: 'the backup failed (with --wait), or Temporal, the database or storage is unreachable' })
    .action(async (opts: { wait?: boolean }, cmd: Command) => {
      const out = await withClientOf(cmd, (c) => fullBackups().startFullBackup(c, opts));
      emit(globals(cmd), out, () =>
        out.status === 'completed'
          ? `Full backup ${out.backupId} (${out.kind}): ${sizeText(out.bytes)}${out.startLsn ? `, WAL ${out.startLsn} to ${out.stopLsn}` : ''}, finished ${out.finishedAt}`
          : `Full backup ${out.backupId} is running (workflow ${out.workflowId})`,
      );
    });
}

/** Newest first, as every list of the CLI (ties: the higher id first). */
function newestFirst<T>(rows: T[], at: (r: T) => string, id: (r: T) => string): T[] {
  return [...rows].sort((a, b) => Date.parse(at(b)) - Date.parse(at(a)) || id(b).localeCompare(id(a)));
}

export function registerDatabaseCommands(program: CliCommand, parents: { backup: CliCommand; backups: CliCommand }): void {
  const description = 'back up the whole database (postgres: base backup + WAL archive; supabase: pg_dump into our storage)';
  fullBackupCommand(parents.backup.command('full').description(`${description}; \`tenantsafe full-backup\` is its old name`), 'tenantsafe backup full');
  // the old name, hidden from the command list: same options, same output
  fullBackupCommand(program.command('full-backup', { hidden: true }).description(`${description} (the old name of \`tenantsafe backup full\`)`), 'tenantsafe full-backup');

  const fullBackupsCommand = program.command('full-backups').description('whole-database backups: list them, restore a logical dump elsewhere');
  fullBackupsCommand
    .command('restore <backupId>')
    .description('restore a logical dump (provider supabase) into another, empty database: a new project after the first is lost')
    .requiredOption('--into <url>', 'the new database (postgres://…); the schemas restored must not hold tables there')
    .option('--schemas <list>', 'the schemas to restore (default: tenancy.schemas)', list)
    .example('tenantsafe full-backups restore 20261125-020000F-1a2b3c --into postgres://postgres@new-project:5432/postgres')
    .exits({ 2: 'bad input, a base backup (not a dump), or the schemas already hold tables there (nothing written)' })
    .action(async (backupId: string, opts: { into: string; schemas?: string[] }, cmd: Command) => {
      backupIdArg(backupId);
      if (!/^postgres(ql)?:\/\/[^/]/.test(opts.into) || !URL.canParse(opts.into)) {
        throw new TenantsafeError(ErrorType.BadInput, '--into must be a postgres:// URL of the new database.', 'Pass --into postgres://user@host:5432/dbname.');
      }
      const out = await withEngine(cmd, (e) => restoreLogicalDump(e, { backupId, targetUrl: opts.into, schemas: opts.schemas }));
      emit(globals(cmd), out, () => `Restored dump ${out.backupId} (as of ${out.consistentAt}) into the new database: schemas ${out.schemas.join(', ')}, ${out.files} files, ${sizeText(out.bytes)} checked, in ${(out.durationMs / 1000).toFixed(1)} s`);
    });
  fullBackupsCommand
    .command('list')
    .description('full backups in our storage, newest first; with several databases, every one\'s (a database column) unless --database names one (--provider: the provider\'s own list, e.g. Supabase\'s, newest first too, of one database)')
    .option('--provider', 'list the provider\'s backups instead')
    .example('tenantsafe full-backups list', 'tenantsafe full-backups list --provider')
    .action(async (opts: { provider?: boolean }, cmd: Command) => {
      if (opts.provider) {
        const out = await withEngine(cmd, async (e) => newestFirst(await createFullBackupProvider(e).listProviderBackups(), (b) => b.at, (b) => b.id));
        return emit(globals(cmd), out, () => table(out as unknown as Record<string, unknown>[], Object.keys(out[0] ?? { backupId: 1 })));
      }
      const { rows: out, columns } = await listAcrossDatabases(
        cmd,
        // the catalog lists oldest first (retention and the window read it so): reversed
        async (e) => (await e.catalog.listFullBackups()).reverse().map((b) => ({ backupId: b.backupId, method: b.method, bytes: b.bytes, consistentAt: b.consistentAt, startLsn: b.wal?.startLsn ?? null, stopLsn: b.wal?.stopLsn ?? null })),
        { by: (b) => b.consistentAt },
        ['backupId', 'method', 'bytes', 'consistentAt', 'startLsn', 'stopLsn'],
      );
      emit(globals(cmd), out, () => table(out as unknown as Record<string, unknown>[], columns));
    });

  const pitr = program.command('pitr').description('point-in-time recovery');
  pitr
    .command('window')
    .description('the earliest and latest restorable times')
    .option('--from <location>', 'as this storage location alone holds them: secondary or primary; default: both')
    .example('tenantsafe pitr window', 'tenantsafe pitr window --from secondary')
    .action(async (opts: { from?: string }, cmd: Command) => {
      const out = await withEngine(cmd, (e) => createFullBackupProvider(e.from(opts.from)).window());
      emit(globals(cmd), out, () => (out.earliest ? `Recoverable from ${out.earliest} to ${out.latest}` : 'Nothing is recoverable yet: take a full backup (`tenantsafe backup full --wait`).'));
    });
  pitr
    .command('restore')
    .description('restore into a NEW cluster at --target (an empty directory), replaying WAL to the target point')
    .option('--at <time>', 'an ISO-8601 time with zone, e.g. 2026-11-25T05:30:00Z')
    .option('--lsn <lsn>', 'a WAL position, e.g. 0/3000148')
    .option('--name <point>', 'a restore point made with pg_create_restore_point (or `tenantsafe pitr mark`)')
    .option('--latest', 'everything the archive holds')
    .requiredOption('--target <dir>', 'an empty data directory (supabase: the project ref, to confirm an in-place restore)')
    .option('--port <n>', 'start the restored cluster on this port and leave it running', portNumber('--port'))
    .option('--from <location>', fromOptionHelp)
    .exactlyOneOf('Recovery target', '--at', '--lsn', '--name', '--latest')
    .example(
      'tenantsafe pitr restore --at 2026-11-25T05:30:00Z --target /srv/restore/pg --port 5433',
      'tenantsafe pitr restore --name before-migration --target /srv/restore/pg',
      'tenantsafe pitr restore --latest --target /srv/restore/pg',
    )
    .exits({ 1: 'the restore failed (recovery did not finish, storage unreachable)', 2: 'bad input: no or two targets, a target outside the window, a target directory that is not empty' })
    .action(async (opts: { at?: string; lsn?: string; name?: string; latest?: boolean; target: string; port?: number; from?: string }, cmd: Command) => {
      pitrTargetOf(opts); // bad input fails here, before Temporal is asked
      const from = fromOption(cmd, opts.from);
      const out = await withClientOf(cmd, (c) =>
        fullBackups().restorePointInTime(c, { at: opts.at, lsn: opts.lsn, name: opts.name, latest: opts.latest, target: opts.target, port: opts.port, ...(from ? { from } : {}) }),
      );
      emit(globals(cmd), out, () =>
        `Restored to ${out.recoveredTo ?? '(no transaction replayed)'} (LSN ${out.lsn ?? '-'})${out.dataDir ? ` in ${out.dataDir}` : ''}${out.port ? `, running on port ${out.port}` : out.dataDir ? ', stopped' : ''}`,
      );
    });
  pitr
    .command('mark <name>')
    .description('create a named restore point in the database (pg_create_restore_point), for `pitr restore --name`')
    .example('tenantsafe pitr mark before-migration')
    .action(async (name: string, _opts: unknown, cmd: Command) => {
      nonEmpty(name, 'The restore point name', 'Pass a name: `tenantsafe pitr mark before-migration`.');
      // PostgreSQL's limit (MAXFNAMELEN): a longer name is refused by pg_create_restore_point
      if (Buffer.byteLength(name) > 63) throw new TenantsafeError(ErrorType.BadInput, `The restore point name is ${Buffer.byteLength(name)} bytes; PostgreSQL takes at most 63.`, 'Pass a shorter name.');
      const out = await withEngine(cmd, (e) =>
        withClient(e.db, e.config.database.url, async (c) => {
          const r = await c.query<{ lsn: string; at: string }>(`SELECT pg_create_restore_point($1)::text AS lsn, ${microsText('clock_timestamp()')} AS at`, [name]);
          return { name, lsn: r.rows[0].lsn, at: r.rows[0].at };
        }),
      );
      emit(globals(cmd), out, () => `Restore point "${out.name}" at LSN ${out.lsn} (${out.at})`);
    });

  program
    .command('verify <backupId>')
    .description('verify a backup: object checksums, WAL, pg_verifybackup, a real restore test; exit 1 when a check fails')
    .example('tenantsafe verify 20261125-020000F-1a2b3c', 'tenantsafe verify 20261125-093000T-1a2b3c --json')
    .exits({ 1: 'a check failed (missing object, checksum mismatch, restore test), or the verification could not run' })
    .action(async (backupId: string, _opts: unknown, cmd: Command) => {
      backupIdArg(backupId);
      const r = await withClientOf(cmd, (c) => fullBackups().verifyBackupNow(c, backupId));
      if (!r.ok) process.exitCode = 1;
      emit(globals(cmd), { ok: r.ok, checks: r.checks }, () =>
        [`${r.backupId}: ${r.ok ? 'OK' : 'PROBLEMS FOUND'} (${Object.entries(r.counts).map(([k, n]) => `${k} ${n}`).join(', ')}); report ${r.reportKey}`, ...r.checks.map((c) => `  [${c.result}] ${c.check} ${c.target}${c.detail ? ` — ${c.detail}` : ''}`)].join('\n'),
      );
    });

  program
    .command('retention')
    .description('the retention policy (retention: in the config)')
    .command('apply')
    .description('delete what the retention policy does not keep (backups, WAL and change-log segments no kept backup needs, interrupted backups)')
    .option('--dry-run', 'only report what it would delete')
    .addOption(requesterOption('who asks (recorded in the audit log)'))
    .example('tenantsafe retention apply --dry-run', 'tenantsafe retention apply --by alice')
    .action(async (opts: { dryRun?: boolean; by?: string }, cmd: Command) => {
      const by = requester(opts.by);
      const out = await withClientOf(cmd, (c) => fullBackups().applyRetentionNow(c, !!opts.dryRun, by));
      const verb = out.dryRun ? 'would remove' : 'removed';
      emit(globals(cmd), out, () =>
        [
          `Kept ${out.kept.length} backups; ${verb} ${out.removedBackups.length} backups, ${out.removedWalSegments} WAL segments, ${out.removedChangeSegments ?? 0} change-log segments, ${out.removedIncomplete.length} interrupted backups.`,
          ...out.removedBackups.map((id) => `  ${verb} ${id}`),
          ...(out.changeLogCuts ?? []).map((c) => `  change log ${c.stream}: ${c.upTo ? `segments ending at or before ${c.upTo} go (${c.by})` : `all kept (${c.by})`}`),
        ].join('\n'),
      );
    });

  parents.backups
    .command('pin <backupId>')
    .description('put a legal hold on a backup: retention never deletes it (recorded in the audit log)')
    .requiredOption('--reason <text>', 'why (a ticket, a legal matter)')
    .addOption(requesterOption())
    .example('tenantsafe backups pin 20261125-020000F-1a2b3c --reason "LEGAL-42"')
    .action(async (backupId: string, opts: { reason: string; by?: string }, cmd: Command) => {
      const by = requester(opts.by);
      backupIdArg(backupId);
      checkPinReason(opts.reason);
      const out = await withEngine(cmd, async (e) => {
        await locateBackup(e, backupId); // a pin of a backup that does not exist holds nothing: BackupNotFound
        return pinRecorded(e, { backupId, reason: opts.reason, by, at: new Date().toISOString() });
      });
      emit(globals(cmd), out, () => `Pinned ${backupId}: ${opts.reason}`);
    });
  parents.backups
    .command('unpin <backupId>')
    .description('lift the legal hold (recorded in the audit log)')
    .addOption(requesterOption())
    .example('tenantsafe backups unpin 20261125-020000F-1a2b3c', 'tenantsafe backups unpin 20261125-020000F-1a2b3c --by alice')
    .action(async (backupId: string, opts: { by?: string }, cmd: Command) => {
      const by = requester(opts.by);
      const removed = await withEngine(cmd, (e) => unpinRecorded(e, backupId, by));
      if (!removed) throw new TenantsafeError(ErrorType.BadInput, `Backup ${backupId} is not pinned.`, 'List pins with `tenantsafe backups pins`.');
      emit(globals(cmd), { unpinned: backupId }, () => `Unpinned ${backupId}`);
    });
  parents.backups
    .command('pins')
    .description('backups under legal hold, newest pin first')
    .example('tenantsafe backups pins')
    .action(async (_opts: unknown, cmd: Command) => {
      const out = await withEngine(cmd, async (e) => newestFirst(await listPins(e.store), (p) => p.at, (p) => p.backupId));
      emit(globals(cmd), out, () => table(out as unknown as Record<string, unknown>[], ['backupId', 'reason', 'by', 'at']));
    });

  const changelog = program.command('changelog').description('the change log (logical decoding) that tenant point-in-time restores replay');
  changelog
    .command('start')
    .description('start streaming committed changes of the tenant-owned tables into storage (needs wal_level logical)')
    .example('tenantsafe changelog start')
    .exits({ 2: 'bad input, or the database or config is not ready for it (wal_level, changeLog.enabled): nothing started' })
    .action(async (_opts: unknown, cmd: Command) => {
      const { scope, state } = await withEngine(cmd, async (e) => {
        if (!e.config.changeLog.enabled) {
          // tenant backups take their boundary with the log only when it is enabled: without, it would have nothing to extend
          throw new TenantsafeError(ErrorType.BadConfig, 'changeLog.enabled is false: tenant backups would take no boundary for the log to start from.', 'Set changeLog.enabled: true in the config (then restart the workers), and start it again.');
        }
        await prepareChangeLog(e); // bad configuration fails here, at the command line
        return { scope: (await workflowScopes(e)).changeLog, state: await changeLogState(e) };
      });
      const status = await withClientOf(cmd, (c) => fullBackups().startChangeLog(c, scope));
      const out = { ...status, workflowId: databaseWorkflowIds.changeLog(scope), warnings: changeLogWarnings(state, status) };
      emit(globals(cmd), out, () => [`Change log ${out.state} (workflow ${out.workflowId})`, ...out.warnings.map((w) => `warning: ${w}`)].join('\n'));
    });
  changelog
    .command('stop')
    .description('stop it (it stores what it received first); the slot stays, so nothing committed meanwhile is lost when it starts again')
    .example('tenantsafe changelog stop')
    .action(async (_opts: unknown, cmd: Command) => {
      const scope = await withEngine(cmd, async (e) => (await workflowScopes(e)).changeLog);
      const stopped = await withClientOf(cmd, (c) => fullBackups().stopChangeLog(c, scope));
      emit(globals(cmd), { stopped }, () => (stopped ? 'Change log stopped' : 'The change log was not running'));
    });
  changelog
    .command('status')
    .description('how far the log reaches, its gaps, the slot: its lag and whether the server may drop WAL it needs')
    .example('tenantsafe changelog status', 'tenantsafe changelog status --json')
    .exits({ 1: 'a warning: not running or backing off, the slot missing, lost or unreserved, max_slot_wal_keep_size unlimited' })
    .action(async (_opts: unknown, cmd: Command) => {
      const { scope, ...log } = await withEngine(cmd, async (e) => ({ scope: (await workflowScopes(e)).changeLog, ...(await changeLogState(e)) }));
      const streaming = await withClientOf(cmd, (c) => fullBackups().changeLogStatus(c, scope)).catch(() => null);
      const out = { ...log, workflowId: databaseWorkflowIds.changeLog(scope), streaming, warnings: changeLogWarnings(log, streaming) };
      emit(globals(cmd), out, () =>
        [
          `Change log ${out.stream ?? '(none yet)'}: ${out.startedAt ? `since ${out.startedAt}, ` : ''}stored to ${out.durable?.time ?? '-'} (${out.durable?.lsn ?? '-'}), caught up to ${out.caughtUpAt ?? '-'}`,
          `Slot ${out.slot.name}: ${out.slot.exists ? `${out.slot.walStatus}, ${sizeText(out.slot.lagBytes)} behind${out.slot.safeWalBytes !== null ? `, ${sizeText(out.slot.safeWalBytes)} before the server may drop WAL it needs` : ' (max_slot_wal_keep_size unlimited)'}` : 'missing'}`,
          `Streaming: ${streaming ? `${streaming.state}, ${streaming.restarts} restarts${streaming.lastError ? `, last error: ${streaming.lastError}` : ''}` : 'not running'}`,
          ...(out.gaps.length ? out.gaps.map((g) => `gap: ${g.fromTime ?? '?'} to ${g.toTime} (${g.reason})`) : ['No gaps.']),
          ...out.warnings.map((w) => `WARNING: ${w}`),
        ].join('\n'),
      );
      // gaps are history (restore windows show them); what needs a person now is a warning
      if (out.warnings.length) process.exitCode = 1;
    });

  const wal = program.command('wal').description('the WAL archiver (postgres provider)');
  wal
    .command('start')
    .description('start archiving WAL (the first full backup starts it too)')
    .example('tenantsafe wal start')
    .action(async (_opts: unknown, cmd: Command) => {
      const scope = await withEngine(cmd, async (e) => (await workflowScopes(e)).walArchiver);
      const out = await withClientOf(cmd, (c) => fullBackups().startWalArchiver(c, scope));
      emit(globals(cmd), out, () => `WAL archiver ${out.state}`);
    });
  wal
    .command('stop')
    .description('stop archiving WAL (point-in-time recovery stops at the last archived moment); its replication slot stays unless --drop-slot, and the primary keeps WAL for it')
    .option('--drop-slot', 'also drop the archiver\'s replication slot (fullBackup.slot), so the primary stops keeping WAL for it; the next full backup or `wal start` makes a new one')
    .example('tenantsafe wal stop --drop-slot   # for good', 'tenantsafe wal stop              # for a while: the slot keeps WAL until `tenantsafe wal start`')
    .exits({ 2: 'bad input, or --drop-slot while a full backup runs (it needs the slot)' })
    .action(async (opts: { dropSlot?: boolean }, cmd: Command) => {
      const { scope, url, slotName } = await withEngine(cmd, async (e) => ({ scope: (await workflowScopes(e)).walArchiver, url: e.config.database.url, slotName: e.config.fullBackup.slot }));
      const stopped = await withClientOf(cmd, async (c) => {
        if (opts.dropSlot && (await fullBackups().fullBackupRunning(c))) {
          throw new TenantsafeError(ErrorType.BadInput, `A full backup is running: it needs replication slot "${slotName}" until the archive reaches its end.`, 'Wait for it to finish (`tenantsafe full-backups list`), then run `tenantsafe wal stop --drop-slot` again.');
        }
        return fullBackups().stopWalArchiver(c, scope);
      });
      const slot = opts.dropSlot ? { ...(await dropWalSlot(url, slotName)), dropped: true } : { ...(await walSlotState(url, slotName)), dropped: false };
      const out = { stopped, slot: { name: slot.name, existed: slot.exists, dropped: slot.dropped && slot.exists, retainedBytes: slot.retainedBytes }, warnings: slotWarnings(slot) };
      emit(globals(cmd), out, () =>
        [
          stopped ? 'WAL archiver stopped' : 'The WAL archiver was not running',
          ...(out.slot.dropped ? [`Replication slot "${slot.name}" dropped: the primary keeps no WAL for it any more (${sizeText(slot.retainedBytes)} released).`] : []),
          ...out.warnings.map((w) => `warning: ${w}`),
        ].join('\n'),
      );
    });
  wal
    .command('status')
    .description('the archive: newest segment, gaps, and whether the archiver runs')
    .example('tenantsafe wal status')
    .exits({ 1: 'the archive has a gap' })
    .action(async (_opts: unknown, cmd: Command) => {
      const archive = await withEngine(cmd, async (e) => {
        const listing = await listWalArchive(e.store);
        const segmentSize = (await e.catalog.listFullBackups()).find((b) => b.wal)?.wal?.segmentSize ?? 16 * 1024 * 1024;
        return { scope: (await workflowScopes(e)).walArchiver, segments: listing.segments.length, newestSegment: newestSegment(listing), partial: listing.partials.at(-1)?.name ?? null, gaps: findWalGaps(listing, segmentSize) };
      });
      const { scope, ...listed } = archive;
      const archiver = await withClientOf(cmd, (c) => fullBackups().walArchiverStatus(c, scope)).catch(() => null);
      const out = { ...listed, archiver };
      emit(globals(cmd), out, () =>
        [
          `WAL archive: ${out.segments} segments, newest ${out.newestSegment ?? '-'}${out.partial ? ` (being written)` : ''}`,
          `Archiver: ${archiver ? `${archiver.state}, ${archiver.restarts} restarts${archiver.lastError ? `, last error: ${archiver.lastError}` : ''}` : 'not running'}`,
          ...(out.gaps.length ? out.gaps.map((g) => `GAP: ${g.from}..${g.to} (${g.count} segments)`) : ['No gaps.']),
        ].join('\n'),
      );
      if (out.gaps.length) process.exitCode = 1;
    });
}

/** The archiver's slot left in place by `wal stop`: the WAL it keeps piles up on the primary. */
function slotWarnings(slot: WalSlotState & { dropped: boolean }): string[] {
  if (slot.dropped || !slot.exists) return [];
  const bound = slot.maxSlotWalKeepSize === '-1' ? 'without bound (max_slot_wal_keep_size is unlimited) until its disk is full' : `up to max_slot_wal_keep_size (${slot.maxSlotWalKeepSize}), then the slot is invalidated and the archive gets a gap`;
  return [
    `replication slot "${slot.name}" stays (it holds ${sizeText(slot.retainedBytes)} of WAL now): the primary keeps every WAL segment from its position, ${bound}, unless the archiver starts again (\`tenantsafe wal start\`). ` +
      `To stop for good, drop it: \`tenantsafe wal stop --drop-slot\`, or in SQL: SELECT pg_drop_replication_slot('${slot.name}');`,
  ];
}

/** What about the change log needs a person now: it is not streaming, its slot is gone or in danger, or nothing bounds the WAL the slot holds. */
function changeLogWarnings(log: Awaited<ReturnType<typeof changeLogState>>, streaming: ChangeLogStatus | null): string[] {
  return [
    ...(streaming === null ? ['the change log is not running: `tenantsafe changelog start`'] : []),
    ...(streaming?.state === 'backing-off' ? [`the change log is backing off after an error: ${streaming.lastError}`] : []),
    ...(!log.slot.exists ? [`slot ${log.slot.name} is missing: commits are not logged until the log starts again, and that will be a gap`] : []),
    ...(log.slot.walStatus === 'lost' || log.slot.walStatus === 'unreserved'
      ? [`slot ${log.slot.name} is ${log.slot.walStatus}: the server ${log.slot.walStatus === 'lost' ? 'removed' : 'is about to remove'} WAL it needs; that will be a gap`]
      : []),
    ...(log.maxSlotWalKeepBytes === null
      ? ['max_slot_wal_keep_size is unlimited: a log that stops reading keeps WAL until the disk is full; set it (ALTER SYSTEM SET max_slot_wal_keep_size = \'…GB\', then SELECT pg_reload_conf())']
      : []),
  ];
}
