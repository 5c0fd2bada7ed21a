// The audit log: an append-only record in the catalog (table audit_log, migration 9) of every
// restore request, preview, approval (refused ones too), rejection and outcome, every pin and
// unpin, every failover and switchover request, decision and outcome, and every retention run
// that deleted backups. Tamper-evident: each entry carries the sha256 of the previous entry's hash
// and its own canonical JSON, so changing, removing or inserting an entry breaks the chain from
// there (`tenantsafe audit verify`). Appends are serialized by a transaction-level advisory lock
// (one chain, numbered without gaps, whatever the number of workers) and, when they come from an
// activity Temporal may retry, are idempotent by their key (workflow id + run id + step).
//
// What it cannot stop (docs/format.md, "The audit log"): the table's owner or a superuser can
// disable the triggers that refuse UPDATE, DELETE and TRUNCATE, or recompute the whole chain. The
// first shows in `audit verify`; the second and a removed tail show against the anchor, the
// newest entry's number and hash, which each append writes to storage (audit/head.json).
import { canonicalJson, sha256Hex } from '../checksum';
import type { Catalog } from '../catalog';
import { ErrorType, TenantsafeError } from '../errors';
import { timeWithZone } from '../inputs';
import { inTransaction, microsText } from '../pg';
import type { ObjectStore } from '../storage/types';
import type { FailoverStatus, TenantRestoreStatus } from '../../workflows/messages';
import { auditActions, type AuditAction, type AuditEntry, type AuditEvent, type AuditSubject } from './types';

export * from './types';

/** The previous hash of the first entry. */
export const genesisHash = '0'.repeat(64);
/** Where each append anchors the newest entry in storage. */
export const auditAnchorKey = 'audit/head.json';

/** The fields an entry's hash covers, in the form it is computed from. */
type HashedFields = Omit<AuditEntry, 'prevHash' | 'hash'>;

/** sha256 (hex) of the previous hash, a newline and the entry's canonical JSON (keys sorted, no whitespace). */
export function entryHash(prevHash: string, fields: HashedFields): string {
  const { seq, at, by, action, subject, digest, outcome, details } = fields;
  return sha256Hex(`${prevHash}\n${canonicalJson({ seq, at, by, action, subject, digest, outcome, details })}`);
}

/** The anchor in storage: the newest entry an append saw committed. */
export interface AuditAnchor {
  seq: number;
  hash: string;
  at: string;
}

export interface AuditVerification {
  ok: boolean;
  entries: number;
  /** the last entry that holds: the newest, when the chain is whole */
  head: { seq: number; hash: string } | null;
  /** the first entry that does not hold, and why; null when the chain is whole */
  broken: { seq: number; problem: string } | null;
  /**
   * the chain against the anchor in storage: `matches` (it holds the anchored entry, hash and
   * all), `differs` (its hash there is another: recomputed), `beyond-end` (the anchor names an
   * entry past the end: removed), `none` (no anchor written yet), `unreadable` (storage did not
   * answer: not judged), `not-checked` (the anchor lies past a broken entry)
   */
  anchor: { status: 'matches' | 'differs' | 'beyond-end' | 'none' | 'unreadable' | 'not-checked'; seq?: number; hash?: string; at?: string; error?: string };
}

export interface AuditFilter {
  tenantId?: string;
  action?: string;
  /** ISO-8601 with a zone: entries at or after it */
  since?: string;
  limit?: number;
}

/** Checks `audit list`'s filters: an action of auditActions, a time with its zone (bad input otherwise). */
export function checkAuditFilter(f: AuditFilter): AuditFilter {
  if (f.action !== undefined && !(auditActions as readonly string[]).includes(f.action)) {
    throw new TenantsafeError(ErrorType.BadInput, `"${f.action}" is not an audit action.`, `Use one of ${auditActions.join(', ')}.`);
  }
  if (f.since !== undefined) timeWithZone(f.since);
  return f;
}

/** Where a refused approval was refused before any signal: the workflow never saw it, so its refuser records it. */
export type RefusedVia = 'cli' | 'dashboard' | 'api';

/** An approval the CLI or the dashboard refused before signalling (four-eyes, a stale digest, not awaiting approval). */
export function refusedApproval(
  target: { restore: Pick<TenantRestoreStatus, 'restoreId' | 'tenantId' | 'backupId' | 'state'> } | { failover: Pick<FailoverStatus, 'failoverId' | 'database' | 'state'> },
  approval: { by: string; digest?: string },
  reason: string,
  via: RefusedVia,
): AuditEvent {
  const details = { reason, state: 'restore' in target ? target.restore.state : target.failover.state, via };
  if ('restore' in target) {
    const { restoreId, tenantId, backupId } = target.restore;
    return { action: 'restore.approve', by: approval.by, subject: { tenantId, restoreId, ...(backupId ? { backupId } : {}) }, digest: approval.digest, outcome: 'refused', details };
  }
  const { failoverId, database } = target.failover;
  return { action: 'failover.approve', by: approval.by, subject: { failoverId, ...(database ? { database } : {}) }, outcome: 'refused', details };
}

const subjectNames: Record<keyof AuditSubject, string> = { tenantId: 'tenant', backupId: 'backup', restoreId: 'restore', failoverId: 'failover', switchoverId: 'switchover', database: 'database' };

/** An entry's subject in a line: `tenant=acme restore=20261125-094500R-4d5e6f`. */
export function subjectText(subject: AuditSubject): string {
  return (Object.keys(subjectNames) as (keyof AuditSubject)[]).filter((k) => subject[k]).map((k) => `${subjectNames[k]}=${subject[k]}`).join(' ') || '-';
}

const columns = `seq, ${microsText('at')} AS at, actor, action, subject, digest, outcome, details, prev_hash, hash`;

function entryOf(row: Record<string, any>): AuditEntry {
  return {
    seq: Number(row.seq),
    at: row.at,
    by: row.actor,
    action: row.action,
    subject: row.subject,
    digest: row.digest,
    outcome: row.outcome,
    details: row.details,
    prevHash: row.prev_hash,
    hash: row.hash,
  };
}

/** Text as the catalog can keep it: no NUL (PostgreSQL text refuses it), at most `max` characters. */
function clean(text: string, max: number): string {
  const t = text.replace(/\u0000/g, '');
  return t.length > max ? `${t.slice(0, max - 1)}…` : t;
}

/** The event as it is stored and hashed: JSON that reads back from jsonb as it went in. */
function normalize(e: AuditEvent): Pick<AuditEntry, 'by' | 'action' | 'subject' | 'digest' | 'outcome' | 'details'> {
  if (!(auditActions as readonly string[]).includes(e.action)) throw new Error(`not an audit action: ${String(e.action)}`);
  const by = typeof e.by === 'string' && e.by.trim() !== '' ? clean(e.by.trim(), 200) : 'unknown';
  const subject: AuditSubject = {};
  for (const [k, v] of Object.entries(e.subject ?? {})) if (typeof v === 'string' && v !== '') subject[k as keyof AuditSubject] = clean(v, 256);
  const details = JSON.parse(canonicalJson(e.details ?? {}), (_k, v: unknown) => (typeof v === 'string' ? clean(v, 2000) : v)) as Record<string, unknown>;
  return { by, action: e.action as AuditAction, subject, digest: typeof e.digest === 'string' && e.digest !== '' ? clean(e.digest, 200) : null, outcome: e.outcome, details };
}

export class AuditLog {
  constructor(
    private readonly catalog: Catalog,
    /** where the anchor goes; none: not anchored */
    private readonly store: (() => ObjectStore) | undefined,
    private readonly warn: (message: string) => void = (m) => process.stderr.write(`tenantsafe audit: ${m}\n`),
  ) {}

  /**
   * Appends one entry at the end of the chain. With an idempotency key, an entry already recorded
   * under it is returned instead (`duplicate`): a retried activity appends once.
   */
  async append(event: AuditEvent, opts: { idempotencyKey?: string } = {}): Promise<{ entry: AuditEntry; duplicate: boolean }> {
    const e = normalize(event);
    const out = await this.catalog.withSchema((c, s) =>
      inTransaction(c, async () => {
        // one chain: appends of every process take their turn (released at commit)
        await c.query(`SELECT pg_advisory_xact_lock(hashtext($1))`, [`tenantsafe.audit:${s}`]);
        if (opts.idempotencyKey) {
          const found = await c.query(`SELECT ${columns} FROM ${s}.audit_log WHERE idempotency_key = $1`, [opts.idempotencyKey]);
          if (found.rows[0]) return { entry: entryOf(found.rows[0]), duplicate: true };
        }
        // the time is taken after the lock: entries are in time order as they are in number order
        const last = await c.query(
          `SELECT l.seq, l.hash, ${microsText('clock_timestamp()')} AS now FROM (SELECT 1) one
             LEFT JOIN LATERAL (SELECT seq, hash FROM ${s}.audit_log ORDER BY seq DESC LIMIT 1) l ON true`,
        );
        const { seq: lastSeq, hash: lastHash, now } = last.rows[0] as { seq: string | null; hash: string | null; now: string };
        const fields: HashedFields = { seq: Number(lastSeq ?? 0) + 1, at: now, ...e };
        const prevHash = lastHash ?? genesisHash;
        const hash = entryHash(prevHash, fields);
        await c.query(
          `INSERT INTO ${s}.audit_log (seq, at, actor, action, subject, digest, outcome, details, idempotency_key, prev_hash, hash)
           VALUES ($1, $2::timestamptz, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
          [fields.seq, fields.at, fields.by, fields.action, JSON.stringify(fields.subject), fields.digest, fields.outcome, JSON.stringify(fields.details), opts.idempotencyKey ?? null, prevHash, hash],
        );
        return { entry: { ...fields, prevHash, hash }, duplicate: false };
      }),
    );
    await this.anchor(out.entry);
    return out;
  }

  /**
   * Appends an entry whose act happened anyway (a refusal the caller reports either way): a
   * failure to record it is logged, never put in place of the act.
   */
  async appendBestEffort(event: AuditEvent): Promise<void> {
    try {
      await this.append(event);
    } catch (err) {
      this.warn(`could not record ${event.action} by ${event.by} (${event.outcome}) in the audit log: ${(err as Error).message}`);
    }
  }

  /**
   * Moves the anchor forward to `entry` (never back: an older append finishing last leaves the
   * newer anchor). Best effort: the entry is committed whatever storage says; a failure is
   * logged, and the next append anchors again.
   */
  private async anchor(entry: AuditEntry): Promise<void> {
    if (!this.store) return;
    try {
      const store = this.store();
      const current = await readAnchor(store);
      if (current && current.seq >= entry.seq) return;
      const anchor: AuditAnchor = { seq: entry.seq, hash: entry.hash, at: entry.at };
      await store.put(auditAnchorKey, Buffer.from(JSON.stringify(anchor, null, 2) + '\n'), { contentType: 'application/json' });
    } catch (err) {
      this.warn(`entry ${entry.seq} is recorded, but its anchor could not be written to storage (${auditAnchorKey}): ${(err as Error).message}`);
    }
  }

  /** Entries, newest first. */
  async list(filter: AuditFilter = {}): Promise<AuditEntry[]> {
    return (await this.page({ ...filter, offset: 0, limit: filter.limit ?? 50 }, false)).rows;
  }

  /** One page of entries, newest first, with how many match (the dashboard's pages). */
  async page(filter: AuditFilter & { offset: number; limit: number }, counted = true): Promise<{ total: number; offset: number; limit: number; rows: AuditEntry[] }> {
    const f = checkAuditFilter(filter);
    const where = `($1::text IS NULL OR tenant_id = $1) AND ($2::text IS NULL OR action = $2) AND ($3::timestamptz IS NULL OR at >= $3::timestamptz)`;
    const params = [f.tenantId ?? null, f.action ?? null, f.since ?? null];
    return this.catalog.read(async (c, s) => {
      const r = await c.query(`SELECT ${columns} FROM ${s}.audit_log WHERE ${where} ORDER BY seq DESC LIMIT $4 OFFSET $5`, [...params, filter.limit, filter.offset]);
      const total = counted ? Number((await c.query(`SELECT count(*) AS n FROM ${s}.audit_log WHERE ${where}`, params)).rows[0].n) : r.rows.length;
      return { total, offset: filter.offset, limit: filter.limit, rows: r.rows.map(entryOf) };
    });
  }

  /**
   * Recomputes the chain from the first entry: numbers without a gap, each prev_hash the hash
   * before it, each hash its contents'; then holds the chain against the anchor in storage.
   * Stops at the first entry that does not hold.
   */
  async verify(): Promise<AuditVerification> {
    let anchor: AuditAnchor | null = null;
    let anchorError: string | undefined;
    try {
      anchor = this.store ? await readAnchor(this.store()) : null;
    } catch (err) {
      anchorError = (err as Error).message;
    }
    const chain = await this.catalog.read(async (c, s) => {
      const entries = Number((await c.query(`SELECT count(*) AS n FROM ${s}.audit_log`)).rows[0].n);
      let prev: { seq: number; hash: string } = { seq: 0, hash: genesisHash };
      let broken: AuditVerification['broken'] = null;
      let anchored: string | undefined;
      while (!broken) {
        const r = await c.query(`SELECT ${columns} FROM ${s}.audit_log WHERE seq > $1 ORDER BY seq LIMIT 1000`, [prev.seq]);
        if (r.rows.length === 0) break;
        for (const e of r.rows.map(entryOf)) {
          if (e.seq !== prev.seq + 1) broken = { seq: prev.seq + 1, problem: `entry ${prev.seq + 1} is missing (the entry after ${prev.seq} is ${e.seq}): it was deleted` };
          else if (e.prevHash !== prev.hash) {
            broken = { seq: e.seq, problem: `its prev_hash is not the hash of entry ${prev.seq}: entry ${prev.seq} was altered and its hash recomputed, or this one's prev_hash was changed` };
          } else if (entryHash(e.prevHash, e) !== e.hash) broken = { seq: e.seq, problem: 'its hash does not match its contents: it was altered after it was written' };
          if (broken) break;
          prev = { seq: e.seq, hash: e.hash };
          if (e.seq === anchor?.seq) anchored = e.hash;
        }
      }
      return { entries, broken, head: prev.seq > 0 ? prev : null, anchored };
    });
    let broken = chain.broken;
    let status: AuditVerification['anchor']['status'];
    if (anchorError !== undefined) status = 'unreadable';
    else if (!anchor) status = 'none';
    else if (broken && anchor.seq >= broken.seq) status = 'not-checked';
    else if (chain.anchored !== undefined) status = chain.anchored === anchor.hash ? 'matches' : 'differs';
    else status = 'beyond-end';
    if (!broken && anchor && status === 'differs') {
      broken = { seq: anchor.seq, problem: `its hash is not the one anchored in storage (${auditAnchorKey}, written ${anchor.at}): the chain was recomputed from here or before` };
    } else if (!broken && anchor && status === 'beyond-end') {
      broken = { seq: (chain.head?.seq ?? 0) + 1, problem: `the log ends at entry ${chain.head?.seq ?? 0}, but storage's anchor (${auditAnchorKey}) names entry ${anchor.seq}: entries were removed from its end (or the catalog was recreated)` };
    }
    return { ok: !broken, entries: chain.entries, head: chain.head, broken, anchor: { status, ...(anchor ?? {}), ...(anchorError ? { error: anchorError } : {}) } };
  }
}

async function readAnchor(store: ObjectStore): Promise<AuditAnchor | null> {
  if (!(await store.stat(auditAnchorKey))) return null;
  const a = JSON.parse((await store.getBytes(auditAnchorKey)).toString('utf8')) as Partial<AuditAnchor>;
  if (typeof a.seq !== 'number' || typeof a.hash !== 'string') throw new Error(`${auditAnchorKey} is not an anchor ({seq, hash, at})`);
  return { seq: a.seq, hash: a.hash, at: String(a.at ?? '') };
}
