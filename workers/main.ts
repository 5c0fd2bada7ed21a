// `tenantsafe worker`: runs until SIGINT/SIGTERM, then stops gracefully.
import type { Config } from '../lib/config';
import { startWorker } from './worker';
import { workerEnvironment, workerNodeOptions } from './process';

export async function runWorkerUntilSignal(config: Config): Promise<void> {
  const started = await startWorker(config);
  const stop = () => void started.shutdown();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  if (!workerNodeOptions.every((o) => process.execArgv.includes(o))) {
    process.stderr.write(`tenantsafe worker: node runs without ${workerNodeOptions.join(' ')}: V8's garbage-collection threads will take CPU from backups and restores on the same cores.\nHINT: Start the worker as \`tenantsafe worker\` (its launcher line gives node the option and MALLOC_ARENA_MAX), or as \`${Object.entries(workerEnvironment).map(([k, v]) => `${k}=${v}`).join(' ')} node ${workerNodeOptions.join(' ')} …/bin/tenantsafe worker\`.\n`);
  }
  process.stderr.write(`tenantsafe worker: polling ${config.temporal.taskQueue} at ${config.temporal.address} (namespace ${config.temporal.namespace})${started.metricsUrl ? `, metrics at ${started.metricsUrl}` : ''}\n`);
  await started.done;
}
