// The benchmarks' multi-tenant database at a scale (issue 26): the sample schema
// (sample/schema.sql: child tables without the tenant column, a join table with a composite key
// and a composite foreign key, a table partitioned by month, foreign-key columns without an index,
// quoted mixed-case names, a table without a key, enums, a domain, a generated column), generated
// by sample/generate.ts with Zipf tenant sizes whose largest tenant holds about a tenth of the
// rows, and text and jsonb payloads of ~200 bytes (words and a digest) in comments and events.
//   scale 1:    1,000 tenants, ~10M rows (the largest tenant ~1M)
//   scale 0.05:   500 tenants, ~500k rows
//   scale 0.01:   100 tenants, ~100k rows (--quick)
// Generated once per scale and kept as a template on the bench server (bench/support.ts's
// benchDatabase), cloned per run. To make one ahead of a run:
//   npx tsx bench/dataset.ts [--scale x]    (prints its tenants, rows and size)
import { withConnection } from '../lib/pg';
import { sampleTenants, type SampleOptions } from '../sample/generate';
import { benchDatabase } from './support';
import { parseBenchOptions, BenchInputError } from './report';

/** Tenants and rows at a scale: 10,000 tenants per unit up to 1,000 (at least 50), 10M rows per unit (at least 50k). */
export function benchDataset(scale: number): SampleOptions {
  return {
    tenants: Math.min(1000, Math.max(50, Math.round(10_000 * scale))),
    rows: Math.max(50_000, Math.round(10_000_000 * scale)),
    largestShare: 0.1,
    payloadBytes: 200,
  };
}

/** The largest tenant of the dataset (the first: Zipf rank 1). */
export const largestTenant = (opts: SampleOptions): string => sampleTenants(opts)[0].tenantId;

async function main(): Promise<void> {
  const opts = benchDataset(parseBenchOptions(process.argv.slice(2)).scale);
  const t0 = performance.now();
  const db = await benchDatabase(opts);
  try {
    const facts = await withConnection(db.url, async (c) => {
      const r = await c.query<{ rows: string; size: string; largest: string }>(
        `SELECT (SELECT sum(reltuples) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE nspname = 'app' AND relkind = 'r')::bigint::text AS rows,
                pg_size_pretty(pg_database_size(current_database())) AS size,
                (SELECT count(*) FROM app.users WHERE tenant_id = $1)::float / (SELECT count(*) FROM app.users) AS largest`,
        [largestTenant(opts)],
      );
      return r.rows[0];
    });
    console.log(`${JSON.stringify(opts)}: ${facts.rows} rows, ${facts.size}; the largest tenant (${largestTenant(opts)}) ${(Number(facts.largest) * 100).toFixed(1)}% of the users; ready in ${((performance.now() - t0) / 1000).toFixed(0)} s`);
  } finally {
    await db.drop();
  }
}

if (require.main === module) {
  main().catch((err) => {
    console.error(err instanceof BenchInputError ? err.message : err);
    process.exitCode = err instanceof BenchInputError ? 2 : 1;
  });
}
