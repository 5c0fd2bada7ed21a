// The dev-stack launchers on real binaries: the Temporal dev server from temporal-dev.yaml and
// private PostgreSQL clusters (initdb, pg_ctl, a real SIGKILL crash).
import { strict as assert } from 'node:assert';
import { execFile, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { projectRoot } from '../lib/config';
import { PrivateCluster } from '../lib/postgres/cluster';
import {
  isTemporalListening,
  loadTemporalDevConfig,
  startTemporalDevServer,
  temporalCliPath,
  type TemporalDevConfig,
  type TemporalDevServer,
} from '../client/temporalDevServer';
import { ErrorType, TenantsafeError } from '../lib/errors';
import { connect } from '../lib/pg';
import { freePorts } from '../lib/process';

const execFileAsync = promisify(execFile);

/** In memory, on free ports: never the developer's own dev server on 7233. */
const testOverrides: Partial<TemporalDevConfig> = { port: 0, uiPort: 0, httpPort: 0, metricsPort: 0, dbFilename: null };

/** Runs `code` in a fresh Node process (TypeScript via tsx) and returns its stdout. */
function runNode(code: string): string {
  const r = spawnSync(process.execPath, ['--require', 'tsx/cjs', '-e', code], { cwd: projectRoot, encoding: 'utf8', timeout: 60_000 });
  assert.ok(r.status === 0 || r.signal === 'SIGKILL', `child failed: ${r.stderr}`);
  return r.stdout;
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return !/^\d+ \(.*\) Z/s.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

async function eventually(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) assert.fail(`still not true after ${timeoutMs} ms: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

function configError(fn: () => unknown): TenantsafeError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof TenantsafeError, String(err));
    return err;
  }
  assert.fail('the config was accepted');
}

describe('the Temporal dev server launcher', () => {
  const cfg = loadTemporalDevConfig(undefined, testOverrides);
  let server: TemporalDevServer;

  before(async () => {
    server = await startTemporalDevServer(cfg);
  });

  after(async () => {
    await server?.stop();
  });

  it('starts from temporal-dev.yaml on a free port and the frontend reports SERVING', async () => {
    assert.notEqual(server.address, '127.0.0.1:7233');
    const { stdout } = await execFileAsync(temporalCliPath(), ['operator', 'cluster', 'health', '--address', server.address, '--output', 'json']);
    assert.equal(JSON.parse(stdout).status, 'SERVING');
  });

  it('registers every search attribute of temporal-dev.yaml with its type', async () => {
    assert.deepEqual(Object.keys(cfg.searchAttributes).sort(), ['BackupKind', 'Database', 'TenantId']);
    const { stdout } = await execFileAsync(temporalCliPath(), [
      'operator', 'search-attribute', 'list', '--namespace', server.namespace, '--address', server.address, '--output', 'json',
    ]);
    const listed: Record<string, string> = JSON.parse(stdout).customAttributes;
    for (const name of Object.keys(cfg.searchAttributes)) assert.equal(listed[name], 'INDEXED_VALUE_TYPE_KEYWORD', name);
  });

  it('serves the Web UI over HTTP on its uiPort', async () => {
    assert.ok(server.uiUrl);
    const res = await fetch(server.uiUrl);
    assert.equal(res.status, 200);
    assert.match(await res.text(), /<html/i);
  });

  it('frees its port and ends its process when stopped', async () => {
    const stopping = await startTemporalDevServer(loadTemporalDevConfig(undefined, { ...testOverrides, ui: false }));
    assert.equal(await isTemporalListening(stopping.address), true);
    await stopping.stop();
    assert.equal(await isTemporalListening(stopping.address), false);
    assert.equal(processAlive(stopping.pid), false);
  });

  it('dies with the process that started it, even when that process is SIGKILLed', async () => {
    const [pid, logFile] = JSON.parse(
      runNode(`
        const t = require('./client/temporalDevServer');
        t.startTemporalDevServer(t.loadTemporalDevConfig(undefined, ${JSON.stringify({ ...testOverrides, ui: false })})).then((s) => {
          process.stdout.write(JSON.stringify([s.pid, s.logFile]));
          process.kill(process.pid, 'SIGKILL');
        });`),
    ) as [number, string];
    assert.ok(pid > 0);
    try {
      await eventually(`dev server ${pid} has exited`, () => !processAlive(pid));
    } finally {
      if (processAlive(pid)) process.kill(pid, 'SIGKILL');
      fs.rmSync(logFile, { force: true }); // its stop() never ran
    }
  });

  it('fails fast with the server log when its port is taken', async () => {
    const blocker = net.createServer().listen(0, '127.0.0.1');
    await new Promise((resolve) => blocker.once('listening', resolve));
    const port = (blocker.address() as net.AddressInfo).port;
    try {
      const started = Date.now();
      await assert.rejects(startTemporalDevServer(loadTemporalDevConfig(undefined, { ...testOverrides, port, ui: false })), (err: TenantsafeError) => {
        assert.equal(err.type, ErrorType.TemporalUnreachable);
        assert.match(err.message, /address already in use/);
        return true;
      });
      assert.ok(Date.now() - started < 10_000, 'waited for the timeout instead of noticing the exit');
    } finally {
      blocker.close();
    }
  });

  it('rejects a broken temporal-dev.yaml with an error naming each bad key', () => {
    const dir = fs.mkdtempSync(path.join(projectRoot, 'var/test-temporal-yaml-'));
    try {
      const file = path.join(dir, 'temporal-dev.yaml');
      const good = fs.readFileSync(path.join(projectRoot, 'temporal-dev.yaml'), 'utf8');
      fs.writeFileSync(file, good.replace(/^port: 7233/m, 'port: seventy').replace(/^logLevel:/m, 'logLevl:').replace('TenantId: Keyword', 'TenantId: Keywrd'));
      const err = configError(() => loadTemporalDevConfig(file));
      assert.equal(err.type, ErrorType.BadConfig);
      assert.match(err.message, /- port: must be a port number/);
      assert.match(err.message, /- logLevl: unknown key/);
      assert.match(err.message, /- searchAttributes\.TenantId: must be one of .* \(got "Keywrd"\)/);
      assert.match(configError(() => loadTemporalDevConfig(undefined, { port: 7233, uiPort: 7233 })).message, /uiPort: is the same port as port/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('private PostgreSQL clusters', () => {
  let root: string;
  let dataDir: string;
  let cluster: PrivateCluster;

  before(async () => {
    // Under var/: the postgres OS user can reach it (when tests run as root), and it stays in the checkout.
    root = fs.mkdtempSync(path.join(projectRoot, 'var/test-devstack-pg-'));
    fs.chmodSync(root, 0o755); // mkdtemp makes it 0700
    dataDir = path.join(root, 'nested', 'pg');
    cluster = await PrivateCluster.create({ dataDir, port: 0, ephemeral: true, settings: { wal_level: 'replica' } });
    await cluster.start();
  });

  after(async () => {
    await PrivateCluster.removeAll();
    fs.rmSync(root, { recursive: true, force: true });
  });

  it('initdbs a cluster that listens on its own port and private socket directory', async () => {
    assert.ok(fs.existsSync(path.join(dataDir, 'PG_VERSION')));
    const [row] = await cluster.psql<{ port: string; sockets: string; wal_level: string }>(
      `SELECT current_setting('port') AS port, current_setting('unix_socket_directories') AS sockets, current_setting('wal_level') AS wal_level`,
    );
    assert.equal(row.port, String(cluster.port));
    assert.notEqual(row.sockets, '/var/run/postgresql');
    assert.equal(row.wal_level, 'replica');
    assert.equal(cluster.url('app'), `postgres://postgres@127.0.0.1:${cluster.port}/app`);
  });

  it('keeps committed rows across stop("fast") and start()', async () => {
    await cluster.psql('CREATE TABLE kept (id int PRIMARY KEY); INSERT INTO kept SELECT generate_series(1, 100)');
    await cluster.stop('fast');
    assert.equal(cluster.isRunning(), false);
    await assert.rejects(cluster.psql('SELECT 1'), { type: ErrorType.DatabaseUnreachable });
    await cluster.start();
    assert.deepEqual(await cluster.psql('SELECT count(*)::int AS n FROM kept'), [{ n: 100 }]);
  });

  it('recovers committed rows by crash recovery after crash()', async () => {
    await cluster.psql('INSERT INTO kept SELECT generate_series(101, 150)');
    const logSize = fs.statSync(cluster.logFile).size;
    await cluster.crash();
    assert.equal(cluster.isRunning(), false);
    await cluster.start();
    const log = fs.readFileSync(cluster.logFile, 'utf8').slice(logSize);
    assert.match(log, /database system was not properly shut down; automatic recovery in progress/);
    assert.deepEqual(await cluster.psql('SELECT count(*)::int AS n FROM kept'), [{ n: 150 }]);
  });

  it('attaches to an existing cluster by its directory, and remove() stops it and deletes the directory', async () => {
    const attached = await PrivateCluster.attach(dataDir);
    assert.equal(attached.port, cluster.port);
    assert.equal(attached.isRunning(), true);
    await attached.remove();
    assert.equal(fs.existsSync(dataDir), false);
    await assert.rejects(attached.psql('SELECT 1'), { type: ErrorType.DatabaseUnreachable });
    assert.ok(!PrivateCluster.all().includes(attached));
  });

  it('refuses a directory that holds something other than a cluster', async () => {
    const dir = path.join(root, 'not-a-cluster');
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, 'notes.txt'), 'mine');
    await assert.rejects(PrivateCluster.create({ dataDir: dir, port: 0 }), (err: TenantsafeError) => {
      assert.equal(err.type, ErrorType.BadInput);
      assert.match(err.message, /neither empty nor a PostgreSQL data directory/);
      return true;
    });
    assert.equal(fs.readFileSync(path.join(dir, 'notes.txt'), 'utf8'), 'mine');
  });

  it('stops and deletes an ephemeral cluster when the process that made it exits', async () => {
    const dir = path.join(root, 'ephemeral');
    const port = Number(
      runNode(`
        const { PrivateCluster } = require('./lib/postgres/cluster');
        PrivateCluster.create({ dataDir: ${JSON.stringify(dir)}, port: 0, ephemeral: true })
          .then(async (c) => { await c.start(); process.stdout.write(String(c.port)); });`),
    );
    assert.ok(port > 0);
    try {
      await assert.rejects(connect(`postgres://postgres@127.0.0.1:${port}/postgres`), { type: ErrorType.DatabaseUnreachable });
      assert.equal(fs.existsSync(dir), false);
    } finally {
      if (fs.existsSync(path.join(dir, 'PG_VERSION'))) await (await PrivateCluster.attach(dir)).remove();
    }
  });
});

describe('free ports for private servers', () => {
  it('picks distinct free ports below the kernel ephemeral range, which outgoing connections take theirs from', async () => {
    const [low] = fs.readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
    const ports = await freePorts('127.0.0.1', 20);
    assert.equal(new Set(ports).size, 20);
    for (const port of ports) {
      assert.ok(port > 1024 && port < low, `port ${port} is not below the ephemeral range (from ${low})`);
      // free: a server can listen on it now
      await new Promise<void>((resolve, reject) => {
        const s = net.createServer().once('error', reject);
        s.listen(port, '127.0.0.1', () => s.close(() => resolve()));
      });
    }
  });
});
