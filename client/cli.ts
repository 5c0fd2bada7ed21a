// The `tenantsafe` CLI (the public CLI contract: README, CLI). Every command takes --json; exit 0 ok,
// 1 failed, 2 bad input. Each area's commands live in a module of their own (*Commands.ts); how
// each one's --help reads (global options, exit codes, examples) is cliCommand.ts.
//
// What is slow to load (the Temporal SDK, the worker, the dev stack) is required inside the
// actions that use it, so `--help` or a catalog query does not wait for it. require(), not
// import(): under tsx's CommonJS hook (the tests, bin/tenantsafe without a build) import() goes
// to Node's ESM loader, which cannot load TypeScript.
import { privilegeError } from '../lib/pg';
import { registerAuditCommands } from './auditCommands';
import { createProgram, standardExitCodes, type CliCommand } from './cliCommand';
import { registerDatabaseCommands } from './databaseCommands';
import { registerDrillCommands } from './drillCommands';
import { registerDrCommands } from './drCommands';
import { registerKeyCommands } from './keyCommands';
import { registerErasureCommands } from './erasureCommands';
import { registerMonitoringCommands } from './monitoringCommands';
import { reportError } from './output';
import { registerRestoreCommands } from './restoreCommands';
import { registerScheduleCommands } from './scheduleCommands';
import { registerStandbyCommands } from './standbyCommands';
import { registerStorageCommands } from './storageCommands';
import { registerDashboardCommand, registerDevCommands, registerHashSecretCommand, registerTemporalCommands, registerWorkerCommand } from './serviceCommands';
import { registerTenancyCommands } from './tenancyCommands';
import { registerCatalogCommands, registerTenantBackupCommands } from './tenantBackupCommands';

/** jsonErrors: a usage error is reported as JSON on stderr by main (--json), not as commander's text. */
export function buildProgram(opts: { jsonErrors?: boolean } = {}): CliCommand {
  const program = createProgram('tenantsafe')
    .description('Backup, point-in-time recovery and tenant-level restore for multi-tenant PostgreSQL')
    .option('--config <path>', 'tenantsafe.yaml (default: $TENANTSAFE_CONFIG, ./tenantsafe.yaml, else embedded defaults)')
    .option('--database <id>', 'with several databases in the config (`databases`): the one the command is about; required then, unless the command lists every one (docs/fleet.md). failover, switchover: the database\'s name (default: the configured one)')
    .option('--json', 'machine-readable output (JSON on stdout; an error as JSON on stderr)')
    .version((require('../package.json') as { version: string }).version, '--version', 'print the version')
    .example('tenantsafe backup tenant acme --wait', 'tenantsafe restore tenant acme --at 2026-11-25T09:30:00Z', 'tenantsafe doctor')
    .exits({ 2: `${standardExitCodes[2]}. \`check\` and \`doctor\` answer as monitoring plugins instead: 0 ok, 1 warning, 2 critical` })
    .exitOverride()
    .configureOutput({ outputError: (text, write) => (opts.jsonErrors ? undefined : write(text)) });

  // In the order `tenantsafe --help` lists them.
  const { backup, backups } = registerTenantBackupCommands(program);
  registerTenancyCommands(program);
  registerRestoreCommands(program);
  registerMonitoringCommands(program);
  registerDashboardCommand(program);
  registerHashSecretCommand(program);
  registerScheduleCommands(program);
  registerCatalogCommands(program);
  registerDatabaseCommands(program, { backup, backups });
  registerStandbyCommands(program);
  registerDrillCommands(program);
  registerStorageCommands(program);
  registerKeyCommands(program);
  registerDrCommands(program);
  registerAuditCommands(program);
  registerErasureCommands(program);
  registerWorkerCommand(program);
  registerTemporalCommands(program);
  registerDevCommands(program);
  return program;
}

export async function main(argv: string[]): Promise<number> {
  const json = argv.includes('--json');
  const program = buildProgram({ jsonErrors: json });
  try {
    await program.parseAsync(argv);
    return Number(process.exitCode ?? 0);
  } catch (err) {
    return reportError({ json }, privilegeError(err));
  }
}
