// The application endpoint: a PgBouncer that applications connect to instead of the primary.
// A failover or switchover moves it: its admin console holds the clients (PAUSE waits for running
// transactions, KILL drops the connections at once; either way new clients wait rather than fail),
// the [databases] file pgbouncer.ini %includes is rewritten to name the new primary (written
// beside it and renamed: PgBouncer never reads half a file), RELOAD makes PgBouncer read it, and
// RESUME lets the clients through. The admin console speaks only the simple query protocol:
// commands are sent as plain text, never with parameters.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Client } from 'pg';
import { redactUrl, type DrEndpointConfig } from '../config';
import { ErrorType, TenantsafeError } from '../errors';
import { connect, isConnectionLost, quoteIdent } from '../pg';

/** Where a PgBouncer database entry points: a PostgreSQL server and a database on it. */
export interface EndpointTarget {
  host: string;
  port: number;
  dbname: string;
}

/** Runs admin-console commands (PAUSE, KILL, RELOAD, RESUME, SHOW ...) on one connection. */
export async function withPgBouncerAdmin<T>(endpoint: DrEndpointConfig, fn: (run: (command: string) => Promise<Record<string, unknown>[]>) => Promise<T>): Promise<T> {
  let client: Client;
  try {
    client = await connect(endpoint.adminUrl, 'tenantsafe-dr', { pgbouncer: true });
  } catch (err) {
    throw new TenantsafeError(
      ErrorType.DatabaseUnreachable,
      `PgBouncer's admin console at ${redactUrl(endpoint.adminUrl)} is unreachable: ${(err as Error).message}`,
      'Check that PgBouncer runs and that dr.endpoint.adminUrl names a user listed in its admin_users.',
    );
  }
  try {
    return await fn(async (command) => (await client.query(command)).rows as Record<string, unknown>[]);
  } catch (err) {
    if (isConnectionLost(err)) throw err;
    throw new TenantsafeError(ErrorType.BadConfig, `PgBouncer refused a command: ${(err as Error).message}.`, 'Check that dr.endpoint.database is a database of PgBouncer and adminUrl a user in admin_users.');
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** An identifier as the admin console takes it (a database name in PAUSE, KILL, RESUME). */
function adminName(database: string): string {
  return /^[a-z_][a-z0-9_]*$/.test(database) ? database : quoteIdent(database);
}

/**
 * Fences the endpoint: every connection of the database dropped at once (KILL), new clients held
 * until resume(). Already held (a retry after a worker died): RESUME-less, so KILL again is harmless.
 */
export async function holdEndpoint(endpoint: DrEndpointConfig, mode: 'pause' | 'kill'): Promise<void> {
  await withPgBouncerAdmin(endpoint, async (run) => {
    try {
      await run(`${mode === 'pause' ? 'PAUSE' : 'KILL'} ${adminName(endpoint.database)}`);
    } catch (err) {
      // PgBouncer answers "already suspended/paused" to a second PAUSE: held is what we wanted
      if (!/already/i.test((err as Error).message)) throw err;
    }
  });
}

/** Lets the held clients through (to whatever the databases file names now). */
export async function resumeEndpoint(endpoint: DrEndpointConfig): Promise<void> {
  await withPgBouncerAdmin(endpoint, async (run) => {
    try {
      await run(`RESUME ${adminName(endpoint.database)}`);
    } catch (err) {
      if (!/not paused/i.test((err as Error).message)) throw err;
    }
  });
}

/**
 * Points the database at `target` in the databases file (other databases' lines kept) and makes
 * PgBouncer read it; clients that are held stay held. Returns the entry written.
 */
export async function pointEndpoint(endpoint: DrEndpointConfig, target: EndpointTarget): Promise<string> {
  const entry = `${endpoint.database} = host=${target.host} port=${target.port} dbname=${target.dbname}`;
  const file = endpoint.databasesFile;
  let lines: string[] = [];
  try {
    lines = fs.readFileSync(file, 'utf8').split('\n');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  const ours = new RegExp(`^\\s*"?${endpoint.database.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}"?\\s*=`);
  const kept = lines.filter((l) => !ours.test(l) && l.trim() !== '' && l.trim() !== '[databases]');
  const text = ['[databases]', ...kept, entry, ''].join('\n');
  const temporary = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.tmp`);
  fs.writeFileSync(temporary, text, { mode: 0o644 });
  fs.renameSync(temporary, file);
  await withPgBouncerAdmin(endpoint, (run) => run('RELOAD'));
  return entry;
}

/** The server the databases file names for the database now; null when it names none. */
export function endpointTarget(endpoint: DrEndpointConfig): EndpointTarget | null {
  let text: string;
  try {
    text = fs.readFileSync(endpoint.databasesFile, 'utf8');
  } catch {
    return null;
  }
  for (const line of text.split('\n')) {
    const m = /^\s*"?([^"=\s]+)"?\s*=\s*(.*)$/.exec(line);
    if (!m || m[1] !== endpoint.database) continue;
    const fields = Object.fromEntries([...m[2].matchAll(/(\w+)=(\S+)/g)].map((f) => [f[1], f[2]]));
    return { host: fields.host ?? '127.0.0.1', port: Number(fields.port ?? 5432), dbname: fields.dbname ?? endpoint.database };
  }
  return null;
}
