// Every runbook's commands run as written, in order, against the real things: a runbook that no
// longer matches the CLI fails here. test/support/runbook.ts says how runbooks mark their steps.
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import { damageTenant } from '../sample/damage';
import { liveRows } from './support/backups';
import { withDb } from './support/db';
import { createTestEnv, runCli, type TestEnv } from './support/env';
import { checksumsOf } from './support/restore';
import { readOff, runbooksDir, runbookSteps, runRunbook } from './support/runbook';

describe('runbooks', function () {
  it('mark the commands an operator types, and every runbook the DR issue names has some', () => {
    for (const name of ['tenant-restore-undo']) {
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
});
