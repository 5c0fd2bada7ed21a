// The alert rules (monitoring/tenantsafe.rules.yml) under promtool (Debian package prometheus,
// installed by scripts/setup.sh: without it these tests fail, they do not skip), and their ties to
// the rest: every metric they read is one tenantsafe exports and README documents, every
// runbook_url points at a section of the runbook.
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Registry } from 'prom-client';
import { parse as parseYaml } from 'yaml';
import { projectRoot } from '../lib/config';
import { HealthCache, registerHealthMetrics, WorkerMetrics } from '../lib/monitoring/metrics';
import { runPromtool } from './support/prometheus';

const monitoringDir = path.join(projectRoot, 'monitoring');
const rulesFile = path.join(monitoringDir, 'tenantsafe.rules.yml');

interface Rule {
  alert: string;
  expr: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

const rules = (): Rule[] => (parseYaml(fs.readFileSync(rulesFile, 'utf8')) as { groups: { rules: Rule[] }[] }).groups.flatMap((g) => g.rules);

/** The anchors GitHub makes of a Markdown file's headings. */
function anchors(file: string): Set<string> {
  const out = new Set<string>();
  for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
    const m = /^#+ (.+)$/.exec(line);
    if (m) out.add(m[1].trim().toLowerCase().replace(/[^a-z0-9 -]/g, '').replace(/ /g, '-'));
  }
  return out;
}

describe('alert rules', function () {
  this.timeout(60_000);

  it('are valid Prometheus rules, each with a severity and a runbook_url that points at a section of the runbook', async () => {
    const res = await runPromtool(['check', 'rules', rulesFile], monitoringDir);
    assert.equal(res.code, 0, res.stdout + res.stderr);
    assert.match(res.stdout, /SUCCESS: 19 rules found/);
    const sections = anchors(path.join(projectRoot, 'docs/runbooks/monitoring.md'));
    for (const r of rules()) {
      assert.ok(['warning', 'critical'].includes(r.labels?.severity ?? ''), `${r.alert}: severity`);
      const m = /^docs\/runbooks\/monitoring\.md#(.+)$/.exec(r.annotations?.runbook_url ?? '');
      assert.ok(m, `${r.alert}: runbook_url ${r.annotations?.runbook_url}`);
      assert.ok(sections.has(m[1]), `${r.alert}: docs/runbooks/monitoring.md has no section #${m[1]}`);
    }
    const names = new Set(rules().map((r) => r.alert));
    for (const required of ['TenantsafeBackupFailed', 'TenantsafeBackupTooOld', 'TenantsafeVerificationFailed', 'TenantsafeRpoOverTarget', 'TenantsafeWalArchivingStalled', 'TenantsafeChangeLogLagging', 'TenantsafeChangeLogGap', 'TenantsafeRetentionViolated', 'TenantsafeRestoreAwaitingApproval']) {
      assert.ok(names.has(required), `an alert ${required}`);
    }
  });

  it('pass their unit tests (promtool test rules)', async () => {
    const res = await runPromtool(['test', 'rules', 'tenantsafe.rules.test.yml'], monitoringDir);
    assert.equal(res.code, 0, res.stdout + res.stderr);
    assert.match(res.stdout + res.stderr, /SUCCESS/);
  });

  it('have unit tests that catch a broken rule', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tenantsafe-rules-'));
    try {
      fs.copyFileSync(path.join(monitoringDir, 'tenantsafe.rules.test.yml'), path.join(dir, 'tenantsafe.rules.test.yml'));
      const original = fs.readFileSync(rulesFile, 'utf8');
      // each mutation breaks one alert the way a careless edit would; the tests must notice every one
      const mutations: [string, string][] = [
        ['(tenantsafe_failing{kind=~"tenant|full"}) > 0', '(tenantsafe_failing{kind=~"tenant|full"}) > 1'],
        ['max by (database, kind) (tenantsafe_failing', 'sum by (database, kind) (tenantsafe_failing'],
        ['> on (database) 2 * max by (database) (tenantsafe_rpo_target_seconds{source="wal"})', '> on (database) 3 * max by (database) (tenantsafe_rpo_target_seconds{source="wal"})'],
        ['(tenantsafe_changelog_last_gap_timestamp_seconds) < 86400', '(tenantsafe_changelog_last_gap_timestamp_seconds) < 172800'],
        ['max by (database) (tenantsafe_wal_stalled_after_seconds)', 'max by (database) (tenantsafe_wal_stalled_after_seconds) * 2'],
      ];
      for (const [from, to] of mutations) {
        assert.ok(original.includes(from), `the rules contain ${from}`);
        fs.writeFileSync(path.join(dir, 'tenantsafe.rules.yml'), original.replace(from, to));
        const res = await runPromtool(['test', 'rules', 'tenantsafe.rules.test.yml'], dir);
        assert.notEqual(res.code, 0, `the unit tests did not notice: ${from} -> ${to}`);
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('read only metrics tenantsafe exports, and README documents every metric it exports', async () => {
    const registry = new Registry();
    new WorkerMetrics(registry);
    registerHealthMetrics(registry, new HealthCache(async () => Promise.reject(new Error('not needed')), 1000));
    const exported = new Set((await registry.getMetricsAsJSON()).map((m) => m.name));
    const read = new Set(rules().flatMap((r) => r.expr.match(/tenantsafe_[a-z_]+/g) ?? []));
    for (const name of read) assert.ok(exported.has(name), `the rules read ${name}, which nothing exports`);
    const readme = fs.readFileSync(path.join(projectRoot, 'README.md'), 'utf8');
    for (const name of exported) assert.match(readme, new RegExp(`\\| \`${name}\` \\|`), `README.md#metrics documents ${name}`);
  });
});
