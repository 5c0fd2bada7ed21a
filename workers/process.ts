// A worker in a process of its own (`tenantsafe worker`), for tests that kill it like a crashed
// machine and for benchmarks that measure its memory.
import { spawn, type ChildProcess } from 'node:child_process';
import * as path from 'node:path';
import { projectRoot } from '../lib/config';

/** What a worker's node runs with (bin/tenantsafe's launcher line): garbage collection on the main thread only. */
export const workerNodeOptions = ['--single-threaded-gc'];

/** What a worker's environment gets where it has none (the launcher line too): two malloc arenas, for a steadier peak RSS. */
export const workerEnvironment = { MALLOC_ARENA_MAX: '2' };

/** Resolves once the worker says it polls its task queue; rejects with its output if it exits first. */
export function spawnWorkerProcess(configFile: string, timeoutMs = 60_000): Promise<ChildProcess> {
  // node's options and environment as bin/tenantsafe's launcher line gives them when it runs as a command
  const child = spawn(process.execPath, [...workerNodeOptions, path.join(projectRoot, 'bin/tenantsafe'), '--config', configFile, 'worker'], {
    stdio: ['ignore', 'inherit', 'pipe'],
    env: { ...workerEnvironment, ...process.env },
  });
  return new Promise((resolve, reject) => {
    let stderr = '';
    const timer = setTimeout(() => reject(new Error(`worker did not start within ${timeoutMs} ms: ${stderr}`)), timeoutMs);
    child.stderr!.on('data', (d) => {
      stderr += d;
      if (stderr.includes('polling')) {
        clearTimeout(timer);
        resolve(child);
      }
    });
    child.once('exit', () => {
      clearTimeout(timer);
      reject(new Error(`worker exited: ${stderr}`));
    });
  });
}
