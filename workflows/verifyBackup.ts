// Runbook: verify one backup, counting every problem (closed result set per check).
//   1. manifest and objects (exists, size, sha256)
//   2. physical: WAL continuity; then, when the objects are intact, pg_verifybackup and a real
//      recovery in a scratch cluster. Logical dump: pg_restore reads it.
//   3. tenant: when the objects are intact, load into a scratch schema and compare row checksums
//   4. write the report (JSON and text) to storage and the catalog
//   5. report the outcome to the alerts (unless a batch, verifyRecentBackups, alerts for it)
import { proxyActivities, workflowInfo } from '@temporalio/workflow';
import type { VerifyActivities } from '../activities/verify';
import { announce, failureOf } from './alerts';
import { requireBackupId } from './inputs';
import type { VerifyBackupInput, VerifyBackupResult } from './messages';
import { bulkCopy, shortStep } from './profiles';
import { onServedDatabase, serveDatabase } from './database';

const step = onServedDatabase(proxyActivities<VerifyActivities>(shortStep));
const long = onServedDatabase(proxyActivities<VerifyActivities>(bulkCopy));

export async function verifyBackup(input: VerifyBackupInput): Promise<VerifyBackupResult> {
  serveDatabase(input);
  const backupId = requireBackupId(input);
  // in a batch, verifyRecentBackups' one alert names this backup's failure
  const alertFailure = input?.inBatch !== true;
  const verifiedAt = new Date(workflowInfo().startTime).toISOString();
  let report: Awaited<ReturnType<typeof step.recordVerification>>;
  try {
    const start = await long.verifyManifestAndObjects({ backupId });
    const checks = [...start.checks];
    const skipped = { check: 'restore' as const, target: 'restore test', result: 'other' as const, detail: 'not run: the manifest or an object is damaged' };
    if (start.method === 'basebackup' && start.checks[0]?.result === 'ok') checks.push(...(await long.verifyWal({ backupId })));
    if (!start.intact) checks.push(skipped);
    else if (start.kind === 'full') checks.push(...(await long.restoreTestFullBackup({ backupId })));
    else checks.push(...(await long.restoreTestTenantBackup({ backupId })));
    report = await step.recordVerification({ backupId, kind: start.kind, checks, verifiedAt });
  } catch (err) {
    if (alertFailure) await announce({ kind: 'verifyBackup', outcome: 'failed', step: 'outcome', backupId, error: failureOf(err) });
    throw err;
  }
  if (report.ok) await announce({ kind: 'verifyBackup', outcome: 'succeeded', step: 'outcome', backupId });
  else if (alertFailure) await announce({ kind: 'verifyBackup', outcome: 'failed', step: 'outcome', backupId, error: { message: problemsOf(report.counts), type: 'VerificationFailed' } });
  return { backupId, ok: report.ok, counts: report.counts, checks: report.checks, reportKey: report.reportKey };
}

/** "2 problems: checksum_mismatch 1, missing 1" */
function problemsOf(counts: Record<string, number>): string {
  const bad = Object.entries(counts).filter(([result, n]) => result !== 'ok' && n > 0);
  const total = bad.reduce((sum, [, n]) => sum + n, 0);
  return `The backup failed verification: ${total} problem${total === 1 ? '' : 's'} (${bad.map(([result, n]) => `${result} ${n}`).join(', ')}). HINT: read the report (tenantsafe verify <backupId> --json, or the report in storage) and take a new backup.`;
}
