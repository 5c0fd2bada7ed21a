// Benchmark of a DR drill against the restore an operator would run by hand, in the same run on
// the same backup (not a timed test):
//   drill      `tenantsafe drill run --wait` from the CLI to its end (what a user waits for:
//              restore from storage, WAL served to restore_command, row counts of every tenant
//              table against the live database, sample tenants' checksums, teardown, the report),
//              and the worker-side RTO it measured (drill start → restored cluster answering and
//              checks passed)
//   hand-run   tar -x of the same stored base backup (decrypted beforehand, not timed), restore_command cp of the same WAL
//              (decompressed beforehand, not timed), start, wait for promotion
// Three rounds (quick: 1), alternating, each after a sync; medians and the ratio drill / hand-run.
// Usage: npx tsx bench/drill.ts [--quick] [--scale x] [--rounds n]   (scale 1: sample of 40 tenants, 400,000 rows)
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { requireKeyring } from '../lib/encryption';
import { Engine } from '../lib/engine';
import { baseObjectOf, readFullManifest } from '../lib/format/fullManifest';
import { fetchWalFile, listWalArchive } from '../lib/wal/archive';
import { sampleTenants } from '../sample/generate';
import { runCli } from '../test/support/env';
import { benchRow, roundsOf, runScenario, scaled, type BenchOptions, type BenchRow } from './report';
import { benchCluster, benchStack, handRunRestore, median } from './support';

async function timed<T>(fn: () => Promise<T>): Promise<{ ms: number; value: T }> {
  const t = performance.now();
  const value = await fn();
  return { ms: performance.now() - t, value };
}

export async function run(opts: BenchOptions): Promise<BenchRow[]> {
  const sample = { tenants: 40, rows: scaled(opts, 400_000, 20_000) };
  const rounds = roundsOf(opts, 3, 1);
  const pg = await benchCluster({ max_wal_size: '2GB' });
  const db = await pg.sampleDatabase('saas', sample);
  const stack = await benchStack(db, {
    config: {
      fullBackup: { walSpoolDir: path.join(pg.dir, 'spool') },
      verification: { scratchDir: pg.dir },
      dr: { drill: { sampleTenants: 3 } },
    },
  });
  const cli = async (...args: string[]) => {
    const r = await runCli([...args, '--json'], { configFile: stack.configFile, timeoutMs: 3_600_000 });
    if (r.code !== 0) throw new Error(`tenantsafe ${args.join(' ')}: exit ${r.code}: ${r.stderr}`);
    return r.json();
  };
  const engine = new Engine(stack.config);
  try {
    for (const t of sampleTenants(sample).slice(0, 3)) await cli('backup', 'tenant', t.tenantId, '--wait');
    const full = await cli('full-backup', '--wait');
    const backup = await engine.catalog.getFullBackup(full.backupId);
    const manifest = await readFullManifest(engine.store, backup.prefix);
    const base = baseObjectOf(manifest);
    const storeRoot = (stack.config.storage.primary as { path: string }).path;
    // the hand-run's base tar: the stored one, decrypted (not timed: an operator restoring by hand
    // has no decryption of ours, so the baseline starts from the compressed tar itself)
    const baseKey = backup.prefix + base.object.key;
    const baseTar = path.join(pg.dir, `hand-${path.basename(base.object.key)}`);
    const decrypt = base.object.encrypted ? (await requireKeyring(engine.store, baseKey).open(manifest.encryption!, baseKey)).open(baseKey) : undefined;
    await pipeline([await engine.store.get(baseKey), ...(decrypt ? [decrypt] : []), fs.createWriteStream(baseTar)]);

    // the hand-run's WAL: every segment the archive holds now, decompressed (not timed)
    const walDir = path.join(pg.dir, 'hand-wal');
    fs.mkdirSync(walDir);
    const listing = await listWalArchive(engine.store);
    for (const s of [...listing.segments, ...listing.partials]) fs.writeFileSync(path.join(walDir, s.name), (await fetchWalFile(engine.store, listing, s.name, backup.wal!.segmentSize))!);
    fs.chmodSync(walDir, 0o755);

    const drills: { ms: number; rtoMs: number; workerMs: number; teardownMs: number; fetchMs: number; replayMs: number; checksMs: number; ok: boolean }[] = [];
    const hands: number[] = [];
    for (let i = 0; i < rounds; i++) {
      spawnSync('sync');
      const d = await timed(() => cli('drill', 'run', '--wait'));
      const report = JSON.parse(fs.readFileSync(path.join(storeRoot, d.value.reportKey), 'utf8'));
      drills.push({ ms: d.ms, rtoMs: d.value.rtoMs, ok: d.value.ok, workerMs: Date.parse(report.finishedAt) - Date.parse(report.startedAt), teardownMs: report.timings.teardownMs, fetchMs: report.timings.fetchMs + report.timings.restoreMs, replayMs: report.timings.replayMs, checksMs: report.timings.checksMs });
      spawnSync('sync');
      const hand = path.join(pg.dir, `hand-${i}`);
      hands.push((await timed(() => handRunRestore({ file: baseTar, compression: base.compression }, walDir, hand))).ms);
      fs.rmSync(hand, { recursive: true, force: true });
    }
    const s = (ms: number) => `${(ms / 1000).toFixed(2)} s`;
    const m = (f: (d: (typeof drills)[number]) => number) => median(drills.map(f)) / 1000;
    const hand = median(hands) / 1000;
    const handNote = `hand-run: tar -x of the same stored base backup (decrypted beforehand), restore_command cp of its WAL (decompressed beforehand), start, promotion: [${hands.map(s).join(', ')}]`;
    const scenario = 'DR drill';
    const size = `${sample.tenants} tenants, ${sample.rows} rows, base backup ${(backup.bytes / 2 ** 20).toFixed(0)} MiB stored; medians of ${rounds}`;
    if (!drills.every((d) => d.ok)) throw new Error(`bench: a drill failed: ${JSON.stringify(drills)}`);
    return [
      benchRow(scenario, '`drill run --wait` from the CLI vs a hand-run restore', { ours: m((d) => d.ms), baseline: hand, unit: 's', note: `${size}; drill CLI [${drills.map((d) => s(d.ms)).join(', ')}], teardown and report included; ${handNote}` }),
      benchRow(scenario, 'drill RTO (worker: start → answering, checks passed) vs a hand-run restore', {
        ours: m((d) => d.rtoMs),
        baseline: hand,
        unit: 's',
        note: `[${drills.map((d) => s(d.rtoMs)).join(', ')}]; of which fetch+start ${m((d) => d.fetchMs).toFixed(2)} s, replay ${m((d) => d.replayMs).toFixed(2)} s, checks ${m((d) => d.checksMs).toFixed(2)} s; worker-side to the report ${m((d) => d.workerMs).toFixed(2)} s (teardown ${m((d) => d.teardownMs).toFixed(2)} s)`,
      }),
    ];
  } finally {
    await engine.close();
    await stack.stop();
    await pg.remove();
  }
}

if (require.main === module) runScenario(run);
