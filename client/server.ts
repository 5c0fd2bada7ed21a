// The dashboard server's HTTP API. For now: the restore relay, so services without a Temporal
// client can look at a restore and approve or reject it (other services approve by a
// signal, or through this API). Every /api request needs `Authorization: Bearer <token>`.
//
//   GET  /healthz
//   GET  /metrics                                 → Prometheus metrics (monitoring.metricsToken, when set, as a bearer token)
//   GET  /api/restores/:restoreId                 → status
//   POST /api/restores/:restoreId/approve {by, digest}
//   POST /api/restores/:restoreId/reject  {by, reason?}
import { timingSafeEqual } from 'node:crypto';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Config } from '../lib/config';
import type { Engine } from '../lib/engine';
import { ErrorType, isBadInput, TenantsafeError } from '../lib/errors';
import { HealthCache, processRegistry, registerHealthMetrics, serveMetrics } from '../lib/monitoring/metrics';
import type { TenantsafeClient } from './client';
import { collectHealth } from './health';
import { WorkflowError } from './workflowError';

export interface DashboardServer {
  url: string;
  close(): Promise<void>;
}

function tokenMatches(header: string | undefined, token: string): boolean {
  const given = Buffer.from(/^Bearer (.+)$/.exec(header ?? '')?.[1] ?? '');
  const expected = Buffer.from(token);
  return given.length === expected.length && timingSafeEqual(given, expected);
}

async function readJson(req: http.IncomingMessage): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > 64 * 1024) throw new TenantsafeError(ErrorType.BadInput, 'Request body over 64 KiB.', 'Send {by, digest} or {by, reason}.');
    chunks.push(chunk as Buffer);
  }
  try {
    const body = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}');
    if (body && typeof body === 'object' && !Array.isArray(body)) return body;
  } catch {
    // reported below
  }
  throw new TenantsafeError(ErrorType.BadInput, 'The request body is not a JSON object.', 'Send {"by": "...", "digest": "..."}.');
}

function text(v: unknown, name: string): string {
  if (typeof v !== 'string' || v.trim() === '') throw new TenantsafeError(ErrorType.BadInput, `"${name}" is required.`, `Send a JSON body with "${name}".`);
  return v;
}

export async function startDashboardServer(config: Config, engine: Engine, client: TenantsafeClient): Promise<DashboardServer> {
  const { host, port, token } = config.dashboard;
  if (!token) {
    throw new TenantsafeError(ErrorType.BadConfig, 'dashboard.token is not set: the HTTP API would accept approvals from anyone.', 'Set dashboard.token (e.g. ${TENANTSAFE_DASHBOARD_TOKEN}) in the config.');
  }
  // /metrics: the catalog-derived gauges (lib/monitoring) and this process's own
  const registry = processRegistry();
  const memo = {}; // the tenancy plan and workflow scopes, found again every 10 minutes
  const health = new HealthCache(() => collectHealth(engine, client.temporal, { memo }), config.monitoring.cacheTtlMs);
  registerHealthMetrics(registry, health);
  const refOf = async (restoreId: string) => {
    const r = await engine.catalog.getRestore(restoreId);
    return { workflowId: r.workflowId, runId: r.runId };
  };

  const server = http.createServer((req, res) => {
    const send = (code: number, body: unknown) => {
      res.writeHead(code, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    const route = async () => {
      const url = new URL(req.url ?? '/', 'http://localhost');
      if (req.method === 'GET' && url.pathname === '/healthz') return send(200, { ok: true });
      if (req.method === 'GET' && url.pathname === '/metrics') return serveMetrics(registry, req, res, config.monitoring.metricsToken);
      if (!url.pathname.startsWith('/api/')) return send(404, { error: 'not found' });
      if (!tokenMatches(req.headers.authorization, token)) return send(401, { error: 'missing or wrong bearer token' });
      const m = /^\/api\/restores\/([^/]+)(?:\/(approve|reject))?$/.exec(url.pathname);
      if (!m) return send(404, { error: 'not found' });
      const restoreId = decodeURIComponent(m[1]);
      if (req.method === 'GET' && !m[2]) return send(200, await client.restores.status(await refOf(restoreId)));
      if (req.method !== 'POST' || !m[2]) return send(405, { error: 'method not allowed' });
      const body = await readJson(req);
      const ref = await refOf(restoreId);
      if (m[2] === 'approve') return send(200, await client.restores.approve(ref, { by: text(body.by, 'by'), digest: text(body.digest, 'digest') }));
      return send(200, await client.restores.reject(ref, { by: text(body.by, 'by'), reason: typeof body.reason === 'string' ? body.reason : undefined }));
    };
    route().catch((err: unknown) => {
      const type = err instanceof TenantsafeError || err instanceof WorkflowError ? err.type : undefined;
      const code = type === ErrorType.RestoreNotFound ? 404 : type === ErrorType.ApprovalInvalid ? 409 : isBadInput(type) ? 400 : 500;
      send(code, { error: err instanceof Error ? err.message : String(err), type: type ?? 'Error' });
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  const addr = server.address() as AddressInfo;
  return {
    url: `http://${host}:${addr.port}`,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
