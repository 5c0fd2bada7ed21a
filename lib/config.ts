// tenantsafe.yaml: loading, ${ENV} interpolation, validation with errors that name the key,
// and the embedded defaults used when there is no config at all (`tenantsafe dev`).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { parseDuration } from './duration';
import { isSecretHash, looksHashed } from './secretHash';
import { ErrorType, TenantsafeError } from './errors';
import type { RetentionPolicy } from './retention/policy';
import { parseCompression, type BaseCompression } from './format/fullManifest';

export type StorageConfig =
  | { kind: 'local'; path: string }
  | { kind: 'gcs'; bucket: string; prefix: string; apiEndpoint?: string; projectId?: string };

export interface Config {
  /** Where the config came from: a file path, or 'embedded defaults'. */
  source: string;
  database: { url: string };
  catalog: { url: string; schema: string };
  tenancy: {
    schemas: string[];
    tenantTable: string;
    tenantColumn: string;
    globalTables: string[];
    /** table → name of the foreign key that decides which tenant owns its rows */
    ownership: Record<string, string>;
  };
  /** secondary: a copy of everything in another location (region); reads fall over to it */
  storage: { primary: StorageConfig; secondary?: StorageConfig };
  temporal: {
    address: string;
    namespace: string;
    taskQueue: string;
    /** the Temporal Web UI (e.g. http://127.0.0.1:8233): alerts, health items and the dashboard link to the run there; none: ids only */
    uiUrl?: string;
    /** TLS to the frontend (a secured cluster, Temporal Cloud); absent: plaintext, unless an API key is set */
    tls?: TemporalTlsConfig;
    /** a Temporal Cloud API key, sent as a bearer token (implies TLS) */
    apiKey?: string;
  };
  backup: { parallelism: number; compressionLevel: number };
  restore: {
    /** distinct approvers needed besides the requester (four-eyes: 1) */
    approvers: number;
    approvalTimeoutMs: number;
    lockTimeoutMs: number;
    statementTimeoutMs: number;
    verifyOtherTenants: boolean;
  };
  dashboard: DashboardConfig;
  /** the worker process: its Prometheus /metrics listener (port 0: none) */
  worker: { metricsHost: string; metricsPort: number };
  monitoring: MonitoringConfig;
  fullBackup: FullBackupConfig;
  changeLog: ChangeLogConfig;
  /** set when fullBackup.provider is supabase */
  supabase: SupabaseConfig | null;
  retention: RetentionConfig;
  alerts: AlertsConfig;
  dr: DrConfig;
  verification: {
    scratchDir: string;
    tenantBackupsPerRun: number;
    /** the share of scratchDir's file system a scratch restore must leave free (others write there too) */
    scratchKeepFreePercent: number;
  };
}

export type FullBackupProviderKind = 'postgres' | 'supabase';

export interface FullBackupConfig {
  /** postgres: physical base backups + streamed WAL into our storage; supabase: the Management API + a logical dump */
  provider: FullBackupProviderKind;
  /** the physical replication slot pg_receivewal streams from */
  slot: string;
  /** pg_basebackup --max-rate in kB/s, to spare the server's disks; null: unthrottled */
  maxRateKbps: number | null;
  /** how long a base backup waits for the WAL archive to reach its stop LSN */
  archiveWaitMs: number;
  /** how often the WAL archiver uploads the segment being written: the recovery point objective */
  walPartialIntervalMs: number;
  /** where the WAL archiver lets pg_receivewal write, on each worker */
  walSpoolDir: string;
  /** how base backups' tars are compressed (zstd[:level], lz4, gzip[:level]); each backup's manifest records its own */
  compression: BaseCompression;
}

/** The change log (logical decoding) that tenant point-in-time restores replay. */
export interface ChangeLogConfig {
  enabled: boolean;
  /** the logical replication slot it reads (pgoutput) */
  slot: string;
  /** the publication of the tenant-owned tables, kept in step with the tenancy plan */
  publication: string;
  /** how often what was received is written to storage, at most */
  flushIntervalMs: number;
  /** set REPLICA IDENTITY FULL on owned tables without a primary key (else the change log refuses to start) */
  replicaIdentityFull: boolean;
  /** how long a tenant backup waits for the exact boundary with the change log before it goes without */
  boundaryWaitMs: number;
}

/** TLS to Temporal: files are read when a connection is made (the CLI's reading commands never need them). */
export interface TemporalTlsConfig {
  /** PEM of the CA that signed the server's certificate; absent: the system's CAs */
  caFile?: string;
  /** PEM certificate and key for mutual TLS (both or neither) */
  clientCertFile?: string;
  clientKeyFile?: string;
  /** the name the server's certificate is checked against, when not the address's host */
  serverName?: string;
}

/**
 * Disaster recovery: the targets every failover and drill is measured against, the standby
 * (self-managed provider), the endpoint applications connect through, the failover policy, the drills.
 */
export interface DrConfig {
  /** the data loss and the downtime the operator accepts; every failover and drill is judged against them */
  targets: { rpoMs: number; rtoMs: number };
  /** null when no standby is configured: failover and switchover refuse */
  standby: DrStandbyConfig | null;
  /**
   * the primary's data directory, when the worker runs on its host: a failover then reads the WAL
   * the lost primary left (pg_waldump) and measures the commits lost exactly; null: estimated from the last probe
   */
  primaryDataDir: string | null;
  /** null when applications connect straight to the database: failover then cannot switch them */
  endpoint: DrEndpointConfig | null;
  failover: DrFailoverConfig;
  drill: DrDrillConfig;
}

export interface DrStandbyConfig {
  /** the standby's data directory, on the host of the worker that runs `standby create` */
  dataDir: string;
  host: string;
  port: number;
  /** the physical replication slot on the primary that keeps the standby's WAL */
  slot: string;
  /** synchronous_standby_names names the standby: a commit waits for it (RPO 0) */
  synchronous: boolean;
  /** a failover refuses (unless forced) when the standby lacks more than this many bytes of the primary's WAL (the loss estimate) */
  maxLagBytes: number;
}

export interface DrEndpointConfig {
  /** PgBouncer's admin console (database `pgbouncer`), where PAUSE, RELOAD and RESUME are sent */
  adminUrl: string;
  /** the file of PgBouncer's [databases] section the failover rewrites (included by pgbouncer.ini) */
  databasesFile: string;
  /** the database name applications use through PgBouncer */
  database: string;
  /** the application's URL through PgBouncer, for the write check after a switch */
  url: string;
}

export interface DrFailoverConfig {
  /** required: a person or service approves by signal; automatic: the workflow goes on alone */
  approval: 'required' | 'automatic';
  /** failed probes in a row before the primary counts as lost */
  probes: number;
  probeIntervalMs: number;
  probeTimeoutMs: number;
  approvalTimeoutMs: number;
}

export interface DrDrillConfig {
  /** how often the Temporal Schedule runs a drill; null: no schedule (drills run by hand) */
  intervalMs: number | null;
  /** tenants whose rows the drill compares with their latest tenant backup */
  sampleTenants: number;
}

export type DashboardRole = 'read-only' | 'operator';

/** Someone who may sign in to the dashboard (client/dashboard), or call its HTTP API. */
export interface DashboardUser {
  name: string;
  /** read-only: every page; operator: also approve and reject restores */
  role: DashboardRole;
  /** for `Authorization: Bearer`: a hash (sha256$ or scrypt$, `tenantsafe hash-secret`) or the token as the environment gave it */
  token?: string;
  /** for the sign-in form and basic auth: a hash (scrypt$) or the password as the environment gave it */
  password?: string;
  /** over the HTTP API, may approve or reject on behalf of the person it names (`by`): a service that relays */
  relay: boolean;
}

export interface DashboardConfig {
  host: string;
  port: number;
  /** the HTTP API's token from before users: an operator named `dashboard.token` that relays */
  token?: string;
  users: DashboardUser[];
  /** how long a sign-in lasts */
  sessionTtlMs: number;
  /** signs sessions and forms; several dashboard processes behind one address need the same. None: random per process */
  sessionSecret?: string;
}

/**
 * What the health model (lib/monitoring) judges against: how often each kind of backup must
 * succeed, how far an age may pass that interval, the recovery point objectives, how long a
 * restore may wait for approval; and how much per-tenant detail the metrics carry.
 */
export interface MonitoringConfig {
  /**
   * The interval each kind must succeed within. undefined: the Temporal schedule's interval when
   * one exists (tenant backups: else 24 h; full backups and verification: else not judged);
   * null (`off`): its age is not judged.
   */
  schedules: { tenantBackup?: number | null; fullBackup?: number | null; verification?: number | null };
  /** an age over interval × warningFactor is a warning, over interval × criticalFactor critical */
  warningFactor: number;
  criticalFactor: number;
  /** the WAL archive's recovery point objective: achieved RPO over it is a warning, over twice it critical */
  rpoTargetMs: number;
  /** the change log's: how far it may trail the database */
  changeLogLagTargetMs: number;
  /** the WAL archiver not heard from for this long (it reports every 30 s): critical */
  walStalledAfterMs: number;
  /** a restore waiting for approval longer than this: warning */
  approvalWaitMs: number;
  /** per-tenant metrics for the N worst tenants (bounded cardinality) */
  topTenants: number;
  /** tenants whose per-tenant metrics are always exported */
  tenants: string[];
  /** how long a computed health report serves /metrics before it is computed again */
  cacheTtlMs: number;
  /** when set, /metrics (worker and dashboard) asks for `Authorization: Bearer <metricsToken>` */
  metricsToken?: string;
}

/** Pushed alerts (lib/alerts): where a failing job and its recovery are announced. */
export interface AlertsConfig {
  /** a JSON POST that Slack incoming webhooks accept (text + blocks), with the alert's fields beside them */
  webhook: { url: string; headers: Record<string, string> } | null;
  email: { smtp: SmtpConfig; from: string; to: string[] } | null;
  /** one delivery attempt, at most (connect, send, answer) */
  timeoutMs: number;
  /** the wait after a failed delivery attempt; it doubles each time, up to maxRetryIntervalMs */
  retryIntervalMs: number;
  maxRetryIntervalMs: number;
  /** a notice still undelivered this long after it was raised is given up (recorded in the catalog) */
  giveUpAfterMs: number;
}

export interface SmtpConfig {
  host: string;
  port: number;
  /** TLS from the first byte (port 465); else STARTTLS when the server offers it */
  secure: boolean;
  user?: string;
  password?: string;
}

export interface SupabaseConfig {
  /** the 20-letter project ref */
  projectRef: string;
  /** a personal access token; read from the environment, never passed through Temporal */
  accessToken: string;
  apiUrl: string;
}

export interface RetentionConfig extends RetentionPolicy {
  /** prefixes of interrupted backups older than this are removed */
  incompleteAfterMs: number;
  /** per-tenant overrides of the tenant-backup policy */
  tenants: Record<string, Partial<RetentionPolicy>>;
}

export const projectRoot = path.resolve(__dirname, '..');

/** Where the embedded dev stack lives: a private Postgres, a Temporal dev server, local backups. */
export interface DevLayout {
  /** holds pg/ (the cluster), temporal/ (sqlite) and backups/ */
  home: string;
  pgPort: number;
  temporalPort: number;
  uiPort: number;
}

export const defaultDevLayout: DevLayout = { home: path.join(projectRoot, 'var'), pgPort: 55432, temporalPort: 7233, uiPort: 8233 };

/** The sample multi-tenant database the embedded stack generates. */
export const sampleDatabase = 'tenantsafe_sample';

export function embeddedConfigDocument(layout: DevLayout = defaultDevLayout): unknown {
  return {
    database: { url: `postgres://postgres@127.0.0.1:${layout.pgPort}/${sampleDatabase}` },
    storage: { primary: { kind: 'local', path: path.join(layout.home, 'backups') } },
    temporal: { address: `127.0.0.1:${layout.temporalPort}` },
  };
}

export interface LoadOptions {
  /** --config; else $TENANTSAFE_CONFIG; else ./tenantsafe.yaml if present; else embedded defaults */
  path?: string;
  /** the embedded stack to describe when there is no config file */
  layout?: DevLayout;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
}

export function configPathFor(opts: LoadOptions = {}): string | undefined {
  const env = opts.env ?? process.env;
  const cwd = opts.cwd ?? process.cwd();
  const explicit = opts.path ?? env.TENANTSAFE_CONFIG;
  if (explicit) return path.resolve(cwd, explicit);
  const local = path.join(cwd, 'tenantsafe.yaml');
  return fs.existsSync(local) ? local : undefined;
}

export function loadConfig(opts: LoadOptions = {}): Config {
  const env = opts.env ?? process.env;
  const file = configPathFor(opts);
  if (!file) return parseConfig(embeddedConfigDocument(opts.layout), { env, source: 'embedded defaults', baseDir: projectRoot });
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new TenantsafeError(
      ErrorType.BadConfig,
      `Cannot read config file ${file}: ${(err as Error).message}.`,
      'Pass --config <path> or set TENANTSAFE_CONFIG to a readable tenantsafe.yaml.',
    );
  }
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (err) {
    throw new TenantsafeError(
      ErrorType.BadConfig,
      `Config file ${file} is not valid YAML: ${(err as Error).message.split('\n')[0]}`,
      'Fix the YAML syntax at the line shown.',
    );
  }
  return parseConfig(doc, { env, source: file, baseDir: path.dirname(file) });
}

/** One storage location (storage.primary, storage.secondary): local disk or a GCS bucket. */
function storageLocation(section: Section, ctx: ParseContext): StorageConfig {
  const kind = section.oneOf('kind', ['local', 'gcs'], true);
  let location: StorageConfig = { kind: 'local', path: '' };
  if (kind === 'local') {
    location = { kind: 'local', path: path.resolve(ctx.baseDir, section.string('path', true) ?? '') };
  } else if (kind === 'gcs') {
    location = {
      kind: 'gcs',
      bucket: section.string('bucket', true) ?? '',
      prefix: (section.string('prefix') ?? '').replace(/^\/+|\/+$/g, ''),
      apiEndpoint: section.url('apiEndpoint'),
      projectId: section.string('projectId'),
    };
  }
  section.done();
  return location;
}

interface ParseContext {
  env: NodeJS.ProcessEnv;
  source: string;
  /** relative storage paths are resolved against this directory */
  baseDir: string;
}

/** Validates a config document, collecting every problem, each naming its key. */
export function parseConfig(doc: unknown, ctx: ParseContext): Config {
  const problems: string[] = [];
  const root = new Section(interpolate(doc, '', ctx.env, problems), '', problems);

  const database = root.section('database', true);
  const databaseUrl = database.postgresUrl('url', true);
  database.done();

  const catalog = root.section('catalog');
  const catalogUrl = catalog.postgresUrl('url') ?? databaseUrl;
  const catalogSchema = catalog.identifier('schema') ?? 'tenantsafe';
  catalog.done();

  const tenancy = root.section('tenancy');
  const tenancyConfig: Config['tenancy'] = {
    schemas: tenancy.identifierList('schemas') ?? ['app'],
    tenantTable: tenancy.identifier('tenantTable') ?? 'tenants',
    tenantColumn: tenancy.identifier('tenantColumn') ?? 'tenant_id',
    globalTables: tenancy.identifierList('globalTables') ?? [],
    ownership: tenancy.stringMap('ownership') ?? {},
  };
  tenancy.done();

  const storage = root.section('storage', true);
  const primaryConfig = storageLocation(storage.section('primary', true), ctx);
  const secondarySection = storage.optionalSection('secondary');
  const secondaryConfig = secondarySection && storageLocation(secondarySection, ctx);
  if (secondaryConfig && JSON.stringify(secondaryConfig) === JSON.stringify(primaryConfig)) {
    problems.push('storage.secondary: names the same location as storage.primary; a copy there protects nothing (give it another path or bucket)');
  }
  storage.done();

  const temporal = root.section('temporal');
  const temporalConfig = {
    address: temporal.hostPort('address') ?? '127.0.0.1:7233',
    namespace: temporal.string('namespace') ?? 'default',
    taskQueue: temporal.string('taskQueue') ?? 'tenantsafe',
  };
  const uiUrl = temporal.url('uiUrl')?.replace(/\/+$/, '');
  const tls = temporalTlsOf(temporal, ctx.baseDir);
  const apiKey = temporal.secret('apiKey');
  temporal.done();

  const backup = root.section('backup');
  const backupConfig = {
    parallelism: backup.integer('parallelism', 1, 64) ?? 4,
    compressionLevel: backup.integer('compressionLevel', 0, 9) ?? 1,
  };
  backup.done();

  const full = root.section('fullBackup');
  const fullBackupConfig: FullBackupConfig = {
    provider: full.oneOf('provider', ['postgres', 'supabase'] as const) ?? 'postgres',
    slot: full.identifier('slot') ?? 'tenantsafe',
    maxRateKbps: full.integer('maxRateKbps', 32, 1_048_576) ?? null,
    archiveWaitMs: full.duration('archiveWait') ?? 60_000,
    walPartialIntervalMs: full.duration('walPartialInterval') ?? 500,
    walSpoolDir: path.resolve(ctx.baseDir, full.string('walSpoolDir') ?? path.join(os.tmpdir(), 'tenantsafe-wal')),
    compression: defaultCompression,
  };
  const compressionText = full.string('compression');
  if (compressionText !== undefined) {
    const parsed = parseCompression(compressionText);
    if ('error' in parsed) full.reject('compression', parsed.error, compressionText);
    else fullBackupConfig.compression = parsed;
  }
  full.done();

  const changes = root.section('changeLog');
  const changeLogConfig: ChangeLogConfig = {
    enabled: changes.boolean('enabled') ?? false,
    slot: changes.identifier('slot') ?? 'tenantsafe_changes',
    publication: changes.identifier('publication') ?? 'tenantsafe_changes',
    flushIntervalMs: changes.duration('flushInterval') ?? 500,
    replicaIdentityFull: changes.boolean('replicaIdentityFull') ?? false,
    boundaryWaitMs: changes.duration('boundaryWait') ?? 10_000,
  };
  changes.done();

  const usesSupabase = fullBackupConfig.provider === 'supabase';
  const supabase = root.section('supabase', usesSupabase);
  const projectRef = supabase.string('projectRef', usesSupabase);
  if (projectRef && !/^[a-z]{20}$/.test(projectRef)) supabase.reject('projectRef', 'must be the 20 lowercase letters of the project ref', projectRef);
  const accessToken = supabase.secret('accessToken', usesSupabase);
  const apiUrl = (supabase.url('apiUrl') ?? 'https://api.supabase.com').replace(/\/+$/, '');
  const supabaseConfig: SupabaseConfig | null = projectRef && accessToken ? { projectRef, accessToken, apiUrl } : null;
  supabase.done();

  const retention = root.section('retention');
  const retentionConfig: RetentionConfig = {
    ...retentionPolicyOf(retention, defaultRetention),
    incompleteAfterMs: retention.duration('incompleteAfter') ?? 6 * 3_600_000,
    tenants:
      retention.mapOf('tenants', (tenant) => {
        const override = retentionPolicyOf(tenant, {});
        tenant.done();
        return override;
      }) ?? {},
  };
  retention.done();

  const alertsConfig = alertsOf(root.section('alerts'));
  const drConfig = drOf(root.section('dr'), ctx.baseDir);

  const verification = root.section('verification');
  const verificationConfig = {
    scratchDir: path.resolve(ctx.baseDir, verification.string('scratchDir') ?? os.tmpdir()),
    tenantBackupsPerRun: verification.integer('tenantBackupsPerRun', 0, 10_000) ?? 10,
    scratchKeepFreePercent: verification.integer('scratchKeepFreePercent', 0, 99) ?? 5,
  };
  verification.done();
  const restore = root.section('restore');
  const restoreConfig = {
    approvers: restore.integer('approvers', 1, 10) ?? 1,
    approvalTimeoutMs: restore.duration('approvalTimeout') ?? 24 * 3_600_000,
    lockTimeoutMs: restore.duration('lockTimeout') ?? 10_000,
    statementTimeoutMs: restore.duration('statementTimeout') ?? 30 * 60_000,
    verifyOtherTenants: restore.boolean('verifyOtherTenants') ?? true,
  };
  restore.done();

  const dashboardConfig = dashboardOf(root.section('dashboard'), (doc as { dashboard?: { users?: unknown } } | null)?.dashboard?.users);

  const worker = root.section('worker');
  const workerConfig = {
    metricsHost: worker.string('metricsHost') ?? '127.0.0.1',
    metricsPort: worker.integer('metricsPort', 0, 65535) ?? 0,
  };
  worker.done();

  const monitoring = root.section('monitoring');
  const schedules = monitoring.section('schedules');
  const monitoringConfig: MonitoringConfig = {
    schedules: {
      ...optional('tenantBackup', schedules.durationOrOff('tenantBackup')),
      ...optional('fullBackup', schedules.durationOrOff('fullBackup')),
      ...optional('verification', schedules.durationOrOff('verification')),
    },
    warningFactor: monitoring.number('warningFactor', 1, 100) ?? 1.5,
    criticalFactor: monitoring.number('criticalFactor', 1, 100) ?? 2,
    rpoTargetMs: monitoring.duration('rpoTarget') ?? 5 * 60_000,
    changeLogLagTargetMs: monitoring.duration('changeLogLagTarget') ?? 5 * 60_000,
    walStalledAfterMs: monitoring.duration('walStalledAfter') ?? 3 * 60_000,
    approvalWaitMs: monitoring.duration('approvalWait') ?? 3_600_000,
    topTenants: monitoring.integer('topTenants', 0, 1000) ?? 10,
    tenants: monitoring.identifierList('tenants') ?? [],
    cacheTtlMs: monitoring.duration('cacheTtl') ?? 30_000,
    ...optional('metricsToken', monitoring.secret('metricsToken')),
  };
  schedules.done();
  if (monitoringConfig.criticalFactor < monitoringConfig.warningFactor) monitoring.reject('criticalFactor', `must be at least warningFactor (${monitoringConfig.warningFactor})`, monitoringConfig.criticalFactor);
  monitoring.done();

  root.done();
  if (problems.length > 0) {
    throw new TenantsafeError(
      ErrorType.BadConfig,
      `Invalid config (${ctx.source}):\n  - ${problems.join('\n  - ')}\n`,
      'Fix the keys listed above; docs: README.md#configuration.',
    );
  }
  return {
    source: ctx.source,
    database: { url: databaseUrl ?? '' },
    catalog: { url: catalogUrl ?? '', schema: catalogSchema },
    tenancy: tenancyConfig,
    storage: secondaryConfig ? { primary: primaryConfig, secondary: secondaryConfig } : { primary: primaryConfig },
    temporal: { ...temporalConfig, ...optional('uiUrl', uiUrl), ...optional('tls', tls), ...optional('apiKey', apiKey) },
    backup: backupConfig,
    fullBackup: fullBackupConfig,
    changeLog: changeLogConfig,
    supabase: supabaseConfig,
    retention: retentionConfig,
    alerts: alertsConfig,
    dr: drConfig,
    verification: verificationConfig,
    restore: restoreConfig,
    dashboard: dashboardConfig,
    worker: workerConfig,
    monitoring: monitoringConfig,
  };
}

/** `{[key]: value}` when value is defined, else `{}`: optional keys stay absent. */
function optional<K extends string, V>(key: K, value: V | undefined): { [k in K]?: V } {
  return (value === undefined ? {} : { [key]: value }) as { [k in K]?: V };
}

export const defaultRetention: RetentionPolicy = { days: 30, minCount: 3, daily: 0, weekly: 0, monthly: 0, yearly: 0 };

/** The policy keys of a retention section (the top level, or one tenant's override). */
function retentionPolicyOf<T extends Partial<RetentionPolicy>>(section: Section, defaults: T): T {
  const out: Partial<RetentionPolicy> = { ...defaults };
  for (const key of ['days', 'minCount', 'daily', 'weekly', 'monthly', 'yearly'] as const) {
    const v = section.integer(key, 0, 100_000);
    if (v !== undefined) out[key] = v;
  }
  return out as T;
}

const userNamePattern = /^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$/;

/**
 * The dashboard section. A user's token or password is a hash (`tenantsafe hash-secret`) or a
 * reference to the environment (`${ALICE_PASSWORD}`): a secret written into the file as itself is
 * refused. `rawUsers` is the users mapping before ${ENV} interpolation, to tell them apart.
 */
function dashboardOf(dashboard: Section, rawUsers: unknown): DashboardConfig {
  const raw = (name: string, key: string): unknown => (rawUsers && typeof rawUsers === 'object' ? (rawUsers as Record<string, Record<string, unknown> | undefined>)[name]?.[key] : undefined);
  const users = dashboard.mapOf('users', (user, name): DashboardUser | undefined => {
    const role = user.oneOf('role', ['read-only', 'operator'] as const, true);
    const secretOf = (key: 'token' | 'password', minLength: number): string | undefined => {
      const v = user.secret(key);
      if (v === undefined) return undefined;
      const given = raw(name, key);
      const fromEnv = typeof given === 'string' && /\$\{[A-Za-z_][A-Za-z0-9_]*(:-[^}]*)?\}/.test(given);
      if (looksHashed(v)) {
        if (!isSecretHash(v)) return user.rejectSecret(key, 'is not a well-formed hash (make one with `tenantsafe hash-secret`)');
        return v;
      }
      if (!fromEnv) return user.rejectSecret(key, `must be a hash (\`tenantsafe hash-secret${key === 'token' ? ' --token' : ''}\`) or an environment reference like \${${name.toUpperCase().replace(/[^A-Z0-9]+/g, '_')}_${key.toUpperCase()}}; a secret written in the file is refused`);
      if (v.length < minLength) return user.rejectSecret(key, `must be at least ${minLength} characters`);
      return v;
    };
    const token = secretOf('token', 16);
    const password = secretOf('password', 8);
    const relay = user.boolean('relay') ?? false;
    user.done();
    if (!userNamePattern.test(name)) user.reject('', 'a user name is 1 to 64 letters, digits and . _ @ - (starting with a letter or digit)', name);
    else if (token === undefined && password === undefined && raw(name, 'token') === undefined && raw(name, 'password') === undefined) user.reject('', 'needs a token or a password', name);
    if (!role || (token === undefined && password === undefined)) return undefined;
    return { name, role, ...(token !== undefined ? { token } : {}), ...(password !== undefined ? { password } : {}), relay };
  });
  const config: DashboardConfig = {
    host: dashboard.string('host') ?? '127.0.0.1',
    port: dashboard.integer('port', 0, 65535) ?? 8080,
    ...optional('token', dashboard.secret('token')),
    users: Object.values(users ?? {}).filter((u): u is DashboardUser => u !== undefined),
    sessionTtlMs: dashboard.duration('sessionTtl') ?? 12 * 3_600_000,
    ...optional('sessionSecret', dashboard.secret('sessionSecret')),
  };
  if (config.sessionSecret !== undefined && config.sessionSecret.length < 32) dashboard.rejectSecret('sessionSecret', 'must be at least 32 characters');
  const plainTokens = config.users.filter((u) => u.token && !looksHashed(u.token));
  for (const u of plainTokens) {
    if (plainTokens.some((o) => o !== u && o.token === u.token) || u.token === config.token) dashboard.rejectSecret(`users.${u.name}.token`, 'is the same as another user\'s (a token must say who calls)');
  }
  dashboard.done();
  return config;
}

/** The alerts section: a webhook, e-mail, or both; nothing configured sends nothing. */
function alertsOf(alerts: Section): AlertsConfig {
  const webhook = alerts.optionalSection('webhook');
  let webhookConfig: AlertsConfig['webhook'] = null;
  if (webhook) {
    const url = webhook.secretUrl('url', true);
    const headers = webhook.secretMap('headers') ?? {};
    webhook.done();
    if (url) webhookConfig = { url, headers };
  }
  const email = alerts.optionalSection('email');
  let emailConfig: AlertsConfig['email'] = null;
  if (email) {
    const smtp = email.section('smtp', true);
    const secure = smtp.boolean('secure') ?? false;
    const host = smtp.string('host', true);
    const port = smtp.integer('port', 1, 65535) ?? (secure ? 465 : 587);
    const user = smtp.string('user');
    const password = smtp.secret('password');
    if (password !== undefined && user === undefined) smtp.reject('user', 'is required with a password', null);
    smtp.done();
    const from = email.emailAddress('from', true);
    const to = email.emailList('to', true);
    email.done();
    if (host && from && to) emailConfig = { smtp: { host, port, secure, ...(user !== undefined ? { user } : {}), ...(password !== undefined ? { password } : {}) }, from, to };
  }
  const config: AlertsConfig = {
    webhook: webhookConfig,
    email: emailConfig,
    timeoutMs: alerts.duration('timeout') ?? 10_000,
    retryIntervalMs: alerts.duration('retryInterval') ?? 5_000,
    maxRetryIntervalMs: alerts.duration('maxRetryInterval') ?? 5 * 60_000,
    giveUpAfterMs: alerts.duration('giveUpAfter') ?? 24 * 3_600_000,
  };
  alerts.done();
  return config;
}

/** `tls: true` (system CAs), or a mapping of files and the server name; absent or false: none. */
function temporalTlsOf(temporal: Section, baseDir: string): TemporalTlsConfig | undefined {
  if (typeof temporal.peek('tls') === 'boolean' || temporal.peek('tls') === 'true' || temporal.peek('tls') === 'false') return temporal.boolean('tls') ? {} : undefined;
  const tls = temporal.optionalSection('tls');
  if (!tls) return undefined;
  const file = (name: string) => {
    const v = tls.string(name);
    return v === undefined ? undefined : path.resolve(baseDir, v);
  };
  const config: TemporalTlsConfig = {
    ...optional('caFile', file('ca')),
    ...optional('clientCertFile', file('clientCert')),
    ...optional('clientKeyFile', file('clientKey')),
    ...optional('serverName', tls.string('serverName')),
  };
  if ((config.clientCertFile === undefined) !== (config.clientKeyFile === undefined)) tls.reject(config.clientCertFile ? 'clientKey' : 'clientCert', 'is required with the other half of the client certificate', null);
  tls.done();
  return config;
}

function drOf(dr: Section, baseDir: string): DrConfig {
  const targets = dr.section('targets');
  const targetsConfig = { rpoMs: targets.duration('rpo') ?? 5_000, rtoMs: targets.duration('rto') ?? 60_000 };
  targets.done();

  const standby = dr.optionalSection('standby');
  let standbyConfig: DrStandbyConfig | null = null;
  if (standby) {
    const dataDir = standby.string('dataDir', true);
    const port = standby.integer('port', 1, 65535);
    if (port === undefined) standby.string('port', true);
    standbyConfig = {
      dataDir: path.resolve(baseDir, dataDir ?? ''),
      host: standby.string('host') ?? '127.0.0.1',
      port: port ?? 0,
      slot: standby.identifier('slot') ?? 'tenantsafe_standby',
      synchronous: standby.boolean('synchronous') ?? false,
      maxLagBytes: standby.bytes('maxLag') ?? 16 * 1024 * 1024,
    };
    standby.done();
  }

  const primaryDataDir = dr.string('primaryDataDir');

  const endpoint = dr.optionalSection('endpoint');
  let endpointConfig: DrEndpointConfig | null = null;
  if (endpoint) {
    const adminUrl = endpoint.postgresUrl('adminUrl', true);
    const databasesFile = endpoint.string('databasesFile', true);
    const database = endpoint.string('database', true);
    const url = endpoint.postgresUrl('url', true);
    endpoint.done();
    if (adminUrl && databasesFile && database && url) endpointConfig = { adminUrl, databasesFile: path.resolve(baseDir, databasesFile), database, url };
  }

  const failover = dr.section('failover');
  const failoverConfig: DrFailoverConfig = {
    approval: failover.oneOf('approval', ['required', 'automatic'] as const) ?? 'required',
    probes: failover.integer('probes', 1, 100) ?? 3,
    probeIntervalMs: failover.duration('probeInterval') ?? 1_000,
    probeTimeoutMs: failover.duration('probeTimeout') ?? 2_000,
    approvalTimeoutMs: failover.duration('approvalTimeout') ?? 3_600_000,
  };
  failover.done();

  const drill = dr.section('drill');
  const drillInterval = drill.durationOrOff('interval');
  const drillConfig: DrDrillConfig = {
    intervalMs: drillInterval === undefined ? 7 * 24 * 3_600_000 : drillInterval,
    sampleTenants: drill.integer('sampleTenants', 0, 1000) ?? 1,
  };
  drill.done();
  dr.done();
  return {
    targets: targetsConfig,
    standby: standbyConfig,
    primaryDataDir: primaryDataDir ? path.resolve(baseDir, primaryDataDir) : null,
    endpoint: endpointConfig,
    failover: failoverConfig,
    drill: drillConfig,
  };
}

/** Replaces ${VAR} and ${VAR:-default} in every string value. */
function interpolate(value: unknown, key: string, env: NodeJS.ProcessEnv, problems: string[]): unknown {
  if (typeof value === 'string') {
    return value.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g, (_, name: string, fallback?: string) => {
      const found = env[name];
      if (found !== undefined && found !== '') return found;
      if (fallback !== undefined) return fallback;
      problems.push(`${key}: environment variable ${name} is not set`);
      return '';
    });
  }
  if (Array.isArray(value)) return value.map((v, i) => interpolate(v, `${key}[${i}]`, env, problems));
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(
      Object.entries(value).map(([k, v]) => [k, interpolate(v, key ? `${key}.${k}` : k, env, problems)]),
    );
  }
  return value;
}

/** One mapping of the config; records a problem per bad or unknown key. */
/** zstd level 1 on every core: as fast as lz4 here, and smaller than pgBackRest's lz4 (bench/README.md) */
const defaultCompression: BaseCompression = { method: 'zstd', level: 1 };

class Section {
  private readonly values: Record<string, unknown>;
  private readonly seen = new Set<string>();
  /** a missing section was reported once already; its keys are not reported again */
  private readonly absent: boolean;

  constructor(
    value: unknown,
    private readonly prefix: string,
    private readonly problems: string[],
  ) {
    this.absent = value === undefined || value === null;
    if (this.absent) {
      this.values = {};
    } else if (typeof value === 'object' && !Array.isArray(value)) {
      this.values = value as Record<string, unknown>;
    } else {
      this.problems.push(`${prefix || '(top level)'}: must be a mapping of keys`);
      this.values = {};
    }
  }

  private key(name: string): string {
    return this.prefix ? `${this.prefix}.${name}` : name;
  }

  private take(name: string, required: boolean): unknown {
    this.seen.add(name);
    const v = this.values[name];
    if ((v === undefined || v === null || v === '') && required && !(this.absent && this.prefix)) this.problems.push(`${this.key(name)}: is required`);
    return v === null || v === '' ? undefined : v;
  }

  private fail(name: string, what: string, got: unknown): undefined {
    this.problems.push(`${this.key(name)}: ${what} (got ${JSON.stringify(got)})`);
    return undefined;
  }

  /** The raw value of a key, without taking it (to choose how to read it). */
  peek(name: string): unknown {
    return this.values[name];
  }

  section(name: string, required = false): Section {
    return new Section(this.take(name, required), this.key(name), this.problems);
  }

  /** A subsection that is there, or undefined when the key is absent. */
  optionalSection(name: string): Section | undefined {
    const v = this.take(name, false);
    return v === undefined ? undefined : new Section(v, this.key(name), this.problems);
  }

  string(name: string, required = false): string | undefined {
    const v = this.take(name, required);
    if (v === undefined) return undefined;
    if (typeof v !== 'string' && typeof v !== 'number') return this.fail(name, 'must be a string', v);
    return String(v);
  }

  oneOf<T extends string>(name: string, allowed: readonly T[], required = false): T | undefined {
    const v = this.string(name, required);
    if (v === undefined) return undefined;
    if (!(allowed as readonly string[]).includes(v)) return this.fail(name, `must be one of ${allowed.join(', ')}`, v);
    return v as T;
  }

  identifier(name: string): string | undefined {
    const v = this.string(name);
    if (v !== undefined && (v.length === 0 || v.length > 63)) return this.fail(name, 'must be a name of 1 to 63 characters', v);
    return v;
  }

  identifierList(name: string): string[] | undefined {
    const v = this.take(name, false);
    if (v === undefined) return undefined;
    if (!Array.isArray(v) || v.some((s) => typeof s !== 'string' || s.length === 0)) {
      return this.fail(name, 'must be a list of names', v);
    }
    return v as string[];
  }

  stringMap(name: string): Record<string, string> | undefined {
    const v = this.take(name, false);
    if (v === undefined) return undefined;
    if (typeof v !== 'object' || Array.isArray(v) || Object.values(v as object).some((s) => typeof s !== 'string')) {
      return this.fail(name, 'must be a mapping of table name to foreign key name', v);
    }
    return v as Record<string, string>;
  }

  integer(name: string, min: number, max: number): number | undefined {
    const v = this.take(name, false);
    if (v === undefined) return undefined;
    const n = typeof v === 'string' && /^-?\d+$/.test(v) ? Number(v) : v;
    if (typeof n !== 'number' || !Number.isInteger(n) || n < min || n > max) {
      return this.fail(name, `must be an integer from ${min} to ${max}`, v);
    }
    return n;
  }

  number(name: string, min: number, max: number): number | undefined {
    const v = this.take(name, false);
    if (v === undefined) return undefined;
    const n = typeof v === 'string' && /^-?\d+(\.\d+)?$/.test(v) ? Number(v) : v;
    if (typeof n !== 'number' || !Number.isFinite(n) || n < min || n > max) return this.fail(name, `must be a number from ${min} to ${max}`, v);
    return n;
  }

  boolean(name: string): boolean | undefined {
    const v = this.take(name, false);
    if (v === undefined) return undefined;
    if (typeof v === 'boolean') return v;
    if (v === 'true' || v === 'false') return v === 'true';
    return this.fail(name, 'must be true or false', v);
  }

  /** 90s, 30m, 24h, 7d, 1h30m */
  duration(name: string): number | undefined {
    const v = this.string(name);
    if (v === undefined) return undefined;
    try {
      return parseDuration(v);
    } catch {
      return this.fail(name, 'must be a duration like 90s, 30m, 24h or 7d', v);
    }
  }

  /** a size in bytes: 1048576, 512kB, 16MB, 1GB (powers of 1024, as Postgres reads them) */
  bytes(name: string): number | undefined {
    const v = this.string(name);
    if (v === undefined) return undefined;
    const m = /^\s*(\d+)\s*(B|kB|MB|GB|TB)?\s*$/.exec(v);
    if (!m) return this.fail(name, 'must be a size like 1048576, 512kB, 16MB or 1GB', v);
    const unit = { B: 1, kB: 1024, MB: 1024 ** 2, GB: 1024 ** 3, TB: 1024 ** 4 }[m[2] ?? 'B'] ?? 1;
    return Number(m[1]) * unit;
  }

  /** a duration, or `off` (null) */
  durationOrOff(name: string): number | null | undefined {
    const v = this.string(name);
    if (v === undefined) return undefined;
    if (v === 'off') return null;
    try {
      return parseDuration(v);
    } catch {
      return this.fail(name, 'must be a duration like 24h, or off', v);
    }
  }

  url(name: string): string | undefined {
    const v = this.string(name);
    if (v === undefined) return undefined;
    if (!/^https?:\/\/[^/\s]+/.test(v)) return this.fail(name, 'must be an http(s) URL', v);
    return v;
  }

  postgresUrl(name: string, required = false): string | undefined {
    const v = this.string(name, required);
    if (v === undefined) return undefined;
    let parsed: URL;
    try {
      parsed = new URL(v);
    } catch {
      return this.fail(name, 'must be a postgres:// URL', redactUrl(v));
    }
    if (!['postgres:', 'postgresql:'].includes(parsed.protocol) || !parsed.pathname.slice(1)) {
      return this.fail(name, 'must be a postgres://user@host:port/database URL', redactUrl(v));
    }
    return v;
  }

  /** An http(s) URL that may hold a secret (a Slack webhook's path is one): problems never echo it. */
  secretUrl(name: string, required = false): string | undefined {
    const v = this.secret(name, required);
    if (v === undefined) return undefined;
    let parsed: URL | undefined;
    try {
      parsed = new URL(v);
    } catch {
      parsed = undefined;
    }
    if (!parsed || !['http:', 'https:'].includes(parsed.protocol) || !parsed.hostname) {
      this.problems.push(`${this.key(name)}: must be an http(s) URL like https://hooks.example.com/... (the value is not shown: it may hold a secret)`);
      return undefined;
    }
    return v;
  }

  /** A mapping of names to strings that may be secrets (HTTP headers): problems name the key, never a value. */
  secretMap(name: string): Record<string, string> | undefined {
    const v = this.take(name, false);
    if (v === undefined) return undefined;
    if (typeof v !== 'object' || Array.isArray(v) || Object.entries(v as object).some(([k, s]) => !/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(k) || (typeof s !== 'string' && typeof s !== 'number'))) {
      this.problems.push(`${this.key(name)}: must be a mapping of header names to strings (e.g. Authorization: "Bearer \${TOKEN}")`);
      return undefined;
    }
    return Object.fromEntries(Object.entries(v as object).map(([k, s]) => [k, String(s)]));
  }

  /** a@b.example, or Name <a@b.example> */
  emailAddress(name: string, required = false): string | undefined {
    const v = this.string(name, required);
    if (v !== undefined && !isEmailAddress(v)) return this.fail(name, 'must be an e-mail address like alerts@example.com', v);
    return v;
  }

  emailList(name: string, required = false): string[] | undefined {
    const v = this.take(name, required);
    if (v === undefined) return undefined;
    const list = typeof v === 'string' ? [v] : v;
    if (!Array.isArray(list) || list.length === 0 || list.some((a) => typeof a !== 'string' || !isEmailAddress(a))) {
      return this.fail(name, 'must be a list of one or more e-mail addresses like [ops@example.com]', v);
    }
    return list as string[];
  }

  hostPort(name: string): string | undefined {
    const v = this.string(name);
    if (v !== undefined && !/^[^\s:/]+:\d{1,5}$/.test(v)) return this.fail(name, 'must be host:port', v);
    return v;
  }

  /** A string that must not be echoed: problems name the key, never the value. */
  secret(name: string, required = false): string | undefined {
    const v = this.take(name, required);
    if (v === undefined) return undefined;
    if (typeof v !== 'string') {
      this.problems.push(`${this.key(name)}: must be a string (e.g. \${ENV_VAR})`);
      return undefined;
    }
    return v;
  }

  /** A mapping of free-form keys (e.g. tenant ids), each value a section read by `read`. */
  mapOf<T>(name: string, read: (section: Section, key: string) => T): Record<string, T> | undefined {
    const v = this.take(name, false);
    if (v === undefined) return undefined;
    if (typeof v !== 'object' || Array.isArray(v)) return this.fail(name, 'must be a mapping', v);
    return Object.fromEntries(Object.entries(v as object).map(([k, sub]) => [k, read(new Section(sub, this.key(`${name}.${k}`), this.problems), k)]));
  }

  /** A problem with a key; '' names the section itself. */
  reject(name: string, what: string, got: unknown): void {
    if (name === '') this.problems.push(`${this.prefix}: ${what} (got ${JSON.stringify(got)})`);
    else this.fail(name, what, got);
  }

  /** A problem with a secret's value: the key is named, the value never shown. */
  rejectSecret(name: string, what: string): undefined {
    this.problems.push(`${this.key(name)}: ${what} (the value is not shown)`);
    return undefined;
  }

  /** Reports keys nobody asked for: usually a typo. */
  done(): void {
    for (const k of Object.keys(this.values)) {
      if (!this.seen.has(k)) this.problems.push(`${this.key(k)}: unknown key`);
    }
  }
}

function isEmailAddress(v: string): boolean {
  return /^(?:[^<>@\r\n]*<[^\s<>@]+@[^\s<>@]+\.[^\s<>@]+>|[^\s<>@]+@[^\s<>@]+\.[^\s<>@]+)$/.test(v.trim());
}

/** A database URL with its password replaced, safe for logs, errors and workflow history. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return url.replace(/:\/\/([^:@/]+):[^@/]*@/, '://$1:***@');
  }
}

/** The database name of a postgres URL. */
export function databaseName(url: string): string {
  return decodeURIComponent(new URL(url).pathname.slice(1));
}
