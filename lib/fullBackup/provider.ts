// Whole-database backup providers, chosen by fullBackup.provider:
//   postgres  self-managed: physical base backups + streamed WAL in our storage; PITR restores a
//             new cluster from them on a worker.
//   supabase  the Supabase Management API (its backups, its PITR, which restores the project in
//             place) plus a daily logical dump (pg_dump -Fd) into our storage.
import { allDone } from '../limit';
import { databaseName, type FullBackupProviderKind } from '../config';
import type { Engine } from '../engine';
import { ErrorType, TenantsafeError } from '../errors';
import { assertNewDataDir, restorePhysicalBackup, type PitrRestoreResult, type RestoreProgress } from '../pitr/restore';
import { physicalWindow, planPhysicalRestore, type PitrPlan, type PitrTarget, type PitrWindow } from '../pitr/window';
import { SupabaseApi } from '../supabase/api';
import { listWalArchive } from '../wal/archive';
import { ensureSlotAt } from '../wal/archiver';
import { serverInfo, takeBaseBackup, type FullBackupProgress } from './basebackup';
import { takeLogicalDump } from './logicalDump';
import type { FullManifest } from '../format/fullManifest';
import { workflowScopes } from '../databaseIdentity';

export interface FullBackupCheck {
  provider: FullBackupProviderKind;
  database: string;
  storageUri: string;
  /** postgres: the backup needs the WAL archiver running */
  needsWalArchiver: boolean;
  /** postgres: the end of the archiver's workflow id (one per cluster and store) */
  walArchiverScope?: string;
}

/** A backup as the provider itself lists it (Supabase's own backups; ours for postgres). */
export interface ProviderBackup {
  id: string;
  status: string;
  at: string;
  physical: boolean;
}

export interface PitrRestoreRequest {
  plan: PitrPlan;
  /** postgres: an empty data directory; supabase: the project ref, confirming an in-place restore */
  target: string;
  port?: number;
  onProgress?: (p: RestoreProgress | { phase: string }) => void;
  signal?: AbortSignal;
}

export interface FullBackupProvider {
  readonly kind: FullBackupProviderKind;
  /** Fails fast, before anything is written: bad config, unreachable database or provider, unwritable storage. */
  check(): Promise<FullBackupCheck>;
  /** One whole-database backup into our storage, manifest last; safe to run again for the same id. */
  takeBackup(args: { backupId: string; onProgress?: (p: FullBackupProgress | { phase: string; files: number }) => void; signal?: AbortSignal }): Promise<FullManifest>;
  window(): Promise<PitrWindow>;
  /** Checks the target against the window (TargetOutsideWindow naming it) and the restore target; picks what to restore. */
  planRestore(target: PitrTarget, restoreTarget: string, now: Date): Promise<PitrPlan>;
  restore(req: PitrRestoreRequest): Promise<PitrRestoreResult>;
  listProviderBackups(): Promise<ProviderBackup[]>;
}

export function createFullBackupProvider(engine: Engine): FullBackupProvider {
  return engine.config.fullBackup.provider === 'supabase' ? new SupabaseProvider(engine) : new PostgresProvider(engine);
}

class PostgresProvider implements FullBackupProvider {
  readonly kind = 'postgres' as const;
  constructor(private readonly engine: Engine) {}

  async check(): Promise<FullBackupCheck> {
    const { url } = this.engine.config.database;
    // independent checks side by side: every backup waits for them
    const [server, , , scopes] = await allDone([serverInfo(url), ensureSlotAt(url, this.engine.config.fullBackup.slot), this.engine.store.probe(), workflowScopes(this.engine)] as const);
    return { provider: this.kind, database: server.database, storageUri: this.engine.store.uri, needsWalArchiver: true, walArchiverScope: scopes.walArchiver };
  }

  takeBackup(args: Parameters<FullBackupProvider['takeBackup']>[0]): Promise<FullManifest> {
    return takeBaseBackup(this.engine, args);
  }

  async window(): Promise<PitrWindow> {
    const { earliest, latest } = await physicalWindow(this.engine);
    return { earliest, latest };
  }

  planRestore(target: PitrTarget, restoreTarget: string, now: Date): Promise<PitrPlan> {
    assertNewDataDir(restoreTarget);
    return planPhysicalRestore(this.engine, target, now);
  }

  async restore(req: PitrRestoreRequest): Promise<PitrRestoreResult> {
    const backup = await this.engine.catalog.getFullBackup(req.plan.backupId);
    // The archive as it is now: a --latest restore replays up to here.
    const listing = await listWalArchive(this.engine.store);
    const target = req.plan.stopAfterXid ? { afterXid: req.plan.stopAfterXid } : req.plan.target;
    return restorePhysicalBackup({ store: this.engine.store, backup, listing, target, dataDir: req.target, port: req.port, onProgress: req.onProgress, signal: req.signal });
  }

  async listProviderBackups(): Promise<ProviderBackup[]> {
    return (await this.engine.catalog.listFullBackups()).map((b) => ({ id: b.backupId, status: 'COMPLETED', at: b.consistentAt, physical: b.method === 'basebackup' }));
  }
}

/** How often a Supabase restore is polled, and for how long at most. */
const restorePollMs = 1000;
const restoreTimeoutMs = 6 * 3_600_000;

class SupabaseProvider implements FullBackupProvider {
  readonly kind = 'supabase' as const;
  private readonly api: SupabaseApi;
  private readonly projectRef: string;

  constructor(private readonly engine: Engine) {
    const cfg = engine.config.supabase;
    if (!cfg) throw new TenantsafeError(ErrorType.BadConfig, 'fullBackup.provider is supabase but the supabase section is missing.', 'Add supabase: {projectRef, accessToken}.');
    this.api = new SupabaseApi(cfg);
    this.projectRef = cfg.projectRef;
  }

  async check(): Promise<FullBackupCheck> {
    await this.api.getProject();
    await this.engine.store.probe();
    return { provider: this.kind, database: databaseName(this.engine.config.database.url), storageUri: this.engine.store.uri, needsWalArchiver: false };
  }

  takeBackup(args: Parameters<FullBackupProvider['takeBackup']>[0]): Promise<FullManifest> {
    return takeLogicalDump(this.engine, args);
  }

  async window(): Promise<PitrWindow> {
    const list = await this.api.listBackups();
    const { earliest_physical_backup_date_unix: earliest, latest_physical_backup_date_unix: latest } = list.physical_backup_data;
    if (!list.pitr_enabled || earliest === undefined || latest === undefined) return { earliest: null, latest: null };
    return { earliest: new Date(earliest * 1000).toISOString(), latest: new Date(latest * 1000).toISOString() };
  }

  async planRestore(target: PitrTarget, restoreTarget: string, now: Date): Promise<PitrPlan> {
    if (restoreTarget !== this.projectRef) {
      throw new TenantsafeError(
        ErrorType.BadInput,
        `Supabase restores a point in time into the project itself, in place; the target must be its ref "${this.projectRef}" (got ${JSON.stringify(restoreTarget)}).`,
        `Pass --target ${this.projectRef} to confirm, or restore tenantsafe's own dump elsewhere with pg_restore (docs/runbooks/supabase.md).`,
      );
    }
    if ('lsn' in target || 'name' in target) {
      throw new TenantsafeError(ErrorType.BadInput, 'Supabase restores to a time only, not to an LSN or a named restore point.', 'Pass --at <ISO-8601 time> or --latest.');
    }
    const window = await this.window();
    const describe = window.earliest ? `the recoverable window is ${window.earliest} to ${window.latest}` : 'the project has no PITR window (the PITR add-on is off or no backup exists)';
    const at = 'latest' in target ? window.latest : target.at;
    const fail = (what: string) =>
      new TenantsafeError(ErrorType.TargetOutsideWindow, `${what}: ${describe}.`, 'Pick a time inside the window (`tenantsafe pitr window`).');
    if (!window.earliest || !at) throw fail('There is nothing to restore');
    if (Date.parse(at) > now.getTime()) throw fail(`Target ${at} is in the future`);
    if (Date.parse(at) < Date.parse(window.earliest)) throw fail(`Target ${at} is before the first backup`);
    if (Date.parse(at) > Date.parse(window.latest!)) throw fail(`Target ${at} is after the newest recoverable moment`);
    return { backupId: `supabase:${this.projectRef}`, target: { at }, window };
  }

  async restore(req: PitrRestoreRequest): Promise<PitrRestoreResult> {
    const at = (req.plan.target as { at: string }).at;
    await this.api.restorePitr(Math.floor(Date.parse(at) / 1000));
    const deadline = Date.now() + restoreTimeoutMs;
    for (;;) {
      req.signal?.throwIfAborted();
      const project = await this.api.getProject();
      req.onProgress?.({ phase: `project ${project.status}` });
      if (project.status === 'ACTIVE_HEALTHY') break;
      if (['RESTORE_FAILED', 'INIT_FAILED', 'REMOVED'].includes(project.status) || Date.now() > deadline) {
        throw new TenantsafeError(ErrorType.RecoveryFailed, `The Supabase PITR restore of ${this.projectRef} to ${at} ended with project status ${project.status}.`, 'Look at the project in the Supabase dashboard and contact Supabase support.');
      }
      await new Promise((resolve) => setTimeout(resolve, restorePollMs));
    }
    return { recoveredTo: new Date(Math.floor(Date.parse(at) / 1000) * 1000).toISOString(), lsn: null, dataDir: null, port: null };
  }

  async listProviderBackups(): Promise<ProviderBackup[]> {
    const list = await this.api.listBackups();
    return list.backups.map((b) => ({ id: String(b.id), status: b.status, at: new Date(b.inserted_at).toISOString(), physical: b.is_physical_backup }));
  }
}
