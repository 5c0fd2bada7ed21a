// A worker in a process of its own (`tenantsafe worker`), for tests that kill it like a crashed
// machine and for benchmarks that measure its memory.
import { spawn, type ChildProcess } from 'node:child_process';
import * as path from 'node:path';
import { projectRoot } from '../lib/config';

/** What a worker's node runs with (bin/tenantsafe's first line): garbage collection on the main thread only. */
export const workerNodeOptions = ['--single-threaded-gc'];

/** Resolves once the worker says it polls its task queue; rejects with its output if it exits first. */
export function spawnWorkerProcess(configFile: string, timeoutMs = 60_000): Promise<ChildProcess> {
  // node's options as bin/tenantsafe's first line gives them when it runs as a command
  const child = spawn(process.execPath, [...workerNodeOptions, path.join(projectRoot, 'bin/tenantsafe'), '--config', configFile, 'worker'], { stdio: ['ignore', 'inherit', 'pipe'] });
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
