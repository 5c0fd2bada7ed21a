import { strict as assert } from 'node:assert';
import { parseConfig } from '../lib/config';
import { TenantsafeError } from '../lib/errors';

const ctx = { env: {}, source: 'test', baseDir: '/srv/tenantsafe' };
const minimal = { database: { url: 'postgres://app@db:5432/saas' }, storage: { primary: { kind: 'local', path: 'backups' } } };

function problemsOf(doc: unknown, env: NodeJS.ProcessEnv = {}): string {
  try {
    parseConfig(doc, { ...ctx, env });
  } catch (err) {
    assert.ok(err instanceof TenantsafeError);
    return err.message;
  }
  assert.fail('config was accepted');
}

describe('configuration of full backups, Supabase, retention and verification', () => {
  it('defaults to the postgres provider, 30 days of retention with three backups always kept, and half-second WAL uploads', () => {
    const cfg = parseConfig(minimal, ctx);
    assert.equal(cfg.fullBackup.provider, 'postgres');
    assert.equal(cfg.fullBackup.slot, 'tenantsafe');
    assert.equal(cfg.fullBackup.walPartialIntervalMs, 500);
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
      verification: { tenantBackupsPerRun: 'many' },
    });
    assert.match(message, /fullBackup\.provider: must be one of postgres, supabase \(got "rds"\)/);
    assert.match(message, /fullBackup\.walPartialInterval: must be a duration/);
    assert.match(message, /supabase\.projectRef: must be the 20 lowercase letters/);
    assert.match(message, /supabase\.accessToken: must be a string/);
    assert.match(message, /retention\.days: must be an integer from 0/);
    assert.match(message, /retention\.tenants\.acme\.dayz: unknown key/);
    assert.match(message, /verification\.tenantBackupsPerRun: must be an integer/);
    assert.doesNotMatch(message, /42/);
    assert.match(problemsOf({ ...minimal, fullBackup: { provider: 'supabase' } }), /supabase: is required/);
  });
});
