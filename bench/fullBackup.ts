// Benchmarks of whole-database backup on one private cluster, as ratios against the raw tools
// run in the same process on the same data (not a timed test):
//   1. base backup: tenantsafe (pg_basebackup -Ft streamed through gzip into storage, manifest,
//      archive check) / plain `pg_basebackup -Ft` with the same gzip level; pgbackrest beside it
//   2. RPO under steady pgbench writes: age of the newest archived WAL record (upper bound)
//   3. PITR restore: tenantsafe (from storage, WAL served by restore_command) / a hand-run
//      restore of the same base tar and the same WAL (tar -x, restore_command cp)
// Usage: npx tsx bench/fullBackup.ts   (BENCH_SCALE=<pgbench scale>, default 30 ≈ 450 MB)
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync, chmodSync, readdirSync, statSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { parseConfig } from '../lib/config';
import { PrivateCluster } from '../lib/postgres/cluster';
import { pgBin } from '../lib/postgres/tools';
import { Engine } from '../lib/engine';
import { baseObjectKey, takeBaseBackup } from '../lib/fullBackup/basebackup';
import type { FullManifest } from '../lib/format/fullManifest';
import { restorePhysicalBackup } from '../lib/pitr/restore';
import { fetchWalFile, listWalArchive, newestSegment } from '../lib/wal/archive';
import { archiveWal } from '../lib/wal/archiver';
import { parseLsn, segmentStartLsn } from '../lib/wal/names';
import { handRunRestore, median, percentile, runCommand } from './support';

const scale = Number(process.env.BENCH_SCALE ?? 30);
const level = 1;

const run = (cmd: string, args: string[], env: Record<string, string> = {}) => runCommand(cmd, args, env).then(() => undefined);

async function timed<T>(fn: () => Promise<T>): Promise<{ ms: number; value: T }> {
  const t = performance.now();
  const value = await fn();
  return { ms: performance.now() - t, value };
}

const dirSize = (dir: string): number => readdirSync(dir, { recursive: true, withFileTypes: true }).filter((d) => d.isFile()).reduce((n, d) => n + statSync(path.join(d.parentPath, d.name)).size, 0);
const mb = (n: number) => `${(n / 1048576).toFixed(0)} MiB`;

async function main(): Promise<void> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tenantsafe-bench-'));
  chmodSync(dir, 0o755);
  const source = await PrivateCluster.create({ dataDir: path.join(dir, 'source'), port: 0, ephemeral: true, settings: { max_wal_size: '4GB', checkpoint_timeout: '30min' } });
  await source.start();
  const pgArgs = ['-h', '127.0.0.1', '-p', String(source.port), '-U', 'postgres'];
  console.log(`pgbench -i -s ${scale} ...`);
  await run(pgBin('pgbench'), ['-i', '-q', '-s', String(scale), ...pgArgs, 'postgres']);
  await source.psql('CHECKPOINT');
  console.log(`cluster: ${mb(dirSize(source.dataDir))}`);

  const config = parseConfig(
    { database: { url: source.url() }, storage: { primary: { kind: 'local', path: path.join(dir, 'store') } }, backup: { compressionLevel: level }, fullBackup: { walSpoolDir: path.join(dir, 'spool') } },
    { env: {}, source: 'bench', baseDir: dir },
  );
  const engine = new Engine(config);
  const stopArchiver = new AbortController();
  const archiver = archiveWal({
    url: config.database.url, store: engine.store, slot: 'tenantsafe', spoolDir: config.fullBackup.walSpoolDir,
    partialIntervalMs: config.fullBackup.walPartialIntervalMs, compressionLevel: level, runForMs: 3_600_000, signal: stopArchiver.signal,
  });
  archiver.catch(() => undefined);

  // ---- 1. base backup: three rounds, plain and tenantsafe alternating (the median ratio counts) ----
  const plain = async (n: number) => timed(() => run(pgBin('pg_basebackup'), ['-D', path.join(dir, `plain${n}`), '-F', 't', `--compress=client-gzip:${level}`, '--checkpoint=fast', ...pgArgs]));
  const rounds: { plain: number; ours: number; walWait: number }[] = [];
  let ours: { ms: number; value: FullManifest } = { ms: 0, value: undefined as never };
  for (let n = 1; n <= 3; n++) {
    const p = await plain(n);
    rmSync(path.join(dir, `plain${n}`), { recursive: true, force: true });
    let waitingFrom = 0;
    ours = await timed(() => takeBaseBackup(engine, { backupId: `20260101-000000F-bench${n}`, onProgress: (pr) => (waitingFrom ||= pr.phase === 'waiting-for-wal' ? performance.now() : 0) }));
    rounds.push({ plain: p.ms, ours: ours.ms, walWait: performance.now() - waitingFrom });
  }
  const plainMs = percentile(rounds.map((r) => r.plain), 50);
  const oursMs = percentile(rounds.map((r) => r.ours), 50);
  const baseRatio = percentile(rounds.map((r) => r.ours / r.plain), 50);
  let pgbackrestMs: number | null = null;
  try {
    const repo = path.join(dir, 'pgbackrest');
    mkdirSync(repo);
    chmodSync(repo, 0o777);
    const conf = path.join(dir, 'pgbackrest.conf');
    writeFileSync(conf, `[global]\nrepo1-path=${repo}\nlog-level-console=warn\nlog-path=${repo}\nlock-path=${repo}\nspool-path=${repo}\ncompress-type=gz\ncompress-level=${level}\nstart-fast=y\narchive-check=n\n[bench]\npg1-path=${source.dataDir}\npg1-port=${source.port}\npg1-socket-path=${path.join(os.tmpdir(), 'tenantsafe-pg-postgres')}\n`);
    chmodSync(conf, 0o644);
    const pgbr = (args: string[]) => run('runuser', ['-u', 'postgres', '--', 'pgbackrest', `--config=${conf}`, '--stanza=bench', ...args]);
    await pgbr(['stanza-create']);
    pgbackrestMs = (await timed(() => pgbr(['backup', '--type=full']))).ms;
  } catch (err) {
    console.log(`pgbackrest skipped: ${(err as Error).message.split('\n')[0]}`);
  }

  // ---- 2. RPO under steady writes ----
  const rpoSeconds = Number(process.env.BENCH_RPO_SECONDS ?? 20);
  const serverLsn: { t: number; lsn: bigint }[] = [];
  const ages: number[] = [];
  const pgbench = run(pgBin('pgbench'), ['-c', '2', '-j', '2', '-R', '300', '-T', String(rpoSeconds), ...pgArgs, 'postgres']);
  let benchDone = false;
  void pgbench.finally(() => (benchDone = true));
  const sampler = (async () => {
    while (!benchDone) {
      const [r] = await source.psql<{ lsn: string }>('SELECT pg_current_wal_insert_lsn()::text AS lsn');
      serverLsn.push({ t: Date.now(), lsn: parseLsn(r.lsn) });
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
  })();
  await new Promise((resolve) => setTimeout(resolve, 2000));
  while (!benchDone) {
    const now = Date.now();
    const listing = await listWalArchive(engine.store);
    const newest = newestSegment(listing)!;
    const partial = listing.partials.find((p) => p.name === newest);
    const archived = segmentStartLsn(newest, 16 << 20) + BigInt(partial ? gunzipSync(await engine.store.getBytes(partial.key)).length : 16 << 20);
    // upper bound: the newest archived byte was written after the last moment the server had not reached it
    const before = serverLsn.filter((s) => s.lsn < archived).at(-1);
    if (before) ages.push(now - before.t);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  await pgbench;
  await sampler;
  await new Promise((resolve) => setTimeout(resolve, 1500));
  stopArchiver.abort();
  await archiver.catch(() => undefined);

  // ---- 3. PITR restore, to the end of the archive ----
  const listing = await listWalArchive(engine.store);
  const backup = { backupId: '20260101-000000F-bench3', prefix: 'full/20260101-000000F-bench3/', wal: ours.value.wal };
  // hand-run: the same base tar and the same WAL segments, decompressed beforehand (not timed)
  const walDir = path.join(dir, 'hand-wal');
  mkdirSync(walDir);
  for (const s of [...listing.segments, ...listing.partials]) writeFileSync(path.join(walDir, s.name), (await fetchWalFile(engine.store, listing, s.name, 16 << 20))!);
  chmodSync(walDir, 0o755);
  const handRun = (hand: string) => handRunRestore(path.join(dir, 'store', backup.prefix, baseObjectKey), walDir, hand);
  // alternating, each after a sync, so neither pays for the other's dirty pages; median of 3 each
  const oursRuns: { ms: number; value: { lsn: string | null } }[] = [];
  const handRuns: { ms: number; value: string }[] = [];
  for (let i = 0; i < 3; i++) {
    const ours = path.join(dir, `restored-ours-${i}`);
    const hand = path.join(dir, `restored-hand-${i}`);
    spawnSync('sync');
    oursRuns.push(await timed(() => restorePhysicalBackup({ store: engine.store, backup, listing, target: { latest: true }, dataDir: ours })));
    spawnSync('sync');
    handRuns.push(await timed(() => handRun(hand)));
    for (const d of [ours, hand]) rmSync(d, { recursive: true, force: true });
  }
  const oursRestore = { ms: median(oursRuns.map((r) => r.ms)), value: oursRuns[0].value };
  const handRestore = { ms: median(handRuns.map((r) => r.ms)), value: handRuns[0].value };

  const ratio = (a: number, b: number) => (a / b).toFixed(2);
  console.log('\n== tenantsafe full-backup benchmark ==');
  console.log(`cluster ${mb(dirSize(source.dataDir))}, pgbench scale ${scale}, gzip level ${level}, ${os.cpus().length} cores`);
  console.log(`base backup (median of 3): tenantsafe ${(oursMs / 1000).toFixed(2)} s (${mb(ours.value.totals.bytes)} stored), plain pg_basebackup -Ft ${(plainMs / 1000).toFixed(2)} s  ratio ${baseRatio.toFixed(2)} (target <= 1.2); rounds (ours/plain, of which waiting for WAL + sealing) ${rounds.map((r) => `${(r.ours / 1000).toFixed(2)}/${(r.plain / 1000).toFixed(2)} (${(r.walWait / 1000).toFixed(2)})`).join(', ')}`);
  if (pgbackrestMs !== null) console.log(`             pgbackrest full backup ${(pgbackrestMs / 1000).toFixed(2)} s  ratio tenantsafe/pgbackrest ${ratio(oursMs, pgbackrestMs)}`);
  console.log(`RPO (age of the newest archived WAL record, upper bound, ${ages.length} samples under pgbench -R 300): p50 ${percentile(ages, 50)} ms, p95 ${percentile(ages, 95)} ms, max ${Math.max(...ages)} ms (target <= 1000 ms)`);
  const seconds = (runs: { ms: number }[]) => runs.map((r) => (r.ms / 1000).toFixed(2)).join(', ');
  console.log(
    `PITR restore (latest, ${listing.segments.length + listing.partials.length} segments, median of 3, alternating): tenantsafe ${(oursRestore.ms / 1000).toFixed(2)} s [${seconds(oursRuns)}] to ${oursRestore.value.lsn}, hand-run ${(handRestore.ms / 1000).toFixed(2)} s [${seconds(handRuns)}] to ${handRestore.value}  ratio ${ratio(oursRestore.ms, handRestore.ms)} (target <= 1.2)`,
  );

  await engine.close();
  for (const c of PrivateCluster.all()) await c.remove().catch(() => undefined);
  rmSync(dir, { recursive: true, force: true });
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
