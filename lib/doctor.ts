// Preflight checks of a deployment, probed rather than assumed: the database and what its role may
// do for the features the config turns on, the server settings they need, PostgreSQL's programs,
// storage written and read back, scratch disk, the clock. Temporal and the workers are checked by
// the client (client/doctor.ts), which adds its lines to these. Each line says what to do when it
// is not ok; the verdict is the worst line, as `check` gives it.
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import type { Engine } from './engine';
import { connect, qualified } from './pg';
import { pgBin } from './postgres/tools';
import { discoverTenancy } from './tenancy';

export type DoctorStatus = 'ok' | 'warning' | 'critical';

export interface DoctorLine {
  check: string;
  status: DoctorStatus;
  detail: string;
  hint?: string;
}

interface ServerFacts {
  user: string;
  superuser: boolean;
  replication: boolean;
  versionNum: number;
  version: string;
  walLevel: string;
  maxWalSenders: number;
  maxReplicationSlots: number;
  maxSlotWalKeepSize: string;
  canCreate: boolean;
  canSetReplicationRole: boolean;
  canRestorePoint: boolean;
  databaseBytes: number;
  skewMs: number;
}

const ok = (check: string, detail: string): DoctorLine => ({ check, status: 'ok', detail });
const problem = (check: string, status: Exclude<DoctorStatus, 'ok'>, detail: string, hint: string): DoctorLine => ({ check, status, detail, hint });

/** A failed check from an error: its message, and its own HINT when it has one, else `hint`. */
export function failedLine(check: string, err: unknown, hint: string, status: Exclude<DoctorStatus, 'ok'> = 'critical'): DoctorLine {
  const [detail, own] = (err instanceof Error ? err.message : String(err)).split(/\s*HINT:\s*/);
  return { check, status, detail: detail.trim(), hint: own?.trim() || hint };
}

/** Every engine-side check, in the order a person would fix them. */
export async function engineChecks(engine: Engine): Promise<DoctorLine[]> {
  const { config } = engine;
  const lines: DoctorLine[] = [ok('config', `${config.source} is valid`)];
  let facts: ServerFacts;
  let owned: string[];
  const c = await connect(config.database.url, 'tenantsafe-doctor').catch((err: Error) => err);
  if (c instanceof Error) {
    return [...lines, failedLine('database', c, 'Check database.url (host, port, user, password) and that the server accepts this host in pg_hba.conf.'), ...(await storageChecks(engine))];
  }
  try {
    const sent = Date.now();
    const r = await c.query(`
      SELECT current_user AS user, r.rolsuper AS superuser, r.rolreplication AS replication, current_setting('server_version_num')::int AS version_num,
             current_setting('server_version') AS version, current_setting('wal_level') AS wal_level,
             current_setting('max_wal_senders')::int AS max_wal_senders, current_setting('max_replication_slots')::int AS max_replication_slots,
             current_setting('max_slot_wal_keep_size') AS max_slot_wal_keep_size,
             has_database_privilege(current_database(), 'CREATE') AS can_create,
             r.rolsuper OR has_parameter_privilege('session_replication_role', 'SET') AS can_set_replication_role,
             has_function_privilege('pg_create_restore_point(text)', 'EXECUTE') AS can_restore_point,
             pg_database_size(current_database())::float8 AS database_bytes,
             extract(epoch FROM clock_timestamp()) * 1000 AS server_ms
        FROM pg_roles r WHERE r.rolname = current_user`);
    const row = r.rows[0];
    const received = Date.now();
    facts = {
      user: row.user,
      superuser: row.superuser,
      replication: row.superuser || row.replication,
      versionNum: row.version_num,
      version: row.version,
      walLevel: row.wal_level,
      maxWalSenders: row.max_wal_senders,
      maxReplicationSlots: row.max_replication_slots,
      maxSlotWalKeepSize: row.max_slot_wal_keep_size,
      canCreate: row.can_create,
      canSetReplicationRole: row.can_set_replication_role,
      canRestorePoint: row.can_restore_point,
      databaseBytes: row.database_bytes,
      skewMs: Number(row.server_ms) - (sent + received) / 2,
    };
    lines.push(ok('database', `PostgreSQL ${facts.version} as ${facts.user}${facts.superuser ? ' (superuser)' : ''}`));
    const plan = await discoverTenancy(c, config.tenancy);
    owned = plan.tables.map((t) => qualified(t.schema, t.name));
    const privileges = owned.length
      ? (
          await c.query<{ table: string; sel: boolean; ins: boolean; upd: boolean; del: boolean; rls: boolean }>(
            // rls: row-level security would apply to this role (no BYPASSRLS; not the owner, or FORCE)
            `SELECT t AS table, has_table_privilege(t, 'SELECT') AS sel, has_table_privilege(t, 'INSERT') AS ins,
                    has_table_privilege(t, 'UPDATE') AS upd, has_table_privilege(t, 'DELETE') AS del,
                    r.relrowsecurity AND NOT (u.rolsuper OR u.rolbypassrls) AND (r.relforcerowsecurity OR NOT pg_has_role(r.relowner, 'USAGE')) AS rls
               FROM unnest($1::text[]) t JOIN pg_class r ON r.oid = t::regclass JOIN pg_roles u ON u.rolname = current_user`,
            [owned],
          )
        ).rows
      : [];
    lines.push(...privilegeLines(facts, privileges, owned.length));
  } catch (err) {
    return [...lines, failedLine('database', err, 'Check database.url and tenancy.schemas; the role must read pg_catalog.'), ...(await storageChecks(engine))];
  } finally {
    await c.end().catch(() => undefined);
  }
  lines.push(
    Math.abs(facts.skewMs) > 2_000
      ? problem('clock', 'warning', `this host's clock and the database's differ by ${(facts.skewMs / 1000).toFixed(1)} s`, 'Run NTP (chrony, systemd-timesyncd) on both: times in backups, restore windows and RPO figures compare them.')
      : ok('clock', `within ${Math.max(1, Math.round(Math.abs(facts.skewMs)))} ms of the database's`),
  );
  lines.push(...serverSettingLines(engine, facts), ...toolLines(facts), ...(await storageChecks(engine)), scratchLine(engine, facts));
  return lines;
}

function privilegeLines(facts: ServerFacts, privileges: { table: string; sel: boolean; ins: boolean; upd: boolean; del: boolean; rls: boolean }[], tables: number): DoctorLine[] {
  const grant = (what: string) => `GRANT ${what} ON ALL TABLES IN SCHEMA <schema> TO ${facts.user}; (docs: README, Privileges)`;
  const lacking = (pick: (p: (typeof privileges)[number]) => boolean) => privileges.filter((p) => !pick(p)).map((p) => p.table);
  const unreadable = lacking((p) => p.sel);
  const unwritable = lacking((p) => p.ins && p.upd && p.del);
  const hidden = privileges.filter((p) => p.rls).map((p) => p.table);
  const few = (xs: string[]) => `${xs.slice(0, 5).join(', ')}${xs.length > 5 ? ` and ${xs.length - 5} more` : ''}`;
  return [
    tables === 0
      ? problem('tenancy', 'critical', 'no tenant-owned table found', 'Check tenancy.schemas, tenancy.tenantTable and tenancy.tenantColumn (`tenantsafe tenancy show`).')
      : ok('tenancy', `${tables} tenant-owned tables`),
    unreadable.length ? problem('privileges: backup', 'critical', `${facts.user} cannot SELECT ${few(unreadable)}`, grant('SELECT')) : ok('privileges: backup', 'SELECT on every tenant-owned table'),
    hidden.length
      ? problem('privileges: row-level security', 'critical', `row-level security applies to ${facts.user} on ${few(hidden)}: backups and restores of the tenant fail there (they never read only the rows the policies allow)`, `ALTER ROLE ${facts.user} BYPASSRLS; (the backup and the restore role; README, Privileges)`)
      : ok('privileges: row-level security', 'no tenant-owned table hides rows from this role'),
    unwritable.length
      ? problem('privileges: restore', 'warning', `${facts.user} cannot INSERT, UPDATE and DELETE ${few(unwritable)}: tenant restores will fail (fine for a backup-only role)`, grant('INSERT, UPDATE, DELETE'))
      : !facts.canCreate
        ? problem('privileges: restore', 'warning', `${facts.user} may not CREATE schemas in the database: restores stage in scratch schemas and will fail`, `GRANT CREATE ON DATABASE <database> TO ${facts.user};`)
        : ok('privileges: restore', 'INSERT, UPDATE, DELETE on every tenant-owned table; CREATE for scratch schemas'),
    facts.canSetReplicationRole
      ? ok('privileges: fast apply', 'may SET session_replication_role')
      : problem('privileges: fast apply', 'warning', `${facts.user} may not SET session_replication_role: restores check foreign keys row by row (slower) and fire the tables' triggers`, `GRANT SET ON PARAMETER session_replication_role TO ${facts.user};`),
  ];
}

function serverSettingLines(engine: Engine, facts: ServerFacts): DoctorLine[] {
  const { config } = engine;
  const lines: DoctorLine[] = [];
  const physical = config.fullBackup.provider === 'postgres';
  const needsReplication = physical || config.changeLog.enabled;
  if (needsReplication) {
    lines.push(
      facts.replication
        ? ok('privileges: replication', `${facts.user} has REPLICATION`)
        : problem('privileges: replication', 'critical', `${facts.user} lacks REPLICATION: base backups, the WAL archive${config.changeLog.enabled ? ' and the change log' : ''} need it`, `ALTER ROLE ${facts.user} REPLICATION; and a pg_hba.conf line for replication connections from the workers.`),
    );
    const neededLevel = config.changeLog.enabled ? 'logical' : 'replica';
    const levelOk = facts.walLevel === 'logical' || facts.walLevel === neededLevel;
    lines.push(
      levelOk
        ? ok('wal_level', facts.walLevel)
        : problem('wal_level', 'critical', `wal_level is ${facts.walLevel}; ${config.changeLog.enabled ? 'the change log needs logical' : 'base backups and the WAL archive need replica'}`, `ALTER SYSTEM SET wal_level = ${neededLevel}; then restart PostgreSQL.`),
    );
    const slots = (physical ? 1 : 0) + (config.changeLog.enabled ? 1 : 0) + (config.dr.standby ? 1 : 0);
    const senders = slots + 1; // pg_basebackup's own connection beside the streaming ones
    lines.push(
      facts.maxWalSenders >= senders && facts.maxReplicationSlots >= slots
        ? ok('replication slots', `max_wal_senders ${facts.maxWalSenders}, max_replication_slots ${facts.maxReplicationSlots}`)
        : problem('replication slots', 'critical', `max_wal_senders ${facts.maxWalSenders}, max_replication_slots ${facts.maxReplicationSlots}; the features configured need at least ${senders} and ${slots}`, `ALTER SYSTEM SET max_wal_senders = ${senders + 2}; ALTER SYSTEM SET max_replication_slots = ${slots + 2}; then restart PostgreSQL.`),
    );
    lines.push(
      facts.maxSlotWalKeepSize === '-1'
        ? problem('max_slot_wal_keep_size', 'warning', 'unlimited: a stopped archiver or change log keeps WAL until the disk is full', "ALTER SYSTEM SET max_slot_wal_keep_size = '50GB'; SELECT pg_reload_conf(); (a size the disk can hold for the longest outage you ride out)")
        : ok('max_slot_wal_keep_size', facts.maxSlotWalKeepSize),
    );
  }
  if (physical) {
    lines.push(
      facts.canRestorePoint
        ? ok('privileges: restore points', 'may run pg_create_restore_point')
        : problem('privileges: restore points', 'warning', `${facts.user} may not run pg_create_restore_point: \`tenantsafe pitr mark\` will fail`, `GRANT EXECUTE ON FUNCTION pg_create_restore_point(text) TO ${facts.user};`),
    );
  }
  return lines;
}

/** The programs workers run: found, and of the server's major version or newer. */
function toolLines(facts: ServerFacts): DoctorLine[] {
  const serverMajor = Math.floor(facts.versionNum / 10_000);
  const tools = ['pg_basebackup', 'pg_receivewal', 'pg_dump', 'pg_restore', 'initdb', 'pg_ctl', 'pg_waldump', 'pg_verifybackup'];
  const problems: string[] = [];
  let major = 0;
  for (const tool of tools) {
    try {
      const out = spawnSync(pgBin(tool), ['--version'], { encoding: 'utf8' }).stdout ?? '';
      major = Number(/(\d+)(\.\d+)?/.exec(out)?.[1] ?? 0);
      if (major < serverMajor) problems.push(`${tool} is ${major}, older than the server's ${serverMajor}`);
    } catch {
      problems.push(`${tool} is missing`);
    }
  }
  return [
    problems.length
      ? problem('postgres tools', 'critical', problems.join('; '), `Install the PostgreSQL ${serverMajor} client and server packages (Debian: postgresql-${serverMajor}) on every worker host, or set PG_BIN_DIR to their bin directory.`)
      : ok('postgres tools', `${tools.length} programs of PostgreSQL ${major} in ${pgBin('pg_ctl').replace(/\/pg_ctl$/, '')}`),
  ];
}

/** Storage written, read back and deleted: what every backup does first. */
async function storageChecks(engine: Engine): Promise<DoctorLine[]> {
  const store = engine.store;
  const key = `doctor/${os.hostname()}-${process.pid}-${randomBytes(4).toString('hex')}.txt`;
  const body = Buffer.from(`tenantsafe doctor ${new Date().toISOString()}\n`);
  try {
    await store.put(key, body);
    const back = await store.getBytes(key);
    await store.delete(key);
    if (!back.equals(body)) return [problem('storage', 'critical', `${store.uri}: an object read back differs from what was written`, 'Check the storage (a proxy or a broken disk).')];
    return [ok('storage', `${store.uri} written, read back and deleted`)];
  } catch (err) {
    return [failedLine('storage', err, 'Check storage.primary: the path exists and this user may write it, or the bucket exists and the credentials may write it.')];
  }
}

/** Verification and PITR clones recover whole clusters under scratchDir. */
function scratchLine(engine: Engine, facts: ServerFacts): DoctorLine {
  const dir = engine.config.verification.scratchDir;
  try {
    fs.accessSync(dir, fs.constants.W_OK);
    const st = fs.statfsSync(dir);
    const free = st.bavail * st.bsize;
    const gib = (n: number) => `${(n / 2 ** 30).toFixed(1)} GiB`;
    return free < facts.databaseBytes * 1.2
      ? problem('scratch disk', 'warning', `${dir} has ${gib(free)} free; a verification or a PITR clone needs about the database's ${gib(facts.databaseBytes)} and more`, 'Point verification.scratchDir at a larger file system.')
      : ok('scratch disk', `${dir}: ${gib(free)} free, the database is ${gib(facts.databaseBytes)}`);
  } catch (err) {
    return problem('scratch disk', 'warning', `${dir}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, 'Create verification.scratchDir, writable by the worker.');
  }
}

/** The worst status among the lines. */
export function verdict(lines: DoctorLine[]): DoctorStatus {
  return lines.some((l) => l.status === 'critical') ? 'critical' : lines.some((l) => l.status === 'warning') ? 'warning' : 'ok';
}
