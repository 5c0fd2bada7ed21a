// The tenancy plan: which tables hold a tenant's rows and how each table's rows are tied to
// the tenant. Plain data (JSON-serialisable), so it can go into manifests and previews.

export interface ColumnInfo {
  name: string;
  /** format_type() of the column, e.g. "numeric(8,2)", "app.task_status" */
  type: string;
  /** pg_type.typtype: b base, e enum, d domain, c composite, r range, m multirange, p pseudo */
  typeKind: string;
  notNull: boolean;
  /** has a DEFAULT (or is an identity): rows inserted without a value for it still get one */
  hasDefault: boolean;
  /** GENERATED ALWAYS AS (...) STORED: never exported, recomputed by Postgres on import */
  generated: boolean;
  /** '' none, 'a' GENERATED ALWAYS AS IDENTITY, 'd' BY DEFAULT */
  identity: '' | 'a' | 'd';
  /** the sequence behind a serial or identity column, qualified, for fixing it after a restore */
  sequence: string | null;
}

export interface ForeignKeyInfo {
  name: string;
  columns: string[];
  /** key of the referenced table */
  refTable: string;
  refColumns: string[];
  deferrable: boolean;
  /** some referencing column may be NULL: such rows belong to no parent */
  nullable: boolean;
}

/** A unique index other than the primary key, on plain columns, not partial: rows a restore writes must not collide on it. */
export interface UniqueKeyInfo {
  name: string;
  columns: string[];
  /** NULLS NOT DISTINCT (Postgres 15): NULLs collide too */
  nullsNotDistinct: boolean;
}

export interface TableInfo {
  /** schema.name, unquoted: the table's key everywhere in tenantsafe (e.g. app.AuditLog) */
  key: string;
  schema: string;
  name: string;
  partitioned: boolean;
  /** partitions (keys) of a partitioned table; their rows are read through the parent */
  partitions: string[];
  columns: ColumnInfo[];
  primaryKey: string[] | null;
  foreignKeys: ForeignKeyInfo[];
  uniqueKeys: UniqueKeyInfo[];
  /** pg_class.reltuples of the table (summed over partitions): all tenants together */
  estimatedRows: number;
}

/** How a tenant-owned table's rows are tied to the tenant. */
export type Ownership =
  /** the tenant table itself: the row whose key is the tenant id */
  | { kind: 'tenant-table'; column: string }
  /** a column holds the tenant id: the tenant column, or a foreign-key column that must equal it */
  | { kind: 'column'; column: string; via?: { foreignKey: string; parent: string; parentColumn: string }; override?: boolean }
  /** reached through a foreign key to an owned parent table */
  | { kind: 'parent'; foreignKey: string; parent: string; columns: string[]; parentColumns: string[]; override?: boolean };

export interface OwnedTable extends TableInfo {
  ownership: Ownership;
  /** joins needed to reach the tenant id (0 = a column holds it) */
  depth: number;
  /** other foreign keys that also lead to the tenant (for the operator's information) */
  alternatives: string[];
  /** columns exported and compared: all but generated ones, in attnum order */
  copyColumns: string[];
}

export interface GlobalTable {
  key: string;
  reason: 'configured' | 'no path to a tenant';
  /** owned tables with a foreign key to it */
  referencedBy: string[];
  estimatedRows: number;
}

export interface TenancyPlan {
  tenantTable: string;
  tenantColumn: string;
  /** owned tables, parents before children (foreign-key order; self references ignored) */
  tables: OwnedTable[];
  globalTables: GlobalTable[];
  warnings: string[];
  /** sha256 over the owned tables' columns, types and keys: changes when the schema drifts */
  fingerprint: string;
}
