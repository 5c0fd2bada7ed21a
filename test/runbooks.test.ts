// Every runbook's commands run as written, in order, against the real things: a runbook that no
// longer matches the CLI fails here. test/support/runbook.ts says how runbooks mark their steps.
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import { damageTenant } from '../sample/damage';
import { ensureSampleDatabase } from '../sample/generate';
import { freePorts } from '../lib/process';
import { liveRows } from './support/backups';
import { adminUrl, databaseUrl, withDb } from './support/db';
import { startFakeSupabase, type FakeSupabase } from './doubles/supabaseApi';
import { parseConfig } from '../lib/config';
import { startWorker, type StartedWorker } from '../workers/worker';
import { stringify } from 'yaml';
import { testStack } from './support/stack';
import { createTestEnv, runCli, type TestEnv } from './support/env';
import * as path from 'node:path';
import { segmentKeyPattern } from '../lib/format/walArchive';
import { withConnection } from '../lib/pg';
import { parseMicros } from '../lib/time';
import { listWalArchive } from '../lib/wal/archive';
import { segmentOfLsn } from '../lib/wal/names';
import { physicalBackups, startSourceCluster, stopWalArchiver, type SourceCluster } from './support/cluster';
import { checksumsOf } from './support/restore';
import { waitFor } from './support/wait';
import { readOff, runbooksDir, runbookSteps, runRunbook } from './support/runbook';

describe('runbooks', function () {
  it('mark the commands an operator types, and every runbook the DR issue names has some', () => {
    for (const name of ['tenant-restore-undo', 'wal-lost', 'supabase-project-loss', 'secondary-storage', 'failover', 'failback', 'switchover']) {
      const steps = runbookSteps(name);
      assert.ok(steps.every((s) => s.command.startsWith('tenantsafe ') || s.command.startsWith('pg_') || s.command.startsWith('psql ')), `${name}: ${steps.map((s) => s.command).join('\n')}`);
    }
    assert.ok(fs.existsSync(runbooksDir));
  });

  describe('a tenant restore gone wrong (tenant-restore-undo.md)', function () {
    const tenantId = 'initech';
    let env: TestEnv;
    before(async function () {
      this.timeout(180_000);
      env = await createTestEnv('local');
      await env.startWorker();
    });
    after(async () => env?.close());

    const cli = async (...args: string[]) => {
      const r = await runCli([...args, '--json'], { configFile: env.configFile });
      assert.equal(r.code, 0, r.stderr);
      return r.json();
    };
    const tenantState = async () => checksumsOf(await liveRows(env.config, tenantId));

    it('puts the tenant back as the wrong restore found it, with a second approval', async function () {
      this.timeout(300_000);
      const { backupId } = await cli('backup', 'tenant', tenantId, '--wait');
      // the tenant changes after the backup; restoring that backup then is the mistake
      await withDb(env.db.url, (c) => damageTenant(c, tenantId));
      const beforeMistake = await tenantState();
      const wrong = await cli('restore', 'tenant', tenantId, '--backup', backupId, '--by', 'alice');
      const applied = await cli('restore', 'approve', wrong.restoreId, '--by', 'bob', '--digest', wrong.previewDigest, '--wait');
      assert.equal(applied.state, 'done');
      assert.notDeepEqual(await tenantState(), beforeMistake);

      const outputs = await runRunbook('tenant-restore-undo', {
        configFile: env.configFile,
        fill: {
          'restore-id': () => wrong.restoreId,
          tenant: () => tenantId,
          requester: () => 'carol',
          approver: () => 'dave',
          'safety-backup-id': (earlier) => readOff(earlier, /safety backup (\S+)/),
          'undo-restore-id': (earlier) => readOff(earlier, /^Restore (\S+) of backup/m),
          'undo-digest': (earlier) => readOff(earlier, /--digest ([0-9a-f]{64})/),
        },
      });
      assert.match(outputs.at(-1)!.stdout, /: done/);
      assert.match(outputs.at(-1)!.stdout, /verification: ok/);
      assert.deepEqual(await tenantState(), beforeMistake, 'the tenant is as the wrong restore found it');
      const listed = await cli('restore', 'list', '--tenant', tenantId);
      assert.deepEqual(listed.map((r: { restoreId: string; state: string }) => r.state), ['done', 'done']);
      assert.equal(listed[1].restoreId, wrong.restoreId, 'newest first');
      assert.equal(listed[0].backupId, readOff(outputs.slice(0, 1), /safety backup (\S+)/), "the undo restored the wrong restore's safety backup");
      assert.deepEqual(await cli('restore', 'list', '--tenant', tenantId, '--state', 'failed'), []);
    });
  });

  describe('lost or corrupt WAL (wal-lost.md)', function () {
    let source: SourceCluster;
    let env: TestEnv;
    before(async function () {
      this.timeout(180_000);
      source = await startSourceCluster('app');
      await source.cluster.psql(`CREATE TABLE events (id bigserial PRIMARY KEY, note text NOT NULL)`, 'app');
      env = await createTestEnv('local', {
        db: source.db,
        configure: (doc, dir) => {
          physicalBackups(doc, dir, source);
        },
      });
      await env.startWorker();
    });
    after(async function () {
      this.timeout(60_000);
      if (env) await stopWalArchiver(env);
      await env?.close();
      await source?.remove();
    });

    it('finds the gap, proves the old backup cannot cross it, and opens a new window with a verified base backup', async function () {
      this.timeout(600_000);
      const first = await runCli(['full-backup', '--wait', '--json'], { configFile: env.configFile });
      assert.equal(first.code, 0, first.stderr);
      const { backupId, stopLsn } = first.json();
      // a few completed segments after the backup, one of which storage then loses
      for (let i = 0; i < 4; i++) await withConnection(source.db.url, (c) => c.query(`INSERT INTO events (note) SELECT 'row' FROM generate_series(1, 2000); SELECT pg_switch_wal()`));
      const afterStop = segmentOfLsn(stopLsn, 1, 1024 * 1024);
      let lost: string | undefined;
      await waitFor('three archived segments after the backup', async () => {
        const names = (await listWalArchive(env.engine.store)).segments.map((x) => x.name).filter((n) => n > afterStop);
        lost = names[1];
        return names.length >= 3;
      });
      for await (const o of env.engine.store.list('wal/')) if (segmentKeyPattern.exec(o.key)?.[1] === lost) await env.engine.store.delete(o.key);

      const outputs = await runRunbook('wal-lost', {
        configFile: env.configFile,
        fill: {
          'backup-id': () => backupId,
          'new-backup-id': (earlier) => readOff(earlier, /^Full backup (\S+) \(physical\)/m),
        },
      });
      assert.match(outputs[0].stdout, new RegExp(`GAP: ${lost}`));
      assert.match(outputs[2].stdout, /\[missing\] wal .*point-in-time recovery cannot cross it/);
      const newBackupId = readOff(outputs, /^Full backup (\S+) \(physical\)/m);
      assert.match(outputs[4].stdout, new RegExp(`${newBackupId}: OK`));
      const newBackup = await env.engine.catalog.getFullBackup(newBackupId);
      const window = /Recoverable from (\S+) to (\S+)/.exec(outputs[5].stdout);
      assert.ok(window, outputs[5].stdout);
      assert.ok(parseMicros(window[1]) >= parseMicros(newBackup.consistentAt) - 1_000_000n, `the window starts at the new backup: ${outputs[5].stdout}`);
    });
  });

  describe('a Supabase project lost (supabase-project-loss.md)', function () {
    const token = 'sbp_0123456789abcdef0123456789abcdef01234567';
    const oldRef = 'abcdefghijklmnopqrst';
    const newRef = 'tsrqponmlkjihgfedcba';
    const tenantId = 'globex';
    const suffix = `${process.pid}_${Date.now()}`;
    const catalogDb = `tenantsafe_rb_catalog_${suffix}`;
    const newProjectDb = `tenantsafe_rb_newproject_${suffix}`;
    let api: FakeSupabase;
    let env: TestEnv;
    let oldWorker: StartedWorker;
    let newWorker: StartedWorker | undefined;
    const project = (ref: string) => ({ ref, name: ref, pitrEnabled: false, earliestBackup: 0, latestBackup: 0, backups: [], status: 'ACTIVE_HEALTHY' });

    before(async function () {
      this.timeout(180_000);
      api = await startFakeSupabase({ token, projects: [project(oldRef), project(newRef)] });
      await withDb(adminUrl, async (c) => {
        await c.query(`CREATE DATABASE ${catalogDb}`);
        await c.query(`CREATE DATABASE ${newProjectDb}`);
      });
      env = await createTestEnv('local', {
        configure: (doc) => {
          doc.catalog = { url: databaseUrl(catalogDb) };
          doc.fullBackup = { provider: 'supabase' };
          doc.supabase = { projectRef: oldRef, accessToken: token, apiUrl: api.url };
        },
      });
      oldWorker = await env.startWorker();
    });
    after(async function () {
      this.timeout(60_000);
      await newWorker?.shutdown();
      await env?.close();
      await api?.stop();
      await withDb(adminUrl, async (c) => {
        for (const db of [catalogDb, newProjectDb]) await c.query(`DROP DATABASE IF EXISTS ${db} WITH (FORCE)`);
      });
    });

    it('restores the newest dump into a new project, brings a tenant forward from its newer backup, and backs the new project up', async function () {
      this.timeout(600_000);
      const cli = async (...args: string[]) => {
        const r = await runCli([...args, '--json'], { configFile: env.configFile });
        assert.equal(r.code, 0, r.stderr);
        return r.json();
      };
      const dump = await cli('full-backup', '--wait');
      // the tenant changes after the dump and is backed up: the dump alone would lose that
      await withDb(env.db.url, (c) => damageTenant(c, tenantId));
      const { backupId: tenantBackupId } = await cli('backup', 'tenant', tenantId, '--wait');
      const tenantAtLoss = await tenantState(env.config);
      const othersAtDump = await Promise.all(env.db.tenants.filter((t) => t.tenantId !== tenantId).map(async (t) => checksumsOf(await liveRows(env.config, t.tenantId))));

      const newUrl = databaseUrl(newProjectDb);
      const newDocument = { ...structuredClone(env.document), database: { url: newUrl }, supabase: { ...env.document.supabase, projectRef: newRef } };
      const newConfig = parseConfig(newDocument, { env: process.env, source: env.configFile, baseDir: env.dir });
      const outputs = await runRunbook('supabase-project-loss', {
        configFile: env.configFile,
        fill: {
          'dump-id': () => dump.backupId,
          'new-database-url': () => newUrl,
          tenant: () => tenantId,
          'tenant-backup-id': () => tenantBackupId,
          requester: () => 'alice',
          approver: () => 'bob',
          'restore-id': (earlier) => readOff(earlier, /^Restore (\S+) of backup/m),
          digest: (earlier) => readOff(earlier, /--digest ([0-9a-f]{64})/),
        },
        after: async (o) => {
          if (!o.step.command.startsWith('tenantsafe full-backups restore')) return;
          // step 3 of the runbook, done by hand: the config and the workers move to the new project
          fs.writeFileSync(env.configFile, stringify(newDocument));
          await oldWorker.shutdown();
          await withDb(adminUrl, (c) => c.query(`DROP DATABASE ${env.db.name} WITH (FORCE)`));
          newWorker = await startWorker(newConfig, { bundle: (await testStack()).bundle });
        },
      });
      assert.match(outputs[2].stdout, /Restored dump .* into the new database: schemas app/);
      assert.deepEqual(await tenantState(newConfig), tenantAtLoss, 'the tenant as its newest backup holds it');
      const othersNow = await Promise.all(env.db.tenants.filter((t) => t.tenantId !== tenantId).map(async (t) => checksumsOf(await liveRows(newConfig, t.tenantId))));
      assert.deepEqual(othersNow, othersAtDump, 'every other tenant as the dump holds it');
      const dumps = await withDb(databaseUrl(catalogDb), (c) => c.query(`SELECT database FROM tenantsafe.full_backups ORDER BY started_at`));
      assert.deepEqual(dumps.rows.map((r) => r.database), [env.db.name, newProjectDb], 'the new project has its first dump');
      // the refusal: a target that is not empty changes nothing
      const again = await runCli(['full-backups', 'restore', dump.backupId, '--into', newUrl], { configFile: env.configFile });
      assert.equal(again.code, 2);
      assert.match(again.stderr, /not empty: schema app has \d+ table\(s\).*HINT: Restore into a new, empty database/s);
    });

    const tenantState = async (config: Parameters<typeof liveRows>[0]) => checksumsOf(await liveRows(config, tenantId));
  });

  describe('restore from the secondary storage location (secondary-storage.md)', function () {
    const tenantId = 'acme';
    let source: SourceCluster;
    let env: TestEnv;
    before(async function () {
      this.timeout(180_000);
      source = await startSourceCluster('scratch');
      const { url } = await ensureSampleDatabase(source.cluster.url('postgres'), 'saas', { tenants: 4, rows: 4_000 });
      env = await createTestEnv('local', {
        db: { name: 'saas', url, tenants: [], drop: async () => undefined },
        configure: (doc, dir) => {
          doc.storage = { primary: { kind: 'local', path: path.join(dir, 'primary') }, secondary: { kind: 'local', path: path.join(dir, 'secondary') } };
          physicalBackups(doc, dir, source);
        },
      });
      await env.startWorker();
    });
    after(async function () {
      this.timeout(60_000);
      if (env) await stopWalArchiver(env);
      await env?.close();
      await source?.remove();
    });

    it('restores the whole database and a tenant with the primary location gone, then fills a new primary', async function () {
      this.timeout(600_000);
      const cli = async (...args: string[]) => {
        const r = await runCli([...args, '--json'], { configFile: env.configFile });
        assert.equal(r.code, 0, r.stderr);
        return r.json();
      };
      await cli('full-backup', '--wait');
      const { backupId } = await cli('backup', 'tenant', tenantId, '--wait');
      const tenantAtBackup = checksumsOf(await liveRows(env.config, tenantId));
      await withDb(env.db.url, (c) => damageTenant(c, tenantId));
      // the primary location is lost
      fs.rmSync(path.join(env.dir, 'primary'), { recursive: true, force: true });

      const [port] = await freePorts('127.0.0.1', 1);
      const outputs = await runRunbook('secondary-storage', {
        configFile: env.configFile,
        fill: {
          'restore-dir': () => path.join(source.dir, 'from-secondary'),
          port: () => String(port),
          tenant: () => tenantId,
          'backup-id': () => backupId,
          requester: () => 'alice',
          approver: () => 'bob',
          'restore-id': (earlier) => readOff(earlier, /^Restore (\S+) of backup/m),
          digest: (earlier) => readOff(earlier, /--digest ([0-9a-f]{64})/),
        },
        // the archiver uploads a partial segment every half second, which the failing primary
        // misses for a minute: quiet before `storage sync` so that `status` compares a still archive
        after: async (o) => {
          if (o.step.command.startsWith('tenantsafe restore approve')) await stopWalArchiver(env);
        },
      });
      assert.match(outputs[2].stdout, /running on port \d+/);
      const restored = await withConnection(`postgres://postgres@127.0.0.1:${port}/saas`, (c) => c.query<{ n: number }>(`SELECT count(*)::int AS n FROM app.tenants`));
      assert.equal(restored.rows[0].n, 4, 'the restored cluster holds the database');
      assert.deepEqual(checksumsOf(await liveRows(env.config, tenantId)), tenantAtBackup, 'the tenant is as its backup on the secondary');
      assert.doesNotMatch(outputs.at(-1)!.stdout, /missed [1-9]/);
      assert.ok(fs.existsSync(path.join(env.dir, 'primary', 'tenants', tenantId)), 'sync filled the new primary');
    });
  });
});
