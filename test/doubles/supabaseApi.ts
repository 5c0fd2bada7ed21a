// A local double of the Supabase Management API (backups, PITR, project status) for tests and
// `tenantsafe dev`: plain node:http, holding itself to the published OpenAPI shapes. Every
// request is checked (bearer token, path parameters, JSON body against the spec) and every
// response it sends is validated against the spec's schema first; a response that does not
// conform is recorded in `violations` (tests assert there are none).
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';
import { findOperation, validate, type OpenApiDocument } from './openapi';

export const supabaseSpecFile = path.join(__dirname, 'supabase-management-api.backups.openapi.json');

export interface FakeProject {
  ref: string;
  name: string;
  pitrEnabled: boolean;
  /** unix seconds */
  earliestBackup: number;
  latestBackup: number;
  backups: { id: number; status: 'COMPLETED' | 'FAILED'; insertedAt: string }[];
  status: string;
}

export interface FakeSupabase {
  url: string;
  token: string;
  projects: Map<string, FakeProject>;
  /** every request: method, path, the status answered */
  requests: { method: string; path: string; status: number }[];
  /** PITR restores asked for */
  restores: { ref: string; recoveryTimeTargetUnix: number }[];
  /** responses of ours that broke the spec (should stay empty) */
  violations: string[];
  /** the next `count` requests get 429 with this Retry-After (seconds) */
  rateLimit(count: number, retryAfterSeconds: number): void;
  stop(): Promise<void>;
}

/** How many status polls a project stays RESTORING after a PITR request. */
const restoringPolls = 2;

export async function startFakeSupabase(opts: { token: string; projects: FakeProject[] }): Promise<FakeSupabase> {
  const spec = JSON.parse(readFileSync(supabaseSpecFile, 'utf8')) as OpenApiDocument;
  const projects = new Map(opts.projects.map((p) => [p.ref, p]));
  const restoring = new Map<string, number>();
  let limited = { count: 0, retryAfter: 0 };
  const fake: Omit<FakeSupabase, 'url' | 'stop'> = {
    token: opts.token,
    projects,
    requests: [],
    restores: [],
    violations: [],
    rateLimit: (count, retryAfterSeconds) => (limited = { count, retryAfter: retryAfterSeconds }),
  };

  const send = (res: ServerResponse, req: IncomingMessage, status: number, body?: unknown, schemaOf?: () => unknown, headers: Record<string, string> = {}) => {
    const schema = schemaOf?.();
    if (schema && body !== undefined) fake.violations.push(...validate(spec, schema as never, body).map((p) => `${req.method} ${req.url} ${status}: ${p}`));
    fake.requests.push({ method: req.method!, path: req.url!, status });
    res.writeHead(status, { ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...headers }).end(body !== undefined ? JSON.stringify(body) : undefined);
  };

  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const found = findOperation(spec, req.method!, new URL(req.url!, 'http://x').pathname);
      if (!found) return send(res, req, 404, { message: 'Cannot find the requested resource' });
      const { operation, params } = found;
      if (req.headers.authorization !== `Bearer ${fake.token}`) return send(res, req, 401, { message: 'Unauthorized' });
      if (limited.count > 0) {
        limited.count--;
        return send(res, req, 429, { message: 'Too many requests' }, undefined, { 'retry-after': String(limited.retryAfter) });
      }
      for (const p of operation.parameters ?? []) {
        const problems = p.in === 'path' ? validate(spec, p.schema, params[p.name], p.name) : [];
        if (problems.length) return send(res, req, 400, { message: problems.join('; ') });
      }
      const bodySchema = operation.requestBody?.content['application/json']?.schema;
      let body: unknown;
      if (bodySchema) {
        try {
          body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
        } catch {
          return send(res, req, 400, { message: 'Body must be JSON' });
        }
        const problems = validate(spec, bodySchema, body, 'body');
        if (problems.length) return send(res, req, 400, { message: problems.join('; ') });
      }
      const project = projects.get(params.ref);
      if (!project) return send(res, req, 404, { message: 'Project not found' });
      const responseSchema = (status: number) => () => operation.responses[String(status)]?.content?.['application/json']?.schema;
      switch (operation.operationId) {
        case 'v1-list-all-backups':
          return send(res, req, 200, {
            region: 'eu-central-1',
            walg_enabled: true,
            pitr_enabled: project.pitrEnabled,
            backups: project.backups.map((b) => ({ id: b.id, is_physical_backup: true, status: b.status, inserted_at: b.insertedAt })),
            physical_backup_data: project.pitrEnabled ? { earliest_physical_backup_date_unix: project.earliestBackup, latest_physical_backup_date_unix: project.latestBackup } : {},
          }, responseSchema(200));
        case 'v1-restore-pitr-backup': {
          const target = (body as { recovery_time_target_unix: number }).recovery_time_target_unix;
          if (!project.pitrEnabled) return send(res, req, 400, { message: 'PITR is not enabled for this project' });
          fake.restores.push({ ref: project.ref, recoveryTimeTargetUnix: target });
          project.status = 'RESTORING';
          restoring.set(project.ref, restoringPolls);
          return send(res, req, 201);
        }
        case 'v1-get-project': {
          const left = restoring.get(project.ref);
          if (left !== undefined) {
            if (left <= 0) {
              restoring.delete(project.ref);
              project.status = 'ACTIVE_HEALTHY';
            } else restoring.set(project.ref, left - 1);
          }
          return send(res, req, 200, {
            id: project.ref,
            ref: project.ref,
            organization_id: 'tsrqponmlkjihgfedcba',
            organization_slug: 'tsrqponmlkjihgfedcba',
            name: project.name,
            region: 'eu-central-1',
            created_at: '2026-01-01T00:00:00Z',
            status: project.status,
            database: { host: `db.${project.ref}.supabase.co`, version: '15.8.1', postgres_engine: '15', release_channel: 'ga' },
          }, responseSchema(200));
        }
        default:
          return send(res, req, 501, { message: `${operation.operationId} is not served by this double` });
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    ...fake,
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    rateLimit: fake.rateLimit,
    stop: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
