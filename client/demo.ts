// The main job end to end, on the embedded defaults (README command 1): bring the stack up,
// show the tenancy plan, back up a tenant through Temporal, and show what was stored.
import { withClient } from '../lib/pg';
import { discoverTenancy } from '../lib/tenancy';
import { TenantsafeClient, type TenantBackupOutcome } from './client';
import { startDevStack, type DevStackOptions } from './dev';

export interface DemoResult {
  tenantId: string;
  ownedTables: number;
  globalTables: string[];
  backup: TenantBackupOutcome;
  listed: boolean;
  uiUrl: string | undefined;
}

export async function runDemo(opts: DevStackOptions & { tenantId: string; keep: boolean }): Promise<DemoResult> {
  const stack = await startDevStack(opts);
  const client = await TenantsafeClient.connect(stack.config.temporal);
  try {
    const { engine } = stack.worker;
    const plan = await withClient(engine.db, stack.config.database.url, (c) => discoverTenancy(c, stack.config.tenancy));
    opts.log(`tenancy: ${plan.tables.length} tenant-owned tables, global: ${plan.globalTables.map((g) => g.key).join(', ')}`);

    opts.log(`backup: tenant ${opts.tenantId} ...`);
    const backup = await client.backupTenant(opts.tenantId, { wait: true });
    opts.log(`backup: ${backup.backupId}: ${backup.rows} rows, ${backup.bytes} bytes, snapshot at ${backup.snapshotAt}`);
    const listed = (await engine.catalog.listBackups({ tenantId: opts.tenantId })).some((b) => b.backupId === backup.backupId);
    opts.log(`catalog: ${listed ? 'lists' : 'does NOT list'} ${backup.backupId}`);
    if (stack.uiUrl) opts.log(`Temporal UI: ${stack.uiUrl}/namespaces/${stack.config.temporal.namespace}/workflows`);

    if (opts.keep) {
      opts.log('the stack stays up; Ctrl-C stops it');
      await new Promise<void>((resolve) => process.once('SIGINT', () => resolve()).once('SIGTERM', () => resolve()));
    }
    return {
      tenantId: opts.tenantId,
      ownedTables: plan.tables.length,
      globalTables: plan.globalTables.map((g) => g.key),
      backup,
      listed,
      uiUrl: stack.uiUrl,
    };
  } finally {
    await client.close();
    await stack.stop();
  }
}
