// Tenant backup vs a raw snapshot COPY of the same rows, measured in the same run.
//   ratio = tenant backup time (workflow start → result, through a real worker) / raw COPY time
//   target ≤ 1.5; and the worker's peak RSS during the backup, target ≤ 300 MB.
// The raw side: one REPEATABLE READ transaction, each owned table's tenant rows with
// COPY (SELECT …) TO STDOUT into a plain file, one table after another.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Client as TemporalClient, Connection } from '@temporalio/client';
import { to as copyTo } from 'pg-copy-streams';
import { connect, withConnection } from '../lib/pg';
import { discoverTenancy, tenantRowsQuery, type TenancyPlan } from '../lib/tenancy';
import type { tenantBackup } from '../workflows';
import { benchStack, median, peakRssMb, printTable } from './support';

const tenantId = 'whale';
const rounds = Number(process.env.BENCH_ROUNDS ?? 3);

async function rawSnapshotCopy(url: string, plan: TenancyPlan, dir: string): Promise<{ seconds: number; bytes: number }> {
  fs.mkdirSync(dir, { recursive: true });
  const c = await connect(url);
  const t0 = performance.now();
  await c.query('BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY');
  let bytes = 0;
  for (const t of plan.tables) {
    const file = path.join(dir, `${t.key}.copy`);
    await pipeline(c.query(copyTo(`COPY (${tenantRowsQuery(plan, t, tenantId)}) TO STDOUT`)), fs.createWriteStream(file));
    bytes += fs.statSync(file).size;
  }
  await c.query('COMMIT');
  const seconds = (performance.now() - t0) / 1000;
  await c.end();
  fs.rmSync(dir, { recursive: true, force: true });
  return { seconds, bytes };
}

async function main(): Promise<void> {
  const stack = await benchStack({ tenants: 5, rows: 20_000, extraTenants: [{ tenantId, rows: 1_000_000 }] });
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'tenantsafe-bench-raw-'));
  const raw: number[] = [];
  const backup: number[] = [];
  let rawBytes = 0;
  let result: Awaited<ReturnType<typeof tenantBackup>> | undefined;
  let rssBeforeBackups = NaN;
  let rssPeak = NaN;
  try {
    const plan = await withConnection(stack.dbUrl, (c) => discoverTenancy(c, stack.config.tenancy));
    const connection = await Connection.connect({ address: stack.config.temporal.address });
    const client = new TemporalClient({ connection });
    rssBeforeBackups = peakRssMb(stack.worker.pid!);
    for (let i = 0; i < rounds; i++) {
      await withConnection(stack.dbUrl, (c) => c.query('CHECKPOINT'));
      const r = await rawSnapshotCopy(stack.dbUrl, plan, path.join(work, 'raw'));
      raw.push(r.seconds);
      rawBytes = r.bytes;
      await withConnection(stack.dbUrl, (c) => c.query('CHECKPOINT'));
      const t0 = performance.now();
      result = await client.workflow.execute<typeof tenantBackup>('tenantBackup', { taskQueue: stack.config.temporal.taskQueue, workflowId: `bench-${i}`, args: [{ tenantId }] });
      backup.push((performance.now() - t0) / 1000);
    }
    rssPeak = peakRssMb(stack.worker.pid!);
    await connection.close();
  } finally {
    await stack.stop();
    fs.rmSync(work, { recursive: true, force: true });
  }

  const ratio = median(backup) / median(raw);
  printTable('tenant backup vs raw snapshot COPY', [
    ['tenant rows', String(result!.rows)],
    ['COPY text', `${(rawBytes / 2 ** 20).toFixed(1)} MiB`],
    ['backup stored (gzip)', `${(result!.bytes / 2 ** 20).toFixed(1)} MiB`],
    ['raw snapshot COPY (median)', `${median(raw).toFixed(2)} s   [${raw.map((s) => s.toFixed(2)).join(', ')}]`],
    ['tenant backup workflow (median)', `${median(backup).toFixed(2)} s   [${backup.map((s) => s.toFixed(2)).join(', ')}]`],
    ['ratio (target <= 1.5)', ratio.toFixed(2)],
    ['worker peak RSS before backups', `${rssBeforeBackups} MB`],
    ['worker peak RSS (target <= 300 MB)', `${rssPeak} MB`],
    ['cores', String(os.cpus().length)],
  ]);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
