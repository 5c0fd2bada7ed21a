// Catalog rows made in SQL, for the health model's tests and benchmark: many tenants with many
// restore points, some failing, some stale, without taking a backup for each. The rows look like
// what the workflows record (lib/catalog.ts); their manifests are empty (nothing reads them here).
import type { Engine } from '../../lib/engine';
import { withConnection } from '../../lib/pg';

export interface SeedOptions {
  database: string;
  tenants: number;
  /** restore points per tenant, one a day going back from `newestHoursAgo` */
  backupsPerTenant: number;
  /** tenant ids: `${prefix}${n}` (zero-padded) */
  prefix?: string;
  newestHoursAgo?: number;
  /** also record a completed tenantBackup run per backup (the runs table grows like that in production) */
  runs?: boolean;
}

/** Inserts the rows in one statement per table; returns the tenant ids' pattern. */
export async function seedTenantBackups(engine: Engine, o: SeedOptions): Promise<void> {
  const prefix = o.prefix ?? 'seed-';
  const hours = o.newestHoursAgo ?? 1;
  await engine.catalog.read(async () => undefined); // creates the schema (migrations) first
  const s = engine.config.catalog.schema;
  await withConnection(engine.config.catalog.url, async (c) => {
    // the per-tenant counts in one pass afterwards, rather than by the trigger row by row
    await c.query('BEGIN');
    await c.query(`ALTER TABLE "${s}".backups DISABLE TRIGGER backups_tenant_stats`);
    await c.query(
      `INSERT INTO "${s}".backups (backup_id, kind, tenant_id, database, storage_uri, prefix, manifest_sha256, rows, bytes, snapshot_at, lsn,
                                  tenant_checksum, schema_fingerprint, started_at, finished_at, manifest)
       SELECT format('%s-%s-%s', $2::text, t, d), 'tenant', $2::text || lpad(t::text, 6, '0'), $1, 'file:///seed', 'tenants/seed/', 'x', 1000, 100000,
              now() - make_interval(hours => $5::int) - make_interval(days => d), '0/0', 'x', 'x',
              now() - make_interval(hours => $5::int) - make_interval(days => d), now() - make_interval(hours => $5::int) - make_interval(days => d), '{}'
         FROM generate_series(1, $3::int) t, generate_series(0, $4::int - 1) d`,
      [o.database, prefix, o.tenants, o.backupsPerTenant, hours],
    );
    await c.query(
      `INSERT INTO "${s}".tenant_backup_stats
         SELECT database, kind, tenant_id, count(*), max(snapshot_at), min(snapshot_at) FROM "${s}".backups WHERE backup_id LIKE $1 || '%' GROUP BY 1, 2, 3
         ON CONFLICT (database, kind, tenant_id) DO UPDATE SET points = tenant_backup_stats.points + EXCLUDED.points,
           newest = greatest(tenant_backup_stats.newest, EXCLUDED.newest), oldest = least(tenant_backup_stats.oldest, EXCLUDED.oldest)`,
      [prefix],
    );
    await c.query(`ALTER TABLE "${s}".backups ENABLE TRIGGER backups_tenant_stats`);
    await c.query('COMMIT');
    if (o.runs) {
      await c.query(
        `INSERT INTO "${s}".runs (workflow_id, run_id, workflow_type, tenant_id, backup_id, status, started_at, finished_at, database)
         SELECT 'tenant-backup/' || tenant_id, md5(backup_id), 'tenantBackup', tenant_id, backup_id, 'completed', started_at, finished_at, database
           FROM "${s}".backups WHERE backup_id LIKE $1 || '%'`,
        [prefix],
      );
    }
    await c.query(`ANALYZE "${s}".backups`);
    await c.query(`ANALYZE "${s}".runs`);
  });
}
