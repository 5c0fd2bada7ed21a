import { strict as assert } from 'node:assert';
import type { ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { tenantBackupPrefix } from '../lib/format/tenantManifest';
import type { ObjectStore } from '../lib/storage/types';
import { workflowIds } from '../workflows/messages';
import type { tenantBackup } from '../workflows';
import { liveRows, readBackup, sorted } from './support/backups';
import { freshDatabase, type TestDatabase } from './support/db';
import { createTestEnv, runCli, type StorageKind, type TestEnv } from './support/env';
import { spawnWorkerProcess } from '../workers/process';

async function keysUnder(store: ObjectStore, prefix: string): Promise<string[]> {
  const keys: string[] = [];
  for await (const o of store.list(prefix)) keys.push(o.key.slice(prefix.length));
  return keys;
}

/** Kills the worker once the backup has written some, but not all, of its objects. */
async function killMidBackup(store: ObjectStore, prefix: string, worker: ChildProcess): Promise<string[]> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const keys = await keysUnder(store, prefix);
    if (keys.includes('manifest.json')) throw new Error('the backup finished before the worker could be killed');
    if (keys.some((k) => k.startsWith('data/'))) {
      worker.kill('SIGKILL');
      return keys;
    }
    if (Date.now() > deadline) throw new Error('the backup never started writing');
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('tenant backup when the worker is killed mid-way', function () {
  let db: TestDatabase;
  before(async function () {
    this.timeout(300_000);
    // one tenant big enough that its export takes a moment
    db = await freshDatabase({ tenants: 4, rows: 10_000, extraTenants: [{ tenantId: 'whale', rows: 400_000 }] });
  });
  after(async () => db?.drop());

  for (const storage of ['local', 'gcs'] as StorageKind[]) {
    describe(`on ${storage} storage`, () => {
      let env: TestEnv;
      let store: ObjectStore;
      const workers: ChildProcess[] = [];
      before(async () => {
        env = await createTestEnv(storage, { db });
        store = env.engine.store;
      });
      afterEach(() => workers.splice(0).forEach((w) => w.kill('SIGKILL')));
      after(async () => env?.close());

      async function startBackup() {
        const handle = await env.temporal.workflow.start<typeof tenantBackup>('tenantBackup', {
          taskQueue: env.config.temporal.taskQueue,
          workflowId: workflowIds.tenantBackup('whale'),
          args: [{ tenantId: 'whale' }],
        });
        const { backupId } = await handle.query<{ backupId: string }>('status');
        return { handle, backupId, prefix: tenantBackupPrefix('whale', backupId) };
      }

      it('completes the backup after the worker restarts, with exactly the objects of its manifest', async () => {
        workers.push(await spawnWorkerProcess(env.configFile));
        const { handle, backupId, prefix } = await startBackup();
        const atKill = await killMidBackup(store, prefix, workers[0]);
        assert.ok(atKill.includes('started.json'));

        workers.push(await spawnWorkerProcess(env.configFile));
        const result = await handle.result();
        assert.equal(result.backupId, backupId);
        const backup = await readBackup(store, 'whale', backupId);
        assert.deepEqual(sorted(backup.keys), sorted([...backup.manifest.tables.map((t) => t.object.key), 'manifest.json', 'started.json']));
        const live = await liveRows(env.config, 'whale');
        for (const [table, rows] of backup.rows) assert.deepEqual(sorted(rows), sorted(live.get(table)!), `${table} equals the live rows`);
        if (storage === 'local') {
          const leftovers = fs.readdirSync(path.join(env.config.storage.primary.kind === 'local' ? env.config.storage.primary.path : '', prefix, 'data')).filter((f) => f.startsWith('.'));
          assert.deepEqual(leftovers, [], 'no partial files of the killed attempt');
        }
        // both storages of this file index into the same catalog: the newest entry is this backup
        const listed = await runCli(['backups', 'list', '--tenant', 'whale', '--json'], { configFile: env.configFile });
        assert.equal(listed.json()[0].backupId, backupId);
      });

      it('leaves no visible backup and, after cleanup, no object when the run is abandoned', async () => {
        workers.push(await spawnWorkerProcess(env.configFile));
        const { handle, backupId, prefix } = await startBackup();
        await killMidBackup(store, prefix, workers[0]);
        await handle.terminate('test: abandoned after a crash');

        const listed = await runCli(['backups', 'list', '--tenant', 'whale', '--json'], { configFile: env.configFile });
        assert.ok(!listed.json().some((b: { backupId: string }) => b.backupId === backupId));
        const cleaned = await runCli(['backups', 'cleanup', '--older-than', '0s', '--json'], { configFile: env.configFile });
        assert.equal(cleaned.code, 0, cleaned.stderr);
        assert.deepEqual(cleaned.json().removed.map((r: { prefix: string }) => r.prefix), [prefix]);
        assert.deepEqual(await keysUnder(store, prefix), []);
        if (env.config.storage.primary.kind === 'local') {
          assert.equal(fs.existsSync(path.join(env.config.storage.primary.path, prefix)), false, 'partial files removed too');
        }
      });
    });
  }
});
