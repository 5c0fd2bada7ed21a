// After the apply committed: prove the tenant holds what was asked.
//   - every selected table: nothing of the applied kinds is left to change (the plan recomputed);
//   - a full replace: the live rows' checksums equal the backup manifest's, table by table
//     (computed from COPY text under the backup's session settings, like the backup did), which
//     alone proves the tenant equals the backup.
// Other tenants were checked inside the apply transaction (their rows' checksums before and
// after, in one snapshot), which a check out here could not do without racing live writes.
import { pipeline } from 'node:stream/promises';
import { to as copyTo } from 'pg-copy-streams';
import { RowDigestStream } from '../checksum';
import { discard } from '../streams';
import { connect, inLanes, quoteIdent } from '../pg';
import { tenantFilter } from '../tenancy';
import { appliedKinds, computePlan, isSelected } from './diff';
import { liveTable, type RestoreContext, type TableMapping } from './mapping';
import type { RestoreSelection, RestoreVerification } from './types';
import type { ClientBase } from 'pg';

/** Row count and row checksum of a query's rows, read as COPY text (the backup's own form). */
export async function rowsDigest(c: ClientBase, sql: string): Promise<{ rows: number; checksum: string }> {
  const digest = new RowDigestStream();
  await pipeline(c.query(copyTo(`COPY (${sql}) TO STDOUT`)), digest, discard());
  return { rows: digest.digest.rows, checksum: digest.digest.digest() };
}

export async function verifyRestore(
  ctx: RestoreContext,
  args: { url: string; tenantId: string; backupId: string; snapshotAt: string; selection: RestoreSelection; otherTenantsUnchanged: boolean; parallelism: number },
): Promise<RestoreVerification> {
  const kinds = appliedKinds(args.selection);
  const exact = args.selection.mode === 'replace' && kinds.size === 3 && args.selection.missingRefs === 'refuse';
  // An exact replace is proven by the checksums alone; anything narrower by what is left to do.
  const comparable = (m: TableMapping) => exact && m.columns.length === m.manifest.copyColumns.length;
  const selected = ctx.mappings.filter((m) => m.live && isSelected(args.selection, m.table));
  const byChecksum = selected.filter(comparable);
  const byDiff = selected.filter((m) => !comparable(m));

  const results = new Map<string, RestoreVerification['tables'][number]>();
  // the checksums read every table once: several at a time
  await inLanes(args.url, 'tenantsafe-verify', byChecksum, { lanes: args.parallelism, size: (m) => m.manifest.rawBytes }, async (c, m) => {
    const live = await rowsDigest(c, liveRowsSql(ctx, m, args.tenantId));
    const expected = `${m.manifest.rows} rows, ${m.manifest.rowChecksum}`;
    const actual = `${live.rows} rows, ${live.checksum}`;
    results.set(m.table, { table: m.table, expected, actual, ok: expected === actual });
  });
  if (byDiff.length > 0) {
    const c = await connect(args.url, 'tenantsafe-verify');
    try {
      await c.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
      const remaining = await computePlan(c, ctx, args);
      await c.query('ROLLBACK');
      const kindsText = [...kinds].join('/');
      for (const m of byDiff) {
        const left = remaining.tables[m.table];
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

function liveRowsSql(ctx: RestoreContext, m: TableMapping, tenantId: string): string {
  return `SELECT ${m.manifest.copyColumns.map((n) => `l.${quoteIdent(n)}`).join(', ')} FROM ${liveTable(m)} l WHERE ${tenantFilter(ctx.plan, m.live!, 'l', tenantId)}`;
}
