// Server-side HTML for the dashboard: a template tag that escapes every value it is given
// (only what another template made passes as it is), the page layout, and small pieces pages
// share. No script runs in the pages; the Content-Security-Policy says so.
import type { Level } from '../../lib/monitoring/health';
import { durationText } from '../../lib/monitoring/health';
import { Html, html } from '../../lib/html';
import type { Principal } from './auth';

export { Html, escapeHtml, html } from '../../lib/html';

/** A path of ours: each segment encoded. */
export function path(...segments: (string | number)[]): string {
  return '/' + segments.map((s) => encodeURIComponent(String(s))).join('/');
}

/** A path with a query (empty values left out). */
export function withQuery(base: string, query: Record<string, string | number | undefined | null>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== null && v !== '') q.set(k, String(v));
  const s = q.toString();
  return s ? `${base}?${s}` : base;
}

/** A link out (the Temporal Web UI): only http(s), opened apart from the dashboard. */
export function externalLink(url: string | null | undefined, label: string, cls = 'temporal-link'): Html {
  if (!url || !/^https?:\/\//i.test(url)) return html``;
  return html`<a class="${cls}" href="${url}" target="_blank" rel="noopener noreferrer">${label}</a>`;
}

export function levelBadge(level: Level | string): Html {
  return html`<span class="badge ${level}">${level === 'ok' ? 'OK' : level.toUpperCase()}</span>`;
}

/** A time as stored (UTC, microseconds) with how long ago. */
export function when(at: string | null | undefined, now: number = Date.now()): Html {
  if (!at) return html`<span class="muted">never</span>`;
  const ago = (now - Date.parse(at)) / 1000;
  return html`<time datetime="${at}" title="${at}">${at.replace('T', ' ').replace(/\.\d+Z$/, 'Z')}</time> <span class="muted">(${ago >= 0 ? `${durationText(ago)} ago` : `in ${durationText(-ago)}`})</span>`;
}

export function bytesText(n: number | null | undefined): string {
  if (n === null || n === undefined) return '-';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${v} B` : `${v.toFixed(1)} ${units[i]}`;
}

export interface PageOptions {
  title: string;
  user: Principal | null;
  /** the nav entry to mark */
  section?: 'overview' | 'tenants' | 'restores' | 'verifications' | 'audit';
  /** reload every n seconds (a restore being applied) */
  refreshSeconds?: number;
  /** the sign-out form's token */
  signOutToken?: string;
  flash?: { level: 'ok' | 'warning' | 'critical'; text: string } | null;
  /** the page draws charts: load uPlot and the script that draws them (from the package) */
  charts?: boolean;
  /** with several databases (docs/fleet.md): their ids, the one the page is about, and the page's path (each link shows it for another) */
  databases?: { ids: string[]; current: string; path: string };
}

/** The databases of a fleet, the current one marked: each link shows this page for that one. */
function databaseSelector(d: NonNullable<PageOptions['databases']>): Html {
  const link = (id: string) => (d.path.startsWith('/databases/') ? path('databases', id) : withQuery(d.path, { database: id }));
  return html`<nav class="databases" aria-label="database"><span class="muted">database</span> ${d.ids.map((id) => html`<a href="${link(id)}" data-database="${id}"${id === d.current ? html` class="current" aria-current="true"` : ''}>${id}</a>`)}</nav>`;
}

export function layout(o: PageOptions, body: Html): string {
  const nav = (key: PageOptions['section'], href: string, label: string) => html`<a href="${href}"${o.section === key ? html` class="current" aria-current="page"` : ''}>${label}</a>`;
  return `<!doctype html>\n${html`<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
${o.refreshSeconds ? html`<meta http-equiv="refresh" content="${o.refreshSeconds}">` : ''}
<title>${o.title} · tenantsafe</title>
<link rel="stylesheet" href="/static/dashboard.css">
${o.charts ? html`<link rel="stylesheet" href="/static/vendor/uplot.css">
<script src="/static/vendor/uplot.js" defer></script>
<script src="/static/charts.js" defer></script>` : ''}
</head>
<body>
<header class="top">
  <a class="brand" href="/">tenantsafe</a>
  ${o.user
    ? html`<nav>${nav('overview', '/', 'Overview')}${nav('tenants', '/tenants', 'Tenants')}${nav('restores', '/restores', 'Restores')}${nav('verifications', '/verifications', 'Verifications')}${nav('audit', '/audit', 'Audit')}</nav>
  ${o.databases ? databaseSelector(o.databases) : ''}
  <form class="who" method="post" action="/logout">
    <span class="user">${o.user.name}</span> <span class="role role-${o.user.role}">${o.user.role}</span>
    ${o.user.via === 'session' && o.signOutToken ? html`<input type="hidden" name="csrf" value="${o.signOutToken}"><button type="submit" class="link">Sign out</button>` : ''}
  </form>`
    : ''}
</header>
<main>
${o.flash ? html`<p class="flash ${o.flash.level}" role="status">${o.flash.text}</p>` : ''}
${body}
</main>
</body>
</html>`.text}\n`;
}
