// tenantsafe.yaml: loading, validation against the one schema (lib/configSchema.ts; read by
// lib/configReader.ts, with errors that name the key), what the config means to the code (Config),
// and the embedded defaults used when there is no config at all (`tenantsafe dev`).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { badSecret, badValue, interpolate, readKeys, redactUrl, Section } from './configReader';
import { databaseIdPattern } from './inputs';
import { configSchema, type ConfigValues, type FieldValue } from './configSchema';
import { isSecretHash, looksHashed } from './secretHash';
import { ErrorType, TenantsafeError } from './errors';
import type { RetentionPolicy } from './retention/policy';
import { parseCompression, type BaseCompression } from './format/fullManifest';
import { parseDataCompression, type DataCompression } from './format/dataCompression';

export type StorageConfig =
  | { kind: 'local'; path: string }
  | { kind: 'gcs'; bucket: string; prefix: string; apiEndpoint?: string; projectId?: string };

export interface Config {
  /** Where the config came from: a file path, or 'embedded defaults'. */
  source: string;
  /** the id of the database this view serves, one of `databases` (docs/fleet.md); absent: the config names one database */
  databaseId?: string;
  /**
   * With several databases (`databases` in the file): each one's view, in the file's order, the
   * first being this config itself; every view is a single-database config. Empty: one database.
   */
  databases: Record<string, Config>;
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
  backup: {
    parallelism: number;
    /** gzip level of WAL and change-log segments and logical dumps */
    compressionLevel: number;
    /** how tenant backups' data is compressed; each backup's manifest records its own */
    compression: DataCompression;
  };
  /** encryption at rest (lib/encryption): new backups encrypted; the master key file */
  encryption: { enabled: boolean; keyFile: string };
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
  /** pg_basebackup --max-rate in kilobytes (1024 bytes) per second, to spare the server's disks; null: unthrottled */
  maxRateKBps: number | null;
  /** how long a base backup waits for the WAL archive to reach its stop LSN */
  archiveWaitMs: number;
  /** how often the WAL archiver uploads the segment being written: the recovery point objective */
  walPartialIntervalMs: number;
  /** where pg_basebackup writes the compressed tar while it is read into storage */
  baseSpoolDir: string;
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
    encryption: { keyFile: path.join(layout.home, 'tenantsafe.key') },
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

interface ParseContext {
  env: NodeJS.ProcessEnv;
  source: string;
  /** relative storage paths are resolved against this directory */
  baseDir: string;
}

/**
 * Validates a config document against the schema (lib/configSchema.ts), collecting every
 * problem, each naming its key, then maps the values onto Config.
 */
export function parseConfig(doc: unknown, ctx: ParseContext): Config {
  const problems: string[] = [];
  const values: Record<string, unknown> = {};
  readKeys(new Section(interpolate(doc, '', ctx.env, problems), '', problems), configSchema, { baseDir: ctx.baseDir, root: values }, values);
  const v = values as ConfigValues;

  const primary = storageOf(v.storage.primary);
  const secondary = v.storage.secondary && storageOf(v.storage.secondary);
  if (secondary && JSON.stringify(secondary) === JSON.stringify(primary)) {
    problems.push('storage.secondary: names the same location as storage.primary; a copy there protects nothing (give it another path or bucket)');
  }
  const tls = v.temporal.tls && temporalTlsOf(v.temporal.tls, problems);
  const { maxRate, maxRateKbps } = v.fullBackup;
  const dataCompression = dataCompressionOf(v.backup, (doc as { backup?: { compressionLevel?: unknown } } | null)?.backup?.compressionLevel !== undefined, problems);
  const compression = parseCompression(v.fullBackup.compression);
  if ('error' in compression) problems.push(badValue('fullBackup.compression', compression.error, v.fullBackup.compression));
  if (maxRate !== undefined && maxRateKbps !== undefined) problems.push(badValue('fullBackup.maxRateKbps', 'is the old name of maxRate: give only maxRate', maxRateKbps));
  const { supabase } = v;
  const alerts = alertsOf(v.alerts, problems);
  const dashboard = dashboardOf(v.dashboard, (doc as { dashboard?: { users?: unknown } } | null)?.dashboard?.users, problems);
  const { monitoring } = v;
  if (monitoring.criticalFactor < monitoring.warningFactor) problems.push(badValue('monitoring.criticalFactor', `must be at least warningFactor (${monitoring.warningFactor})`, monitoring.criticalFactor));
  const ids = Object.keys(v.databases);
  for (const id of ids) if (!databaseIdPattern.test(id)) problems.push(badValue(`databases.${id}`, 'an id is 1 to 31 lowercase letters, digits and _, starting with a letter', id));
  if (ids.length > 0 && (doc as { database?: unknown }).database !== undefined) problems.push('database: names one database; with `databases`, each names its own (move it under databases.<id>.database)');

  if (problems.length > 0) {
    throw new TenantsafeError(
      ErrorType.BadConfig,
      `Invalid config (${ctx.source}):\n  - ${problems.join('\n  - ')}\n`,
      'Fix the keys listed above; every key: docs/configuration.md.',
    );
  }
  if (ids.length > 0) return fleetOf(doc as Record<string, any>, v, ctx);
  const databaseUrl = v.database.url ?? '';
  return {
    source: ctx.source,
    databases: {},
    database: { url: databaseUrl },
    catalog: { url: v.catalog.url ?? databaseUrl, schema: v.catalog.schema },
    tenancy: v.tenancy,
    storage: secondary ? { primary, secondary } : { primary },
    temporal: {
      address: v.temporal.address,
      namespace: v.temporal.namespace,
      taskQueue: v.temporal.taskQueue,
      ...optional('uiUrl', v.temporal.uiUrl?.replace(/\/+$/, '')),
      ...optional('tls', tls),
      ...optional('apiKey', v.temporal.apiKey),
    },
    backup: { parallelism: v.backup.parallelism, compressionLevel: v.backup.compressionLevel, compression: dataCompression },
    encryption: { enabled: v.encryption.enabled, keyFile: v.encryption.keyFile ?? (ctx.env.TENANTSAFE_MASTER_KEY_FILE ? path.resolve(ctx.baseDir, ctx.env.TENANTSAFE_MASTER_KEY_FILE) : path.join(ctx.baseDir, 'tenantsafe.key')) },
    fullBackup: {
      provider: v.fullBackup.provider,
      slot: v.fullBackup.slot,
      maxRateKBps: maxRate !== undefined ? Math.floor(maxRate / 1024) : (maxRateKbps ?? null),
      archiveWaitMs: v.fullBackup.archiveWait,
      walPartialIntervalMs: v.fullBackup.walPartialInterval,
      baseSpoolDir: v.fullBackup.baseSpoolDir,
      walSpoolDir: v.fullBackup.walSpoolDir,
      // a compression that did not parse is among the problems thrown above
      compression: compression as BaseCompression,
    },
    changeLog: {
      enabled: v.changeLog.enabled,
      slot: v.changeLog.slot,
      publication: v.changeLog.publication,
      flushIntervalMs: v.changeLog.flushInterval,
      replicaIdentityFull: v.changeLog.replicaIdentityFull,
      boundaryWaitMs: v.changeLog.boundaryWait,
    },
    supabase: supabase.projectRef && supabase.accessToken ? { projectRef: supabase.projectRef, accessToken: supabase.accessToken, apiUrl: supabase.apiUrl.replace(/\/+$/, '') } : null,
    retention: {
      ...policyOf(v.retention),
      incompleteAfterMs: v.retention.incompleteAfter,
      tenants: v.retention.tenants as Record<string, Partial<RetentionPolicy>>,
    },
    alerts,
    dr: drOf(v.dr),
    verification: v.verification,
    restore: {
      approvers: v.restore.approvers,
      approvalTimeoutMs: v.restore.approvalTimeout,
      lockTimeoutMs: v.restore.lockTimeout,
      statementTimeoutMs: v.restore.statementTimeout,
      verifyOtherTenants: v.restore.verifyOtherTenants,
    },
    dashboard,
    worker: v.worker,
    monitoring: {
      schedules: monitoring.schedules,
      warningFactor: monitoring.warningFactor,
      criticalFactor: monitoring.criticalFactor,
      rpoTargetMs: monitoring.rpoTarget,
      changeLogLagTargetMs: monitoring.changeLogLagTarget,
      walStalledAfterMs: monitoring.walStalledAfter,
      approvalWaitMs: monitoring.approvalWait,
      topTenants: monitoring.topTenants,
      tenants: monitoring.tenants,
      cacheTtlMs: monitoring.cacheTtl,
      ...optional('metricsToken', monitoring.metricsToken),
    },
  };
}

/**
 * Several databases: each one's document is the top level's with its own database, and where it
 * says so its tenancy, catalog and storage (lib/configSchema.ts `databases`), read as a
 * single-database config. Its catalog and storage are its own: two databases sharing either
 * would mix their tenants' backups (a tenant id may exist in both), and are refused.
 */
function fleetOf(doc: Record<string, any>, v: ConfigValues, ctx: ParseContext): Config {
  const { databases: _entries, ...shared } = doc;
  const views: Record<string, Config> = {};
  const problems: string[] = [];
  const catalogs = new Map<string, string>();
  const locations = new Map<string, string>();
  const claim = (seen: Map<string, string>, key: string, id: string, what: string) => {
    const other = seen.get(key);
    if (other !== undefined) problems.push(`databases.${id}.${what}: is the same as databases.${other}'s (a tenant id in both would mix their backups): give each database its own`);
    else seen.set(key, id);
  };
  for (const [id, entry] of Object.entries(doc.databases as Record<string, any>)) {
    const read = v.databases[id];
    const prefix = read.storage?.prefix ?? id;
    const under = (location: any) => (location?.kind === 'gcs' ? { ...location, prefix: [location.prefix, prefix].filter(Boolean).join('/') } : { ...location, path: path.join(String(location?.path ?? ''), prefix) });
    const ownCatalog = entry.catalog?.url !== undefined;
    const sharedCatalog = !ownCatalog && doc.catalog?.url !== undefined;
    const view = parseConfig(
      {
        ...shared,
        database: entry.database,
        tenancy: { ...doc.tenancy, ...entry.tenancy },
        catalog: {
          url: entry.catalog?.url ?? doc.catalog?.url ?? entry.database?.url,
          schema: entry.catalog?.schema ?? (sharedCatalog ? `${v.catalog.schema}_${id}` : v.catalog.schema),
        },
        storage: {
          primary: entry.storage?.primary ?? under(doc.storage?.primary),
          ...(entry.storage?.secondary || doc.storage?.secondary ? { secondary: entry.storage?.secondary ?? under(doc.storage.secondary) } : {}),
        },
      },
      ctx,
    );
    const where = new URL(view.catalog.url);
    claim(catalogs, `${where.host}${where.pathname}#${view.catalog.schema}`, id, 'catalog');
    for (const location of [view.storage.primary, view.storage.secondary]) if (location) claim(locations, JSON.stringify(location), id, 'storage');
    views[id] = { ...view, databaseId: id };
  }
  if (problems.length > 0) {
    throw new TenantsafeError(ErrorType.BadConfig, `Invalid config (${ctx.source}):\n  - ${problems.join('\n  - ')}\n`, 'Fix the keys listed above; several databases: docs/fleet.md.');
  }
  const [first] = Object.values(views);
  return { ...first, databases: views };
}

/** `{[key]: value}` when value is defined, else `{}`: optional keys stay absent. */
function optional<K extends string, V>(key: K, value: V | undefined): { [k in K]?: V } {
  return (value === undefined ? {} : { [key]: value }) as { [k in K]?: V };
}

function policyOf(p: RetentionPolicy): RetentionPolicy {
  return { days: p.days, minCount: p.minCount, daily: p.daily, weekly: p.weekly, monthly: p.monthly, yearly: p.yearly };
}

/** One storage location (storage.primary, storage.secondary): local disk or a GCS bucket. */
function storageOf(location: FieldValue<typeof configSchema.storage.keys.primary>): StorageConfig {
  if (location?.kind === 'gcs') return { kind: 'gcs', bucket: location.bucket ?? '', prefix: location.prefix.replace(/^\/+|\/+$/g, ''), apiEndpoint: location.apiEndpoint, projectId: location.projectId };
  return { kind: 'local', path: location?.kind === 'local' ? (location.path ?? '') : '' };
}

/** `tls: true` (system CAs), or a mapping of files and the server name; both halves of a client certificate or neither. */
function temporalTlsOf(tls: NonNullable<ConfigValues['temporal']['tls']>, problems: string[]): TemporalTlsConfig {
  if ((tls.clientCert === undefined) !== (tls.clientKey === undefined)) problems.push(badValue(`temporal.tls.${tls.clientCert ? 'clientKey' : 'clientCert'}`, 'is required with the other half of the client certificate', null));
  return {
    ...optional('caFile', tls.ca),
    ...optional('clientCertFile', tls.clientCert),
    ...optional('clientKeyFile', tls.clientKey),
    ...optional('serverName', tls.serverName),
  };
}

const userNamePattern = /^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$/;

/**
 * The dashboard section. A user's token or password is a hash (`tenantsafe hash-secret`) or a
 * reference to the environment (`${ALICE_PASSWORD}`): a secret written into the file as itself is
 * refused. `rawUsers` is the users mapping before ${ENV} interpolation, to tell them apart.
 */
function dashboardOf(dashboard: ConfigValues['dashboard'], rawUsers: unknown, problems: string[]): DashboardConfig {
  const raw = (name: string, key: string): unknown => (rawUsers && typeof rawUsers === 'object' ? (rawUsers as Record<string, Record<string, unknown> | undefined>)[name]?.[key] : undefined);
  const users: DashboardUser[] = [];
  for (const [name, user] of Object.entries(dashboard.users)) {
    const key = `dashboard.users.${name}`;
    const secretOf = (which: 'token' | 'password', minLength: number): string | undefined => {
      const v = user[which];
      if (v === undefined) return undefined;
      const reject = (what: string) => void problems.push(badSecret(`${key}.${which}`, what));
      const given = raw(name, which);
      const fromEnv = typeof given === 'string' && /\$\{[A-Za-z_][A-Za-z0-9_]*(:-[^}]*)?\}/.test(given);
      if (looksHashed(v)) {
        if (!isSecretHash(v)) return reject('is not a well-formed hash (make one with `tenantsafe hash-secret`)');
        return v;
      }
      if (!fromEnv) return reject(`must be a hash (\`tenantsafe hash-secret${which === 'token' ? ' --token' : ''}\`) or an environment reference like \${${name.toUpperCase().replace(/[^A-Z0-9]+/g, '_')}_${which.toUpperCase()}}; a secret written in the file is refused`);
      if (v.length < minLength) return reject(`must be at least ${minLength} characters`);
      return v;
    };
    const token = secretOf('token', 16);
    const password = secretOf('password', 8);
    if (!userNamePattern.test(name)) problems.push(badValue(key, 'a user name is 1 to 64 letters, digits and . _ @ - (starting with a letter or digit)', name));
    else if (token === undefined && password === undefined && raw(name, 'token') === undefined && raw(name, 'password') === undefined) problems.push(badValue(key, 'needs a token or a password', name));
    if (user.role && (token !== undefined || password !== undefined)) users.push({ name, role: user.role, ...optional('token', token), ...optional('password', password), relay: user.relay });
  }
  const config: DashboardConfig = {
    host: dashboard.host,
    port: dashboard.port,
    ...optional('token', dashboard.token),
    users,
    sessionTtlMs: dashboard.sessionTtl,
    ...optional('sessionSecret', dashboard.sessionSecret),
  };
  if (config.sessionSecret !== undefined && config.sessionSecret.length < 32) problems.push(badSecret('dashboard.sessionSecret', 'must be at least 32 characters'));
  const plainTokens = config.users.filter((u) => u.token && !looksHashed(u.token));
  for (const u of plainTokens) {
    if (plainTokens.some((o) => o !== u && o.token === u.token) || u.token === config.token) problems.push(badSecret(`dashboard.users.${u.name}.token`, 'is the same as another user\'s (a token must say who calls)'));
  }
  return config;
}

/** `backup.compression`; a config that gives only `compressionLevel` (written before it) keeps gzip at that level. */
function dataCompressionOf(backup: ConfigValues['backup'], levelGiven: boolean, problems: string[]): DataCompression {
  if (backup.compression === undefined && levelGiven) return { method: 'gzip', level: backup.compressionLevel };
  const parsed = parseDataCompression(backup.compression ?? 'zstd');
  if ('error' in parsed) {
    // a bad value is among the problems thrown before this is used
    problems.push(badValue('backup.compression', parsed.error, backup.compression));
    return { method: 'zstd', level: 1 };
  }
  return parsed;
}

/** The alerts section: a webhook, e-mail, or both; nothing configured sends nothing. */
function alertsOf(alerts: ConfigValues['alerts'], problems: string[]): AlertsConfig {
  const { webhook, email } = alerts;
  let emailConfig: AlertsConfig['email'] = null;
  if (email) {
    const { host, port, secure, user, password } = email.smtp;
    if (password !== undefined && user === undefined) problems.push(badValue('alerts.email.smtp.user', 'is required with a password', null));
    if (host && email.from && email.to) emailConfig = { smtp: { host, port, secure, ...optional('user', user), ...optional('password', password) }, from: email.from, to: email.to };
  }
  return {
    webhook: webhook?.url ? { url: webhook.url, headers: webhook.headers } : null,
    email: emailConfig,
    timeoutMs: alerts.timeout,
    retryIntervalMs: alerts.retryInterval,
    maxRetryIntervalMs: alerts.maxRetryInterval,
    giveUpAfterMs: alerts.giveUpAfter,
  };
}

function drOf(dr: ConfigValues['dr']): DrConfig {
  const { standby, endpoint, failover } = dr;
  return {
    targets: { rpoMs: dr.targets.rpo, rtoMs: dr.targets.rto },
    standby: standby
      ? { dataDir: standby.dataDir ?? '', host: standby.host, port: standby.port ?? 0, slot: standby.slot, synchronous: standby.synchronous, maxLagBytes: standby.maxLag }
      : null,
    primaryDataDir: dr.primaryDataDir ?? null,
    endpoint: endpoint?.adminUrl && endpoint.databasesFile && endpoint.database && endpoint.url ? { adminUrl: endpoint.adminUrl, databasesFile: endpoint.databasesFile, database: endpoint.database, url: endpoint.url } : null,
    failover: {
      approval: failover.approval,
      probes: failover.probes,
      probeIntervalMs: failover.probeInterval,
      probeTimeoutMs: failover.probeTimeout,
      approvalTimeoutMs: failover.approvalTimeout,
    },
    drill: { intervalMs: dr.drill.interval, sampleTenants: dr.drill.sampleTenants },
  };
}

export { redactUrl };

/** The ids of the configured databases; empty when the config names one. */
export function databaseIds(config: Config): string[] {
  return Object.keys(config.databases);
}

/**
 * The view of one database (docs/fleet.md): a single-database config. `id` absent: the config
 * itself (its first database, when it names several). An id the config does not name is bad input.
 */
export function forDatabase(config: Config, id: string | undefined): Config {
  if (id === undefined || id === config.databaseId) return config;
  const view = config.databases[id];
  if (view) return view;
  const ids = databaseIds(config);
  throw new TenantsafeError(
    ErrorType.BadInput,
    ids.length > 0 ? `There is no database "${id}" in the config.` : `There is no database "${id}": the config names one database, without ids.`,
    ids.length > 0 ? `Pass one of the configured ids: ${ids.join(', ')} (databases in ${config.source}).` : 'Leave the database out.',
  );
}

/** The database name of a postgres URL. */
export function databaseName(url: string): string {
  return decodeURIComponent(new URL(url).pathname.slice(1));
}
