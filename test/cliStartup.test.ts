// The CLI's start (issue 26): the compiled build (scripts/build.js) makes each module require what
// it imports when it first uses it, so a command loads only what it runs. The transform on small
// modules (what is deferred, what is not, lines kept), then the real build: `--version` and
// `--help` load neither pg, yaml nor the Temporal SDK; a catalog command loads pg but not Temporal.
// And node's options and environment for a worker, which bin/tenantsafe's launcher line gives.
import { strict as assert } from 'node:assert';
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { transformSync } from 'esbuild';
import { projectRoot } from '../lib/config';
import { freshDatabase, type TestDatabase } from './support/db';
import { workerEnvironment, workerNodeOptions } from '../workers/process';

const { lazyImports } = require('../scripts/build.js') as { lazyImports(code: string): string };

/** `source` compiled as the build compiles it. */
function compiled(source: string): string {
  const { code } = transformSync(source, { loader: 'ts', format: 'cjs', platform: 'node', target: 'node20', sourcemap: 'inline', sourcesContent: false, sourcefile: 'm.ts' });
  return lazyImports(code);
}

/** Runs compiled code as a module whose require records what it was asked for. */
function load(code: string, modules: Record<string, unknown>): { exports: Record<string, any>; required: string[] } {
  const required: string[] = [];
  const fakeRequire = (id: string) => {
    required.push(id);
    return modules[id];
  };
  const module = { exports: {} as Record<string, any> };
  new Function('require', 'module', 'exports', code)(fakeRequire, module, module.exports);
  return { exports: module.exports, required };
}

function run(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, args, { cwd: projectRoot, env: { ...process.env, TENANTSAFE_CONFIG: '', ...env }, timeout: 60_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? Number((err as { code?: unknown }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

/** The packages (and tenantsafe's own folders) a CLI command loaded, through the real build. */
async function loadedBy(args: string[]): Promise<{ code: number; stdout: string; packages: Set<string> }> {
  const script = `require('./scripts/register.js');
const main = require('./client/cli.ts').main;
main(['node', 'tenantsafe', ...${JSON.stringify(args)}]).then((code) => {
  process.stderr.write('\\nLOADED ' + JSON.stringify(Object.keys(require.cache)) + '\\n');
  process.exitCode = code;
});`;
  const { code, stdout, stderr } = await run(['-e', script]);
  const line = stderr.split('\n').find((l) => l.startsWith('LOADED '));
  assert.ok(line, `the script ran: ${stderr}`);
  const files = JSON.parse(line.slice('LOADED '.length)) as string[];
  const packages = new Set(files.map((f) => f.match(/node_modules\/((?:@[^/]+\/)?[^/]+)/)?.[1] ?? path.relative(projectRoot, f).split(path.sep)[0]));
  return { code, stdout, packages };
}

describe('the CLI loads only what a command runs', function () {
  this.timeout(120_000);

  describe('the build defers each import to its first use', () => {
    it('requires a named import when the module first reads it, once, and keeps its value and `new`', () => {
      const code = compiled(`import { add, Thing } from './dep';\nexport function twice(x: number) { return add(add(x, x), 0); }\nexport function make() { return new Thing(); }\n`);
      class Thing {}
      const dep = { add: (a: number, b: number) => a + b, Thing };
      const m = load(code, { './dep': dep });
      assert.deepEqual(m.required, [], 'nothing required when the module loads');
      assert.equal(m.exports.twice(3), 6);
      assert.ok(m.exports.make() instanceof Thing);
      assert.deepEqual(m.required, ['./dep'], 'required once, at the first use');
    });

    it('keeps loading eagerly what is imported for its side effects, as a namespace, or used as a value', () => {
      const code = compiled(`import './effects';\nimport * as ns from './ns';\nimport { one } from './one';\nimport def from './def';\nexport const all = () => [ns.x, one, def];\n`);
      const m = load(code, { './effects': {}, './ns': { x: 1 }, './one': { one: 2 }, './def': { __esModule: true, default: 3 } });
      assert.deepEqual(m.required, ['./effects', './ns'], 'side effects and namespaces at load');
      assert.deepEqual(m.exports.all(), [1, 2, 3]);
      assert.deepEqual(m.required, ['./effects', './ns', './one', './def']);

      const whole = compiled(`import * as lib from './lib';\nimport { a } from './a';\nexport const f = () => a;\nexport const g = (x: unknown) => Object.keys(lib).concat(String(x));\n`);
      assert.match(whole, /__lazyImport\(\(\) => require\("\.\/a"\), \["a"\]\)/);
    });

    it('moves no line, so source maps and stack traces point where they did', () => {
      const source = `import { a } from './a';\nimport { b } from './b';\n\nexport function f() {\n  return a() + b();\n}\n`;
      const { code } = transformSync(source, { loader: 'ts', format: 'cjs', platform: 'node', target: 'node20', sourcemap: 'inline', sourcesContent: false, sourcefile: 'm.ts' });
      const lazy = lazyImports(code);
      const lines = (s: string) => s.split('\n');
      const mapLine = (s: string) => lines(s).findIndex((l) => l.startsWith('//# sourceMappingURL='));
      assert.equal(mapLine(lazy), mapLine(code) + 1, 'one line added, after the code');
      const functionLine = (s: string) => lines(s).findIndex((l) => l.startsWith('function f('));
      assert.equal(functionLine(lazy), functionLine(code));
      assert.equal(lazyImports('var x = 1;\n'), 'var x = 1;\n', 'a module without imports is left as it is');
    });

    it('is safe for the compiled sources: none does anything at load but declare (and run itself as main)', () => {
      // A module whose loading did something (registered a handler, set a global) would now do it
      // at the first use of one of its exports, or never: such a statement fails this test.
      const ts = require('typescript') as typeof import('typescript');
      const sourceDirs = ['activities', 'client', 'lib', 'sample', 'workers', 'workflows'];
      const files = sourceDirs.flatMap((dir) => (fs.readdirSync(path.join(projectRoot, dir), { recursive: true }) as string[]).filter((f) => f.endsWith('.ts')).map((f) => path.join(dir, f)));
      assert.ok(files.length > 100, `${files.length} sources`);
      const runsAsMain = (s: import('typescript').Statement) => ts.isIfStatement(s) && s.expression.getText() === 'require.main === module';
      const offending = files.flatMap((file) => {
        const source = ts.createSourceFile(file, fs.readFileSync(path.join(projectRoot, file), 'utf8'), ts.ScriptTarget.ES2022, true);
        return source.statements.filter((s) => !ts.isDeclarationStatement(s) && !ts.isVariableStatement(s) && !ts.isImportDeclaration(s) && !ts.isExportDeclaration(s) && !ts.isExportAssignment(s) && !runsAsMain(s)).map((s) => `${file}:${source.getLineAndCharacterOfPosition(s.getStart()).line + 1}: ${s.getText().slice(0, 60)}`);
      });
      assert.deepEqual(offending, []);
    });
  });

  describe('the compiled CLI', () => {
    let db: TestDatabase;
    let dir: string;
    before(async () => {
      // A build of the current sources, as setup makes it (quick when it is up to date).
      const build = await run(['scripts/build.js']);
      assert.equal(build.code, 0, build.stderr);
      db = await freshDatabase({ tenants: 2, rows: 100 });
      dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tenantsafe-startup-'));
    });
    after(async () => {
      await db?.drop();
      if (dir) fs.rmSync(dir, { recursive: true, force: true });
    });

    it('answers --version and --help without loading pg, yaml or the Temporal SDK', async () => {
      for (const args of [['--version'], ['--help'], ['restore', 'tenant', '--help']]) {
        const { code, stdout, packages } = await loadedBy(args);
        assert.equal(code, 0, args.join(' '));
        assert.ok(stdout.length > 0, 'it printed its answer');
        for (const heavy of ['pg', 'yaml', '@temporalio/client', '@temporalio/common', '@grpc/grpc-js', 'protobufjs', '@google-cloud/storage', 'nodemailer', 'prom-client']) {
          assert.ok(!packages.has(heavy), `${args.join(' ')} loaded ${heavy}`);
        }
        assert.ok(packages.has('commander'));
      }
    });

    it('shows TypeScript lines in stack traces without turning on Node\'s source maps at start', async () => {
      const source = fs.readFileSync(path.join(projectRoot, 'client/output.ts'), 'utf8').split('\n');
      const line = source.findIndex((l) => l.includes('rows.length === 0')) + 1;
      const compiledLine = fs.readFileSync(path.join(projectRoot, 'build/client/output.js'), 'utf8').split('\n').findIndex((l) => l.includes('rows.length === 0')) + 1;
      assert.notEqual(compiledLine, line, 'the compiled file has the line elsewhere (else this test shows nothing)');
      const script = `require('./scripts/register.js');
process.stdout.write(JSON.stringify({ maps: process.sourceMapsEnabled ?? null }) + '\\n');
try { require('./client/output.ts').table(null, ['a']); } catch (err) { process.stdout.write(err.stack); }`;
      const { code, stdout, stderr } = await run(['-e', script]);
      assert.equal(code, 0, stderr);
      const [first, ...stack] = stdout.split('\n');
      assert.equal(JSON.parse(first).maps, false, 'Node\'s own source maps stay off');
      assert.match(stack[0], /^TypeError: Cannot read properties of null/);
      assert.ok(stack.some((l) => l.includes(`${path.join(projectRoot, 'client/output.ts')}:${line}:`)), stack.join('\n'));
    });

    it('reads the catalog for `backups list` with pg and the config, without the Temporal SDK or the alerts\' mailer', async () => {
      const config = path.join(dir, 'tenantsafe.yaml');
      fs.writeFileSync(config, [`database: { url: "${db.url}" }`, `storage: { primary: { kind: local, path: "${path.join(dir, 'backups')}" } }`, 'temporal: { address: "127.0.0.1:1" }', ''].join('\n'));
      const { code, stdout, packages } = await loadedBy(['--config', config, 'backups', 'list', '--json']);
      assert.equal(code, 0, stdout);
      assert.deepEqual(JSON.parse(stdout), []);
      for (const used of ['pg', 'yaml']) assert.ok(packages.has(used), `loaded ${used}`);
      for (const unused of ['@temporalio/client', '@temporalio/workflow', '@grpc/grpc-js', 'protobufjs', '@google-cloud/storage', 'nodemailer', 'prom-client']) {
        assert.ok(!packages.has(unused), `backups list loaded ${unused}`);
      }
    });
  });
});

describe("the worker's node options and environment", () => {
  const bin = path.join(projectRoot, 'bin/tenantsafe');
  /** bin/tenantsafe run as a command; a preloaded script prints what its node got and exits */
  const launched = async (env: Record<string, string>): Promise<{ execArgv: string[]; arena: string | null }> => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tenantsafe-launch-'));
    try {
      const print = path.join(dir, 'print.js');
      fs.writeFileSync(print, 'process.stdout.write(JSON.stringify({ execArgv: process.execArgv, arena: process.env.MALLOC_ARENA_MAX ?? null })); process.exit(0);');
      const { MALLOC_ARENA_MAX: _unset, ...inherited } = process.env;
      const out = await new Promise<string>((resolve, reject) =>
        execFile(bin, ['--version'], { timeout: 60_000, env: { ...inherited, NODE_OPTIONS: `--require ${print}`, ...env } }, (err, stdout) => (err ? reject(err) : resolve(stdout))),
      );
      return JSON.parse(out);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  };

  it("are on bin/tenantsafe's launcher line, which runs as a command", async () => {
    const got = await launched({});
    for (const option of workerNodeOptions) assert.ok(got.execArgv.includes(option), `node ran with ${got.execArgv.join(' ')}`);
    assert.equal(got.arena, workerEnvironment.MALLOC_ARENA_MAX);
    const version = await new Promise<string>((resolve, reject) => execFile(bin, ['--version'], { timeout: 60_000 }, (err, stdout) => (err ? reject(err) : resolve(stdout))));
    assert.match(version, /^\d+\.\d+\.\d+/);
  });

  it("keeps an operator's own MALLOC_ARENA_MAX", async () => {
    assert.equal((await launched({ MALLOC_ARENA_MAX: '8' })).arena, '8');
  });
});
