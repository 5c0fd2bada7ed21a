// The disaster-recovery runbooks run as written, one after the other on the same servers: a
// private primary with its standby built by `standby create`, a real PgBouncer in front, an
// application writing through it. failover.md (kill -9 of the primary mid-writes, approved by a
// second person), failback.md (the old primary rewound as the standby, switched back, the stand-in
// rebuilt), switchover.md (planned, no loss, and the rebuild after it). After each: the writes
// acknowledged through PgBouncer are all on the primary, which streams to a standby again.
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import { randomBytes } from 'node:crypto';
import * as path from 'node:path';
import { Registry } from 'prom-client';
import { computeHealth } from '../lib/monitoring/health';
import { HealthCache, registerHealthMetrics } from '../lib/monitoring/metrics';
import { withConnection } from '../lib/pg';
import { parseMetrics, sampleValue } from './support/prometheus';
import { freePorts } from '../lib/process';
import { physicalBackups, startSourceCluster, stopWalArchiver, type SourceCluster } from './support/cluster';
import { adminUrl } from './support/db';
import { endDrWorkflows, startPgBouncer, startWriter, type TestPgBouncer, type TestWriter } from './support/drStandIns';
import { createTestEnv, type TestEnv } from './support/env';
import { readOff, runRunbook, type StepOutput } from './support/runbook';

describe('disaster-recovery runbooks (failover.md, failback.md, switchover.md)', function () {
  this.timeout(900_000);
  let source: SourceCluster;
  let bouncer: TestPgBouncer;
  let env: TestEnv;
  let writer: TestWriter;
  let standbyPort: number;
  const schema = `tenantsafe_rb_dr_${randomBytes(3).toString('hex')}`;
  const primaryAddress = () => `127.0.0.1:${source.cluster.port}`;
  const standbyAddress = () => `127.0.0.1:${standbyPort}`;
  const standbyDir = () => path.join(source.dir, 'standby');

  before(async function () {
    this.timeout(180_000);
    // wal_log_hints: the old primary can be rewound after the failover
    source = await startSourceCluster('app', { wal_log_hints: 'on' });
    await source.cluster.psql('CREATE TABLE ids (id bigint PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp())', 'app');
    bouncer = await startPgBouncer(path.join(source.dir, 'pgbouncer'), 'app', source.cluster);
    [standbyPort] = await freePorts('127.0.0.1', 1);
    env = await createTestEnv('local', {
      db: source.db,
      configure: (doc, dir) => {
        doc.catalog = { url: adminUrl, schema };
        physicalBackups(doc, dir, source);
        doc.dr = {
          targets: { rpo: '5s', rto: '60s' },
          standby: { dataDir: standbyDir(), host: '127.0.0.1', port: standbyPort, synchronous: true },
          primaryDataDir: source.cluster.dataDir,
          endpoint: { adminUrl: bouncer.adminUrl, databasesFile: bouncer.databasesFile, database: 'app', url: bouncer.url('app') },
          failover: { approval: 'required', probes: 3, probeInterval: '300ms', probeTimeout: '1s' },
          drill: { interval: 'off' },
        };
      },
    });
    await env.startWorker();
    writer = startWriter(bouncer.url('app'));
    await writer.moreAcknowledged(20);
  });

  after(async function () {
    this.timeout(300_000);
    await writer?.stop();
    if (env) await endDrWorkflows(env);
    if (env) await stopWalArchiver(env);
    await env?.close();
    await bouncer?.stop();
    await withConnection(adminUrl, (c) => c.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`)).catch(() => undefined);
    await source?.remove();
  });

  /** Every id the application saw acknowledged is on the server at `address`, which takes writes. */
  async function acknowledgedAllOn(address: string): Promise<void> {
    await writer.moreAcknowledged(20);
    const acknowledged = [...writer.acknowledged];
    const url = `postgres://postgres@${address}/app`;
    const [present, recovering] = await withConnection(url, async (c) => [
      new Set((await c.query<{ id: string }>('SELECT id FROM ids')).rows.map((r) => Number(r.id))),
      (await c.query<{ r: boolean }>('SELECT pg_is_in_recovery() AS r')).rows[0].r,
    ] as const);
    assert.equal(recovering, false, `${address} is the primary`);
    const lost = acknowledged.filter((id) => !present.has(id));
    assert.deepEqual(lost, [], `acknowledged ids missing on ${address}`);
  }

  /**
   * After a rebuild the standby catches up before it streams within maxLag; an operator runs
   * `standby status` again until it does. Fails with the standby's server log when it never does.
   */
  async function streamsFrom(primary: string, standbyDataDir: string): Promise<void> {
    const deadline = Date.now() + 90_000;
    for (;;) {
      const streaming = await withConnection(`postgres://postgres@${primary}/app`, async (c) =>
        (await c.query<{ n: number }>(`SELECT count(*)::int AS n FROM pg_stat_replication WHERE state = 'streaming' AND replay_lsn IS NOT NULL AND pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn) < 1048576`)).rows[0].n,
      ).catch(() => 0);
      if (streaming > 0) return;
      if (Date.now() > deadline) {
        const log = fs.readFileSync(path.join(standbyDataDir, 'log', 'server.log'), 'utf8').split('\n').slice(-40).join('\n');
        assert.fail(`the standby in ${standbyDataDir} does not stream from ${primary}:\n${log}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
  }
  const afterRebuild = (primary: () => string, standbyDataDir: () => string) => async (o: StepOutput) => {
    if (o.step.command.startsWith('tenantsafe standby rebuild')) await streamsFrom(primary(), standbyDataDir());
  };

  const fill = {
    requester: () => 'alice',
    approver: () => 'bob',
    reason: () => 'primary host lost',
    'failover-id': (earlier: StepOutput[]) => readOff(earlier, /^Failover (\S+)/m),
  };

  it('failover.md: standby built and watched, the primary killed, failover asked, approved by someone else, writes go on', async () => {
    const outputs = await runRunbook('failover', {
      configFile: env.configFile,
      fill,
      after: async (o) => {
        // the incident, once the standby is in place and watched
        if (o.step.command === 'tenantsafe standby status') await source.cluster.crash();
      },
    });
    const final = outputs.at(-1)!.stdout;
    assert.match(final, /: done/);
    // a commit the crash caught between the primary's WAL and the standby counts as lost WAL, though no client saw it acknowledged
    assert.match(final, /RTO \d+ ms, data loss \d+ bytes.*targets met/);
    await acknowledgedAllOn(standbyAddress());
  });

  it('failback.md: the old primary rewound as the standby, switched back with no loss, the stand-in rebuilt', async () => {
    const outputs = await runRunbook('failback', {
      configFile: env.configFile,
      fill: {
        ...fill,
        'old-primary-dir': () => source.cluster.dataDir,
        'new-primary': () => standbyAddress(),
        'old-primary': () => primaryAddress(),
        'standby-dir': () => standbyDir(),
      },
      after: async (o) => {
        if (o.step.command.includes('--data-dir <old-primary-dir>')) await streamsFrom(standbyAddress(), source.cluster.dataDir);
        if (o.step.command.includes('--data-dir <standby-dir>')) await streamsFrom(primaryAddress(), standbyDir());
      },
    });
    assert.match(outputs[0].stdout, /is a standby of 127\.0\.0\.1:\d+ .*\(rewind/);
    assert.match(outputs[2].stdout, /Switchover \S+ of app: done/);
    assert.match(outputs.at(-1)!.stdout, /: streaming/);
    assert.match(outputs.at(-1)!.stdout, new RegExp(`roles: primary ${primaryAddress()}, standby ${standbyAddress()} streaming`));
    await acknowledgedAllOn(primaryAddress());
  });

  it('switchover.md: planned, no loss, the old primary rebuilt as the standby', async () => {
    const outputs = await runRunbook('switchover', {
      configFile: env.configFile,
      fill: { ...fill, 'old-primary-dir': () => source.cluster.dataDir, 'new-primary': () => standbyAddress() },
      after: afterRebuild(standbyAddress, () => source.cluster.dataDir),
    });
    assert.match(outputs[1].stdout, /data loss 0/);
    assert.match(outputs.at(-1)!.stdout, new RegExp(`roles: primary ${standbyAddress()}, standby ${primaryAddress()} streaming`));
    await acknowledgedAllOn(standbyAddress());
    const events = await env.engine.catalog.listDrEvents({ database: 'app' });
    assert.deepEqual(events.map((e) => `${e.kind}:${e.status}`).sort(), ['failover:done', 'switchover:done', 'switchover:done']);
    // what they achieved, as Prometheus reads it
    const registry = new Registry();
    registerHealthMetrics(registry, new HealthCache(() => computeHealth(env.engine), 60_000));
    const samples = parseMetrics(await registry.metrics());
    const failoverRto = sampleValue(samples, 'tenantsafe_dr_failover_achieved_seconds', { database: 'app', kind: 'failover', objective: 'rto' });
    assert.ok(failoverRto !== undefined && failoverRto > 0 && failoverRto <= 60, `failover RTO ${failoverRto}`);
    assert.equal(sampleValue(samples, 'tenantsafe_dr_failover_met_targets', { database: 'app', kind: 'switchover' }), 1);
  });
});
