// The rules of a tenant restore that need no database, each in one place: what a request may ask
// (checked by the activity that starts a restore, before anything is staged), what a selection
// means, and whose approval counts (checked by the workflow on every approve signal, and by the
// client before it sends one). Pure: no I/O, no Node builtins, no pg, no Temporal; workflows
// import it. What needs the database (the backup exists and is the tenant's, the tables asked
// for are in it) the engine checks, in lib/restore/index.ts.
import { ErrorType, TenantsafeError } from '../errors';
import { requiredId, timeWithZone } from '../inputs';
import { formatMicros, parseMicros } from '../time';
import { changeKinds, type ChangeKind, type RestoreSelection } from './types';

/** A restore as asked for: the workflow input (perhaps typed in the Temporal UI) or the CLI's options. */
export interface RestoreRequest {
  tenantId: string;
  /** who asks: they cannot approve it themselves */
  requestedBy?: string;
  backupId?: string;
  /** ISO-8601 with a zone: the tenant exactly as committed then (a commit at that very time is in) */
  at?: string;
  /** the tenant exactly as committed up to this WAL position */
  lsn?: string;
  /** ISO-8601: the newest backup taken at or before it */
  backupBefore?: string;
  mode?: string;
  tables?: string[];
  changes?: string[];
  missingRefs?: string;
}

/** What to restore: a backup named, the newest backup at or before a time, or the tenant as of a point in time. */
export type RestoreSource = { backupId: string } | { backupBefore: string; time: Date } | { pointInTime: { at: string } | { lsn: string } };

/** A request that keeps every rule that needs no database. */
export interface CheckedRestoreRequest {
  tenantId: string;
  requestedBy: string;
  source: RestoreSource;
  selection: RestoreSelection;
}

const bad = (problem: string, hint: string) => new TenantsafeError(ErrorType.BadInput, problem, hint);

/** Checks a request, in the order a person fixes it: who, then what, then from which backup. */
export function checkRestoreRequest(req: RestoreRequest, now = new Date()): CheckedRestoreRequest {
  const tenantId = requiredId(req, 'tenantId', 'tenant');
  if (typeof req.requestedBy !== 'string' || req.requestedBy.trim() === '') {
    throw bad('requestedBy is required: who asks for this restore.', 'Pass --by <name> (CLI) or "requestedBy" in the workflow input.');
  }
  const selection = parseSelection(req);
  return { tenantId, requestedBy: req.requestedBy, selection, source: restoreSource(req, now) };
}

/** Checks the request's options (everything but who asks and the backup) and fills in defaults. */
export function parseSelection(req: RestoreRequest): RestoreSelection {
  const mode = req.mode ?? 'replace';
  if (mode !== 'replace' && mode !== 'missing-only') throw bad(`Unknown mode "${mode}".`, 'Use --mode replace or --mode missing-only.');
  const changes = req.changes?.map((c) => c.trim());
  const unknown = changes?.filter((c) => !(changeKinds as readonly string[]).includes(c));
  if (unknown?.length) throw bad(`Unknown change kind(s) ${unknown.join(', ')}.`, 'Use --changes with insert, update and/or delete.');
  if (changes && changes.length === 0) throw bad('--changes is empty.', 'Name at least one of insert, update, delete.');
  const missingRefs = req.missingRefs ?? 'refuse';
  if (missingRefs !== 'refuse' && missingRefs !== 'skip') throw bad(`Unknown --missing-refs "${missingRefs}".`, 'Use refuse (default) or skip.');
  if (req.tables && req.tables.length === 0) throw bad('--tables is empty.', 'Name at least one table, e.g. --tables app.users,app.projects.');
  return { mode, ...(req.tables ? { tables: req.tables } : {}), ...(changes ? { changes: changes as ChangeKind[] } : {}), missingRefs };
}

function restoreSource(req: RestoreRequest, now: Date): RestoreSource {
  const given = (['backupId', 'at', 'lsn', 'backupBefore'] as const).filter((k) => req[k] !== undefined && req[k] !== '');
  if (given.length !== 1) {
    throw bad(
      given.length ? `Give one source, not ${given.join(' and ')}.` : 'Give what to restore.',
      'Use --backup <backupId>, --at <ISO-8601 time with zone>, --lsn <lsn> or --backup-before <ISO-8601 time>.',
    );
  }
  if (req.backupId) return { backupId: req.backupId };
  if (req.lsn !== undefined) {
    if (!/^[0-9A-Fa-f]{1,8}\/[0-9A-Fa-f]{1,8}$/.test(req.lsn)) throw bad(`"${req.lsn}" is not an LSN.`, 'Write it the way PostgreSQL prints one, e.g. 0/3000148.');
    return { pointInTime: { lsn: req.lsn.toUpperCase() } };
  }
  if (req.at !== undefined) {
    const us = parseMicros(req.at);
    if (us > BigInt(now.getTime()) * 1000n) throw bad(`${req.at} is in the future.`, 'Pick a time in the past.');
    return { pointInTime: { at: formatMicros(us) } };
  }
  const time = timeWithZone(req.backupBefore!);
  if (time.getTime() > now.getTime()) throw bad(`${req.backupBefore} is in the future.`, 'Pick a time in the past.');
  return { backupBefore: req.backupBefore!, time };
}

/** The selection restores this table (without --tables, every one). */
export function isSelected(sel: RestoreSelection, table: string): boolean {
  return !sel.tables || sel.tables.includes(table);
}

/** The tenant is to become exactly the backup: replace, every kind of change, no row skipped. */
export function isExactReplace(sel: RestoreSelection): boolean {
  return sel.mode === 'replace' && appliedKinds(sel).size === 3 && sel.missingRefs === 'refuse';
}

/** The kinds of change the mode and selection allow. */
export function appliedKinds(sel: RestoreSelection): Set<ChangeKind> {
  const allowed: ChangeKind[] = sel.mode === 'missing-only' ? ['insert'] : [...changeKinds];
  return new Set(allowed.filter((k) => !sel.changes || sel.changes.includes(k)));
}

/** What the approval rules look at in a restore (its workflow's status), or in another approved workflow (a failover). */
export interface ApprovalTarget {
  restoreId: string;
  state: string;
  requestedBy: string;
  preview?: { digest: string };
  approvals: readonly { by: string }[];
  /** what is approved, in messages and commands (default `restore`) */
  what?: 'restore' | 'failover';
}

/** Why an approval does not count (the workflow records it), and what to do instead. */
export interface ApprovalRefusal {
  reason: string;
  hint: string;
}

/**
 * Why an approval does not count, or undefined when it does: it must name who approves, come
 * while the restore awaits approval, from someone other than the requester (four-eyes), for the
 * digest of the preview on screen, and once per person. Any signal may arrive, so nothing is
 * taken for granted about its shape.
 */
export function approvalRefusal(restore: ApprovalTarget, approval: { by?: unknown; digest?: unknown } | null | undefined): ApprovalRefusal | undefined {
  const { by, digest } = approval ?? {};
  const id = restore.restoreId;
  const what = restore.what ?? 'restore';
  const What = what === 'restore' ? 'Restore' : 'Failover';
  if (typeof by !== 'string' || by.trim() === '') return { reason: 'The approval names no one (by)', hint: 'Say who approves: --by <name>, or "by" in the signal.' };
  if (restore.state !== 'awaiting-approval' || !restore.preview) return { reason: `${What} ${id} is ${restore.state}, not awaiting approval`, hint: `See \`tenantsafe ${what} status\`.` };
  if (by === restore.requestedBy) return { reason: `${by} requested ${what} ${id} and cannot approve it (four-eyes)`, hint: 'Ask someone else to approve it.' };
  if (digest !== restore.preview.digest) {
    return what === 'restore'
      ? { reason: `Digest ${String(digest)} is not the current preview's of restore ${id}`, hint: `Review the current preview (\`tenantsafe restore status ${id}\`) and approve its digest ${restore.preview.digest}.` }
      : { reason: `The approval names ${String(digest)}, not failover ${id}`, hint: `Review failover ${id} (\`tenantsafe failover status ${id}\`) and approve that one.` };
  }
  if (restore.approvals.some((a) => a.by === by)) return { reason: `${by} already approved ${what} ${id}`, hint: 'Another person has to approve it too.' };
  return undefined;
}

/**
 * Why a rejection does not count, or undefined when it does: it must name who rejects. Any signal
 * may arrive (another service, `temporal workflow signal`), so its shape is not taken for granted:
 * a rejection naming no one would stop a restore or a failover without anyone answerable for it.
 */
export function rejectionRefusal(rejection: { by?: unknown } | null | undefined): ApprovalRefusal | undefined {
  const by = rejection?.by;
  if (typeof by !== 'string' || by.trim() === '') return { reason: 'The rejection names no one (by)', hint: 'Say who rejects: --by <name>, or "by" in the signal.' };
  return undefined;
}

/** A rejection that counts, as kept: who, and why when a text was given. */
export function rejectionOf(rejection: { by: string; reason?: unknown }): { by: string; reason?: string } {
  return { by: rejection.by, ...(typeof rejection.reason === 'string' ? { reason: rejection.reason } : {}) };
}

/** A refused approval as the error the client reports. */
export function approvalInvalid(refusal: ApprovalRefusal): TenantsafeError {
  return new TenantsafeError(ErrorType.ApprovalInvalid, `${refusal.reason}.`, refusal.hint);
}
