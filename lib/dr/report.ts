// The drill report (docs/format.md, "DR drill reports"): what a drill restored and from where,
// its timings against the targets, every check with its result, and the sha256 of the evidence.
// Kept in storage beside the backups, as JSON (for tools) and as one self-contained HTML page
// (for an auditor: no script, no outside resource), under dr/drills/<drillId>/.
import { sha256Hex } from '../checksum';
import { html, type Html } from '../html';
import type { ObjectStore } from '../storage/types';

export const drillReportFormatVersion = 1;

export interface DrillCheck {
  /** restore: the scratch cluster recovered and answered; rows: a tenant-owned table's row count; tenant: a sample tenant's checksum; teardown: the scratch cluster removed */
  check: 'restore' | 'rows' | 'tenant' | 'teardown';
  target: string;
  /** not_comparable: the live database or the tenant changed meanwhile, so the numbers cannot prove or disprove anything (lib/dr/drill.ts) */
  result: 'ok' | 'failed' | 'not_comparable';
  detail?: string;
  restored?: number;
  live?: number;
  backup?: number;
}

export interface DrillReport {
  formatVersion: typeof drillReportFormatVersion;
  drillId: string;
  database: string;
  startedAt: string;
  finishedAt: string;
  /** every check passed or was not comparable */
  ok: boolean;
  /** ok, and the achieved RTO and RPO within dr.targets */
  metTargets: boolean;
  source: {
    storageUri: string;
    backupId: string;
    manifestKey: string;
    manifestSha256: string;
    baseObject: { key: string; sha256: string; bytes: number };
    consistentAt: string;
    /** the archived WAL segments replayed, each with the sha256 of its raw bytes (null: a partial segment, still being written) */
    wal: { from: string; to: string; segments: { name: string; sha256: string | null }[] };
  };
  /** the live primary when the drill started */
  live: { lsn: string; xmin: string; lastCommitAt: string | null };
  /** where the restore stopped: its last WAL position and commit (null: it failed) */
  restored: { lsn: string | null; lastCommitAt: string | null } | null;
  /** ms: drill start → restored cluster answering and the checks passed (null: they did not) */
  rto: { ms: number | null; targetMs: number; answeredAfterMs: number | null };
  /** what a recovery at drill time would have lost; method: how it was measured (lib/dr/drill.ts) */
  rpo: { ms: number; bytes: number; targetMs: number; method: 'wal-position' | 'commit-timestamps' | 'upper-bound' } | null;
  timings: { fetchMs: number; restoreMs: number; replayMs: number; checksMs: number; teardownMs: number };
  checks: DrillCheck[];
}

/** What the catalog keeps of a stored report: its keys and their sha256. */
export interface StoredDrillReport {
  reportKey: string;
  htmlKey: string;
  reportSha256: string;
  htmlSha256: string;
}

export const drillPrefix = (drillId: string) => `dr/drills/${drillId}/`;

/** A drill's id: its start time as a label sorts (YYYYMMDD-HHMMSS) and a part of its run. */
export function drillIdOf(startedAt: string, runId: string): string {
  return `${startedAt.replace(/[-:]/g, '').replace('T', '-').slice(0, 15)}-${runId.replace(/-/g, '').slice(0, 8)}`;
}

/** Writes the HTML page, then the JSON (the record of the drill): both immutable once written. */
export async function storeDrillReport(store: ObjectStore, report: DrillReport): Promise<StoredDrillReport> {
  const prefix = drillPrefix(report.drillId);
  const json = Buffer.from(JSON.stringify(report, null, 2) + '\n');
  const page = Buffer.from(renderDrillReport(report).text);
  await store.put(`${prefix}report.html`, page, { contentType: 'text/html; charset=utf-8' });
  await store.put(`${prefix}report.json`, json, { contentType: 'application/json' });
  return { reportKey: `${prefix}report.json`, htmlKey: `${prefix}report.html`, reportSha256: sha256Hex(json), htmlSha256: sha256Hex(page) };
}

const seconds = (ms: number | null | undefined) => (ms === null || ms === undefined ? '—' : `${(ms / 1000).toFixed(1)} s`);

function verdict(achieved: number | null | undefined, target: number): Html {
  if (achieved === null || achieved === undefined) return html`<td class="failed">not reached</td>`;
  return achieved <= target ? html`<td class="ok">within target</td>` : html`<td class="failed">over target</td>`;
}

/** The report as one HTML page: inline style, no script, every value escaped. */
export function renderDrillReport(r: DrillReport): Html {
  const outcome = !r.ok ? 'FAILED' : r.metTargets ? 'PASSED' : 'OVER TARGET';
  const segments = r.source.wal.segments;
  return html`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>DR drill ${r.drillId}: ${outcome}</title>
<style>
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:72em;color:#1d2329;padding:0 1em}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:1.6em}
table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #dde2e6;padding:.3em .6em;text-align:left;vertical-align:top}
.ok{color:#17703a}.failed{color:#b3261e;font-weight:600}.not_comparable{color:#8a6100}
code{font:12px ui-monospace,monospace;word-break:break-all}.badge{padding:.15em .6em;border-radius:.3em;color:#fff;background:${r.ok ? (r.metTargets ? '#17703a' : '#8a6100') : '#b3261e'}}
</style></head><body>
<h1>DR drill <code>${r.drillId}</code> <span class="badge" id="outcome">${outcome}</span></h1>
<p>Database <strong>${r.database}</strong>; started ${r.startedAt}, finished ${r.finishedAt}.</p>
<h2>Targets</h2>
<table><tr><th></th><th>achieved</th><th>target</th><th></th></tr>
<tr id="rto"><th>RTO (drill start → restored cluster answering, checks passed)</th><td>${seconds(r.rto.ms)}</td><td>${seconds(r.rto.targetMs)}</td>${verdict(r.rto.ms, r.rto.targetMs)}</tr>
<tr id="rpo"><th>RPO (restore's end against the live primary at drill start; ${r.rpo?.method ?? 'not measured'}${r.rpo ? `, ${r.rpo.bytes} bytes of WAL` : ''})</th><td>${seconds(r.rpo?.ms)}</td><td>${seconds(r.rpo?.targetMs ?? null)}</td>${verdict(r.rpo?.ms, r.rpo?.targetMs ?? 0)}</tr>
</table>
<h2>Timings</h2>
<table><tr><th>fetch (plan, download, extract)</th><th>restore (start until consistent)</th><th>replay (archived WAL)</th><th>checks</th><th>teardown (after RTO)</th></tr>
<tr><td>${seconds(r.timings.fetchMs)}</td><td>${seconds(r.timings.restoreMs)}</td><td>${seconds(r.timings.replayMs)}</td><td>${seconds(r.timings.checksMs)}</td><td>${seconds(r.timings.teardownMs)}</td></tr></table>
<h2>What was restored, from where</h2>
<table>
<tr><th>storage</th><td><code>${r.source.storageUri}</code></td></tr>
<tr><th>full backup</th><td><code>${r.source.backupId}</code>, consistent at ${r.source.consistentAt}</td></tr>
<tr><th>manifest</th><td><code>${r.source.manifestKey}</code><br>sha256 <code>${r.source.manifestSha256}</code></td></tr>
<tr><th>base backup</th><td><code>${r.source.baseObject.key}</code> (${r.source.baseObject.bytes} bytes)<br>sha256 <code>${r.source.baseObject.sha256}</code></td></tr>
<tr><th>WAL</th><td><code>${r.source.wal.from}</code> … <code>${r.source.wal.to}</code> (${segments.length} segments)</td></tr>
<tr><th>restored to</th><td>${r.restored ? html`LSN <code>${r.restored.lsn}</code>, last commit ${r.restored.lastCommitAt ?? 'none after the base backup'}` : 'nothing: the restore failed'}</td></tr>
<tr><th>live primary at start</th><td>LSN <code>${r.live.lsn}</code>${r.live.lastCommitAt ? `, newest commit ${r.live.lastCommitAt}` : ''}</td></tr>
</table>
<h2>Checks</h2>
<table id="checks"><tr><th>check</th><th>target</th><th>result</th><th>restored</th><th>live / backup</th><th>detail</th></tr>
${r.checks.map((c) => html`<tr><td>${c.check}</td><td><code>${c.target}</code></td><td class="${c.result}">${c.result}</td><td>${c.restored ?? ''}</td><td>${c.live ?? c.backup ?? ''}</td><td>${c.detail ?? ''}</td></tr>`)}
</table>
<h2>WAL segments replayed</h2>
<table>${segments.map((s) => html`<tr><td><code>${s.name}</code></td><td><code>${s.sha256 ?? 'partial segment (no sha256 yet)'}</code></td></tr>`)}</table>
<p>This page and <code>report.json</code> beside it are kept in storage under <code>${drillPrefix(r.drillId)}</code>; the catalog (dr_events) holds the sha256 of both.</p>
</body></html>
`;
}
