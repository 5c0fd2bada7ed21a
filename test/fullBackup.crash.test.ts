// A worker killed (SIGKILL) in the middle of a base backup: after a new worker starts, the
// backup completes, restorable, under the same id; the WAL archiver it was running resumes.
import { strict as assert } from 'node:assert';
import type { ChildProcess } from 'node:child_process';
import { readdirSync } from 'node:fs';
import * as path from 'node:path';
import { databaseWorkflowIds } from '../workflows/messages';
import type { fullBackup } from '../workflows';
import { startSourceCluster, type SourceCluster } from './support/cluster';
import { createTestEnv, runCli, type TestEnv } from './support/env';
import { spawnWorkerProcess } from '../workers/process';
import { workflowScopes } from '../lib/databaseIdentity';
import { baseKeyOf, fullBackupCompressions } from './support/compressions';

for (const compression of fullBackupCompressions) describe(`full backup when the worker is killed mid-way (${compression})`, function () {
  this.timeout(240_000);
  let source: SourceCluster;
  let env: TestEnv;
  const workers: ChildProcess[] = [];

  before(async () => {
    source = await startSourceCluster();
    // ~40 MB of table data, streamed at 8 MB/s: the backup takes a few seconds
    await source.cluster.psql(`CREATE TABLE filler AS SELECT g AS id, md5(g::text) || md5((g * 7)::text) AS pad FROM generate_series(1, 400000) g`, 'app');
    env = await createTestEnv('local', {
      db: source.db,
      configure: (doc, dir) => {
        doc.fullBackup = { maxRate: '8MB/s', walPartialInterval: '200ms', walSpoolDir: path.join(dir, 'spool'), baseSpoolDir: dir, compression };
        doc.verification = { scratchDir: source.dir };
      },
    });
  });
  after(async () => {
    const archiver = env && env.temporal.workflow.getHandle(databaseWorkflowIds.walArchiver((await workflowScopes(env.engine)).walArchiver));
    await archiver?.cancel().catch(() => undefined);
    await archiver?.result().catch(() => undefined);
    workers.forEach((w) => w.kill('SIGKILL'));
    await env?.close();
    await source?.remove();
  });

  it('completes the backup after the worker restarts, and the backup verifies', async () => {
    workers.push(await spawnWorkerProcess(env.configFile));
    const handle = await env.temporal.workflow.start<typeof fullBackup>('fullBackup', {
      taskQueue: env.config.temporal.taskQueue,
      workflowId: databaseWorkflowIds.fullBackup(),
      args: [{}],
    });
    const { backupId } = await handle.query<{ backupId: string }>('status');
    // kill once pg_basebackup is streaming files
    for (let i = 0; ; i++) {
      const [p] = await source.cluster.psql<{ phase: string; done: string }>(`SELECT phase, backup_streamed::text AS done FROM pg_stat_progress_basebackup`);
      if (p?.phase === 'streaming database files' && Number(p.done) > 4 << 20) break;
      if (i > 600) assert.fail('the base backup never started streaming');
      await new Promise((r) => setTimeout(r, 50));
    }
    workers[0].kill('SIGKILL');
    const spoolDir = env.config.fullBackup.baseSpoolDir;
    const spools = () => readdirSync(spoolDir).filter((f) => f.startsWith('tenantsafe-base-'));
    assert.ok(spools().length === 1 && spools()[0].startsWith(`tenantsafe-base-${workers[0].pid}-`), `the killed worker left its spool: ${spools().join(', ')}`);
    const store = env.engine.store;
    assert.equal(await store.stat(`full/${backupId}/manifest.json`), null, 'killed before the manifest');

    workers.push(await spawnWorkerProcess(env.configFile));
    const result = await handle.result();
    assert.equal(result.backupId, backupId);
    assert.deepEqual(spools(), [], "the new worker removed the dead one's spool and its own");
    const keys: string[] = [];
    for await (const o of store.list(`full/${backupId}/`)) keys.push(o.key.slice(`full/${backupId}/`.length));
    assert.deepEqual(keys.sort(), ['backup_manifest', baseKeyOf(compression), 'manifest.json', 'started.json']);
    const verified = await runCli(['verify', backupId, '--json'], { configFile: env.configFile });
    assert.equal(verified.code, 0, verified.stdout + verified.stderr);
    const listed = await runCli(['full-backups', 'list', '--json'], { configFile: env.configFile });
    assert.deepEqual(listed.json().map((b: { backupId: string }) => b.backupId), [backupId]);
  });
});
