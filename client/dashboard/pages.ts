// The dashboard's pages, rendered on the server from the health model's report
// (lib/monitoring/health.ts), the catalog's pages (lib/dashboard/reads.ts) and, for a restore, its
// workflow's status query. Each function returns the page's body; client/server.ts wraps it in the
// layout. Every value goes through the `html` tag, which escapes it.
import { auditActions, subjectText, type AuditEntry, type AuditVerification } from '../../lib/audit';
import type { DatabaseHealth, HealthItem, HealthReport, Level, PendingApproval, RunLink, TenantHealth, tenantHealth } from '../../lib/monitoring/health';
import { durationText, healthKindNames } from '../../lib/monitoring/health';
import type { BackupRow, Page, RestoreRow, TrendPoint, VerificationRecordFull, VerificationRow } from '../../lib/dashboard/reads';
import type { RetainedPoint, RetentionView } from '../../lib/dashboard/retention';
import type { Pin } from '../../lib/retention/pins';
import type { TenantRestoreStatus } from '../../workflows/messages';
import { bytesText, externalLink, html, Html, levelBadge, path, when, withQuery } from './html';

export type TenantDetail = Awaited<ReturnType<typeof tenantHealth>>;

/** An error's first sentence, without its HINT: a page shows the reason, the run has the rest. */
export function reasonText(error: string | null | undefined): string {
  const t = (error ?? '').split(' HINT:')[0].trim();
  return t.length > 300 ? `${t.slice(0, 297)}…` : t;
}

/** The run: a link into the Temporal Web UI when temporal.uiUrl is set, else its workflow id. */
export function runRef(run: RunLink | null | undefined, label = 'run in Temporal'): Html {
  if (!run) return html``;
  return run.url ? externalLink(run.url, label) : html`<code class="workflow-id" title="run ${run.runId}">${run.workflowId}</code>`;
}

function tenantLink(tenantId: string): Html {
  return html`<a class="tenant" href="${path('tenants', tenantId)}">${tenantId}</a>`;
}

function restoreLink(restoreId: string): Html {
  return html`<a class="restore" href="${path('restores', restoreId)}">${restoreId}</a>`;
}

function pager(p: { total: number; offset: number; limit: number }, link: (page: number) => string): Html {
  const page = Math.floor(p.offset / p.limit) + 1;
  const pages = Math.max(1, Math.ceil(p.total / p.limit));
  return html`<nav class="pager" aria-label="pages">
    ${page > 1 ? html`<a rel="prev" href="${link(page - 1)}">← newer</a>` : html`<span class="muted">← newer</span>`}
    <span>page ${page} of ${pages} (${p.total} in all)</span>
    ${page < pages ? html`<a rel="next" href="${link(page + 1)}">older →</a>` : html`<span class="muted">older →</span>`}
  </nav>`;
}

function itemView(i: HealthItem): Html {
  return html`<li class="item ${i.level}" data-id="${i.id}">
    ${levelBadge(i.level)} <span class="kind">${healthKindNames[i.kind]}</span>
    <span class="message">${i.message}</span>
    <span class="links">
      ${i.tenantId ? tenantLink(i.tenantId) : ''}
      ${i.restoreId ? restoreLink(i.restoreId) : ''}
      ${runRef(i.run)}
      <span class="runbook" title="what to do">${i.runbook}</span>
    </span>
  </li>`;
}

function ageText(seconds: number | null, everyMs: number | null): string {
  if (seconds === null) return 'no backup';
  return `${durationText(seconds)} old${everyMs ? ` (every ${durationText(everyMs / 1000)})` : ''}`;
}

function tenantRows(tenants: TenantHealth[]): Html {
  return html`<table class="tenants">
    <thead><tr><th>tenant</th><th>health</th><th>last success</th><th>age against schedule</th><th>restore points</th><th>last failure</th></tr></thead>
    <tbody>${tenants.map(
      (t) => html`<tr class="${t.level}" data-tenant="${t.tenantId}">
        <td>${tenantLink(t.tenantId)}</td>
        <td>${levelBadge(t.level)}${t.failing ? html` <span class="tag failing">failing</span>` : ''}${t.belowRetention ? html` <span class="tag">below retention</span>` : ''}</td>
        <td>${when(t.lastSuccessAt)}</td>
        <td>${levelBadge(t.age)} ${ageText(t.ageSeconds, t.everyMs)}</td>
        <td>${t.restorePoints}${t.promisedRestorePoints > t.restorePoints ? html` <span class="muted">of ${t.promisedRestorePoints} promised</span>` : ''}</td>
        <td>${t.lastFailure
          ? html`<span class="failure">${when(t.lastFailure.at)}: <strong class="error-type">${t.lastFailure.errorType ?? 'error'}</strong> <span class="reason">${reasonText(t.lastFailure.error)}</span> ${runRef(t.lastFailure.run)}</span>`
          : html`<span class="muted">none</span>`}</td>
      </tr>`,
    )}</tbody>
  </table>`;
}

function approvalRows(approvals: PendingApproval[]): Html {
  return html`<table class="approvals">
    <thead><tr><th>restore</th><th>tenant</th><th>backup</th><th>requested by</th><th>waiting</th><th></th></tr></thead>
    <tbody>${approvals.map(
      (a) => html`<tr class="${a.level}"><td>${restoreLink(a.restoreId)}</td><td>${tenantLink(a.tenantId)}</td><td><code>${a.backupId ?? '-'}</code></td>
        <td>${a.requestedBy}</td><td>${levelBadge(a.level)} ${durationText(a.waitSeconds)}</td><td>${runRef(a.run)}</td></tr>`,
    )}</tbody>
  </table>`;
}

function searchForm(q = '', order = 'worst'): Html {
  return html`<form class="search" method="get" action="/tenants" role="search">
    <label for="q">Tenant</label> <input id="q" name="q" value="${q}" maxlength="128" placeholder="id or its beginning" autocomplete="off">
    <select name="order" aria-label="order"><option value="worst"${order === 'worst' ? html` selected` : ''}>worst first</option><option value="tenant"${order === 'tenant' ? html` selected` : ''}>by id</option></select>
    <button type="submit">Search</button>
  </form>`;
}

function databaseCard(d: DatabaseHealth): Html {
  const t = d.tenant;
  return html`<article class="card ${d.level}" data-database="${d.database}">
    <h3><a href="${path('databases', d.database)}">${d.database}</a> ${levelBadge(d.level)}</h3>
    <dl>
      <dt>tenant backups</dt><dd>${levelBadge(t.level)} ${t.tenants} tenants, ${t.failing} failing, ${t.stale.warning + t.stale.critical} stale; last ${when(t.lastSuccess?.at)}</dd>
      <dt>full backups</dt><dd>${levelBadge(d.full.level)} ${d.full.restorePoints} kept; last ${when(d.full.lastSuccess?.at)}</dd>
      <dt>verification</dt><dd>${levelBadge(d.verification.level)} ${d.verification.ok} ok, ${d.verification.failing} failing, ${d.verification.unverified} not verified</dd>
      ${d.wal ? html`<dt>WAL archive</dt><dd>${levelBadge(d.wal.level)} RPO ${d.wal.rpoSeconds === null ? '-' : durationText(d.wal.rpoSeconds)} (target ${durationText(d.wal.targetSeconds)})</dd>` : ''}
      ${d.changeLog ? html`<dt>change log</dt><dd>${levelBadge(d.changeLog.level)} lag ${d.changeLog.rpoSeconds === null ? '-' : durationText(d.changeLog.rpoSeconds)}, ${d.changeLog.recentGaps} gaps today</dd>` : ''}
      <dt>retention</dt><dd>${levelBadge(d.retention.level)} ${d.retention.tenantsBelow} tenants below the policy</dd>
      <dt>approvals</dt><dd>${levelBadge(d.approvals.level)} ${d.approvals.count} waiting</dd>
    </dl>
  </article>`;
}

/** Health at a glance: what fails first, with the reason and the run; then each database, the tenants needing attention, the approvals waiting. */
export function overviewPage(r: HealthReport): Html {
  const bad = r.items.filter((i) => i.level !== 'ok');
  const good = r.items.filter((i) => i.level === 'ok');
  const flagged = r.databases.flatMap((d) => d.tenant.worst);
  const approvals = r.databases.flatMap((d) => d.approvals.oldest);
  return html`<section class="banner ${r.level}" aria-label="health">
      <h1>${levelBadge(r.level)} ${r.summary}</h1>
      <p class="muted">judged at ${when(r.generatedAt)}${r.temporal ? html`; Temporal ${r.temporal.reachable ? `${r.temporal.address}, ${r.temporal.pollers ?? '?'} worker(s) polling ${r.temporal.taskQueue}` : `unreachable at ${r.temporal.address}`}` : ''}</p>
    </section>
    ${searchForm()}
    <section aria-labelledby="attention">
      <h2 id="attention">Needs attention</h2>
      ${bad.length ? html`<ul class="items">${bad.map(itemView)}</ul>` : html`<p class="ok-note">Nothing: every check is OK.</p>`}
    </section>
    ${flagged.length
      ? html`<section aria-labelledby="flagged"><h2 id="flagged">Tenants needing attention</h2>${tenantRows(flagged)}
          <p><a href="${withQuery('/tenants', { order: 'worst' })}">every tenant, worst first →</a></p></section>`
      : ''}
    ${approvals.length ? html`<section aria-labelledby="pending"><h2 id="pending">Restores awaiting approval</h2>${approvalRows(approvals)}</section>` : ''}
    <section aria-labelledby="databases"><h2 id="databases">Databases</h2><div class="cards">${r.databases.map(databaseCard)}</div></section>
    <section aria-labelledby="dr" class="dr-slot" data-slot="dr-status">
      <h2 id="dr">Disaster recovery</h2>
      ${r.databases.map(drEvents)}
    </section>
    <details class="ok-items"><summary>${good.length} checks OK</summary><ul class="items">${good.map(itemView)}</ul></details>`;
}

/** The newest drills and failovers of a database: achieved RTO and RPO against the targets, each drill's report. */
function drEvents(d: DatabaseHealth): Html {
  const seconds = (ms: number | null) => (ms === null ? '-' : `${(ms / 1000).toFixed(1)}s`);
  const achieved = (ms: number | null, target: number) => html`<span class="${ms !== null && ms <= target ? 'ok' : 'failed'}">${seconds(ms)}</span> <span class="muted">of ${seconds(target)}</span>`;
  if (d.dr.recent.length === 0) return html`<p class="muted">${d.database}: no drill or failover yet (\`tenantsafe drill run\`; ${d.dr.expected.everyMs === null ? 'no drill schedule' : `a drill ${durationText(d.dr.expected.everyMs / 1000)}`}).</p>`;
  return html`<table class="dr-events" data-database="${d.database}"><thead><tr><th>${d.database}</th><th>status</th><th>started</th><th>RTO</th><th>RPO</th><th>targets</th><th>report</th></tr></thead><tbody>
    ${d.dr.recent.map((e) => html`<tr class="dr-${e.kind}"><td>${e.kind}${e.drillId ? html` <code>${e.drillId}</code>` : ''}</td><td>${e.status}</td><td>${when(e.startedAt)}</td>
      <td>${achieved(e.rtoMs, e.rtoTargetMs)}</td><td>${achieved(e.rpoMs, e.rpoTargetMs)}</td>
      <td>${e.metTargets === null ? '-' : levelBadge(e.metTargets ? 'ok' : e.status === 'failed' ? 'critical' : 'warning')}</td>
      <td>${e.htmlKey && e.drillId ? html`<a href="${path('drills', e.drillId, 'report.html')}">report</a>` : ''} ${runRef(e.run)}</td></tr>`)}
  </tbody></table>`;
}

function eventLine(e: { at: string; error?: string; errorType?: string | null; run?: RunLink | null; backupId?: string | null; tenantId?: string | null } | null | undefined): Html {
  if (!e) return html`<span class="muted">none</span>`;
  return html`${when(e.at)}${e.tenantId ? html` · ${tenantLink(e.tenantId)}` : ''}${e.backupId ? html` · <code>${e.backupId}</code>` : ''}${e.error !== undefined ? html` · <strong class="error-type">${e.errorType ?? 'error'}</strong> <span class="reason">${reasonText(e.error)}</span>` : ''} ${runRef(e.run)}`;
}

function expectationText(e: { everyMs: number | null; source: string }): string {
  return e.everyMs === null ? `not judged (${e.source})` : `every ${durationText(e.everyMs / 1000)} (${e.source})`;
}

/** One database: every kind the health model judges, with last success and failure. */
export function databasePage(r: HealthReport, d: DatabaseHealth, fullTrend: TrendPoint[]): Html {
  const t = d.tenant;
  return html`<h1>${d.database} ${levelBadge(d.level)}</h1>
    ${d.reachable ? '' : html`<p class="flash critical">The database does not answer: ${reasonText(d.error)}</p>`}
    <ul class="items">${r.items.filter((i) => i.database === d.database && i.level !== 'ok').map(itemView)}</ul>
    <section><h2>Tenant backups ${levelBadge(t.level)}</h2>
      <dl class="facts">
        <dt>schedule</dt><dd>${expectationText(t.expected)}</dd>
        <dt>tenants</dt><dd>${t.tenants} (${t.withBackup} with a backup): ${t.byLevel.ok} ok, ${t.byLevel.warning} warning, ${t.byLevel.critical} critical</dd>
        <dt>last success</dt><dd>${eventLine(t.lastSuccess)}</dd>
        <dt>last failure</dt><dd>${eventLine(t.lastFailure)}</dd>
        <dt>stalest</dt><dd>${t.stalest ? html`${tenantLink(t.stalest.tenantId)} ${when(t.stalest.at)}` : '-'}</dd>
        <dt>restore points</dt><dd>${t.restorePoints}; every tenant restorable back to ${when(t.oldestRestorableAt)}</dd>
      </dl>
      ${t.worst.length ? tenantRows(t.worst) : ''}
      <p><a href="/tenants">every tenant →</a></p>
    </section>
    <section><h2>Full backups ${levelBadge(d.full.level)}</h2>
      <dl class="facts"><dt>schedule</dt><dd>${expectationText(d.full.expected)}</dd>
        <dt>last success</dt><dd>${eventLine(d.full.lastSuccess)}</dd><dt>last failure</dt><dd>${eventLine(d.full.lastFailure)}</dd>
        <dt>kept</dt><dd>${d.full.restorePoints} (the policy promises ${d.full.promisedRestorePoints} by now), oldest ${when(d.full.oldestRestorableAt)}</dd></dl>
    </section>
    ${fullTrend.length ? trendCharts('full-trend', 'Full backups: size and duration', fullTrend) : ''}
    <section><h2>Verification ${levelBadge(d.verification.level)}</h2>
      <dl class="facts"><dt>schedule</dt><dd>${expectationText(d.verification.expected)}</dd>
        <dt>results</dt><dd>${d.verification.ok} ok, ${d.verification.failing} failing, ${d.verification.unverified} not verified</dd>
        <dt>last success</dt><dd>${eventLine(d.verification.lastSuccess)}</dd><dt>last failure</dt><dd>${eventLine(d.verification.lastFailure)}</dd></dl>
      <p><a href="/verifications">verification reports →</a></p>
    </section>
    ${d.wal
      ? html`<section><h2>WAL archive ${levelBadge(d.wal.level)}</h2><dl class="facts">
          <dt>achieved RPO</dt><dd>${d.wal.rpoSeconds === null ? '-' : durationText(d.wal.rpoSeconds)} (target ${durationText(d.wal.targetSeconds)}), ${d.wal.lagBytes ?? '-'} bytes behind</dd>
          <dt>archived up to</dt><dd><code>${d.wal.archivedLsn ?? '-'}</code> of <code>${d.wal.serverLsn ?? '-'}</code></dd>
          <dt>last grew</dt><dd>${eventLine(d.wal.lastSuccess)}</dd><dt>last failure</dt><dd>${eventLine(d.wal.lastFailure)}</dd>
          <dt>archiver last heard</dt><dd>${when(d.wal.seenAt)}</dd></dl></section>`
      : ''}
    ${d.changeLog
      ? html`<section><h2>Change log ${levelBadge(d.changeLog.level)}</h2><dl class="facts">
          <dt>lag</dt><dd>${d.changeLog.rpoSeconds === null ? '-' : durationText(d.changeLog.rpoSeconds)} (target ${durationText(d.changeLog.targetSeconds)})</dd>
          <dt>slot</dt><dd><code>${d.changeLog.slot.name}</code> ${d.changeLog.slot.exists ? (d.changeLog.slot.walStatus ?? '') : 'missing'}</dd>
          <dt>gaps</dt><dd>${d.changeLog.gaps} (${d.changeLog.recentGaps} in the last day); newest ${eventLine(d.changeLog.lastFailure)}</dd></dl></section>`
      : ''}
    <section><h2>Retention ${levelBadge(d.retention.level)}</h2><p>${d.retention.tenantsBelow} tenants with fewer restore points than the policy promises${d.retention.fullBelow ? '; full backups below the policy too' : ''}.</p></section>
    <section><h2>Approvals ${levelBadge(d.approvals.level)}</h2>
      ${d.approvals.oldest.length ? approvalRows(d.approvals.oldest) : html`<p class="muted">No restore is waiting for approval.</p>`}
    </section>`;
}

export function tenantsPage(p: { total: number; offset: number; tenants: TenantHealth[] }, q: string, order: string, limit: number): Html {
  return html`<h1>Tenants</h1>
    ${searchForm(q, order)}
    ${p.tenants.length ? tenantRows(p.tenants) : html`<p class="muted">No tenant ${q ? html`starting with <code>${q}</code> ` : ''}has a backup or a failed one.</p>`}
    ${pager({ total: p.total, offset: p.offset, limit }, (page) => withQuery('/tenants', { q, order, page }))}
    <p class="muted">Listed: tenants the catalog has backups or recent failed attempts of. Open a tenant by its id for everything else.</p>`;
}

/** How long a backup took: tenths of a second below a minute. */
function tookText(seconds: number): string {
  return seconds < 60 ? `${seconds.toFixed(1)}s` : durationText(seconds);
}

function keptText(p: RetainedPoint | undefined, kind: string): Html {
  if (kind !== 'tenant') return html`<span class="muted">${kind === 'safety' ? 'safety backup' : 'point in time'}</span>`;
  if (!p) return html`<span class="muted">-</span>`;
  if (p.reasons.length === 0) return html`<span class="tag goes">goes at the next run</span>`;
  return html`${p.pinned ? html`<span class="tag pinned">pinned</span> ` : ''}${p.reasons.filter((r) => r !== 'pinned').join(', ')}`;
}

function backupRows(rows: BackupRow[], retained: Map<string, RetainedPoint> = new Map()): Html {
  return html`<table class="backups">
    <thead><tr><th>backup</th><th>kind</th><th>snapshot</th><th>rows</th><th>size</th><th>took</th><th>verified</th><th>kept because</th></tr></thead>
    <tbody>${rows.map(
      (b) => html`<tr data-backup="${b.backupId}"><td><code>${b.backupId}</code></td><td>${b.kind}</td><td>${when(b.snapshotAt)}</td><td>${b.rows}</td><td>${bytesText(b.bytes)}</td><td>${tookText(b.seconds)}</td>
        <td>${b.verification ? html`<a href="${path('verifications', b.verification.id)}">${b.verification.ok ? 'ok' : 'FAILED'}</a>` : html`<span class="muted">no</span>`}</td>
        <td>${keptText(retained.get(b.backupId), b.kind)}</td></tr>`,
    )}</tbody>
  </table>`;
}

/**
 * Size and duration of the newest backups as charts (uPlot, served from the package by
 * /static/vendor/uplot.js and drawn by /static/charts.js); the numbers ride in a JSON data block,
 * which no browser executes.
 */
export function trendCharts(id: string, title: string, points: TrendPoint[]): Html {
  if (points.length < 2) return html`<section class="trends"><h2>${title}</h2><p class="muted">Charts need two backups or more (${points.length} so far).</p></section>`;
  const x = points.map((p) => Date.parse(p.at) / 1000);
  const data = { size: { label: 'size', unit: 'bytes', x, y: points.map((p) => p.bytes) }, duration: { label: 'duration', unit: 's', x, y: points.map((p) => Math.round(p.seconds * 1000) / 1000) } };
  const json = new Html(JSON.stringify(data).replace(/</g, '\\u003c'));
  const last = points[points.length - 1];
  return html`<section class="trends" aria-labelledby="${id}-title"><h2 id="${id}-title">${title}</h2>
    <script type="application/json" id="${id}">${json}</script>
    <div class="charts">
      <figure><figcaption>Size</figcaption><div class="chart" data-source="${id}" data-series="size" role="img" aria-label="backup size over time"></div></figure>
      <figure><figcaption>Duration</figcaption><div class="chart" data-source="${id}" data-series="duration" role="img" aria-label="backup duration over time"></div></figure>
    </div>
    <p class="muted">The newest ${points.length} backups; the last ${bytesText(last.bytes)} in ${tookText(last.seconds)}.</p>
  </section>`;
}

const pointColors = { pinned: '#7c3aed', goes: '#b42318', tier: '#0b5cad', kept: '#1a7f37' };

function pointClass(p: RetainedPoint): keyof typeof pointColors {
  if (p.pinned) return 'pinned';
  if (p.reasons.length === 0) return 'goes';
  if (p.reasons.every((r) => r === 'daily' || r === 'weekly' || r === 'monthly' || r === 'yearly')) return 'tier';
  return 'kept';
}

/** A tenant's restore points on a timeline (an SVG drawn here: no script), why each is kept, what goes next, its pins. */
export function retentionSection(v: RetentionView, pins: Pin[], now: number, override: boolean): Html {
  const width = 960;
  const pad = 12;
  const times = v.points.map((p) => Date.parse(p.at));
  const from = Math.min(now - 86_400_000, ...times);
  const xOf = (t: number) => pad + ((t - from) / Math.max(1, now - from)) * (width - 2 * pad);
  const p = v.policy;
  return html`<section class="retention" aria-labelledby="retention-title"><h2 id="retention-title">Retention</h2>
    <p>Policy${override ? ' (this tenant\'s own)' : ''}: every backup of the last ${p.days} days, the newest ${p.minCount} always${p.daily + p.weekly + p.monthly + p.yearly > 0 ? `, and the newest of ${[p.daily && `${p.daily} days`, p.weekly && `${p.weekly} weeks`, p.monthly && `${p.monthly} months`, p.yearly && `${p.yearly} years`].filter(Boolean).join(', ')}` : ''}; pinned ones for good.</p>
    ${v.points.length
      ? html`<svg class="timeline" viewBox="0 0 ${width} 56" width="100%" height="56" role="img" aria-label="restore points from ${new Date(from).toISOString()} to now">
          <line x1="${pad}" y1="28" x2="${width - pad}" y2="28" stroke="#c7ccd5" stroke-width="2"/>
          ${v.nextToGo ? html`<line x1="${xOf(Date.parse(v.nextToGo.at))}" y1="8" x2="${xOf(Date.parse(v.nextToGo.at))}" y2="48" stroke="#9a6700" stroke-dasharray="3 2"/>` : ''}
          ${v.points.map((pt) => {
            const c = pointClass(pt);
            return html`<circle class="point ${c}" data-backup="${pt.backupId}" cx="${xOf(Date.parse(pt.at)).toFixed(1)}" cy="28" r="6" fill="${c === 'goes' ? '#fff' : pointColors[c]}" stroke="${pointColors[c]}" stroke-width="2"><title>${pt.backupId} ${pt.at}: ${pt.reasons.length ? pt.reasons.join(', ') : 'goes at the next retention run'}</title></circle>`;
          })}
          <text x="${pad}" y="54" font-size="10" fill="#6b7280">${new Date(from).toISOString().slice(0, 10)}</text>
          <text x="${width - pad}" y="54" font-size="10" fill="#6b7280" text-anchor="end">now</text>
        </svg>
        <p class="legend"><span class="key kept">kept (recent, newest)</span> <span class="key tier">kept by a daily/weekly/monthly/yearly tier</span> <span class="key pinned">pinned</span> <span class="key goes">goes at the next run</span></p>`
      : html`<p class="muted">No restore points.</p>`}
    <dl class="facts">
      <dt>restore points</dt><dd>${v.points.length}, the oldest ${when(v.points.at(-1)?.at)}</dd>
      <dt>next retention run removes</dt><dd class="removable">${v.removable.length ? v.removable.map((id) => html`<code>${id}</code> `) : html`<span class="muted">nothing</span>`}</dd>
      <dt>expires next</dt><dd class="next-to-go">${v.nextToGo ? html`<code>${v.nextToGo.backupId}</code> at ${when(v.nextToGo.goesAt)} <span class="muted">(kept only as recent; newer backups can push an older one out of the newest ${p.minCount} or a tier sooner)</span>` : html`<span class="muted">nothing goes by age alone</span>`}</dd>
      <dt>pins</dt><dd class="pins">${pins.length ? html`<ul>${pins.map((x) => html`<li><code>${x.backupId}</code> by ${x.by} ${when(x.at)}: ${x.reason}</li>`)}</ul>` : html`<span class="muted">none</span>`}</dd>
    </dl>
  </section>`;
}

export interface TenantExtras {
  trend: TrendPoint[];
  retention: RetentionView;
  pins: Pin[];
  /** the tenant has a retention override */
  override: boolean;
}

export function tenantPage(d: TenantDetail, backups: Page<BackupRow>, restores: RestoreRow[], inDatabase: boolean | null, extras: TenantExtras): Html {
  const h = d.health;
  const retained = new Map(extras.retention.points.map((p) => [p.backupId, p]));
  return html`<h1>Tenant ${d.tenantId} ${h ? levelBadge(h.level) : ''}</h1>
    ${inDatabase === false ? html`<p class="flash warning">The tenant is no longer in the database's tenant table; its backups remain until retention removes them.</p>` : ''}
    ${h
      ? html`<dl class="facts">
          <dt>last success</dt><dd>${when(h.lastSuccessAt)}</dd>
          <dt>age against schedule</dt><dd>${levelBadge(h.age)} ${ageText(h.ageSeconds, h.everyMs)}</dd>
          <dt>last failure</dt><dd>${h.lastFailure ? html`${h.failing ? html`<span class="tag failing">failing</span> ` : ''}${eventLine(h.lastFailure)}` : html`<span class="muted">none</span>`}</dd>
          <dt>restore points</dt><dd>${h.restorePoints} (the policy promises ${h.promisedRestorePoints} by now), oldest ${when(h.oldestRestorableAt)}</dd>
        </dl>`
      : html`<p class="muted">No backup of this tenant and no failed attempt in the catalog.</p>`}
    ${d.pendingApprovals.length ? html`<p class="flash warning">Awaiting approval: ${d.pendingApprovals.map((a) => restoreLink(a.restoreId))}</p>` : ''}
    ${trendCharts('tenant-trend', 'Size and duration', extras.trend)}
    ${retentionSection(extras.retention, extras.pins, Date.now(), extras.override)}
    <section><h2>Backups</h2>
      ${backups.rows.length ? backupRows(backups.rows, retained) : html`<p class="muted">None.</p>`}
      ${pager(backups, (page) => withQuery(path('tenants', d.tenantId), { page }))}
    </section>
    <section><h2>Backup runs</h2>
      <table class="runs"><thead><tr><th>started</th><th>status</th><th>backup</th><th>reason</th><th></th></tr></thead>
      <tbody>${d.runs.map(
        (r) => html`<tr class="${r.status === 'failed' ? 'critical' : ''}"><td>${when(r.startedAt)}</td><td>${r.status}</td><td><code>${r.backupId ?? '-'}</code></td>
          <td>${r.error ? html`<strong class="error-type">${r.errorType ?? 'error'}</strong> <span class="reason">${reasonText(r.error)}</span>` : ''}</td><td>${runRef(r.run)}</td></tr>`,
      )}</tbody></table>
    </section>
    <section><h2>Restores</h2>${restores.length ? restoreRows(restores) : html`<p class="muted">None.</p>`}</section>`;
}

function restoreRows(rows: RestoreRow[]): Html {
  return html`<table class="restores">
    <thead><tr><th>restore</th><th>tenant</th><th>state</th><th>backup</th><th>requested by</th><th>approved by</th><th>requested</th></tr></thead>
    <tbody>${rows.map(
      (r) => html`<tr class="state-${r.state}" data-restore="${r.restoreId}"><td>${restoreLink(r.restoreId)}</td><td>${tenantLink(r.tenantId)}</td><td>${r.state}</td><td><code>${r.backupId ?? '-'}</code></td>
        <td>${r.requestedBy}</td><td>${r.approvedBy.join(', ') || '-'}</td><td>${when(r.createdAt)}</td></tr>`,
    )}</tbody>
  </table>`;
}

export function restoresPage(pending: PendingApproval[], all: Page<RestoreRow>): Html {
  return html`<h1>Restores</h1>
    <section><h2>Awaiting approval</h2>${pending.length ? approvalRows(pending) : html`<p class="muted">None.</p>`}</section>
    <section><h2>Every restore</h2>${all.rows.length ? restoreRows(all.rows) : html`<p class="muted">None yet.</p>`}
      ${pager(all, (page) => withQuery('/restores', { page }))}</section>`;
}

export interface RestoreForms {
  /** tokens for this user's approve and reject forms; absent: no forms (read-only, or nothing to decide) */
  approve?: string;
  reject?: string;
  /** why this user may not approve (the requester: four-eyes) */
  cannotApprove?: string;
  readOnly: boolean;
}

/** A restore: what it would change (the preview), who approved, and, for an operator, the forms to approve or reject it. */
export function restorePage(rec: RestoreRow & { workflowId: string; runId: string }, s: TenantRestoreStatus | null, statusError: string | null, runUrl: RunLink | null, forms: RestoreForms): Html {
  const state = s?.state ?? rec.state;
  const p = s?.preview;
  return html`<h1>Restore ${rec.restoreId} <span class="state state-${state}">${state}</span></h1>
    ${statusError ? html`<p class="flash warning">The workflow did not answer its status query (${statusError}); shown as the catalog last recorded it.</p>` : ''}
    <dl class="facts">
      <dt>tenant</dt><dd>${tenantLink(rec.tenantId)}</dd>
      <dt>requested by</dt><dd class="requested-by">${s?.requestedBy ?? rec.requestedBy}</dd>
      <dt>source</dt><dd>${p?.pointInTime
        ? html`point in time: ${p.pointInTime.target.at ?? p.pointInTime.target.lsn} from the <strong>${p.pointInTime.source === 'changeLog' ? 'change log' : 'PITR clone'}</strong>${p.pointInTime.baseBackupId ? html` on <code>${p.pointInTime.baseBackupId}</code>` : ''}; last commit included ${p.pointInTime.lastCommit ? html`<code>${p.pointInTime.lastCommit.lsn}</code> at ${p.pointInTime.lastCommit.time}` : 'none after the base'} <span class="muted">(${p.pointInTime.reason})</span>`
        : html`backup <code>${s?.backupId ?? rec.backupId ?? '-'}</code>${p ? html` (snapshot ${p.snapshotAt})` : ''}`}</dd>
      ${p ? html`<dt>mode</dt><dd>${p.selection.mode}${p.selection.tables ? html`, tables ${p.selection.tables.join(', ')}` : ''}${p.selection.changes ? html`, changes ${p.selection.changes.join(', ')}` : ''}</dd>` : ''}
      ${s?.expiresAt && state === 'awaiting-approval' ? html`<dt>approval expires</dt><dd>${when(s.expiresAt)}</dd>` : ''}
      <dt>approvals</dt><dd>${s?.approvals.length ? s.approvals.map((a) => html`<span class="approval">${a.by} (${a.at})</span> `) : html`<span class="muted">none</span>`}${s?.approvalsRequired ? ` of ${s.approvalsRequired} needed` : ''}</dd>
      ${s?.refused.length ? html`<dt>refused</dt><dd><ul>${s.refused.map((x) => html`<li>${x.by}: ${x.reason}</li>`)}</ul></dd>` : ''}
      ${s?.rejection ? html`<dt>rejected by</dt><dd>${s.rejection.by}${s.rejection.reason ? `: ${s.rejection.reason}` : ''}</dd>` : ''}
      ${s?.safetyBackupId ? html`<dt>safety backup</dt><dd><code>${s.safetyBackupId}</code> (restore it to undo)</dd>` : ''}
      ${s?.error || rec.error ? html`<dt>error</dt><dd class="reason">${reasonText(s?.error ?? rec.error)}</dd>` : ''}
      <dt>workflow</dt><dd>${runRef(runUrl)} <code>${rec.workflowId}</code></dd>
    </dl>
    ${s?.planChanged ? html`<p class="flash warning">The live data changed after the approval: the preview below is new and needs a new approval.</p>` : ''}
    ${p
      ? html`<section aria-labelledby="preview"><h2 id="preview">Preview</h2>
          <table class="preview"><thead><tr><th>table</th><th>insert</th><th>update</th><th>delete</th><th></th></tr></thead>
          <tbody>${Object.entries(p.tables).map(
            ([name, t]) => html`<tr class="${t.selected ? '' : 'muted'}" data-table="${name}"><td><code>${name}</code></td><td class="n">${t.insert}</td><td class="n">${t.update}</td><td class="n">${t.delete}</td>
              <td>${t.selected ? '' : 'not restored'}${t.wholeTable ? ' no primary key: whole rows' : ''}</td></tr>`,
          )}</tbody>
          <tfoot><tr><th>total</th><td class="n">${p.totals.insert}</td><td class="n">${p.totals.update}</td><td class="n">${p.totals.delete}</td><td></td></tr></tfoot></table>
          ${p.blockers.length ? html`<h3>Blockers</h3><ul class="blockers">${p.blockers.map((b) => html`<li class="critical"><strong>${b.kind}</strong> <code>${b.table}</code> (${b.rows} rows): ${b.message}</li>`)}</ul>` : ''}
          ${p.warnings.length ? html`<h3>Warnings</h3><ul class="warnings">${p.warnings.map((w) => html`<li>${w}</li>`)}</ul>` : ''}
          ${p.drift.length ? html`<h3>Schema drift</h3><ul class="drift">${p.drift.map((d) => html`<li><code>${d.table}${d.column ? `.${d.column}` : ''}</code> ${d.kind}: ${d.policy}</li>`)}</ul>` : ''}
          <p class="digest">preview digest <code>${p.digest}</code></p>
        </section>`
      : ''}
    ${state === 'awaiting-approval' && p ? decisionForms(rec.restoreId, p.digest, p.blockers.length > 0, forms) : ''}
    ${s?.verification
      ? html`<section><h2>Verification ${levelBadge(s.verification.ok ? 'ok' : 'critical')}</h2>
          <p>${s.verification.ok ? 'Every table equals the backup' : 'Some tables differ from the backup'}; other tenants ${s.verification.otherTenantsUnchanged ? 'unchanged' : 'CHANGED'}.</p>
          <table><thead><tr><th>table</th><th>result</th></tr></thead><tbody>${s.verification.tables.map((t) => html`<tr class="${t.ok ? '' : 'critical'}"><td><code>${t.table}</code></td><td>${t.ok ? 'ok' : `expected ${t.expected}, got ${t.actual}`}${t.note ? ` (${t.note})` : ''}</td></tr>`)}</tbody></table>
        </section>`
      : ''}`;
}

function decisionForms(restoreId: string, digest: string, blocked: boolean, f: RestoreForms): Html {
  if (f.readOnly) return html`<p class="notice read-only">You have the read-only role: approving or rejecting a restore needs an operator.</p>`;
  if (!f.approve && !f.reject) return html``;
  return html`<section class="decision" aria-labelledby="decide"><h2 id="decide">Decision</h2>
    ${f.cannotApprove ? html`<p class="notice four-eyes">${f.cannotApprove}</p>` : ''}
    ${blocked ? html`<p class="notice">The preview has blockers: approving it is refused until they are resolved.</p>` : ''}
    <form method="post" action="${path('restores', restoreId, 'approve')}" class="approve">
      <input type="hidden" name="digest" value="${digest}">
      <input type="hidden" name="csrf" value="${f.approve ?? ''}">
      <button type="submit" class="approve"${f.cannotApprove ? html` disabled` : ''}>Approve this preview</button>
    </form>
    <form method="post" action="${path('restores', restoreId, 'reject')}" class="reject">
      <input type="hidden" name="digest" value="${digest}">
      <input type="hidden" name="csrf" value="${f.reject ?? ''}">
      <label for="reason">Reason</label> <input id="reason" name="reason" maxlength="500">
      <button type="submit" class="reject">Reject</button>
    </form>
  </section>`;
}

export function verificationsPage(p: Page<VerificationRow>, failedOnly: boolean): Html {
  return html`<h1>Verification reports</h1>
    <p>${failedOnly ? html`Failed only · <a href="/verifications">show all</a>` : html`All · <a href="/verifications?failed=1">failed only</a>`}</p>
    ${p.rows.length
      ? html`<table class="verifications"><thead><tr><th>verified</th><th>backup</th><th>kind</th><th>tenant</th><th>result</th><th>checks</th><th></th></tr></thead>
        <tbody>${p.rows.map(
          (v) => html`<tr class="${v.ok ? 'ok' : 'critical'}" data-backup="${v.backupId}"><td>${when(v.verifiedAt)}</td><td><a href="${path('verifications', v.id)}"><code>${v.backupId}</code></a></td><td>${v.backupKind}</td>
            <td>${v.tenantId ? tenantLink(v.tenantId) : '-'}</td><td>${levelBadge(v.ok ? 'ok' : 'critical')}</td><td>${countsText(v.counts)}</td>
            <td><a href="${path('verifications', v.id, 'report.json')}" download>JSON</a></td></tr>`,
        )}</tbody></table>`
      : html`<p class="muted">No verification has run yet.</p>`}
    ${pager(p, (page) => withQuery('/verifications', { failed: failedOnly ? 1 : undefined, page }))}`;
}

function countsText(counts: Record<string, number>): string {
  return Object.entries(counts)
    .filter(([, n]) => n > 0)
    .map(([k, n]) => `${n} ${k}`)
    .join(', ') || 'no checks';
}

interface ReportCheck {
  check?: unknown;
  target?: unknown;
  result?: unknown;
  detail?: unknown;
}

export function verificationPage(v: VerificationRecordFull): Html {
  const checks = (((v.report as { checks?: unknown })?.checks ?? []) as ReportCheck[]).filter((c) => c && typeof c === 'object');
  const problems = checks.filter((c) => c.result !== 'ok');
  return html`<h1>Verification of <code>${v.backupId}</code> ${levelBadge(v.ok ? 'ok' : 'critical')}</h1>
    <dl class="facts"><dt>kind</dt><dd>${v.backupKind}</dd>${v.tenantId ? html`<dt>tenant</dt><dd>${tenantLink(v.tenantId)}</dd>` : ''}
      <dt>verified</dt><dd>${when(v.verifiedAt)}</dd><dt>result</dt><dd>${countsText(v.counts)}</dd>
      <dt>report</dt><dd><a href="${path('verifications', v.id, 'report.json')}" download>download JSON</a>${v.reportKey ? html` <span class="muted">(storage: <code>${v.reportKey}</code>)</span>` : ''}</dd></dl>
    ${problems.length ? html`<h2>Problems</h2>${checkTable(problems)}` : ''}
    <h2>Every check</h2>${checkTable(checks)}`;
}

function checkTable(checks: ReportCheck[]): Html {
  return html`<table class="checks"><thead><tr><th>check</th><th>target</th><th>result</th><th>detail</th></tr></thead>
    <tbody>${checks.map((c) => html`<tr class="${c.result === 'ok' ? '' : 'critical'}"><td>${String(c.check ?? '')}</td><td><code>${String(c.target ?? '')}</code></td><td>${String(c.result ?? '')}</td><td>${c.detail === undefined ? '' : String(c.detail)}</td></tr>`)}</tbody></table>`;
}

/** The chain's state in a line: ok, or the first entry that does not hold. */
function chainBanner(v: AuditVerification | null, error: string | null): Html {
  if (!v) return html`<section class="banner warning chain" aria-label="chain" data-chain="unknown"><h1>${levelBadge('warning')} The chain could not be checked</h1><p class="reason">${reasonText(error)}</p></section>`;
  const anchor =
    v.anchor.status === 'matches' ? `anchored in storage at entry ${v.anchor.seq}: matches` : v.anchor.status === 'none' ? 'no anchor in storage yet' : `anchor in storage: ${v.anchor.status}`;
  if (v.ok) {
    return html`<section class="banner ok chain" aria-label="chain" data-chain="ok"><h1>${levelBadge('ok')} Chain unbroken: ${v.entries} entries${v.head ? ` up to entry ${v.head.seq}` : ''}</h1><p class="muted">Each entry's hash recomputed from the first; ${anchor}.</p></section>`;
  }
  return html`<section class="banner critical chain" aria-label="chain" data-chain="broken" data-broken="${v.broken!.seq}"><h1>${levelBadge('critical')} Chain BROKEN at entry ${v.broken!.seq}</h1>
    <p class="reason">Entry ${v.broken!.seq}: ${v.broken!.problem}. Entries from there on cannot be trusted.</p><p class="muted">${v.entries} entries; ${anchor}. \`tenantsafe audit verify\` says the same.</p></section>`;
}

/** The subject's ids besides the tenant and the restore (those are links). */
function otherSubject(subject: AuditEntry['subject']): string {
  const { tenantId: _t, restoreId: _r, ...rest } = subject;
  return Object.keys(rest).length ? subjectText(rest) : '';
}

function detailsText(details: Record<string, unknown>): string {
  const { workflowId: _w, runId: _r, ...rest } = details;
  const t = Object.entries(rest).map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`).join(' ');
  return t.length > 300 ? `${t.slice(0, 297)}…` : t;
}

/** The audit log: newest first, filtered by tenant and action, with the chain's state on top. */
export function auditPage(p: Page<AuditEntry>, v: AuditVerification | null, verifyError: string | null, filter: { tenant: string; action: string }): Html {
  const brokenAt = v?.broken?.seq;
  return html`<h1>Audit log</h1>
    ${chainBanner(v, verifyError)}
    <form class="search audit-filter" method="get" action="/audit">
      <label for="tenant">Tenant</label> <input id="tenant" name="tenant" value="${filter.tenant}" maxlength="128">
      <label for="action">Action</label> <select id="action" name="action"><option value="">any</option>${auditActions.map((a) => html`<option value="${a}"${a === filter.action ? html` selected` : ''}>${a}</option>`)}</select>
      <button type="submit">Filter</button>
    </form>
    ${p.rows.length
      ? html`<table class="audit"><thead><tr><th>#</th><th>when</th><th>by</th><th>action</th><th>outcome</th><th>subject</th><th>digest</th><th>details</th></tr></thead>
        <tbody>${p.rows.map(
          (e) => html`<tr data-seq="${e.seq}" class="${brokenAt !== undefined && e.seq === brokenAt ? 'critical' : e.outcome === 'refused' || e.outcome === 'failed' ? 'warning' : ''}">
            <td class="n">${e.seq}</td><td>${when(e.at)}</td><td class="by">${e.by}</td><td class="action"><code>${e.action}</code></td><td class="outcome">${e.outcome}</td>
            <td class="subject">${e.subject.tenantId ? html`${tenantLink(e.subject.tenantId)} ` : ''}${e.subject.restoreId ? restoreLink(e.subject.restoreId) : ''} <span class="muted">${otherSubject(e.subject)}</span></td>
            <td>${e.digest ? html`<code class="digest" title="${e.digest}">${e.digest.slice(0, 12)}…</code>` : ''}</td>
            <td class="details">${detailsText(e.details)}</td></tr>`,
        )}</tbody></table>`
      : html`<p class="muted">No entries${filter.tenant || filter.action ? ' match' : ' yet'}.</p>`}
    ${pager(p, (page) => withQuery('/audit', { tenant: filter.tenant, action: filter.action, page }))}`;
}

export function signInPage(next: string, token: string, problem: string | null): Html {
  return html`<h1>Sign in</h1>
    ${problem ? html`<p class="flash critical" role="alert">${problem}</p>` : ''}
    <form method="post" action="/login" class="login">
      <input type="hidden" name="next" value="${next}">
      <input type="hidden" name="csrf" value="${token}">
      <p><label for="name">Name</label><br><input id="name" name="name" autocomplete="username" required maxlength="64"></p>
      <p><label for="secret">Password or token</label><br><input id="secret" name="secret" type="password" autocomplete="current-password" required maxlength="1024"></p>
      <p><button type="submit">Sign in</button></p>
    </form>`;
}

export function errorPage(status: number, title: string, message: string, hint?: string): Html {
  return html`<section class="error" data-status="${status}"><h1>${status} ${title}</h1><p class="reason">${message}</p>${hint ? html`<p class="hint">${hint}</p>` : ''}<p><a href="/">Back to the overview</a></p></section>`;
}

export function levelOf(ok: boolean): Level {
  return ok ? 'ok' : 'critical';
}
