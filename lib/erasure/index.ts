// The erasure ledger: subject-level erasures (a person who asked to be forgotten: a table and the
// key of their row, within a tenant), kept in the catalog (migration 10) and, each as one object,
// in storage (`erasures/<tenant>/<id>.json`), so `catalog rebuild` brings it back: a catalog lost
// without its ledger would let restores bring people back. The application deletes
// the live rows; the ledger makes every later tenant restore of data older than the erasure leave
// them out again (lib/restore/erasures.ts), so no restore brings the person back. Recording one
// appends an `erasure` entry to the audit log (without the key: the log holds ids, not subjects).
import type { ClientBase } from 'pg';
import type { Engine } from '../engine';
import { ErrorType, TenantsafeError } from '../errors';
import { tenantSegment } from '../format/tenantManifest';
import { inTransaction, microsText, quoteIdent, withClient } from '../pg';
import { assertTenantExists, discoverTenancy, fromTable, tenantFilter, type OwnedTable, type TenancyPlan } from '../tenancy';

export interface ErasureRecord {
  erasureId: number;
  tenantId: string;
  /** schema.table, as tenancy names it */
  table: string;
  /** the row's primary key: column → value as PostgreSQL prints it */
  key: Record<string, string>;
  by: string;
  reason: string | null;
  /** ISO-8601, microseconds: restores of data older than this apply it */
  erasedAt: string;
}

export interface ErasureRequest {
  tenantId?: string;
  table?: string;
  /** `column=value`, one per key column */
  key?: string[];
  by?: string;
  reason?: string;
}

export type CheckedErasure = Required<Pick<ErasureRequest, 'tenantId' | 'table' | 'by'>> & { key: Record<string, string>; reason?: string };

const bad = (problem: string, hint: string) => new TenantsafeError(ErrorType.BadInput, problem, hint);
const example = 'e.g. tenantsafe erasure record --tenant acme --table app.users --key user_id=42 --by dpo';

/** Checks what needs no database: every part given, each key `column=value`, no column twice. */
export function checkErasureRequest(req: ErasureRequest): CheckedErasure {
  for (const [k, flag] of [['tenantId', '--tenant'], ['table', '--table'], ['by', '--by']] as const) {
    if (typeof req[k] !== 'string' || req[k].trim() === '') throw bad(`${flag} is required.`, `Pass ${flag}: ${example}.`);
  }
  if (!req.key?.length) throw bad('--key is required: the erased row\'s primary key.', `Pass --key column=value, once per key column: ${example}.`);
  const key: Record<string, string> = {};
  for (const pair of req.key) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw bad(`--key "${pair}" is not column=value.`, `Write it like --key user_id=42.`);
    const column = pair.slice(0, eq);
    if (column in key) throw bad(`--key names column "${column}" twice.`, 'Give each key column once.');
    key[column] = pair.slice(eq + 1);
  }
  return { tenantId: req.tenantId!, table: req.table!, by: req.by!.trim(), key, ...(req.reason ? { reason: req.reason } : {}) };
}

/**
 * The table an erasure names, checked against the live schema: tenant-owned (not the tenant
 * table itself: a whole tenant is `tenant erase-backups`), and the key given is its primary key.
 */
function erasedTable(plan: TenancyPlan, req: CheckedErasure): OwnedTable {
  const table = plan.tables.find((t) => t.key === req.table);
  if (!table) {
    const global = plan.globalTables.some((g) => g.key === req.table);
    throw bad(
      `Table ${req.table} is ${global ? 'global (owned by no tenant)' : 'not a table of the configured schemas'}: no tenant restore writes it.`,
      `Name a tenant-owned table; \`tenantsafe tenancy show\` lists them.`,
    );
  }
  if (table.ownership.kind === 'tenant-table') throw bad(`${req.table} is the tenant table: a subject-level erasure names a row within a tenant.`, 'To forget a whole tenant, use `tenantsafe tenant erase-backups`.');
  if (!table.primaryKey) throw bad(`${req.table} has no primary key: an erasure names its row by key.`, 'Give the table a primary key, or name the row of its parent the rows hang from.');
  const given = Object.keys(req.key).sort();
  if (JSON.stringify(given) !== JSON.stringify([...table.primaryKey].sort())) {
    throw bad(`--key names ${given.join(', ')}, but the primary key of ${req.table} is (${table.primaryKey.join(', ')}).`, `Pass --key once per key column: ${table.primaryKey.map((c) => `--key ${c}=…`).join(' ')}.`);
  }
  return table;
}

/** Whether the key's live row exists, and whether it is this tenant's; a value of the wrong type is bad input. */
async function liveRow(c: ClientBase, plan: TenancyPlan, table: OwnedTable, req: CheckedErasure): Promise<{ exists: boolean; tenants: boolean }> {
  const columns = table.primaryKey!;
  const where = columns.map((col, i) => `l.${quoteIdent(col)}::text = $${i + 1}`).join(' AND ');
  const r = await c.query<{ tenants: boolean }>(`SELECT ${tenantFilter(plan, table, 'l', req.tenantId)} AS tenants FROM ${fromTable(table, 'l')} WHERE ${where}`, columns.map((col) => req.key[col]));
  return { exists: r.rows.length > 0, tenants: r.rows.some((x) => x.tenants) };
}

const columns = `id, tenant_id, table_name, key, erased_by, reason, ${microsText('erased_at')} AS erased_at`;

function recordOf(row: Record<string, any>): ErasureRecord {
  return { erasureId: Number(row.id), tenantId: row.tenant_id, table: row.table_name, key: row.key, by: row.erased_by, reason: row.reason, erasedAt: row.erased_at };
}

/**
 * Records an erasure (checked against the live schema: the tenant exists, the table is one of its
 * tables, the key is its primary key and not another tenant's row), then the audit log's entry.
 * `stillLive`: the row is still in the live database; the ledger does not delete it.
 */
export async function recordErasure(engine: Engine, req: ErasureRequest): Promise<ErasureRecord & { stillLive: boolean }> {
  const checked = checkErasureRequest(req);
  const live = await withClient(engine.db, engine.config.database.url, async (c) => {
    const plan = await discoverTenancy(c, engine.config.tenancy);
    await assertTenantExists(c, plan, checked.tenantId);
    const table = erasedTable(plan, checked);
    return liveRow(c, plan, table, checked);
  });
  if (live.exists && !live.tenants) {
    throw bad(`The row of ${checked.table} with key ${keyText(checked.key)} belongs to another tenant, not "${checked.tenantId}".`, 'Check the tenant and the key.');
  }
  // in storage before the catalog commits: a recorded erasure is always one catalog rebuild finds
  const record = await engine.catalog.withSchema((c, s) =>
    inTransaction(c, async () => {
      const r = recordOf(
        (
          await c.query(`INSERT INTO ${s}.erasures (tenant_id, table_name, key, erased_by, reason) VALUES ($1, $2, $3, $4, $5) RETURNING ${columns}`, [
            checked.tenantId,
            checked.table,
            JSON.stringify(checked.key),
            checked.by,
            checked.reason ?? null,
          ])
        ).rows[0],
      );
      await engine.store.put(erasureKey(r), Buffer.from(JSON.stringify(r) + '\n'));
      return r;
    }),
  );
  await engine.audit.append({
    action: 'erasure',
    by: record.by,
    subject: { tenantId: record.tenantId },
    outcome: 'done',
    details: { erasureId: record.erasureId, table: record.table, ...(record.reason ? { reason: record.reason } : {}) },
  });
  return { ...record, stillLive: live.exists };
}

/** The ledger, oldest first; of one tenant, or every tenant's. */
export async function listErasures(engine: Engine, filter: { tenantId?: string } = {}): Promise<ErasureRecord[]> {
  return engine.catalog.withSchema(async (c, s) => {
    const r = await c.query(`SELECT ${columns} FROM ${s}.erasures WHERE $1::text IS NULL OR tenant_id = $1 ORDER BY id`, [filter.tenantId ?? null]);
    return r.rows.map(recordOf);
  });
}

/** The erasures a restore of the tenant's data as of `snapshotAt` applies again: those recorded after it. */
export async function erasuresAfter(engine: Engine, tenantId: string, snapshotAt: string): Promise<ErasureRecord[]> {
  return engine.catalog.withSchema(async (c, s) => {
    const r = await c.query(`SELECT ${columns} FROM ${s}.erasures WHERE tenant_id = $1 AND erased_at > $2::timestamptz ORDER BY id`, [tenantId, snapshotAt]);
    return r.rows.map(recordOf);
  });
}

/** Where an erasure is kept in storage (docs/format.md, "Erasures"). */
export function erasureKey(e: Pick<ErasureRecord, 'tenantId' | 'erasureId'>): string {
  return `${erasuresArea}${tenantSegment(e.tenantId)}/${String(e.erasureId).padStart(12, '0')}.json`;
}

export const erasuresArea = 'erasures/';

/**
 * Puts back into the catalog the erasures storage holds and it lacks (a recreated catalog), with
 * their ids and times; ids handed out next come after them. Never removes one.
 */
export async function rebuildErasures(engine: Engine): Promise<{ indexed: number; added: number[]; invalid: { key: string; error: string }[] }> {
  const found: ErasureRecord[] = [];
  const invalid: { key: string; error: string }[] = [];
  for await (const o of engine.store.list(erasuresArea)) {
    try {
      const e = JSON.parse((await engine.store.getBytes(o.key)).toString('utf8')) as ErasureRecord;
      if (!Number.isInteger(e.erasureId) || typeof e.tenantId !== 'string' || typeof e.table !== 'string' || typeof e.key !== 'object' || o.key !== erasureKey(e)) throw new Error('not an erasure of this key');
      found.push(e);
    } catch (err) {
      invalid.push({ key: o.key, error: (err as Error).message });
    }
  }
  const added = await engine.catalog.withSchema((c, s) =>
    inTransaction(c, async () => {
      const ids: number[] = [];
      for (const e of found) {
        const r = await c.query(
          `INSERT INTO ${s}.erasures (id, tenant_id, table_name, key, erased_by, reason, erased_at) VALUES ($1, $2, $3, $4, $5, $6, $7::timestamptz) ON CONFLICT (id) DO NOTHING`,
          [e.erasureId, e.tenantId, e.table, JSON.stringify(e.key), e.by, e.reason, e.erasedAt],
        );
        if (r.rowCount) ids.push(e.erasureId);
      }
      await c.query(`SELECT setval(pg_get_serial_sequence('${s}.erasures', 'id'), greatest((SELECT max(id) FROM ${s}.erasures), 1))`);
      return ids;
    }),
  );
  return { indexed: found.length, added, invalid };
}

/** `user_id=42` (columns in the order given). */
export function keyText(key: Record<string, string>): string {
  return Object.entries(key)
    .map(([k, v]) => `${k}=${v}`)
    .join(', ');
}
