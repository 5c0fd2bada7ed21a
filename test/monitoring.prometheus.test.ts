// The alert rules end to end: a real Prometheus (the Debian binary) scrapes a real worker's
// /metrics with monitoring/tenantsafe.rules.yml loaded; a tenant backup fails for real (storage
// made unwritable) and the alert fires, then resolves after the next backup succeeds.
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { projectRoot } from '../lib/config';
import { freePorts } from '../lib/process';
import { createTestEnv, runCli, type TestEnv } from './support/env';
import { startPrometheus, type PrometheusServer } from './support/prometheus';
import { waitFor } from './support/wait';

interface Alert {
  labels: Record<string, string>;
  annotations: Record<string, string>;
  state: 'pending' | 'firing';
}

describe('alert rules end to end: a real Prometheus scraping a real worker', function () {
  this.timeout(180_000);
  let env: TestEnv;
  let prometheus: PrometheusServer;
  let storageDir: string;
  const alerts = async (): Promise<Alert[]> => ((await prometheus.api('alerts')) as { alerts: Alert[] }).alerts;
  const backup = (tenantId: string) => runCli(['backup', 'tenant', tenantId, '--wait', '--json'], { configFile: env.configFile });

  before(async function () {
    this.timeout(240_000);
    const [port] = await freePorts('127.0.0.1', 1);
    env = await createTestEnv('local', {
      configure: (doc) => {
        doc.worker = { metricsPort: port };
        doc.monitoring = { cacheTtl: '200ms' };
      },
    });
    storageDir = (env.config.storage.primary as { path: string }).path;
    await env.startWorker();
    prometheus = await startPrometheus(path.join(env.dir, 'prometheus'), {
      targets: [`127.0.0.1:${port}`],
      ruleFiles: [path.join(projectRoot, 'monitoring/tenantsafe.rules.yml')],
      intervalS: 1,
    });
  });
  after(async () => {
    await prometheus?.stop();
    await env?.close();
  });

  it('fires TenantsafeBackupFailed once a tenant backup fails, naming the database and kind, and resolves after the next success', async () => {
    assert.equal((await backup('acme')).code, 0);
    await waitFor('Prometheus scrapes the worker and loaded the rules', async () => {
      const up = (await prometheus.api('query?query=' + encodeURIComponent('tenantsafe_failing{kind="tenant"}'))) as { result: { value: [number, string] }[] };
      const groups = (await prometheus.api('rules')) as { groups: { rules: unknown[] }[] };
      return up.result.length === 1 && up.result[0].value[1] === '0' && groups.groups[0]?.rules.length === 19;
    }, { tries: 150, intervalMs: 200 });
    assert.deepEqual((await alerts()).filter((a) => a.labels.alertname === 'TenantsafeBackupFailed'), [], 'nothing failed yet');

    fs.renameSync(storageDir, `${storageDir}.away`);
    fs.writeFileSync(storageDir, 'not a directory\n');
    try {
      assert.equal((await backup('globex')).code, 1);
    } finally {
      fs.rmSync(storageDir);
      fs.renameSync(`${storageDir}.away`, storageDir);
    }
    let fired: Alert | undefined;
    await waitFor('the alert fires', async () => {
      fired = (await alerts()).find((a) => a.labels.alertname === 'TenantsafeBackupFailed' && a.state === 'firing');
      return !!fired;
    }, { tries: 150, intervalMs: 200, state: async () => JSON.stringify(await alerts()) });
    assert.deepEqual(fired!.labels, { alertname: 'TenantsafeBackupFailed', database: env.db.name, kind: 'tenant', severity: 'critical' });
    assert.equal(fired!.annotations.summary, `1 tenant backup(s) of ${env.db.name} failed on their latest attempt`);
    assert.equal(fired!.annotations.runbook_url, 'docs/runbooks/monitoring.md#backup-failed');
    const counted = (await prometheus.api('query?query=' + encodeURIComponent('tenantsafe_failures_total'))) as { result: { metric: Record<string, string>; value: [number, string] }[] };
    assert.deepEqual(counted.result.map((r) => [r.metric.workflow, r.metric.type, r.value[1]]), [['tenantBackup', 'StorageUnwritable', '1']]);

    assert.equal((await backup('globex')).code, 0);
    await waitFor('the alert resolves', async () => !(await alerts()).some((a) => a.labels.alertname === 'TenantsafeBackupFailed'), { tries: 150, intervalMs: 200 });
  });
});
