// npm run bench: every benchmark, one after another.
import { execFileSync } from 'node:child_process';
import * as path from 'node:path';

for (const name of ['tenantBackup', 'tenantBackupsAll', 'tenantRestore', 'fullBackup', 'tenantPitr', 'monitoring', 'dashboard', 'failover', 'drill']) {
  execFileSync(process.execPath, ['--import', 'tsx', path.join(__dirname, `${name}.ts`)], { stdio: 'inherit' });
}
