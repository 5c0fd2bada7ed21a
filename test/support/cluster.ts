// A private PostgreSQL cluster standing in for a customer's database, for tests of physical
// backups, WAL archiving and point-in-time recovery (what the shared server must not be used for).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { PrivateCluster } from '../../lib/postgres/cluster';
import { workflowScopes } from '../../lib/databaseIdentity';
import { databaseWorkflowIds } from '../../workflows/messages';
import type { TestDatabase } from './db';
import { createTestEnv, type TestEnv } from './env';

export interface SourceCluster {
  cluster: PrivateCluster;
  /** the database the config points at, as a TestDatabase that close() leaves alone */
  db: TestDatabase;
  /** a directory the postgres OS user may write to: restores go below it */
  dir: string;
  remove(): Promise<void>;
}

/** 1 MiB WAL segments: segments fill and complete within a test, as 16 MiB ones would in production. */
export async function startSourceCluster(database = 'app', settings: Record<string, string> = {}): Promise<SourceCluster> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tenantsafe-src-'));
  fs.chmodSync(dir, 0o755);
  const cluster = await PrivateCluster.create({ dataDir: path.join(dir, 'source'), port: 0, ephemeral: true, initdbArgs: ['--wal-segsize=1'], settings });
  await cluster.start();
  await cluster.psql(`CREATE DATABASE ${database}`);
  return {
    cluster,
    dir,
    db: { name: database, url: cluster.url(database), tenants: [], drop: async () => undefined },
    async remove() {
      for (const c of PrivateCluster.all()) if (c.dataDir.startsWith(dir)) await c.remove().catch(() => undefined);
      await cluster.remove();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Full backups of a private cluster in a test config: WAL uploaded often, verification's and PITR's scratch beside the cluster. */
export function physicalBackups(doc: Record<string, any>, dir: string, source: SourceCluster): void {
  doc.fullBackup = { walPartialInterval: '200ms', walSpoolDir: path.join(dir, 'spool'), archiveWait: '30s' };
  doc.verification = { scratchDir: source.dir };
}

/** A private cluster (with `settings`), a test env taking full backups of it, and a worker; close() stops the WAL archiver and removes them. */
export async function physicalBackupStack(settings: Record<string, string> = {}): Promise<{ source: SourceCluster; env: TestEnv; close(): Promise<void> }> {
  const source = await startSourceCluster('app', settings);
  let env: TestEnv | undefined;
  const close = async () => {
    if (env) await stopWalArchiver(env);
    await env?.close();
    await source.remove();
  };
  try {
    env = await createTestEnv('local', { db: source.db, configure: (doc, dir) => physicalBackups(doc, dir, source) });
    await env.startWorker();
    return { source, env, close };
  } catch (err) {
    await close();
    throw err;
  }
}

/** Stops the WAL archiver the first full backup started (its id names the database: when that is gone, it stopped by itself). */
export async function stopWalArchiver(env: TestEnv): Promise<void> {
  const scope = await workflowScopes(env.engine).catch(() => null);
  if (!scope) return;
  const archiver = env.temporal.workflow.getHandle(databaseWorkflowIds.walArchiver(scope.walArchiver));
  await archiver.cancel().catch(() => undefined);
  await archiver.result().catch(() => undefined);
}
