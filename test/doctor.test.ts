// `tenantsafe doctor` on a good deployment (every line OK, exit 0) and on broken ones, each failing
// on its own line with a HINT: a role without REPLICATION, wal_level too low for the change log,
// storage that cannot be written, no worker on the task queue.
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ensureSampleDatabase } from '../sample/generate';
import { withConnection } from '../lib/pg';
import { startSourceCluster, type SourceCluster } from './support/cluster';
import { createTestEnv, runCli, type TestEnv } from './support/env';

interface DoctorOutput {
  status: string;
  exitCode: number;
  checks: { check: string; status: string; detail: string; hint?: string }[];
}

describe('tenantsafe doctor', function () {
  this.timeout(180_000);
  let source: SourceCluster;
  let env: TestEnv;

  before(async () => {
    source = await startSourceCluster('scratch', { max_slot_wal_keep_size: '1GB' });
    const { url } = await ensureSampleDatabase(source.cluster.url('postgres'), 'saas', { tenants: 4, rows: 2_000 });
    await withConnection(url, async (c) => {
      await c.query(`CREATE ROLE backup_only LOGIN`);
      await c.query(`GRANT USAGE ON SCHEMA app TO backup_only; GRANT SELECT ON ALL TABLES IN SCHEMA app TO backup_only`);
    });
    env = await createTestEnv('local', { db: { name: 'saas', url, tenants: [], drop: async () => undefined }, configure: (doc, dir) => (doc.verification = { scratchDir: dir }) });
    await env.startWorker();
  });
  after(async () => {
    await env?.close();
    await source?.remove();
  });

  async function doctor(configFile: string): Promise<{ code: number; out: DoctorOutput; text: string }> {
    const [json, text] = await Promise.all([runCli(['doctor', '--json'], { configFile }), runCli(['doctor'], { configFile })]);
    return { code: json.code, out: JSON.parse(json.stdout), text: text.stdout };
  }
  const line = (out: DoctorOutput, check: string) => out.checks.find((c) => c.check === check) ?? assert.fail(`no ${check} line: ${JSON.stringify(out.checks)}`);
  const notOk = (out: DoctorOutput) => out.checks.filter((c) => c.status !== 'ok').map((c) => c.check).sort();

  it('passes every check on a good deployment', async () => {
    const { code, out, text } = await doctor(env.configFile);
    assert.deepEqual(notOk(out), [], text);
    assert.equal(code, 0);
    for (const check of ['config', 'database', 'tenancy', 'privileges: backup', 'privileges: restore', 'privileges: replication', 'wal_level', 'replication slots', 'max_slot_wal_keep_size', 'postgres tools', 'storage', 'scratch disk', 'clock', 'temporal', 'search attributes', 'workers']) line(out, check);
    assert.match(text, /^OK +database: PostgreSQL 15\.\d+/m);
    assert.match(text, /tenantsafe doctor: all checks passed$/m);
  });

  it('names a role without REPLICATION, and what a backup-only role cannot do', async () => {
    const file = env.writeConfig('backup-only.yaml', (d) => (d.database.url = source.cluster.url('saas').replace('postgres@', 'backup_only@')));
    const { code, out, text } = await doctor(file);
    assert.equal(code, 2, text);
    assert.deepEqual(notOk(out), ['privileges: fast apply', 'privileges: replication', 'privileges: restore', 'privileges: restore points']);
    assert.match(line(out, 'privileges: replication').hint!, /ALTER ROLE backup_only REPLICATION/);
    assert.equal(line(out, 'privileges: restore').status, 'warning');
    assert.match(text, /^CRITICAL +privileges: replication: backup_only lacks REPLICATION.*\n +HINT: ALTER ROLE backup_only REPLICATION/m);
  });

  it('names wal_level when the change log needs logical', async () => {
    const { code, out } = await doctor(env.writeConfig('changelog.yaml', (d) => (d.changeLog = { enabled: true })));
    assert.equal(code, 2);
    assert.deepEqual(notOk(out), ['wal_level']);
    assert.match(line(out, 'wal_level').detail, /wal_level is replica; the change log needs logical/);
    assert.match(line(out, 'wal_level').hint!, /ALTER SYSTEM SET wal_level = logical; then restart/);
  });

  it('names storage that cannot be written', async () => {
    const blocker = path.join(env.dir, 'not-a-directory');
    fs.writeFileSync(blocker, 'a file where the storage directory should be');
    const { code, out } = await doctor(env.writeConfig('bad-storage.yaml', (d) => (d.storage.primary = { kind: 'local', path: path.join(blocker, 'backups') })));
    assert.equal(code, 2);
    assert.deepEqual(notOk(out), ['storage']);
    assert.match(line(out, 'storage').hint!, /./);
  });

  it('names a task queue no worker polls', async () => {
    const { code, out } = await doctor(env.writeConfig('no-worker.yaml', (d) => (d.temporal.taskQueue = 'nobody-polls-this')));
    assert.equal(code, 2);
    assert.deepEqual(notOk(out), ['workers']);
    assert.match(line(out, 'workers').hint!, /tenantsafe worker/);
  });
});
