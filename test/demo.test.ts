import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { freePorts } from '../lib/devstack/process';
import { runCli } from './support/env';

describe('the demo (README command 1)', function () {
  let home: string;
  before(() => {
    home = fs.mkdtempSync(path.join(os.tmpdir(), 'tenantsafe-demo-'));
    fs.chmodSync(home, 0o755); // the postgres OS user must reach the cluster inside
  });
  after(() => fs.rmSync(home, { recursive: true, force: true }));

  it('brings up a private Postgres with the sample, Temporal and a worker, and backs up a tenant', async () => {
    const [pg, temporal, ui] = await freePorts('127.0.0.1', 3);
    const res = await runCli(['demo', '--json', '--home', home, '--pg-port', String(pg), '--temporal-port', String(temporal), '--ui-port', String(ui)], { timeoutMs: 300_000 });
    assert.equal(res.code, 0, res.stderr);
    const out = res.json();
    assert.equal(out.tenantId, 'globex');
    assert.equal(out.ownedTables, 12);
    assert.deepEqual(out.globalTables, ['app.countries', 'app.feature_flags', 'app.plans']);
    assert.equal(out.backup.status, 'completed');
    assert.ok(out.backup.rows > 10_000, `rows: ${out.backup.rows}`);
    assert.equal(out.listed, true);
    assert.equal(out.uiUrl, `http://127.0.0.1:${ui}`);
    assert.ok(fs.existsSync(path.join(home, 'backups', 'tenants', 'globex', out.backup.backupId, 'manifest.json')));
    assert.match(res.stderr, /generated the sample multi-tenant database tenantsafe_sample \(40 tenants/);
  });
});
