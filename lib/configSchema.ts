// The one schema of tenantsafe.yaml: every key with its type, range or allowed values, default,
// description and an example. lib/config.ts reads the file through it (a key the schema does not
// name is an unknown key, a default is the schema's), and docs/configuration.md is rendered from
// it (`npm run docs:config`, lib/configReference.ts), so the reference cannot drift from the code.
import * as os from 'node:os';
import * as path from 'node:path';

/** A key that is required only when other keys say so (read before it). */
export interface Condition {
  when: (root: Record<string, unknown>) => boolean;
  /** how the reference says it, e.g. "when fullBackup.provider is supabase" */
  text: string;
}

/** A default computed when the config is read: from the key's siblings, the document read so far, or the machine. */
export type DefaultFn = (siblings: Record<string, unknown>, root: Record<string, unknown>) => unknown;

interface Common {
  /** what the key does: the reference's description */
  doc: string;
  /** a value as it is written in tenantsafe.yaml */
  example?: unknown;
  required?: boolean | Condition;
  /**
   * The default as written in tenantsafe.yaml (a duration as `24h`, a size as `16MB`): it is read
   * as a written value would be. A function computes it when the config is read (with defaultText).
   */
  default?: unknown;
  /** the default in words, where it is not a literal */
  defaultText?: string;
  /** the key still works, and says what replaces it */
  deprecated?: string;
}

export type ScalarType =
  | 'string'
  /** a Postgres name: 1 to 63 bytes (UTF-8) */
  | 'identifier'
  | 'identifierList'
  | 'integer'
  | 'number'
  | 'boolean'
  /** 90s, 30m, 24h, 7d, 1h30m, 500ms: read as milliseconds */
  | 'duration'
  /** a duration, or off (null) */
  | 'durationOrOff'
  /** 1048576, 512kB, 16MB, 1GB: read as bytes */
  | 'bytes'
  /** a rate in bytes per second: 64MB/s (the /s may be left out) */
  | 'rate'
  | 'url'
  | 'postgresUrl'
  | 'hostPort'
  /** a file or directory, resolved against the config file's directory */
  | 'path'
  | 'emailAddress'
  | 'emailList'
  /** a string never echoed in an error */
  | 'secret'
  | 'secretUrl'
  /** a mapping of HTTP header names to values that may be secrets */
  | 'secretMap'
  /** a mapping of table name to foreign-key name */
  | 'stringMap';

export type ScalarField = Common &
  (
    | { type: Exclude<ScalarType, 'integer' | 'number' | 'rate' | 'string' | 'identifier'> }
    | { type: 'string' | 'identifier'; pattern?: RegExp; patternText?: string }
    | { type: 'integer' | 'number'; min: number; max: number }
    /** min and max in bytes per second */
    | { type: 'rate'; min: number; max: number }
    | { type: 'oneOf'; values: readonly string[] }
  );

export interface SectionField extends Common {
  type: 'section';
  keys: Keys;
  /** absent: the section reads as undefined (else as its defaults) */
  optional?: boolean;
  /** the section may also be written `true` (its defaults) or `false` (absent): what `true` means */
  booleanForm?: string;
}

/** A mapping of names the user chooses (tenant ids, user names), each value a section of `keys`. */
export interface MapField extends Common {
  type: 'map';
  /** how the reference names a chosen key, e.g. `<tenantId>` */
  name: string;
  keys: Keys;
}

/** A section whose `tag` key (one of `variants`) decides which other keys it has. */
export interface VariantField extends Common {
  type: 'variant';
  tag: string;
  variants: Record<string, Keys>;
}

export type Field = ScalarField | SectionField | MapField | VariantField;
export type Keys = Record<string, Field>;

// ---- The value each field reads as (lib/config.ts maps these onto Config) ----

type ScalarValue<F> = F extends { type: 'oneOf'; values: readonly (infer V)[] }
  ? V
  : F extends { type: 'integer' | 'number' | 'duration' | 'bytes' | 'rate' }
    ? number
    : F extends { type: 'boolean' }
      ? boolean
      : F extends { type: 'durationOrOff' }
        ? number | null
        : F extends { type: 'identifierList' | 'emailList' }
          ? string[]
          : F extends { type: 'stringMap' | 'secretMap' }
            ? Record<string, string>
            : string;

export type FieldValue<F> = F extends SectionField
  ? SectionValue<F['keys']> | (F['optional'] extends true ? undefined : never)
  : F extends MapField
    ? Record<string, SectionValue<F['keys']>>
    : F extends VariantField
      ? { [T in keyof F['variants']]: { [k in F['tag']]: T } & SectionValue<F['variants'][T]> }[keyof F['variants']] | undefined
      : ScalarValue<F> | (F extends { default: unknown } ? never : undefined);

export type SectionValue<K> = { [k in keyof K]: FieldValue<K[k]> };

// ---- The schema ----

/** PostgreSQL's rule for replication slot names: other names are refused by the server (and never reach SQL text). */
const slotName = { pattern: /^[a-z0-9_]+$/, patternText: 'must be lowercase letters, digits and _ (a replication slot name)' };

const storageLocation = {
  type: 'variant',
  tag: 'kind',
  doc: 'One storage location: a local (or mounted) directory, or a Google Cloud Storage bucket.',
  variants: {
    local: {
      path: { type: 'path', required: true, doc: 'The directory backups are written under; relative paths are relative to the config file.', example: '/var/lib/tenantsafe' },
    },
    gcs: {
      bucket: { type: 'string', required: true, doc: 'The bucket. Credentials come from the environment the Google client library reads (`GOOGLE_APPLICATION_CREDENTIALS`, workload identity), never from the config.', example: 'my-backups' },
      prefix: { type: 'string', default: '', defaultText: 'none (the bucket\'s root)', doc: 'A folder in the bucket every key starts with (leading and trailing `/` are dropped).', example: 'tenantsafe' },
      apiEndpoint: { type: 'url', doc: 'Another endpoint than Google Cloud\'s, e.g. the fake-gcs-server emulator; omit for Google Cloud. `STORAGE_EMULATOR_HOST` does the same.', example: 'http://127.0.0.1:4443' },
      projectId: { type: 'string', doc: 'The Google Cloud project, when the credentials do not imply one.', example: 'my-project' },
    },
  },
} as const satisfies VariantField;

const retentionPolicy = {
  days: { type: 'integer', min: 0, max: 100_000, default: 30, doc: 'Keep every backup younger than this many days.', example: 30 },
  minCount: { type: 'integer', min: 0, max: 100_000, default: 3, doc: 'The newest N backups are never deleted, however old.', example: 3 },
  daily: { type: 'integer', min: 0, max: 100_000, default: 0, doc: 'GFS: keep the newest backup of each of the newest N UTC days that have one.', example: 7 },
  weekly: { type: 'integer', min: 0, max: 100_000, default: 0, doc: 'GFS: the same for ISO weeks (Monday to Sunday, UTC).', example: 4 },
  monthly: { type: 'integer', min: 0, max: 100_000, default: 0, doc: 'GFS: the same for months.', example: 12 },
  yearly: { type: 'integer', min: 0, max: 100_000, default: 0, doc: 'GFS: the same for years.', example: 3 },
} as const satisfies Keys;

/** The policy keys again without defaults: a tenant's override sets only what it names. */
function withoutDefaults<K extends Record<string, { default?: unknown }>>(keys: K): { [k in keyof K]: Omit<K[k], 'default'> } {
  return Object.fromEntries(Object.entries(keys).map(([k, f]) => [k, Object.fromEntries(Object.entries(f).filter(([p]) => p !== 'default'))])) as { [k in keyof K]: Omit<K[k], 'default'> };
}

const tenancyKeys = {
  schemas: { type: 'identifierList', default: ['app'], doc: 'The schemas that hold the application\'s tables.', example: ['app'] },
  tenantTable: { type: 'identifier', default: 'tenants', doc: 'The table with one row per tenant.', example: 'tenants' },
  tenantColumn: { type: 'identifier', default: 'tenant_id', doc: 'The column holding the tenant id; where the tenant table has no such column, its single primary-key column.', example: 'tenant_id' },
  globalTables: { type: 'identifierList', default: [], doc: 'Tables forced out of tenant backups (global data, e.g. plans).', example: ['plans'] },
  ownership: { type: 'stringMap', default: {}, doc: 'Table → the name of the foreign key that ties its rows to their tenant, where several paths lead to one.', example: { comments: 'comments_task_id_fkey' } },
} as const satisfies Keys;

/** What one database of a fleet (`databases.<id>`) names for itself; everything else is the top level's. */
const fleetDatabaseKeys = {
  database: {
    type: 'section',
    required: true,
    doc: 'This database.',
    keys: {
      url: { type: 'postgresUrl', required: true, doc: 'Its URL (as `database.url`).', example: 'postgres://backup:${DB_PASSWORD}@eu.db.internal:5432/saas' },
    },
  },
  tenancy: { type: 'section', optional: true, doc: 'Its tenancy where it differs from the top-level `tenancy`: any of its keys; the rest as there.', keys: withoutDefaults(tenancyKeys) },
  catalog: {
    type: 'section',
    optional: true,
    doc: 'Its catalog. Default: in this database (`database.url`), schema `catalog.schema`; with a top-level `catalog.url` (one catalog server for the fleet), there, in schema `<catalog.schema>_<id>`. No two databases may share a catalog schema.',
    keys: {
      url: { type: 'postgresUrl', doc: 'The catalog\'s database.', example: 'postgres://tenantsafe@catalog.internal:5432/tenantsafe' },
      schema: { type: 'identifier', doc: 'The catalog\'s schema in that database.', example: 'tenantsafe_eu' },
    },
  },
  storage: {
    type: 'section',
    optional: true,
    doc: 'Its storage. Default: the top-level `storage` locations, each with the folder `prefix` below them. No two databases may share a location.',
    keys: {
      prefix: { type: 'string', pattern: /^[A-Za-z0-9][A-Za-z0-9._-]*(\/[A-Za-z0-9][A-Za-z0-9._-]*)*$/, patternText: 'must be folder names (letters, digits, . _ -) separated by /', defaultText: 'the database\'s id', doc: 'The folder under the top-level locations (a local path, a bucket\'s prefix) this database\'s objects are written in.', example: 'eu' },
      primary: { ...storageLocation, doc: 'A location of its own instead (another bucket, say): used as given, no prefix added.', example: { kind: 'gcs', bucket: 'backups-eu', prefix: 'tenantsafe' } },
      secondary: { ...storageLocation, doc: 'Its secondary location instead of the top level\'s (as given, no prefix added).', example: { kind: 'gcs', bucket: 'backups-eu-west4', prefix: 'tenantsafe' } },
    },
  },
} as const satisfies Keys;

export const configSchema = {
  databases: {
    type: 'map',
    name: '<id>',
    doc: 'Several databases (shards, or one per region) instead of `database`: each with its own URL, and where it differs its tenancy, catalog and storage folder; every other key is shared. Ids are 1 to 31 lowercase letters, digits and `_`, starting with a letter. Commands about one database take `--database <id>`, workflow inputs `database` (docs/fleet.md).',
    example: { eu: { database: { url: 'postgres://backup:${EU_DB_PASSWORD}@eu.db.internal:5432/saas' } }, us: { database: { url: 'postgres://backup:${US_DB_PASSWORD}@us.db.internal:5432/saas' }, tenancy: { schemas: ['app', 'billing'] } } },
    keys: fleetDatabaseKeys,
  },
  database: {
    type: 'section',
    required: { when: (root) => Object.keys((root.databases as object | undefined) ?? {}).length === 0, text: 'unless `databases` names them' },
    doc: 'The database tenantsafe protects (or `databases`, for several).',
    keys: {
      url: { type: 'postgresUrl', required: { when: (root) => Object.keys((root.databases as object | undefined) ?? {}).length === 0, text: 'unless `databases` names them' }, doc: 'Its URL. Keep the password in the environment (`${DB_PASSWORD}`); the role\'s privileges: README.md#privileges.', example: 'postgres://backup:${DB_PASSWORD}@db.internal:5432/saas' },
    },
  },
  catalog: {
    type: 'section',
    doc: 'Where the catalog lives: the index of backups and the record of every run (it can be rebuilt from storage). Keep it off the server it protects when you use failover.',
    keys: {
      url: { type: 'postgresUrl', default: (_s: Record<string, unknown>, root: Record<string, unknown>) => (root.database as { url?: string }).url, defaultText: '`database.url`', doc: 'The catalog\'s database.', example: 'postgres://tenantsafe@catalog.internal:5432/tenantsafe' },
      schema: { type: 'identifier', default: 'tenantsafe', doc: 'The catalog\'s schema in that database.', example: 'tenantsafe' },
    },
  },
  tenancy: {
    type: 'section',
    doc: 'How tenants are found. Tenant-owned tables are discovered from the schema (tenant columns, foreign keys at any depth); these keys steer and override that (`tenantsafe tenancy show` prints the result).',
    keys: tenancyKeys,
  },
  storage: {
    type: 'section',
    required: true,
    doc: 'Where backups, WAL, the change log and reports are written.',
    keys: {
      primary: { ...storageLocation, required: true, doc: 'The main location: every object is written here first.', example: { kind: 'gcs', bucket: 'my-backups', prefix: 'tenantsafe' } },
      secondary: { ...storageLocation, doc: 'A copy of everything in another location (another region): objects are copied after the primary, checked by sha256, manifests last; reads fall over to it. Must name another location than `primary`.', example: { kind: 'gcs', bucket: 'my-backups-europe-west4', prefix: 'tenantsafe' } },
    },
  },
  temporal: {
    type: 'section',
    doc: 'The Temporal cluster the workflows run on. The CLI, workers and the dashboard all read it. On a real cluster register the search attributes once: `tenantsafe temporal setup`.',
    keys: {
      address: { type: 'hostPort', default: '127.0.0.1:7233', doc: 'The frontend\'s gRPC address.', example: 'my-namespace.a1b2c.tmprl.cloud:7233' },
      namespace: { type: 'string', default: 'default', doc: 'The namespace the workflows and schedules live in.', example: 'my-namespace.a1b2c' },
      taskQueue: { type: 'string', default: 'tenantsafe', doc: 'The task queue workers poll and workflows are started on.', example: 'tenantsafe' },
      uiUrl: { type: 'url', doc: 'The Temporal Web UI; alerts, `status`, the health report and the dashboard link to runs there (a trailing `/` is dropped). None: ids only.', example: 'https://cloud.temporal.io' },
      tls: {
        type: 'section',
        optional: true,
        booleanForm: '`true`: TLS that checks the server against the system\'s CAs; `false`: none',
        doc: 'TLS to a secured cluster. Absent: plaintext, unless `apiKey` is set. Files are read when a connection is made.',
        keys: {
          ca: { type: 'path', doc: 'PEM of the CA that signed the server\'s certificate. Default: the system\'s CAs.', example: '/etc/tenantsafe/temporal-ca.pem' },
          clientCert: { type: 'path', doc: 'PEM client certificate for mutual TLS; needs `clientKey`.', example: '/etc/tenantsafe/client.pem' },
          clientKey: { type: 'path', doc: 'PEM key of `clientCert`; needs `clientCert`.', example: '/etc/tenantsafe/client.key' },
          serverName: { type: 'string', doc: 'The name the server\'s certificate is checked against, when it is not the address\'s host.', example: 'temporal.internal' },
        },
      },
      apiKey: { type: 'secret', doc: 'A Temporal Cloud API key, sent as a bearer token (implies TLS). A secret: never printed.', example: '${TEMPORAL_API_KEY}' },
    },
  },
  backup: {
    type: 'section',
    doc: 'Tenant backups: how each is read and compressed.',
    keys: {
      parallelism: { type: 'integer', min: 1, max: 64, default: 4, doc: 'Connections per tenant backup (and per restore\'s staging), all reading one exported snapshot.', example: 4 },
      compression: { type: 'string', doc: 'How tenant backups\' data is compressed: `zstd[:1-19]` or `gzip[:1-9]` (a level given applies to all the data). Default `zstd`: level 1 for each table\'s own object (the stream a big tenant\'s backup waits for), level 3 for the parts of packs (small tenants\' rows, compressed a part at a time: level 1 would store about a tenth more). Recorded in each backup\'s manifest: backups made with another choice keep restoring. Left out while `compressionLevel` is given (a config written before this key), tenant data stays gzip at that level.', example: 'zstd' },
      compressionLevel: { type: 'integer', min: 0, max: 9, default: 1, doc: 'gzip level (0 none, 1 fastest, 9 smallest) of archived WAL segments, change-log segments and logical dumps; and of tenant data when `compression` is left out and this is given.', example: 1 },
    },
  },
  encryption: {
    type: 'section',
    doc: 'Encryption at rest (docs/format.md, "Encryption"; docs/runbooks/encryption-keys.md): backup objects are encrypted with AES-256-GCM under data keys (one per tenant, one per database cluster) kept in storage under `keys/`, wrapped by a master key kept in a local key file, apart from the backups.',
    keys: {
      enabled: { type: 'boolean', default: true, doc: 'Encrypt new tenant backups, full backups, WAL and change-log segments. Backups written without encryption stay readable either way (each manifest records how it was written).', example: true },
      keyFile: { type: 'path', defaultText: '`$TENANTSAFE_MASTER_KEY_FILE`, else `tenantsafe.key` beside the config file (embedded defaults: `var/tenantsafe.key`)', doc: 'The master key file (JSON, mode 0600). Made by `tenantsafe keys init`, or at the first encrypted backup of a repository that holds no data key yet; missing once the repository holds data keys, nothing encrypted can be read: keep a copy apart from the backups.', example: '/etc/tenantsafe/master.key' },
    },
  },
  fullBackup: {
    type: 'section',
    doc: 'Whole-database backups and the WAL archive (docs/full-backups.md).',
    keys: {
      provider: { type: 'oneOf', values: ['postgres', 'supabase'], default: 'postgres', doc: '`postgres`: self-managed, `pg_basebackup` base backups plus WAL streamed by `pg_receivewal` into our storage; `supabase`: the Management API\'s backups and PITR, plus a daily `pg_dump` into our storage (needs `supabase`).', example: 'postgres' },
      slot: { type: 'identifier', ...slotName, default: 'tenantsafe', doc: 'The physical replication slot the WAL archiver streams from (not `changeLog.slot`).', example: 'tenantsafe' },
      maxRate: { type: 'rate', min: 32 * 1024, max: 1024 ** 3, doc: 'Throttle for `pg_basebackup --max-rate`, to spare the server\'s disks: bytes per second, from 32kB/s to 1GB/s (kB = 1024 bytes). Absent: unthrottled.', example: '64MB/s' },
      maxRateKbps: { type: 'integer', min: 32, max: 1_048_576, deprecated: 'use `maxRate` (its name said kilobits; it always meant kilobytes per second: `maxRateKbps: 8192` is `maxRate: 8MB/s`)', doc: 'The same throttle in kilobytes per second.', example: 65536 },
      archiveWait: { type: 'duration', default: '60s', doc: 'How long a base backup waits for the WAL archive to hold the WAL it needs.', example: '60s' },
      walPartialInterval: { type: 'duration', default: '500ms', doc: 'How often the WAL archiver uploads the segment being written: the recovery point objective.', example: '500ms' },
      compression: { type: 'string', default: 'lz4', doc: 'How base backups are compressed: `lz4` (the least CPU: the fastest backups where cores are few), `zstd[:-7..19]` (on every core, about a tenth fewer bytes; negative levels are zstd\'s fast ones, `zstd` alone is -1) or `gzip[:1-9]`, by `pg_basebackup` itself as it receives the files (client-side); restores read them with Debian\'s `zstd`, `lz4` and `gzip` programs, on every worker. Recorded in each backup\'s manifest: backups made with another choice keep restoring.', example: 'zstd:-1' },
      baseSpoolDir: { type: 'path', default: () => os.tmpdir(), defaultText: 'the OS temporary directory (`$TMPDIR`, else `/tmp`)', doc: 'Where `pg_basebackup` writes the compressed base tar on the worker while the worker reads it into storage: what has been read is freed as it goes (`fallocate --punch-hole`), so it holds a few tens of MiB at a time on Linux file systems that can free parts of a file (ext4, xfs, tmpfs), the whole compressed backup on others. When the server archives WAL itself (`archive_mode` on), the WAL written during the backup is streamed beside it (`pg_wal.tar`, not kept: the WAL archive holds it), so the server need not wait for its archive_command; that file grows with the WAL written while the backup runs.', example: '/var/lib/tenantsafe/spool' },
      walSpoolDir: { type: 'path', default: () => path.join(os.tmpdir(), 'tenantsafe-wal'), defaultText: '`<tmp>/tenantsafe-wal` (`<tmp>`: `$TMPDIR`, else `/tmp`)', doc: 'Where `pg_receivewal` writes on each worker before upload.', example: '/var/lib/tenantsafe/wal' },
    },
  },
  changeLog: {
    type: 'section',
    doc: 'The change log that tenant point-in-time restores replay: every committed transaction of the tenant-owned tables, read from a logical replication slot (needs `wal_level = logical`; docs/runbooks/tenant-pitr.md).',
    keys: {
      enabled: { type: 'boolean', default: false, doc: 'Read by the workers: `true` makes tenant backups take an exact boundary with the log, lets `changelog start` run, and has `dev` start it.', example: true },
      slot: { type: 'identifier', ...slotName, default: 'tenantsafe_changes', doc: 'The logical replication slot (`pgoutput`) it reads; not `fullBackup.slot`. A slot of that name that is not one is refused.', example: 'tenantsafe_changes' },
      publication: { type: 'identifier', default: 'tenantsafe_changes', doc: 'The publication of exactly the tenant-owned tables, kept in step with the tenancy plan.', example: 'tenantsafe_changes' },
      flushInterval: { type: 'duration', default: '500ms', doc: 'The longest a received transaction waits before its segment is written (or 32 MiB): how far the log trails the database when it keeps up.', example: '500ms' },
      replicaIdentityFull: { type: 'boolean', default: false, doc: '`true`: set `REPLICA IDENTITY FULL` on owned tables without a primary key; `false`: the change log refuses to start, naming them.', example: false },
      boundaryWait: { type: 'duration', default: '10s', doc: 'How long a tenant backup waits for its exact boundary with the log; then it is taken without one (a good backup the log cannot extend).', example: '10s' },
    },
  },
  supabase: {
    type: 'section',
    required: { when: (root) => (root.fullBackup as { provider?: string }).provider === 'supabase', text: 'when `fullBackup.provider` is `supabase`' },
    doc: 'The Supabase project (with `fullBackup.provider: supabase`; docs/runbooks/supabase.md). `database.url` is then the session-mode pooler URL, for `pg_dump`.',
    keys: {
      projectRef: { type: 'string', pattern: /^[a-z]{20}$/, patternText: 'must be the 20 lowercase letters of the project ref', required: { when: (root) => (root.fullBackup as { provider?: string }).provider === 'supabase', text: 'with the supabase provider' }, doc: 'The project ref: the 20 letters in the project\'s URL.', example: 'abcdefghijklmnopqrst' },
      accessToken: { type: 'secret', required: { when: (root) => (root.fullBackup as { provider?: string }).provider === 'supabase', text: 'with the supabase provider' }, doc: 'A personal access token for the Management API; read by activities, never sent through Temporal.', example: '${SUPABASE_ACCESS_TOKEN}' },
      apiUrl: { type: 'url', default: 'https://api.supabase.com', doc: 'The Management API (a trailing `/` is dropped).', example: 'https://api.supabase.com' },
    },
  },
  retention: {
    type: 'section',
    doc: 'What `applyRetention` keeps (docs/runbooks/retention.md): a backup is kept when any rule keeps it; pins (legal hold) and backups a running restore reads are always kept. One policy for full backups and for each tenant\'s backups.',
    keys: {
      ...retentionPolicy,
      incompleteAfter: { type: 'duration', default: '6h', doc: 'Prefixes of interrupted backups (no manifest) older than this are removed (full backups: 24 h at least).', example: '6h' },
      tenants: { type: 'map', name: '<tenantId>', doc: 'Per-tenant overrides of the tenant-backup policy: any of `days`, `minCount`, `daily`, `weekly`, `monthly`, `yearly`; the rest as above.', example: { acme: { days: 90, monthly: 24 } }, keys: withoutDefaults(retentionPolicy) },
    },
  },
  alerts: {
    type: 'section',
    doc: 'Pushed alerts (docs/runbooks/alerts.md): a failing job sends one notice per channel, and one resolved notice when it next succeeds. Nothing is sent without `webhook` or `email`. The webhook URL and header values are secrets: errors never show them.',
    keys: {
      webhook: {
        type: 'section',
        optional: true,
        doc: 'A JSON POST that Slack incoming webhooks accept (`text`, `blocks`), every field of the alert under `tenantsafe`.',
        keys: {
          url: { type: 'secretUrl', required: true, doc: 'Where to POST: a Slack incoming webhook or any JSON receiver.', example: '${SLACK_WEBHOOK_URL}' },
          headers: { type: 'secretMap', default: {}, doc: 'HTTP headers sent with every POST (e.g. a token).', example: { Authorization: 'Bearer ${ALERT_TOKEN}' } },
        },
      },
      email: {
        type: 'section',
        optional: true,
        doc: 'E-mail over SMTP, one message per notice to every recipient.',
        keys: {
          smtp: {
            type: 'section',
            required: true,
            doc: 'The mail server that sends the notices.',
            keys: {
              host: { type: 'string', required: true, doc: 'The mail server\'s host name or address.', example: 'smtp.example.com' },
              port: { type: 'integer', min: 1, max: 65535, default: (s: Record<string, unknown>) => (s.secure ? 465 : 587), defaultText: '587, or 465 with `secure: true`', doc: 'The mail server\'s port.', example: 587 },
              secure: { type: 'boolean', default: false, doc: '`true`: TLS from the first byte; `false`: STARTTLS when the server offers it.', example: false },
              user: { type: 'string', doc: 'The login, if it needs one.', example: 'alerts' },
              password: { type: 'secret', doc: 'The login\'s password; needs `user`.', example: '${SMTP_PASSWORD}' },
            },
          },
          from: { type: 'emailAddress', required: true, doc: 'The sender: `a@b.example` or `Name <a@b.example>`.', example: 'tenantsafe <alerts@example.com>' },
          to: { type: 'emailList', required: true, doc: 'One or more recipients.', example: ['ops@example.com'] },
        },
      },
      timeout: { type: 'duration', default: '10s', doc: 'One delivery attempt, at most (connect, send, answer).', example: '10s' },
      retryInterval: { type: 'duration', default: '5s', doc: 'The wait after a failed attempt; it doubles each time, up to `maxRetryInterval`.', example: '5s' },
      maxRetryInterval: { type: 'duration', default: '5m', doc: 'The longest wait between attempts.', example: '5m' },
      giveUpAfter: { type: 'duration', default: '24h', doc: 'A notice undelivered this long is given up (recorded in the catalog, logged).', example: '24h' },
    },
  },
  dr: {
    type: 'section',
    doc: 'Disaster recovery: the targets, the standby, the endpoint applications connect through, the failover policy, the drills (docs/runbooks/failover.md).',
    keys: {
      targets: {
        type: 'section',
        doc: 'What every failover and drill is judged against.',
        keys: {
          rpo: { type: 'duration', default: '5s', doc: 'The data loss accepted: every failover and drill is judged against it.', example: '5s' },
          rto: { type: 'duration', default: '60s', doc: 'The downtime accepted: every failover and drill is judged against it.', example: '60s' },
        },
      },
      standby: {
        type: 'section',
        optional: true,
        doc: 'The standby tenantsafe builds and keeps (provider `postgres`): `tenantsafe standby create`. Without it, failover and switchover refuse.',
        keys: {
          dataDir: { type: 'path', required: true, doc: 'Its data directory, on the host of the worker that runs `standby create`.', example: '/var/lib/tenantsafe/standby' },
          host: { type: 'string', default: '127.0.0.1', doc: 'The address it listens on.', example: '10.0.0.6' },
          port: { type: 'integer', min: 1, max: 65535, required: true, doc: 'The port it listens on.', example: 5433 },
          slot: { type: 'identifier', ...slotName, default: 'tenantsafe_standby', doc: 'The physical replication slot on the primary that keeps its WAL.', example: 'tenantsafe_standby' },
          synchronous: { type: 'boolean', default: false, doc: '`true`: commits wait for the standby (RPO 0; writes stop while it is down).', example: false },
          maxLag: { type: 'bytes', default: '16MB', doc: 'A failover refuses (unless `--force`) a standby further behind than this.', example: '16MB' },
        },
      },
      primaryDataDir: { type: 'path', doc: 'The primary\'s data directory, when a worker runs on its host: a failover then reads the lost primary\'s WAL (`pg_waldump`) to measure the commits lost exactly. Absent: estimated from the last probe.', example: '/srv/pg/main' },
      endpoint: {
        type: 'section',
        optional: true,
        doc: 'The PgBouncer applications connect through; a failover or switchover points it at the new primary.',
        keys: {
          adminUrl: { type: 'postgresUrl', required: true, doc: 'Its admin console (database `pgbouncer`).', example: 'postgres://pgbouncer@127.0.0.1:6432/pgbouncer' },
          databasesFile: { type: 'path', required: true, doc: 'The `[databases]` file `pgbouncer.ini` `%include`s; rewritten on a switch (writable by the workers, on their host).', example: '/etc/pgbouncer/tenantsafe-databases.ini' },
          database: { type: 'string', required: true, doc: 'The database name applications use through PgBouncer.', example: 'saas' },
          url: { type: 'postgresUrl', required: true, doc: 'An application URL through PgBouncer: the check that a write gets through.', example: 'postgres://app@127.0.0.1:6432/saas' },
        },
      },
      failover: {
        type: 'section',
        doc: 'The failover policy: who decides, and when the primary counts as lost.',
        keys: {
          approval: { type: 'oneOf', values: ['required', 'automatic'], default: 'required', doc: '`required`: someone other than the requester approves (signal `approve`); `automatic`: the workflow goes on alone.', example: 'required' },
          probes: { type: 'integer', min: 1, max: 100, default: 3, doc: 'Failed probes in a row before the primary counts as lost.', example: 3 },
          probeInterval: { type: 'duration', default: '1s', doc: 'The time between probes.', example: '1s' },
          probeTimeout: { type: 'duration', default: '2s', doc: 'How long one probe waits.', example: '2s' },
          approvalTimeout: { type: 'duration', default: '1h', doc: 'An unapproved failover ends then, nothing changed.', example: '1h' },
        },
      },
      drill: {
        type: 'section',
        doc: 'DR drills: the newest full backup and WAL restored into a scratch cluster under `verification.scratchDir`, checked, RTO/RPO measured.',
        keys: {
          interval: { type: 'durationOrOff', default: '7d', doc: 'The Temporal Schedule of drills; `off`: drills by hand only.', example: '7d' },
          sampleTenants: { type: 'integer', min: 0, max: 1000, default: 1, doc: 'Tenants whose rows a drill compares with their latest tenant backup (0: none).', example: 1 },
        },
      },
    },
  },
  verification: {
    type: 'section',
    doc: 'Proving backups restore (docs/runbooks/verification.md). Verification, tenant PITR clones and DR drills restore whole clusters under `scratchDir`.',
    keys: {
      scratchDir: { type: 'path', default: () => os.tmpdir(), defaultText: 'the OS temporary directory (`$TMPDIR`, else `/tmp`)', doc: 'Where scratch clusters are restored, on each worker: it needs free space the size of the database (checked first; `tenantsafe doctor` warns).', example: '/var/lib/tenantsafe/scratch' },
      tenantBackupsPerRun: { type: 'integer', min: 0, max: 10_000, default: 10, doc: 'Tenant backups never verified yet that each `verifyRecentBackups` run verifies, newest first.', example: 10 },
      scratchKeepFreePercent: { type: 'integer', min: 0, max: 99, default: 5, doc: 'The share of `scratchDir`\'s file system a scratch restore must leave free (others write there too).', example: 5 },
    },
  },
  restore: {
    type: 'section',
    doc: 'Tenant restores: who approves, and the apply transaction\'s limits.',
    keys: {
      approvers: { type: 'integer', min: 1, max: 10, default: 1, doc: 'Distinct approvers needed besides the requester (1: four-eyes).', example: 1 },
      approvalTimeout: { type: 'duration', default: '24h', doc: 'No decision by then: the restore is `expired`, nothing changed.', example: '24h' },
      lockTimeout: { type: 'duration', default: '10s', doc: 'The apply transaction\'s `lock_timeout` (a lock held elsewhere: it fails and is retried).', example: '10s' },
      statementTimeout: { type: 'duration', default: '30m', doc: 'The apply transaction\'s `statement_timeout`.', example: '30m' },
      verifyOtherTenants: { type: 'boolean', default: true, doc: 'Prove inside the apply that no other tenant\'s row was written.', example: true },
    },
  },
  dashboard: {
    type: 'section',
    doc: 'The dashboard and its HTTP API (`tenantsafe dashboard`; docs/runbooks/dashboard.md). It refuses to start with neither `users` nor `token`.',
    keys: {
      host: { type: 'string', default: '127.0.0.1', doc: 'The address it listens on.', example: '127.0.0.1' },
      port: { type: 'integer', min: 0, max: 65535, default: 8080, doc: 'The port it listens on (0: any free one).', example: 8080 },
      users: {
        type: 'map',
        name: '<name>',
        doc: 'Who may sign in or call the API; a name is 1 to 64 letters, digits and `. _ @ -` (starting with a letter or digit). A secret is a hash made by `tenantsafe hash-secret` or a reference to the environment; one written into the file as itself is refused.',
        example: { alice: { role: 'operator', password: '${ALICE_PASSWORD}' }, grafana: { role: 'read-only', token: '${GRAFANA_TOKEN}' } },
        keys: {
          role: { type: 'oneOf', values: ['read-only', 'operator'], required: true, doc: '`read-only`: every page; `operator`: also approve and reject restores.', example: 'operator' },
          token: { type: 'secret', doc: 'For `Authorization: Bearer`: a hash (`tenantsafe hash-secret --token`) or `${ENV}` (16+ characters). A token must say who calls: two users cannot share one. A token or a password is required.', example: '${GRAFANA_TOKEN}' },
          password: { type: 'secret', doc: 'For the sign-in form and basic auth: a hash (`tenantsafe hash-secret`) or `${ENV}` (8+ characters).', example: '${ALICE_PASSWORD}' },
          relay: { type: 'boolean', default: false, doc: 'Over the HTTP API it may approve or reject for whom its `by` names (a support console relaying its users\' decisions).', example: false },
        },
      },
      token: { type: 'secret', doc: 'The HTTP API\'s token from before users: an operator named `dashboard.token` that relays.', example: '${TENANTSAFE_DASHBOARD_TOKEN}' },
      sessionTtl: { type: 'duration', default: '12h', doc: 'How long a sign-in lasts.', example: '12h' },
      sessionSecret: { type: 'secret', doc: '32+ characters that sign sessions and forms; set the same on every dashboard behind one address. Default: random per process (sign-ins end on restart).', example: '${TENANTSAFE_SESSION_SECRET}' },
    },
  },
  worker: {
    type: 'section',
    doc: 'The worker process (`tenantsafe worker`).',
    keys: {
      metricsHost: { type: 'string', default: '127.0.0.1', doc: 'The address of its `/metrics` listener; `0.0.0.0` lets Prometheus on another host scrape it.', example: '0.0.0.0' },
      metricsPort: { type: 'integer', min: 0, max: 65535, default: 0, doc: 'The port of its `/metrics` listener; 0: none. Each worker on a host needs its own.', example: 9464 },
    },
  },
  monitoring: {
    type: 'section',
    doc: 'What `check`, `status`, the metrics and the dashboard judge by (docs/runbooks/monitoring.md).',
    keys: {
      schedules: {
        type: 'section',
        doc: 'The interval each kind must succeed within; `off`: its age is not judged.',
        keys: {
          tenantBackup: { type: 'durationOrOff', defaultText: 'the Temporal schedule\'s interval, else `24h` (a tenant\'s own schedule counts for it)', doc: 'Tenant backups (each tenant\'s newest).', example: '24h' },
          fullBackup: { type: 'durationOrOff', defaultText: 'the Temporal schedule\'s (daily), else not judged', doc: 'Full backups (the newest).', example: '24h' },
          verification: { type: 'durationOrOff', defaultText: 'the Temporal schedule\'s (daily), else not judged', doc: 'Verification (the newest passed run).', example: '24h' },
        },
      },
      warningFactor: { type: 'number', min: 1, max: 100, default: 1.5, doc: 'Older than interval × this: warning.', example: 1.5 },
      criticalFactor: { type: 'number', min: 1, max: 100, default: 2, doc: 'Older than interval × this: critical. At least `warningFactor`.', example: 2 },
      rpoTarget: { type: 'duration', default: '5m', doc: 'The WAL archive\'s achieved RPO over this: warning; over twice it: critical.', example: '5m' },
      changeLogLagTarget: { type: 'duration', default: '5m', doc: 'The same for the change log.', example: '5m' },
      walStalledAfter: { type: 'duration', default: '3m', doc: 'The WAL archiver silent this long (it reports every 30 s): critical.', example: '3m' },
      approvalWait: { type: 'duration', default: '1h', doc: 'A restore awaiting approval longer: warning.', example: '1h' },
      topTenants: { type: 'integer', min: 0, max: 1000, default: 10, doc: 'Per-tenant metrics and status lines for the N worst tenants (bounded cardinality).', example: 10 },
      tenants: { type: 'identifierList', default: [], doc: 'Tenants whose per-tenant metrics are always exported.', example: ['acme'] },
      cacheTtl: { type: 'duration', default: '30s', doc: '`/metrics` serves a health report at most this old.', example: '30s' },
      metricsToken: { type: 'secret', doc: 'When set, `/metrics` (worker and dashboard) asks for `Authorization: Bearer` with it.', example: '${TENANTSAFE_METRICS_TOKEN}' },
    },
  },
} as const satisfies Keys;

export type ConfigValues = SectionValue<typeof configSchema>;

/** An environment variable tenantsafe reads; docs/configuration.md lists them, a test holds the code to the list. */
export interface EnvironmentVariable {
  name: string;
  doc: string;
  default?: string;
}

export const environmentVariables: EnvironmentVariable[] = [
  { name: 'TENANTSAFE_CONFIG', doc: 'The config file, when `--config` is not given.', default: '`./tenantsafe.yaml` when present, else the embedded dev defaults' },
  { name: 'TENANTSAFE_USER', doc: 'Who asks (`--by`) when a command is not told.', default: 'the OS user' },
  { name: 'TENANTSAFE_LOG_LEVEL', doc: 'The worker\'s log level (and of the alerts\' delivery): `TRACE`, `DEBUG`, `INFO`, `WARN`, `ERROR`.', default: '`WARN`' },
  { name: 'TENANTSAFE_DEBUG', doc: 'Set (to anything): an unexpected CLI error prints its stack trace too (errors of a known type print their message and `HINT:` only).' },
  { name: 'TENANTSAFE_MASTER_KEY_FILE', doc: 'The master key file, when `encryption.keyFile` is not set.', default: '`tenantsafe.key` beside the config file' },
  { name: 'PG_BIN_DIR', doc: 'Where PostgreSQL\'s programs are (`pg_basebackup`, `pg_receivewal`, `pg_dump`, `pg_restore`, `pg_ctl`, `initdb`, `pg_verifybackup`, `pg_waldump`, `pg_rewind`); workers need them of the server\'s major version or newer (`tenantsafe doctor` checks).', default: '`/usr/lib/postgresql/15/bin`' },
  { name: 'TEMPORAL_CLI', doc: 'The `temporal` program `tenantsafe dev`, the demo and the tests start the Temporal dev server with.', default: '`temporal` on `PATH`, else the project\'s `.venv/bin/temporal`' },
  { name: 'STORAGE_EMULATOR_HOST', doc: 'A GCS emulator\'s endpoint, for a `gcs` location without `apiEndpoint`.' },
  { name: 'GOOGLE_APPLICATION_CREDENTIALS', doc: 'Read by the Google client library, not by tenantsafe: the service-account key file for `gcs` storage (or workload identity, without it).' },
];
