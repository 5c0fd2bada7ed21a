// `tenantsafe worker`: runs until SIGINT/SIGTERM, then stops gracefully.
import type { Config } from '../lib/config';
import { startWorker } from './worker';

export async function runWorkerUntilSignal(config: Config): Promise<void> {
  const started = await startWorker(config);
  const stop = () => void started.shutdown();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  process.stderr.write(`tenantsafe worker: polling ${config.temporal.taskQueue} at ${config.temporal.address} (namespace ${config.temporal.namespace})${started.metricsUrl ? `, metrics at ${started.metricsUrl}` : ''}\n`);
  await started.done;
}
