import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { loadConfig, parseConfig, redactUrl } from '../lib/config';
import { ErrorType, isBadInput, isTransient, TenantsafeError } from '../lib/errors';
import { ctx, minimal, problemsOf } from './support/config';


describe('configuration', () => {
  it('fills in defaults and resolves a relative storage path against the config file', () => {
    const cfg = parseConfig(minimal, ctx);
    assert.deepEqual(cfg.tenancy, { schemas: ['app'], tenantTable: 'tenants', tenantColumn: 'tenant_id', globalTables: [], ownership: {} });
    assert.deepEqual(cfg.storage.primary, { kind: 'local', path: '/srv/tenantsafe/backups' });
    assert.equal(cfg.catalog.url, minimal.database.url);
    assert.deepEqual(cfg.temporal, { address: '127.0.0.1:7233', namespace: 'default', taskQueue: 'tenantsafe' });
  });

  it('substitutes ${VAR} and ${VAR:-default} from the environment', () => {
    const cfg = parseConfig(
      { ...minimal, database: { url: '${DB_URL}' }, temporal: { namespace: '${NS:-prod}' } },
      { ...ctx, env: { DB_URL: 'postgres://u:secret@h:5432/d' } },
    );
    assert.equal(cfg.database.url, 'postgres://u:secret@h:5432/d');
    assert.equal(cfg.temporal.namespace, 'prod');
  });

  it('names every bad key at once, including unknown keys and missing env vars', () => {
    const message = problemsOf(
      { database: { url: '${NOPE}' }, storage: { primary: { kind: 's3' } }, backup: { parallelism: 0 }, temporal: { adress: 'x' } },
    );
    assert.match(message, /database\.url: environment variable NOPE is not set/);
    assert.match(message, /storage\.primary\.kind: must be one of local, gcs \(got "s3"\)/);
    assert.match(message, /backup\.parallelism: must be an integer from 1 to 64/);
    assert.match(message, /temporal\.adress: unknown key/);
    assert.match(message, /HINT:/);
  });

  it('requires bucket for GCS and a postgres URL for the database, without echoing passwords', () => {
    assert.match(problemsOf({ ...minimal, storage: { primary: { kind: 'gcs' } } }), /storage\.primary\.bucket: is required/);
    const message = problemsOf({ ...minimal, database: { url: 'mysql://root:hunter2@h/db' } });
    assert.match(message, /database\.url: must be a postgres/);
    assert.doesNotMatch(message, /hunter2/);
    assert.equal(redactUrl('postgres://u:hunter2@h:5432/d'), 'postgres://u:***@h:5432/d');
  });

  it('reports a file that is not YAML with the line, and uses embedded defaults when there is no file', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tenantsafe-config-'));
    const file = path.join(dir, 'tenantsafe.yaml');
    fs.writeFileSync(file, 'database: {url: [unclosed\n');
    assert.throws(() => loadConfig({ path: file, env: {} }), (e: TenantsafeError) => e.type === ErrorType.BadConfig && /not valid YAML/.test(e.message));
    fs.rmSync(file);
    const embedded = loadConfig({ env: {}, cwd: dir });
    assert.equal(embedded.source, 'embedded defaults');
    assert.match(embedded.database.url, /127\.0\.0\.1:55432\/tenantsafe_sample/);
    fs.rmSync(dir, { recursive: true });
  });
});

describe('configuration of full backups, Supabase, retention and verification', () => {
  it('defaults to the postgres provider, 30 days of retention with three backups always kept, half-second WAL uploads and 5% of the scratch file system kept free', () => {
    const cfg = parseConfig(minimal, ctx);
    assert.equal(cfg.fullBackup.provider, 'postgres');
    assert.equal(cfg.fullBackup.slot, 'tenantsafe');
    assert.equal(cfg.fullBackup.walPartialIntervalMs, 500);
    assert.equal(cfg.verification.scratchKeepFreePercent, 5);
    assert.equal(cfg.supabase, null);
    assert.deepEqual({ ...cfg.retention, tenants: undefined }, { days: 30, minCount: 3, daily: 0, weekly: 0, monthly: 0, yearly: 0, incompleteAfterMs: 21_600_000, tenants: undefined });
  });

  it('reads the Supabase token from the environment and per-tenant retention overrides', () => {
    const cfg = parseConfig(
      {
        ...minimal,
        fullBackup: { provider: 'supabase' },
        supabase: { projectRef: 'abcdefghijklmnopqrst', accessToken: '${SUPABASE_ACCESS_TOKEN}' },
        retention: { days: 14, weekly: 8, tenants: { acme: { days: 90 } } },
      },
      { ...ctx, env: { SUPABASE_ACCESS_TOKEN: 'sbp_secret' } },
    );
    assert.deepEqual(cfg.supabase, { projectRef: 'abcdefghijklmnopqrst', accessToken: 'sbp_secret', apiUrl: 'https://api.supabase.com' });
    assert.equal(cfg.retention.weekly, 8);
    assert.deepEqual(cfg.retention.tenants, { acme: { days: 90 } });
  });

  it('names every bad key of the new sections, without echoing the token', () => {
    const message = problemsOf({
      ...minimal,
      fullBackup: { provider: 'rds', walPartialInterval: 'soon' },
      supabase: { projectRef: 'ABC', accessToken: 42 },
      retention: { days: -1, tenants: { acme: { dayz: 3 } } },
      verification: { tenantBackupsPerRun: 'many', scratchKeepFreePercent: 100 },
    });
    assert.match(message, /fullBackup\.provider: must be one of postgres, supabase \(got "rds"\)/);
    assert.match(message, /fullBackup\.walPartialInterval: must be a duration/);
    assert.match(message, /supabase\.projectRef: must be the 20 lowercase letters/);
    assert.match(message, /supabase\.accessToken: must be a string/);
    assert.match(message, /retention\.days: must be an integer from 0/);
    assert.match(message, /retention\.tenants\.acme\.dayz: unknown key/);
    assert.match(message, /verification\.tenantBackupsPerRun: must be an integer/);
    assert.match(message, /verification\.scratchKeepFreePercent: must be an integer from 0 to 99/);
    assert.doesNotMatch(message, /42/);
    assert.match(problemsOf({ ...minimal, fullBackup: { provider: 'supabase' } }), /supabase: is required/);
  });

  it('compresses base backups with lz4 unless fullBackup.compression names zstd (at a level) or gzip', () => {
    assert.deepEqual(parseConfig(minimal, ctx).fullBackup.compression, { method: 'lz4', level: 1 });
    const read = (compression: string) => parseConfig({ ...minimal, fullBackup: { compression } }, ctx).fullBackup.compression;
    assert.deepEqual(read('zstd:-1'), { method: 'zstd', level: -1 });
    assert.deepEqual(read('zstd'), { method: 'zstd', level: -1 });
    assert.deepEqual(read('zstd:1'), { method: 'zstd', level: 1 });
    assert.deepEqual(read('zstd:9'), { method: 'zstd', level: 9 });
    assert.deepEqual(read('zstd:-7'), { method: 'zstd', level: -7 });
    assert.deepEqual(read('gzip'), { method: 'gzip', level: 1 });
    assert.deepEqual(read('gzip:6'), { method: 'gzip', level: 6 });
    const bad = (compression: string) => problemsOf({ ...minimal, fullBackup: { compression } });
    assert.match(bad('brotli'), /fullBackup\.compression: must be lz4, zstd\[:level\] or gzip\[:level\] \(got "brotli"\)/);
    assert.match(bad('zstd:20'), /fullBackup\.compression: zstd's level must be from -7 to 19 \(got "zstd:20"\)/);
    assert.match(bad('zstd:-8'), /fullBackup\.compression: zstd's level must be from -7 to 19/);
    assert.match(bad('zstd:0'), /fullBackup\.compression: zstd's level must be from -7 to 19/);
    assert.match(bad('gzip:x'), /fullBackup\.compression: gzip's level must be from 1 to 9/);
    assert.match(bad('lz4:3'), /fullBackup\.compression: lz4 takes no level/);
    assert.match(bad('zstd:1:2'), /must be lz4, zstd\[:level\] or gzip\[:level\]/);
  });
});

describe('the base backup\'s throttle', () => {
  it('reads maxRate in bytes per second and hands pg_basebackup kilobytes per second; the old maxRateKbps still means kilobytes per second', () => {
    assert.equal(parseConfig(minimal, ctx).fullBackup.maxRateKBps, null);
    assert.equal(parseConfig({ ...minimal, fullBackup: { maxRate: '64MB/s' } }, ctx).fullBackup.maxRateKBps, 65536);
    assert.equal(parseConfig({ ...minimal, fullBackup: { maxRate: '512kB' } }, ctx).fullBackup.maxRateKBps, 512);
    assert.equal(parseConfig({ ...minimal, fullBackup: { maxRateKbps: 8192 } }, ctx).fullBackup.maxRateKBps, 8192);
  });

  it('refuses a rate outside what pg_basebackup takes, and both names at once', () => {
    assert.match(problemsOf({ ...minimal, fullBackup: { maxRate: '16kB/s' } }), /fullBackup\.maxRate: must be a rate like 512kB\/s or 64MB\/s, from 32kB\/s to 1GB\/s \(got "16kB\/s"\)/);
    assert.match(problemsOf({ ...minimal, fullBackup: { maxRate: 'fast' } }), /fullBackup\.maxRate: must be a rate/);
    assert.match(problemsOf({ ...minimal, fullBackup: { maxRate: '8MB/s', maxRateKbps: 8192 } }), /fullBackup\.maxRateKbps: is the old name of maxRate: give only maxRate/);
  });
});

describe('configuration of monitoring and the worker\'s metrics', () => {
  it('defaults to no metrics listener, intervals from the schedules, ×1.5 and ×2, five-minute RPO targets', () => {
    const cfg = parseConfig(minimal, ctx);
    assert.deepEqual(cfg.worker, { metricsHost: '127.0.0.1', metricsPort: 0 });
    assert.deepEqual(cfg.monitoring, {
      schedules: {},
      warningFactor: 1.5,
      criticalFactor: 2,
      rpoTargetMs: 300_000,
      changeLogLagTargetMs: 300_000,
      walStalledAfterMs: 180_000,
      approvalWaitMs: 3_600_000,
      topTenants: 10,
      tenants: [],
      cacheTtlMs: 30_000,
    });
    assert.equal(cfg.temporal.uiUrl, undefined);
  });

  it('reads intervals or off, factors, targets, a UI URL and the metrics token from the environment', () => {
    const cfg = parseConfig(
      {
        ...minimal,
        temporal: { uiUrl: 'http://127.0.0.1:8233/' },
        worker: { metricsPort: 9464, metricsHost: '0.0.0.0' },
        monitoring: { schedules: { tenantBackup: '6h', fullBackup: 'off' }, warningFactor: 1.2, criticalFactor: '3', rpoTarget: '30s', tenants: ['acme'], metricsToken: '${METRICS_TOKEN}' },
      },
      { ...ctx, env: { METRICS_TOKEN: 'm3trics' } },
    );
    assert.equal(cfg.temporal.uiUrl, 'http://127.0.0.1:8233');
    assert.deepEqual(cfg.worker, { metricsHost: '0.0.0.0', metricsPort: 9464 });
    assert.deepEqual(cfg.monitoring.schedules, { tenantBackup: 21_600_000, fullBackup: null });
    assert.equal(cfg.monitoring.warningFactor, 1.2);
    assert.equal(cfg.monitoring.criticalFactor, 3);
    assert.equal(cfg.monitoring.rpoTargetMs, 30_000);
    assert.deepEqual(cfg.monitoring.tenants, ['acme']);
    assert.equal(cfg.monitoring.metricsToken, 'm3trics');
  });

  it('names every bad monitoring key, without echoing the token', () => {
    const message = problemsOf({
      ...minimal,
      worker: { metricsPort: 70000, port: 1 },
      monitoring: { schedules: { tenantBackup: 'daily', restore: '1h' }, warningFactor: 0.5, criticalFactor: 'x', approvalWait: 'soon', topTenants: -1, metricsToken: 12345 },
    });
    assert.match(message, /worker\.metricsPort: must be an integer from 0 to 65535/);
    assert.match(message, /worker\.port: unknown key/);
    assert.match(message, /monitoring\.schedules\.tenantBackup: must be a duration like 24h, or off \(got "daily"\)/);
    assert.match(message, /monitoring\.schedules\.restore: unknown key/);
    assert.match(message, /monitoring\.warningFactor: must be a number from 1 to 100/);
    assert.match(message, /monitoring\.criticalFactor: must be a number from 1 to 100/);
    assert.match(message, /monitoring\.approvalWait: must be a duration/);
    assert.match(message, /monitoring\.topTenants: must be an integer from 0 to 1000/);
    assert.match(message, /monitoring\.metricsToken: must be a string/);
    assert.doesNotMatch(message, /12345/);
    assert.match(problemsOf({ ...minimal, monitoring: { warningFactor: 2, criticalFactor: 1.5 } }), /monitoring\.criticalFactor: must be at least warningFactor \(2\) \(got 1\.5\)/);
  });
});

describe('configuration of disaster recovery', () => {
  it('defaults to RPO 5 s and RTO 60 s, no standby and no endpoint, approved failovers after three failed probes, a weekly drill', () => {
    const { dr } = parseConfig(minimal, ctx);
    assert.deepEqual(dr.targets, { rpoMs: 5_000, rtoMs: 60_000 });
    assert.equal(dr.standby, null);
    assert.equal(dr.endpoint, null);
    assert.equal(dr.primaryDataDir, null);
    assert.deepEqual(dr.failover, { approval: 'required', probes: 3, probeIntervalMs: 1_000, probeTimeoutMs: 2_000, approvalTimeoutMs: 3_600_000 });
    assert.deepEqual(dr.drill, { intervalMs: 7 * 24 * 3_600_000, sampleTenants: 1 });
  });

  it('reads a standby, a PgBouncer endpoint, an automatic policy and drills turned off', () => {
    const { dr } = parseConfig(
      {
        ...minimal,
        dr: {
          targets: { rpo: '0s', rto: '10s' },
          standby: { dataDir: 'standby', port: 5433, synchronous: true, maxLag: '1MB' },
          primaryDataDir: 'pg/main',
          endpoint: { adminUrl: 'postgres://pgbouncer@127.0.0.1:6432/pgbouncer', databasesFile: 'pgbouncer/databases.ini', database: 'saas', url: 'postgres://app@127.0.0.1:6432/saas' },
          failover: { approval: 'automatic', probes: 5 },
          drill: { interval: 'off' },
        },
      },
      ctx,
    );
    assert.deepEqual(dr.targets, { rpoMs: 0, rtoMs: 10_000 });
    assert.deepEqual(dr.standby, { dataDir: '/srv/tenantsafe/standby', host: '127.0.0.1', port: 5433, slot: 'tenantsafe_standby', synchronous: true, maxLagBytes: 1024 * 1024 });
    assert.equal(dr.endpoint?.databasesFile, '/srv/tenantsafe/pgbouncer/databases.ini');
    assert.equal(dr.primaryDataDir, '/srv/tenantsafe/pg/main');
    assert.equal(dr.failover.approval, 'automatic');
    assert.equal(dr.failover.probes, 5);
    assert.equal(dr.drill.intervalMs, null);
  });

  it('names every bad DR key', () => {
    const message = problemsOf({
      ...minimal,
      dr: { targets: { rto: 'soon' }, standby: { port: 70000, maxLag: 'lots' }, endpoint: { database: 'saas' }, failover: { approval: 'maybe' } },
    });
    assert.match(message, /dr\.targets\.rto: must be a duration/);
    assert.match(message, /dr\.standby\.dataDir: is required/);
    assert.match(message, /dr\.standby\.port: must be an integer from 1 to 65535/);
    assert.match(message, /dr\.standby\.maxLag: must be a size like/);
    assert.match(message, /dr\.endpoint\.adminUrl: is required/);
    assert.match(message, /dr\.failover\.approval: must be one of required, automatic/);
  });
});

describe('configuration of the Temporal connection', () => {
  it('reads TLS files relative to the config, an API key from the environment, and `tls: true`', () => {
    const cfg = parseConfig({ ...minimal, temporal: { address: 'ns.tmprl.cloud:7233', tls: { ca: 'ca.pem', clientCert: 'c.pem', clientKey: 'c.key', serverName: 'temporal.internal' }, apiKey: '${KEY}' } }, { ...ctx, env: { KEY: 'secret-key' } });
    assert.deepEqual(cfg.temporal.tls, { caFile: '/srv/tenantsafe/ca.pem', clientCertFile: '/srv/tenantsafe/c.pem', clientKeyFile: '/srv/tenantsafe/c.key', serverName: 'temporal.internal' });
    assert.equal(cfg.temporal.apiKey, 'secret-key');
    assert.deepEqual(parseConfig({ ...minimal, temporal: { tls: true } }, ctx).temporal.tls, {});
    assert.equal(parseConfig({ ...minimal, temporal: { tls: false } }, ctx).temporal.tls, undefined);
  });

  it('wants both halves of a client certificate', () => {
    assert.match(problemsOf({ ...minimal, temporal: { tls: { clientCert: 'c.pem' } } }), /temporal\.tls\.clientKey: is required with the other half of the client certificate/);
  });
});

describe('the error catalog (docs/errors.md)', () => {
  it('has a line for every error type, with its exit code and whether it is retried as the code decides', () => {
    const doc = fs.readFileSync(path.join(__dirname, '..', 'docs', 'errors.md'), 'utf8');
    for (const type of Object.values(ErrorType)) {
      const row = new RegExp(`^\\| \`${type}\` \\| (\\d) \\| (yes|no|—) \\|`, 'm').exec(doc);
      assert.ok(row, `docs/errors.md has no line for ${type}`);
      assert.equal(Number(row[1]), isBadInput(type) ? 2 : 1, `${type}'s exit code`);
      if (row[2] !== '—') assert.equal(row[2] === 'yes', isTransient(type), `${type} retried`);
    }
  });
});
