// Verification of tenant backups: the committed broken repository (missing object, flipped
// byte, unknown format, rows that restore to other checksums) and a real tenant backup.
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import { withDb } from './support/db';
import { createTestEnv, runCli, type TestEnv } from './support/env';
import { fixtureRoot, fixtures } from './fixtures/makeBrokenRepo';
import { verifyRecentBackups } from '../workflows';

interface Check {
  check: string;
  target: string;
  result: string;
  detail?: string;
}

describe('verification of tenant backups', function () {
  this.timeout(120_000);
  let env: TestEnv;
  const cli = (args: string[]) => runCli([...args, '--json'], { configFile: env.configFile });
  const verify = async (backupId: string) => {
    const res = await cli(['verify', backupId]);
    return { code: res.code, stderr: res.stderr, ...(res.code === 2 ? { ok: false, checks: [] as Check[] } : (res.json() as { ok: boolean; checks: Check[] })) };
  };
  const summary = (checks: Check[]) => checks.map((c) => [c.check, c.target, c.result]);

  before(async () => {
    env = await createTestEnv('local');
    const root = env.config.storage.primary.kind === 'local' ? env.config.storage.primary.path : '';
    fs.cpSync(fixtureRoot, root, { recursive: true });
    await env.startWorker();
  });
  after(async () => env?.close());
  afterEach(async () => {
    const leaked = await withDb(env.db.url, (c) => c.query(`SELECT nspname FROM pg_namespace WHERE nspname LIKE 'tenantsafe_verify_%'`));
    assert.deepEqual(leaked.rows, [], 'a scratch schema was left behind');
  });

  it('indexes the fixtures and reports the manifest of an unknown format as invalid', async () => {
    const res = await cli(['catalog', 'rebuild']);
    assert.equal(res.code, 0, res.stderr);
    assert.equal(res.json().indexed, 4);
    assert.deepEqual(res.json().invalid.map((i: { key: string }) => i.key), [`tenants/acme/${fixtures.unknownFormat}/manifest.json`]);
  });

  it('passes a good backup: manifest, every object, and the restore of every table', async () => {
    const out = await verify(fixtures.good);
    assert.equal(out.code, 0, out.stderr);
    assert.equal(out.ok, true);
    assert.deepEqual(summary(out.checks), [
      ['manifest', 'manifest.json', 'ok'],
      ['object', 'data/0001-app.notes.copy.gz', 'ok'],
      ['object', 'data/0002-app.tags.copy.gz', 'ok'],
      ['restore', 'app.notes', 'ok'],
      ['restore', 'app.tags', 'ok'],
    ]);
  });

  it('reports a missing object as missing and does not run the restore test', async () => {
    const out = await verify(fixtures.missingObject);
    assert.equal(out.code, 1);
    assert.deepEqual(summary(out.checks.filter((c) => c.result !== 'ok')), [
      ['object', 'data/0002-app.tags.copy.gz', 'missing'],
      ['restore', 'restore test', 'other'],
    ]);
  });

  it('reports a flipped byte as a checksum mismatch of that object', async () => {
    const out = await verify(fixtures.flippedByte);
    assert.equal(out.code, 1);
    assert.deepEqual(summary(out.checks.filter((c) => c.check === 'object')), [
      ['object', 'data/0001-app.notes.copy.gz', 'checksum_mismatch'],
      ['object', 'data/0002-app.tags.copy.gz', 'ok'],
    ]);
  });

  it('refuses a manifest of an unknown format version, saying which version it reads', async () => {
    const out = await verify(fixtures.unknownFormat);
    assert.equal(out.code, 1);
    assert.equal(out.checks[0].result, 'other');
    assert.match(out.checks[0].detail!, /format version 99; this tenantsafe reads versions 1 to 6\./);
  });

  it('catches a backup whose restore test gives other checksums, though every object is intact', async () => {
    const out = await verify(fixtures.otherChecksums);
    assert.equal(out.code, 1);
    assert.ok(out.checks.filter((c) => c.check === 'object').every((c) => c.result === 'ok'));
    assert.deepEqual(summary(out.checks.filter((c) => c.check === 'restore')), [
      ['restore', 'app.notes', 'checksum_mismatch'],
      ['restore', 'app.tags', 'ok'],
    ]);
  });

  it('verifies a real tenant backup of the sample database, enums, domains and arrays included', async () => {
    const backup = await cli(['backup', 'tenant', 'globex', '--wait']);
    assert.equal(backup.code, 0, backup.stderr);
    const out = await verify(backup.json().backupId);
    assert.equal(out.code, 0, JSON.stringify(out.checks.filter((c) => c.result !== 'ok')));
    assert.equal(out.checks.filter((c) => c.check === 'restore').length, 12);
    const recorded = await withDb(env.db.url, (c) => c.query(`SELECT ok, report_key FROM tenantsafe.verifications WHERE backup_id = $1`, [backup.json().backupId]));
    assert.deepEqual(recorded.rows.map((r) => r.ok), [true]);
  });

  it('verifies, on the schedule\'s behalf, every tenant backup not verified yet, and each only once', async () => {
    const fresh: string[] = [];
    for (const tenant of env.db.tenants.slice(1, 3)) {
      const backup = await cli(['backup', 'tenant', tenant.tenantId, '--wait']);
      assert.equal(backup.code, 0, backup.stderr);
      fresh.push(backup.json().backupId);
    }
    const run = (n: number) =>
      env.temporal.workflow.execute(verifyRecentBackups, { taskQueue: env.config.temporal.taskQueue, workflowId: `verify-recent-test-${n}`, args: [{ tenantBackups: 50 }] });
    const first = await run(1);
    assert.deepEqual(first.failed, []);
    for (const backupId of fresh) assert.deepEqual(first.verified.find((v) => v.backupId === backupId), { backupId, ok: true });
    const second = await run(2);
    assert.deepEqual(second, { verified: [], failed: [] }, 'nothing is left to verify');
  });

  it('answers an unknown backup id with exit code 2', async () => {
    const out = await cli(['verify', '20990101-000000T-abcdef']);
    assert.equal(out.code, 2);
    assert.equal(JSON.parse(out.stderr).type, 'BackupNotFound');
  });
});
