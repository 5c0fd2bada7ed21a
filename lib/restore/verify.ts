// After the apply committed: prove the tenant holds what was asked.
//   - every selected table: nothing of the applied kinds is left to change (the plan recomputed);
//   - a full replace: the live rows' checksums equal the backup manifest's, table by table
//     (computed from COPY text under the backup's session settings, like the backup did), which
//     alone proves the tenant equals the backup.
// Other tenants were checked inside the apply transaction (their rows' checksums before and
// after, in one snapshot), which a check out here could not do without racing live writes.
import { pipeline } from 'node:stream/promises';
import { Writable } from 'node:stream';
import { to as copyTo } from 'pg-copy-streams';
import { RowDigestStream } from '../checksum';
import { connect, quoteIdent } from '../pg';
import { tenantFilter } from '../tenancy';
import { appliedKinds, computePlan, isSelected } from './diff';
import { liveTable, type RestoreContext, type TableMapping } from './mapping';
import type { RestoreSelection, RestoreVerification } from './types';
import type { ClientBase } from 'pg';

/** Row count and row checksum of a query's rows, read as COPY text (the backup's own form). */
export async function rowsDigest(c: ClientBase, sql: string): Promise<{ rows: number; checksum: string }> {
  const digest = new RowDigestStream();
  await pipeline(c.query(copyTo(`COPY (${sql}) TO STDOUT`)), digest, new Writable({ write: (_chunk, _enc, done) => done() }));
  return { rows: digest.digest.rows, checksum: digest.digest.digest() };
}

export async function verifyRestore(
  ctx: RestoreContext,
  args: { url: string; tenantId: string; backupId: string; snapshotAt: string; selection: RestoreSelection; otherTenantsUnchanged: boolean },
): Promise<RestoreVerification> {
  const c = await connect(args.url, 'tenantsafe-verify');
  try {
    await c.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
    const kinds = appliedKinds(args.selection);
    const exact = args.selection.mode === 'replace' && kinds.size === 3 && args.selection.missingRefs === 'refuse';
    // An exact replace is proven by the checksums alone; anything narrower by what is left to do.
    const comparable = (m: TableMapping) => exact && m.columns.length === m.manifest.copyColumns.length;
    const needsDiff = ctx.mappings.some((m) => m.live && isSelected(args.selection, m.table) && !comparable(m));
    const remaining = needsDiff ? await computePlan(c, ctx, args) : undefined;
    const tables: RestoreVerification['tables'] = [];
    for (const m of ctx.mappings.filter((x) => x.live && isSelected(args.selection, x.table))) {
      if (comparable(m)) {
        const live = await rowsDigest(c, liveRowsSql(ctx, m, args.tenantId));
        const expected = `${m.manifest.rows} rows, ${m.manifest.rowChecksum}`;
        const actual = `${live.rows} rows, ${live.checksum}`;
        tables.push({ table: m.table, expected, actual, ok: expected === actual });
      } else {
        const left = remaining!.tables[m.table];
        const leftCount = left ? left.insert + left.update + left.delete : 0;
        const kindsText = [...kinds].join('/');
        tables.push({
          table: m.table,
          expected: `0 rows left to ${kindsText}`,
          actual: `${leftCount} rows left to ${kindsText}`,
          ok: leftCount === 0,
          note: exact ? 'columns changed since the backup: compared by content, not by the manifest checksum' : undefined,
        });
      }
    }
    await c.query('ROLLBACK');
    return { ok: tables.every((t) => t.ok) && args.otherTenantsUnchanged, tables, otherTenantsUnchanged: args.otherTenantsUnchanged };
  } finally {
    await c.end();
  }
}

function liveRowsSql(ctx: RestoreContext, m: TableMapping, tenantId: string): string {
  return `SELECT ${m.manifest.copyColumns.map((n) => `l.${quoteIdent(n)}`).join(', ')} FROM ${liveTable(m)} l WHERE ${tenantFilter(ctx.plan, m.live!, 'l', tenantId)}`;
}
