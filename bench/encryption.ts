// The cost of encryption at rest on the largest tenant, encrypted vs unencrypted in the same run:
//   backup:  takeTenantBackup of the tenant (export, gzip, encrypt, store, manifest), target ≤ 1.1
//   restore: the tenant wiped, then preview (stage + diff) + apply + verify, target ≤ 1.1
// Engine-level (lib/), with no Temporal or CLI around it: those are the same either way and would
// only dilute the ratio (bench/tenantBackup.ts and bench/tenantRestore.ts measure them, encrypted,
// as the default config now is). Rounds alternate the two, each phase after a CHECKPOINT.
// Scale 1: a 1M-row tenant among 5 small ones; 6 rounds of each (quick: 2): single runs on a shared
// 2-core machine vary by ±20%, more than what is measured; a third row measures the cipher alone.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { parseConfig } from '../lib/config';
import { Engine } from '../lib/engine';
import { backupLabel, restoreLabel } from '../lib/labels';
import { connect } from '../lib/pg';
import { applyApprovedRestore, dropRestoreScratch, parseSelection, previewRestore, verifyAppliedRestore } from '../lib/restore';
import { discoverTenancy } from '../lib/tenancy';
import { readManifest } from '../lib/format/tenantManifest';
import { recordTenantBackup, takeTenantBackup } from '../lib/tenantBackup';
import { benchRow, ratioAtMost, roundsOf, runScenario, scaled, type BenchOptions, type BenchRow } from './report';
import { benchDatabase, median, wipeTenant } from './support';

const whale = 'whale';
const scenario = 'encryption cost, largest tenant';

export async function run(opts: BenchOptions): Promise<BenchRow[]> {
  // an even count: each of the two goes first equally often
  const rounds = roundsOf(opts, 6, 2);
  const db = await benchDatabase({ tenants: 5, rows: 20_000, extraTenants: [{ tenantId: whale, rows: scaled(opts, 1_000_000, 10_000) }] });
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'tenantsafe-bench-encryption-'));
  const engineOf = (enabled: boolean) =>
    new Engine(parseConfig({ database: { url: db.url }, storage: { primary: { kind: 'local', path: path.join(work, 'backups') } }, encryption: { enabled, keyFile: path.join(work, 'tenantsafe.key') } }, { env: {}, source: 'bench', baseDir: work }));
  const engines = { encrypted: engineOf(true), plain: engineOf(false) };
  const sql = await connect(db.url);
  const times = { encrypted: { backup: [] as number[], restore: [] as number[] }, plain: { backup: [] as number[], restore: [] as number[] } };
  let sizes = '';
  /** seconds to encrypt and decrypt (then check) the stored bytes of one backup, in process: the work encryption adds, without the noise of a whole run */
  const cipherRuns: number[] = [];
  let storedBytes = 0;
  try {
    const plan = await discoverTenancy(sql, engines.plain.config.tenancy);
    const checkpoint = () => sql.query('CHECKPOINT');
    // the tenant's data key is made once, at its first encrypted backup (with a 1 s settle): not a per-backup cost
    await engines.encrypted.keys.forTenant(whale);
    for (let i = 0; i < rounds; i++) {
      // alternate which goes first, so neither always meets the warmer cache
      for (const kind of i % 2 === 0 ? (['plain', 'encrypted'] as const) : (['encrypted', 'plain'] as const)) {
        const engine = engines[kind];
        const backupId = backupLabel(new Date(), 'tenant', randomBytes(3).toString('hex'));
        await checkpoint();
        let t0 = performance.now();
        const s = await takeTenantBackup(engine, { tenantId: whale, backupId });
        times[kind].backup.push((performance.now() - t0) / 1000);
        await recordTenantBackup(engine, { tenantId: whale, backupId, manifestSha256: s.manifestSha256 });
        if (kind === 'encrypted') sizes = `${s.rows} rows, ${(s.bytes / 2 ** 20).toFixed(1)} MiB stored`;
        if (kind === 'plain') {
          const manifest = await readManifest(engine.store, s.prefix);
          const objects = await Promise.all(manifest.tables.map((t) => engine.store.getBytes(s.prefix + t.object.key)));
          const key = (await engines.encrypted.keys.forTenant(whale))!;
          storedBytes = objects.reduce((n, o) => n + o.length, 0);
          t0 = performance.now();
          for (const o of objects) if (!key.openBuffer(key.sealBuffer(o), 'bench').equals(o)) throw new Error('round trip differs');
          cipherRuns.push((performance.now() - t0) / 1000);
        }

        await wipeTenant(sql, plan, whale);
        await checkpoint();
        const job = { restoreId: restoreLabel(new Date(), randomBytes(3).toString('hex')), tenantId: whale, backupId, selection: parseSelection({ tenantId: whale }) };
        t0 = performance.now();
        const preview = await previewRestore(engine, job);
        await applyApprovedRestore(engine, { ...job, digest: preview.digest });
        const verified = await verifyAppliedRestore(engine, job, true);
        times[kind].restore.push((performance.now() - t0) / 1000);
        if (!verified.ok) throw new Error(`the ${kind} restore did not verify`);
        await dropRestoreScratch(engine, job.restoreId);
        // the next backup reads a million rows just written: vacuumed now, not by autovacuum during it
        await sql.query('VACUUM (ANALYZE)');
      }
    }
  } finally {
    await sql.end().catch(() => undefined);
    await engines.encrypted.close();
    await engines.plain.close();
    fs.rmSync(work, { recursive: true, force: true });
    await db.drop();
  }
  const list = (xs: number[]) => `[${xs.map((x) => x.toFixed(2)).join(', ')}]`;
  return [
    ...(['backup', 'restore'] as const).map((phase) =>
    benchRow(scenario, phase === 'backup' ? 'tenant backup, encrypted vs unencrypted (engine)' : 'wipe → preview + apply + verify, encrypted vs unencrypted (engine)', {
      ours: median(times.encrypted[phase]),
      baseline: median(times.plain[phase]),
      unit: 's',
      target: ratioAtMost(1.1),
      note: `${sizes}; medians of ${rounds}: encrypted ${list(times.encrypted[phase])}, unencrypted ${list(times.plain[phase])}`,
    }),
    ),
    benchRow(scenario, 'AES-256-GCM encrypt + decrypt of the stored bytes, in process, vs the unencrypted backup', {
      ours: median(cipherRuns),
      baseline: median(times.plain.backup),
      unit: 's',
      note: `${(storedBytes / 2 ** 20).toFixed(1)} MiB (the gzip a backup stores), each object sealed and opened; rounds ${list(cipherRuns.map((x) => x * 1000)).replace(/]$/, ' ms]')}: what encryption adds to a backup or a restore, below the noise of whole runs`,
    }),
  ];
}

if (require.main === module) runScenario(run);
