// `tenantsafe dev` and `demo`: bring up everything on one machine. With no config, the
// embedded defaults: a private Postgres holding the generated sample database, a Temporal dev
// server from temporal-dev.yaml (reused when one already answers), a worker. With a config,
// its database and Temporal are used as they are. The dashboard comes up too: with no
// dashboard.users or dashboard.token in the config, for an operator `dev` whose token is kept in
// <home>/dashboard-token (made once, readable by its owner only).
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { configPathFor, databaseIds, databaseName, defaultDevLayout, forDatabase, loadConfig, sampleDatabase, type Config, type DevLayout } from '../lib/config';
import { PrivateCluster } from '../lib/postgres/cluster';
import { isTemporalListening, loadTemporalDevConfig, startTemporalDevServer, type TemporalDevServer } from './temporalDevServer';
import { ensureSampleDatabase, type SampleOptions } from '../sample/generate';
import { startWorker, type StartedWorker } from '../workers/worker';
import { workflowScopes } from '../lib/databaseIdentity';

export interface DevStack {
  config: Config;
  uiUrl: string | undefined;
  /** the dashboard, unless its port was taken */
  dashboardUrl: string | undefined;
  worker: StartedWorker;
  stop(): Promise<void>;
}

export interface DevStackOptions {
  configPath?: string;
  layout?: Partial<DevLayout>;
  sample?: SampleOptions;
  /** the dashboard's port (default: dashboard.port of the config) */
  dashboardPort?: number;
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
      // alerts and the dashboard link runs to the Web UI this stack serves
      config.temporal.uiUrl ??= server.uiUrl;
      stops.push(() => server.stop());
      opts.log(`temporal: dev server at ${server.address}, Web UI ${server.uiUrl}`);
    }

    const worker = await startWorker(config);
    stops.push(() => worker.shutdown());
    opts.log(`worker: polling task queue ${config.temporal.taskQueue}`);
    await startDevChangeLogs(config, worker, opts.log);
    if (config.dr.drill.intervalMs !== null) {
      // disaster recovery serves one database (docs/fleet.md): no drills for a fleet
      if (databaseIds(config).length > 0) opts.log('dr drills: not scheduled, the config names its databases under `databases` (disaster recovery serves a single-database config: docs/fleet.md)');
      else await scheduleDevDrills(config, config.dr.drill.intervalMs, opts.log);
    }
    const dashboard = await startDevDashboard(config, worker, layout.home, opts);
    if (dashboard) stops.push(dashboard.stop);
    return {
      config,
      uiUrl,
      dashboardUrl: dashboard?.url,
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

/**
 * The change log of every database of the config that enables it (each its own workflow, on its
 * own slot and storage folder: docs/fleet.md). It runs on after `dev` stops, like the WAL
 * archiver; `tenantsafe changelog stop` ends it.
 */
async function startDevChangeLogs(config: Config, worker: StartedWorker, log: (line: string) => void): Promise<void> {
  const ids = databaseIds(config);
  for (const id of ids.length > 0 ? ids : [undefined]) {
    const view = forDatabase(config, id);
    if (!view.changeLog.enabled) continue;
    const { startChangeLog } = require('./fullBackups') as typeof import('./fullBackups');
    const { TenantsafeClient } = require('./client') as typeof import('./client');
    const client = await TenantsafeClient.connect(view.temporal, view.databaseId);
    try {
      await startChangeLog(client, (await workflowScopes(worker.engine.forDatabase(id))).changeLog);
    } finally {
      await client.close();
    }
    log(`change log: streaming${id === undefined ? '' : ` (database ${id})`}`);
  }
}

/** The weekly DR drill (dr.drill.interval) as a Temporal Schedule: created, or updated to the config's interval. */
async function scheduleDevDrills(config: Config, everyMs: number, log: (line: string) => void): Promise<void> {
  const { TenantsafeClient } = require('./client') as typeof import('./client');
  const { scheduleDrills } = require('./schedules') as typeof import('./schedules');
  const client = await TenantsafeClient.connect(config.temporal);
  try {
    const s = await scheduleDrills(client.temporal, config.temporal.taskQueue, databaseName(config.database.url), everyMs);
    log(`dr drills: ${s.scheduleId} every ${s.every}, next ${s.nextRunAt}`);
  } finally {
    await client.close();
  }
}

/** The dashboard on the worker's engine; null (and a line saying so) when its port is taken. */
async function startDevDashboard(config: Config, worker: StartedWorker, home: string, opts: DevStackOptions): Promise<{ url: string; stop: () => Promise<void> } | null> {
  const { TenantsafeClient } = require('./client') as typeof import('./client');
  const { startDashboardServer } = require('./server') as typeof import('./server');
  let dashboardConfig = { ...config.dashboard, ...(opts.dashboardPort ? { port: opts.dashboardPort } : {}) };
  let signIn = '';
  if (dashboardConfig.users.length === 0 && !dashboardConfig.token) {
    const file = path.join(home, 'dashboard-token');
    fs.mkdirSync(home, { recursive: true });
    if (!fs.existsSync(file)) fs.writeFileSync(file, `${randomBytes(24).toString('base64url')}\n`, { mode: 0o600, flag: 'wx' });
    const token = fs.readFileSync(file, 'utf8').trim();
    dashboardConfig = { ...dashboardConfig, users: [{ name: 'dev', role: 'operator', token, relay: false }] };
    signIn = ` (sign in as "dev" with the token in ${file})`;
  }
  const client = await TenantsafeClient.connect(config.temporal);
  try {
    const server = await startDashboardServer({ ...config, dashboard: dashboardConfig }, worker.engine, client);
    opts.log(`dashboard: ${server.url}/${signIn}`);
    return {
      url: server.url,
      stop: async () => {
        await server.close();
        await client.close();
      },
    };
  } catch (err) {
    await client.close();
    if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw err;
    opts.log(`dashboard: not started, ${dashboardConfig.host}:${dashboardConfig.port} is in use (--dashboard-port <n> picks another)`);
    return null;
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
