import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { tenantKeyPath } from '../lib/encryption';
import { pinBackup } from '../lib/retention/pins';
import { backUpNow } from './support/backups';
import { createTestEnv, runCli, type TestEnv } from './support/env';

describe('tenant erase-backups and keys from the CLI', function () {
  let env: TestEnv;
  const storeDir = () => path.join(env.dir, 'backups');
  const cli = (...args: string[]) => runCli([...args, '--json'], { configFile: env.configFile });

  before(async function () {
    this.timeout(120_000);
    env = await createTestEnv('local');
  });
  after(async () => env?.close());

  it('creates the master key file once, and reports the data keys each master key wraps', async function () {
    this.timeout(60_000);
    const init = await cli('keys', 'init');
    assert.equal(init.code, 0, init.stderr);
    assert.deepEqual([init.json().keyFile, init.json().created], [path.join(env.dir, 'tenantsafe.key'), true]);
    const again = await cli('keys', 'init');
    assert.deepEqual([again.code, again.json().created, again.json().masterKeyId], [0, false, init.json().masterKeyId], 'an existing key file is left as it is');
    await backUpNow(env.engine, 'acme');
    const status = await cli('keys', 'status');
    assert.equal(status.code, 0, status.stderr);
    assert.deepEqual(status.json().masterKeys, [init.json().masterKeyId]);
    assert.deepEqual(status.json().dataKeys, { [init.json().masterKeyId]: 1 });
  });

  it('rotates from the CLI: one new master key, every data key under it', async function () {
    this.timeout(60_000);
    const before = (await cli('keys', 'status')).json();
    const rotated = await cli('keys', 'rotate');
    assert.equal(rotated.code, 0, rotated.stderr);
    assert.deepEqual(rotated.json().retired, before.masterKeys);
    const after = (await cli('keys', 'status')).json();
    assert.deepEqual(after.masterKeys, [rotated.json().masterKeyId]);
    assert.deepEqual(Object.keys(after.dataKeys), [rotated.json().masterKeyId]);
  });

  it('refuses to erase a tenant with a pinned backup (exit 2, nothing erased), then erases it and records who did', async function () {
    this.timeout(120_000);
    const backupId = await backUpNow(env.engine, 'globex');
    await pinBackup(env.engine.store, { backupId, reason: 'LEGAL-1', by: 'counsel', at: new Date().toISOString() });
    const refused = await cli('tenant', 'erase-backups', 'globex', '--by', 'dpo');
    assert.equal(refused.code, 2, refused.stderr);
    assert.match(JSON.parse(refused.stderr).error, /pinned \(legal hold\).*HINT: /s);
    assert.ok(fs.existsSync(path.join(storeDir(), tenantKeyPath('globex'))), 'the key is still there');
    assert.equal((await env.engine.catalog.listBackups({ tenantId: 'globex' })).length, 1);

    await env.engine.store.delete(`pins/${backupId}.json`);
    const erased = await cli('tenant', 'erase-backups', 'globex', '--by', 'dpo');
    assert.equal(erased.code, 0, erased.stderr);
    assert.deepEqual(erased.json().backups, [backupId]);
    assert.equal(erased.json().keyDestroyed, true);
    assert.ok(!fs.existsSync(path.join(storeDir(), tenantKeyPath('globex'))));
    const listed = await cli('backups', 'list', '--tenant', 'globex');
    assert.deepEqual(listed.json(), []);
    const audit = await cli('audit', 'list', '--action', 'tenant.erase-backups');
    assert.deepEqual(audit.json().map((e: { by: string; subject: { tenantId: string }; outcome: string }) => [e.by, e.subject.tenantId, e.outcome]), [['dpo', 'globex', 'done']]);
    // acme, backed up under the same master key, is untouched
    assert.ok(fs.existsSync(path.join(storeDir(), tenantKeyPath('acme'))));
  });

  it('refuses an empty tenant id before anything is asked (exit 2)', async () => {
    const r = await cli('tenant', 'erase-backups', ' ', '--by', 'dpo');
    assert.equal(r.code, 2, r.stderr);
    assert.match(JSON.parse(r.stderr).error, /Name the tenant.*HINT: /s);
  });
});
