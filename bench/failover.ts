// Failover and switchover through a real PgBouncer, under an application writing ids through it.
//   failover: kill -9 of the primary, then `tenantsafe failover` with the automatic policy and the
//     default probes (3, 1 s apart): RTO as the workflow measures it (first failed probe → first
//     write through the endpoint) and as the writer saw it (kill → its next acknowledged write, the
//     CLI's start included: what a user waits for);
//     target ≤ 10 s, median of 5
//   switchover: `tenantsafe switchover --wait`: the time clients waited (pause → first write) and
//     the acknowledged ids missing on the new primary; target ≤ 5 s with 0 loss, median of 5
// Rounds: 5 (quick: 1); nothing here grows with --scale.
// Between rounds the old primary is rebuilt as the new primary's standby with the tests' stand-in
// (pg_basebackup; `standby rebuild` is the product's way) and the catalog's roles say so.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Engine } from '../lib/engine';
import { withConnection } from '../lib/pg';
import type { PrivateCluster } from '../lib/postgres/cluster';
import { startSourceCluster } from '../test/support/cluster';
import { startPgBouncer, startTestStandby, startWriter } from '../test/support/drStandIns';
import { atMost, benchRow, roundsOf, runScenario, type BenchOptions, type BenchRow } from './report';
import { benchStack, median } from './support';

const slot = 'tenantsafe_standby';
const catalogUrl = process.env.BENCH_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

function cli(configFile: string, args: string[]): Record<string, any> {
  const out = execFileSync(process.execPath, [path.join(__dirname, '..', 'bin', 'tenantsafe'), '--config', configFile, ...args, '--json'], { encoding: 'utf8', maxBuffer: 16 << 20 });
  return JSON.parse(out);
}

async function idsOn(cluster: PrivateCluster): Promise<Set<number>> {
  return new Set((await cluster.psql<{ id: string }>('SELECT id FROM ids', 'app')).map((r) => Number(r.id)));
}

export async function run(opts: BenchOptions): Promise<BenchRow[]> {
  const rounds = roundsOf(opts, 5, 1);
  const source = await startSourceCluster('app');
  let primary = source.cluster;
  await primary.psql('CREATE TABLE ids (id bigint PRIMARY KEY)', 'app');
  let standby = await startTestStandby(primary, path.join(source.dir, 'node-b'), { slot, synchronous: false });
  const bouncer = await startPgBouncer(path.join(source.dir, 'pgbouncer'), 'app', primary);
  const schema = `tenantsafe_bench_dr_${process.pid}`;
  const stack = await benchStack(
    { url: primary.url('app'), drop: async () => undefined },
    {
      config: {
        catalog: { url: catalogUrl, schema },
        dr: {
          targets: { rto: '10s', rpo: '5s' },
          standby: { dataDir: standby.dataDir, port: standby.port, slot },
          primaryDataDir: primary.dataDir,
          endpoint: { adminUrl: bouncer.adminUrl, databasesFile: bouncer.databasesFile, database: 'app', url: bouncer.url('app') },
          failover: { approval: 'automatic' },
          drill: { interval: 'off' },
        },
      },
    },
  );
  const engine = new Engine(stack.config);
  const writer = startWriter(bouncer.url('app'));
  const failovers: { rtoMs: number; clientMs: number; lossBytes: number | null; commandMs: number }[] = [];
  const switchovers: { durationMs: number; commandMs: number; lost: number }[] = [];
  /** the old primary, stopped and wiped, comes back as the standby of the new one; the catalog's roles say so */
  const rebuild = async (oldPrimary: PrivateCluster, newPrimary: PrivateCluster, dir: string) => {
    await oldPrimary.remove();
    const rebuilt = await startTestStandby(newPrimary, dir, { slot, synchronous: false });
    await engine.catalog.setDrRoles({
      database: 'app',
      primary: { host: '127.0.0.1', port: newPrimary.port, dataDir: newPrimary.dataDir },
      standby: { host: '127.0.0.1', port: rebuilt.port, dataDir: rebuilt.dataDir },
      standbyState: 'streaming',
      changedBy: 'bench/rebuild',
    });
    return rebuilt;
  };
  try {
    await writer.moreAcknowledged(100);
    for (let i = 0; i < rounds; i++) {
      // failover: kill -9, then the command at once (an operator's or a monitor's reaction is not counted)
      await primary.crash();
      // from here on, every acknowledgement comes from the new primary
      const killedAt = Date.now();
      const acknowledgedAtKill = writer.acknowledged.length;
      const t0 = performance.now();
      const result = cli(stack.configFile, ['failover', '--reason', `bench round ${i}`, '--by', 'bench', '--wait']);
      const commandMs = performance.now() - t0;
      await writer.moreAcknowledged(1);
      const clientMs = writer.acknowledgedAt[acknowledgedAtKill] - killedAt;
      failovers.push({ rtoMs: result.rtoMs, clientMs, lossBytes: result.dataLossBytes, commandMs });
      const oldPrimaryDir = primary.dataDir;
      [primary, standby] = [standby, await rebuild(primary, standby, oldPrimaryDir)];
      await writer.moreAcknowledged(50);

      // switchover: planned, nothing may be lost
      const s0 = performance.now();
      const sw = cli(stack.configFile, ['switchover', '--by', 'bench', '--wait']);
      const switchCommandMs = performance.now() - s0;
      await writer.moreAcknowledged(50);
      const acknowledged = [...writer.acknowledged];
      const onNew = await idsOn(standby);
      switchovers.push({ durationMs: sw.durationMs, commandMs: switchCommandMs, lost: acknowledged.filter((id) => !onNew.has(id)).length });
      const demotedDir = primary.dataDir;
      [primary, standby] = [standby, await rebuild(primary, standby, demotedDir)];
      await writer.moreAcknowledged(50);
      console.error(`bench: round ${i + 1}/${rounds}: failover RTO ${result.rtoMs} ms, switchover ${sw.durationMs} ms`);
    }
  } finally {
    await writer.stop();
    await engine.close();
    await stack.stop();
    await bouncer.stop();
    await withConnection(catalogUrl, (c) => c.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`));
    await source.remove();
  }
  fs.rmSync(source.dir, { recursive: true, force: true });
  const s = (xs: number[]) => median(xs) / 1000;
  const list = (xs: number[]) => `[${xs.map((x) => (x / 1000).toFixed(2)).join(', ')}]`;
  return [
    benchRow('failover', 'RTO: first failed probe → first write through PgBouncer (workflow), median', {
      ours: s(failovers.map((f) => f.rtoMs)),
      unit: 's',
      target: atMost(10),
      note: `kill -9 of the primary, \`failover --wait\` with the automatic policy and the default probes; rounds ${list(failovers.map((f) => f.rtoMs))}; data loss (asynchronous standby) ${failovers.map((f) => String(f.lossBytes)).join(', ')} bytes`,
    }),
    benchRow('failover', 'kill -9 → the writer\'s next acknowledged write, median', { ours: s(failovers.map((f) => f.clientMs)), unit: 's', note: `what the application waits for, the CLI's start included: ${list(failovers.map((f) => f.clientMs))}; command → done ${list(failovers.map((f) => f.commandMs))}` }),
    benchRow('switchover', 'clients held: pause → first write on the new primary, median', {
      ours: s(switchovers.map((x) => x.durationMs)),
      unit: 's',
      target: atMost(5),
      note: `\`switchover --wait\`; rounds ${list(switchovers.map((x) => x.durationMs))}; command → done ${list(switchovers.map((x) => x.commandMs))}`,
    }),
    benchRow('switchover', 'acknowledged ids missing on the new primary, all rounds', { ours: switchovers.reduce((n, x) => n + x.lost, 0), unit: 'count', target: atMost(0) }),
  ];
}

if (require.main === module) runScenario(run);
