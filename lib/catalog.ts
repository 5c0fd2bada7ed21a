// The catalog: an index in Postgres (its own schema) of what exists in storage, plus the
// outcome of every workflow run. It can always be rebuilt from the manifests (rule 3).
import type { Pool, PoolClient } from 'pg';
import { sha256Hex } from './checksum';
import { ErrorType, TenantsafeError } from './errors';
import { fullBackupPrefix, parseFullManifest, type FullBackupWal, type FullManifest } from './format/fullManifest';
import { parseBackupLabel } from './labels';
import { formatMicros, parseMicros } from './time';
import { catalogManifestOf, parseManifest, type BatchSharedCache, type TenantManifest } from './format/tenantManifest';
import { changeLogPrefix, changeLogStream, encryptedSegmentFormatVersion, type ChangeLogGap, type ChangeLogStart, type ChangeSegmentManifest } from './format/changeLog';
import { manifestFile, manifestFormatVersion, parseSealedManifest } from './format/sealed';
import { microsText, quoteIdent, withClient } from './pg';
import type { ObjectStore } from './storage/types';
import { parseLsn } from './wal/names';

export interface RestoreRecord {
  restoreId: string;
  tenantId: string;
  workflowId: string;
  runId: string;
  backupId?: string | null;
  state: string;
  requestedBy: string;
  approvedBy?: string[];
  digest?: string | null;
  preview?: unknown;
  safetyBackupId?: string | null;
  result?: unknown;
  error?: string | null;
  /** ISO-8601 to the microsecond; in lists */
  createdAt?: string;
  updatedAt?: string;
}

export interface BackupRecord {
  backupId: string;
  /** safety: taken by a restore just before it changed the tenant */
  kind: 'tenant' | 'safety' | 'pointInTime';
  tenantId: string;
  database: string;
  storageUri: string;
  prefix: string;
  manifestSha256: string;
  rows: number;
  bytes: number;
  snapshotAt: string;
  lsn: string;
  tenantChecksum: string;
  schemaFingerprint: string;
  startedAt: string;
  finishedAt: string;
}

export interface RunRecord {
  workflowId: string;
  runId: string;
  workflowType: string;
  tenantId?: string | null;
  backupId?: string | null;
  /** cancelled: through Temporal (a person, or its parent); failed: anything else that stopped it */
  status: 'running' | 'completed' | 'failed' | 'cancelled';
  error?: string | null;
  /** the failure's stable type (lib/errors.ts), when it had one */
  errorType?: string | null;
  /** the database the run served (the worker's configured database when absent) */
  database?: string | null;
  details?: Record<string, unknown>;
}

/** A table's columns with its times as text to the microsecond (`<column>_us`), for the record mappers below. */
const withMicros = (...columns: string[]) => `*, ${columns.map((c) => `${microsText(c)} AS ${c}_us`).join(', ')}`;
const backupColumns = withMicros('snapshot_at', 'started_at', 'finished_at');
const fullBackupColumns = withMicros('consistent_at', 'started_at', 'finished_at');

/** tenant backups indexed by one INSERT (a rebuild or a batch indexes thousands) */
export const backupsPerStatement = 1000;

/** Ordered migrations; append only. */
const migrations: ((s: string) => string)[] = [
  (s) => `
    CREATE TABLE ${s}.backups (
      backup_id text PRIMARY KEY,
      kind text NOT NULL,
      tenant_id text,
      database text NOT NULL,
      storage_uri text NOT NULL,
      prefix text NOT NULL,
      manifest_sha256 text NOT NULL,
      rows bigint NOT NULL,
      bytes bigint NOT NULL,
      snapshot_at timestamptz NOT NULL,
      lsn text NOT NULL,
      tenant_checksum text,
      schema_fingerprint text,
      started_at timestamptz NOT NULL,
      finished_at timestamptz NOT NULL,
      manifest jsonb NOT NULL
    );
    CREATE INDEX backups_tenant_idx ON ${s}.backups (tenant_id, snapshot_at DESC);
    CREATE TABLE ${s}.runs (
      workflow_id text NOT NULL,
      run_id text NOT NULL,
      workflow_type text NOT NULL,
      tenant_id text,
      backup_id text,
      status text NOT NULL,
      error text,
      details jsonb NOT NULL DEFAULT '{}',
      started_at timestamptz NOT NULL DEFAULT now(),
      finished_at timestamptz,
      PRIMARY KEY (workflow_id, run_id)
    );
    CREATE INDEX runs_started_idx ON ${s}.runs (started_at DESC);`,
  (s) => `
    CREATE TABLE ${s}.restores (
      restore_id text PRIMARY KEY,
      tenant_id text NOT NULL,
      workflow_id text NOT NULL,
      run_id text NOT NULL,
      backup_id text,
      state text NOT NULL,
      requested_by text NOT NULL,
      approved_by text[] NOT NULL DEFAULT '{}',
      digest text,
      preview jsonb,
      safety_backup_id text,
      result jsonb,
      error text,
      created_at timestamptz NOT NULL DEFAULT now(),
      updated_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX restores_tenant_idx ON ${s}.restores (tenant_id, created_at DESC);`,
  (s) => `
    CREATE TABLE ${s}.full_backups (
      backup_id text PRIMARY KEY,
      method text NOT NULL,
      provider text NOT NULL,
      database text NOT NULL,
      storage_uri text NOT NULL,
      prefix text NOT NULL,
      manifest_sha256 text NOT NULL,
      bytes bigint NOT NULL,
      timeline int,
      start_lsn pg_lsn,
      stop_lsn pg_lsn,
      start_segment text,
      stop_segment text,
      segment_size int,
      consistent_at timestamptz NOT NULL,
      started_at timestamptz NOT NULL,
      finished_at timestamptz NOT NULL,
      manifest jsonb NOT NULL
    );
    CREATE INDEX full_backups_consistent_idx ON ${s}.full_backups (consistent_at);
    CREATE TABLE ${s}.verifications (
      verification_id bigserial PRIMARY KEY,
      backup_id text NOT NULL,
      backup_kind text NOT NULL,
      ok boolean NOT NULL,
      counts jsonb NOT NULL,
      report jsonb NOT NULL,
      report_key text,
      verified_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX verifications_backup_idx ON ${s}.verifications (backup_id, verified_at DESC);`,
  (s) => `
    CREATE TABLE ${s}.change_segments (
      stream text NOT NULL,
      first_commit_lsn pg_lsn NOT NULL,
      last_end_lsn pg_lsn NOT NULL,
      first_commit_time timestamptz NOT NULL,
      last_commit_time timestamptz NOT NULL,
      manifest_key text NOT NULL,
      manifest_sha256 text NOT NULL,
      transactions int NOT NULL,
      bytes bigint NOT NULL,
      PRIMARY KEY (stream, first_commit_lsn, last_end_lsn)
    );
    CREATE INDEX change_segments_end_idx ON ${s}.change_segments (stream, last_end_lsn);
    CREATE TABLE ${s}.change_log_gaps (
      stream text NOT NULL,
      from_lsn pg_lsn NOT NULL,
      to_lsn pg_lsn NOT NULL,
      from_time timestamptz,
      to_time timestamptz NOT NULL,
      reason text NOT NULL,
      PRIMARY KEY (stream, from_lsn, to_lsn)
    );
    CREATE TABLE ${s}.change_log_streams (
      stream text PRIMARY KEY,
      started_lsn pg_lsn NOT NULL,
      started_at timestamptz NOT NULL,
      caught_up_lsn pg_lsn,
      caught_up_at timestamptz,
      updated_at timestamptz NOT NULL DEFAULT now()
    );`,
  // pushed alerts (lib/alerts/store.ts): each alert key's state, the outcomes already counted
  // (idempotency keys), and the notices to deliver per channel (an outbox)
  (s) => `
    CREATE TABLE ${s}.alerts (
      alert_key text PRIMARY KEY,
      kind text NOT NULL,
      subject text NOT NULL,
      state text NOT NULL CHECK (state IN ('open', 'resolved')),
      sequence int NOT NULL,
      failures int NOT NULL,
      opened_at timestamptz NOT NULL,
      resolved_at timestamptz,
      last_error_type text,
      last_error text,
      opened_by jsonb NOT NULL,
      last_failed_by jsonb NOT NULL,
      resolved_by jsonb,
      updated_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE TABLE ${s}.alert_events (
      idempotency_key text PRIMARY KEY,
      alert_key text NOT NULL,
      outcome text NOT NULL,
      transition text,
      recorded_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX alert_events_recorded_idx ON ${s}.alert_events (recorded_at);
    CREATE TABLE ${s}.alert_deliveries (
      delivery_id bigserial PRIMARY KEY,
      notice_id text NOT NULL,
      channel text NOT NULL,
      alert_key text NOT NULL,
      notice jsonb NOT NULL,
      status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'abandoned')),
      attempts int NOT NULL DEFAULT 0,
      created_at timestamptz NOT NULL DEFAULT now(),
      next_attempt_at timestamptz NOT NULL DEFAULT now(),
      leased_until timestamptz,
      sent_at timestamptz,
      last_error text,
      UNIQUE (notice_id, channel)
    );
    CREATE INDEX alert_deliveries_pending_idx ON ${s}.alert_deliveries (alert_key, channel, delivery_id) WHERE status = 'pending';`,
  // Monitoring (lib/monitoring): what runs served and why they failed; the WAL archiver's
  // progress; per tenant and kind, how many backups and their newest and oldest, kept by a
  // trigger (the health model reads one row per tenant, not one per backup); indexes for recent
  // failures, pending approvals and recent verifications.
  (s) => `
    ALTER TABLE ${s}.runs ADD COLUMN database text, ADD COLUMN error_type text;
    CREATE INDEX runs_type_tenant_idx ON ${s}.runs (workflow_type, tenant_id, started_at DESC);
    CREATE INDEX runs_failed_idx ON ${s}.runs (workflow_type, started_at DESC) WHERE status = 'failed';
    CREATE INDEX restores_awaiting_idx ON ${s}.restores (updated_at) WHERE state = 'awaiting-approval';
    CREATE INDEX verifications_verified_idx ON ${s}.verifications (verified_at DESC);
    CREATE TABLE ${s}.wal_archive_progress (
      scope text PRIMARY KEY,
      segment text,
      segment_bytes bigint,
      archived_at timestamptz,
      caught_up_at timestamptz,
      seen_at timestamptz NOT NULL,
      error text,
      error_at timestamptz
    );
    CREATE TABLE ${s}.tenant_backup_stats (
      database text NOT NULL,
      kind text NOT NULL,
      tenant_id text NOT NULL,
      points int NOT NULL,
      newest timestamptz NOT NULL,
      oldest timestamptz NOT NULL,
      PRIMARY KEY (database, kind, tenant_id)
    );
    CREATE INDEX tenant_backup_stats_newest_idx ON ${s}.tenant_backup_stats (database, kind, newest, tenant_id);
    INSERT INTO ${s}.tenant_backup_stats
      SELECT database, kind, tenant_id, count(*), max(snapshot_at), min(snapshot_at) FROM ${s}.backups WHERE tenant_id IS NOT NULL GROUP BY 1, 2, 3;
    -- Inserts add (commutative: concurrent ones need no recount); a delete recounts the end it
    -- removed, under the stats row's lock, from the rows committed (an insert waiting on that lock
    -- applies itself after).
    CREATE FUNCTION ${s}.track_tenant_backup() RETURNS trigger LANGUAGE plpgsql AS $f$
    BEGIN
      IF TG_OP IN ('UPDATE', 'DELETE') AND OLD.tenant_id IS NOT NULL THEN
        UPDATE ${s}.tenant_backup_stats t SET points = t.points - 1,
          newest = CASE WHEN OLD.snapshot_at >= t.newest THEN coalesce((SELECT max(b.snapshot_at) FROM ${s}.backups b
                     WHERE b.tenant_id = OLD.tenant_id AND b.database = OLD.database AND b.kind = OLD.kind), t.newest) ELSE t.newest END,
          oldest = CASE WHEN OLD.snapshot_at <= t.oldest THEN coalesce((SELECT min(b.snapshot_at) FROM ${s}.backups b
                     WHERE b.tenant_id = OLD.tenant_id AND b.database = OLD.database AND b.kind = OLD.kind), t.oldest) ELSE t.oldest END
         WHERE t.database = OLD.database AND t.kind = OLD.kind AND t.tenant_id = OLD.tenant_id;
        DELETE FROM ${s}.tenant_backup_stats WHERE database = OLD.database AND kind = OLD.kind AND tenant_id = OLD.tenant_id AND points <= 0;
      END IF;
      IF TG_OP IN ('UPDATE', 'INSERT') AND NEW.tenant_id IS NOT NULL THEN
        INSERT INTO ${s}.tenant_backup_stats AS t VALUES (NEW.database, NEW.kind, NEW.tenant_id, 1, NEW.snapshot_at, NEW.snapshot_at)
          ON CONFLICT (database, kind, tenant_id) DO UPDATE
          SET points = t.points + 1, newest = greatest(t.newest, EXCLUDED.newest), oldest = least(t.oldest, EXCLUDED.oldest);
      END IF;
      RETURN NULL;
    END $f$;
    CREATE TRIGGER backups_tenant_stats AFTER INSERT OR DELETE OR UPDATE OF database, kind, tenant_id, snapshot_at ON ${s}.backups
      FOR EACH ROW EXECUTE FUNCTION ${s}.track_tenant_backup();`,
  (s) => `
    CREATE TABLE ${s}.dr_events (
      workflow_id text NOT NULL,
      run_id text NOT NULL,
      kind text NOT NULL,
      database text NOT NULL,
      status text NOT NULL,
      reason text,
      requested_by text,
      started_at timestamptz NOT NULL,
      finished_at timestamptz,
      rto_ms bigint,
      rpo_ms bigint,
      data_loss_bytes bigint,
      rto_target_ms bigint NOT NULL,
      rpo_target_ms bigint NOT NULL,
      met_targets boolean,
      report_key text,
      error text,
      details jsonb NOT NULL DEFAULT '{}',
      PRIMARY KEY (workflow_id, run_id)
    );
    CREATE INDEX dr_events_kind_idx ON ${s}.dr_events (database, kind, started_at DESC);`,
  (s) => `
    CREATE TABLE ${s}.dr_roles (
      database text PRIMARY KEY,
      primary_host text NOT NULL,
      primary_port int NOT NULL,
      primary_data_dir text,
      standby_host text,
      standby_port int,
      standby_data_dir text,
      standby_state text NOT NULL,
      changed_by text NOT NULL,
      changed_at timestamptz NOT NULL DEFAULT now()
    );`,
  // The audit log (lib/audit): append-only, one hash chain (docs/format.md, "The audit log").
  // UPDATE, DELETE and TRUNCATE are refused by triggers that fire in every session, replica mode
  // included; the table's owner or a superuser can still disable them, which the chain shows.
  (s) => `
    CREATE TABLE ${s}.audit_log (
      seq bigint PRIMARY KEY CHECK (seq > 0),
      at timestamptz NOT NULL,
      actor text NOT NULL,
      action text NOT NULL,
      subject jsonb NOT NULL,
      tenant_id text GENERATED ALWAYS AS (subject->>'tenantId') STORED,
      digest text,
      outcome text NOT NULL,
      details jsonb NOT NULL,
      idempotency_key text UNIQUE,
      prev_hash text NOT NULL,
      hash text NOT NULL
    );
    CREATE INDEX audit_log_tenant_idx ON ${s}.audit_log (tenant_id, seq DESC) WHERE tenant_id IS NOT NULL;
    CREATE INDEX audit_log_action_idx ON ${s}.audit_log (action, seq DESC);
    CREATE INDEX audit_log_at_idx ON ${s}.audit_log (at);
    CREATE FUNCTION ${s}.audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $f$
    BEGIN
      RAISE EXCEPTION 'the audit log is append-only: % on %.% refused', TG_OP, TG_TABLE_SCHEMA, TG_TABLE_NAME USING ERRCODE = 'insufficient_privilege';
    END $f$;
    CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON ${s}.audit_log FOR EACH ROW EXECUTE FUNCTION ${s}.audit_log_append_only();
    CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON ${s}.audit_log FOR EACH STATEMENT EXECUTE FUNCTION ${s}.audit_log_append_only();
    ALTER TABLE ${s}.audit_log ENABLE ALWAYS TRIGGER audit_log_no_change, ENABLE ALWAYS TRIGGER audit_log_no_truncate;
    REVOKE UPDATE, DELETE, TRUNCATE ON ${s}.audit_log FROM PUBLIC;`,
  // Migration 10. The erasure ledger (lib/erasure):
  // subject-level erasures every later tenant restore of older data applies again. Kept, never
  // edited: a row removed would let a restore bring the person back.
  (s) => `
    CREATE TABLE ${s}.erasures (
      id bigserial PRIMARY KEY,
      tenant_id text NOT NULL,
      table_name text NOT NULL,
      key jsonb NOT NULL,
      erased_by text NOT NULL,
      reason text,
      erased_at timestamptz NOT NULL DEFAULT clock_timestamp()
    );
    CREATE INDEX erasures_tenant_idx ON ${s}.erasures (tenant_id, erased_at);`,
];

/** A PostgreSQL server of the DR pair, and where its data directory is (when the worker can see it). */
export interface DrNode {
  host: string;
  port: number;
  dataDir: string | null;
}

/**
 * Which server is the primary now, after failovers and switchovers (until the first one, the
 * config's database.url and dr.standby say it). The standby's state: `streaming` a replica of the
 * primary; `fenced` the old primary after a failover (it must not take writes; rebuild it);
 * `needs-rebuild` the old primary after a switchover (read-only, ready for pg_rewind).
 */
export interface DrRoles {
  database: string;
  primary: DrNode;
  standby: DrNode | null;
  standbyState: 'streaming' | 'fenced' | 'needs-rebuild';
  /** the workflow (id/run) that made them so */
  changedBy: string;
  /** ISO-8601 */
  changedAt?: string;
}

/** The kinds of disaster-recovery events the catalog keeps, each measured against the targets. */
export type DrEventKind = 'failover' | 'switchover' | 'failback' | 'drill';
export type DrEventStatus = 'running' | 'done' | 'failed' | 'refused' | 'cancelled';

/**
 * A failover, switchover, failback or drill: when, why, by whom, and what it achieved against the
 * targets (RTO: the primary lost, or the drill started, until the first successful write or the
 * restored cluster answering; RPO: the span of commits lost, or behind the restore's end).
 */
export interface DrEventRecord {
  workflowId: string;
  runId: string;
  kind: DrEventKind;
  database: string;
  status: DrEventStatus;
  reason?: string | null;
  requestedBy?: string | null;
  /** ISO-8601 */
  startedAt: string;
  finishedAt?: string | null;
  rtoMs?: number | null;
  rpoMs?: number | null;
  /** WAL bytes written on the old primary and never replayed on the new one, when known */
  dataLossBytes?: number | null;
  rtoTargetMs: number;
  rpoTargetMs: number;
  /** null while running or when nothing was measured */
  metTargets?: boolean | null;
  /** the drill report's key in storage */
  reportKey?: string | null;
  error?: string | null;
  details?: Record<string, unknown>;
}

/** A change-log segment in the catalog (its manifest in storage is the truth). */
export interface ChangeSegmentRecord {
  stream: string;
  firstCommitLsn: string;
  lastEndLsn: string;
  /** to the microsecond */
  firstCommitTime: string;
  lastCommitTime: string;
  manifestKey: string;
  manifestSha256: string;
  transactions: number;
  bytes: number;
}

/** Where a change log stands: since when it runs, and the server's position and clock it had caught up to. */
export interface ChangeLogStream {
  stream: string;
  startedLsn: string;
  startedAt: string;
  caughtUpLsn: string | null;
  caughtUpAt: string | null;
}

export interface ChangeLogGapRecord {
  stream: string;
  fromLsn: string;
  toLsn: string;
  fromTime: string | null;
  toTime: string;
  reason: string;
}

/** A full (whole-database) backup in the catalog. */
export interface FullBackupRecord {
  backupId: string;
  method: FullManifest['method'];
  provider: FullManifest['provider'];
  database: string;
  storageUri: string;
  prefix: string;
  manifestSha256: string;
  bytes: number;
  /** physical backups: the WAL they need */
  wal: FullBackupWal | null;
  consistentAt: string;
  startedAt: string;
  finishedAt: string;
}

/**
 * The WAL archiver's last report (per archiver scope, lib/databaseIdentity.ts): the newest segment
 * in the archive and how many of its bytes (null: the whole segment), when the archive last grew,
 * when the archiver last reported at all, and its last error.
 */
export interface WalArchiveProgress {
  scope: string;
  segment: string | null;
  segmentBytes: number | null;
  archivedAt: string | null;
  /** the archive last held everything the server had written then */
  caughtUpAt: string | null;
  seenAt: string;
  error: string | null;
  errorAt: string | null;
}

export interface VerificationRecord {
  backupId: string;
  backupKind: 'full' | 'tenant';
  ok: boolean;
  counts: Record<string, number>;
  report: unknown;
  reportKey: string | null;
}

export class Catalog {
  private ready: Promise<void> | null = null;
  private readonly s: string;

  constructor(
    private readonly pool: Pool,
    private readonly url: string,
    private readonly schema: string,
  ) {
    this.s = quoteIdent(schema);
  }

  /** Creates or migrates the catalog schema once per process; safe with concurrent workers. */
  private migrate(): Promise<void> {
    this.ready ??= withClient(this.pool, this.url, async (c) => {
      await c.query('BEGIN');
      try {
        await c.query(`SELECT pg_advisory_xact_lock(hashtext('tenantsafe.catalog.migrate'))`);
        // made once by setup for least-privilege roles (README, Privileges): CREATE SCHEMA would ask
        // for CREATE on the database even when it exists
        const owner = (await c.query<{ owner: string | null }>(`SELECT (SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = $1) AS owner`, [this.schema])).rows[0].owner;
        if (owner === null) await c.query(`CREATE SCHEMA ${this.s}`);
        // tables a migration makes belong to the schema's owner, so every role the workers use
        // that is a member of it (the backup and the restore role) can use them
        else if ((await c.query(`SELECT current_user <> $1::regrole::text AND pg_has_role($1::regrole, 'USAGE') AS member`, [owner])).rows[0].member) await c.query(`SET LOCAL ROLE ${owner}`);
        await c.query(`CREATE TABLE IF NOT EXISTS ${this.s}.migrations (version int PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`);
        const applied = await c.query<{ v: number | null }>(`SELECT max(version) AS v FROM ${this.s}.migrations`);
        for (let v = (applied.rows[0].v ?? 0) + 1; v <= migrations.length; v++) {
          await c.query(migrations[v - 1](this.s));
          await c.query(`INSERT INTO ${this.s}.migrations (version) VALUES ($1)`, [v]);
        }
        await c.query('COMMIT');
      } catch (err) {
        await c.query('ROLLBACK');
        throw err;
      }
    }).catch((err) => {
      this.ready = null;
      throw err;
    });
    return this.ready;
  }

  private async run<T>(fn: (c: PoolClient) => Promise<T>): Promise<T> {
    await this.migrate();
    return withClient(this.pool, this.url, fn);
  }

  /** Runs `fn` on a catalog connection once the schema is migrated, with the schema's quoted name: for engine modules that keep their own tables here (lib/alerts/store.ts). */
  async withSchema<T>(fn: (c: PoolClient, schema: string) => Promise<T>): Promise<T> {
    return this.run((c) => fn(c, this.s));
  }

  /**
   * Idempotent: recording the same backup twice leaves one row. Refused (nothing changes) when
   * another tenant's backup holds the id: a retry gives the backup the same id, a new run a new one.
   */
  async recordBackup(manifest: TenantManifest, storageUri: string, prefix: string, manifestSha256: string): Promise<BackupRecord> {
    const backup = { manifest, storageUri, prefix, manifestSha256 };
    const { taken } = await this.run((c) => this.insertBackups(c, [backup]));
    if (taken.length > 0) {
      throw new TenantsafeError(ErrorType.AlreadyRunning, `Backup id ${manifest.backupId} is already another tenant's backup in the catalog; tenant ${manifest.tenantId}'s backup was not indexed.`, 'Run the backup again: a new run takes a new id. What this run wrote stays in storage, not indexed (`tenantsafe catalog rebuild` lists it as invalid).');
    }
    return backupRecordOf(manifest, storageUri, prefix, manifestSha256);
  }

  /**
   * Indexes many tenant backups, one statement per backupsPerStatement of them (a batch's: not
   * one per tenant). `taken`: those left out because another tenant's backup holds their id (ids
   * are the catalog's key; two batches started in the same second can give two tenants one id):
   * one tenant's row never points at another's manifest.
   */
  async recordBackups<B extends IndexedBackup>(backups: B[]): Promise<{ taken: B[] }> {
    const taken: B[] = [];
    for (let i = 0; i < backups.length; i += backupsPerStatement) {
      const some = backups.slice(i, i + backupsPerStatement);
      taken.push(...(await this.run((c) => this.insertBackups(c, some))).taken);
    }
    return { taken };
  }

  private async insertBackups<B extends IndexedBackup>(c: PoolClient, backups: B[]): Promise<{ taken: B[] }> {
    const recs = backups.map((b) => backupRecordOf(b.manifest, b.storageUri, b.prefix, b.manifestSha256));
    const column = <K extends keyof BackupRecord>(k: K) => recs.map((r) => r[k]);
    const r = await c.query<{ backup_id: string }>(
      `INSERT INTO ${this.s}.backups AS b (backup_id, kind, tenant_id, database, storage_uri, prefix, manifest_sha256, rows, bytes,
                                      snapshot_at, lsn, tenant_checksum, schema_fingerprint, started_at, finished_at, manifest)
       SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::bigint[], $9::bigint[],
                            $10::timestamptz[], $11::text[], $12::text[], $13::text[], $14::timestamptz[], $15::timestamptz[], $16::jsonb[])
       ON CONFLICT (backup_id) DO UPDATE SET storage_uri = EXCLUDED.storage_uri, prefix = EXCLUDED.prefix,
         manifest_sha256 = EXCLUDED.manifest_sha256, manifest = EXCLUDED.manifest
         WHERE b.tenant_id = EXCLUDED.tenant_id
       RETURNING backup_id`,
      [
        column('backupId'), column('kind'), column('tenantId'), column('database'), column('storageUri'), column('prefix'), column('manifestSha256'), column('rows'), column('bytes'),
        column('snapshotAt'), column('lsn'), column('tenantChecksum'), column('schemaFingerprint'), column('startedAt'), column('finishedAt'),
        backups.map((b) => JSON.stringify(catalogManifestOf(b.manifest))),
      ],
    );
    const recorded = new Set(r.rows.map((x) => x.backup_id));
    return { taken: backups.filter((b) => !recorded.has(b.manifest.backupId)) };
  }

  async listBackups(filter: { tenantId?: string } = {}): Promise<BackupRecord[]> {
    const r = await this.run((c) =>
      c.query(
        `SELECT ${backupColumns} FROM ${this.s}.backups WHERE ($1::text IS NULL OR tenant_id = $1) ORDER BY snapshot_at DESC, backup_id DESC`,
        [filter.tenantId ?? null],
      ),
    );
    return r.rows.map(rowToRecord);
  }

  async getBackup(backupId: string): Promise<BackupRecord> {
    const r = await this.run((c) => c.query(`SELECT ${backupColumns} FROM ${this.s}.backups WHERE backup_id = $1`, [backupId]));
    if (r.rowCount === 0) {
      throw new TenantsafeError(ErrorType.BackupNotFound, `Backup "${backupId}" is not in the catalog.`, 'List backups with `tenantsafe backups list`; if storage holds it, run `tenantsafe catalog rebuild`.');
    }
    return rowToRecord(r.rows[0]);
  }

  /** Idempotent: the same segment recorded twice is one row. */
  async recordChangeSegment(r: ChangeSegmentRecord): Promise<void> {
    await this.run((c) =>
      c.query(
        `INSERT INTO ${this.s}.change_segments (stream, first_commit_lsn, last_end_lsn, first_commit_time, last_commit_time, manifest_key, manifest_sha256, transactions, bytes)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING`,
        [r.stream, r.firstCommitLsn, r.lastEndLsn, r.firstCommitTime, r.lastCommitTime, r.manifestKey, r.manifestSha256, r.transactions, r.bytes],
      ),
    );
  }

  /** The stream's segments that end after `afterLsn`, in commit order. */
  async listChangeSegments(stream: string, afterLsn = '0/0'): Promise<ChangeSegmentRecord[]> {
    const r = await this.run((c) =>
      c.query(
        `SELECT stream, first_commit_lsn::text, last_end_lsn::text, ${microsText('first_commit_time')} AS first_commit_time, ${microsText('last_commit_time')} AS last_commit_time,
                manifest_key, manifest_sha256, transactions, bytes
           FROM ${this.s}.change_segments WHERE stream = $1 AND last_end_lsn > $2::pg_lsn ORDER BY first_commit_lsn, last_end_lsn`,
        [stream, afterLsn],
      ),
    );
    return r.rows.map((x) => ({
      stream: x.stream,
      firstCommitLsn: x.first_commit_lsn,
      lastEndLsn: x.last_end_lsn,
      firstCommitTime: x.first_commit_time,
      lastCommitTime: x.last_commit_time,
      manifestKey: x.manifest_key,
      manifestSha256: x.manifest_sha256,
      transactions: x.transactions,
      bytes: Number(x.bytes),
    }));
  }

  /**
   * The tenant's backups the change log can extend, oldest first: those with an exact boundary
   * (snapshot.changeLogLsn) taken in this cluster and database.
   */
  async changeLogBases(tenantId: string, origin: { systemIdentifier: string; databaseOid: number }): Promise<{ backupId: string; snapshotAt: string; boundary: string }[]> {
    const r = await this.run((c) =>
      c.query(
        `SELECT backup_id, ${microsText('snapshot_at')} AS at, manifest->'snapshot'->>'changeLogLsn' AS boundary FROM ${this.s}.backups
          WHERE tenant_id = $1 AND kind = 'tenant' AND manifest->'snapshot' ? 'changeLogLsn'
            AND manifest->'snapshot'->'origin'->>'systemIdentifier' = $2 AND (manifest->'snapshot'->'origin'->>'databaseOid')::int = $3
          ORDER BY (manifest->'snapshot'->>'changeLogLsn')::pg_lsn`,
        [tenantId, origin.systemIdentifier, origin.databaseOid],
      ),
    );
    return r.rows.map((x) => ({ backupId: x.backup_id, snapshotAt: x.at, boundary: x.boundary }));
  }

  /**
   * Every tenant backup the change log can extend (kind tenant, with snapshot.changeLogLsn and
   * its origin), of every tenant and stream: what retention keeps the log for.
   */
  async changeLogBoundaries(): Promise<{ backupId: string; tenantId: string; stream: string; boundary: string }[]> {
    const r = await this.run((c) =>
      c.query(
        `SELECT backup_id, tenant_id, manifest->'snapshot'->'origin'->>'systemIdentifier' AS system, (manifest->'snapshot'->'origin'->>'databaseOid')::int AS db,
                manifest->'snapshot'->>'changeLogLsn' AS boundary
           FROM ${this.s}.backups WHERE kind = 'tenant' AND manifest->'snapshot' ? 'changeLogLsn' AND manifest->'snapshot' ? 'origin'
          ORDER BY (manifest->'snapshot'->>'changeLogLsn')::pg_lsn, backup_id`,
      ),
    );
    return r.rows.map((x) => ({ backupId: x.backup_id, tenantId: x.tenant_id, stream: changeLogStream({ systemIdentifier: x.system, databaseOid: x.db }), boundary: x.boundary }));
  }

  /** The streams the catalog holds segments or gaps of. */
  async changeLogStreams(): Promise<string[]> {
    const r = await this.run((c) => c.query<{ stream: string }>(`SELECT stream FROM ${this.s}.change_segments UNION SELECT stream FROM ${this.s}.change_log_gaps ORDER BY 1`));
    return r.rows.map((x) => x.stream);
  }

  /** Forgets a segment (retention, before its objects go). */
  async forgetChangeSegment(s: { stream: string; firstCommitLsn: string; lastEndLsn: string }): Promise<void> {
    await this.run((c) =>
      c.query(`DELETE FROM ${this.s}.change_segments WHERE stream = $1 AND first_commit_lsn = $2::pg_lsn AND last_end_lsn = $3::pg_lsn`, [s.stream, s.firstCommitLsn, s.lastEndLsn]),
    );
  }

  /** Forgets a gap (retention, before its object goes). */
  async forgetChangeLogGap(g: { stream: string; fromLsn: string; toLsn: string }): Promise<void> {
    await this.run((c) => c.query(`DELETE FROM ${this.s}.change_log_gaps WHERE stream = $1 AND from_lsn = $2::pg_lsn AND to_lsn = $3::pg_lsn`, [g.stream, g.fromLsn, g.toLsn]));
  }

  /** The end of the last transaction the stream holds, and its commit time. */
  async changeLogEnd(stream: string): Promise<{ lsn: string; time: string } | undefined> {
    const r = await this.run((c) =>
      c.query(`SELECT last_end_lsn::text AS lsn, ${microsText('last_commit_time')} AS time FROM ${this.s}.change_segments WHERE stream = $1 ORDER BY last_end_lsn DESC LIMIT 1`, [stream]),
    );
    return r.rows[0];
  }

  async recordChangeLogStart(stream: string, lsn: string, at: string): Promise<void> {
    await this.run((c) => c.query(`INSERT INTO ${this.s}.change_log_streams (stream, started_lsn, started_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`, [stream, lsn, at]));
  }

  async recordChangeLogCaughtUp(stream: string, lsn: string, at: string): Promise<void> {
    await this.run((c) =>
      c.query(`UPDATE ${this.s}.change_log_streams SET caught_up_lsn = $2, caught_up_at = $3, updated_at = now() WHERE stream = $1 AND (caught_up_lsn IS NULL OR caught_up_lsn <= $2::pg_lsn)`, [stream, lsn, at]),
    );
  }

  async getChangeLogStream(stream: string): Promise<ChangeLogStream | undefined> {
    const r = await this.run((c) =>
      c.query(
        `SELECT stream, started_lsn::text, ${microsText('started_at')} AS started_at, caught_up_lsn::text, ${microsText('caught_up_at')} AS caught_up_at
           FROM ${this.s}.change_log_streams WHERE stream = $1`,
        [stream],
      ),
    );
    const x = r.rows[0];
    return x && { stream: x.stream, startedLsn: x.started_lsn, startedAt: x.started_at, caughtUpLsn: x.caught_up_lsn, caughtUpAt: x.caught_up_at };
  }

  async recordChangeLogGap(g: ChangeLogGapRecord): Promise<void> {
    await this.run((c) =>
      c.query(`INSERT INTO ${this.s}.change_log_gaps (stream, from_lsn, to_lsn, from_time, to_time, reason) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING`, [
        g.stream,
        g.fromLsn,
        g.toLsn,
        g.fromTime,
        g.toTime,
        g.reason,
      ]),
    );
  }

  async listChangeLogGaps(stream: string): Promise<ChangeLogGapRecord[]> {
    const r = await this.run((c) =>
      c.query(
        `SELECT stream, from_lsn::text, to_lsn::text, ${microsText('from_time')} AS from_time, ${microsText('to_time')} AS to_time, reason
           FROM ${this.s}.change_log_gaps WHERE stream = $1 ORDER BY from_lsn`,
        [stream],
      ),
    );
    return r.rows.map((x) => ({ stream: x.stream, fromLsn: x.from_lsn, toLsn: x.to_lsn, fromTime: x.from_time, toTime: x.to_time, reason: x.reason }));
  }

  async recordRun(run: RunRecord): Promise<void> {
    const finished = run.status === 'running' ? null : new Date();
    await this.run((c) =>
      c.query(
        `INSERT INTO ${this.s}.runs (workflow_id, run_id, workflow_type, tenant_id, backup_id, status, error, details, finished_at, database, error_type)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
         ON CONFLICT (workflow_id, run_id) DO UPDATE SET status = EXCLUDED.status, error = EXCLUDED.error, error_type = EXCLUDED.error_type,
           backup_id = coalesce(EXCLUDED.backup_id, ${this.s}.runs.backup_id),
           database = coalesce(EXCLUDED.database, ${this.s}.runs.database),
           details = ${this.s}.runs.details || EXCLUDED.details, finished_at = EXCLUDED.finished_at`,
        [
          run.workflowId, run.runId, run.workflowType, run.tenantId ?? null, run.backupId ?? null, run.status, run.error ?? null, JSON.stringify(run.details ?? {}), finished,
          run.database ?? null, run.errorType ?? null,
        ],
      ),
    );
  }

  /**
   * The WAL archiver's report: `archived` when the archive grew (its newest segment, the bytes of
   * it stored, null for a whole one, and when), `caughtUpAt` when it held everything the server
   * had written at that moment, `error` when a slice failed; in any case that it is alive.
   */
  async recordWalArchiveProgress(scope: string, report: { archived?: { segment: string; bytes: number | null; at: string }; caughtUpAt?: string; error?: string }): Promise<void> {
    const a = report.archived;
    await this.run((c) =>
      c.query(
        `INSERT INTO ${this.s}.wal_archive_progress AS p (scope, segment, segment_bytes, archived_at, caught_up_at, seen_at, error, error_at)
         VALUES ($1, $2, $3, $4, $5, now(), $6, CASE WHEN $6::text IS NULL THEN NULL ELSE now() END)
         ON CONFLICT (scope) DO UPDATE SET seen_at = now(),
           segment = coalesce(EXCLUDED.segment, p.segment),
           segment_bytes = CASE WHEN EXCLUDED.segment IS NULL THEN p.segment_bytes ELSE EXCLUDED.segment_bytes END,
           archived_at = coalesce(EXCLUDED.archived_at, p.archived_at),
           caught_up_at = greatest(EXCLUDED.caught_up_at, p.caught_up_at),
           error = coalesce(EXCLUDED.error, p.error), error_at = coalesce(EXCLUDED.error_at, p.error_at)`,
        [scope, a?.segment ?? null, a?.bytes ?? null, a?.at ?? null, report.caughtUpAt ?? null, report.error ?? null],
      ),
    );
  }

  async getWalArchiveProgress(scope: string): Promise<WalArchiveProgress | undefined> {
    const r = await this.run((c) =>
      c.query(
        `SELECT scope, segment, segment_bytes, ${microsText('archived_at')} AS archived_at, ${microsText('caught_up_at')} AS caught_up_at, ${microsText('seen_at')} AS seen_at,
                error, ${microsText('error_at')} AS error_at
           FROM ${this.s}.wal_archive_progress WHERE scope = $1`,
        [scope],
      ),
    );
    const x = r.rows[0];
    return x && { scope: x.scope, segment: x.segment, segmentBytes: x.segment_bytes === null ? null : Number(x.segment_bytes), archivedAt: x.archived_at, caughtUpAt: x.caught_up_at, seenAt: x.seen_at, error: x.error, errorAt: x.error_at };
  }

  /**
   * Runs read-only queries of the catalog's tables for the health model (lib/monitoring), on one
   * connection, in one REPEATABLE READ transaction (every aggregate sees the same moment), the
   * schema given quoted.
   */
  async read<T>(fn: (c: PoolClient, schema: string) => Promise<T>): Promise<T> {
    return this.run(async (c) => {
      await c.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
      // the per-tenant judgement hashes a row per tenant: in memory, not spilled to disk
      await c.query(`SET LOCAL work_mem = '64MB'`);
      try {
        return await fn(c, this.s);
      } finally {
        await c.query('ROLLBACK');
      }
    });
  }

  /** Records a DR event's start or outcome; a later record of the same run completes the earlier one. */
  async recordDrEvent(e: DrEventRecord): Promise<void> {
    await this.run((c) =>
      c.query(
        `INSERT INTO ${this.s}.dr_events (workflow_id, run_id, kind, database, status, reason, requested_by, started_at, finished_at,
           rto_ms, rpo_ms, data_loss_bytes, rto_target_ms, rpo_target_ms, met_targets, report_key, error, details)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)
         ON CONFLICT (workflow_id, run_id) DO UPDATE SET status = EXCLUDED.status, finished_at = EXCLUDED.finished_at,
           reason = coalesce(EXCLUDED.reason, ${this.s}.dr_events.reason), requested_by = coalesce(EXCLUDED.requested_by, ${this.s}.dr_events.requested_by),
           rto_ms = coalesce(EXCLUDED.rto_ms, ${this.s}.dr_events.rto_ms), rpo_ms = coalesce(EXCLUDED.rpo_ms, ${this.s}.dr_events.rpo_ms),
           data_loss_bytes = coalesce(EXCLUDED.data_loss_bytes, ${this.s}.dr_events.data_loss_bytes),
           met_targets = EXCLUDED.met_targets, report_key = coalesce(EXCLUDED.report_key, ${this.s}.dr_events.report_key),
           error = EXCLUDED.error, details = ${this.s}.dr_events.details || EXCLUDED.details`,
        [
          e.workflowId, e.runId, e.kind, e.database, e.status, e.reason ?? null, e.requestedBy ?? null, e.startedAt, e.finishedAt ?? null,
          e.rtoMs ?? null, e.rpoMs ?? null, e.dataLossBytes ?? null, e.rtoTargetMs, e.rpoTargetMs, e.metTargets ?? null, e.reportKey ?? null,
          e.error ?? null, JSON.stringify(e.details ?? {}),
        ],
      ),
    );
  }

  /** The roles a failover or switchover left; null when none has run (the config's say). */
  async getDrRoles(database: string): Promise<DrRoles | null> {
    const r = await this.run((c) => c.query(`SELECT *, ${microsText('changed_at')} AS changed_at_us FROM ${this.s}.dr_roles WHERE database = $1`, [database]));
    const row = r.rows[0];
    if (!row) return null;
    return {
      database,
      primary: { host: row.primary_host, port: row.primary_port, dataDir: row.primary_data_dir },
      standby: row.standby_host === null ? null : { host: row.standby_host, port: row.standby_port, dataDir: row.standby_data_dir },
      standbyState: row.standby_state,
      changedBy: row.changed_by,
      changedAt: row.changed_at_us,
    };
  }

  async setDrRoles(roles: DrRoles): Promise<void> {
    await this.run((c) =>
      c.query(
        `INSERT INTO ${this.s}.dr_roles (database, primary_host, primary_port, primary_data_dir, standby_host, standby_port, standby_data_dir, standby_state, changed_by)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
         ON CONFLICT (database) DO UPDATE SET primary_host = EXCLUDED.primary_host, primary_port = EXCLUDED.primary_port,
           primary_data_dir = EXCLUDED.primary_data_dir, standby_host = EXCLUDED.standby_host, standby_port = EXCLUDED.standby_port,
           standby_data_dir = EXCLUDED.standby_data_dir, standby_state = EXCLUDED.standby_state, changed_by = EXCLUDED.changed_by, changed_at = now()`,
        [roles.database, roles.primary.host, roles.primary.port, roles.primary.dataDir, roles.standby?.host ?? null, roles.standby?.port ?? null, roles.standby?.dataDir ?? null, roles.standbyState, roles.changedBy],
      ),
    );
  }

  /** The newest DR events first, of one kind or all. */
  async listDrEvents(filter: { kind?: DrEventKind; database?: string; limit?: number } = {}): Promise<DrEventRecord[]> {
    const r = await this.run((c) =>
      c.query(
        `SELECT ${withMicros('started_at', 'finished_at')} FROM ${this.s}.dr_events
          WHERE ($1::text IS NULL OR kind = $1) AND ($2::text IS NULL OR database = $2)
          ORDER BY started_at DESC, workflow_id, run_id LIMIT $3`,
        [filter.kind ?? null, filter.database ?? null, filter.limit ?? 100],
      ),
    );
    return r.rows.map((row) => ({
      workflowId: row.workflow_id,
      runId: row.run_id,
      kind: row.kind,
      database: row.database,
      status: row.status,
      reason: row.reason,
      requestedBy: row.requested_by,
      startedAt: row.started_at_us,
      finishedAt: row.finished_at_us,
      rtoMs: row.rto_ms === null ? null : Number(row.rto_ms),
      rpoMs: row.rpo_ms === null ? null : Number(row.rpo_ms),
      dataLossBytes: row.data_loss_bytes === null ? null : Number(row.data_loss_bytes),
      rtoTargetMs: Number(row.rto_target_ms),
      rpoTargetMs: Number(row.rpo_target_ms),
      metTargets: row.met_targets,
      reportKey: row.report_key,
      error: row.error,
      details: row.details,
    }));
  }

  async listRuns(limit = 100): Promise<(RunRecord & { startedAt: string; finishedAt: string | null })[]> {
    const r = await this.run((c) => c.query(`SELECT ${withMicros('started_at', 'finished_at')} FROM ${this.s}.runs ORDER BY started_at DESC LIMIT $1`, [limit]));
    return r.rows.map((x) => ({
      workflowId: x.workflow_id, runId: x.run_id, workflowType: x.workflow_type, tenantId: x.tenant_id, backupId: x.backup_id,
      status: x.status, error: x.error, details: x.details, startedAt: x.started_at_us, finishedAt: x.finished_at_us,
    }));
  }

  /** Idempotent: recording the same full backup twice leaves one row. */
  async recordFullBackup(m: FullManifest, storageUri: string, manifestSha256: string): Promise<FullBackupRecord> {
    const prefix = fullBackupPrefix(m.backupId);
    await this.run((c) =>
      c.query(
        `INSERT INTO ${this.s}.full_backups (backup_id, method, provider, database, storage_uri, prefix, manifest_sha256, bytes, timeline, start_lsn, stop_lsn,
                                             start_segment, stop_segment, segment_size, consistent_at, started_at, finished_at, manifest)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)
         ON CONFLICT (backup_id) DO UPDATE SET storage_uri = EXCLUDED.storage_uri, manifest_sha256 = EXCLUDED.manifest_sha256, manifest = EXCLUDED.manifest`,
        [
          m.backupId, m.method, m.provider, m.database, storageUri, prefix, manifestSha256, m.totals.bytes, m.wal?.timeline ?? null, m.wal?.startLsn ?? null,
          m.wal?.stopLsn ?? null, m.wal?.startSegment ?? null, m.wal?.stopSegment ?? null, m.wal?.segmentSize ?? null, m.consistentAt, m.startedAt, m.finishedAt, JSON.stringify(m),
        ],
      ),
    );
    const us = (iso: string) => formatMicros(parseMicros(iso));
    return fullRowToRecord({ backup_id: m.backupId, method: m.method, provider: m.provider, database: m.database, storage_uri: storageUri, prefix, manifest_sha256: manifestSha256, bytes: m.totals.bytes, manifest: m, consistent_at_us: us(m.consistentAt), started_at_us: us(m.startedAt), finished_at_us: us(m.finishedAt) });
  }

  /** Full backups, oldest first. */
  async listFullBackups(): Promise<FullBackupRecord[]> {
    const r = await this.run((c) => c.query(`SELECT ${fullBackupColumns} FROM ${this.s}.full_backups ORDER BY consistent_at, backup_id`));
    return r.rows.map(fullRowToRecord);
  }

  async getFullBackup(backupId: string): Promise<FullBackupRecord> {
    const r = await this.run((c) => c.query(`SELECT ${fullBackupColumns} FROM ${this.s}.full_backups WHERE backup_id = $1`, [backupId]));
    if (r.rowCount === 0) {
      throw new TenantsafeError(ErrorType.BackupNotFound, `Full backup "${backupId}" is not in the catalog.`, 'List full backups with `tenantsafe full-backups list`; if storage holds it, run `tenantsafe catalog rebuild`.');
    }
    return fullRowToRecord(r.rows[0]);
  }

  /**
   * The objects of batch attempts the indexed tenant backups reference (docs/format.md, "Packs"):
   * format 2, the packs their tables' parts are in; format 3, their batch's shared description
   * (in the same attempt's folder as its packs).
   */
  async referencedPacks(): Promise<Set<string>> {
    const r = await this.run((c) =>
      c.query<{ key: string }>(
        `SELECT DISTINCT t->'object'->>'key' AS key FROM ${this.s}.backups b, jsonb_array_elements(b.manifest->'tables') t
          WHERE b.manifest->>'formatVersion' = '2' AND t->'object' ? 'packOffset'
         UNION
         SELECT DISTINCT manifest->'batch'->>'key' FROM ${this.s}.backups WHERE manifest ? 'batch'`,
      ),
    );
    return new Set(r.rows.map((x) => x.key));
  }

  /** The tenant a tenant backup belongs to; null for a full backup or an id the catalog does not know. */
  async tenantOfBackup(backupId: string): Promise<string | null> {
    const r = await this.run((c) => c.query<{ tenant_id: string }>(`SELECT tenant_id FROM ${this.s}.backups WHERE backup_id = $1`, [backupId]));
    return r.rows[0]?.tenant_id ?? null;
  }

  /** Forgets a backup (full or tenant) whose objects were deleted. */
  async forgetBackup(backupId: string): Promise<void> {
    await this.run(async (c) => {
      await c.query(`DELETE FROM ${this.s}.full_backups WHERE backup_id = $1`, [backupId]);
      await c.query(`DELETE FROM ${this.s}.backups WHERE backup_id = $1`, [backupId]);
    });
  }

  async recordVerification(v: VerificationRecord): Promise<void> {
    await this.run((c) =>
      c.query(`INSERT INTO ${this.s}.verifications (backup_id, backup_kind, ok, counts, report, report_key) VALUES ($1, $2, $3, $4, $5, $6)`, [
        v.backupId, v.backupKind, v.ok, JSON.stringify(v.counts), JSON.stringify(v.report), v.reportKey,
      ]),
    );
  }

  /** Backup ids with at least one verification, and when the newest was. */
  async lastVerified(): Promise<Map<string, string>> {
    const r = await this.run((c) => c.query(`SELECT backup_id, ${microsText('max(verified_at)')} AS at FROM ${this.s}.verifications GROUP BY backup_id`));
    return new Map(r.rows.map((x) => [x.backup_id as string, x.at as string]));
  }

  /** Rebuilds the full-backup index of one store from the manifests under full/. */
  async rebuildFullBackups(store: ObjectStore): Promise<RebuildOutcome> {
    const { found, invalid } = await readManifests(store, 'full/', parseFullManifest);
    const existing = new Set((await this.listFullBackups()).filter((b) => b.storageUri === store.uri).map((b) => b.backupId));
    for (const { manifest, sha256 } of found.values()) await this.recordFullBackup(manifest, store.uri, sha256);
    const removed = [...existing].filter((id) => !found.has(id));
    if (removed.length) await this.run((c) => c.query(`DELETE FROM ${this.s}.full_backups WHERE backup_id = ANY($1)`, [removed]));
    return { indexed: found.size, added: [...found.keys()].filter((id) => !existing.has(id)), removed, invalid };
  }

  /** Creates or updates a restore's row; only the fields given change. */
  async recordRestore(r: RestoreRecord): Promise<void> {
    await this.run((c) =>
      c.query(
        `INSERT INTO ${this.s}.restores (restore_id, tenant_id, workflow_id, run_id, backup_id, state, requested_by, approved_by, digest, preview, safety_backup_id, result, error)
         VALUES ($1, $2, $3, $4, $5, $6, $7, coalesce($8::text[], '{}'), $9, $10, $11, $12, $13)
         ON CONFLICT (restore_id) DO UPDATE SET state = EXCLUDED.state, updated_at = now(),
           backup_id = coalesce(EXCLUDED.backup_id, ${this.s}.restores.backup_id),
           approved_by = coalesce($8::text[], ${this.s}.restores.approved_by),
           digest = coalesce(EXCLUDED.digest, ${this.s}.restores.digest),
           preview = coalesce(EXCLUDED.preview, ${this.s}.restores.preview),
           safety_backup_id = coalesce(EXCLUDED.safety_backup_id, ${this.s}.restores.safety_backup_id),
           result = coalesce(EXCLUDED.result, ${this.s}.restores.result),
           error = EXCLUDED.error`,
        [
          r.restoreId, r.tenantId, r.workflowId, r.runId, r.backupId ?? null, r.state, r.requestedBy, r.approvedBy ?? null, r.digest ?? null,
          r.preview === undefined ? null : JSON.stringify(r.preview), r.safetyBackupId ?? null, r.result === undefined ? null : JSON.stringify(r.result), r.error ?? null,
        ],
      ),
    );
  }

  async getRestore(restoreId: string): Promise<RestoreRecord> {
    const r = await this.run((c) => c.query(`SELECT * FROM ${this.s}.restores WHERE restore_id = $1`, [restoreId]));
    if (r.rowCount === 0) {
      throw new TenantsafeError(ErrorType.RestoreNotFound, `Restore "${restoreId}" is not in the catalog.`, 'Check the id printed by `tenantsafe restore tenant`.');
    }
    return restoreOf(r.rows[0]);
  }

  /**
   * The backups that restores not finished yet read (previewing, awaiting approval, applying,
   * verifying), of those updated since `since`: a restore whose workflow was terminated leaves
   * its row in such a state for good.
   */
  async backupsInUse(since: Date): Promise<Set<string>> {
    const r = await this.run((c) =>
      c.query<{ backup_id: string }>(
        `SELECT DISTINCT backup_id FROM ${this.s}.restores
          WHERE backup_id IS NOT NULL AND state IN ('previewing', 'awaiting-approval', 'applying', 'verifying') AND updated_at >= $1`,
        [since],
      ),
    );
    return new Set(r.rows.map((x) => x.backup_id));
  }

  /** Restores, newest first: of one tenant, in one state, at most `limit`. */
  async listRestores(filter: { tenantId?: string; state?: string; limit?: number } = {}): Promise<RestoreRecord[]> {
    const r = await this.run((c) =>
      c.query(
        `SELECT ${withMicros('created_at', 'updated_at')} FROM ${this.s}.restores WHERE ($1::text IS NULL OR tenant_id = $1) AND ($2::text IS NULL OR state = $2)
          ORDER BY created_at DESC, restore_id DESC LIMIT $3`,
        [filter.tenantId ?? null, filter.state ?? null, filter.limit ?? null],
      ),
    );
    return r.rows.map(restoreOf);
  }

  /** The newest complete backup of a tenant taken at or before `at` (ISO-8601 with a zone, to the microsecond; kind tenant: safety backups are for undo). */
  async latestBackupAtOrBefore(tenantId: string, at: string): Promise<BackupRecord | undefined> {
    const r = await this.run((c) =>
      c.query(`SELECT ${backupColumns} FROM ${this.s}.backups WHERE tenant_id = $1 AND kind = 'tenant' AND snapshot_at <= $2::timestamptz ORDER BY snapshot_at DESC LIMIT 1`, [tenantId, at]),
    );
    return r.rows[0] ? rowToRecord(r.rows[0]) : undefined;
  }

  /**
   * Rebuilds the backup index of one store from its manifests: adds what storage holds,
   * drops rows whose manifest is gone. Invalid manifests are reported, not indexed.
   */
  /**
   * The change log's rows from its records in storage: each stream's start, segments and gaps.
   * A stream logged before its start was recorded in storage begins, as far as anyone can now
   * tell, at its first logged commit (a base backup before that is no base for it).
   */
  async rebuildChangeLog(store: ObjectStore): Promise<{ streams: number; segments: number; gaps: number; invalid: { key: string; error: string }[] }> {
    const invalid: { key: string; error: string }[] = [];
    const starts = new Map<string, { lsn: string; at: string }>();
    const segments: { manifest: ChangeSegmentManifest; key: string; sha256: string }[] = [];
    const gaps: ChangeLogGap[] = [];
    for await (const obj of store.list(changeLogPrefix)) {
      if (!obj.key.endsWith('.json')) continue;
      try {
        const body = await store.getBytes(obj.key);
        // a segment of format 2 is encrypted; starts and gaps are 1
        const record = parseSealedManifest<ChangeLogStart | ChangeSegmentManifest | ChangeLogGap>(body, obj.key, [manifestFormatVersion, encryptedSegmentFormatVersion]);
        if (record.kind === 'changeLogStart') starts.set(record.stream, { lsn: record.lsn, at: record.at });
        else if (record.kind === 'changeSegment') segments.push({ manifest: record, key: obj.key, sha256: sha256Hex(body) });
        else if (record.kind === 'changeLogGap') gaps.push(record);
      } catch (err) {
        invalid.push({ key: obj.key, error: (err as Error).message });
      }
    }
    segments.sort((a, b) => (parseLsn(a.manifest.firstCommitLsn) < parseLsn(b.manifest.firstCommitLsn) ? -1 : 1));
    for (const { manifest: m } of segments) if (!starts.has(m.stream)) starts.set(m.stream, { lsn: m.firstCommitLsn, at: m.firstCommitTime });
    await this.run(async (c) => {
      await c.query('BEGIN');
      try {
        for (const table of ['change_segments', 'change_log_gaps', 'change_log_streams']) await c.query(`DELETE FROM ${this.s}.${table}`);
        for (const [stream, start] of starts) {
          await c.query(`INSERT INTO ${this.s}.change_log_streams (stream, started_lsn, started_at) VALUES ($1, $2, $3)`, [stream, start.lsn, start.at]);
        }
        for (const { manifest: m, key, sha256 } of segments) {
          await c.query(
            `INSERT INTO ${this.s}.change_segments (stream, first_commit_lsn, last_end_lsn, first_commit_time, last_commit_time, manifest_key, manifest_sha256, transactions, bytes)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING`,
            [m.stream, m.firstCommitLsn, m.lastEndLsn, m.firstCommitTime, m.lastCommitTime, key, sha256, m.transactions, m.object.bytes],
          );
        }
        for (const g of gaps) {
          await c.query(`INSERT INTO ${this.s}.change_log_gaps (stream, from_lsn, to_lsn, from_time, to_time, reason) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING`, [
            g.stream, g.from.lsn, g.to.lsn, g.from.time, g.to.time, g.reason,
          ]);
        }
        await c.query('COMMIT');
      } catch (err) {
        await c.query('ROLLBACK');
        throw err;
      }
    });
    return { streams: starts.size, segments: segments.length, gaps: gaps.length, invalid };
  }

  async rebuild(store: ObjectStore): Promise<RebuildOutcome> {
    const shared: BatchSharedCache = new Map();
    const { found, invalid } = await readManifests(store, 'tenants/', (body, key) => parseManifest(body, key, store, shared));
    const existing = new Set((await this.listBackups()).filter((b) => b.storageUri === store.uri).map((b) => b.backupId));
    const backups = [...found.values()].map(({ manifest, prefix, sha256 }) => ({ manifest, storageUri: store.uri, prefix, manifestSha256: sha256 }));
    // a backup whose id another tenant's row holds is left out (that row keeps its id: not removed below)
    const { taken } = await this.recordBackups(backups);
    for (const b of taken) invalid.push({ key: b.prefix + manifestFile, error: `Backup id ${b.manifest.backupId} is another tenant's backup in the catalog: tenant ${b.manifest.tenantId}'s backup is not indexed.` });
    const removed = [...existing].filter((id) => !found.has(id));
    if (removed.length) await this.run((c) => c.query(`DELETE FROM ${this.s}.backups WHERE backup_id = ANY($1)`, [removed]));
    return { indexed: found.size - taken.length, added: [...found.keys()].filter((id) => !existing.has(id)), removed, invalid };
  }
}

export function backupRecordOf(m: TenantManifest, storageUri: string, prefix: string, manifestSha256: string): BackupRecord {
  return {
    backupId: m.backupId,
    kind: m.pointInTime ? 'pointInTime' : parseBackupLabel(m.backupId)?.kind === 'safety' ? 'safety' : 'tenant',
    tenantId: m.tenantId,
    database: m.database,
    storageUri,
    prefix,
    manifestSha256,
    rows: m.totals.rows,
    bytes: m.totals.bytes,
    // as the catalog gives them back: to the microsecond (manifests written before kept milliseconds)
    snapshotAt: formatMicros(parseMicros(m.snapshot.at)),
    lsn: m.snapshot.lsn,
    tenantChecksum: m.tenantChecksum,
    schemaFingerprint: m.tenancy.fingerprint,
    startedAt: formatMicros(parseMicros(m.startedAt)),
    finishedAt: formatMicros(parseMicros(m.finishedAt)),
  };
}

function restoreOf(x: Record<string, any>): RestoreRecord {
  return {
    restoreId: x.restore_id, tenantId: x.tenant_id, workflowId: x.workflow_id, runId: x.run_id, backupId: x.backup_id, state: x.state,
    requestedBy: x.requested_by, approvedBy: x.approved_by, digest: x.digest, preview: x.preview, safetyBackupId: x.safety_backup_id, result: x.result, error: x.error,
    ...(x.created_at_us ? { createdAt: x.created_at_us, updatedAt: x.updated_at_us } : {}),
  };
}

function rowToRecord(r: Record<string, any>): BackupRecord {
  return {
    backupId: r.backup_id,
    kind: r.kind,
    tenantId: r.tenant_id,
    database: r.database,
    storageUri: r.storage_uri,
    prefix: r.prefix,
    manifestSha256: r.manifest_sha256,
    rows: Number(r.rows),
    bytes: Number(r.bytes),
    snapshotAt: r.snapshot_at_us,
    lsn: r.lsn,
    tenantChecksum: r.tenant_checksum,
    schemaFingerprint: r.schema_fingerprint,
    startedAt: r.started_at_us,
    finishedAt: r.finished_at_us,
  };
}

function fullRowToRecord(r: Record<string, any>): FullBackupRecord {
  const m = r.manifest as FullManifest;
  return {
    backupId: r.backup_id,
    method: r.method,
    provider: r.provider,
    database: r.database,
    storageUri: r.storage_uri,
    prefix: r.prefix,
    manifestSha256: r.manifest_sha256,
    bytes: Number(r.bytes),
    wal: m.wal,
    consistentAt: r.consistent_at_us,
    startedAt: r.started_at_us,
    finishedAt: r.finished_at_us,
  };
}

/** A tenant backup written to storage, as the catalog indexes it. */
export interface IndexedBackup {
  manifest: TenantManifest;
  storageUri: string;
  prefix: string;
  manifestSha256: string;
}

export interface RebuildOutcome {
  indexed: number;
  added: string[];
  removed: string[];
  invalid: { key: string; error: string }[];
}

/** Every manifest under `area`, parsed: by backup id, with its prefix and sha256; the unreadable ones apart. */
async function readManifests<T extends { backupId: string }>(
  store: ObjectStore,
  area: string,
  parse: (body: Buffer, key: string, store: ObjectStore) => T | Promise<T>,
): Promise<{ found: Map<string, { manifest: T; prefix: string; sha256: string }>; invalid: { key: string; error: string }[] }> {
  const found = new Map<string, { manifest: T; prefix: string; sha256: string }>();
  const invalid: { key: string; error: string }[] = [];
  for await (const obj of store.list(area)) {
    if (!obj.key.endsWith('/' + manifestFile)) continue;
    try {
      const body = await store.getBytes(obj.key);
      const manifest = await parse(body, obj.key, store);
      const twin = found.get(manifest.backupId);
      // two tenants' backups under one id (two batches of the same second): the first listed is indexed
      if (twin) throw new TenantsafeError(ErrorType.CorruptBackup, `Backup id ${manifest.backupId} is also the backup at ${twin.prefix}: this one is not indexed.`, 'Back the tenant up again; remove this backup after.');
      found.set(manifest.backupId, { manifest, prefix: obj.key.slice(0, -manifestFile.length), sha256: sha256Hex(body) });
    } catch (err) {
      invalid.push({ key: obj.key, error: (err as Error).message });
    }
  }
  return { found, invalid };
}
