// Monitoring at scale (issue 20, Performance): a catalog of 100,000 tenants with 10 restore points
// each (1M backup rows, 1M run rows), 1,000 of them stale and some failing.
//   A. the health report: how long computing it takes (the refresh, off the scrape's path), p50/p95
//   B. GET /metrics on a server built like the worker's: p50/p95/max with the report at hand
//      (target ≤ 100 ms), and when every scrape finds it stale (it waits ≤ 50 ms for a new one)
//   C. a worker process's RSS with metrics on (a /metrics listener scraped every 100 ms, the
//      report recomputed every second) vs off, after the same tenant backups: target growth ≤ 20 MB.
//      Runs off, on, off, on, ... (3 pairs; quick: 1), each a fresh worker process; medians reported.
// Scale 1: 100,000 tenants (quick: 1,000) with 10 restore points each.
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { Client as TemporalClient, Connection } from '@temporalio/client';
import { stringify } from 'yaml';
import { databaseName, loadConfig } from '../lib/config';
import { Engine } from '../lib/engine';
import { computeHealth } from '../lib/monitoring/health';
import { HealthCache, processRegistry, registerHealthMetrics, serveMetrics } from '../lib/monitoring/metrics';
import { withConnection } from '../lib/pg';
import { freePorts } from '../lib/process';
import { loadTemporalDevConfig, startTemporalDevServer } from '../client/temporalDevServer';
import { spawnWorkerProcess } from '../workers/process';
import { seedTenantBackups } from '../test/support/catalogSeed';
import { atMost, benchRow, roundsOf, runScenario, scaled, type BenchOptions, type BenchRow } from './report';
import { benchDatabase, median, peakRssMb, percentile, sleep } from './support';

const perTenant = 10;
const scrapes = 200;
const scenario = 'monitoring';

const ms = (xs: number[]) => `p50 ${percentile(xs, 50).toFixed(1)} ms, p95 ${percentile(xs, 95).toFixed(1)} ms, max ${Math.max(...xs).toFixed(1)} ms (${xs.length})`;

function rssMb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

async function timedScrape(url: string): Promise<{ ms: number; bytes: number }> {
  const t0 = performance.now();
  const res = await fetch(url);
  const body = await res.text();
  if (!res.ok) throw new Error(`${url}: ${res.status} ${body}`);
  return { ms: performance.now() - t0, bytes: body.length };
}

/** A /metrics server built like the worker's (lib/monitoring/metrics.ts), in this process. */
async function metricsServer(engine: Engine, ttlMs: number): Promise<{ url: string; cache: HealthCache; close(): Promise<void> }> {
  const registry = processRegistry();
  const memo = {};
  const cache = new HealthCache(() => computeHealth(engine, { memo }), ttlMs);
  registerHealthMetrics(registry, cache);
  const server = http.createServer((req, res) => void serveMetrics(registry, req, res));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/metrics`, cache, close: () => new Promise((r) => server.close(() => r())) };
}

export async function run(opts: BenchOptions): Promise<BenchRow[]> {
  const tenants = scaled(opts, 100_000, 1_000);
  const pairs = roundsOf(opts, 3, 1);
  const db = await benchDatabase({ tenants: 12, rows: 20_000 });
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'tenantsafe-bench-mon-'));
  const doc = { database: { url: db.url }, storage: { primary: { kind: 'local', path: path.join(work, 'backups') } }, temporal: { address: '', taskQueue: 'bench' } };
  const configFile = path.join(work, 'tenantsafe.yaml');
  fs.writeFileSync(configFile, stringify(doc));
  const engine = new Engine(loadConfig({ path: configFile }));
  const rows: BenchRow[] = [];
  try {
    // ---- the catalog ----
    let t0 = performance.now();
    const name = databaseName(db.url);
    await seedTenantBackups(engine, { database: name, tenants, backupsPerTenant: perTenant, prefix: 'bulk-', newestHoursAgo: 2, runs: true });
    await seedTenantBackups(engine, { database: name, tenants: 1000, backupsPerTenant: 3, prefix: 'stale-', newestHoursAgo: 60 });
    // failing sample tenants (they exist: the report names them)
    await withConnection(db.url, (c) =>
      c.query(
        `INSERT INTO tenantsafe.runs (workflow_id, run_id, workflow_type, tenant_id, status, error, error_type, database, started_at, finished_at)
         SELECT 'tenant-backup/' || t, md5(t), 'tenantBackup', t, 'failed', 'storage down', 'StorageUnavailable', $1, now(), now() FROM unnest(ARRAY['acme', 'globex', 'initech']) t`,
        [name],
      ),
    );
    await withConnection(db.url, (c) => c.query('VACUUM ANALYZE tenantsafe.backups, tenantsafe.runs, tenantsafe.tenant_backup_stats'));
    const counts = await withConnection(db.url, (c) => c.query(`SELECT (SELECT count(*) FROM tenantsafe.backups) AS b, (SELECT count(*) FROM tenantsafe.runs) AS r`));
    const catalog = `${tenants + 1000} tenants, ${counts.rows[0].b} backup rows, ${counts.rows[0].r} run rows (made in ${((performance.now() - t0) / 1000).toFixed(0)} s)`;

    // ---- A. computing the report ----
    const compute: number[] = [];
    const memo = {}; // as the worker and the dashboard keep it: the tenancy plan found once
    let report = await computeHealth(engine, { memo });
    for (let i = 0; i < 10; i++) {
      t0 = performance.now();
      report = await computeHealth(engine, { memo });
      compute.push(performance.now() - t0);
    }
    const t = report.databases[0].tenant;
    rows.push(
      benchRow(scenario, 'A. computing the health report, p95', {
        ours: percentile(compute, 95),
        unit: 'ms',
        note: `${catalog}; ${ms(compute)}; it found ${t.tenants} tenants, ${t.failing} failing, ${t.stale.warning + t.stale.critical} stale (the 1,000 stale ones are not in the tenant table: dropped), level ${report.level}`,
      }),
    );

    // ---- B. scrapes ----
    const warm = await metricsServer(engine, 3_600_000);
    await warm.cache.refresh();
    const fast: number[] = [];
    let bytes = 0;
    for (let i = 0; i < scrapes; i++) {
      const s = await timedScrape(warm.url);
      fast.push(s.ms);
      bytes = s.bytes;
    }
    await warm.close();
    rows.push(benchRow(scenario, 'B. `GET /metrics`, the report at hand, p95', { ours: percentile(fast, 95), unit: 'ms', target: atMost(100), note: `${ms(fast)}; ${(bytes / 1024).toFixed(1)} KiB` }));
    const stale = await metricsServer(engine, 0);
    await stale.cache.refresh();
    const slow: number[] = [];
    for (let i = 0; i < 40; i++) slow.push((await timedScrape(stale.url)).ms);
    await stale.close();
    rows.push(benchRow(scenario, 'B. `GET /metrics`, every scrape finding the report stale, p95', { ours: percentile(slow, 95), unit: 'ms', target: atMost(100), note: `${ms(slow)}; waits ≤ 50 ms for the next report` }));

    // ---- C. worker RSS, metrics off vs on (--rounds pairs) ----
    if (pairs > 0) {
      const server = await startTemporalDevServer(loadTemporalDevConfig(undefined, { port: 0, uiPort: 0, httpPort: 0, metricsPort: 0, ui: false, dbFilename: null }));
      try {
        const connection = await Connection.connect({ address: server.address });
        const client = new TemporalClient({ connection });
        const rss: Record<'off' | 'on', { after: number; peak: number }[]> = { off: [], on: [] };
        let round = 0;
        for (const mode of Array.from({ length: pairs }, () => ['off', 'on'] as const).flat()) {
          const [port] = await freePorts('127.0.0.1', 1);
          const file = path.join(work, `worker-${mode}.yaml`);
          fs.writeFileSync(
            file,
            stringify({ ...doc, temporal: { address: server.address, taskQueue: 'bench' }, ...(mode === 'on' ? { worker: { metricsPort: port }, monitoring: { cacheTtl: '1s' } } : {}) }),
          );
          const worker = await spawnWorkerProcess(file);
          try {
            let scraping = mode === 'on';
            const scraper = (async () => {
              while (scraping) {
                await timedScrape(`http://127.0.0.1:${port}/metrics`);
                await sleep(100);
              }
            })();
            for (let i = 0; i < 12; i++) {
              await client.workflow.execute('tenantBackup', { taskQueue: 'bench', workflowId: `bench-mon-${round}-${i}`, args: [{ tenantId: ['acme', 'globex', 'initech', 'umbrella'][i % 4] }] });
            }
            await sleep(opts.quick ? 2_000 : 10_000); // scraped meanwhile when on: a report a second
            scraping = false;
            await scraper;
            rss[mode].push({ after: rssMb(worker.pid!), peak: peakRssMb(worker.pid!) });
          } finally {
            worker.kill('SIGKILL');
            await new Promise((r) => worker.once('exit', r));
          }
          round++;
        }
        await connection.close();
        const off = median(rss.off.map((x) => x.after));
        const on = median(rss.on.map((x) => x.after));
        rows.push(
          benchRow(scenario, 'C. worker RSS after 12 backups: growth with metrics on (medians)', {
            ours: on - off,
            unit: 'MB',
            target: atMost(20),
            note: `a fresh worker per run, ${pairs} each way; off ${rss.off.map((x) => x.after.toFixed(0)).join(', ')} MB (peak ${rss.off.map((x) => x.peak).join(', ')} MB); on, scraped every 100 ms, a report a second: ${rss.on.map((x) => x.after.toFixed(0)).join(', ')} MB (peak ${rss.on.map((x) => x.peak).join(', ')} MB)`,
          }),
        );
      } finally {
        await server.stop();
      }
    }
  } finally {
    await engine.close();
    fs.rmSync(work, { recursive: true, force: true });
    await db.drop();
  }
  return rows;
}

if (require.main === module) runScenario(run);
