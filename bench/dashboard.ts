// The dashboard at scale (issue 20, Performance): the overview answers in <= 200 ms (p95) with
// 10,000 tenants and 1M catalog rows. A catalog of 10,000 tenants at scale 1 (quick: 200) with
// 100 restore points each (1M backup rows, 1M run rows), three tenants failing,
// behind the real dashboard server (a Temporal dev server for what the overview asks Temporal),
// requests over HTTP with a token as a browser's would be with a session:
//   /                      the overview: every request judged afresh (no reuse between requests)
//   /tenants?q=<prefix>    a search by tenant id prefix
//   /tenants?page=150      a deep page of the list by id (offset 7,450)
//   /tenants/<id>          one tenant: health, backups page, trend, retention timeline of 100 points
//   /restores, /verifications
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { stringify } from 'yaml';
import { TenantsafeClient } from '../client/client';
import { startDashboardServer } from '../client/server';
import { loadTemporalDevConfig, startTemporalDevServer } from '../client/temporalDevServer';
import { databaseName, loadConfig } from '../lib/config';
import { Engine } from '../lib/engine';
import { withConnection } from '../lib/pg';
import { seedTenantBackups } from '../test/support/catalogSeed';
import { atMost, benchRow, runScenario, scaled, type BenchOptions, type BenchRow } from './report';
import { benchDatabase, percentile } from './support';

const perTenant = 100;
const token = 'bench-operator-token-0123456789abcdef';

const ms = (xs: number[]) => `p50 ${percentile(xs, 50).toFixed(0)} ms, p95 ${percentile(xs, 95).toFixed(0)} ms, max ${Math.max(...xs).toFixed(0)} ms (${xs.length})`;

async function timed(url: string): Promise<{ ms: number; bytes: number }> {
  const t0 = performance.now();
  const res = await fetch(url, { headers: { authorization: `Bearer ${token}` } });
  const body = await res.text();
  if (res.status !== 200) throw new Error(`${url}: ${res.status} ${body.slice(0, 500)}`);
  return { ms: performance.now() - t0, bytes: body.length };
}

export async function run(opts: BenchOptions): Promise<BenchRow[]> {
  const tenants = scaled(opts, 10_000, 200);
  /** requests of the overview; 20 of each other page (quick: 20 and 10) */
  const [requests, others] = opts.quick ? [20, 10] : [50, 20];
  const db = await benchDatabase({ tenants: 12, rows: 20_000 });
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'tenantsafe-bench-dash-'));
  const temporal = await startTemporalDevServer(loadTemporalDevConfig(undefined, { port: 0, uiPort: 0, httpPort: 0, metricsPort: 0, ui: false, dbFilename: null }));
  const configFile = path.join(work, 'tenantsafe.yaml');
  fs.writeFileSync(
    configFile,
    stringify({
      database: { url: db.url },
      storage: { primary: { kind: 'local', path: path.join(work, 'backups') } },
      temporal: { address: temporal.address, taskQueue: 'bench', uiUrl: 'http://127.0.0.1:8233' },
      monitoring: { schedules: { tenantBackup: '24h' } },
      dashboard: { port: 0, users: { bench: { role: 'operator', token: '${BENCH_DASHBOARD_TOKEN}' } } },
    }),
  );
  const config = loadConfig({ path: configFile, env: { ...process.env, BENCH_DASHBOARD_TOKEN: token } });
  const engine = new Engine(config);
  const client = await TenantsafeClient.connect(config.temporal);
  const rows: BenchRow[] = [];
  try {
    const t0 = performance.now();
    const name = databaseName(db.url);
    await seedTenantBackups(engine, { database: name, tenants, backupsPerTenant: perTenant, prefix: 'bulk-', newestHoursAgo: 2, runs: true });
    await withConnection(db.url, (c) =>
      c.query(
        `INSERT INTO tenantsafe.runs (workflow_id, run_id, workflow_type, tenant_id, status, error, error_type, database, started_at, finished_at)
         SELECT 'tenant-backup/' || t, md5(t), 'tenantBackup', t, 'failed', 'storage down', 'StorageUnavailable', $1, now(), now() FROM unnest(ARRAY['acme', 'globex', 'initech']) t`,
        [name],
      ),
    );
    await withConnection(db.url, (c) => c.query('VACUUM ANALYZE tenantsafe.backups, tenantsafe.runs, tenantsafe.tenant_backup_stats'));
    const counts = await withConnection(db.url, (c) => c.query(`SELECT (SELECT count(*) FROM tenantsafe.backups) AS b, (SELECT count(*) FROM tenantsafe.runs) AS r`));
    const catalog = `${tenants} tenants, ${counts.rows[0].b} backup rows, ${counts.rows[0].r} run rows (made in ${((performance.now() - t0) / 1000).toFixed(0)} s)`;

    const server = await startDashboardServer(config, engine, client, { healthReuseMs: 0 });
    try {
      // at full scale: bulk-004217, a search for bulk-0042, page 150 (offset 7,450)
      const one = `bulk-${String(Math.round(tenants * 0.4217)).padStart(6, '0')}`;
      const deep = Math.floor((tenants * 0.75) / 50);
      const pages: [string, string][] = [
        ['overview /', '/'],
        [`search /tenants?q=${one.slice(0, 9)}`, `/tenants?q=${one.slice(0, 9)}`],
        [`deep page /tenants?order=tenant&page=${deep}`, `/tenants?order=tenant&page=${deep}`],
        ['worst first /tenants', '/tenants'],
        [`a tenant /tenants/${one}`, `/tenants/${one}`],
        ['restores /restores', '/restores'],
        ['verifications /verifications', '/verifications'],
      ];
      for (const [label, p] of pages) {
        for (let i = 0; i < 3; i++) await timed(server.url + p); // warm: plans, pools, Temporal facts
        const times: number[] = [];
        let bytes = 0;
        for (let i = 0; i < (p === '/' ? requests : others); i++) {
          const r = await timed(server.url + p);
          times.push(r.ms);
          bytes = r.bytes;
        }
        rows.push(
          benchRow('dashboard', `${label}, p95`, {
            ours: percentile(times, 95),
            unit: 'ms',
            target: p === '/' ? atMost(200) : null,
            note: `${ms(times)}; ${(bytes / 1024).toFixed(0)} KiB${p === '/' ? `; ${catalog}` : ''}`,
          }),
        );
      }
    } finally {
      await server.close();
    }
  } finally {
    await client.close();
    await engine.close();
    await temporal.stop();
    fs.rmSync(work, { recursive: true, force: true });
    await db.drop();
  }
  return rows;
}

if (require.main === module) runScenario(run);
