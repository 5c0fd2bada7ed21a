// Verification and retention activities: thin steps over lib/verify and lib/retention.
import type { Engine } from '../lib/engine';
import type { FullManifest } from '../lib/format/fullManifest';
import type { TenantManifest } from '../lib/format/tenantManifest';
import { runRetention, type RetentionOutcome } from '../lib/retention/run';
import {
  checkLogicalDump,
  checkManifestAndObjects,
  checkWal,
  formatReport,
  locateBackup,
  readBackupManifest,
  restoreTestPhysical,
  restoreTestTenant,
  summarizeChecks,
  writeReport,
  type VerificationCheck,
  type VerificationReport,
} from '../lib/verification/verifyBackup';
import { withFailures } from './failures';
import { heartbeatEvery } from './tenantBackup';
import { Context } from '@temporalio/activity';

export interface BackupIdRef {
  backupId: string;
}

/** What the first verification step found: enough for the workflow to choose the next checks. */
export interface VerificationStart {
  kind: 'full' | 'tenant';
  /** physical base backup, logical dump, or a tenant backup */
  method: 'basebackup' | 'pg_dump' | 'tenant';
  /** the manifest was read and every object is intact */
  intact: boolean;
  checks: VerificationCheck[];
}

export function createVerifyActivities(engine: Engine) {
  const manifestOf = async (backupId: string) => {
    const located = await locateBackup(engine, backupId);
    return { located, manifest: await readBackupManifest(engine.store, located) };
  };
  /** Runs `work` with a heartbeat, so a long check on a dead worker is retried elsewhere. */
  const beating = async <T>(work: () => Promise<T>): Promise<T> => {
    const stop = heartbeatEvery(5000, () => ({ phase: 'verifying' }));
    try {
      return await work();
    } finally {
      stop();
    }
  };

  return withFailures({
    /** Every object read and checked; a retry after a killed worker reads only those its heartbeat did not list as checked. */
    async verifyManifestAndObjects({ backupId }: BackupIdRef): Promise<VerificationStart> {
      const earlier = (Context.current().info.heartbeatDetails as { checks?: VerificationCheck[] } | undefined)?.checks;
      let checked = earlier ?? [];
      const stop = heartbeatEvery(5000, () => ({ phase: 'verifying', checks: checked }));
      try {
        const located = await locateBackup(engine, backupId);
        const { checks, manifest } = await checkManifestAndObjects(engine.store, located, { earlier, onCheck: (c) => (checked = [...c]) });
        const method = !manifest ? (located.kind === 'full' ? 'basebackup' : 'tenant') : 'tables' in manifest ? 'tenant' : manifest.method;
        return { kind: located.kind, method, intact: manifest !== null && checks.every((c) => c.result === 'ok'), checks };
      } finally {
        stop();
      }
    },

    async verifyWal({ backupId }: BackupIdRef): Promise<VerificationCheck[]> {
      return beating(async () => checkWal(engine.store, (await manifestOf(backupId)).manifest as FullManifest));
    },

    async restoreTestFullBackup({ backupId }: BackupIdRef): Promise<VerificationCheck[]> {
      return beating(async () => {
        const { located, manifest } = await manifestOf(backupId);
        const m = manifest as FullManifest;
        if (m.method === 'pg_dump') return checkLogicalDump(engine.store, located.prefix, m);
        const backup = { backupId, prefix: located.prefix, wal: m.wal };
        return restoreTestPhysical(engine, backup, Context.current().cancellationSignal);
      });
    },

    async restoreTestTenantBackup({ backupId }: BackupIdRef): Promise<VerificationCheck[]> {
      return beating(async () => {
        const { located, manifest } = await manifestOf(backupId);
        return restoreTestTenant(engine, located, manifest as TenantManifest);
      });
    },

    /** Writes the report (JSON and text) to storage and the catalog; returns it. */
    async recordVerification(args: { backupId: string; kind: 'full' | 'tenant'; checks: VerificationCheck[]; verifiedAt: string }): Promise<VerificationReport & { reportKey: string; text: string }> {
      const report = summarizeChecks(args.backupId, args.kind, args.checks, args.verifiedAt);
      const reportKey = await writeReport(engine.store, report);
      await engine.catalog.recordVerification({ backupId: report.backupId, backupKind: report.kind, ok: report.ok, counts: report.counts, report, reportKey });
      return { ...report, reportKey, text: formatReport(report) };
    },

    /** The newest full backup and the newest `tenantBackups` tenant backups never verified. */
    async pickBackupsToVerify({ tenantBackups }: { tenantBackups?: number }): Promise<string[]> {
      const verified = await engine.catalog.lastVerified();
      const full = (await engine.catalog.listFullBackups()).at(-1);
      const tenants = (await engine.catalog.listBackups()).filter((b) => !verified.has(b.backupId)).slice(0, tenantBackups ?? engine.config.verification.tenantBackupsPerRun);
      return [...(full ? [full.backupId] : []), ...tenants.map((b) => b.backupId)];
    },

    async applyRetention({ dryRun }: { dryRun: boolean }): Promise<RetentionOutcome> {
      return beating(() => runRetention(engine, { dryRun }));
    },
  });
}

export type VerifyActivities = ReturnType<typeof createVerifyActivities>;
