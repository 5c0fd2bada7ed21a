// After the apply committed: prove the tenant holds what was asked.
//   - every selected table: nothing of the applied kinds is left to change (the plan recomputed);
//   - a full replace: the live rows' checksums equal the backup manifest's, table by table
//     (computed from COPY text under the backup's session settings, like the backup did), which
//     alone proves the tenant equals the backup. Where the apply left a delta and a safety
//     backup, the checksum is had without reading every row (see fromDelta: a scan for writes
//     since the apply's snapshot, and the rows it wrote read back, or, where the apply proved the
//     sum before it committed, ApplyDelta.proven, not even those); else, or if that does not come
//     out equal, from every row.
// Other tenants were checked inside the apply transaction (no row it wrote is theirs, and without
// replica mode their row counts are unchanged), which a check out here could not do without
// racing live writes.
import { pipeline } from 'node:stream/promises';
import { copyOut } from '../copyOut';
import { adjustRows, noRows, RowDigestStream, type RowSetDigest } from '../checksum';
import type { TenantManifest } from '../format/tenantManifest';
import { discard } from '../streams';
import { columnList, connect, inLanes } from '../pg';
import { tenantFilter } from '../tenancy';
import { diffTable } from './diff';
import { hasErasures } from './erasures';
import { sameColumnsAsBackup, type RestoreContext, type TableMapping } from './mapping';
import { computePlan, diffableBackupXmin, scratchSurvived } from './plan';
import { appliedKinds, isExactReplace, isSelected } from './rules';
import { liveTable, writtenSince } from './sql';
import { stageInFull, type BackupSource } from './stage';
import type { ApplyDelta, ApplyResult, RestoreSelection, RestoreVerification, TableChanges } from './types';
import type { ClientBase } from 'pg';

/** Row count and row checksum of a query's rows, read as COPY text (the backup's own form). */
export async function rowsDigest(c: ClientBase, sql: string): Promise<RowSetDigest> {
  const digest = new RowDigestStream();
  await pipeline(c.query(copyOut(`COPY (${sql}) TO STDOUT`)), digest, discard());
  return { rows: digest.digest.rows, checksum: digest.digest.digest() };
}

export async function verifyRestore(
  ctx: RestoreContext,
  args: {
    url: string;
    tenantId: string;
    backupId: string;
    snapshotAt: string;
    selection: RestoreSelection;
    otherTenantsUnchanged: boolean;
    parallelism: number;
    /** the backup's objects: the tables diffed are staged again from them if a crash emptied the scratch tables */
    source: BackupSource;
    /** what the apply changed, and the safety backup it took: the tenant as the apply found it */
    delta?: Delta;
  },
): Promise<RestoreVerification> {
  const kinds = appliedKinds(args.selection);
  const exact = isExactReplace(args.selection);
  // An exact replace is proven by the checksums alone; anything narrower by what is left to do, as
  // is a restore that applied erasures again (the tenant is the backup less the erased rows)
  const comparable = (m: TableMapping) => exact && sameColumnsAsBackup(m) && !hasErasures(ctx);
  const selected = ctx.mappings.filter((m) => m.live && isSelected(args.selection, m.table));
  const byChecksum = selected.filter(comparable);
  const byDiff = selected.filter((m) => !comparable(m));

  const results = new Map<string, RestoreVerification['tables'][number]>();
  // the checksums read every table once: several at a time
  await inLanes(args.url, 'tenantsafe-verify', byChecksum, { lanes: args.parallelism, size: (m) => m.manifest.rawBytes }, async (c, m) => {
    const expected = `${m.manifest.rows} rows, ${m.manifest.rowChecksum}`;
    const quick = args.delta && (await fromDelta(c, ctx, m, args.tenantId, args.delta));
    const live = quick && `${quick.rows} rows, ${quick.checksum}` === expected ? quick : await rowsDigest(c, liveRowsSql(ctx, m, args.tenantId));
    const actual = `${live.rows} rows, ${live.checksum}`;
    results.set(m.table, { table: m.table, expected, actual, ok: expected === actual, ...(live === quick ? { note: 'from the safety backup and the rows the apply changed' } : {}) });
  });
  if (byDiff.length > 0) {
    const c = await connect(args.url, 'tenantsafe-verify');
    try {
      await c.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
      if (!(await scratchSurvived(c, ctx))) await stageInFull(c, ctx, args.source, { everyTable: true });
      // an exact replace diffs these tables alone (others may be staged from their keys only);
      // a narrower restore diffs them all, as its preview did (a skipped parent row skips children)
      const remaining: Record<string, TableChanges | undefined> = {};
      if (exact) {
        const backupXmin = await diffableBackupXmin(c, ctx);
        for (const m of byDiff) remaining[m.table] = (await diffTable(c, ctx, m, args, { backupXmin })).preview;
      } else Object.assign(remaining, (await computePlan(c, ctx, args)).tables);
      await c.query('ROLLBACK');
      const kindsText = [...kinds].join('/');
      for (const m of byDiff) {
        const left = remaining[m.table];
        const leftCount = left ? left.insert + left.update + left.delete : 0;
        results.set(m.table, {
          table: m.table,
          expected: `0 rows left to ${kindsText}`,
          actual: `${leftCount} rows left to ${kindsText}`,
          ok: leftCount === 0,
          note: exact ? 'columns changed since the backup: compared by content, not by the manifest checksum' : undefined,
        });
      }
    } finally {
      await c.end();
    }
  }
  const tables = selected.map((m) => results.get(m.table)!);
  return { ok: tables.every((t) => t.ok) && args.otherTenantsUnchanged, tables, otherTenantsUnchanged: args.otherTenantsUnchanged };
}

type Delta = { applied: ApplyDelta; changes: ApplyResult['applied']; safety: TenantManifest };

/**
 * A table's row count and checksum now, from the tenant's rows as the apply found them (its
 * safety backup, read in the apply's snapshot), less the rows it removed, plus the rows it wrote
 * (their xmin is its transaction: read back), or as the apply proved them before it committed
 * (ApplyDelta.proven, the same sum). That holds only if no one else has written the tenant's rows
 * since the apply's snapshot: a row version that snapshot could not see (xmin not older than its
 * snapshotXmin), other than the apply's own, or a row count that does not add up, and it is
 * undefined: the caller reads every row instead.
 */
async function fromDelta(c: ClientBase, ctx: RestoreContext, m: TableMapping, tenantId: string, delta: Delta): Promise<RowSetDigest | undefined> {
  const proven = delta.applied.proven?.[m.table];
  const before = safetyRowsOf(delta.safety, m);
  if (!proven && !before) return undefined;
  const written = delta.changes[m.table] ? delta.changes[m.table].insert + delta.changes[m.table].update : 0;
  // most rows written: reading them back is reading the table, and the arithmetic saves nothing
  if (!proven && written > m.manifest.rows / 2) return undefined;
  const { xid, readAt } = delta.applied;
  const [now] = (
    await c.query<{ n: string; others: boolean }>(
      `SELECT count(*) AS n, coalesce(bool_or(l.xmin <> $1::xid AND ${writtenSince('l', '$2::xid8')}), false) AS others FROM ${liveTable(m)} l WHERE ${tenantFilter(ctx.plan, m.live!, 'l', tenantId)}`,
      [xid, readAt],
    )
  ).rows;
  if (now.others || Number(now.n) !== m.manifest.rows) return undefined;
  if (proven) return proven;
  // no entry: a table the apply did not change
  const removed = delta.applied.removed[m.table] ?? noRows;
  const added = await rowsDigest(c, `${liveRowsSql(ctx, m, tenantId)} AND l.xmin = '${BigInt(xid)}'::xid`); // COPY takes no parameters
  return adjustRows(before!, removed, added);
}

/** A table's rows in a restore's safety backup (the tenant as the apply found it), where read with the backup's columns, so their checksums add up with the backup's. */
export function safetyRowsOf(safety: TenantManifest, m: TableMapping): RowSetDigest | undefined {
  const t = safety.tables.find((x) => x.table === m.table);
  return t && t.copyColumns.join('\0') === m.manifest.copyColumns.join('\0') ? { rows: t.rows, checksum: t.rowChecksum } : undefined;
}

function liveRowsSql(ctx: RestoreContext, m: TableMapping, tenantId: string): string {
  return `SELECT ${columnList('l', m.manifest.copyColumns)} FROM ${liveTable(m)} l WHERE ${tenantFilter(ctx.plan, m.live!, 'l', tenantId)}`;
}
