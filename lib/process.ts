// Process helpers shared by the dev-stack launchers: free ports, log tails, PATH lookups, and
// children that die with their parent.
import { spawn, type ChildProcessWithoutNullStreams, type SpawnOptions } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';

/** An executable named `name` in one of the PATH directories. */
export function onPath(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    const candidate = path.join(dir, name);
    try {
      fs.accessSync(candidate, fs.constants.X_OK);
      if (fs.statSync(candidate).isFile()) return candidate;
    } catch {
      // not in this directory
    }
  }
  return undefined;
}

/**
 * Ports nobody listens on right now, all distinct (held open together while being picked), below
 * the kernel's ephemeral range: a port from that range is also the local port of any outgoing
 * connection, and one taken that way between the pick and a server's own bind (a restore runs
 * in between) fails the server with "Address already in use".
 */
export async function freePorts(host: string, count: number): Promise<number[]> {
  const below = ephemeralPortsStart();
  const lowest = Math.max(1024, below - pickedPortsSpan);
  const held: net.Server[] = [];
  try {
    for (let tries = 0; held.length < count && lowest < below && tries < 200; tries++) {
      const port = lowest + Math.floor(Math.random() * (below - lowest));
      const server = await listening(port, host).catch(() => undefined);
      if (server) held.push(server);
    }
    // a crowded range: any free port, as the kernel picks it
    while (held.length < count) held.push(await listening(0, host));
    return held.map((s) => (s.address() as net.AddressInfo).port);
  } finally {
    await Promise.all(held.map((s) => new Promise((resolve) => s.close(resolve))));
  }
}

/** How many ports below the ephemeral range freePorts picks from (fewer where the range starts lower). */
const pickedPortsSpan = 10_000;

/** The first port the kernel hands out to outgoing connections (Linux's setting; its default elsewhere). */
function ephemeralPortsStart(): number {
  try {
    const low = Number(fs.readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    if (Number.isInteger(low)) return low;
  } catch {
    // not Linux
  }
  return 32_768;
}

function listening(port: number, host: string): Promise<net.Server> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(port, host, () => resolve(s));
  });
}

/** The last lines a server wrote to its log since `fromOffset`: the part that explains a failure. */
export function logTail(file: string, fromOffset = 0, lines = 25): string {
  try {
    const size = fs.statSync(file).size;
    const start = Math.max(fromOffset, size - 16_384);
    const fd = fs.openSync(file, 'r');
    try {
      const buf = Buffer.alloc(size - start);
      fs.readSync(fd, buf, 0, buf.length, start);
      const text = buf.toString('utf8').trimEnd().split('\n').slice(-lines).join('\n');
      return text ? `\n--- last lines of ${file} ---\n${text}\n---` : `\n(${file} is empty)`;
    } finally {
      fs.closeSync(fd);
    }
  } catch (err) {
    return `\n(cannot read ${file}: ${(err as Error).message})`;
  }
}

/**
 * The command line that runs `cmd` so that Linux stops it with `signal` if this process dies
 * without running its exit hooks (SIGKILL, a crash): a killed run leaves no server holding ports.
 */
export function diesWithParent(signal: 'TERM' | 'KILL', cmd: string, args: string[]): [string, string[]] {
  const setpriv = process.platform === 'linux' ? onPath('setpriv') : undefined;
  return setpriv ? [setpriv, ['--pdeathsig', signal, '--', cmd, ...args]] : [cmd, args];
}

/**
 * spawn, the child killed with this process (diesWithParent): a worker killed mid-step leaves no
 * pg_basebackup, pg_receivewal, pg_dump, tar or compressor running on. A command that cannot be
 * found is spawned as it is, so that its 'error' event says so.
 */
export function spawnTied(cmd: string, args: string[], options: SpawnOptions): ChildProcessWithoutNullStreams {
  const found = path.isAbsolute(cmd) ? fs.existsSync(cmd) : onPath(cmd) !== undefined;
  const [command, argv] = found ? diesWithParent('KILL', cmd, args) : [cmd, args];
  // every caller asks for a pipe on each stream it touches
  return spawn(command, argv, options) as ChildProcessWithoutNullStreams;
}
