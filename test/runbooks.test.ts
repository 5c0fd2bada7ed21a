// Every runbook's commands run as written, in order, against the real things: a runbook that no
// longer matches the CLI fails here. test/support/runbook.ts says how runbooks mark their steps.
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import { damageTenant } from '../sample/damage';
import { liveRows } from './support/backups';
import { withDb } from './support/db';
import { createTestEnv, runCli, type TestEnv } from './support/env';
import * as path from 'node:path';
import { workflowScopes } from '../lib/databaseIdentity';
import { segmentKeyPattern } from '../lib/format/walArchive';
import { withConnection } from '../lib/pg';
import { parseMicros } from '../lib/time';
import { listWalArchive } from '../lib/wal/archive';
import { segmentOfLsn } from '../lib/wal/names';
import { databaseWorkflowIds } from '../workflows/messages';
import { startSourceCluster, type SourceCluster } from './support/cluster';
import { checksumsOf } from './support/restore';
import { waitFor } from './support/wait';
import { readOff, runbooksDir, runbookSteps, runRunbook } from './support/runbook';

describe('runbooks', function () {
  it('mark the commands an operator types, and every runbook the DR issue names has some', () => {
    for (const name of ['tenant-restore-undo', 'wal-lost']) {
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
          doc.fullBackup = { walPartialInterval: '200ms', walSpoolDir: path.join(dir, 'spool'), archiveWait: '30s' };
          doc.verification = { scratchDir: source.dir };
        },
      });
      await env.startWorker();
    });
    after(async function () {
      this.timeout(60_000);
      const archiver = env && env.temporal.workflow.getHandle(databaseWorkflowIds.walArchiver((await workflowScopes(env.engine)).walArchiver));
      await archiver?.cancel().catch(() => undefined);
      await archiver?.result().catch(() => undefined);
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
});
