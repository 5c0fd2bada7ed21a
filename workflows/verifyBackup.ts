// Runbook: verify one backup, counting every problem (closed result set per check).
//   1. manifest and objects (exists, size, sha256)
//   2. physical: WAL continuity; then, when the objects are intact, pg_verifybackup and a real
//      recovery in a scratch cluster. Logical dump: pg_restore reads it.
//   3. tenant: when the objects are intact, load into a scratch schema and compare row checksums
//   4. write the report (JSON and text) to storage and the catalog
import { proxyActivities, workflowInfo } from '@temporalio/workflow';
import type { VerifyActivities } from '../activities/verify';
import { requireBackupId } from './inputs';
import type { VerifyBackupInput, VerifyBackupResult } from './messages';
import { bulkCopy, shortStep } from './profiles';

const step = proxyActivities<VerifyActivities>(shortStep);
const long = proxyActivities<VerifyActivities>(bulkCopy);

export async function verifyBackup(input: VerifyBackupInput): Promise<VerifyBackupResult> {
  const backupId = requireBackupId(input);
  const verifiedAt = new Date(workflowInfo().startTime).toISOString();
  const start = await long.verifyManifestAndObjects({ backupId });
  const checks = [...start.checks];
  const skipped = { check: 'restore' as const, target: 'restore test', result: 'other' as const, detail: 'not run: the manifest or an object is damaged' };
  if (start.method === 'basebackup' && start.checks[0]?.result === 'ok') checks.push(...(await long.verifyWal({ backupId })));
  if (!start.intact) checks.push(skipped);
  else if (start.kind === 'full') checks.push(...(await long.restoreTestFullBackup({ backupId })));
  else checks.push(...(await long.restoreTestTenantBackup({ backupId })));
  const report = await step.recordVerification({ backupId, kind: start.kind, checks, verifiedAt });
  return { backupId, ok: report.ok, counts: report.counts, checks: report.checks, reportKey: report.reportKey };
}
