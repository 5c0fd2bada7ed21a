// CLI commands for the two storage locations (storage.primary, storage.secondary): how far apart
// they are (`storage status`), and catching one up with the other (`storage sync`).
import type { Command } from 'commander';
import type { Engine } from '../lib/engine';
import { ErrorType, TenantsafeError } from '../lib/errors';
import { ReplicatedStore } from '../lib/storage/replicated';
import { storageStatus, syncStorage, type LocationStatus, type StorageStatus } from '../lib/storage/sync';
import type { CliCommand } from './cliCommand';
import { globals, sizeText, withEngine } from './commandHelpers';
import { emit } from './output';

function replicatedStore(e: Engine): ReplicatedStore {
  if (e.store instanceof ReplicatedStore) return e.store;
  throw new TenantsafeError(ErrorType.BadInput, `There is no secondary storage: ${e.config.source} has no storage.secondary.`, 'Add storage.secondary to the config (README, Configuration).');
}

function statusText(s: StorageStatus): string {
  const line = (name: string, l: LocationStatus) =>
    `${name.padEnd(9)} ${l.uri}: ${l.reachable ? `${l.objects} objects, ${sizeText(l.bytes)}` : `UNREACHABLE (${l.error})`}` +
    `${l.behindBy ? `, behind by ${l.behindBy} objects` : ''}${l.missedChanges ? `, ${l.missedChanges} missed changes recorded` : ''}`;
  return [line('primary', s.primary), line('secondary', s.secondary), s.inSync ? 'In sync.' : 'NOT in sync: run `tenantsafe storage sync`.'].join('\n');
}

export function registerStorageCommands(program: CliCommand): void {
  const storage = program.command('storage').description('the primary and secondary storage locations');
  storage
    .command('status')
    .description('both locations: reachable, objects, how far each is behind the other (exit 1 when not in sync)')
    .example('tenantsafe storage status')
    .exits({ 1: 'the locations are not in sync, or one is unreachable', 2: 'bad input, or no storage.secondary configured' })
    .action(async (_opts: unknown, cmd: Command) => {
      const out = await withEngine(cmd, (e) => storageStatus(replicatedStore(e)));
      emit(globals(cmd), out, () => statusText(out));
      if (!out.inSync) process.exitCode = 1;
    });
  storage
    .command('sync')
    .description('copy to each location what it lacks (deletes it missed first, manifests last), each copy read back and checked by sha256')
    .option('--verify', 'also compare the sha256 of every object both hold (reads everything)')
    .example('tenantsafe storage sync', 'tenantsafe storage sync --verify')
    .exits({ 1: 'still not in sync afterwards', 2: 'bad input, or no storage.secondary configured' })
    .action(async (opts: { verify?: boolean }, cmd: Command) => {
      const out = await withEngine(cmd, (e) => syncStorage(replicatedStore(e), { verify: opts.verify }));
      emit(globals(cmd), out, () =>
        [
          `Copied ${out.copied.secondary} objects to the secondary and ${out.copied.primary} to the primary (${sizeText(out.bytesCopied)}), each checked by sha256.`,
          ...(out.deleted.primary + out.deleted.secondary ? [`Carried out missed deletes: ${out.deleted.primary} on the primary, ${out.deleted.secondary} on the secondary.`] : []),
          ...(opts.verify ? [`Compared ${out.compared} objects on both: ${out.differed.length} differed${out.differed.length ? ` (the primary's copied over: ${out.differed.join(', ')})` : ''}.`] : []),
          statusText(out.status),
        ].join('\n'),
      );
      if (!out.status.inSync) process.exitCode = 1;
    });
}
