// `tenantsafe dev` and `demo`: bring up everything on one machine. With no config, the
// embedded defaults: a private Postgres holding the generated sample database, a Temporal dev
// server from temporal-dev.yaml (reused when one already answers), a worker. With a config,
// its database and Temporal are used as they are.
import * as path from 'node:path';
import { configPathFor, defaultDevLayout, loadConfig, sampleDatabase, type Config, type DevLayout } from '../lib/config';
import { PrivateCluster } from '../lib/postgres/cluster';
import { isTemporalListening, loadTemporalDevConfig, startTemporalDevServer, type TemporalDevServer } from './temporalDevServer';
import { ensureSampleDatabase, type SampleOptions } from '../sample/generate';
import { startWorker, type StartedWorker } from '../workers/worker';
import { workflowScopes } from '../lib/databaseIdentity';

export interface DevStack {
  config: Config;
  uiUrl: string | undefined;
  worker: StartedWorker;
  stop(): Promise<void>;
}

export interface DevStackOptions {
  configPath?: string;
  layout?: Partial<DevLayout>;
  sample?: SampleOptions;
  log: (line: string) => void;
}

/** The sample the embedded stack generates: 40 tenants of Zipf-like sizes, ~200k rows. */
export const embeddedSample: SampleOptions = { tenants: 40, rows: 200_000 };

export async function startDevStack(opts: DevStackOptions): Promise<DevStack> {
  const layout: DevLayout = { ...defaultDevLayout, ...opts.layout };
  const configFile = configPathFor({ path: opts.configPath });
  const config = loadConfig({ path: opts.configPath, layout });
  const stops: (() => Promise<void>)[] = [];
  try {
    if (!configFile) stops.push(await startSampleCluster(layout, opts.sample ?? embeddedSample, opts.log));
    else opts.log(`config: ${configFile}`);

    let uiUrl: string | undefined;
    if (await isTemporalListening(config.temporal.address)) {
      opts.log(`temporal: reusing the server at ${config.temporal.address}`);
    } else {
      const [host, port] = config.temporal.address.split(':');
      const server: TemporalDevServer = await startTemporalDevServer(
        loadTemporalDevConfig(undefined, {
          ip: host,
          port: Number(port),
          uiPort: configFile ? Number(port) + 1000 : layout.uiPort,
          httpPort: 0,
          metricsPort: 0,
          dbFilename: path.join(layout.home, 'temporal', 'dev.sqlite'),
        }),
        { logFile: path.join(layout.home, 'temporal', 'dev.log') },
      );
      uiUrl = server.uiUrl;
      stops.push(() => server.stop());
      opts.log(`temporal: dev server at ${server.address}, Web UI ${server.uiUrl}`);
    }

    const worker = await startWorker(config);
    stops.push(() => worker.shutdown());
    opts.log(`worker: polling task queue ${config.temporal.taskQueue}`);
    if (config.changeLog.enabled) {
      // runs on after `dev` stops, like the WAL archiver; `tenantsafe changelog stop` ends it
      const { startChangeLog } = require('./fullBackups') as typeof import('./fullBackups');
      const { TenantsafeClient } = require('./client') as typeof import('./client');
      const client = await TenantsafeClient.connect(config.temporal);
      try {
        await startChangeLog(client, (await workflowScopes(worker.engine)).changeLog);
      } finally {
        await client.close();
      }
      opts.log('change log: streaming');
    }
    return {
      config,
      uiUrl,
      worker,
      async stop() {
        for (const stop of stops.reverse()) await stop().catch(() => undefined);
      },
    };
  } catch (err) {
    for (const stop of stops.reverse()) await stop().catch(() => undefined);
    throw err;
  }
}

/** Starts (creating if needed) the private cluster and generates the sample once. Returns its stop. */
async function startSampleCluster(layout: DevLayout, sample: SampleOptions, log: (line: string) => void): Promise<() => Promise<void>> {
  const cluster = await PrivateCluster.create({ dataDir: path.join(layout.home, 'pg'), port: layout.pgPort });
  const wasRunning = await cluster.isRunning();
  if (!wasRunning) await cluster.start();
  log(`postgres: private cluster ${cluster.dataDir} on 127.0.0.1:${cluster.port}`);
  const { created } = await ensureSampleDatabase(cluster.url('postgres'), sampleDatabase, sample);
  if (created) log(`postgres: generated the sample multi-tenant database ${sampleDatabase} (${sample.tenants} tenants, ~${sample.rows} rows)`);
  return async () => {
    if (!wasRunning) await cluster.stop('fast');
  };
}
