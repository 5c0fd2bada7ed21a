// The project's Temporal dev server: temporal-dev.yaml, the CLI that runs it, and a launcher
// that returns only once the server answers with our namespace and search attributes.
// Plain Node on purpose: the server is driven through the `temporal` CLI, not the SDK.
import { execFile, execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { parse as parseYaml } from 'yaml';
import { projectRoot } from '../lib/config';
import { ErrorType, TenantsafeError } from '../lib/errors';
import { diesWithParent, freePorts, logTail, onPath } from '../lib/process';

const execFileAsync = promisify(execFile);

export const temporalDevConfigFile = path.join(projectRoot, 'temporal-dev.yaml');

export const searchAttributeTypes = ['Text', 'Keyword', 'Int', 'Double', 'Bool', 'Datetime', 'KeywordList'] as const;
export type SearchAttributeType = (typeof searchAttributeTypes)[number];
const logLevels = ['debug', 'info', 'warn', 'error', 'never'] as const;

export interface TemporalDevConfig {
  /** Address the frontend and the Web UI bind to. */
  ip: string;
  /** Frontend gRPC port; 0 picks a free port (as do 0 for the other ports). */
  port: number;
  /** false: --headless, no Web UI. */
  ui: boolean;
  uiPort: number;
  httpPort: number;
  metricsPort: number;
  namespace: string;
  /** Absolute path of the sqlite file; null keeps everything in memory (tests). */
  dbFilename: string | null;
  logLevel: (typeof logLevels)[number];
  searchAttributes: Record<string, SearchAttributeType>;
  /** Passed as --dynamic-config-value key=<JSON of the value>. */
  dynamicConfig: Record<string, unknown>;
}

const defaults: Omit<TemporalDevConfig, 'dbFilename'> = {
  ip: '127.0.0.1',
  port: 7233,
  ui: true,
  uiPort: 8233,
  httpPort: 0,
  metricsPort: 0,
  namespace: 'default',
  logLevel: 'warn',
  searchAttributes: {},
  dynamicConfig: {},
};

/**
 * Reads temporal-dev.yaml (or `file`), applies `overrides` on top (tests pass port 0 and
 * dbFilename null) and validates the result, naming every bad key.
 */
export function loadTemporalDevConfig(file = temporalDevConfigFile, overrides: Partial<TemporalDevConfig> = {}): TemporalDevConfig {
  let doc: unknown;
  try {
    doc = parseYaml(fs.readFileSync(file, 'utf8'));
  } catch (err) {
    throw new TenantsafeError(
      ErrorType.BadConfig,
      `Cannot load the Temporal dev server config ${file}: ${(err as Error).message.split('\n')[0]}`,
      'Restore temporal-dev.yaml from git or fix the YAML at the line shown.',
    );
  }
  if (doc !== null && (typeof doc !== 'object' || Array.isArray(doc))) {
    throw new TenantsafeError(ErrorType.BadConfig, `${file} must be a mapping of keys.`, 'See the keys in the temporal-dev.yaml of the repository.');
  }
  // An override of undefined means "not overridden"; null (dbFilename) is a real value.
  const given = Object.fromEntries(Object.entries(overrides).filter(([, v]) => v !== undefined));
  return validate({ ...(doc as Record<string, unknown> | null), ...given }, file);
}

function validate(raw: Record<string, unknown>, file: string): TemporalDevConfig {
  const problems: string[] = [];
  const bad = (key: string, what: string): void => {
    problems.push(`${key}: ${what} (got ${JSON.stringify(raw[key])})`);
  };
  const value = <K extends keyof typeof defaults>(key: K, ok: (v: unknown) => boolean, what: string): (typeof defaults)[K] => {
    if (raw[key] === undefined) return defaults[key];
    if (!ok(raw[key])) bad(key, what);
    return raw[key] as (typeof defaults)[K];
  };
  const isPort = (v: unknown): boolean => Number.isInteger(v) && (v as number) >= 0 && (v as number) <= 65535;
  const isMap = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

  const cfg: TemporalDevConfig = {
    ip: value('ip', (v) => typeof v === 'string' && /^[A-Za-z0-9.-]+$/.test(v), 'must be an IPv4 address or a host name'),
    port: value('port', isPort, 'must be a port number from 0 (pick a free one) to 65535'),
    ui: value('ui', (v) => typeof v === 'boolean', 'must be true or false'),
    uiPort: value('uiPort', isPort, 'must be a port number from 0 (pick a free one) to 65535'),
    httpPort: value('httpPort', isPort, 'must be a port number from 0 (pick a free one) to 65535'),
    metricsPort: value('metricsPort', isPort, 'must be a port number from 0 (pick a free one) to 65535'),
    namespace: value('namespace', (v) => typeof v === 'string' && /^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(v), 'must be a namespace name'),
    dbFilename: null,
    logLevel: value('logLevel', (v) => (logLevels as readonly unknown[]).includes(v), `must be one of ${logLevels.join(', ')}`),
    searchAttributes: value('searchAttributes', isMap, 'must be a mapping of name to type'),
    dynamicConfig: value('dynamicConfig', isMap, 'must be a mapping of key to value'),
  };

  if (raw.dbFilename !== undefined && raw.dbFilename !== null) {
    if (typeof raw.dbFilename === 'string' && raw.dbFilename.length > 0) cfg.dbFilename = path.resolve(projectRoot, raw.dbFilename);
    else bad('dbFilename', 'must be a file path relative to the project root, or null for in memory');
  }
  if (isMap(cfg.searchAttributes)) {
    for (const [name, type] of Object.entries(cfg.searchAttributes)) {
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) problems.push(`searchAttributes.${name}: must be an identifier`);
      if (!(searchAttributeTypes as readonly unknown[]).includes(type)) {
        problems.push(`searchAttributes.${name}: must be one of ${searchAttributeTypes.join(', ')} (got ${JSON.stringify(type)})`);
      }
    }
  }
  if (isMap(cfg.dynamicConfig)) {
    for (const [key, v] of Object.entries(cfg.dynamicConfig)) {
      if (!/^[A-Za-z][A-Za-z0-9_.]*$/.test(key)) problems.push(`dynamicConfig.${key}: must be a dotted identifier`);
      if (v === undefined) problems.push(`dynamicConfig.${key}: needs a value`);
    }
  }
  const ports = (['port', 'uiPort', 'httpPort', 'metricsPort'] as const).filter((k) => isPort(cfg[k]) && cfg[k] !== 0 && (k !== 'uiPort' || cfg.ui));
  for (const [i, k] of ports.entries()) {
    const clash = ports.slice(0, i).find((other) => cfg[other] === cfg[k]);
    if (clash) problems.push(`${k}: is the same port as ${clash} (${cfg[k]})`);
  }
  const known = new Set([...Object.keys(defaults), 'dbFilename']);
  for (const key of Object.keys(raw)) if (!known.has(key)) problems.push(`${key}: unknown key`);

  if (problems.length > 0) {
    throw new TenantsafeError(
      ErrorType.BadConfig,
      `Invalid Temporal dev server config (${file}):\n  - ${problems.join('\n  - ')}\n`,
      'Fix the keys listed above.',
    );
  }
  return cfg;
}

const verifiedClis = new Set<string>();

/** $TEMPORAL_CLI, else `temporal` on PATH, else the copy scripts/setup.sh installs in .venv/. */
export function temporalCliPath(): string {
  const fromEnv = process.env.TEMPORAL_CLI;
  const cli = fromEnv || onPath('temporal') || path.join(projectRoot, '.venv/bin/temporal');
  if (!verifiedClis.has(cli)) {
    try {
      execFileSync(cli, ['--version'], { stdio: 'pipe', timeout: 30_000 });
    } catch (err) {
      throw new TenantsafeError(
        ErrorType.BadConfig,
        `The Temporal CLI ${cli}${fromEnv ? ' (from TEMPORAL_CLI)' : ''} does not run: ${(err as Error).message.split('\n')[0]}.`,
        fromEnv ? 'Point TEMPORAL_CLI at a working `temporal` binary, or unset it.' : 'Run `bash scripts/setup.sh` to install it.',
      );
    }
    verifiedClis.add(cli);
  }
  return cli;
}

/** Whether something accepts TCP connections at host:port (so `tenantsafe dev` can reuse it). */
export function isTemporalListening(address: string, timeoutMs = 1000): Promise<boolean> {
  const i = address.lastIndexOf(':');
  const host = address.slice(0, i).replace(/^\[|\]$/g, '');
  const port = Number(address.slice(i + 1));
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    const done = (ok: boolean): void => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

export interface TemporalDevServer {
  /** host:port of the frontend, for clients and workers. */
  address: string;
  /** The Web UI; undefined when headless. */
  uiUrl: string | undefined;
  namespace: string;
  pid: number;
  logFile: string;
  /** SIGTERM, then SIGKILL after 15 s; resolves once the process is gone and its ports are free. */
  stop(): Promise<void>;
}

export interface StartOptions {
  /** Server stdout/stderr; default var/temporal/dev-<port>.log when detached, else a temp file deleted by stop(). */
  logFile?: string;
  /** Keep the server running after this process exits (`tenantsafe dev`); writes var/temporal/dev-<port>.pid. */
  detached?: boolean;
  /** How long to wait for the server to answer; default 60 s. */
  timeoutMs?: number;
}

/** Servers started without `detached`, killed when this process exits. */
const attached = new Set<number>();
let exitHookInstalled = false;

function killAttachedOnExit(pid: number): void {
  attached.add(pid);
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const p of attached) {
      try {
        process.kill(p, 'SIGTERM');
      } catch {
        // already gone
      }
    }
  });
}

/**
 * Starts `temporal server start-dev` from `cfg` and waits until the frontend reports SERVING,
 * the namespace lists every configured search attribute with its type, and the UI answers.
 */
export async function startTemporalDevServer(cfg: TemporalDevConfig, opts: StartOptions = {}): Promise<TemporalDevServer> {
  const cli = temporalCliPath();
  const picked = await freePorts(cfg.ip, 2);
  const port = cfg.port || picked[0];
  const uiPort = cfg.uiPort || picked[1];
  // ip 0.0.0.0 binds every interface; clients still need one concrete address.
  const clientHost = cfg.ip === '0.0.0.0' ? '127.0.0.1' : cfg.ip;
  const address = `${clientHost}:${port}`;
  const uiUrl = cfg.ui ? `http://${clientHost}:${uiPort}` : undefined;

  const args = ['server', 'start-dev', '--ip', cfg.ip, '--port', String(port), '--namespace', cfg.namespace, '--log-level', cfg.logLevel];
  args.push(...(cfg.ui ? ['--ui-port', String(uiPort), '--ui-disable-news-fetch'] : ['--headless']));
  // Left out when 0: start-dev then picks a free port itself.
  if (cfg.httpPort) args.push('--http-port', String(cfg.httpPort));
  if (cfg.metricsPort) args.push('--metrics-port', String(cfg.metricsPort));
  if (cfg.dbFilename) {
    fs.mkdirSync(path.dirname(cfg.dbFilename), { recursive: true });
    args.push('--db-filename', cfg.dbFilename);
  }
  for (const [name, type] of Object.entries(cfg.searchAttributes)) args.push('--search-attribute', `${name}=${type}`);
  for (const [key, v] of Object.entries(cfg.dynamicConfig)) args.push('--dynamic-config-value', `${key}=${JSON.stringify(v)}`);

  const varDir = path.join(projectRoot, 'var/temporal');
  const logFile = opts.logFile ?? (opts.detached ? path.join(varDir, `dev-${port}.log`) : path.join(os.tmpdir(), `tenantsafe-temporal-${port}.log`));
  fs.mkdirSync(path.dirname(logFile), { recursive: true });
  const logFd = fs.openSync(logFile, 'a');
  const logStart = fs.fstatSync(logFd).size;

  // Linux: the kernel also stops an attached server if this process dies without running its
  // exit hooks (SIGKILL, a crash), so a killed test run cannot leave a server holding ports.
  const [command, argv] = opts.detached ? [cli, args] : diesWithParent('TERM', cli, args);
  const child = spawn(command, argv, { stdio: ['ignore', logFd, logFd], detached: opts.detached ?? false });
  fs.closeSync(logFd);
  const exited = new Promise<string>((resolve) => {
    child.once('exit', (code, signal) => resolve(signal ? `killed by ${signal}` : `exited with code ${code}`));
    child.once('error', (err) => resolve(`did not start: ${err.message}`));
  });
  let exitReason: string | undefined;
  void exited.then((reason) => (exitReason = reason));
  // Neither kind keeps this process alive: a detached server outlives it, an attached one is
  // killed by the exit hook.
  child.unref();
  const pid = child.pid ?? 0;
  const pidFile = path.join(varDir, `dev-${port}.pid`);
  if (opts.detached) {
    fs.mkdirSync(varDir, { recursive: true });
    fs.writeFileSync(pidFile, `${pid}\n`);
  } else if (pid) {
    killAttachedOnExit(pid);
  }

  const stop = async (): Promise<void> => {
    attached.delete(pid);
    fs.rmSync(pidFile, { force: true });
    if (exitReason === undefined) {
      child.kill('SIGTERM');
      const killer = setTimeout(() => child.kill('SIGKILL'), 15_000);
      await exited;
      clearTimeout(killer);
    }
    // A temp log nobody asked for goes with its server (errors already quote its tail).
    if (!opts.logFile && !opts.detached) fs.rmSync(logFile, { force: true });
  };

  try {
    await waitUntilReady(cli, cfg, address, uiUrl, exited, opts.timeoutMs ?? 60_000);
  } catch (err) {
    const tail = logTail(logFile, logStart);
    await stop();
    if (err instanceof TenantsafeError) throw err;
    throw new TenantsafeError(
      ErrorType.TemporalUnreachable,
      `The Temporal dev server (${cli} ${args.join(' ')}) did not become ready: ${(err as Error).message}${tail}`,
      'Read the server log above; "address already in use" means another server holds that port (stop it or change temporal-dev.yaml).',
    );
  }
  return { address, uiUrl, namespace: cfg.namespace, pid, logFile, stop };
}

async function waitUntilReady(
  cli: string,
  cfg: TemporalDevConfig,
  address: string,
  uiUrl: string | undefined,
  exited: Promise<string>,
  timeoutMs: number,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  // A server that exits (a port in use) ends the wait at once, even mid-probe: a probe of a port
  // someone else holds would otherwise hang until its own timeout.
  const serverGone = new AbortController();
  let exitReason: string | undefined;
  void exited.then((reason) => {
    exitReason = reason;
    serverGone.abort();
  });
  const signal = (ms: number): AbortSignal => AbortSignal.any([serverGone.signal, AbortSignal.timeout(ms)]);
  const temporal = async (...args: string[]): Promise<unknown> =>
    JSON.parse((await execFileAsync(cli, [...args, '--address', address, '--output', 'json'], { signal: signal(10_000) })).stdout);
  let waitingFor = 'the frontend to report SERVING';
  for (;;) {
    try {
      const health = (await temporal('operator', 'cluster', 'health')) as { status?: string };
      if (health.status === 'SERVING') {
        waitingFor = `namespace ${cfg.namespace} to list the search attributes`;
        const listed = (await temporal('operator', 'search-attribute', 'list', '--namespace', cfg.namespace)) as {
          customAttributes?: Record<string, string>;
        };
        if (searchAttributesRegistered(cfg, listed.customAttributes ?? {})) {
          if (!uiUrl) return;
          waitingFor = `the Web UI at ${uiUrl}`;
          if ((await fetch(uiUrl, { signal: signal(5000) })).ok) return;
        }
      }
    } catch (err) {
      if (err instanceof TenantsafeError) throw err;
      // not answering yet
    }
    if (exitReason) throw new Error(`the server ${exitReason}`);
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${waitingFor}`);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

/** True when all are there; throws when one exists with another type (start-dev keeps the old one). */
function searchAttributesRegistered(cfg: TemporalDevConfig, listed: Record<string, string>): boolean {
  const normal = (type: string): string => type.replace(/^INDEXED_VALUE_TYPE_/, '').replace(/_/g, '').toLowerCase();
  let all = true;
  for (const [name, type] of Object.entries(cfg.searchAttributes)) {
    const got = listed[name];
    if (got === undefined) all = false;
    else if (normal(got) !== normal(type)) {
      throw new TenantsafeError(
        ErrorType.BadConfig,
        `Search attribute ${name} is registered as ${got} in ${cfg.dbFilename ?? 'the server'}, but temporal-dev.yaml says ${type}.`,
        'Temporal cannot change the type of a search attribute: delete the sqlite file (losing its workflow history) or rename the attribute.',
      );
    }
  }
  return all;
}
