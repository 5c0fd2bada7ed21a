// The WAL archiver's reports to the catalog, for the health model (lib/monitoring): the newest
// segment in the archive and how much of it, when the archive last grew, when it last held
// everything the server had written (its achieved RPO), that the archiver is alive, and why a
// slice failed. Written at most every `growthEveryMs` (1 s) while the archive grows and every
// `aliveEveryMs` (30 s) while it does not (the archiver passes every walPartialInterval, half a
// second by default: a catalog write per pass would be a load of its own).
//
// Caught up: each report reads the server's WAL position; when the archive's end has reached the
// position read at the previous report, everything written until then is archived. Under a
// steady load that moment trails by about a report interval; while the archive catches up after
// a stop or a burst it stays put, so the RPO grows as it should.
import type { Catalog } from '../catalog';
import type { Engine } from '../engine';
import { withClient } from '../pg';
import type { WalArchiverProgress } from './archiver';
import { parseLsn, segmentStartLsn } from './names';

export const walReportIntervals = { growthEveryMs: 1_000, aliveEveryMs: 30_000 };

export interface ServerWalPosition {
  lsn: bigint;
  segmentSize: number;
}

/** Where the server writes WAL now (where it replays to, on a standby). */
export async function serverWalPosition(engine: Engine): Promise<ServerWalPosition> {
  const r = await withClient(engine.db, engine.config.database.url, (c) =>
    c.query<{ lsn: string; seg: string }>(
      `SELECT (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END)::text AS lsn,
              (SELECT setting FROM pg_settings WHERE name = 'wal_segment_size') AS seg`,
    ),
  );
  return { lsn: parseLsn(r.rows[0].lsn), segmentSize: Number(r.rows[0].seg) };
}

export class WalProgressReporter {
  private lastWrite = 0;
  private lastUploadedAt: string | null = null;
  private writing: Promise<void> | null = null;
  /** the archive's end as of the last report */
  private archived: { segment: string; bytes: number | null } | null = null;
  /** the server's position read at the last report, and when */
  private previous: { lsn: bigint; at: string } | null = null;

  private scope: string | null = null;

  /** `scope` (the archiver's, lib/databaseIdentity.ts) is found on the first report: a database down at the start fails the archiver, not this. */
  constructor(
    private readonly catalog: Catalog,
    private readonly findScope: () => Promise<string>,
    private readonly server: () => Promise<ServerWalPosition>,
    private readonly intervals = walReportIntervals,
  ) {}

  /** The archiver started a slice: it is alive (written in the background: the archiver does not wait for the catalog). */
  started(): void {
    this.lastWrite = Date.now();
    this.writing = this.report(null).finally(() => (this.writing = null));
  }

  /** Called on every pass; writes when due, never two writes at once, never failing the archiver. */
  progress(p: WalArchiverProgress): void {
    const grew = p.uploadedAt !== null && p.uploadedAt !== this.lastUploadedAt;
    if (this.writing || Date.now() - this.lastWrite < (grew ? this.intervals.growthEveryMs : this.intervals.aliveEveryMs)) return;
    this.lastWrite = Date.now();
    this.writing = this.report(p).finally(() => (this.writing = null));
  }

  /** The slice ended: what it archived last is written now, whatever the interval. */
  async finished(p: WalArchiverProgress | null, error?: unknown): Promise<void> {
    await this.writing;
    await this.report(p, error === undefined ? undefined : error instanceof Error ? error.message : String(error));
  }

  private async report(p: WalArchiverProgress | null, error?: string): Promise<void> {
    try {
      const grew = !!p && p.uploadedAt !== null && p.uploadedAt !== this.lastUploadedAt;
      const archived = grew ? archivedOf(p) : undefined;
      if (archived) {
        this.lastUploadedAt = p!.uploadedAt;
        this.archived = { segment: archived.segment, bytes: archived.bytes };
      }
      const server = await this.server().catch(() => null);
      const end = this.archived && server ? segmentStartLsn(this.archived.segment, server.segmentSize) + BigInt(this.archived.bytes ?? server.segmentSize) : null;
      const caughtUpAt = end !== null && this.previous && end >= this.previous.lsn ? this.previous.at : undefined;
      if (server) this.previous = { lsn: server.lsn, at: new Date().toISOString() };
      this.scope ??= await this.findScope();
      await this.catalog.recordWalArchiveProgress(this.scope, { ...(archived ? { archived } : {}), ...(caughtUpAt ? { caughtUpAt } : {}), ...(error ? { error } : {}) });
    } catch {
      // the catalog is down: the next report says it; archiving goes on
    }
  }
}

/** The newest thing in the archive: the segment being written (bytes so far) or the last completed one (whole). */
function archivedOf(p: WalArchiverProgress | null): { segment: string; bytes: number | null; at: string } | undefined {
  if (!p?.uploadedAt) return undefined;
  if (p.partial) return { segment: p.partial.name, bytes: p.partial.bytes, at: p.uploadedAt };
  if (p.lastSegment) return { segment: p.lastSegment, bytes: null, at: p.uploadedAt };
  return undefined;
}
