// The WAL archiver's reports to the catalog, for the health model (lib/monitoring): the newest
// segment in the archive and how much of it, when the archive last grew, that the archiver is
// alive, and why a slice failed. Written at most every `growthEveryMs` while the archive grows
// and every `aliveEveryMs` while it does not (the archiver passes every walPartialInterval,
// half a second by default: a catalog row per pass would be a write load of its own).
import type { Catalog } from '../catalog';
import type { WalArchiverProgress } from './archiver';

export const walReportIntervals = { growthEveryMs: 5_000, aliveEveryMs: 30_000 };

export class WalProgressReporter {
  private lastWrite = 0;
  private lastUploadedAt: string | null = null;
  private writing: Promise<void> | null = null;

  constructor(
    private readonly catalog: Catalog,
    private readonly scope: string,
    private readonly intervals = walReportIntervals,
  ) {}

  /** The archiver started a slice: it is alive. */
  async started(): Promise<void> {
    await this.catalog.recordWalArchiveProgress(this.scope, {});
    this.lastWrite = Date.now();
  }

  /** Called on every pass; writes when due, never two writes at once, never failing the archiver. */
  progress(p: WalArchiverProgress): void {
    const grew = p.uploadedAt !== null && p.uploadedAt !== this.lastUploadedAt;
    const since = Date.now() - this.lastWrite;
    if (this.writing || since < (grew ? this.intervals.growthEveryMs : this.intervals.aliveEveryMs)) return;
    this.lastWrite = Date.now();
    const archived = grew ? archivedOf(p) : undefined;
    if (grew) this.lastUploadedAt = p.uploadedAt;
    this.writing = this.catalog
      .recordWalArchiveProgress(this.scope, archived ? { archived } : {})
      .catch(() => undefined) // the catalog is down: the next report says it; archiving goes on
      .finally(() => (this.writing = null));
  }

  /** The slice ended: what it archived last is written now, whatever the interval. */
  async finished(p: WalArchiverProgress | null, error?: unknown): Promise<void> {
    await this.writing;
    const archived = p && p.uploadedAt !== null && p.uploadedAt !== this.lastUploadedAt ? archivedOf(p) : undefined;
    const message = error === undefined ? undefined : error instanceof Error ? error.message : String(error);
    await this.catalog.recordWalArchiveProgress(this.scope, { ...(archived ? { archived } : {}), ...(message ? { error: message } : {}) }).catch(() => undefined);
  }
}

/** The newest thing in the archive: the segment being written (bytes so far) or the last completed one (whole). */
function archivedOf(p: WalArchiverProgress): { segment: string; bytes: number | null; at: string } | undefined {
  if (!p.uploadedAt) return undefined;
  if (p.partial) return { segment: p.partial.name, bytes: p.partial.bytes, at: p.uploadedAt };
  if (p.lastSegment) return { segment: p.lastSegment, bytes: null, at: p.uploadedAt };
  return undefined;
}
