// The least-privilege roles of README's "Privileges", created by running its SQL block as written
// on a fresh cluster, then used for everything after: tenant backups and a full backup as the
// backup role, a tenant restore (preview, approval, apply, verification) as the restore role, no
// superuser. A tenant table with row-level security (FORCE) is backed up completely, or not at all.
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { withConnection } from '../lib/pg';
import { damageTenant } from '../sample/damage';
import { ensureSampleDatabase, sampleTenants, type SampleOptions } from '../sample/generate';
import { liveRows, readBackup } from './support/backups';
import { physicalBackups, startSourceCluster, stopWalArchiver, type SourceCluster } from './support/cluster';
import { createTestEnv, runCli, type TestEnv } from './support/env';
import { checksumsOf } from './support/restore';

const sample: SampleOptions = { tenants: 4, rows: 3000 };
const tenantId = sampleTenants(sample)[1].tenantId;

/** README's least-privilege SQL, as written (the password filled in). */
function readmePrivilegesSql(): string {
  const readme = fs.readFileSync(path.join(__dirname, '..', 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('## Privileges'));
  const block = /```sql\n([\s\S]*?)```/.exec(section);
  assert.ok(block, 'README\'s Privileges section has an SQL block');
  return block[1].replace(/'…'/g, "'secret'");
}

describe('least privilege: README\'s roles, no superuser', function () {
  let source: SourceCluster;
  let backupEnv: TestEnv;
  let restoreEnv: TestEnv;
  let backupId: string;
  /** as the administrator who ran the setup */
  const admin = <T>(sql: string, params: unknown[] = []) => withConnection(source.cluster.url('saas'), async (c) => (await c.query(sql, params)).rows as T[]);
  const asBackup = (...args: string[]) => runCli([...args, '--json'], { configFile: backupEnv.configFile });
  const asRestore = (...args: string[]) => runCli([...args, '--json'], { configFile: restoreEnv.configFile });
  const roleDb = (role: string) => ({ name: 'saas', url: source.cluster.url('saas').replace('postgres@', `${role}@`), tenants: [], drop: async () => undefined });
  const tenantState = async () => checksumsOf(await liveRows(restoreEnv.config, tenantId));

  before(async function () {
    this.timeout(300_000);
    source = await startSourceCluster('setup');
    await ensureSampleDatabase(source.cluster.url('postgres'), 'saas', sample);
    // the application isolates tenants with row-level security on projects, binding its owner too
    await admin(`
      ALTER TABLE app.projects ENABLE ROW LEVEL SECURITY;
      ALTER TABLE app.projects FORCE ROW LEVEL SECURITY;
      CREATE POLICY tenant_isolation ON app.projects USING (tenant_id = current_setting('app.tenant', true))`);
    await admin(readmePrivilegesSql());
    backupEnv = await createTestEnv('local', { db: roleDb('tenantsafe_backup'), configure: (doc, dir) => physicalBackups(doc, dir, source) });
    restoreEnv = await createTestEnv('local', {
      db: roleDb('tenantsafe_restore'),
      configure: (doc) => {
        doc.storage = backupEnv.document.storage;
        // one repository, one master key: every config that reads it names the same key file
        doc.encryption = { keyFile: path.join(backupEnv.dir, 'tenantsafe.key') };
      },
    });
    await backupEnv.startWorker();
    await restoreEnv.startWorker();
  });

  after(async () => {
    if (backupEnv) await stopWalArchiver(backupEnv);
    await restoreEnv?.close();
    await backupEnv?.close();
    await source?.remove();
  });

  it('README\'s block makes two roles, neither a superuser, the backup role alone with REPLICATION', async () => {
    const roles = await admin<{ rolname: string; rolsuper: boolean; rolreplication: boolean; rolbypassrls: boolean }>(
      `SELECT rolname, rolsuper, rolreplication, rolbypassrls FROM pg_roles WHERE rolname LIKE 'tenantsafe%' ORDER BY 1`,
    );
    assert.deepEqual(roles, [
      { rolname: 'tenantsafe_backup', rolsuper: false, rolreplication: true, rolbypassrls: true },
      { rolname: 'tenantsafe_restore', rolsuper: false, rolreplication: false, rolbypassrls: true },
    ]);
  });

  it('a role that row-level security would show fewer rows fails the backup, naming the table and BYPASSRLS, and records nothing', async () => {
    await admin(`ALTER ROLE tenantsafe_backup NOBYPASSRLS`);
    try {
      // the defect this prevents: an ordinary read under the policies sees none of the tenant's projects
      const [seen] = await withConnection(source.cluster.url('saas'), async (c) => {
        // as an ordinary client would read (tenantsafe's own sessions turn row_security off)
        await c.query('SET row_security = on; SET ROLE tenantsafe_backup');
        return (await c.query<{ n: number }>(`SELECT count(*)::int AS n FROM app.projects WHERE tenant_id = $1`, [tenantId])).rows;
      });
      assert.equal(seen.n, 0, 'under the policies the role silently sees no project');
      const r = await asBackup('backup', 'tenant', tenantId, '--wait');
      assert.equal(r.code, 1, r.stdout + r.stderr);
      const error = JSON.parse(r.stderr).error as string;
      assert.match(error, /The database role "tenantsafe_backup" lacks a privilege: query would be affected by row-level security policy for table "projects"/);
      assert.match(error, /HINT: .*ALTER ROLE tenantsafe_backup BYPASSRLS/);
      assert.deepEqual((await asBackup('backups', 'list', '--tenant', tenantId)).json(), [], 'no backup recorded');
      // and doctor says so beforehand
      const doctor = JSON.parse((await asBackup('doctor')).stdout) as { checks: { check: string; status: string; detail: string; hint?: string }[] };
      const rls = doctor.checks.find((l) => l.check === 'privileges: row-level security');
      assert.equal(rls?.status, 'critical', JSON.stringify(rls));
      assert.match(rls!.detail, /"app"\."projects"/);
      assert.match(rls!.hint!, /ALTER ROLE tenantsafe_backup BYPASSRLS/);
    } finally {
      await admin(`ALTER ROLE tenantsafe_backup BYPASSRLS`);
    }
  });

  it('a role missing a grant fails with an error naming the role, what was refused and the grant', async () => {
    await admin(`REVOKE SELECT ON app.labels FROM tenantsafe_backup`);
    try {
      const r = await asBackup('backup', 'tenant', tenantId, '--wait');
      assert.equal(r.code, 1, r.stdout + r.stderr);
      const out = JSON.parse(r.stderr) as { error: string; type: string };
      assert.match(out.error, /The database role "tenantsafe_backup" lacks a privilege: permission denied for table labels\. HINT: GRANT SELECT .* TO tenantsafe_backup/);
    } finally {
      await admin(`GRANT SELECT ON app.labels TO tenantsafe_backup`);
    }
  });

  it('backs the tenant up completely as the backup role, the table with row-level security included', async () => {
    const r = await asBackup('backup', 'tenant', tenantId, '--wait');
    assert.equal(r.code, 0, r.stderr);
    backupId = r.json().backupId;
    const backup = await readBackup(backupEnv.engine.store, tenantId, backupId);
    const [all] = await admin<{ n: number }>(`SELECT count(*)::int AS n FROM app.projects WHERE tenant_id = $1`, [tenantId]);
    assert.ok(all.n > 0);
    assert.equal(backup.rows.get('app.projects')!.length, all.n, 'every project row, as the table owner sees them without policies');
    assert.deepEqual(checksumsOf(backup.rows), await tenantState(), 'the backup is the tenant');
  });

  it('restores as the restore role: preview, approval, apply in replica mode, verification', async () => {
    await withConnection(source.cluster.url('saas'), (c) => damageTenant(c, tenantId));
    const requested = await asRestore('restore', 'tenant', tenantId, '--backup', backupId, '--by', 'alice');
    assert.equal(requested.code, 0, requested.stderr);
    const out = requested.json();
    assert.equal(out.state, 'awaiting-approval');
    assert.ok(out.preview.tables['app.projects'].insert > 0, 'the diff sees the projects row-level security would hide');
    const approved = await asRestore('restore', 'approve', out.restoreId, '--by', 'bob', '--digest', out.previewDigest, '--wait');
    assert.equal(approved.code, 0, approved.stderr);
    const done = approved.json();
    assert.equal(done.state, 'done');
    assert.ok(done.verification.ok);
    assert.equal(done.applied.replicaMode, true, 'SET on session_replication_role was granted');
    const backup = await readBackup(backupEnv.engine.store, tenantId, backupId);
    assert.deepEqual(await tenantState(), checksumsOf(backup.rows), 'the tenant equals the backup');
  });

  it('without SET on session_replication_role the restore applies with PostgreSQL\'s own checks', async () => {
    await admin(`REVOKE SET ON PARAMETER session_replication_role FROM tenantsafe_restore`);
    try {
      await withConnection(source.cluster.url('saas'), (c) => damageTenant(c, tenantId));
      const requested = await asRestore('restore', 'tenant', tenantId, '--backup', backupId, '--by', 'alice');
      assert.equal(requested.code, 0, requested.stderr);
      const out = requested.json();
      const approved = await asRestore('restore', 'approve', out.restoreId, '--by', 'bob', '--digest', out.previewDigest, '--wait');
      assert.equal(approved.code, 0, approved.stderr);
      const done = approved.json();
      assert.equal(done.state, 'done');
      assert.equal(done.applied.replicaMode, false);
      assert.ok(done.verification.ok);
    } finally {
      await admin(`GRANT SET ON PARAMETER session_replication_role TO tenantsafe_restore`);
    }
  });

  it('takes a full backup as the backup role', async () => {
    const r = await asBackup('full-backup', '--wait');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.json().kind, 'physical');
    assert.ok(r.json().bytes > 100_000);
  });
});
