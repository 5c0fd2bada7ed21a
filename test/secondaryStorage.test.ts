// Secondary storage end to end: a private cluster holding the sample database, a local primary
// and a secondary bucket on the GCS emulator, a worker, the real CLI. Backups, WAL and manifests
// land on both with equal sha256; with the primary's directory gone, a full point-in-time restore
// and a tenant restore succeed from the secondary, by themselves and with --from secondary; a
// secondary that is down during a backup leaves the backup whole on the primary and is caught up
// by `storage sync`, manifests last; --from secondary with no secondary is bad input.
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { sha256OfStream } from '../lib/checksum';
import { parseConfig } from '../lib/config';
import { Engine } from '../lib/engine';
import { tenantBackupPrefix } from '../lib/format/tenantManifest';
import { withConnection } from '../lib/pg';
import { PrivateCluster } from '../lib/postgres/cluster';
import { freePorts } from '../lib/process';
import { createStore } from '../lib/storage';
import { lagPrefix, ReplicatedStore } from '../lib/storage/replicated';
import type { ObjectStore } from '../lib/storage/types';
import { parseMicros } from '../lib/time';
import { workflowScopes } from '../lib/databaseIdentity';
import { damageTenant } from '../sample/damage';
import { ensureSampleDatabase, sampleTenants } from '../sample/generate';
import { databaseWorkflowIds } from '../workflows/messages';
import { backUpNow, liveRows, readBackup } from './support/backups';
import { startSourceCluster, type SourceCluster } from './support/cluster';
import { createTestEnv, runCli, type TestEnv } from './support/env';
import { checksumsOf } from './support/restore';
import { testStack } from './support/stack';
import { waitFor } from './support/wait';

const tenant = 'acme';

/** key → sha256 of every object of a location (lag markers aside) */
async function contentsOf(store: ObjectStore, prefix = ''): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for await (const o of store.list(prefix)) if (!o.key.startsWith(lagPrefix)) out.set(o.key, await sha256OfStream(await store.get(o.key)));
  return out;
}

/** Where the two locations are, and how the primary is lost. */
interface Arrangement {
  name: string;
  locations(gcsUrl: string, bucket: string, dir: string): { primary: Record<string, unknown>; secondary: Record<string, unknown> };
  losePrimary(env: TestEnv, bucket: string): Promise<void>;
}

const arrangements: Arrangement[] = [
  {
    name: 'a local primary and a GCS secondary, the primary directory removed',
    locations: (gcsUrl, bucket, dir) => ({
      primary: { kind: 'local', path: path.join(dir, 'backups') },
      secondary: { kind: 'gcs', bucket, prefix: 'other-region', apiEndpoint: gcsUrl, projectId: 'test' },
    }),
    losePrimary: async (env) => fs.rmSync(env.document.storage.primary.path, { recursive: true, force: true }),
  },
  {
    name: 'a GCS primary and a local secondary, the primary bucket deleted',
    locations: (gcsUrl, bucket, dir) => ({
      primary: { kind: 'gcs', bucket, prefix: 'backups', apiEndpoint: gcsUrl, projectId: 'test' },
      secondary: { kind: 'local', path: path.join(dir, 'other-region') },
    }),
    losePrimary: async (_env, bucket) => (await testStack()).gcs.deleteBucket(bucket),
  },
];

for (const arrangement of arrangements) describe(`secondary storage: ${arrangement.name}`, function () {
  this.timeout(300_000);
  const first = arrangement === arrangements[0];
  let bucket: string;
  let source: SourceCluster;
  let env: TestEnv;
  let primary: ObjectStore;
  let secondary: ObjectStore;
  let backupId: string;
  const cli = (...args: string[]) => runCli([...args, '--json'], { configFile: env.configFile, timeoutMs: 240_000 });
  const errorOf = (r: { stderr: string }) => JSON.parse(r.stderr) as { error: string; type: string; exitCode: number };
  const tenantState = async () => checksumsOf(await liveRows(env.config, tenant));

  before(async () => {
    const stack = await testStack();
    source = await startSourceCluster('app', { track_commit_timestamp: 'on' });
    const sample = { tenants: 3, rows: 1_500 };
    const { url } = await ensureSampleDatabase(source.cluster.url(), 'saas', sample);
    bucket = `tenantsafe-copy-${process.pid}-${Date.now()}`;
    await stack.gcs.createBucket(bucket);
    env = await createTestEnv('local', {
      db: { name: 'saas', url, tenants: sampleTenants(sample), drop: async () => undefined },
      configure: (doc, dir) => {
        doc.storage = arrangement.locations(stack.gcs.url, bucket, dir);
        doc.fullBackup = { walPartialInterval: '200ms', walSpoolDir: path.join(dir, 'spool'), archiveWait: '30s' };
        doc.verification = { scratchDir: source.dir };
      },
    });
    primary = createStore(env.config.storage.primary);
    secondary = env.engine.from('secondary').store;
    await env.startWorker();
  });

  after(async () => {
    if (env) {
      const archiver = env.temporal.workflow.getHandle(databaseWorkflowIds.walArchiver((await workflowScopes(env.engine)).walArchiver));
      await archiver.cancel().catch(() => undefined);
      await archiver.result().catch(() => undefined);
    }
    await env?.close();
    await source?.remove();
  });

  it('copies every tenant backup object, full backup, WAL segment and manifest to the secondary, with the same sha256', async () => {
    const backup = await cli('backup', 'tenant', tenant, '--wait');
    assert.equal(backup.code, 0, backup.stderr);
    backupId = backup.json().backupId;
    const full = await cli('full-backup', '--wait');
    assert.equal(full.code, 0, full.stderr);

    for (const prefix of [tenantBackupPrefix(tenant, backupId), `full/${full.json().backupId}/`]) {
      const [p, s] = [await contentsOf(primary, prefix), await contentsOf(secondary, prefix)];
      assert.ok(p.has(`${prefix}manifest.json`), `a manifest under ${prefix}`);
      assert.deepEqual(s, p, `the secondary holds what the primary holds under ${prefix}, byte for byte`);
    }
    // whole WAL segments are immutable (the partial one is rewritten while the archiver runs)
    const segments = async (store: ObjectStore) => new Map([...(await contentsOf(store, 'wal/'))].filter(([k]) => !k.endsWith('.partial.gz')));
    const walOnPrimary = await segments(primary);
    assert.ok(walOnPrimary.size >= 1, 'the archive holds whole segments');
    const walOnSecondary = await segments(secondary);
    for (const [key, sha] of walOnPrimary) assert.equal(walOnSecondary.get(key), sha, `${key} on the secondary`);
  });

  it('with the primary location gone, restores the whole database to a point in time and a tenant from the secondary, by itself and with --from secondary', async () => {
    const marker = await withConnection(env.db.url, async (c) => {
      await c.query(`CREATE TABLE IF NOT EXISTS public.dr_probe (note text)`);
      return (await c.query<{ at: string }>(`INSERT INTO public.dr_probe VALUES ('before the loss') RETURNING to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS at`)).rows[0].at;
    });
    await waitFor('the archive to reach the probe row', async () => {
      const w = await cli('pitr', 'window');
      return w.code === 0 && !!w.json().latest && parseMicros(w.json().latest) >= parseMicros(marker);
    }, { tries: 150, intervalMs: 200 });
    await withConnection(env.db.url, (c) => damageTenant(c, tenant));
    const damaged = await tenantState();

    await arrangement.losePrimary(env, bucket);

    for (const from of [[], ['--from', 'secondary']]) {
      const target = path.join(source.dir, `restored${from.length ? '-from-secondary' : ''}`);
      const [port] = await freePorts('127.0.0.1', 1);
      const res = await cli('pitr', 'restore', '--latest', '--target', target, '--port', String(port), ...from);
      assert.equal(res.code, 0, res.stdout + res.stderr);
      const probe = await withConnection(`postgres://postgres@127.0.0.1:${port}/saas`, (c) => c.query(`SELECT note FROM public.dr_probe`));
      assert.deepEqual(probe.rows, [{ note: 'before the loss' }], `the restored cluster ${from.join(' ') || '(automatic)'} holds the row`);
      await (await PrivateCluster.attach(target)).stop();
    }

    const backedUp = checksumsOf((await readBackup(secondary, tenant, backupId)).rows);
    assert.notDeepEqual(damaged, backedUp, 'the damage changed the tenant');
    for (const from of [[], ['--from', 'secondary']]) {
      const requested = await cli('restore', 'tenant', tenant, '--backup', backupId, '--by', 'alice', ...from);
      assert.equal(requested.code, 0, requested.stdout + requested.stderr);
      assert.equal(requested.json().state, 'awaiting-approval', requested.stdout);
      const approved = await cli('restore', 'approve', requested.json().restoreId, '--by', 'bob', '--digest', requested.json().previewDigest, '--wait');
      assert.equal(approved.code, 0, approved.stdout + approved.stderr);
      assert.equal(approved.json().state, 'done', approved.stdout);
      assert.deepEqual(await tenantState(), backedUp, `the tenant equals its backup (${from.join(' ') || 'automatic'})`);
      await withConnection(env.db.url, (c) => damageTenant(c, tenant));
    }
  });

  if (first) it('a secondary that is down during a backup leaves the backup whole on the primary, holds later manifests back, and storage sync catches it up', async () => {
    const stack = await testStack();
    const later = `tenantsafe-later-${process.pid}-${Date.now()}`;
    const file = env.writeConfig('secondary-down.yaml', (doc) => {
      doc.storage.primary = { kind: 'local', path: path.join(env.dir, 'primary-2') };
      doc.storage.secondary = { kind: 'gcs', bucket: later, prefix: '', apiEndpoint: stack.gcs.url, projectId: 'test' };
    });
    const config = parseConfig(parseYaml(fs.readFileSync(file, 'utf8')), { env: process.env, source: file, baseDir: env.dir });
    const engine = new Engine(config);
    try {
      const store = engine.store as ReplicatedStore;
      const first = await backUpNow(engine, 'globex');
      assert.ok(await store.primary.stat(`${tenantBackupPrefix('globex', first)}manifest.json`), 'the backup is complete on the primary');
      assert.ok((await store.lagMarkers('secondary')).length > 0, 'the missed copies are recorded');

      await stack.gcs.createBucket(later);
      const status = await runCli(['storage', 'status', '--json'], { configFile: file });
      assert.equal(status.code, 1, status.stdout + status.stderr);
      assert.ok(status.json().secondary.behindBy > 0 && status.json().secondary.missedChanges > 0, status.stdout);
      const storageItems = async () => {
        const check = await runCli(['check', '--no-temporal', '--json'], { configFile: file });
        return Object.fromEntries(check.json().problems.filter((p: { id: string }) => p.id.includes('/storage/')).map((p: { id: string; level: string }) => [p.id.split('/').pop(), p.level]));
      };
      assert.deepEqual(await storageItems(), { 'secondary-behind': 'warning' }, 'the health model reports the secondary behind');

      // back, but still behind: a new backup's objects are copied, its manifest waits for the sync
      const second = await backUpNow(engine, 'globex');
      const secondPrefix = tenantBackupPrefix('globex', second);
      const copied = await contentsOf(store.secondary, secondPrefix);
      assert.ok(copied.size > 0, 'the objects of a backup taken after the secondary came back are copied');
      assert.ok(!copied.has(`${secondPrefix}manifest.json`), 'no manifest on the secondary while it misses objects');

      const sync = await runCli(['storage', 'sync', '--verify', '--json'], { configFile: file });
      assert.equal(sync.code, 0, sync.stdout + sync.stderr);
      assert.ok(sync.json().copied.secondary > 0, sync.stdout);
      assert.equal(sync.json().status.inSync, true, sync.stdout);
      assert.deepEqual(await contentsOf(store.secondary), await contentsOf(store.primary), 'both locations hold the same objects, byte for byte');
      assert.deepEqual(await store.lagMarkers('secondary'), [], 'the markers are gone once caught up');
      const again = await runCli(['storage', 'status', '--json'], { configFile: file });
      assert.equal(again.code, 0, again.stdout + again.stderr);
      assert.deepEqual(await storageItems(), {}, 'nothing behind any more');
    } finally {
      await engine.close();
    }
  });

  if (first) it('refuses --from secondary when no secondary is configured (exit 2, a HINT, nothing started), and a location it does not know', async () => {
    const file = env.writeConfig('no-secondary.yaml', (doc) => delete doc.storage.secondary);
    const restoresBefore = (await env.engine.catalog.listRestores()).length;
    const target = path.join(source.dir, 'never');
    for (const args of [
      ['restore', 'tenant', tenant, '--backup', backupId, '--from', 'secondary'],
      ['pitr', 'restore', '--latest', '--target', target, '--from', 'secondary'],
      ['storage', 'sync'],
    ]) {
      const res = await runCli([...args, '--json'], { configFile: file });
      assert.equal(res.code, 2, `${args.join(' ')}: ${res.stdout}${res.stderr}`);
      assert.match(errorOf(res).error, /no storage\.secondary.*HINT: Add storage\.secondary/s);
    }
    const unknown = await cli('restore', 'tenant', tenant, '--backup', backupId, '--from', 'elsewhere');
    assert.equal(unknown.code, 2, unknown.stderr);
    assert.match(errorOf(unknown).error, /--from must be primary or secondary, not "elsewhere".*HINT:/s);
    assert.equal((await env.engine.catalog.listRestores()).length, restoresBefore, 'no restore was started');
    assert.equal(fs.existsSync(target), false, 'nothing was written to the target');
  });

  if (first) it('refuses a secondary that names the primary\'s location', () => {
    const doc = { database: { url: 'postgres://u@h/db' }, storage: { primary: { kind: 'local', path: 'b' }, secondary: { kind: 'local', path: './b' } } };
    assert.throws(() => parseConfig(doc, { env: {}, source: 'test', baseDir: '/tmp' }), /storage\.secondary: names the same location as storage\.primary/);
  });
});
