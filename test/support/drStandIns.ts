// Disaster-recovery tests' surroundings: a TEST STAND-IN for the standby (pg_basebackup -R -S from
// the private primary, started with pg_ctl; `tenantsafe standby create` of the dr-standby work is
// the product's way), a private PgBouncer on its own port, and an application writing ids through it.
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Client } from 'pg';
import { connect } from '../../lib/pg';
import { PrivateCluster } from '../../lib/postgres/cluster';
import { asRoot, chownToPostgres, runPgTool } from '../../lib/postgres/tools';
import { freePorts } from '../../lib/process';
import { drWorkflowIds } from '../../workflows/messages';
import type { TestEnv } from './env';
import { waitFor } from './wait';

/**
 * Test stand-in for standby creation: a physical slot on the primary, pg_basebackup -R -S into
 * `dataDir`, started on a port of its own. Synchronous: the primary's synchronous_standby_names
 * names it (its cluster_name is the walreceiver's application_name).
 */
export async function startTestStandby(primary: PrivateCluster, dataDir: string, opts: { slot: string; synchronous: boolean }): Promise<PrivateCluster> {
  await primary.psql(`SELECT pg_create_physical_replication_slot('${opts.slot}')`);
  fs.mkdirSync(dataDir, { mode: 0o700 });
  chownToPostgres([dataDir]);
  const backup = await runPgTool('pg_basebackup', ['-D', dataDir, '-R', '-S', opts.slot, '-X', 'stream', '-c', 'fast', '-d', `host=127.0.0.1 port=${primary.port} user=postgres`]);
  if (backup.code !== 0) throw new Error(`pg_basebackup failed: ${backup.output}`);
  const standby = await PrivateCluster.create({ dataDir, port: 0, ephemeral: true, settings: { cluster_name: opts.slot } });
  await standby.start();
  if (opts.synchronous) {
    primary.appendConfig({ synchronous_standby_names: `"${opts.slot}"` });
    await primary.psql('SELECT pg_reload_conf()');
  }
  await waitFor('the standby to stream', async () => (await primary.psql<{ n: number }>(`SELECT count(*)::int AS n FROM pg_stat_replication WHERE state = 'streaming'`))[0].n === 1);
  return standby;
}

export interface TestPgBouncer {
  port: number;
  databasesFile: string;
  adminUrl: string;
  url(database: string): string;
  stop(): Promise<void>;
}

/**
 * A private PgBouncer (Debian's /usr/sbin/pgbouncer, as the postgres user: it refuses root) on
 * 127.0.0.1:<port>, transaction pooling, trust authentication, its [databases] in an %include'd
 * file naming `database` on `target`.
 */
export async function startPgBouncer(dir: string, database: string, target: { port: number }): Promise<TestPgBouncer> {
  fs.mkdirSync(dir, { recursive: true, mode: 0o755 });
  const [port] = await freePorts('127.0.0.1', 1);
  const databasesFile = path.join(dir, 'databases.ini');
  fs.writeFileSync(databasesFile, `[databases]\n${database} = host=127.0.0.1 port=${target.port} dbname=${database}\n`, { mode: 0o644 });
  fs.writeFileSync(path.join(dir, 'userlist.txt'), '"postgres" ""\n', { mode: 0o644 });
  const ini = path.join(dir, 'pgbouncer.ini');
  fs.writeFileSync(
    ini,
    [
      '[pgbouncer]',
      'listen_addr = 127.0.0.1',
      `listen_port = ${port}`,
      "unix_socket_dir = ''",
      'auth_type = trust',
      `auth_file = ${path.join(dir, 'userlist.txt')}`,
      'admin_users = postgres',
      'pool_mode = transaction',
      // a failed server login is retried after 1 s (default 15 s: it would add to every failover's RTO)
      'server_login_retry = 1',
      'server_connect_timeout = 2',
      'ignore_startup_parameters = extra_float_digits',
      `logfile = ${path.join(dir, 'pgbouncer.log')}`,
      `%include ${databasesFile}`,
      '',
    ].join('\n'),
    { mode: 0o644 },
  );
  if (asRoot) chownToPostgres([dir]);
  const [cmd, args] = asRoot ? ['runuser', ['-u', 'postgres', '--', '/usr/sbin/pgbouncer', ini]] : ['/usr/sbin/pgbouncer', [ini]];
  const child: ChildProcess = spawn(cmd, args, { cwd: '/', stdio: 'ignore' });
  const adminUrl = `postgres://postgres@127.0.0.1:${port}/pgbouncer`;
  await waitFor('PgBouncer to listen', async () => {
    try {
      const c = await connect(adminUrl, 'test', { pgbouncer: true });
      await c.end();
      return true;
    } catch {
      return false;
    }
  });
  return {
    port,
    databasesFile,
    adminUrl,
    url: (db) => `postgres://postgres@127.0.0.1:${port}/${db}`,
    async stop() {
      child.kill('SIGTERM');
      await new Promise((resolve) => (child.exitCode !== null ? resolve(undefined) : child.once('exit', resolve)));
    },
  };
}

/** An application writing ids one by one through the endpoint, reconnecting on errors, logging which ids were acknowledged. */
export interface TestWriter {
  acknowledged: number[];
  /** Date.now() when each of them was acknowledged */
  acknowledgedAt: number[];
  errors: string[];
  /** resolves once `n` more ids were acknowledged */
  moreAcknowledged(n: number): Promise<void>;
  stop(): Promise<void>;
}

export function startWriter(url: string, table = 'ids'): TestWriter {
  const acknowledged: number[] = [];
  const acknowledgedAt: number[] = [];
  const errors: string[] = [];
  let running = true;
  let next = 1;
  const loop = (async () => {
    let client: Client | undefined;
    while (running) {
      try {
        client ??= await connect(url, 'test-writer', { pgbouncer: true, timeoutMs: 3_000 });
        const id = next++;
        await client.query(`INSERT INTO ${table} (id) VALUES (${id})`);
        acknowledged.push(id);
        acknowledgedAt.push(Date.now());
      } catch (err) {
        errors.push((err as Error).message);
        await client?.end().catch(() => undefined);
        client = undefined;
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    }
    await client?.end().catch(() => undefined);
  })();
  return {
    acknowledged,
    acknowledgedAt,
    errors,
    async moreAcknowledged(n) {
      const target = acknowledged.length + n;
      await waitFor(`${n} more acknowledged writes`, async () => acknowledged.length >= target, { tries: 600, intervalMs: 100 });
    },
    async stop() {
      running = false;
      await loop;
    },
  };
}

/** Ends a failover or switchover a failed test left running: the next fixture's database has the same name, so the same workflow ids. */
export async function endDrWorkflows(env: TestEnv, database = 'app'): Promise<void> {
  for (const id of [drWorkflowIds.failover(database), drWorkflowIds.switchover(database)]) {
    await env.temporal.workflow.getHandle(id).terminate('the test is over').catch(() => undefined);
  }
}
