// The `tenantsafe` CLI (DESIGN: public contract). Every command takes --json; exit 0 ok,
// 1 failed, 2 bad input. Each area's commands live in a module of their own (*Commands.ts).
import { Command } from 'commander';
import { registerDatabaseCommands } from './databaseCommands';
import { reportError } from './output';
import { registerRestoreCommands } from './restoreCommands';
import { registerScheduleCommands } from './scheduleCommands';
import { registerDashboardCommand, registerDevCommands, registerWorkerCommand } from './serviceCommands';
import { registerTenancyCommands } from './tenancyCommands';
import { registerCatalogCommands, registerTenantBackupCommands } from './tenantBackupCommands';

export function buildProgram(): Command {
  const program = new Command('tenantsafe')
    .description('Backup, point-in-time recovery and tenant-level restore for multi-tenant PostgreSQL')
    .option('--config <path>', 'tenantsafe.yaml (default: $TENANTSAFE_CONFIG, ./tenantsafe.yaml, else embedded defaults)')
    .option('--json', 'machine-readable output')
    .showHelpAfterError()
    .exitOverride();

  // In the order `tenantsafe --help` lists them.
  const { backups } = registerTenantBackupCommands(program);
  registerTenancyCommands(program);
  registerRestoreCommands(program);
  registerDashboardCommand(program);
  const { schedule } = registerScheduleCommands(program);
  registerCatalogCommands(program);
  registerDatabaseCommands(program, { backups, schedule });
  registerWorkerCommand(program);
  registerDevCommands(program);
  return program;
}

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
    return Number(process.exitCode ?? 0);
  } catch (err) {
    return reportError({ json: argv.includes('--json') }, err);
  }
}
