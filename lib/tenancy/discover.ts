// Tenancy discovery (docs/architecture.md, core rule 4): read the catalog and decide, for every table in the
// configured schemas, whether it holds tenant rows and how they are tied to the tenant.
import { createHash } from 'node:crypto';
import type { ClientBase } from 'pg';
import type { Config } from '../config';
import { ErrorType, TenantsafeError } from '../errors';
import type { ColumnInfo, ForeignKeyInfo, GlobalTable, OwnedTable, Ownership, TableInfo, TenancyPlan } from './types';

type TenancyConfig = Config['tenancy'];

export async function discoverTenancy(client: ClientBase, cfg: TenancyConfig): Promise<TenancyPlan> {
  const tables = await readTables(client, cfg.schemas);
  return planTenancy(tables, cfg);
}

/** Everything the plan needs from pg_catalog, for the tables (not partitions) of the schemas. */
export async function readTables(client: ClientBase, schemas: string[]): Promise<Map<string, TableInfo>> {
  const rels = await client.query<{ oid: number; schema: string; name: string; kind: string; reltuples: number; partitions: string[] }>(
    `SELECT c.oid::int AS oid, n.nspname AS schema, c.relname AS name, c.relkind AS kind,
            CASE WHEN c.relkind = 'p'
              THEN (SELECT coalesce(sum(greatest(pc.reltuples, 0)), 0) FROM pg_partition_tree(c.oid) pt JOIN pg_class pc ON pc.oid = pt.relid WHERE pt.isleaf)
              ELSE greatest(c.reltuples, 0) END::float8 AS reltuples,
            CASE WHEN c.relkind = 'p'
              THEN ARRAY(SELECT pn.nspname || '.' || pc.relname FROM pg_partition_tree(c.oid) pt JOIN pg_class pc ON pc.oid = pt.relid
                         JOIN pg_namespace pn ON pn.oid = pc.relnamespace WHERE pt.isleaf ORDER BY 1)
              ELSE '{}' END::text[] AS partitions
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = ANY($1) AND c.relkind IN ('r', 'p') AND NOT c.relispartition
      ORDER BY n.nspname, c.relname`,
    [schemas],
  );
  const oids = rels.rows.map((r) => r.oid);
  const byOid = new Map<number, TableInfo>();
  for (const r of rels.rows) {
    byOid.set(r.oid, {
      key: `${r.schema}.${r.name}`,
      schema: r.schema,
      name: r.name,
      partitioned: r.kind === 'p',
      partitions: r.partitions,
      columns: [],
      primaryKey: null,
      foreignKeys: [],
      uniqueKeys: [],
      estimatedRows: Math.round(r.reltuples),
    });
  }

  const cols = await client.query<{ oid: number } & Omit<ColumnInfo, 'identity'> & { identity: string; type_kind: string; not_null: boolean; has_default: boolean }>(
    `SELECT a.attrelid::int AS oid, a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type,
            t.typtype AS type_kind, a.attnotnull AS not_null, a.atthasdef OR a.attidentity <> '' AS has_default,
            a.attgenerated <> '' AS generated, a.attidentity AS identity,
            pg_get_serial_sequence(format('%I.%I', n.nspname, c.relname), a.attname) AS sequence
       FROM pg_attribute a
       JOIN pg_type t ON t.oid = a.atttypid
       JOIN pg_class c ON c.oid = a.attrelid
       JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE a.attrelid = ANY($1::oid[]) AND a.attnum > 0 AND NOT a.attisdropped
      ORDER BY a.attrelid, a.attnum`,
    [oids],
  );
  for (const c of cols.rows) {
    byOid.get(c.oid)!.columns.push({
      name: c.name,
      type: c.type,
      typeKind: c.type_kind,
      notNull: c.not_null,
      hasDefault: c.has_default,
      generated: c.generated,
      identity: c.identity as ColumnInfo['identity'],
      sequence: c.sequence,
    });
  }

  // Foreign keys may point outside the configured schemas (e.g. Supabase's auth.users): keep their names.
  const cons = await client.query<{ oid: number; name: string; type: string; ref: string | null; columns: string[]; ref_columns: string[]; deferrable: boolean }>(
    `SELECT con.conrelid::int AS oid, con.conname AS name, con.contype AS type,
            CASE WHEN con.contype = 'f' THEN rn.nspname || '.' || rc.relname END AS ref,
            ARRAY(SELECT a.attname FROM unnest(con.conkey) WITH ORDINALITY k(num, ord)
                   JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.num ORDER BY k.ord)::text[] AS columns,
            ARRAY(SELECT a.attname FROM unnest(con.confkey) WITH ORDINALITY k(num, ord)
                   JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.num ORDER BY k.ord)::text[] AS ref_columns,
            con.condeferrable AS deferrable
       FROM pg_constraint con
       LEFT JOIN pg_class rc ON rc.oid = con.confrelid
       LEFT JOIN pg_namespace rn ON rn.oid = rc.relnamespace
      WHERE con.conrelid = ANY($1::oid[]) AND con.contype IN ('p', 'f') AND con.conparentid = 0
      ORDER BY con.conrelid, con.conname`,
    [oids],
  );
  for (const c of cons.rows) {
    const table = byOid.get(c.oid)!;
    if (c.type === 'p') {
      table.primaryKey = c.columns;
    } else {
      const nullable = c.columns.some((col) => !table.columns.find((x) => x.name === col)?.notNull);
      table.foreignKeys.push({ name: c.name, columns: c.columns, refTable: c.ref!, refColumns: c.ref_columns, deferrable: c.deferrable, nullable });
    }
  }

  // nullsnotdistinct is new in Postgres 15: read through to_jsonb, absent (false) before
  const uniques = await client.query<{ oid: number; name: string; columns: string[]; nulls_not_distinct: boolean }>(
    `SELECT i.indrelid::int AS oid, ic.relname AS name,
            coalesce((to_jsonb(i) ->> 'indnullsnotdistinct')::boolean, false) AS nulls_not_distinct,
            ARRAY(SELECT a.attname FROM unnest(i.indkey::int2[]) WITH ORDINALITY k(num, ord)
                   JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.num
                  WHERE k.ord <= i.indnkeyatts ORDER BY k.ord)::text[] AS columns
       FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
      WHERE i.indrelid = ANY($1::oid[]) AND i.indisunique AND NOT i.indisprimary AND i.indisvalid
        AND i.indpred IS NULL AND i.indexprs IS NULL
      ORDER BY i.indrelid, ic.relname`,
    [oids],
  );
  for (const u of uniques.rows) byOid.get(u.oid)!.uniqueKeys.push({ name: u.name, columns: u.columns, nullsNotDistinct: u.nulls_not_distinct });
  return new Map([...byOid.values()].map((t) => [t.key, t]));
}

/** Matches a configured table name ('name' or 'schema.name') against a table. */
function matches(configured: string, table: TableInfo): boolean {
  return configured === table.key || configured === table.name;
}

/** Decides ownership from the catalog facts; pure, so every rule is testable without a database. */
export function planTenancy(tables: Map<string, TableInfo>, cfg: TenancyConfig): TenancyPlan {
  const warnings: string[] = [];
  const tenantTable = [...tables.values()].find((t) => matches(cfg.tenantTable, t));
  if (!tenantTable) {
    throw new TenantsafeError(
      ErrorType.TenancyUnresolved,
      `Tenant table "${cfg.tenantTable}" was not found in schemas ${cfg.schemas.join(', ')}.`,
      'Set tenancy.tenantTable and tenancy.schemas in the config to where the tenants live.',
    );
  }
  const tenantKey = tenantTable.columns.some((c) => c.name === cfg.tenantColumn)
    ? cfg.tenantColumn
    : tenantTable.primaryKey?.length === 1
      ? tenantTable.primaryKey[0]
      : undefined;
  if (!tenantKey) {
    throw new TenantsafeError(
      ErrorType.TenancyUnresolved,
      `Tenant table ${tenantTable.key} has neither a "${cfg.tenantColumn}" column nor a single-column primary key.`,
      'Set tenancy.tenantColumn to the column that holds the tenant id.',
    );
  }
  for (const name of [...cfg.globalTables, ...Object.keys(cfg.ownership)]) {
    if (![...tables.values()].some((t) => matches(name, t))) {
      throw new TenantsafeError(
        ErrorType.TenancyUnresolved,
        `Table "${name}" named in tenancy config does not exist in schemas ${cfg.schemas.join(', ')}.`,
        'Fix the name in tenancy.globalTables or tenancy.ownership.',
      );
    }
  }

  const configuredGlobal = (t: TableInfo) => cfg.globalTables.some((g) => matches(g, t));
  const owned = new Map<string, Choice>();
  owned.set(tenantTable.key, { ownership: { kind: 'tenant-table', column: tenantKey }, depth: 0, nullable: false });
  for (const t of tables.values()) {
    if (t === tenantTable || configuredGlobal(t)) continue;
    if (t.columns.some((c) => c.name === cfg.tenantColumn)) {
      owned.set(t.key, { ownership: { kind: 'column', column: cfg.tenantColumn }, depth: 0, nullable: false });
    }
  }

  // Tables reached through foreign keys: improve each table's path until nothing changes.
  // A path that can't leave rows orphaned (NOT NULL keys all the way) beats a shorter one.
  const pending = [...tables.values()].filter((t) => !owned.has(t.key) && !configuredGlobal(t));
  for (const t of pending) {
    const forced = Object.entries(cfg.ownership).find(([name]) => matches(name, t))?.[1];
    if (forced && !t.foreignKeys.some((fk) => fk.name === forced)) {
      throw new TenantsafeError(
        ErrorType.TenancyUnresolved,
        `tenancy.ownership names foreign key "${forced}" for ${t.key}, which has no such foreign key (it has: ${t.foreignKeys.map((f) => f.name).join(', ') || 'none'}).`,
        'Use one of the listed foreign key names.',
      );
    }
  }
  for (let changed = true; changed; ) {
    changed = false;
    for (const t of pending) {
      const forced = Object.entries(cfg.ownership).find(([name]) => matches(name, t))?.[1];
      for (const fk of t.foreignKeys) {
        const parent = owned.get(fk.refTable);
        if (!parent || fk.refTable === t.key || (forced && fk.name !== forced) || reachesThrough(owned, fk.refTable, t.key)) continue;
        const candidate = ownershipVia(fk, parent, forced !== undefined);
        const current = owned.get(t.key);
        if (!current || candidate.nullable < current.nullable || (candidate.nullable === current.nullable && candidate.depth < current.depth)) {
          owned.set(t.key, candidate);
          changed = true;
        }
      }
    }
  }

  const ownedTables: OwnedTable[] = [];
  for (const [key, { ownership, depth }] of owned) {
    const t = tables.get(key)!;
    const viaFk = ownership.kind === 'parent' ? ownership.foreignKey : ownership.kind === 'column' ? ownership.via?.foreignKey : undefined;
    const alternatives = t.foreignKeys
      .filter((fk) => fk.refTable !== key && owned.has(fk.refTable) && fk.name !== viaFk && fk.refTable !== tenantTable.key)
      .map((fk) => `${fk.name} → ${fk.refTable}`);
    ownedTables.push({ ...t, ownership, depth, alternatives, copyColumns: t.columns.filter((c) => !c.generated).map((c) => c.name) });
    if (!t.primaryKey) warnings.push(`${key} has no primary key: restore can only match its rows as whole rows (duplicates count).`);
    if (owned.get(key)!.nullable) {
      warnings.push(`${key} is tied to its tenant through a nullable foreign key (${describePath(owned, key)}): rows where it is NULL belong to no tenant and are not backed up.`);
    }
  }

  const globalTables: GlobalTable[] = [...tables.values()]
    .filter((t) => !owned.has(t.key))
    .map((t) => ({
      key: t.key,
      reason: configuredGlobal(t) ? ('configured' as const) : ('no path to a tenant' as const),
      referencedBy: ownedTables.filter((o) => o.foreignKeys.some((fk) => fk.refTable === t.key)).map((o) => o.key),
      estimatedRows: t.estimatedRows,
    }));
  for (const o of ownedTables) {
    for (const fk of o.foreignKeys) {
      if (!tables.has(fk.refTable)) warnings.push(`${o.key}.${fk.name} references ${fk.refTable}, outside the configured schemas: treated as global.`);
    }
  }

  const ordered = foreignKeyOrder(ownedTables, warnings);
  return {
    tenantTable: tenantTable.key,
    tenantColumn: tenantKey,
    tables: ordered,
    globalTables,
    warnings,
    fingerprint: schemaFingerprint(ordered),
  };
}

interface Choice {
  ownership: Ownership;
  depth: number;
  /** some key on the path may be NULL, so some rows may belong to no tenant */
  nullable: boolean;
}

/**
 * Ownership through one foreign key. When the key maps a child column onto the parent's tenant
 * column, the child column itself holds the tenant id and no join is needed.
 */
function ownershipVia(fk: ForeignKeyInfo, parent: Choice, override: boolean): Choice {
  const p = parent.ownership;
  const nullable = fk.nullable || parent.nullable;
  if (p.kind === 'tenant-table' || p.kind === 'column') {
    const i = fk.refColumns.indexOf(p.column);
    if (i >= 0) {
      return { ownership: { kind: 'column', column: fk.columns[i], via: { foreignKey: fk.name, parent: fk.refTable, parentColumn: p.column }, override }, depth: 0, nullable: fk.nullable };
    }
  }
  return {
    ownership: { kind: 'parent', foreignKey: fk.name, parent: fk.refTable, columns: fk.columns, parentColumns: fk.refColumns, override },
    depth: parent.depth + 1,
    nullable,
  };
}

function describePath(owned: Map<string, Choice>, key: string): string {
  const o = owned.get(key)!.ownership;
  if (o.kind === 'parent') return `${o.foreignKey} → ${describePath(owned, o.parent)}`;
  return o.kind === 'column' && o.via ? o.via.foreignKey : key;
}

/** Whether `from`'s ownership path already goes through `table` (taking it would make a loop). */
function reachesThrough(owned: Map<string, Choice>, from: string, table: string): boolean {
  for (let key: string | undefined = from; key; ) {
    if (key === table) return true;
    const o: Ownership | undefined = owned.get(key)?.ownership;
    key = o?.kind === 'parent' ? o.parent : undefined;
  }
  return false;
}

/** Parents before children (Kahn's algorithm, ties by name); cycles are reported and appended. */
function foreignKeyOrder(tables: OwnedTable[], warnings: string[]): OwnedTable[] {
  const byKey = new Map(tables.map((t) => [t.key, t]));
  const parentsOf = new Map(
    tables.map((t) => [t.key, new Set(t.foreignKeys.map((fk) => fk.refTable).filter((r) => r !== t.key && byKey.has(r)))]),
  );
  const ordered: OwnedTable[] = [];
  const done = new Set<string>();
  while (done.size < tables.length) {
    const ready = tables.filter((t) => !done.has(t.key) && [...parentsOf.get(t.key)!].every((p) => done.has(p)));
    if (ready.length === 0) {
      const rest = tables.filter((t) => !done.has(t.key)).sort((a, b) => a.key.localeCompare(b.key));
      warnings.push(`Foreign keys form a cycle among ${rest.map((t) => t.key).join(', ')}: restore relies on deferrable constraints there.`);
      ordered.push(...rest);
      break;
    }
    ready.sort((a, b) => a.key.localeCompare(b.key));
    for (const t of ready) {
      ordered.push(t);
      done.add(t.key);
    }
  }
  return ordered;
}

function schemaFingerprint(tables: OwnedTable[]): string {
  const canonical = [...tables]
    .sort((a, b) => a.key.localeCompare(b.key))
    .map((t) => ({
      table: t.key,
      columns: t.columns.map((c) => [c.name, c.type, c.notNull, c.generated]),
      primaryKey: t.primaryKey,
    }));
  return createHash('sha256').update(JSON.stringify(canonical)).digest('hex');
}
