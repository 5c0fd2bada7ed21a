// The publication the change log reads: exactly the tenant-owned tables. Shared by the capture,
// which keeps it in step with the tenancy plan, and by tenant backups, whose boundary with the
// log holds only if the log followed every table the backup reads.
import type { ClientBase } from 'pg';
import { qualified, quoteIdent } from '../pg';
import type { TenancyPlan } from '../tenancy';

/** The publication lists exactly the owned tables (partitioned ones by their root: changes come as the root's). */
export async function publishOwnedTables(c: ClientBase, publication: string, plan: TenancyPlan, opts: { create: boolean }): Promise<void> {
  const pub = await c.query(`SELECT 1 FROM pg_publication WHERE pubname = $1`, [publication]);
  const list = plan.tables.map((t) => qualified(t.schema, t.name)).join(', ');
  if (pub.rowCount === 0) {
    if (opts.create) await c.query(`CREATE PUBLICATION ${quoteIdent(publication)} FOR TABLE ${list} WITH (publish_via_partition_root = true)`);
  } else if ((await unpublishedTables(c, publication, plan)).length || (await publishedTables(c, publication)).length !== plan.tables.length) {
    await c.query(`ALTER PUBLICATION ${quoteIdent(publication)} SET TABLE ${list}`);
  }
}

/**
 * The owned tables the publication leaves out, as the transaction's snapshot sees the catalog
 * (plain SQL over pg_publication_rel: pg_publication_tables would read the latest catalog).
 */
export async function unpublishedTables(c: ClientBase, publication: string, plan: TenancyPlan): Promise<string[]> {
  const published = new Set(await publishedTables(c, publication));
  return plan.tables.map((t) => t.key).filter((key) => !published.has(key));
}

async function publishedTables(c: ClientBase, publication: string): Promise<string[]> {
  const r = await c.query<{ t: string }>(
    `SELECT n.nspname || '.' || k.relname AS t
       FROM pg_publication p JOIN pg_publication_rel r ON r.prpubid = p.oid JOIN pg_class k ON k.oid = r.prrelid JOIN pg_namespace n ON n.oid = k.relnamespace
      WHERE p.pubname = $1`,
    [publication],
  );
  return r.rows.map((x) => x.t);
}
