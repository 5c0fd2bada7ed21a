// Small Postgres helpers shared by the engine: connections with clear errors, quoting and the
// SQL text built from quoted names, and the session settings that make COPY text output byte-for-byte reproducible.
import { userInfo } from 'node:os';
import { Client, Pool, type ClientConfig, type PoolClient } from 'pg';
import { redactUrl } from './config';
import { ErrorType, TenantsafeError } from './errors';

/** Quotes an identifier the way Postgres' quote_ident does (always, to keep mixed case). */
export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/** schema.table, both quoted. */
export function qualified(schema: string, table: string): string {
  return `${quoteIdent(schema)}.${quoteIdent(table)}`;
}

/** alias.a, alias.b, ...: a list of columns of one FROM item. */
export function columnList(alias: string, names: readonly string[]): string {
  return names.map((n) => `${alias}.${quoteIdent(n)}`).join(', ');
}

/** a.x = b.y AND ...: rows of two FROM items matched column by column, left[i] with right[i]. */
export function joinOn(a: string, b: string, left: readonly string[], right: readonly string[] = left): string {
  return left.map((n, i) => `${a}.${quoteIdent(n)} = ${b}.${quoteIdent(right[i])}`).join(' AND ');
}

/** alias.a IS NOT NULL AND ...: a foreign key checks a row's reference only then (MATCH SIMPLE). */
export function allNotNull(alias: string, names: readonly string[]): string {
  return names.map((n) => `${alias}.${quoteIdent(n)} IS NOT NULL`).join(' AND ');
}

/**
 * A timestamptz expression as ISO-8601 text in UTC with its microseconds, e.g.
 * 2026-11-25T05:30:00.123456Z: a JavaScript Date would drop them, and a time printed without them
 * and given back as a target could fall before the commit it names.
 */
export function microsText(expr: string): string {
  return `to_char((${expr}) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`;
}

/** A SQL string literal (standard_conforming_strings on, which is the default since 9.1). */
export function quoteLiteral(value: string): string {
  if (value.includes('\0')) throw new TenantsafeError(ErrorType.BadInput, 'Value contains a NUL byte.', 'Remove it.');
  return `'${value.replace(/'/g, "''")}'`;
}

/**
 * Settings that fix the text form of values, so that a row's COPY text (and so its checksum)
 * is the same whichever session, server or client settings produced it.
 */
export const reproducibleSessionSettings: Record<string, string> = {
  DateStyle: 'ISO, MDY',
  IntervalStyle: 'postgres',
  TimeZone: 'UTC',
  extra_float_digits: '1',
  bytea_output: 'hex',
  client_encoding: 'UTF8',
  standard_conforming_strings: 'on',
};

// JIT compilation pays off on long analytic queries run many times; our one-shot bulk statements
// (a diff, a tenant scan through nested EXISTS) spent more compiling than it saved (bench/README.md).
// row_security off: a table whose row-level security policies apply to the role raises an error
// instead of showing only the rows they allow, so no backup (or diff) silently misses rows
// (privilegeError names the table and the fix).
const sessionOptions = Object.entries({ ...reproducibleSessionSettings, jit: 'off', row_security: 'off' })
  .map(([k, v]) => `-c ${k}=${v.replace(/ /g, "\\ ")}`)
  .join(' ');

export function clientConfig(url: string, applicationName = 'tenantsafe'): ClientConfig {
  return { connectionString: url, application_name: applicationName, options: sessionOptions, connectionTimeoutMillis: 10_000 };
}

/**
 * A connection that went away under a query or between two: the server restarted, crashed or
 * failed over (57P01-57P03, and every SQLSTATE of class 08), the network cut it, or pg gave up
 * on the client after one of those.
 */
export function isConnectionLost(err: unknown): boolean {
  const e = err as { code?: unknown; message?: unknown } | null;
  const code = typeof e?.code === 'string' ? e.code : '';
  const message = typeof e?.message === 'string' ? e.message : '';
  return ['ECONNRESET', 'EPIPE', '57P01', '57P02', '57P03'].includes(code) || /^08[0-9A-Z]{3}$/.test(code) || /^Connection terminated|is not queryable/.test(message);
}

/**
 * Turns a connection failure (at connect, or lost on the way) into an error that says which
 * database and what to check; other errors are returned as they are.
 */
export function connectionError(url: string | undefined, err: unknown): Error {
  const e = err as NodeJS.ErrnoException & { code?: string };
  const where = url ? `Database ${redactUrl(url)}` : 'The database';
  if (['ECONNREFUSED', 'ENOTFOUND', 'EHOSTUNREACH', 'ETIMEDOUT', '57P03'].includes(e.code ?? '') || /timeout/i.test(e.message)) {
    return new TenantsafeError(
      ErrorType.DatabaseUnreachable,
      `${where} is unreachable: ${e.code ?? ''} ${e.message}.`.replace(/\s+/g, ' '),
      'Check that PostgreSQL is running and that database.url in the config points at it.',
    );
  }
  if (isConnectionLost(err)) {
    return new TenantsafeError(
      ErrorType.DatabaseUnreachable,
      `${where} closed the connection: ${e.code ? `${e.code} ` : ''}${e.message} (a restart, a failover or a network cut; what the step had not committed was rolled back).`,
      'The step is retried by itself; if it keeps failing, check that PostgreSQL is up and accepts connections.',
    );
  }
  if (e.code === '3D000' || e.code === '28P01' || e.code === '28000') {
    return new TenantsafeError(
      ErrorType.BadConfig,
      `Cannot connect to ${url ? redactUrl(url) : 'the database'}: ${e.message}.`,
      'Check the database name, user and password in database.url.',
    );
  }
  return err as Error;
}

/** The role a connection string logs in as (libpq's default, the OS user, where it names none). */
export function databaseRole(url: string): string {
  try {
    return decodeURIComponent(new URL(url).username) || userInfo().username;
  } catch {
    return '<role>';
  }
}

/**
 * A privilege the database role lacks (SQLSTATE 42501, or a role attribute pg_basebackup and
 * friends ask for) as InsufficientPrivilege, naming what is missing and the grant that gives it;
 * other errors are returned as they are. `role`: the role, where the caller knows it.
 */
export function privilegeError(err: unknown, role = '<role>'): Error {
  const e = err as { code?: string; message?: string } | null;
  const message = typeof e?.message === 'string' ? e.message : '';
  if (err instanceof TenantsafeError || (e?.code !== '42501' && !/must be superuser or (have|replication)|permission denied to start WAL sender|must be superuser/i.test(message))) return err as Error;
  const rls = /row-level security policy for table "([^"]+)"/.exec(message);
  const object = /permission denied for (table|sequence|schema|database|function|parameter) (\S+)/.exec(message);
  const hint = rls
    ? `Row-level security applies to this role on "${rls[1]}": it would see only the rows the policies allow, and a backup or restore would silently miss the others. Give the role that reads tenant rows (the backup and the restore role) BYPASSRLS: ALTER ROLE ${role} BYPASSRLS (README, Privileges).`
    : object?.[1] === 'table'
      ? `GRANT SELECT (backups; restores also INSERT, UPDATE, DELETE) ON ${object[2]} TO ${role} (README, Privileges).`
      : object?.[1] === 'sequence'
        ? `GRANT SELECT, UPDATE ON SEQUENCE ${object[2]} TO ${role}: a restore moves sequences past restored ids (README, Privileges).`
        : object?.[1] === 'schema'
          ? `GRANT USAGE ON SCHEMA ${object[2]} TO ${role} (README, Privileges).`
          : object?.[1] === 'database'
            ? `GRANT CREATE ON DATABASE ${object[2]} TO ${role}: restores stage in scratch schemas (README, Privileges).`
            : /replication|WAL sender/i.test(message)
              ? `Full backups and the WAL archive need ALTER ROLE ${role} REPLICATION and a pg_hba.conf line for replication connections (README, Privileges).`
              : `See README, Privileges, for what each feature needs; \`tenantsafe doctor\` probes it.`;
  return new TenantsafeError(ErrorType.InsufficientPrivilege, `The database role ${role === '<role>' ? '' : `"${role}" `}lacks a privilege: ${message.replace(/\.$/, '')}.`, hint);
}

/**
 * pg emits 'error' on a client whose connection drops, besides failing the query it runs, and
 * an emitter with no listener throws it: a restart would take the whole process down. The
 * query's own failure (or the next one's: the client is no longer queryable) fails the step.
 */
function survivesDrops<T extends Client | PoolClient>(client: T): T {
  client.on('error', () => undefined);
  return client;
}

/**
 * `replication: 'database'`: a walsender connection, for logical replication commands.
 * `pgbouncer`: through PgBouncer (its admin console or a pooled database), which refuses the
 * `options` startup parameter: no session settings, and only simple-protocol queries (no parameters).
 */
export async function connect(url: string, applicationName?: string, opts: { replication?: 'database'; pgbouncer?: boolean; timeoutMs?: number } = {}): Promise<Client> {
  const { pgbouncer, timeoutMs, ...rest } = opts;
  const config = { ...clientConfig(url, applicationName), ...rest, ...(timeoutMs ? { connectionTimeoutMillis: timeoutMs } : {}) };
  if (pgbouncer) delete config.options;
  const client = survivesDrops(new Client(config));
  try {
    await client.connect();
  } catch (err) {
    throw connectionError(url, err);
  }
  return client;
}

/** A pool whose clients, idle or checked out, survive a dropped connection (see survivesDrops). */
export function createPool(url: string, max = 4, applicationName?: string): Pool {
  const pool = new Pool({ ...clientConfig(url, applicationName), max });
  pool.on('error', () => undefined); // an idle client's: the pool has removed it already
  pool.on('connect', (client) => survivesDrops(client));
  return pool;
}

/** Runs fn on a client from the pool, translating connection failures. */
export async function withClient<T>(pool: Pool, url: string, fn: (c: import('pg').PoolClient) => Promise<T>): Promise<T> {
  let client: import('pg').PoolClient;
  try {
    client = await pool.connect();
  } catch (err) {
    throw connectionError(url, err);
  }
  try {
    return await fn(client);
  } finally {
    client.release();
  }
}

/**
 * How a PostgreSQL command-line tool (pg_basebackup, pg_receivewal, pg_dump) connects to `url`:
 * the connection string without the password (it would show in `ps`), which goes in PGPASSWORD.
 */
export function toolConnection(url: string, applicationName: string): { conninfo: string; env: Record<string, string> } {
  const u = new URL(url);
  const password = decodeURIComponent(u.password);
  u.password = '';
  u.searchParams.set('application_name', applicationName);
  return { conninfo: u.toString(), env: password ? { PGPASSWORD: password } : {} };
}

/** Runs fn inside BEGIN … COMMIT on `c`, rolled back when it throws. */
export async function inTransaction<T>(c: Pick<Client, 'query'>, fn: () => Promise<T>): Promise<T> {
  await c.query('BEGIN');
  try {
    const out = await fn();
    await c.query('COMMIT');
    return out;
  } catch (err) {
    await c.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}

/** Runs fn on a connection of its own, closed afterwards. */
export async function withConnection<T>(url: string, fn: (c: Client) => Promise<T>): Promise<T> {
  const c = await connect(url);
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

/**
 * Passes an abort on to the server. Ending a connection is not enough: a backend reads its
 * client's goodbye only between statements, so one waiting on a lock or running a long
 * statement would go on, holding its locks (a cancelled restore's apply blocking the drop of its
 * scratch schema, say). On abort each backend's statement is cancelled (`pg_cancel_backend`,
 * over a connection of its own) and each connection ended. `clients` is read at the abort, so
 * connections opened later count. Returns what stops listening.
 */
export function cancelOnAbort(url: string, clients: () => Client[], signal: AbortSignal | undefined): () => void {
  if (!signal) return () => undefined;
  const abort = () => {
    const open = clients();
    const pids = open.map((c) => (c as Client & { processID?: number }).processID).filter((pid): pid is number => typeof pid === 'number');
    open.forEach((c) => void c.end().catch(() => undefined));
    if (pids.length > 0) void withConnection(url, (c) => c.query('SELECT pg_cancel_backend(pid) FROM unnest($1::int[]) AS pid', [pids])).catch(() => undefined);
  };
  if (signal.aborted) abort();
  else signal.addEventListener('abort', abort, { once: true });
  return () => signal.removeEventListener('abort', abort);
}

/**
 * Works through `items` over up to `lanes` connections of their own, largest first (so a big
 * table does not start last and run alone). `setup` runs once per connection; aborting the
 * signal cancels their statements and ends them (cancelOnAbort).
 */
export async function inLanes<T>(
  url: string,
  applicationName: string,
  items: T[],
  opts: { lanes: number; size: (item: T) => number; setup?: (c: Client) => Promise<unknown>; finish?: (c: Client) => Promise<unknown>; signal?: AbortSignal },
  work: (c: Client, item: T) => Promise<void>,
): Promise<void> {
  const queue = [...items].sort((a, b) => opts.size(b) - opts.size(a));
  await Promise.all(
    Array.from({ length: Math.min(Math.max(1, opts.lanes), queue.length) }, async () => {
      const c = await connect(url, applicationName);
      const stopListening = cancelOnAbort(url, () => [c], opts.signal);
      try {
        await opts.setup?.(c);
        for (let item = queue.shift(); item; item = queue.shift()) await work(c, item);
        await opts.finish?.(c);
      } finally {
        stopListening();
        await c.end().catch(() => undefined);
      }
    }),
  );
}
