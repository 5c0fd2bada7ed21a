// A fresh database per test file, cloned from a template that holds the sample database.
// The template is built once per content hash of the sample, so reruns are fast.
import type { Client } from 'pg';
import { withConnection } from '../../lib/pg';
import { ensureSampleDatabase, sampleDigest, sampleTenants, type SampleOptions, type SampleTenant } from '../../sample/generate';

export const adminUrl = process.env.TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

export function databaseUrl(name: string): string {
  const u = new URL(adminUrl);
  u.pathname = `/${name}`;
  return u.toString();
}

/** Runs fn on a short-lived client of the given database. */
export const withDb = withConnection;

const admin = <T>(fn: (c: Client) => Promise<T>) => withDb(adminUrl, fn);

export const defaultSample: SampleOptions = { tenants: 12, rows: 30_000 };

function templateName(opts: SampleOptions): string {
  return `tenantsafe_tpl_${sampleDigest(opts)}`;
}

async function ensureTemplate(opts: SampleOptions): Promise<string> {
  const name = templateName(opts);
  const { created } = await ensureSampleDatabase(adminUrl, name, opts);
  // a template can be cloned while nobody is connected to it
  if (created) await admin((c) => c.query(`ALTER DATABASE "${name}" WITH IS_TEMPLATE true`));
  return name;
}

export interface TestDatabase {
  name: string;
  url: string;
  tenants: SampleTenant[];
  drop(): Promise<void>;
}

let counter = 0;

/** A new database holding the sample; drop() it in after(). */
export async function freshDatabase(opts: SampleOptions = defaultSample): Promise<TestDatabase> {
  const template = await ensureTemplate(opts);
  const name = `tenantsafe_test_${process.pid}_${++counter}`;
  await admin(async (c) => {
    await c.query(`DROP DATABASE IF EXISTS "${name}"`);
    await c.query(`CREATE DATABASE "${name}" TEMPLATE "${template}"`);
  });
  return {
    name,
    url: databaseUrl(name),
    tenants: sampleTenants(opts),
    drop: () => admin((c) => c.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`)).then(() => undefined),
  };
}
