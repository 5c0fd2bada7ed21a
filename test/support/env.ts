// Per-test-file environment: a config (local or GCS storage) on a fresh database, its own
// task queue, an in-process worker, a Temporal client, and a way to run the real CLI.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { stringify } from 'yaml';
import { parseConfig, projectRoot, type Config } from '../../lib/config';
import { Engine } from '../../lib/engine';
import { startWorker, type StartedWorker } from '../../workers/worker';
import { freshDatabase, type TestDatabase } from './db';
import { testStack } from './stack';

export type StorageKind = 'local' | 'gcs';

export const dbPassword = 'tenantsafe-secret-pw';

export interface TestEnv {
  db: TestDatabase;
  storage: StorageKind;
  /** the config document, as written to configFile */
  document: Record<string, any>;
  config: Config;
  configFile: string;
  dir: string;
  temporal: Client;
  /** the engine over this config, for reading storage and the catalog from tests */
  engine: Engine;
  startWorker(opts?: Omit<Parameters<typeof startWorker>[1], 'bundle'>): Promise<StartedWorker>;
  /** a config file variant, e.g. with a broken database URL */
  writeConfig(name: string, change: (doc: Record<string, any>) => void): string;
  close(): Promise<void>;
}

export async function createTestEnv(storage: StorageKind = 'local', opts: { db?: TestDatabase; configure?: (doc: Record<string, any>, dir: string) => void } = {}): Promise<TestEnv> {
  const stack = await testStack();
  const db = opts.db ?? (await freshDatabase());
  const id = randomBytes(4).toString('hex');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `tenantsafe-test-${id}-`));
  let primary: Record<string, unknown>;
  if (storage === 'gcs') {
    const bucket = `tenantsafe-${id}`;
    await stack.gcs.createBucket(bucket);
    primary = { kind: 'gcs', bucket, prefix: 'backups', apiEndpoint: stack.gcs.url, projectId: 'test' };
  } else {
    primary = { kind: 'local', path: path.join(dir, 'backups') };
  }
  // Trust auth ignores it, but the password must never show up in history or output.
  const url = new URL(db.url);
  url.password = dbPassword;
  const document: Record<string, any> = {
    database: { url: url.toString() },
    storage: { primary },
    temporal: { address: stack.temporalAddress, namespace: stack.namespace, taskQueue: `tenantsafe-test-${id}` },
    backup: { parallelism: 2 },
  };
  opts.configure?.(document, dir);
  const writeConfig = (name: string, change: (doc: Record<string, any>) => void) => {
    const doc = structuredClone(document);
    change(doc);
    const file = path.join(dir, name);
    fs.writeFileSync(file, stringify(doc));
    return file;
  };
  const configFile = writeConfig('tenantsafe.yaml', () => undefined);
  const config = parseConfig(document, { env: process.env, source: configFile, baseDir: dir });
  const connection = await Connection.connect({ address: stack.temporalAddress });
  const workers: StartedWorker[] = [];
  const engine = new Engine(config);
  return {
    engine,
    db,
    storage,
    document,
    config,
    configFile,
    dir,
    temporal: new Client({ connection, namespace: stack.namespace }),
    writeConfig,
    async startWorker(workerOpts = {}) {
      const w = await startWorker(config, { ...workerOpts, bundle: stack.bundle });
      workers.push(w);
      return w;
    },
    async close() {
      await Promise.all(workers.map((w) => w.shutdown()));
      await engine.close();
      await connection.close();
      if (!opts.db) await db.drop();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
  json<T = any>(): T;
}

/** Runs the real `tenantsafe` binary. */
export function runCli(args: string[], opts: { configFile?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<CliResult> {
  const fullArgs = [path.join(projectRoot, 'bin/tenantsafe'), ...(opts.configFile ? ['--config', opts.configFile] : []), ...args];
  return new Promise((resolve) => {
    execFile(process.execPath, fullArgs, { env: { ...process.env, ...opts.env }, timeout: opts.timeoutMs ?? 120_000, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : 1) : 0;
      resolve({ code, stdout, stderr, json: () => JSON.parse(stdout) });
    });
  });
}
