// tenantsafe installed as a package, as an operator does it without a clone: `npm pack`, then
// `npm install <tarball>` into an empty folder (dependencies only: no tsx, no dev tools). The
// installed `tenantsafe` answers --version and runs doctor against a real database, and the
// worker's workflow bundle builds from the installed sources.
import { strict as assert } from 'node:assert';
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { projectRoot } from '../lib/config';
import { freshDatabase, type TestDatabase } from './support/db';

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function run(file: string, args: string[], cwd: string): Promise<Run> {
  return new Promise((resolve) => {
    execFile(file, args, { cwd, timeout: 150_000, maxBuffer: 16 << 20, env: { ...process.env, TENANTSAFE_CONFIG: '' } }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

describe('tenantsafe installed from `npm pack` into an empty folder', function () {
  this.timeout(240_000);
  let dir: string;
  let installed: string;
  let bin: string;
  let db: TestDatabase;

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tenantsafe-package-'));
    const pack = await run('npm', ['pack', '--pack-destination', dir, '--loglevel=error'], projectRoot);
    assert.equal(pack.code, 0, pack.stderr);
    const tarball = path.join(dir, pack.stdout.trim().split('\n').pop()!);
    const app = path.join(dir, 'app');
    fs.mkdirSync(app);
    fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'operator-host', private: true }));
    // From the local npm cache where it has them (the project's own install filled it), else the registry.
    const install = await run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', '--loglevel=error', tarball], app);
    assert.equal(install.code, 0, install.stderr);
    installed = path.join(app, 'node_modules', 'tenantsafe');
    bin = path.join(app, 'node_modules', '.bin', 'tenantsafe');
    db = await freshDatabase({ tenants: 3, rows: 300 });
  });
  after(async () => {
    await db?.drop();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('holds the compiled build and the sources, without the dev dependencies', () => {
    for (const file of ['bin/tenantsafe', 'build/client/cli.js', 'build/sources.txt', 'scripts/register.js', 'client/cli.ts', 'workflows/index.ts', 'temporal-dev.yaml', 'docs/configuration.md']) {
      assert.ok(fs.existsSync(path.join(installed, file)), `the package has ${file}`);
    }
    for (const devOnly of ['tsx', 'mocha', 'esbuild', 'typescript']) assert.ok(!fs.existsSync(path.join(installed, '..', devOnly)), `${devOnly} was not installed`);
    assert.ok(!fs.existsSync(path.join(installed, 'test')), 'the tests are not in the package');
  });

  it('answers --version with the package\'s version, from the compiled build', async () => {
    const { code, stdout, stderr } = await run(bin, ['--version'], dir);
    assert.equal(code, 0, stderr);
    assert.equal(stdout.trim(), JSON.parse(fs.readFileSync(path.join(projectRoot, 'package.json'), 'utf8')).version);
  });

  it('runs doctor against a real database: a line per check, the summary, and an exit code that says what it found', async () => {
    const config = path.join(dir, 'tenantsafe.yaml');
    fs.mkdirSync(path.join(dir, 'backups'));
    fs.writeFileSync(config, [`database: { url: "${db.url}" }`, 'storage: { primary: { kind: local, path: backups } }', `verification: { scratchDir: "${dir}" }`, ''].join('\n'));
    const text = await run(bin, ['doctor', '--no-temporal', '--config', config], dir);
    assert.match(text.stdout, /^OK +config: .*tenantsafe\.yaml is valid$/m, text.stdout + text.stderr);
    assert.match(text.stdout, /^OK +database: PostgreSQL \d+/m);
    assert.match(text.stdout, /^OK +storage: file:\/\/.*written, read back and deleted$/m);
    assert.match(text.stdout, /^tenantsafe doctor: /m);
    assert.doesNotMatch(text.stderr, /\n\s+at /, 'no stack trace');
    const json = await run(bin, ['doctor', '--no-temporal', '--json', '--config', config], dir);
    const report = JSON.parse(json.stdout) as { exitCode: number; checks: { check: string; status: string }[] };
    assert.ok(report.checks.length >= 8, json.stdout);
    assert.ok([0, 1].includes(json.code) && json.code === report.exitCode && text.code === json.code, `exit ${json.code}, reported ${report.exitCode}`);
    assert.ok(report.checks.some((c) => c.check === 'postgres tools'), 'the PostgreSQL tools were looked for');
  });

  it('builds the worker\'s workflow bundle from the installed sources (no tsx)', async () => {
    const cache = path.join(dir, 'cache');
    const script = `process.stdout.write(require(${JSON.stringify(path.join(installed, 'workers', 'bundle.ts'))}).workflowBundlePath(${JSON.stringify(cache)}))`;
    const { code, stdout, stderr } = await run(process.execPath, ['-r', path.join(installed, 'scripts', 'register.js'), '-e', script], dir);
    assert.equal(code, 0, stderr);
    assert.match(fs.readFileSync(stdout, 'utf8'), /tenantBackupsAll/);
  });
});
