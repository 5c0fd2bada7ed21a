// Monitoring the WAL archive of a private cluster: the archiver's own reports give the health
// model how far the archive is and when it last grew; a running archiver keeps the achieved RPO
// near zero while the server writes, a stopped one is a stall and the RPO grows past its target.
import { strict as assert } from 'node:assert';
import * as path from 'node:path';
import type { Client } from 'pg';
import { workflowScopes } from '../lib/databaseIdentity';
import { computeHealth, type WalHealth } from '../lib/monitoring/health';
import { connect } from '../lib/pg';
import { freePorts } from '../lib/process';
import { databaseWorkflowIds } from '../workflows/messages';
import { startSourceCluster, type SourceCluster } from './support/cluster';
import { createTestEnv, runCli, type TestEnv } from './support/env';
import { sampleValue, scrape } from './support/prometheus';
import { waitFor } from './support/wait';

describe('monitoring the WAL archive (postgres provider, private cluster)', function () {
  this.timeout(180_000);
  let source: SourceCluster;
  let env: TestEnv;
  let writer: Client;
  let writing = true;
  let writes: Promise<void>;
  let metricsUrl: string;
  const wal = async (): Promise<WalHealth> => (await computeHealth(env.engine)).databases[0].wal!;
  const archiver = async () => env.temporal.workflow.getHandle(databaseWorkflowIds.walArchiver((await workflowScopes(env.engine)).walArchiver));

  before(async function () {
    this.timeout(240_000);
    source = await startSourceCluster();
    await source.cluster.psql(`CREATE TABLE events (id bigserial PRIMARY KEY, note text NOT NULL)`, 'app');
    const [port] = await freePorts('127.0.0.1', 1);
    env = await createTestEnv('local', {
      db: source.db,
      configure: (doc, dir) => {
        doc.fullBackup = { walPartialInterval: '200ms', walSpoolDir: path.join(dir, 'spool'), archiveWait: '30s' };
        doc.worker = { metricsPort: port };
        // no tenants here: only the WAL archive is judged
        doc.monitoring = { schedules: { tenantBackup: 'off' }, rpoTarget: '5s', walStalledAfter: '4s', cacheTtl: '200ms' };
      },
    });
    metricsUrl = (await env.startWorker()).metricsUrl!;
    writer = await connect(source.db.url);
    writes = (async () => {
      while (writing) {
        await writer.query(`INSERT INTO events (note) VALUES ('row')`);
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
  });

  after(async () => {
    writing = false;
    await writes?.catch(() => undefined);
    await writer?.end();
    const handle = env && (await archiver());
    await handle?.cancel().catch(() => undefined);
    await handle?.result().catch(() => undefined);
    await env?.close();
    await source?.remove();
  });

  it('is not judged before any full backup, then shows the archiver alive and the achieved RPO near zero while the server writes', async () => {
    assert.equal(await wal(), null, 'no full backup, no archiver report: the WAL archive is not in use');
    const full = await runCli(['full-backup', '--wait', '--json'], { configFile: env.configFile });
    assert.equal(full.code, 0, full.stderr);
    let w!: WalHealth;
    // the archiver reports once a second while the archive grows; after the base backup it first catches up
    await waitFor('the archiver reports', async () => {
      w = await wal();
      return w.level === 'ok' && w.rpoSeconds !== null && w.rpoSeconds < 3 && w.lagBytes! < 64 << 10;
    }, { tries: 100, intervalMs: 200, state: async () => JSON.stringify(w) });
    assert.equal(w.slotActive, true);
    assert.ok(Date.now() - Date.parse(w.seenAt!) < 3000);
    const check = await runCli(['check'], { configFile: env.configFile });
    assert.equal(check.code, 0, check.stdout);
    assert.match(check.stdout, / rpo_wal=\d+\.\ds;5;10/);
    let s = await scrape(metricsUrl);
    await waitFor('the gauges show the WAL archive', async () => sampleValue((s = await scrape(metricsUrl)), 'tenantsafe_wal_archiver_last_seen_timestamp_seconds') !== undefined, { tries: 50, intervalMs: 200 });
    assert.ok(sampleValue(s, 'tenantsafe_rpo_seconds', { source: 'wal' })! < 5);
    assert.equal(sampleValue(s, 'tenantsafe_rpo_target_seconds', { source: 'wal' }), 5);
    assert.equal(sampleValue(s, 'tenantsafe_wal_stalled_after_seconds'), 4);
    assert.ok(sampleValue(s, 'tenantsafe_wal_archiver_last_seen_timestamp_seconds')! > Date.now() / 1000 - 5);
    assert.equal(sampleValue(s, 'tenantsafe_restore_points', { kind: 'full' }), 1);
    // what the worker measured: the base backup's duration and bytes, as it reported them
    assert.equal(sampleValue(s, 'tenantsafe_backup_duration_seconds_count', { kind: 'full' }), 1);
    assert.equal(sampleValue(s, 'tenantsafe_backup_bytes_total', { kind: 'full' }), full.json().bytes);
  });

  it('makes a stopped archiver a stall (CRITICAL), and the achieved RPO grow past its target as the server writes on', async () => {
    const handle = await archiver();
    await handle.cancel();
    await handle.result().catch(() => undefined);
    let w!: WalHealth;
    await waitFor('the stall and the RPO over twice its target', async () => {
      w = await wal();
      return w.level === 'critical' && w.rpoSeconds! > 10;
    }, { tries: 150, intervalMs: 200, state: async () => JSON.stringify(w) });
    assert.ok(w.lagBytes! > 0);
    assert.equal(w.slotActive, false);
    const check = await runCli(['check', '--json'], { configFile: env.configFile });
    assert.equal(check.code, 2);
    const problems = check.json().problems.map((p: { id: string; level: string; message: string }) => [p.id.split('/').slice(1).join('/'), p.level]);
    assert.deepEqual(problems, [['wal/stalled', 'critical'], ['wal/rpo', 'critical']]);
    const text = await runCli(['check'], { configFile: env.configFile });
    assert.match(text.stdout, /^TENANTSAFE CRITICAL - \S+: 2 critical: WAL archiving stalled: the archiver last reported \d+s ago and nothing holds its replication slot/);
  });
});
