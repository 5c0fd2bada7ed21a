// The main job end to end, on the embedded defaults (README command 1):
//   bring the stack up → show the tenancy plan → back up a tenant → damage it (deletes in parent
//   and child tables, updates, new rows) → preview a restore as one person → approve it as
//   another → apply → verify → show that the tenant equals its backup again.
import { withClient } from '../lib/pg';
import { damageTenant } from '../sample/damage';
import { discoverTenancy } from '../lib/tenancy';
import type { TenantRestoreResult } from '../workflows/messages';
import { TenantsafeClient, type TenantBackupOutcome } from './client';
import { startDevStack, type DevStackOptions } from './dev';

export interface DemoResult {
  tenantId: string;
  ownedTables: number;
  globalTables: string[];
  backup: TenantBackupOutcome;
  restore: {
    restoreId: string;
    requestedBy: string;
    approvedBy: string;
    previewDigest: string;
    preview: Record<string, { insert: number; update: number; delete: number }>;
    outcome: TenantRestoreResult;
  };
  /** every table's row checksum equals the backup manifest's */
  tenantMatchesBackup: boolean;
  uiUrl: string | undefined;
  /** the dashboard's address, while the stack runs */
  dashboardUrl: string | undefined;
}

const requester = 'demo-operator';
const approver = 'demo-approver';

export async function runDemo(opts: DevStackOptions & { tenantId: string; keep: boolean }): Promise<DemoResult> {
  const { log, tenantId } = opts;
  const stack = await startDevStack(opts);
  const client = await TenantsafeClient.connect(stack.config.temporal);
  try {
    const { engine } = stack.worker;
    const { url } = stack.config.database;
    const plan = await withClient(engine.db, url, (c) => discoverTenancy(c, stack.config.tenancy));
    log(`tenancy: ${plan.tables.length} tenant-owned tables, global: ${plan.globalTables.map((g) => g.key).join(', ')}`);

    log(`1. backup of tenant ${tenantId} ...`);
    const backup = await client.backupTenant(tenantId, { wait: true });
    log(`   ${backup.backupId}: ${backup.rows} rows, ${backup.bytes} bytes, snapshot at ${backup.snapshotAt}`);

    log(`2. damage: delete projects with their tasks and comments, update users and tasks, add rows ...`);
    await withClient(engine.db, url, (c) => damageTenant(c, tenantId));

    log(`3. restore preview, requested by ${requester} ...`);
    const requested = await client.restores.request({ tenantId, backupId: backup.backupId, requestedBy: requester });
    if (requested.state !== 'awaiting-approval' || !requested.preview || !requested.previewDigest) {
      throw new Error(`the restore did not reach approval: ${requested.state} ${requested.error ?? ''}`);
    }
    for (const [table, t] of Object.entries(requested.preview.tables)) {
      if (t.insert + t.update + t.delete > 0) log(`   ${table.padEnd(18)} insert ${t.insert}, update ${t.update}, delete ${t.delete}`);
    }
    log(`   preview digest ${requested.previewDigest}`);

    log(`4. approval by ${approver} (the requester may not approve) ...`);
    const ref = { workflowId: requested.workflowId };
    const outcome = (await client.restores.approve(ref, { by: approver, digest: requested.previewDigest }, { wait: true })) as TenantRestoreResult;
    log(`   ${outcome.state}; safety backup ${outcome.safetyBackupId} (undo: restore it the same way)`);

    const verification = outcome.verification;
    log(`5. verification: ${verification?.ok ? 'every table\'s checksum equals the backup\'s, other tenants unchanged' : 'FAILED'}`);
    for (const t of verification?.tables ?? []) if (!t.ok) log(`   ${t.table}: expected ${t.expected}, got ${t.actual}`);
    if (stack.uiUrl) log(`Temporal UI: ${stack.uiUrl}/namespaces/${stack.config.temporal.namespace}/workflows`);
    if (stack.dashboardUrl) log(`Dashboard: ${stack.dashboardUrl}/restores/${encodeURIComponent(requested.restoreId)}`);

    if (opts.keep) {
      log('the stack stays up; Ctrl-C stops it');
      await new Promise<void>((resolve) => process.once('SIGINT', () => resolve()).once('SIGTERM', () => resolve()));
    }
    return {
      tenantId,
      ownedTables: plan.tables.length,
      globalTables: plan.globalTables.map((g) => g.key),
      backup,
      restore: { restoreId: requested.restoreId, requestedBy: requester, approvedBy: approver, previewDigest: requested.previewDigest, preview: requested.preview.tables, outcome },
      tenantMatchesBackup: outcome.state === 'done' && !!verification?.ok,
      uiUrl: stack.uiUrl,
      dashboardUrl: stack.dashboardUrl,
    };
  } finally {
    await client.close();
    await stack.stop();
  }
}
