import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { freePorts } from '../lib/process';
import { runCli } from './support/env';

describe('the demo (README command 1)', function () {
  let home: string;
  before(() => {
    home = fs.mkdtempSync(path.join(os.tmpdir(), 'tenantsafe-demo-'));
    fs.chmodSync(home, 0o755); // the postgres OS user must reach the cluster inside
  });
  after(() => fs.rmSync(home, { recursive: true, force: true }));

  it('brings up the stack, backs up a tenant, damages it, and restores it after a second person approves', async () => {
    const [pg, temporal, ui, dashboard] = await freePorts('127.0.0.1', 4);
    const res = await runCli(['demo', '--json', '--home', home, '--pg-port', String(pg), '--temporal-port', String(temporal), '--ui-port', String(ui), '--dashboard-port', String(dashboard)], { timeoutMs: 300_000 });
    assert.equal(res.code, 0, res.stderr);
    const out = res.json();
    assert.equal(out.tenantId, 'globex');
    assert.equal(out.ownedTables, 12);
    assert.deepEqual(out.globalTables, ['app.countries', 'app.feature_flags', 'app.plans']);
    assert.equal(out.backup.status, 'completed');
    assert.ok(out.backup.rows > 10_000, `rows: ${out.backup.rows}`);
    assert.equal(out.restore.requestedBy === out.restore.approvedBy, false);
    const changes = Object.values(out.restore.preview as Record<string, { insert: number; update: number; delete: number }>);
    assert.ok(changes.some((t) => t.insert > 0) && changes.some((t) => t.update > 0) && changes.some((t) => t.delete > 0), 'the preview shows inserts, updates and deletes');
    assert.equal(out.restore.outcome.state, 'done');
    assert.match(out.restore.outcome.safetyBackupId, /S-/);
    assert.equal(out.tenantMatchesBackup, true);
    assert.ok(out.restore.outcome.verification.tables.every((t: { ok: boolean }) => t.ok));
    assert.equal(out.uiUrl, `http://127.0.0.1:${ui}`);
    assert.equal(out.dashboardUrl, `http://127.0.0.1:${dashboard}`);
    const tokenFile = path.join(home, 'dashboard-token');
    assert.equal(fs.statSync(tokenFile).mode & 0o777, 0o600, 'the dev operator\'s token is readable by its owner only');
    assert.ok(res.stderr.includes(`dashboard: http://127.0.0.1:${dashboard}/ (sign in as "dev" with the token in ${tokenFile})`), res.stderr);
    assert.ok(!res.stderr.includes(fs.readFileSync(tokenFile, 'utf8').trim()), 'the token itself is not printed');
    assert.match(res.stderr, new RegExp(`Dashboard: http://127\\.0\\.0\\.1:${dashboard}/restores/${out.restore.restoreId}`));
    assert.ok(fs.existsSync(path.join(home, 'backups', 'tenants', 'globex', out.backup.backupId, 'manifest.json')));
    assert.match(res.stderr, /generated the sample multi-tenant database tenantsafe_sample \(40 tenants/);
  });
});
