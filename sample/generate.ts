// Generates the sample multi-tenant database (schema.sql) with tenants of very different
// sizes. Deterministic: the same options give the same rows, so tests can compare exactly.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { ClientBase } from 'pg';
import { connect, quoteIdent } from '../lib/pg';

export interface SampleOptions {
  /** number of tenants (default 40) */
  tenants?: number;
  /** approximate rows over all tenants, split Zipf-like: the first tenant is the largest */
  rows?: number;
  /** extra tenants with an exact size, e.g. a 1M-row tenant for benchmarks */
  extraTenants?: { tenantId: string; rows: number }[];
  /**
   * Zipf sizes whose first (largest) tenant holds about this share of `rows`, e.g. 0.1: the
   * exponent is fitted to the number of tenants. Absent: sizes ∝ 1/rank (the first holds 1/H(n)).
   */
  largestShare?: number;
  /**
   * Text and jsonb payloads of about this many bytes (64 to 4096): appended to every comment's
   * body (text) and held in every event's payload under "note" (jsonb): deterministic words and a
   * digest. Absent or 0: none.
   */
  payloadBytes?: number;
}

export interface SampleTenant {
  tenantId: string;
  users: number;
}

const namedTenants = ['acme', 'globex', 'initech', 'umbrella', 'hooli', 'stark', 'wayne', 'wonka', 'tyrell', 'cyberdyne'];

/** Rows one user brings across all tables (users 1, projects .5, tasks 4, comments 8, ...). */
const rowsPerUser = 33.5;

/** Σ rank^-s over n ranks */
const zipfSum = (n: number, s: number) => Array.from({ length: n }, (_, i) => (i + 1) ** -s).reduce((a, b) => a + b, 0);

/** The Zipf exponent under which the first of n ranks holds `share` of the total (bisection; 0 = equal sizes). */
export function zipfExponent(n: number, share: number): number {
  if (share <= 1 / n) return 0;
  let [lo, hi] = [0, 8];
  for (let i = 0; i < 60; i++) {
    const mid = (lo + hi) / 2;
    if (1 / zipfSum(n, mid) < share) lo = mid;
    else hi = mid;
  }
  return (lo + hi) / 2;
}

export function sampleTenants(opts: SampleOptions = {}): SampleTenant[] {
  const count = opts.tenants ?? 40;
  const rows = opts.rows ?? 100_000;
  const harmonic = Array.from({ length: count }, (_, i) => 1 / (i + 1)).reduce((a, b) => a + b, 0);
  const s = opts.largestShare === undefined ? 1 : zipfExponent(count, opts.largestShare);
  const sum = zipfSum(count, s);
  // rows of the tenant of rank i + 1; the default's expression kept as it was (same sizes, same rows)
  const share = (i: number) => (opts.largestShare === undefined ? rows / harmonic / (i + 1) : (rows * (i + 1) ** -s) / sum);
  const tenants = Array.from({ length: count }, (_, i) => ({
    tenantId: namedTenants[i] ?? `t${String(i + 1).padStart(3, '0')}`,
    users: Math.max(2, Math.round(share(i) / rowsPerUser)),
  }));
  for (const extra of opts.extraTenants ?? []) {
    tenants.push({ tenantId: extra.tenantId, users: Math.max(2, Math.round(extra.rows / rowsPerUser)) });
  }
  return tenants;
}

export const sampleSchemaSql = (): string => fs.readFileSync(path.join(__dirname, 'schema.sql'), 'utf8');

/**
 * 12 hex digits naming what `opts` generate with this generator: its options, schema and source
 * (a changed generator gives a new name, so a database kept as a template is never stale).
 */
export function sampleDigest(opts: SampleOptions): string {
  const h = createHash('sha256').update(JSON.stringify(opts));
  for (const f of ['schema.sql', 'generate.ts']) h.update(fs.readFileSync(path.join(__dirname, f)));
  return h.digest('hex').slice(0, 12);
}

/** Creates schema `app` and fills it. The database should be empty of an `app` schema. */
export async function generateSample(client: ClientBase, opts: SampleOptions = {}): Promise<SampleTenant[]> {
  if (opts.payloadBytes && !(Number.isInteger(opts.payloadBytes) && opts.payloadBytes >= minPayloadBytes && opts.payloadBytes <= maxPayloadBytes)) {
    throw new Error(`payloadBytes ${opts.payloadBytes}: 0, or an integer from ${minPayloadBytes} to ${maxPayloadBytes}`);
  }
  if (opts.largestShare !== undefined && !(opts.largestShare > 0 && opts.largestShare <= 1)) throw new Error(`largestShare ${opts.largestShare}: a share above 0 and at most 1`);
  const tenants = sampleTenants(opts);
  await client.query('BEGIN');
  await client.query(sampleSchemaSql());
  await client.query(`CREATE TEMP TABLE gen_tenants (ord int, tenant_id text, n_users int, first_user bigint) ON COMMIT DROP`);
  await client.query(
    `INSERT INTO gen_tenants (ord, tenant_id, n_users) SELECT ord, t, n FROM unnest($1::text[], $2::int[]) WITH ORDINALITY AS x(t, n, ord)`,
    [tenants.map((t) => t.tenantId), tenants.map((t) => t.users)],
  );
  if (opts.payloadBytes) await client.query(payloadWordsSql);
  for (const sql of fillStatements(opts.payloadBytes ?? 0)) await client.query(sql);
  await client.query('COMMIT');
  await client.query('ANALYZE');
  return tenants;
}

const payloadSource = 7600;
const [minPayloadBytes, maxPayloadBytes] = [64, 4096];

/**
 * For payloads: 7,600 characters of words picked by md5 (deterministic), in one row of a temp
 * table stored plain (neither compressed nor out of line: every row's slice of it is cheap).
 */
const payloadWordsSql = `CREATE TEMP TABLE gen_words (words text) ON COMMIT DROP;
  ALTER TABLE gen_words ALTER words SET STORAGE PLAIN;
  INSERT INTO gen_words
  SELECT left(string_agg((ARRAY['invoice', 'customer', 'shipment', 'pending', 'approved', 'total', 'discount', 'warehouse', 'delivery', 'refund',
                                'account', 'contract', 'update', 'the', 'of', 'and', 'order', 'status', 'note', 'review', 'draft', 'quarterly',
                                'report', 'meeting', 'follow-up', 'priority', 'backlog', 'release', 'customer''s', 'region', 'EMEA', 'APAC'])
                         [1 + ('x' || substr(md5(i::text), 1, 7))::bit(28)::int % 32], ' ' ORDER BY i), ${payloadSource})
    FROM generate_series(1, 1500) i`;

/**
 * About `bytes` of text for the row numbered `id` (an SQL expression): a slice of gen_words at an
 * offset of the row's own, and the md5 of its number (words compress like prose, the digest hardly).
 */
const payload = (bytes: number, id: string) =>
  `substr((SELECT words FROM gen_words), (1 + ((${id}) * 7919) % ${payloadSource - bytes})::int, ${bytes - 33}) || ' ' || md5((${id})::text)`;

/** Set-based fill, one statement per table. Text values include tabs, newlines, backslashes and non-ASCII on purpose. */
const fillStatements = (payloadBytes: number) => [
  `INSERT INTO app.plans VALUES (1, 'Free', 'free', 0), (2, 'Pro', 'pro', 49.00), (3, 'Enterprise', 'enterprise', 999.99)`,
  `INSERT INTO app.countries VALUES ('DE', 'Germany'), ('FR', 'France'), ('US', 'United States'), ('JP', 'Japan'), ('BR', 'Brazil')`,
  `INSERT INTO app.feature_flags VALUES ('new-editor', true), ('dark-mode', false), ('beta-api', true)`,
  `INSERT INTO app.tenants (tenant_id, name, plan_id, country, created_at)
     SELECT tenant_id, initcap(tenant_id) || ' Inc.', 1 + ord % 3,
            CASE WHEN ord % 6 = 0 THEN NULL ELSE (ARRAY['DE','FR','US','JP','BR'])[1 + ord % 5] END,
            timestamptz '2025-01-01 00:00:00+00' + ord * interval '1 day'
     FROM gen_tenants ORDER BY ord`,
  `INSERT INTO app.users (tenant_id, email, display_name, settings, created_at)
     SELECT g.tenant_id, 'user' || i || '@' || g.tenant_id || '.example',
            CASE WHEN i % 7 = 0 THEN NULL ELSE 'User ' || i END,
            jsonb_build_object('theme', CASE WHEN i % 2 = 0 THEN 'dark' ELSE 'light' END, 'n', i),
            timestamptz '2026-01-01 00:00:00+00' + i * interval '37 minutes'
     FROM gen_tenants g, generate_series(1, g.n_users) i ORDER BY g.ord, i`,
  `UPDATE gen_tenants g SET first_user = (SELECT min(user_id) FROM app.users u WHERE u.tenant_id = g.tenant_id)`,
  `INSERT INTO app.projects (tenant_id, owner_id, name, tags, archived)
     SELECT g.tenant_id, g.first_user + (i % g.n_users), 'Project ' || i, ARRAY['p' || (i % 5), 'team'], i % 11 = 0
     FROM gen_tenants g, generate_series(1, greatest(1, g.n_users / 2)) i ORDER BY g.ord, i`,
  `INSERT INTO app.tasks (project_id, title, status, estimate, due_on, attachment)
     SELECT p.project_id,
            CASE j WHEN 2 THEN E'multi\\nline ' || p.project_id
                   WHEN 3 THEN E'tab\\there \\\\ back\\\\slash ' || p.project_id
                   WHEN 4 THEN 'ünïcödé ✓ ' || p.project_id
                   ELSE 'Task ' || p.project_id || '.' || j END,
            (ARRAY['todo', 'doing', 'done'])[1 + j % 3]::app.task_status,
            CASE WHEN j % 4 = 0 THEN NULL ELSE (j * 1.25)::numeric(8, 2) END,
            date '2026-02-01' + (p.project_id % 300)::int,
            CASE WHEN j = 5 THEN decode(md5(p.project_id::text), 'hex') END
     FROM app.projects p, generate_series(1, 8) j ORDER BY p.project_id, j`,
  `INSERT INTO app.comments (comment_id, task_id, author_id, reply_to, body, created_at)
     SELECT t.task_id * 2 - 1 + k, t.task_id, p.owner_id, CASE k WHEN 1 THEN t.task_id * 2 - 1 END,
            CASE k WHEN 0 THEN 'First! on ' || t.task_id ELSE E'Reply\\twith "quotes" and \\\\N ' || t.task_id END${payloadBytes ? ` || ' ' || ${payload(payloadBytes, 't.task_id * 2 + k')}` : ''},
            timestamptz '2026-03-01 00:00:00+00' + t.task_id * interval '1 minute' + k * interval '5 seconds'
     FROM app.tasks t JOIN app.projects p USING (project_id), generate_series(0, 1) k`,
  `SELECT setval(pg_get_serial_sequence('app.comments', 'comment_id'), (SELECT max(comment_id) FROM app.comments))`,
  `INSERT INTO app.labels (tenant_id, code, color)
     SELECT g.tenant_id, c, CASE c WHEN 'bug' THEN 'red' WHEN 'p1' THEN NULL ELSE 'grey' END
     FROM gen_tenants g, unnest(ARRAY['bug', 'feature', 'ops', 'ux', 'p1']) c`,
  `INSERT INTO app.task_labels (task_id, label_tenant, label_code)
     SELECT t.task_id, p.tenant_id, (ARRAY['bug', 'feature', 'ops', 'ux', 'p1'])[1 + t.task_id % 5]
     FROM app.tasks t JOIN app.projects p USING (project_id) WHERE t.task_id % 2 = 0`,
  `INSERT INTO app.events (tenant_id, event_id, occurred_at, kind, payload)
     SELECT g.tenant_id, i, timestamptz '2025-12-01 00:00:00+00' + i * interval '97 minutes' + g.ord * interval '3 days',
            (ARRAY['login', 'view', 'edit', 'export'])[1 + i % 4],
            CASE WHEN i % 9 = 0 THEN NULL ELSE jsonb_build_object('i', i, 'ok', i % 3 <> 0${payloadBytes ? `, 'note', ${payload(payloadBytes, 'i + g.ord::bigint * 1000003')}` : ''}) END
     FROM gen_tenants g, generate_series(1, g.n_users * 10) i`,
  `INSERT INTO app."AuditLog" (tenant_id, "Actor", "eventType", "At")
     SELECT g.tenant_id, CASE WHEN i % 5 = 0 THEN NULL ELSE 'user' || (i % g.n_users) END,
            (ARRAY['login', 'settings.change', 'export'])[1 + i % 3],
            timestamptz '2026-01-15 00:00:00+00' + i * interval '11 minutes'
     FROM gen_tenants g, generate_series(1, g.n_users * 3) i ORDER BY g.ord, i`,
  `INSERT INTO app.invoices (tenant_id, plan_id, issued_on, total)
     SELECT g.tenant_id, 1 + g.ord % 3, date '2025-12-01' + m * 30, (g.n_users * 1.5 + m)::numeric(12, 2)
     FROM gen_tenants g, generate_series(0, 11) m ORDER BY g.ord, m`,
  `INSERT INTO app."InvoiceLines" (invoice_id, "lineNo", description, amount)
     SELECT i.invoice_id, l, (ARRAY['Seats', 'Storage', 'Support'])[l], round(i.total / 3, 2)
     FROM app.invoices i, generate_series(1, 3) l`,
  // i % 10 = 0 and its neighbour give identical rows: a table without a key may hold duplicates.
  `INSERT INTO app.page_views (tenant_id, path, viewed_at)
     SELECT g.tenant_id, '/p/' || (i - i % 2 * (i % 10 = 1)::int),
            timestamptz '2026-04-01 00:00:00+00' + (i - i % 2 * (i % 10 = 1)::int) * interval '1 second'
     FROM gen_tenants g, generate_series(1, g.n_users * 5) i`,
];

/**
 * Creates database `name` next to `adminUrl` and fills it with the sample, unless it exists.
 * A failed generation drops the half-made database. Returns whether it was created.
 */
export async function ensureSampleDatabase(adminUrl: string, name: string, opts: SampleOptions): Promise<{ url: string; created: boolean }> {
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  const admin = await connect(adminUrl, 'tenantsafe-sample');
  try {
    // Parallel callers (test files, a demo and a bench) wait for each other here.
    await admin.query('SELECT pg_advisory_lock(hashtext($1))', [name]);
    const exists = await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
    if (exists.rowCount) return { url: url.toString(), created: false };
    await admin.query(`CREATE DATABASE ${quoteIdent(name)}`);
    const db = await connect(url.toString(), 'tenantsafe-sample');
    try {
      await generateSample(db, opts);
    } catch (err) {
      await db.end();
      await admin.query(`DROP DATABASE ${quoteIdent(name)}`);
      throw err;
    } finally {
      await db.end().catch(() => undefined);
    }
    return { url: url.toString(), created: true };
  } finally {
    await admin.end();
  }
}
