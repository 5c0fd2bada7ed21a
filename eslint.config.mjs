// Lint rules that catch what breaks durable code: floating promises anywhere, Node builtins or
// I/O libraries inside workflow code and the pure modules it runs (it must stay deterministic),
// and Postgres connections made anywhere but lib/pg.ts (its factory keeps a dropped connection
// from crashing the process).
import tseslint from 'typescript-eslint';

const nodeBuiltins = ['assert', 'buffer', 'child_process', 'cluster', 'crypto', 'dgram', 'dns', 'events', 'fs', 'http', 'http2', 'https', 'net', 'os', 'path', 'perf_hooks', 'process', 'readline', 'stream', 'timers', 'tls', 'url', 'util', 'v8', 'vm', 'worker_threads', 'zlib'];

const ioModules = [...nodeBuiltins, ...nodeBuiltins.map((m) => `node:${m}`), 'pg', 'pg-copy-streams', '@google-cloud/storage'];

// The engine modules workflows may run (besides importing types from any): pure, no I/O.
const pureModules = ['lib/errors', 'lib/labels', 'lib/inputs', 'lib/time', 'lib/limit', 'lib/restore/rules', 'lib/restore/types'];

export default tseslint.config(
  { ignores: ['node_modules/**', 'var/**', '.venv/**', 'build/**', 'eslint.config.mjs'] },
  {
    files: ['**/*.ts'],
    languageOptions: { parser: tseslint.parser, parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    plugins: { '@typescript-eslint': tseslint.plugin },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': ['error', { checksVoidReturn: false }],
    },
  },
  {
    files: ['**/*.ts'],
    ignores: ['lib/pg.ts', 'workflows/**'],
    rules: {
      'no-restricted-imports': ['error', {
        paths: [{ name: 'pg', importNames: ['Client', 'Pool', 'default'], allowTypeImports: true, message: 'Connect with connect(), withConnection() or createPool() from lib/pg.ts: they survive a dropped connection.' }],
      }],
    },
  },
  {
    files: ['workflows/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', {
        paths: [...ioModules, '@temporalio/activity', '@temporalio/worker', '@temporalio/client'].map((name) => ({ name, message: 'Workflow code must be deterministic: no I/O, no Node builtins. Put it in an activity.' })),
        patterns: [{
          regex: `^\\.\\./(activities(/|$)|lib(/|$)(?!(${pureModules.map((m) => m.slice('lib/'.length)).join('|')})$))`,
          allowTypeImports: true,
          message: `Workflows import activity and engine *types* only; of lib/ they may run the pure modules: ${pureModules.join(', ')}.`,
        }],
      }],
    },
  },
  {
    files: pureModules.map((m) => `${m}.ts`),
    rules: {
      'no-restricted-imports': ['error', {
        paths: ioModules.map((name) => ({ name, message: 'Workflows run this module: no I/O, no Node builtins.' })),
        patterns: [
          { group: ['@temporalio/*'], message: 'A pure module knows nothing of Temporal: the engine, the client and workflows all import it.' },
          { regex: '^\\.\\.?/(?!(errors|labels|inputs|time|limit|types)$)', allowTypeImports: true, message: `Workflows run this module: it imports (besides types) only the other pure modules, ${pureModules.join(', ')}.` },
        ],
      }],
    },
  },
);
