// Restore test helpers: the differences between a backup and live rows, computed independently
// of the restore engine (in JS, from COPY text lines keyed by primary key).
import { strict as assert } from 'node:assert';
import { randomBytes } from 'node:crypto';
import type { Engine } from '../../lib/engine';
import type { TenantManifest } from '../../lib/format/tenantManifest';
import { restoreLabel } from '../../lib/labels';
import { connect } from '../../lib/pg';
import { applyApprovedRestore, dropRestoreScratch, parseSelection, previewRestore, verifyAppliedRestore, type TableChanges } from '../../lib/restore';
import { damageTenant } from '../../sample/damage';
import { digestOf, liveRows, readBackup } from './backups';

function keyOf(line: string, positions: number[]): string {
  const f = line.split('\t');
  return positions.map((p) => f[p]).join('\t');
}

/** Per table: rows to insert, update, delete to turn `live` into `backup`, computed in JS. */
export function expectedDifferences(manifest: TenantManifest, backup: Map<string, string[]>, live: Map<string, string[]>): Record<string, TableChanges> {
  const out: Record<string, TableChanges> = {};
  for (const t of manifest.tables) {
    const b = backup.get(t.table)!;
    const l = live.get(t.table)!;
    if (t.primaryKey) {
      const pos = t.primaryKey.map((k) => t.copyColumns.indexOf(k));
      const bm = new Map(b.map((line) => [keyOf(line, pos), line]));
      const lm = new Map(l.map((line) => [keyOf(line, pos), line]));
      out[t.table] = {
        insert: [...bm.keys()].filter((k) => !lm.has(k)).length,
        update: [...bm.keys()].filter((k) => lm.has(k) && lm.get(k) !== bm.get(k)).length,
        delete: [...lm.keys()].filter((k) => !bm.has(k)).length,
      };
    } else {
      const count = (xs: string[]) => xs.reduce((m, x) => m.set(x, (m.get(x) ?? 0) + 1), new Map<string, number>());
      const bc = count(b);
      const lc = count(l);
      let insert = 0;
      let del = 0;
      for (const [row, n] of bc) insert += Math.max(0, n - (lc.get(row) ?? 0));
      for (const [row, n] of lc) del += Math.max(0, n - (bc.get(row) ?? 0));
      out[t.table] = { insert, update: 0, delete: del };
    }
  }
  return out;
}

/** Row checksum per table of each tenant's live rows: to prove other tenants are untouched. */
export function checksumsOf(rows: Map<string, string[]>): Record<string, string> {
  return Object.fromEntries([...rows].map(([table, lines]) => [table, `${lines.length}:${digestOf(lines)}`]));
}

/** Damages the tenant, restores it from the backup (preview, apply, verification, through the engine): its rows are the backup's again. */
export async function damageAndRestore(engine: Engine, tenantId: string, backupId: string): Promise<void> {
  const expected = checksumsOf((await readBackup(engine.store, tenantId, backupId)).rows);
  await connect(engine.config.database.url).then(async (c) => {
    await damageTenant(c, tenantId);
    await c.end();
  });
  assert.notDeepEqual(checksumsOf(await liveRows(engine.config, tenantId)), expected);
  const job = { restoreId: restoreLabel(new Date(), randomBytes(3).toString('hex')), tenantId, backupId, selection: parseSelection({ tenantId }) };
  try {
    const preview = await previewRestore(engine, job);
    await applyApprovedRestore(engine, { ...job, digest: preview.digest });
    assert.equal((await verifyAppliedRestore(engine, job, true)).ok, true);
  } finally {
    await dropRestoreScratch(engine, job.restoreId);
  }
  assert.deepEqual(checksumsOf(await liveRows(engine.config, tenantId)), expected);
}
