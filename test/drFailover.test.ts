// Failover and switchover end to end (issue 21): private primary and standby clusters, a real
// PgBouncer in front of them, an application writing ids through it, the CLI and a worker.
// The catalog lives on the main server (127.0.0.1:5432), never on a cluster that gets killed.
import { strict as assert } from 'node:assert';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { endpointTarget } from '../lib/dr/endpoint';
import { judgeFailover, type LossEstimate, type ProbeOutcome, type StandbyPosition } from '../lib/dr/failover';
import { approvalRefusal } from '../lib/restore/rules';
import { withConnection } from '../lib/pg';
import type { PrivateCluster } from '../lib/postgres/cluster';
import { startSourceCluster, type SourceCluster } from './support/cluster';
import { adminUrl } from './support/db';
import { endDrWorkflows, startPgBouncer, startTestStandby, startWriter, type TestPgBouncer, type TestWriter } from './support/drStandIns';
import { createTestEnv, dbPassword, runCli, type TestEnv } from './support/env';
import { drWorkflowIds } from '../workflows/messages';

interface Fixture {
  source: SourceCluster;
  primary: PrivateCluster;
  standby: PrivateCluster;
  bouncer: TestPgBouncer;
  env: TestEnv;
  writer: TestWriter;
  close(): Promise<void>;
}

const slot = 'tenantsafe_standby';

/** A primary with a table of ids, its standby, PgBouncer in front, a worker, and the writer already writing. */
async function drFixture(opts: { synchronous: boolean; approval: 'required' | 'automatic'; maxLag?: string; rto?: string }): Promise<Fixture> {
  const source = await startSourceCluster('app');
  const primary = source.cluster;
  await primary.psql('CREATE TABLE ids (id bigint PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp())', 'app');
  await primary.psql('CREATE TABLE ballast (b text)', 'app');
  const standby = await startTestStandby(primary, path.join(source.dir, 'standby'), { slot, synchronous: opts.synchronous });
  const bouncer = await startPgBouncer(path.join(source.dir, 'pgbouncer'), 'app', primary);
  const schema = `tenantsafe_dr_${randomBytes(3).toString('hex')}`;
  const env = await createTestEnv('local', {
    db: source.db,
    configure: (doc) => {
      doc.catalog = { url: adminUrl, schema };
      doc.dr = {
        targets: { rpo: '5s', rto: opts.rto ?? '30s' },
        standby: { dataDir: standby.dataDir, host: '127.0.0.1', port: standby.port, slot, synchronous: opts.synchronous, maxLag: opts.maxLag ?? '16MB' },
        primaryDataDir: primary.dataDir,
        endpoint: { adminUrl: bouncer.adminUrl, databasesFile: bouncer.databasesFile, database: 'app', url: bouncer.url('app') },
        failover: { approval: opts.approval, probes: 3, probeInterval: '200ms', probeTimeout: '1s', approvalTimeout: '10m' },
        drill: { interval: 'off' },
      };
    },
  });
  await env.startWorker();
  const writer = startWriter(bouncer.url('app'));
  await writer.moreAcknowledged(50);
  return {
    source,
    primary,
    standby,
    bouncer,
    env,
    writer,
    async close() {
      await writer.stop();
      await endDrWorkflows(env);
      await env.close();
      await bouncer.stop();
      await withConnection(adminUrl, (c) => c.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`));
      await source.remove();
    },
  };
}

/** The audit log's entries (oldest first) about one failover or switchover, as [action, by, outcome]. */
async function auditOf(env: TestEnv, key: 'failoverId' | 'switchoverId', id: string): Promise<{ row: [string, string, string]; details: Record<string, unknown> }[]> {
  const r = await runCli(['audit', 'list', '--limit', '1000', '--json'], { configFile: env.configFile });
  assert.equal(r.code, 0, r.stderr);
  const entries = (r.json() as { action: string; by: string; outcome: string; subject: Record<string, string>; details: Record<string, unknown> }[]).reverse();
  return entries.filter((e) => e.subject[key] === id).map((e) => ({ row: [e.action, e.by, e.outcome], details: e.details }));
}

async function idsOn(cluster: PrivateCluster): Promise<Set<number>> {
  return new Set((await cluster.psql<{ id: string }>('SELECT id FROM ids', 'app')).map((r) => Number(r.id)));
}

describe('failover through PgBouncer under steady writes (synchronous standby, approval required)', function () {
  this.timeout(300_000);
  let f: Fixture;
  let failoverId: string;
  let acknowledgedBeforeKill: number;

  before(async () => {
    f = await drFixture({ synchronous: true, approval: 'required' });
  });
  after(async () => {
    await f?.close();
  });

  it('refuses a failover while the primary answers, changing nothing', async () => {
    const r = await runCli(['failover', '--reason', 'drill', '--by', 'alice', '--json'], { configFile: f.env.configFile });
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /FailoverRefused/);
    assert.match(r.stderr, /answered every one of the probes.*HINT:.*switchover/s);
    assert.equal(endpointTarget(f.env.config.dr.endpoint!)?.port, f.primary.port);
    assert.equal((await f.standby.psql<{ r: boolean }>('SELECT pg_is_in_recovery() AS r'))[0].r, true);
  });

  it('after kill -9 of the primary, waits for approval by someone else, and refuses a second failover meanwhile', async () => {
    await f.primary.crash();
    acknowledgedBeforeKill = f.writer.acknowledged.length;
    const r = await runCli(['failover', '--reason', 'primary host lost', '--by', 'alice', '--json'], { configFile: f.env.configFile });
    assert.equal(r.code, 0, r.stderr);
    const out = r.json();
    assert.equal(out.state, 'awaiting-approval');
    assert.match(out.failoverId, /^\d{8}-\d{6}X-[0-9a-f]{6}$/);
    assert.ok(out.primaryLostAt);
    // a synchronous standby lacks at most the commit the crash caught waiting for it (never acknowledged: checked below)
    assert.ok(out.lossEstimate.bytes < 8192, `a synchronous standby lacks ${out.lossEstimate.bytes} bytes`);
    failoverId = out.failoverId;

    const second = await runCli(['failover', '--reason', 'again', '--by', 'carol'], { configFile: f.env.configFile });
    assert.equal(second.code, 2, second.stderr);
    assert.match(second.stderr, new RegExp(`already running \\(${failoverId}, awaiting-approval\\)`));

    const self = await runCli(['failover', 'approve', failoverId, '--by', 'alice'], { configFile: f.env.configFile });
    assert.equal(self.code, 2);
    assert.match(self.stderr, /alice requested failover .* cannot approve it/);
    const unknown = await runCli(['failover', 'approve', '20200101-000000X-000000', '--by', 'bob'], { configFile: f.env.configFile });
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /no failover 20200101-000000X-000000/);
    // nothing changed while it waits: the endpoint still names the old primary, the standby is one
    assert.equal(endpointTarget(f.env.config.dr.endpoint!)?.port, f.primary.port);
    assert.equal((await f.standby.psql<{ r: boolean }>('SELECT pg_is_in_recovery() AS r'))[0].r, true);
  });

  it('once approved, the writes go on through the same PgBouncer address, no acknowledged id lost, RTO within target', async () => {
    const r = await runCli(['failover', 'approve', failoverId, '--by', 'bob', '--wait', '--json'], { configFile: f.env.configFile, timeoutMs: 180_000 });
    assert.equal(r.code, 0, r.stderr);
    const result = r.json();
    assert.equal(result.state, 'done');
    assert.ok(result.rtoMs > 0 && result.rtoMs <= 30_000, `RTO ${result.rtoMs} ms`);
    // as the estimate: at most the commit the crash caught waiting for the standby (never acknowledged: no id lost, below)
    assert.ok(result.dataLossBytes < 8192, `the new primary lacks ${result.dataLossBytes} bytes`);
    assert.equal(result.metTargets, true);
    console.log(`      failover RTO (approval included): ${result.rtoMs} ms`);

    await f.writer.moreAcknowledged(50);
    // the writer goes on: what it acknowledged before the read is what the read must hold
    const acknowledged = [...f.writer.acknowledged];
    assert.ok(acknowledged.length > acknowledgedBeforeKill + 50);
    const onNewPrimary = await idsOn(f.standby);
    const lost = acknowledged.filter((id) => !onNewPrimary.has(id));
    assert.deepEqual(lost, [], 'every acknowledged id is on the new primary');
    assert.equal(endpointTarget(f.env.config.dr.endpoint!)?.port, f.standby.port);

    const [event] = await f.env.engine.catalog.listDrEvents({ kind: 'failover' });
    assert.equal(event.status, 'done');
    assert.equal(event.rtoMs, result.rtoMs);
    assert.equal(event.dataLossBytes, result.dataLossBytes);
    assert.equal(event.metTargets, true);
    assert.deepEqual((event.details as { approvedBy: string[] }).approvedBy, ['bob']);
    const roles = await f.env.engine.catalog.getDrRoles('app');
    assert.equal(roles?.primary.port, f.standby.port);
    assert.equal(roles?.standby?.port, f.primary.port);
    assert.equal(roles?.standbyState, 'fenced');

    const status = await runCli(['failover', 'status', failoverId, '--json'], { configFile: f.env.configFile });
    assert.equal(status.json().state, 'done');
    // the audit log: who asked, the requester refused by the CLI, who approved, the outcome with its RTO
    const audit = await auditOf(f.env, 'failoverId', failoverId);
    assert.deepEqual(audit.map((e) => e.row), [
      ['failover.request', 'alice', 'accepted'],
      ['failover.approve', 'alice', 'refused'],
      ['failover.approve', 'bob', 'accepted'],
      ['failover.outcome', 'tenantsafe', 'done'],
    ]);
    assert.equal(audit[0].details.reason, 'primary host lost');
    assert.equal(audit[1].details.via, 'cli');
    assert.equal(audit[3].details.rtoMs, result.rtoMs);
    // core rule 1: the URLs (with their passwords) stay in the config, out of history
    const raw = JSON.stringify(await f.env.temporal.workflow.getHandle(event.workflowId, event.runId).fetchHistory());
    const text = raw + [...raw.matchAll(/"data":"([A-Za-z0-9+/=]+)"/g)].map((m) => Buffer.from(m[1], 'base64').toString('utf8')).join('\n');
    assert.match(text, /awaiting-approval|lossEstimate|firstFailedAt/, 'history was decoded');
    assert.ok(!text.includes(dbPassword));
  });

  it('fencing: the old primary started again receives no writes through the endpoint', async () => {
    await f.primary.start();
    const before = await idsOn(f.primary);
    await f.writer.moreAcknowledged(30);
    const latest = f.writer.acknowledged.slice(-30);
    const after = await idsOn(f.primary);
    assert.equal(after.size, before.size, 'no id reached the old primary');
    const onNewPrimary = await idsOn(f.standby);
    assert.ok(latest.every((id) => onNewPrimary.has(id)));
  });

  it('refuses an approval for a failover that is over, and a failover to a standby that is not replicating', async () => {
    const late = await runCli(['failover', 'approve', failoverId, '--by', 'dave'], { configFile: f.env.configFile });
    assert.equal(late.code, 2);
    assert.match(late.stderr, /is done, not awaiting approval/);
    assert.deepEqual((await auditOf(f.env, 'failoverId', failoverId)).at(-1)?.row, ['failover.approve', 'dave', 'refused']);
    const portBefore = endpointTarget(f.env.config.dr.endpoint!)?.port;
    const again = await runCli(['failover', '--reason', 'again', '--by', 'alice', '--force', '--json'], { configFile: f.env.configFile });
    assert.equal(again.code, 2, again.stderr);
    assert.match(again.stderr, /is not replicating/);
    assert.equal(endpointTarget(f.env.config.dr.endpoint!)?.port, portBefore);
  });
});

describe('failover with an asynchronous standby and the automatic policy', function () {
  this.timeout(300_000);
  let f: Fixture;

  before(async () => {
    f = await drFixture({ synchronous: false, approval: 'automatic', maxLag: '256kB' });
  });
  after(async () => {
    await f?.close();
  });

  it('refuses a standby too far behind with the loss estimate, and with --force fails over and reports the loss', async () => {
    // the standby stops receiving while the primary goes on: then the primary dies
    await f.standby.stop('fast');
    await f.writer.moreAcknowledged(100);
    await f.primary.psql(`INSERT INTO ballast SELECT repeat(md5(g::text), 32) FROM generate_series(1, 1000) g`, 'app');
    await f.writer.moreAcknowledged(20);
    await f.primary.crash();
    await f.standby.start();

    const r = await runCli(['failover', '--reason', 'primary lost', '--by', 'alice', '--json'], { configFile: f.env.configFile });
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /FailoverRefused/);
    const estimate = /The standby is (\d+) bytes of WAL behind the primary \(dr\.standby\.maxLag 262144\), about (\d+) ms of commits/.exec(r.stderr);
    assert.ok(estimate, r.stderr);
    assert.ok(Number(estimate[1]) > 262_144);
    assert.equal(endpointTarget(f.env.config.dr.endpoint!)?.port, f.primary.port, 'nothing changed');
    assert.equal((await f.standby.psql<{ r: boolean }>('SELECT pg_is_in_recovery() AS r'))[0].r, true);

    const forced = await runCli(['failover', '--reason', 'primary lost', '--by', 'alice', '--force', '--wait', '--json'], { configFile: f.env.configFile, timeoutMs: 180_000 });
    assert.equal(forced.code, 0, forced.stderr);
    const result = forced.json();
    assert.equal(result.state, 'done');
    assert.ok(result.dataLossBytes > 262_144, `loss ${result.dataLossBytes}`);
    assert.ok(result.rpoMs > 0, `RPO ${result.rpoMs} ms`);
    assert.ok(result.rtoMs <= 30_000, `RTO ${result.rtoMs} ms`);

    await f.writer.moreAcknowledged(30);
    const acknowledged = [...f.writer.acknowledged];
    const onNewPrimary = await idsOn(f.standby);
    const lost = acknowledged.filter((id) => !onNewPrimary.has(id));
    assert.ok(lost.length > 0, 'the writes the standby never received are lost');
    console.log(`      async failover: RTO ${result.rtoMs} ms, loss ${result.dataLossBytes} bytes / ${result.rpoMs} ms, ${lost.length} acknowledged ids lost`);
    const [event] = await f.env.engine.catalog.listDrEvents({ kind: 'failover' });
    assert.equal(event.dataLossBytes, result.dataLossBytes);
    assert.equal(event.rpoMs, result.rpoMs);
    assert.equal(event.metTargets, result.rpoMs <= 5_000 && result.rtoMs <= 30_000);
    // the refused attempt is on record too
    const refused = (await f.env.engine.catalog.listDrEvents({ kind: 'failover' })).filter((e) => e.status === 'refused');
    assert.equal(refused.length, 1);
    assert.match(refused[0].error ?? '', /bytes of WAL behind/);
  });
});

describe('a failover cancelled while it waits for approval', function () {
  this.timeout(300_000);
  let f: Fixture;

  before(async () => {
    f = await drFixture({ synchronous: false, approval: 'required' });
  });
  after(async () => {
    await f?.close();
  });

  it('is recorded cancelled, not failed, in the DR events and the audit log, and changes nothing', async () => {
    await f.primary.crash();
    const r = await runCli(['failover', '--reason', 'primary host lost', '--by', 'alice', '--json'], { configFile: f.env.configFile });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.json().state, 'awaiting-approval');
    const failoverId: string = r.json().failoverId;

    const handle = f.env.temporal.workflow.getHandle(drWorkflowIds.failover('app'));
    await handle.cancel();
    await assert.rejects(handle.result(), (err: Error) => /cancel/i.test(`${err.message} ${(err.cause as Error | undefined)?.message ?? ''}`));

    const [event] = await f.env.engine.catalog.listDrEvents({ kind: 'failover' });
    assert.equal(event.status, 'cancelled');
    assert.deepEqual((await auditOf(f.env, 'failoverId', failoverId)).at(-1)?.row, ['failover.outcome', 'tenantsafe', 'cancelled']);
    assert.equal(endpointTarget(f.env.config.dr.endpoint!)?.port, f.primary.port, 'the endpoint still names the old primary');
    assert.equal((await f.standby.psql<{ r: boolean }>('SELECT pg_is_in_recovery() AS r'))[0].r, true, 'the standby is still one');
  });
});

describe('switchover through PgBouncer', function () {
  this.timeout(300_000);
  let f: Fixture;

  before(async () => {
    f = await drFixture({ synchronous: false, approval: 'required' });
  });
  after(async () => {
    await f?.close();
  });

  it('moves the writes to the standby with no acknowledged id lost, within 5 s, the old primary left read-only', async () => {
    const r = await runCli(['switchover', '--by', 'alice', '--wait', '--json'], { configFile: f.env.configFile, timeoutMs: 120_000 });
    assert.equal(r.code, 0, r.stderr);
    const result = r.json();
    assert.equal(result.state, 'done');
    assert.equal(result.dataLossBytes, 0);
    assert.ok(result.durationMs <= 5_000, `switchover ${result.durationMs} ms`);
    console.log(`      switchover: clients waited ${result.durationMs} ms`);
    await f.writer.moreAcknowledged(30);
    const acknowledged = [...f.writer.acknowledged];
    const onNewPrimary = await idsOn(f.standby);
    assert.deepEqual(acknowledged.filter((id) => !onNewPrimary.has(id)), []);
    const onOld = await idsOn(f.primary);
    assert.ok(acknowledged.slice(-30).every((id) => !onOld.has(id)), 'the old primary took none of the later writes');
    assert.equal((await f.primary.psql<{ ro: string }>('SHOW default_transaction_read_only', 'app').then((rows) => rows[0] as unknown as Record<string, string>)).default_transaction_read_only, 'on');
    const [event] = await f.env.engine.catalog.listDrEvents({ kind: 'switchover' });
    assert.equal(event.status, 'done');
    assert.equal(event.dataLossBytes, 0);
    assert.equal((await f.env.engine.catalog.getDrRoles('app'))?.standbyState, 'needs-rebuild');
    const audit = await auditOf(f.env, 'switchoverId', result.switchoverId);
    assert.deepEqual(audit.map((e) => e.row), [
      ['switchover.request', 'alice', 'accepted'],
      ['switchover.outcome', 'tenantsafe', 'done'],
    ]);
    assert.equal(audit[1].details.durationMs, result.durationMs);
  });
});

describe('failover rules', () => {
  const plan = { maxLagBytes: 1000, standbyState: 'streaming' as const, primary: { host: 'a', port: 1, dataDir: null }, standby: { host: 'b', port: 2, dataDir: null } };
  const lost: ProbeOutcome = { lost: true, firstFailedAt: '2026-12-06T07:00:00Z', lastLsn: null, failures: ['x', 'y', 'z'] };
  const standby: StandbyPosition = { inRecovery: true, streaming: false, lsn: '0/3000000', lastReplayAt: null };
  const loss = (bytes: number | null): LossEstimate => ({ bytes, ms: bytes === null ? null : 40, source: 'wal-on-disk', oldPrimaryLsn: null, standbyLsn: '0/3000000' });
  const refusal = (fn: () => void) => {
    try {
      fn();
    } catch (err) {
      return (err as Error).message;
    }
    return undefined;
  };

  it('goes on with a lost primary and a standby within maxLag, or an unknown loss', () => {
    assert.equal(refusal(() => judgeFailover(plan, lost, standby, loss(1000), false)), undefined);
    assert.equal(refusal(() => judgeFailover(plan, lost, standby, loss(null), false)), undefined);
  });

  it('refuses a primary that answered, a standby behind or not replicating; --force overrides all but the last', () => {
    const answered: ProbeOutcome = { ...lost, lost: false, failures: ['x'] };
    assert.match(refusal(() => judgeFailover(plan, answered, standby, loss(0), false)) ?? '', /answered some of the probes.*HINT:.*--force/);
    assert.match(refusal(() => judgeFailover(plan, lost, standby, loss(1001), false)) ?? '', /1001 bytes of WAL behind.*about 40 ms of commits.*HINT:.*accept the loss of 1001 bytes \(40 ms\)/);
    assert.equal(refusal(() => judgeFailover(plan, answered, standby, loss(5000), true)), undefined);
    assert.match(refusal(() => judgeFailover(plan, lost, { ...standby, inRecovery: false }, loss(0), true)) ?? '', /is not replicating/);
    assert.match(refusal(() => judgeFailover({ ...plan, standbyState: 'fenced' }, lost, standby, loss(0), true)) ?? '', /its state is fenced/);
  });

  it('counts an approval of this failover by someone other than the requester, and refuses one naming another run', () => {
    const target = { restoreId: '20261206-070000X-aaaaaa', what: 'failover' as const, state: 'awaiting-approval', requestedBy: 'alice', preview: { digest: '20261206-070000X-aaaaaa' }, approvals: [] };
    assert.equal(approvalRefusal(target, { by: 'bob', digest: target.restoreId }), undefined);
    assert.match(approvalRefusal(target, { by: 'alice', digest: target.restoreId })?.reason ?? '', /alice requested failover 20261206-070000X-aaaaaa and cannot approve it/);
    assert.match(approvalRefusal(target, { by: 'bob', digest: '20261205-000000X-bbbbbb' })?.reason ?? '', /names 20261205-000000X-bbbbbb, not failover 20261206-070000X-aaaaaa/);
    assert.match(approvalRefusal({ ...target, state: 'done' }, { by: 'bob', digest: target.restoreId })?.reason ?? '', /Failover .* is done, not awaiting approval/);
  });
});

describe('failover and switchover: bad configuration', function () {
  this.timeout(60_000);
  it('refuses with exit 2 and a HINT when no standby or no endpoint is configured', async () => {
    const dir = fs.mkdtempSync('/tmp/tenantsafe-dr-bad-');
    try {
      const base = { database: { url: 'postgres://postgres@127.0.0.1:5432/postgres' }, storage: { primary: { kind: 'local', path: dir } } };
      const noStandby = path.join(dir, 'no-standby.yaml');
      fs.writeFileSync(noStandby, JSON.stringify(base));
      const r = await runCli(['failover', '--reason', 'x', '--by', 'alice'], { configFile: noStandby });
      assert.equal(r.code, 2);
      assert.match(r.stderr, /No standby is configured \(dr\.standby\).*HINT:/);
      const noEndpoint = path.join(dir, 'no-endpoint.yaml');
      fs.writeFileSync(noEndpoint, JSON.stringify({ ...base, dr: { standby: { dataDir: dir, port: 5499 } } }));
      const s = await runCli(['switchover', '--by', 'alice'], { configFile: noEndpoint });
      assert.equal(s.code, 2);
      assert.match(s.stderr, /No application endpoint is configured \(dr\.endpoint\).*HINT:/);
      const noReason = await runCli(['failover', '--by', 'alice'], { configFile: noEndpoint });
      assert.equal(noReason.code, 2);
      assert.match(noReason.stderr, /needs a reason/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
