// Whole-cluster backup and restore, measured from outside as a user runs them, beside the raw
// tools in the same run, on the same private cluster:
//   - tenantsafe: `tenantsafe full-backup --wait` (worker, workflow, pg_basebackup through the
//     configured compression into storage, archive check, manifest) and `tenantsafe pitr restore
//     --latest --target <dir> --port <p>` (extract, start, replay the archive to its end, promote)
//   - pgBackRest with its best settings: lz4, process-max = cores, archive-async; `backup
//     --type=full` and `restore` + start until recovery ends at the end of its archive
//   - `pg_basebackup -Ft --compress=client-lz4` (WAL streamed into the backup): extracted and
//     started until it accepts connections
// Each round runs the three in turn (the order rotating, a CHECKPOINT and a sync before each), so
// noise from other work on the machine hits all of them; medians of the rounds and their ratios.
// Two datasets: "realistic" (text, jsonb and random bytea: semi- and incompressible) and pgbench
// (compresses to almost nothing). Then the RPO under steady pgbench writes, archived by the worker.
// Usage: npx tsx bench/fullBackup.ts
//   BENCH_ROWS (realistic rows, default 1000000 ≈ 1.1 GiB), BENCH_SCALE (pgbench, default 30 ≈ 450 MiB),
//   BENCH_ROUNDS (default 3), BENCH_DATASETS (default realistic,pgbench), BENCH_COMPRESSIONS (ours, one
//   side each, default lz4,zstd), BENCH_RPO_SECONDS (default 20)
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { projectRoot } from '../lib/config';
import { PrivateCluster } from '../lib/postgres/cluster';
import { chownToPostgres, pgBin } from '../lib/postgres/tools';
import { freePorts } from '../lib/process';
import { createStore } from '../lib/storage';
import { listWalArchive, newestSegment } from '../lib/wal/archive';
import { parseLsn, segmentStartLsn } from '../lib/wal/names';
import { benchStack, median, percentile, runCommand, sleep, waitUntil, type BenchStack } from './support';

const rounds = Number(process.env.BENCH_ROUNDS ?? 3);
const rows = Number(process.env.BENCH_ROWS ?? 1_000_000);
const scale = Number(process.env.BENCH_SCALE ?? 30);
const datasets = (process.env.BENCH_DATASETS ?? 'realistic,pgbench').split(',');
const cores = os.availableParallelism();
/** fullBackup.compression of each tenantsafe side */
const oursCompressions = (process.env.BENCH_COMPRESSIONS ?? 'lz4,zstd').split(',');

const run = (cmd: string, args: string[], env: Record<string, string> = {}) => runCommand(cmd, args, env);
const dirSize = (dir: string): number => readdirSync(dir, { recursive: true, withFileTypes: true }).filter((d) => d.isFile()).reduce((n, d) => n + statSync(path.join(d.parentPath, d.name)).size, 0);
const mib = (n: number) => `${(n / 1048576).toFixed(0)} MiB`;
const secs = (ms: number) => `${(ms / 1000).toFixed(2)} s`;

async function timed<T>(fn: () => Promise<T>): Promise<{ ms: number; value: T }> {
  const t = performance.now();
  const value = await fn();
  return { ms: performance.now() - t, value };
}

/** Rows of a multi-tenant documents table: words and a digest (semi-compressible), jsonb, 384 random bytes (incompressible). */
const realisticSql = (n: number) => `
CREATE EXTENSION IF NOT EXISTS pgcrypto;
CREATE TABLE documents (id bigserial PRIMARY KEY, tenant_id int NOT NULL, title text NOT NULL, body text NOT NULL, attrs jsonb NOT NULL, attachment bytea NOT NULL, created_at timestamptz NOT NULL);
INSERT INTO documents (tenant_id, title, body, attrs, attachment, created_at)
SELECT g % 500, 'Document ' || g || ' of tenant ' || (g % 500),
       (SELECT string_agg((ARRAY['invoice','customer','shipment','pending','approved','total','discount','warehouse','delivery','refund','account','contract'])[1 + floor(random() * 12)::int], ' ') FROM generate_series(1, 40 + g % 2 * 0))
         || ' ' || md5(g::text || random()::text),
       jsonb_build_object('status', (ARRAY['open','closed','draft'])[1 + g % 3], 'amount', round((random() * 10000)::numeric, 2), 'tags', jsonb_build_array(md5(random()::text), g % 97), 'ref', encode(gen_random_bytes(24), 'base64')),
       gen_random_bytes(384),
       now() - (g || ' seconds')::interval
  FROM generate_series(1, ${n}) g;
CREATE INDEX documents_tenant ON documents (tenant_id, created_at);`;

interface Side {
  name: string;
  backup(round: number): Promise<{ bytes: number }>;
  /** restores the newest backup into a new directory and starts it; returns a function that removes it */
  restore(round: number): Promise<() => Promise<void>>;
}

interface SideResult {
  /** medians, and each round */
  backupS: number;
  restoreS: number;
  bytes: number;
  backupRounds: number[];
  restoreRounds: number[];
}

interface Measured {
  backupMs: number[];
  restoreMs: number[];
  bytes: number[];
}

async function main(): Promise<void> {
  const summary: Record<string, Awaited<ReturnType<typeof benchDataset>>> = {};
  for (const dataset of datasets) summary[dataset] = await benchDataset(dataset);
  console.log('\n== results (JSON) ==');
  console.log(JSON.stringify({ cores, rounds, rows, scale, summary }, null, 2));
}

async function benchDataset(dataset: string) {
  const dir = path.join(os.tmpdir(), `tenantsafe-bench-full-${dataset}-${process.pid}`);
  mkdirSync(dir, { mode: 0o755 });
  chownToPostgres([dir]);
  const pgbrRepo = path.join(dir, 'pgbackrest');
  mkdirSync(pgbrRepo);
  chownToPostgres([pgbrRepo]);
  const pgbrConf = path.join(dir, 'pgbackrest.conf');
  const pgbr = (args: string[]) => run('runuser', ['-u', 'postgres', '--', 'pgbackrest', `--config=${pgbrConf}`, '--stanza=bench', ...args]);
  const source = await PrivateCluster.create({
    dataDir: path.join(dir, 'source'),
    port: 0,
    ephemeral: true,
    settings: { max_wal_size: '4GB', checkpoint_timeout: '30min', archive_mode: 'on', archive_command: `pgbackrest --config=${pgbrConf} --stanza=bench archive-push %p` },
  });
  // pgBackRest's best settings: lz4, a process per core, WAL pushed and fetched asynchronously
  writeFileSync(
    pgbrConf,
    `[global]\nrepo1-path=${pgbrRepo}\nrepo1-retention-full=99\nlog-level-console=warn\nlog-level-file=off\nlock-path=${path.join(dir, 'pgbackrest-lock')}\nspool-path=${path.join(dir, 'pgbackrest-spool')}\n` +
      `compress-type=lz4\nprocess-max=${cores}\nstart-fast=y\narchive-async=y\n[bench]\npg1-path=${source.dataDir}\npg1-port=${source.port}\npg1-socket-path=${path.join(os.tmpdir(), 'tenantsafe-pg-postgres')}\n`,
  );
  chmodSync(pgbrConf, 0o644);
  await source.start();
  await pgbr(['stanza-create']);
  const pgArgs = ['-h', '127.0.0.1', '-p', String(source.port), '-U', 'postgres'];
  console.log(`${dataset}: loading ...`);
  const load = await timed(async () => {
    if (dataset === 'pgbench') await run(pgBin('pgbench'), ['-i', '-q', '-s', String(scale), ...pgArgs, 'postgres']);
    else await run(pgBin('psql'), [...pgArgs, '-q', '-v', 'ON_ERROR_STOP=1', '-c', realisticSql(rows), '-c', 'VACUUM ANALYZE', 'postgres']);
  });
  await source.psql('CHECKPOINT');
  const [{ wal }] = await source.psql<{ wal: string }>(`SELECT pg_walfile_name(pg_switch_wal()) AS wal`);
  await waitUntil('pgBackRest to archive the load', async () => ((await source.psql<{ last: string | null }>(`SELECT last_archived_wal AS last FROM pg_stat_archiver`))[0].last ?? '') >= wal, 600_000, 500);
  const clusterBytes = dirSize(source.dataDir);
  console.log(`${dataset}: cluster ${mib(clusterBytes)} (loaded in ${secs(load.ms)})`);

  // one stack per compression of ours (each its own Temporal dev server, worker, store, catalog and slot)
  const stacks: { compression: string; stack: BenchStack }[] = [];
  for (const compression of oursCompressions) {
    const slot = `tenantsafe_${compression.replace(/\W/g, '_')}`;
    stacks.push({ compression, stack: await benchStack({ url: source.url(), drop: async () => undefined }, { config: { fullBackup: { walSpoolDir: path.join(dir, `spool-${slot}`), slot, compression }, catalog: { schema: slot } } }) });
  }
  const cliOf = (stack: BenchStack) => async (args: string[]) => JSON.parse(await run(process.execPath, [path.join(projectRoot, 'bin/tenantsafe'), '--config', stack.configFile, ...args, '--json']));
  const restoredDir = (name: string, round: number) => path.join(dir, `restored-${name}-${round}`);
  const port = async () => (await freePorts('127.0.0.1', 1))[0];
  const removeCluster = (dataDir: string) => async () => {
    const c = await PrivateCluster.attach(dataDir);
    await c.remove();
  };

  const sides: Side[] = [
    ...stacks.map(({ compression, stack }): Side => {
      const name = `tenantsafe ${compression}`;
      const cli = cliOf(stack);
      return {
        name,
        backup: async () => ({ bytes: (await cli(['full-backup', '--wait'])).bytes }),
        restore: async (round) => {
          const out = await cli(['pitr', 'restore', '--latest', '--target', restoredDir(name.replace(/\W/g, '-'), round), '--port', String(await port())]);
          return removeCluster(out.dataDir);
        },
      };
    }),
    {
      name: 'pgbackrest',
      backup: async () => {
        await pgbr(['backup', '--type=full']);
        const info = JSON.parse(await pgbr(['info', '--output=json']));
        return { bytes: info[0].backup.at(-1).info.repository.size };
      },
      restore: async (round) => {
        const target = restoredDir('pgbackrest', round);
        mkdirSync(target, { mode: 0o700 });
        chownToPostgres([target]);
        await pgbr(['restore', `--pg1-path=${target}`, '--archive-mode=off']);
        const c = await PrivateCluster.create({ dataDir: target, port: await port(), settings: { archive_mode: 'off' } });
        await c.start();
        while ((await c.psql<{ r: boolean }>('SELECT pg_is_in_recovery() AS r'))[0].r) await sleep(50);
        return () => c.remove();
      },
    },
    {
      name: 'pg_basebackup lz4',
      backup: async (round) => {
        const out = path.join(dir, `basebackup-${round}`);
        await run(pgBin('pg_basebackup'), ['-D', out, '-F', 't', '--compress=client-lz4', '--checkpoint=fast', ...pgArgs]);
        return { bytes: dirSize(out) };
      },
      restore: async (round) => {
        const from = path.join(dir, `basebackup-${round}`);
        const target = restoredDir('basebackup', round);
        mkdirSync(path.join(target, 'pg_wal'), { recursive: true, mode: 0o700 });
        await run('tar', ['-x', '-I', 'lz4', '-f', path.join(from, 'base.tar.lz4'), '-C', target]);
        await run('tar', ['-x', '-f', path.join(from, 'pg_wal.tar'), '-C', path.join(target, 'pg_wal')]); // pg_basebackup leaves the WAL uncompressed
        const c = await PrivateCluster.create({ dataDir: target, port: await port(), settings: { archive_mode: 'off' } });
        await c.start();
        return async () => {
          await c.remove();
          rmSync(from, { recursive: true, force: true });
        };
      },
    },
  ];

  const measured = new Map<string, Measured>(sides.map((s) => [s.name, { backupMs: [], restoreMs: [], bytes: [] }]));
  const settle = async () => {
    await source.psql('CHECKPOINT');
    spawnSync('sync');
  };
  try {
    // the first full backup also starts the WAL archiver (as it does for a user); not timed
    for (const { stack } of stacks) await cliOf(stack)(['full-backup', '--wait']);
    for (let round = 0; round < rounds; round++) {
      const order = sides.map((_, i) => sides[(i + round) % sides.length]);
      for (const side of order) {
        await settle();
        const b = await timed(() => side.backup(round));
        measured.get(side.name)!.backupMs.push(b.ms);
        measured.get(side.name)!.bytes.push(b.value.bytes);
        console.log(`${dataset} round ${round + 1}: ${side.name} backup ${secs(b.ms)} (${mib(b.value.bytes)})`);
      }
      await sleep(1000); // the archives take in the last backups' WAL
      for (const side of order) {
        spawnSync('sync');
        const r = await timed(() => side.restore(round));
        measured.get(side.name)!.restoreMs.push(r.ms);
        console.log(`${dataset} round ${round + 1}: ${side.name} restore to a running cluster ${secs(r.ms)}`);
        await r.value();
      }
    }

    const rpo = dataset === 'pgbench' ? await measureRpo(stacks[0].stack.config.storage.primary, source, pgArgs) : null;

    const result: Record<string, SideResult> = {};
    for (const [name, m] of measured) {
      result[name] = { backupS: median(m.backupMs) / 1000, restoreS: median(m.restoreMs) / 1000, bytes: median(m.bytes), backupRounds: m.backupMs.map((ms) => ms / 1000), restoreRounds: m.restoreMs.map((ms) => ms / 1000) };
    }
    const ratio = (a: number, b: number) => (a / b).toFixed(2);
    console.log(`\n== full backup and restore: ${dataset}, cluster ${mib(clusterBytes)}, ${cores} cores, medians of ${rounds} rounds ==`);
    for (const [name, r] of Object.entries(result)) {
      console.log(`${name.padEnd(18)} backup ${secs(r.backupS * 1000)} [${r.backupRounds.map((x) => x.toFixed(2)).join(', ')}]  restore ${secs(r.restoreS * 1000)} [${r.restoreRounds.map((x) => x.toFixed(2)).join(', ')}]  ${mib(r.bytes)}`);
    }
    for (const { compression } of stacks) {
      const ours = result[`tenantsafe ${compression}`];
      console.log(`tenantsafe ${compression} / pgbackrest:        backup ${ratio(ours.backupS, result.pgbackrest.backupS)} (target <= 1.0, aim 0.5)  restore ${ratio(ours.restoreS, result.pgbackrest.restoreS)} (target <= 1.0)  bytes ${ratio(ours.bytes, result.pgbackrest.bytes)} (target <= 1.0)`);
      console.log(`tenantsafe ${compression} / pg_basebackup lz4: backup ${ratio(ours.backupS, result['pg_basebackup lz4'].backupS)} (target <= 1.5)  restore ${ratio(ours.restoreS, result['pg_basebackup lz4'].restoreS)}`);
    }
    if (rpo) console.log(`RPO (age of the newest archived WAL record, upper bound, ${rpo.samples} samples under pgbench -R 300): p50 ${rpo.p50} ms, p95 ${rpo.p95} ms, max ${rpo.max} ms (target <= 1000 ms)`);
    return { clusterBytes, sides: result, rpo };
  } finally {
    for (const { stack } of stacks) await stack.stop();
    await source.remove().catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Age of the newest archived WAL record while pgbench writes steadily (an upper bound: see below). */
async function measureRpo(storage: Parameters<typeof createStore>[0], source: PrivateCluster, pgArgs: string[]) {
  const store = createStore(storage);
  const seconds = Number(process.env.BENCH_RPO_SECONDS ?? 20);
  const serverLsn: { t: number; lsn: bigint }[] = [];
  const ages: number[] = [];
  let benchDone = false;
  const pgbench = run(pgBin('pgbench'), ['-c', '2', '-j', '2', '-R', '300', '-T', String(seconds), ...pgArgs, 'postgres']).finally(() => (benchDone = true));
  const sampler = (async () => {
    while (!benchDone) {
      const [r] = await source.psql<{ lsn: string }>('SELECT pg_current_wal_insert_lsn()::text AS lsn');
      serverLsn.push({ t: Date.now(), lsn: parseLsn(r.lsn) });
      await sleep(25);
    }
  })();
  await sleep(2000);
  while (!benchDone) {
    const now = Date.now();
    const listing = await listWalArchive(store);
    const newest = newestSegment(listing)!;
    const partial = listing.partials.find((p) => p.name === newest);
    const archived = segmentStartLsn(newest, 16 << 20) + BigInt(partial ? gunzipSync(await store.getBytes(partial.key)).length : 16 << 20);
    // upper bound: the newest archived byte was written after the last moment the server had not reached it
    const before = serverLsn.filter((s) => s.lsn < archived).at(-1);
    if (before) ages.push(now - before.t);
    await sleep(200);
  }
  await pgbench;
  await sampler;
  return { samples: ages.length, p50: percentile(ages, 50), p95: percentile(ages, 95), max: Math.max(...ages) };
}

main()
  .then(() => process.exit(0))
  .catch((err) => {
    console.error(err);
    process.exit(1);
  });
