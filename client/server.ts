// The dashboard server (`tenantsafe dashboard`, and `tenantsafe dev`): server-rendered pages for
// people, the restore relay for services, and Prometheus metrics. Who may do what is
// client/dashboard/auth.ts; the pages are client/dashboard/pages.ts; what they judge is the health
// model's (lib/monitoring/health.ts).
//
// Pages (a signed-in user; read-only and operator roles; GET only changes nothing):
//   GET  /                              overview: health at a glance, failing items first
//   GET  /databases/:db                 one database, every kind judged
//   GET  /tenants?q=&order=&page=       tenants by id prefix, worst first or by id, paged in SQL
//   GET  /tenants/:tenantId?page=       a tenant: last success, age, failures, backups (paged), restores
//   GET  /restores?page=                restores awaiting approval, and every restore (paged)
//   GET  /restores/:restoreId           the preview diff, approvals, and (operators) approve/reject forms
//   POST /restores/:restoreId/approve   {digest, csrf}          operator; signals as `restore approve` does
//   POST /restores/:restoreId/reject    {digest, reason, csrf}  operator
//   GET  /verifications?failed=&page=   verification reports
//   GET  /verifications/:id             one report as HTML; /verifications/:id/report.json the JSON
//   GET  /audit?tenant=&action=&page=   the audit log, newest first, with the hash chain's state
//   GET  /login, POST /login, POST /logout
// HTTP API (Authorization: Bearer <token> or Basic; JSON):
//   GET  /healthz
//   GET  /metrics                                 → Prometheus metrics (monitoring.metricsToken, when set, as a bearer token)
//   GET  /api/restores/:restoreId                 → status
//   POST /api/restores/:restoreId/approve {by?, digest}   (operator; `by` is the caller, or whom a relaying caller names)
//   POST /api/restores/:restoreId/reject  {by?, reason?}
//
// With several databases (docs/fleet.md): the overview shows every one; the other pages are about
// the one `?database=<id>` (or /databases/:id) picked, kept in a cookie, the first by default; a
// restore's page, decisions and API calls act on the database whose catalog holds it.
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as nodePath from 'node:path';
import { configSecrets } from '../lib/alerts';
import { auditActions, refusedApproval, type AuditVerification, type RefusedVia } from '../lib/audit';
import { sanitizeMessage } from '../lib/alerts/format';
import { databaseIds, databaseName, forDatabase, type Config } from '../lib/config';
import { fullTrend, getVerification, restoresPage, tenantBackupsPage, tenantInCatalog, tenantRestorePoints, tenantTrend, verificationsPage } from '../lib/dashboard/reads';
import { retentionView } from '../lib/dashboard/retention';
import { listPins, type Pin } from '../lib/retention/pins';
import type { Engine } from '../lib/engine';
import type { RestoreRecord } from '../lib/catalog';
import { ErrorType, isBadInput, TenantsafeError } from '../lib/errors';
import { computeHealth, fleetReport, runLink, tenantHealth, tenantHealthPage, type HealthMemo, type HealthReport, type TemporalFacts } from '../lib/monitoring/health';
import { drillPrefix } from '../lib/dr/report';
import { processRegistry, registerHealthMetrics, serveMetrics } from '../lib/monitoring/metrics';
import { withClient } from '../lib/pg';
import { discoverTenancy, existingTenants, type TenancyPlan } from '../lib/tenancy';
import type { TenantRestoreStatus } from '../workflows/messages';
import type { TenantsafeClient } from './client';
import { DashboardAuth, sessionCookie, type Principal } from './dashboard/auth';
import { layout, type Html, type PageOptions } from './dashboard/html';
import * as pages from './dashboard/pages';
import { healthSources, temporalFacts } from './health';
import { WorkflowError } from './workflowError';

export interface DashboardServer {
  url: string;
  close(): Promise<void>;
}

export interface DashboardOptions {
  /** where the server says what went wrong on its side (never a secret): stderr by default */
  log?: (line: string) => void;
  /** how long one judgement serves the pages (concurrent views share it): 1000 ms; the bench sets 0 */
  healthReuseMs?: number;
}

/** Longer request targets are answered 414; a request line or headers past maxHeaderBytes, 400. */
export const maxUrlLength = 4096;
const maxHeaderBytes = 64 * 1024;
const maxFormBytes = 16 * 1024;
const pageSize = 50;
const staticDir = nodePath.join(__dirname, 'dashboard', 'static');

/** An answer decided while handling a request (a status and why): rendered as a page or JSON. */
class HttpProblem extends Error {
  constructor(
    readonly status: number,
    readonly title: string,
    message: string,
    readonly hint?: string,
  ) {
    super(message);
  }
}

function jsonBody(text: string): Record<string, unknown> {
  try {
    const body = JSON.parse(text || '{}');
    if (body && typeof body === 'object' && !Array.isArray(body)) return body;
  } catch {
    // reported below
  }
  throw new TenantsafeError(ErrorType.BadInput, 'The request body is not a JSON object.', 'Send {"by": "...", "digest": "..."}.');
}

async function readBody(req: http.IncomingMessage, limit: number): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > limit) throw new HttpProblem(413, 'Payload Too Large', `The request body is over ${limit / 1024} KiB.`);
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function text(v: unknown, name: string): string {
  if (typeof v !== 'string' || v.trim() === '') throw new TenantsafeError(ErrorType.BadInput, `"${name}" is required.`, `Send a JSON body with "${name}".`);
  return v;
}

/** A page number from the query: 1 when absent; a bad one is bad input. */
function pageOf(url: URL): number {
  const v = url.searchParams.get('page');
  if (v === null || v === '') return 1;
  if (!/^\d{1,6}$/.test(v) || Number(v) < 1) throw new HttpProblem(400, 'Bad Request', `page must be a whole number from 1 (got "${v.slice(0, 20)}").`);
  return Number(v);
}

/** An id taken from a path segment: decoded, at most 256 characters, no control characters. */
function idOf(segment: string, what: string): string {
  let id: string;
  try {
    id = decodeURIComponent(segment);
  } catch {
    throw new HttpProblem(400, 'Bad Request', `The ${what} in the address is not validly encoded.`);
  }
  if (id === '' || id.length > 256 || /[\u0000-\u001f\u007f]/.test(id)) throw new HttpProblem(400, 'Bad Request', `That is not a ${what} id (1 to 256 printable characters).`);
  return id;
}

function wantsSecureCookie(req: http.IncomingMessage): boolean {
  return (req.socket as { encrypted?: boolean }).encrypted === true || req.headers['x-forwarded-proto'] === 'https';
}

/** The cookie keeping the database the pages are about, with several (docs/fleet.md). */
const databaseCookie = 'tenantsafe_database';

/** What the pages of one database read: its config and engine, and what they keep for a while. */
interface DatabaseView {
  /** its id, with several databases (docs/fleet.md); undefined: the config's one database */
  id: string | undefined;
  config: Config;
  engine: Engine;
  /** the database's name (the health report's) */
  name: string;
  /** the health report; concurrent views share one judgement */
  healthNow(): Promise<HealthReport>;
  temporalNow(): Promise<TemporalFacts>;
  tenantInDatabase(tenantId: string): Promise<boolean | null>;
  pinsNow(): Promise<Pin[]>;
  chainNow(): Promise<AuditVerification>;
}

function databaseView(config: Config, engine: Engine, client: TenantsafeClient, memo: HealthMemo, opts: DashboardOptions): DatabaseView {
  // Pages judge afresh (a failure shows at once); what Temporal says (schedules, pollers) is asked at most every 10 s.
  let facts: { at: number; value: Promise<TemporalFacts> } | undefined;
  const temporalNow = (): Promise<TemporalFacts> => {
    if (!facts || Date.now() - facts.at > 10_000) facts = { at: Date.now(), value: temporalFacts(client.temporal, config, { timeoutMs: 3000 }) };
    return facts.value;
  };
  let judging: { at: number; report: Promise<HealthReport> } | undefined;
  const healthNow = async (): Promise<HealthReport> => {
    // concurrent page views share one judgement, and reuse it for a second
    if (!judging || Date.now() - judging.at >= (opts.healthReuseMs ?? 1000)) {
      const report = temporalNow().then((temporal) => computeHealth(engine, { temporal, memo }));
      judging = { at: Date.now(), report };
      report.catch(() => (judging = undefined));
    }
    return judging.report;
  };
  let plan: { plan: TenancyPlan; at: number } | undefined;
  const tenantInDatabase = async (tenantId: string): Promise<boolean | null> => {
    try {
      return await withClient(engine.db, config.database.url, async (c) => {
        if (!plan || Date.now() - plan.at > 600_000) plan = { plan: await discoverTenancy(c, config.tenancy), at: Date.now() };
        return (await existingTenants(c, plan.plan, [tenantId])).has(tenantId);
      });
    } catch {
      return null;
    }
  };

  // pins live in storage (pins/<backupId>.json): listed at most every 30 s
  let pinList: { at: number; pins: Promise<Pin[]> } | undefined;
  const pinsNow = (): Promise<Pin[]> => {
    if (!pinList || Date.now() - pinList.at > 30_000) {
      const pins = listPins(engine.store);
      pinList = { at: Date.now(), pins };
      pins.catch(() => (pinList = undefined));
    }
    return pinList.pins;
  };

  // the audit log's chain, recomputed at most every 30 s (every entry is read: not once per view)
  let chainCheck: { at: number; result: Promise<AuditVerification> } | undefined;
  const chainNow = (): Promise<AuditVerification> => {
    if (!chainCheck || Date.now() - chainCheck.at > 30_000) {
      const result = engine.audit.verify();
      chainCheck = { at: Date.now(), result };
      result.catch(() => (chainCheck = undefined));
    }
    return chainCheck.result;
  };
  return { id: config.databaseId, config, engine, name: databaseName(config.database.url), healthNow, temporalNow, tenantInDatabase, pinsNow, chainNow };
}

export async function startDashboardServer(config: Config, engine: Engine, client: TenantsafeClient, opts: DashboardOptions = {}): Promise<DashboardServer> {
  const auth = new DashboardAuth(config.dashboard);
  if (!auth.hasUsers) {
    throw new TenantsafeError(
      ErrorType.BadConfig,
      'dashboard.users is empty and dashboard.token is not set: the dashboard and its HTTP API would let anyone approve restores.',
      'Add users under dashboard.users (role read-only or operator, a password or token from the environment or `tenantsafe hash-secret`), or set dashboard.token.',
    );
  }
  const log = opts.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const secrets = configSecrets(config);

  // /metrics: the catalog-derived gauges (lib/monitoring: with several databases, every one's) and this process's own
  const registry = processRegistry();
  // the tenancy plan and workflow scopes, found again every 10 minutes (metrics and pages share them)
  const memo: HealthMemo = {};
  registerHealthMetrics(registry, healthSources(engine, client.temporal, config.monitoring.cacheTtlMs, memo));

  // the pages of each database (docs/fleet.md): a single-database config's one, or every one of `databases`
  const ids = databaseIds(config);
  const views = ids.length === 0 ? [databaseView(config, engine, client, memo, opts)] : ids.map((id) => databaseView(forDatabase(config, id), engine.forDatabase(id), client, {}, opts));
  /** the database a page is about: `?database=<id>` (kept in a cookie), else the cookie's, else the first */
  const viewOf = (url: URL, cookie: string | undefined): { view: DatabaseView; chosen: boolean } => {
    if (views.length === 1) return { view: views[0], chosen: false };
    const asked = url.searchParams.get('database');
    if (asked !== null) {
      const view = views.find((v) => v.id === asked);
      if (!view) throw new HttpProblem(404, 'Not Found', `No database "${asked.slice(0, 40)}" in the config.`, `Pick one of: ${ids.join(', ')}.`);
      return { view, chosen: true };
    }
    const kept = new RegExp(`(?:^|;\\s*)${databaseCookie}=([a-z][a-z0-9_]*)`).exec(cookie ?? '')?.[1];
    return { view: views.find((v) => v.id === kept) ?? views[0], chosen: false };
  };
  /** every database's health as one report (the overview of a fleet) */
  const overviewNow = async (): Promise<HealthReport> => {
    if (views.length === 1) return views[0].healthNow();
    return fleetReport(await Promise.all(views.map(async (v) => ({ id: v.id!, report: await v.healthNow() }))));
  };
  /** the database whose catalog holds a restore (its pages, decisions and API calls act there), the chosen one first */
  const restoreIn = async (restoreId: string, chosen: DatabaseView): Promise<{ view: DatabaseView; rec: RestoreRecord }> => {
    let notFound: unknown;
    for (const view of [chosen, ...views.filter((v) => v !== chosen)]) {
      try {
        return { view, rec: await view.engine.catalog.getRestore(restoreId) };
      } catch (err) {
        if (!(err instanceof TenantsafeError && err.type === ErrorType.RestoreNotFound)) throw err;
        notFound = err;
      }
    }
    throw notFound;
  };

  // served from the package, never a CDN: the stylesheet, the charts' script, uPlot (npm: uplot)
  const assets = new Map<string, { type: string; body: Buffer }>([
    ['/static/dashboard.css', { type: 'text/css; charset=utf-8', body: fs.readFileSync(nodePath.join(staticDir, 'dashboard.css')) }],
    ['/static/charts.js', { type: 'text/javascript; charset=utf-8', body: fs.readFileSync(nodePath.join(staticDir, 'charts.js')) }],
    ['/static/vendor/uplot.js', { type: 'text/javascript; charset=utf-8', body: fs.readFileSync(require.resolve('uplot/dist/uPlot.iife.min.js')) }],
    ['/static/vendor/uplot.css', { type: 'text/css; charset=utf-8', body: fs.readFileSync(require.resolve('uplot/dist/uPlot.min.css')) }],
  ]);

  const server = http.createServer({ maxHeaderSize: maxHeaderBytes }, (req, res) => {
    const isApi = (req.url ?? '').startsWith('/api/');
    const baseHeaders = {
      'x-content-type-options': 'nosniff',
      'referrer-policy': 'same-origin',
      'cache-control': 'no-store',
    };
    const sendJson = (code: number, body: unknown, headers: Record<string, string> = {}) => {
      res.writeHead(code, { ...baseHeaders, 'content-type': 'application/json', ...headers });
      res.end(JSON.stringify(body));
    };
    const sendHtml = (code: number, page: string, headers: Record<string, string | string[]> = {}) => {
      res.writeHead(code, {
        ...baseHeaders,
        'content-type': 'text/html; charset=utf-8',
        'content-security-policy': "default-src 'none'; style-src 'self'; img-src 'self' data:; script-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        'x-frame-options': 'DENY',
        ...headers,
      });
      res.end(page);
    };
    let user: Principal | null = null;
    // with several databases: the one this request's page is about (viewOf), and the cookie keeping a new choice
    let view = views[0];
    let here: string | null = null;
    let keepChoice: Record<string, string> = {};
    const choose = (chosen: DatabaseView) => {
      view = chosen;
      keepChoice = { 'set-cookie': `${databaseCookie}=${chosen.id}; Path=/; HttpOnly; SameSite=Strict${wantsSecureCookie(req) ? '; Secure' : ''}` };
    };
    const page = (code: number, o: Omit<PageOptions, 'user'>, body: Html, headers: Record<string, string | string[]> = {}) =>
      sendHtml(
        code,
        layout({ ...o, user, ...(user?.sessionId ? { signOutToken: auth.formToken(user.name, 'logout', user.sessionId) } : {}), ...(views.length > 1 && user && here !== null ? { databases: { ids, current: view.id!, path: here } } : {}) }, body),
        { ...keepChoice, ...headers },
      );
    const problemPage = (p: HttpProblem, headers: Record<string, string | string[]> = {}) => page(p.status, { title: p.title }, pages.errorPage(p.status, p.title, p.message, p.hint), headers);
    const redirect = (to: string, headers: Record<string, string | string[]> = {}) => {
      res.writeHead(303, { ...baseHeaders, location: to, ...headers });
      res.end();
    };
    const signInPage = (code: number, next: string, problem: string | null, headers: Record<string, string | string[]> = {}) =>
      page(code, { title: 'Sign in' }, pages.signInPage(next, auth.formToken('', 'login', ''), problem), { 'www-authenticate': 'Bearer realm="tenantsafe"', ...headers });

    const route = async () => {
      if ((req.url ?? '').length > maxUrlLength) {
        throw new HttpProblem(414, 'URI Too Long', `The address is over ${maxUrlLength} characters; nothing was done.`, 'Search with a shorter tenant id.');
      }
      let url: URL;
      try {
        url = new URL(req.url ?? '/', 'http://localhost');
      } catch {
        throw new HttpProblem(400, 'Bad Request', 'The address could not be read.');
      }
      const p = url.pathname;
      const method = req.method ?? 'GET';
      if (method === 'GET' && p === '/healthz') return sendJson(200, { ok: true });
      if (method === 'GET' && p === '/metrics') return serveMetrics(registry, req, res, config.monitoring.metricsToken);
      const asset = method === 'GET' ? assets.get(p) : undefined;
      if (asset) {
        res.writeHead(200, { ...baseHeaders, 'content-type': asset.type, 'cache-control': 'max-age=300' });
        return res.end(asset.body);
      }
      if (p.startsWith('/api/')) return api(url);

      // ---- sign in and out ----
      const origin = req.headers.origin;
      if (method === 'POST' && origin !== undefined && origin !== `http://${req.headers.host}` && origin !== `https://${req.headers.host}`) {
        throw new HttpProblem(403, 'Forbidden', 'The form was sent from another site; nothing was done.');
      }
      if (p === '/login') {
        if (method === 'GET') return signInPage(200, safeNext(url.searchParams.get('next')), null);
        if (method !== 'POST') throw new HttpProblem(405, 'Method Not Allowed', 'Use the sign-in form.');
        const form = await readForm();
        const next = safeNext(form.get('next'));
        if (auth.useFormToken(form.get('csrf'), '', 'login', '') !== 'ok') return signInPage(403, next, 'The sign-in form expired or was already used; try again.');
        const principal = await auth.signIn(form.get('name') ?? '', form.get('secret') ?? '');
        if (!principal) return signInPage(401, next, 'Unknown name, or a wrong password or token.');
        const cookie = `${sessionCookie}=${auth.sessionValue(principal)}; Path=/; HttpOnly; SameSite=Strict; Max-Age=${Math.floor(config.dashboard.sessionTtlMs / 1000)}${wantsSecureCookie(req) ? '; Secure' : ''}`;
        return redirect(next, { 'set-cookie': cookie });
      }

      const who = await auth.authenticate({ authorization: req.headers.authorization, cookie: req.headers.cookie });
      if (!who.principal) {
        const clear = { 'set-cookie': `${sessionCookie}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0` };
        if (method === 'GET') return signInPage(401, p + url.search, who.reason === 'invalid' ? 'Those credentials are not valid (or the session ended); sign in again.' : null, who.reason === 'invalid' ? clear : {});
        throw new HttpProblem(401, 'Unauthorized', 'Sign in first; nothing was done.');
      }
      user = who.principal;

      if (p === '/logout') {
        if (method !== 'POST') throw new HttpProblem(405, 'Method Not Allowed', 'Sign out with the button.');
        const form = await readForm();
        if (user.sessionId && auth.useFormToken(form.get('csrf'), user.name, 'logout', user.sessionId) === 'ok') auth.signOut(user);
        else throw new HttpProblem(403, 'Forbidden', 'That sign-out form is not valid; nothing was done.');
        return redirect('/login', { 'set-cookie': `${sessionCookie}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0` });
      }

      const parts = p.split('/').filter(Boolean);
      const [top, id, action] = parts;
      const picked = viewOf(url, req.headers.cookie);
      if (picked.chosen) choose(picked.view);
      else view = picked.view;
      if (method === 'GET') here = p;
      if (method === 'POST' && top === 'restores' && id && (action === 'approve' || action === 'reject') && parts.length === 3) return decide(idOf(id, 'restore'), action);
      if (method !== 'GET' && method !== 'HEAD') throw new HttpProblem(405, 'Method Not Allowed', `${method} is not allowed here.`);

      if (p === '/') {
        const report = await overviewNow();
        return page(200, { title: 'Overview', section: 'overview' }, pages.overviewPage(report));
      }
      if (top === 'databases' && id && parts.length === 2) {
        const db = idOf(id, 'database');
        let report: HealthReport;
        if (views.length > 1) {
          // a fleet's database by its id: the pages are about it from now on
          const named = views.find((v) => v.id === db);
          if (!named) throw new HttpProblem(404, 'Not Found', `No database "${db}" in the config (it serves ${ids.join(', ')}).`);
          choose(named);
          report = fleetReport([{ id: db, report: await named.healthNow() }]);
        } else report = await view.healthNow();
        const d = report.databases.find((x) => x.database === db);
        if (!d) throw new HttpProblem(404, 'Not Found', `No database "${db}" in the config (it serves ${view.name}).`);
        const trend = await fullTrend(view.engine, view.name);
        return page(200, { title: db, section: 'overview', charts: trend.length > 1 }, pages.databasePage(report, d, trend));
      }
      if (top === 'tenants' && parts.length === 1) {
        const q = url.searchParams.get('q') ?? '';
        if (q.length > 128) throw new HttpProblem(400, 'Bad Request', 'The tenant search is over 128 characters.');
        const order = url.searchParams.get('order') ?? 'worst';
        if (order !== 'worst' && order !== 'tenant') throw new HttpProblem(400, 'Bad Request', 'order is worst or tenant.');
        const n = pageOf(url);
        const found = await tenantHealthPage(view.engine, { prefix: q.trim() || undefined, order, offset: (n - 1) * pageSize, limit: pageSize, temporal: await view.temporalNow() });
        return page(200, { title: 'Tenants', section: 'tenants' }, pages.tenantsPage(found, q, order, pageSize));
      }
      if (top === 'tenants' && id && parts.length === 2) {
        const tenantId = idOf(id, 'tenant');
        const n = pageOf(url);
        const { engine, config } = view;
        const temporal = await view.temporalNow();
        const [detail, inCatalog] = await Promise.all([tenantHealth(engine, tenantId, { temporal, limit: 10 }), tenantInCatalog(engine, tenantId)]);
        const inDatabase = await view.tenantInDatabase(tenantId);
        if (!detail.known && !inCatalog && inDatabase !== true) {
          throw new HttpProblem(404, 'Not Found', `No tenant "${tenantId}": the catalog has no backup, run or restore of it${inDatabase === false ? ' and the tenant table does not hold it' : ''}.`, 'Search for it on the tenants page.');
        }
        const since = new Date(Date.now() - config.restore.approvalTimeoutMs - 86_400_000);
        const [backups, restores, trend, points, pins, inUse] = await Promise.all([
          tenantBackupsPage(engine, tenantId, (n - 1) * 20, 20),
          restoresPage(engine, { tenantId, offset: 0, limit: 10 }),
          tenantTrend(engine, tenantId),
          tenantRestorePoints(engine, tenantId),
          view.pinsNow(),
          engine.catalog.backupsInUse(since),
        ]);
        const mine = new Set(points.map((x) => x.backupId));
        const policy = { ...config.retention, ...config.retention.tenants[tenantId] };
        const retention = retentionView(points, new Set(pins.map((x) => x.backupId)), inUse, policy, new Date());
        const extras = { trend, retention, pins: pins.filter((x) => mine.has(x.backupId)), override: tenantId in config.retention.tenants };
        return page(200, { title: tenantId, section: 'tenants', charts: trend.length > 1 }, pages.tenantPage(detail, backups, restores.rows, inDatabase, extras));
      }
      if (top === 'restores' && parts.length === 1) {
        const n = pageOf(url);
        const [report, all] = await Promise.all([view.healthNow(), restoresPage(view.engine, { offset: (n - 1) * pageSize, limit: pageSize })]);
        return page(200, { title: 'Restores', section: 'restores' }, pages.restoresPage(report.databases.flatMap((d) => d.approvals.oldest), all));
      }
      if (top === 'restores' && id && parts.length === 2) return restore(idOf(id, 'restore'), url.searchParams.get('done'));
      if (top === 'verifications' && parts.length === 1) {
        const failedOnly = url.searchParams.get('failed') === '1';
        const n = pageOf(url);
        return page(200, { title: 'Verifications', section: 'verifications' }, pages.verificationsPage(await verificationsPage(view.engine, { failedOnly, offset: (n - 1) * pageSize, limit: pageSize }), failedOnly));
      }
      if (top === 'verifications' && id && (parts.length === 2 || (parts.length === 3 && action === 'report.json'))) {
        if (!/^\d{1,18}$/.test(id)) throw new HttpProblem(404, 'Not Found', 'No such verification report.');
        const v = await getVerification(view.engine, Number(id));
        if (!v) throw new HttpProblem(404, 'Not Found', `No verification report ${id}.`);
        if (parts.length === 2) return page(200, { title: `Verification of ${v.backupId}`, section: 'verifications' }, pages.verificationPage(v));
        let body = `${JSON.stringify(v.report, null, 2)}\n`;
        if (v.reportKey && v.reportKey.startsWith('reports/verify/')) body = (await view.engine.store.getBytes(v.reportKey).catch(() => Buffer.from(body))).toString('utf8');
        const file = `verification-${v.backupId}-${v.verifiedAt.replace(/[^0-9TZ]/g, '')}.json`.replace(/[^A-Za-z0-9._-]/g, '_');
        res.writeHead(200, { ...baseHeaders, 'content-type': 'application/json', 'content-disposition': `attachment; filename="${file}"` });
        return res.end(body);
      }
      if (top === 'audit' && parts.length === 1) {
        const tenant = (url.searchParams.get('tenant') ?? '').trim();
        if (tenant.length > 128) throw new HttpProblem(400, 'Bad Request', 'The tenant filter is over 128 characters.');
        const auditAction = url.searchParams.get('action') ?? '';
        if (auditAction && !(auditActions as readonly string[]).includes(auditAction)) throw new HttpProblem(400, 'Bad Request', `"${auditAction.slice(0, 40)}" is not an audit action.`);
        const n = pageOf(url);
        const [entries, chain] = await Promise.all([
          view.engine.audit.page({ tenantId: tenant || undefined, action: auditAction || undefined, offset: (n - 1) * pageSize, limit: pageSize }),
          view.chainNow().then(
            (v) => ({ v, error: null }),
            (err: unknown) => ({ v: null, error: sanitizeMessage(err instanceof Error ? err.message : String(err), secrets) }),
          ),
        ]);
        return page(200, { title: 'Audit log', section: 'audit' }, pages.auditPage(entries, chain.v, chain.error, { tenant, action: auditAction }));
      }
      if (top === 'drills' && id && action === 'report.html' && parts.length === 3) {
        // the report as the drill stored it: its own inline style, no script
        if (!/^\d{8}-\d{6}-[0-9a-f]{8}$/.test(id)) throw new HttpProblem(404, 'Not Found', 'No such drill.');
        const body = await view.engine.store.getBytes(drillPrefix(id) + 'report.html').catch(() => null);
        if (!body) throw new HttpProblem(404, 'Not Found', `No report of drill ${id} in storage.`);
        res.writeHead(200, { ...baseHeaders, 'content-type': 'text/html; charset=utf-8', 'content-security-policy': "default-src 'none'; style-src 'unsafe-inline'" });
        return res.end(body);
      }
      throw new HttpProblem(404, 'Not Found', 'There is no such page.');
    };

    const readForm = async (): Promise<URLSearchParams> => {
      if (!/^application\/x-www-form-urlencoded\b/i.test(req.headers['content-type'] ?? '')) throw new HttpProblem(415, 'Unsupported Media Type', 'Send the form as the page does.');
      return new URLSearchParams(await readBody(req, maxFormBytes));
    };

    const restore = async (restoreId: string, done: string | null) => {
      const found = await restoreIn(restoreId, view);
      if (found.view !== view) choose(found.view);
      const { rec } = found;
      const ref = { workflowId: rec.workflowId, runId: rec.runId };
      let status: TenantRestoreStatus | null = null;
      let statusError: string | null = null;
      try {
        status = await Promise.race([client.restores.status(ref), new Promise<never>((_, reject) => setTimeout(() => reject(new Error('no answer within 5 s')), 5000).unref())]);
      } catch (err) {
        statusError = pages.reasonText(err instanceof Error ? err.message : String(err));
      }
      const state = status?.state ?? rec.state;
      const subject = `${restoreId}\n${status?.preview?.digest ?? ''}`;
      const deciding = state === 'awaiting-approval' && !!status?.preview;
      const forms: pages.RestoreForms = {
        readOnly: user!.role !== 'operator',
        ...(deciding && user!.role === 'operator'
          ? {
              approve: auth.formToken(user!.name, 'approve', subject),
              reject: auth.formToken(user!.name, 'reject', subject),
              ...(status!.requestedBy === user!.name ? { cannotApprove: `You (${user!.name}) requested this restore: someone else has to approve it (four-eyes). You may still reject it.` } : {}),
            }
          : {}),
      };
      const flash = done === 'approved' ? { level: 'ok' as const, text: `Approved by ${user!.name}.` } : done === 'rejected' ? { level: 'warning' as const, text: `Rejected by ${user!.name}.` } : null;
      const row = { restoreId: rec.restoreId, tenantId: rec.tenantId, backupId: rec.backupId ?? null, state: rec.state, requestedBy: rec.requestedBy, approvedBy: rec.approvedBy ?? [], error: rec.error ?? null, createdAt: '', updatedAt: '', workflowId: rec.workflowId, runId: rec.runId };
      return page(200, { title: `Restore ${restoreId}`, section: 'restores', flash, ...(['previewing', 'applying', 'verifying'].includes(state) ? { refreshSeconds: 2 } : {}) }, pages.restorePage(row, status, statusError, runLink(view.config, rec.workflowId, rec.runId), forms));
    };

    /** An approval the client refused before signalling: the workflow never saw it, so it is recorded here. */
    const recordRefusal = (engine: Engine, via: RefusedVia, approval: { by: string; digest: string }) => (refusal: { reason: string }, restore: TenantRestoreStatus) =>
      engine.audit.appendBestEffort(refusedApproval({ restore }, approval, refusal.reason, via));

    const decide = async (restoreId: string, action: 'approve' | 'reject') => {
      if (user!.role !== 'operator') throw new HttpProblem(403, 'Forbidden', `${user!.name} has the read-only role: ${action === 'approve' ? 'approving' : 'rejecting'} a restore needs an operator. Nothing was done.`);
      const form = await readForm();
      const digest = form.get('digest') ?? '';
      const verdict = auth.useFormToken(form.get('csrf'), user!.name, action, `${restoreId}\n${digest}`);
      if (verdict !== 'ok') {
        const why = {
          invalid: 'The form is not valid for you, this restore and this preview (a missing or forged token)',
          expired: 'The form expired',
          used: 'This form was already sent once',
        }[verdict];
        throw new HttpProblem(403, 'Forbidden', `${why}: nothing was done.`, 'Open the restore again and decide on the preview it shows now.');
      }
      const { view: at, rec } = await restoreIn(restoreId, view);
      const ref = { workflowId: rec.workflowId, runId: rec.runId };
      if (action === 'approve') await client.restores.approve(ref, { by: user!.name, digest }, { onRefused: recordRefusal(at.engine, 'dashboard', { by: user!.name, digest }) });
      else {
        const reason = (form.get('reason') ?? '').trim().slice(0, 500);
        const before = await client.restores.status(ref);
        if (before.state !== 'awaiting-approval' || (before.preview?.digest ?? '') !== digest) {
          throw new HttpProblem(409, 'Conflict', `Restore ${restoreId} is ${before.state}${before.state === 'awaiting-approval' ? ' with a new preview' : ''}; nothing was done.`, 'Open the restore again.');
        }
        await client.restores.reject(ref, { by: user!.name, ...(reason ? { reason } : {}) });
      }
      return redirect(`/restores/${encodeURIComponent(restoreId)}?done=${action === 'approve' ? 'approved' : 'rejected'}`);
    };

    const api = async (url: URL) => {
      const who = await auth.authenticate({ authorization: req.headers.authorization });
      if (!who.principal) return sendJson(401, { error: 'missing or wrong bearer token' }, { 'www-authenticate': 'Bearer realm="tenantsafe"' });
      const caller = who.principal;
      const m = /^\/api\/restores\/([^/]+)(?:\/(approve|reject))?$/.exec(url.pathname);
      if (!m) return sendJson(404, { error: 'not found' });
      const restoreId = idOf(m[1], 'restore');
      // the database whose catalog holds the restore (with several: docs/fleet.md)
      const refOf = async () => {
        const { view: at, rec } = await restoreIn(restoreId, views[0]);
        return { engine: at.engine, ref: { workflowId: rec.workflowId, runId: rec.runId } };
      };
      if (req.method === 'GET' && !m[2]) return sendJson(200, await client.restores.status((await refOf()).ref));
      if (req.method !== 'POST' || !m[2]) return sendJson(405, { error: 'method not allowed' });
      if (caller.role !== 'operator') return sendJson(403, { error: `${caller.name} has the read-only role: ${m[2]} needs an operator` });
      if (!/^application\/json\b/i.test(req.headers['content-type'] ?? '')) return sendJson(415, { error: 'send the body as application/json' });
      const body = jsonBody(await readBody(req, 64 * 1024));
      // who decides: the caller itself, or (a relaying service, dashboard.token) the person it names
      let by = caller.name;
      if (caller.relay) by = text(body.by, 'by');
      else if (body.by !== undefined && body.by !== caller.name) return sendJson(403, { error: `${caller.name} decides as itself: "by" may only name ${caller.name}` });
      const { engine, ref } = await refOf();
      if (m[2] === 'approve') {
        const approval = { by, digest: text(body.digest, 'digest') };
        return sendJson(200, await client.restores.approve(ref, approval, { onRefused: recordRefusal(engine, 'api', approval) }));
      }
      return sendJson(200, await client.restores.reject(ref, { by, reason: typeof body.reason === 'string' ? body.reason : undefined }));
    };

    route().catch((err: unknown) => {
      if (res.headersSent) {
        res.destroy();
        return;
      }
      let problem: HttpProblem;
      if (err instanceof HttpProblem) problem = err;
      else {
        const type = err instanceof TenantsafeError || err instanceof WorkflowError ? err.type : undefined;
        const message = sanitizeMessage(err instanceof Error ? err.message : String(err), secrets);
        const [reason, hint] = message.split(' HINT: ');
        if (type === ErrorType.RestoreNotFound) problem = new HttpProblem(404, 'Not Found', reason, hint);
        else if (type === ErrorType.ApprovalInvalid) problem = new HttpProblem(409, 'Conflict', `Refused: ${reason.replace(/\.$/, '')}; nothing was done.`, hint);
        else if (isBadInput(type)) problem = new HttpProblem(400, 'Bad Request', reason, hint);
        else {
          log(`dashboard: ${req.method} ${(req.url ?? '').split('?')[0].slice(0, 200)} failed: ${message}`);
          problem = new HttpProblem(500, 'Internal Server Error', reason, hint);
        }
        if (isApi) {
          // the API's answers as before: the engine's message and type
          return sendJson(problem.status, { error: message, type: type ?? 'Error' });
        }
      }
      if (isApi) return sendJson(problem.status, { error: problem.message });
      problemPage(problem);
    });
  });
  server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
    if (!socket.writable) return socket.destroy();
    const tooBig = err.code === 'HPE_HEADER_OVERFLOW';
    const body = tooBig ? `The request line or headers are over ${maxHeaderBytes / 1024} KiB; nothing was done.\n` : 'The request could not be read.\n';
    socket.end(`HTTP/1.1 ${tooBig ? 414 : 400} ${tooBig ? 'URI Too Long' : 'Bad Request'}\r\ncontent-type: text/plain\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.dashboard.port, config.dashboard.host, () => resolve());
  });
  const addr = server.address() as AddressInfo;
  return {
    url: `http://${config.dashboard.host}:${addr.port}`,
    close: () =>
      new Promise((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
        setTimeout(() => server.closeAllConnections(), 2000).unref();
      }),
  };
}

/** Where to go after signing in: a path of ours, never another site. */
function safeNext(next: string | null): string {
  return next && /^\/(?![/\\])[^\s]*$/.test(next) && next.length <= 1024 ? next : '/';
}
