// CLI commands of encryption at rest (lib/encryption; README "Encryption at rest"): the master key
// file (`keys init`, `keys status`, `keys rotate`) and crypto-shredding a tenant's backups
// (`tenant erase-backups`). They act on the key file and storage directly: no Temporal, no worker.
import type { Command } from 'commander';
import { LocalKeyFile } from '../lib/encryption';
import { checkEraseTenant, eraseTenantBackups } from '../lib/tenantBackup/erase';
import type { CliCommand } from './cliCommand';
import { config, globals, requester, requesterOption, withEngine } from './commandHelpers';
import { emit } from './output';

export function registerKeyCommands(program: CliCommand): void {
  const keys = program.command('keys').description('the master key that wraps the data keys of encrypted backups (docs/runbooks/encryption-keys.md)');
  keys
    .command('init')
    .description('create the master key file (encryption.keyFile) with a new key; an existing file is left as it is')
    .example('tenantsafe keys init')
    .action(async (_opts: unknown, cmd: Command) => {
      const { keyFile } = config(cmd).encryption;
      const created = LocalKeyFile.create(keyFile);
      const out = { keyFile, created, masterKeyId: new LocalKeyFile(keyFile).currentKeyId() };
      emit(globals(cmd), out, () =>
        created ? `Created ${keyFile} (master key ${out.masterKeyId}). Keep a copy of it apart from the backups: without it no encrypted backup can be read.` : `${keyFile} exists already (master key ${out.masterKeyId}); left as it is.`,
      );
    });
  keys
    .command('status')
    .description('the master keys in the key file and how many data keys in storage each one wraps')
    .example('tenantsafe keys status')
    .exits({ 1: 'a data key is wrapped by a master key the key file lacks, or a key object is unreadable' })
    .action(async (_opts: unknown, cmd: Command) => {
      const out = await withEngine(cmd, (e) => e.keys.status());
      const orphaned = Object.keys(out.dataKeys).filter((id) => !out.masterKeys.includes(id));
      emit(globals(cmd), out, () =>
        [
          `Encryption of new backups: ${out.enabled ? 'on' : 'off'}. Key file ${out.keyFile}: ${out.masterKeys.length ? out.masterKeys.map((id, i) => `${id}${i === 0 ? ' (current)' : ''}`).join(', ') : 'missing'}.`,
          `Data keys in storage: ${out.tenantKeys} tenant, ${out.databaseKeys} database; by master key: ${Object.entries(out.dataKeys).map(([id, n]) => `${id} ${n}`).join(', ') || 'none'}.`,
          ...(orphaned.length ? [`NOT readable: data keys wrapped by ${orphaned.join(', ')}, which the key file lacks.`] : []),
          ...(out.unreadable.length ? [`Unreadable key objects: ${out.unreadable.join(', ')}.`] : []),
        ].join('\n'),
      );
      if (orphaned.length || out.unreadable.length) process.exitCode = 1;
    });
  keys
    .command('rotate')
    .description('make a new master key current, re-wrap every data key with it (backups are not rewritten), then drop the old master keys from the key file')
    .example('tenantsafe keys rotate')
    .exits({ 1: 'storage failed part way: run it again (it finishes what it began)', 2: 'bad input, or the key file is missing' })
    .action(async (_opts: unknown, cmd: Command) => {
      const out = await withEngine(cmd, (e) => e.keys.rotate());
      emit(globals(cmd), out, () => `Master key ${out.masterKeyId} is current; ${out.rewrapped} data keys re-wrapped; retired ${out.retired.join(', ') || 'none'}. Replace every copy of the key file with the new one.`);
    });

  const tenant = program.command('tenant').description('one tenant\'s backups as a whole');
  tenant
    .command('erase-backups <tenantId>')
    .description('crypto-shredding: destroy the tenant\'s data key, delete its tenant backups (objects and catalog rows), record it in the audit log; its parts of shared packs stay, unreadable, until retention removes the packs')
    .addOption(requesterOption('who erases (recorded in the audit log)'))
    .example('tenantsafe tenant erase-backups acme --by dpo@example.com')
    .exits({ 2: 'bad input, or a backup of the tenant is pinned (legal hold): nothing was erased' })
    .action(async (tenantId: string, opts: { by?: string }, cmd: Command) => {
      checkEraseTenant(tenantId);
      const by = requester(opts.by);
      const out = await withEngine(cmd, (e) => eraseTenantBackups(e, { tenantId, by }));
      emit(globals(cmd), out, () =>
        `Tenant ${tenantId}: data key ${out.keyDestroyed ? 'destroyed' : 'absent (its backups were not encrypted)'}; ${out.backups.length} backups erased (${out.objects} objects). Recorded in the audit log.`,
      );
    });
}
