// Lint rules that catch what breaks durable code: floating promises anywhere, Node builtins or
// I/O libraries inside workflow code (it must stay deterministic), and Postgres connections made
// anywhere but lib/pg.ts (its factory keeps a dropped connection from crashing the process).
import tseslint from 'typescript-eslint';

const nodeBuiltins = ['assert', 'buffer', 'child_process', 'cluster', 'crypto', 'dgram', 'dns', 'events', 'fs', 'http', 'http2', 'https', 'net', 'os', 'path', 'perf_hooks', 'process', 'readline', 'stream', 'timers', 'tls', 'url', 'util', 'v8', 'vm', 'worker_threads', 'zlib'];

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
        paths: [...nodeBuiltins, ...nodeBuiltins.map((m) => `node:${m}`), 'pg', 'pg-copy-streams', '@google-cloud/storage', '@temporalio/activity', '@temporalio/worker', '@temporalio/client'].map((name) => ({ name, message: 'Workflow code must be deterministic: no I/O, no Node builtins. Put it in an activity.' })),
        patterns: [{ group: ['../activities/*', '../activities', '../lib/*', '!../lib/errors', '!../lib/labels'], allowTypeImports: true, message: 'Workflows import activity and engine *types* only (lib/errors and lib/labels are pure).' }],
      }],
    },
  },
);
