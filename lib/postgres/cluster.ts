// Private PostgreSQL clusters (initdb + pg_ctl): the scratch clusters that verification and
// point-in-time restores recover into, the demo's database, and tests' stand-ins for a customer's
// cluster (WAL archiving, replicas, point-in-time recovery, a real crash). Each listens on
// 127.0.0.1:<port> with its own socket directory, logs to <dataDir>/log/.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ErrorType, TenantsafeError } from '../errors';
import { connect } from '../pg';
import { freePorts, logTail } from '../process';
import { asClusterOwner, asRoot, chownToPostgres, runPgTool } from './tools';

/** A process that exists and is not a zombie waiting to be reaped. */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    return !/^\d+ \(.*\) Z/s.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return true; // no /proc (macOS): kill(0) is all we have
  }
}

/** Our settings live in one file included from postgresql.conf, so they are easy to read back. */
const settingsFileName = 'tenantsafe.conf';
const includeLine = `include_if_exists = '${settingsFileName}'`;

function quoteSetting(value: string): string {
  return `'${value.replace(/\\/g, '\\\\').replace(/'/g, "''")}'`;
}

function readSettings(dataDir: string): Map<string, string> {
  const settings = new Map<string, string>();
  let text = '';
  try {
    text = fs.readFileSync(path.join(dataDir, settingsFileName), 'utf8');
  } catch {
    return settings;
  }
  for (const line of text.split('\n')) {
    const m = /^(\w+) = '((?:[^'\\]|''|\\.)*)'$/.exec(line);
    if (m) settings.set(m[1], m[2].replace(/''/g, "'").replace(/\\(.)/g, '$1'));
  }
  return settings;
}

/** Where the server puts its socket: private (never the system's /var/run/postgresql) and short (sun_path is 107 bytes). */
function socketDir(): string {
  const dir = path.join(os.tmpdir(), `tenantsafe-pg-${asRoot ? 'postgres' : os.userInfo().username}`);
  if (!fs.existsSync(dir)) {
    fs.mkdirSync(dir, { mode: 0o700 });
    chownToPostgres([dir]);
  }
  return dir;
}

export interface ClusterOptions {
  /** Created when missing; must be empty or already hold a cluster (which is reused). */
  dataDir: string;
  /** 0 picks a free port. */
  port: number;
  /** postgresql.conf settings, e.g. { wal_level: 'replica', archive_mode: 'on' }. */
  settings?: Record<string, string>;
  initdbArgs?: string[];
  /** Tests: stopped and deleted when this process exits. The demo cluster is not ephemeral. */
  ephemeral?: boolean;
}

export class PrivateCluster {
  private static readonly registry = new Set<PrivateCluster>();
  private static exitHookInstalled = false;

  /** The server log (pg_ctl -l). */
  readonly logFile: string;

  private constructor(
    readonly dataDir: string,
    readonly port: number,
    readonly ephemeral: boolean,
  ) {
    this.logFile = path.join(dataDir, 'log', 'server.log');
    PrivateCluster.registry.add(this);
    if (ephemeral) PrivateCluster.installExitHook();
  }

  /** initdb's a new cluster in `dataDir`, or reuses the one already there, and writes its settings. Does not start it. */
  static async create(opts: ClusterOptions): Promise<PrivateCluster> {
    const dataDir = path.resolve(opts.dataDir);
    const port = opts.port || (await freePorts('127.0.0.1', 1))[0];
    const reuse = fs.existsSync(path.join(dataDir, 'PG_VERSION'));
    if (reuse) {
      // e.g. a pg_basebackup or PITR restore made by root: postgres refuses a data dir it does not own.
      chownToPostgres([dataDir], true);
    } else {
      if (fs.existsSync(dataDir) && fs.readdirSync(dataDir).length > 0) {
        throw new TenantsafeError(
          ErrorType.BadInput,
          `${dataDir} is neither empty nor a PostgreSQL data directory.`,
          'Pass an empty or missing directory for a new cluster.',
        );
      }
      const firstCreated = fs.mkdirSync(dataDir, { recursive: true });
      fs.chmodSync(dataDir, 0o700); // postgres refuses a data directory others can read
      // The directories we just made (not the ones that were there) become postgres's.
      const made = firstCreated ? pathsFrom(firstCreated, dataDir) : [dataDir];
      chownToPostgres(made);
    }
    assertPostgresCanWrite(dataDir);
    if (!reuse) {
      const initdb = await runPgTool('initdb', ['-D', dataDir, '--auth=trust', '-U', 'postgres', '--encoding=UTF8', '--locale=C', ...(opts.initdbArgs ?? [])]);
      if (initdb.code !== 0) {
        throw new TenantsafeError(ErrorType.BadConfig, `initdb ${dataDir} failed:\n${initdb.output}`, 'Fix the cause above, then remove the directory and retry.');
      }
    }
    const cluster = new PrivateCluster(dataDir, port, opts.ephemeral ?? false);
    cluster.appendConfig({
      listen_addresses: '127.0.0.1',
      unix_socket_directories: socketDir(),
      ...opts.settings,
      port: String(port), // last: url() and attach() rely on it
    });
    return cluster;
  }

  /** A cluster made earlier by create() (e.g. the demo's var/pg), on the port it was given then. */
  static async attach(dataDir: string): Promise<PrivateCluster> {
    const dir = path.resolve(dataDir);
    const port = Number(readSettings(dir).get('port'));
    if (!fs.existsSync(path.join(dir, 'PG_VERSION')) || !port) {
      throw new TenantsafeError(ErrorType.BadInput, `${dir} holds no cluster made by PrivateCluster.create().`, 'Create it with PrivateCluster.create({dataDir, port}).');
    }
    return new PrivateCluster(dir, port, false);
  }

  /** Clusters of this process that were not removed. */
  static all(): PrivateCluster[] {
    return [...PrivateCluster.registry];
  }

  /** Removes every ephemeral cluster of this process (for an after() hook of tests). */
  static async removeAll(): Promise<void> {
    for (const c of PrivateCluster.all()) if (c.ephemeral) await c.remove();
  }

  private static installExitHook(): void {
    if (PrivateCluster.exitHookInstalled) return;
    PrivateCluster.exitHookInstalled = true;
    // 'exit' handlers must be synchronous: hence spawnSync and rmSync.
    process.once('exit', () => {
      for (const c of PrivateCluster.registry) {
        if (!c.ephemeral) continue;
        if (c.isRunning()) {
          const [cmd, argv] = asClusterOwner('pg_ctl', ['stop', '-D', c.dataDir, '-m', 'immediate', '-w']);
          spawnSync(cmd, argv, { cwd: '/', stdio: 'ignore', timeout: 30_000 });
        }
        fs.rmSync(c.dataDir, { recursive: true, force: true });
      }
    });
  }

  url(database = 'postgres'): string {
    return `postgres://postgres@127.0.0.1:${this.port}/${encodeURIComponent(database)}`;
  }

  /** Adds or replaces settings (in tenantsafe.conf); a running server needs a restart or reload for them. */
  appendConfig(settings: Record<string, string>): void {
    const merged = readSettings(this.dataDir);
    for (const [k, v] of Object.entries(settings)) {
      if (!/^\w+$/.test(k)) throw new TenantsafeError(ErrorType.BadInput, `Invalid PostgreSQL setting name ${JSON.stringify(k)}.`, 'Use a name from postgresql.conf.');
      merged.set(k, v);
    }
    const file = path.join(this.dataDir, settingsFileName);
    const lines = [...merged].map(([k, v]) => `${k} = ${quoteSetting(v)}`);
    fs.writeFileSync(file, `# Written by tenantsafe (lib/postgres/cluster.ts); one setting a line.\n${lines.join('\n')}\n`, { mode: 0o600 });
    chownToPostgres([file]);
    const mainConf = path.join(this.dataDir, 'postgresql.conf');
    if (!fs.readFileSync(mainConf, 'utf8').split('\n').includes(includeLine)) fs.appendFileSync(mainConf, `\n${includeLine}\n`);
  }

  /** The postmaster's pid from postmaster.pid, if that process is alive. */
  private postmasterPid(): number | undefined {
    let pid: number;
    try {
      pid = Number(fs.readFileSync(path.join(this.dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
    } catch {
      return undefined;
    }
    return pid > 0 && alive(pid) ? pid : undefined;
  }

  isRunning(): boolean {
    return this.postmasterPid() !== undefined;
  }

  /** Starts the server (running crash recovery if needed) and resolves once it accepts connections. */
  async start(): Promise<void> {
    if (this.isRunning()) return;
    const logDir = path.dirname(this.logFile);
    if (!fs.existsSync(logDir)) {
      fs.mkdirSync(logDir, { mode: 0o700 });
      chownToPostgres([logDir]);
    }
    socketDir(); // tmp cleaners may have removed it since create()
    const logStart = fs.existsSync(this.logFile) ? fs.statSync(this.logFile).size : 0;
    const result = await runPgTool('pg_ctl', ['start', '-D', this.dataDir, '-l', this.logFile, '-w', '-t', '120']);
    if (result.code !== 0) {
      throw new TenantsafeError(
        ErrorType.DatabaseUnreachable,
        `PostgreSQL in ${this.dataDir} did not start on port ${this.port}: ${result.output}${logTail(this.logFile, logStart)}`,
        'Read the server log above; "Address already in use" means another server holds the port.',
      );
    }
    // pg_ctl -w trusts postmaster.pid; a real connection proves TCP on our port works too.
    try {
      await this.psql('SELECT 1');
    } catch (err) {
      throw new TenantsafeError(
        ErrorType.DatabaseUnreachable,
        `PostgreSQL in ${this.dataDir} started but does not accept connections at ${this.url()}: ${(err as Error).message}${logTail(this.logFile, logStart)}`,
        'Check listen_addresses and port in the settings passed to PrivateCluster.create().',
      );
    }
  }

  /** pg_ctl stop: 'fast' is a clean shutdown with a checkpoint; 'immediate' skips it (recovery on next start). */
  async stop(mode: 'fast' | 'immediate' = 'fast'): Promise<void> {
    if (!this.isRunning()) return;
    const result = await runPgTool('pg_ctl', ['stop', '-D', this.dataDir, '-m', mode, '-w', '-t', '120']);
    if (result.code !== 0) {
      throw new TenantsafeError(ErrorType.DatabaseUnreachable, `pg_ctl stop ${this.dataDir} failed: ${result.output}${logTail(this.logFile)}`, 'Read the server log above.');
    }
  }

  /**
   * A real crash: SIGKILL to the postmaster and its backends at once, no checkpoint, no
   * shutdown record. Resolves once they are gone, so that start() runs crash recovery instead
   * of refusing because a dying backend still holds the old shared memory.
   */
  async crash(): Promise<void> {
    const pid = this.postmasterPid();
    if (pid === undefined) throw new TenantsafeError(ErrorType.BadInput, `PostgreSQL in ${this.dataDir} is not running.`, 'start() it before crash().');
    // The postmaster is frozen first: backends that see it die exit cleanly, rolling back (which
    // a crash does not), and it must not start crash handling of its own before the rest is gone.
    const signal = (p: number, sig: NodeJS.Signals) => {
      try {
        process.kill(p, sig);
      } catch {
        // exited by itself meanwhile
      }
    };
    signal(pid, 'SIGSTOP');
    const group = [pid, ...childPids(pid)];
    for (const p of group.slice(1)) signal(p, 'SIGKILL');
    signal(pid, 'SIGKILL');
    const deadline = Date.now() + 30_000;
    while (group.some(alive)) {
      if (Date.now() > deadline) {
        throw new TenantsafeError(ErrorType.DatabaseUnreachable, `Processes ${group.filter(alive).join(', ')} of ${this.dataDir} survived SIGKILL.`, 'Look at them with ps; they may be stuck in the kernel (I/O).');
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    // The killed postmaster stays a zombie until init reaps it (lazily, in some containers), and
    // postgres's lock checks (kill(pid, 0)) take a zombie for a live postmaster. After a real
    // crash the lock files name no live process; recovery depends on pg_control, not on them.
    const sockets = (readSettings(this.dataDir).get('unix_socket_directories') ?? '').split(',').map((d) => d.trim()).filter(Boolean);
    const lockFiles = [path.join(this.dataDir, 'postmaster.pid'), ...sockets.flatMap((d) => [`${d}/.s.PGSQL.${this.port}`, `${d}/.s.PGSQL.${this.port}.lock`])];
    for (const f of lockFiles) fs.rmSync(f, { force: true });
  }

  /** Query helper for tests and the demo: the rows of the last statement. */
  async psql<T = Record<string, unknown>>(sql: string, database = 'postgres'): Promise<T[]> {
    const client = await connect(this.url(database), 'tenantsafe-cluster');
    try {
      const result = (await client.query(sql)) as unknown as { rows: T[] } | { rows: T[] }[];
      return Array.isArray(result) ? (result[result.length - 1]?.rows ?? []) : result.rows;
    } finally {
      await client.end();
    }
  }

  /** Stops (immediately: the data is going anyway) and deletes the data directory. */
  async remove(): Promise<void> {
    await this.stop('immediate');
    fs.rmSync(this.dataDir, { recursive: true, force: true });
    PrivateCluster.registry.delete(this);
  }
}

/** from, its subdirectories down to `to` (inclusive), for a path `to` inside `from`. */
function pathsFrom(from: string, to: string): string[] {
  const out = [to];
  for (let dir = to; dir !== from && path.dirname(dir) !== dir; ) {
    dir = path.dirname(dir);
    out.unshift(dir);
  }
  return out;
}

/** The postgres user must reach the directory through every parent: say which one blocks it. */
function assertPostgresCanWrite(dataDir: string): void {
  if (!asRoot) return;
  const r = spawnSync('runuser', ['-u', 'postgres', '--', 'test', '-w', dataDir, '-a', '-x', dataDir], { cwd: '/' });
  if (r.status === 0) return;
  throw new TenantsafeError(
    ErrorType.BadConfig,
    `The postgres OS user cannot write to ${dataDir}.`,
    `Give the parent directories search permission (chmod o+x) or put the cluster elsewhere (e.g. under ${os.tmpdir()}).`,
  );
}

/** Direct children of pid (backends, checkpointer, ...), from /proc; empty where there is none. */
function childPids(pid: number): number[] {
  let entries: string[];
  try {
    entries = fs.readdirSync('/proc').filter((e) => /^\d+$/.test(e));
  } catch {
    return [];
  }
  const children: number[] = [];
  for (const e of entries) {
    try {
      const stat = fs.readFileSync(`/proc/${e}/stat`, 'utf8');
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === pid) children.push(Number(e));
    } catch {
      // exited meanwhile
    }
  }
  return children;
}
