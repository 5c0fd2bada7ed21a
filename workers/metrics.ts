// The worker's /metrics (worker.metricsPort; 0: off): what its activities measure as they finish,
// through an activity interceptor (the activities stay as they are), and the gauges derived from
// the health model, computed at most every monitoring.cacheTtl.
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Context } from '@temporalio/activity';
import { Client } from '@temporalio/client';
import { ApplicationFailure, TemporalFailure } from '@temporalio/common';
import type { ActivityInterceptorsFactory, NativeConnection } from '@temporalio/worker';
import type { ApplyStepResult } from '../activities/tenantRestore';
import type { FullBackupSummary } from '../activities/fullBackup';
import type { RunRecord } from '../lib/catalog';
import type { ChangeLogProgress } from '../lib/changeLog/capture';
import { databaseIds, type Config } from '../lib/config';
import type { Engine } from '../lib/engine';
import { ErrorType, TenantsafeError } from '../lib/errors';
import { healthCaches, processRegistry, registerHealthMetrics, serveMetrics, WorkerMetrics } from '../lib/monitoring/metrics';
import type { TenantBackupSummary } from '../lib/tenantBackup';
import type { WalArchiverProgress } from '../lib/wal/archiver';
import { healthSources } from '../client/health';

export interface WorkerMonitoring {
  metrics: WorkerMetrics;
  /** http://host:port/metrics */
  url: string;
  interceptor: ActivityInterceptorsFactory;
  close(): Promise<void>;
}

/** The error type a failed activity reports (its ApplicationFailure type, else the error's name). */
function errorTypeOf(err: unknown): string {
  let e: unknown = err;
  while (e instanceof TemporalFailure && !(e instanceof ApplicationFailure) && e.cause) e = e.cause;
  if (e instanceof ApplicationFailure && e.type) return e.type;
  if (e instanceof TenantsafeError) return e.type;
  if (e instanceof Error && e.name && e.name !== 'Error') return e.name;
  return 'Error';
}

const verificationSteps: Record<string, string> = {
  verifyManifestAndObjects: 'objects',
  verifyWal: 'wal',
  restoreTestFullBackup: 'restore_test',
  restoreTestTenantBackup: 'restore_test',
};
const restoreSteps: Record<string, string> = { previewTenantRestore: 'preview', applyTenantRestore: 'apply', verifyTenantRestore: 'verify' };

/** Records what one finished activity attempt tells: durations, sizes, results, failures. */
export function recordActivity(m: WorkerMetrics, activity: string, args: unknown[], seconds: number, result: unknown): void {
  const input = args[0] as Record<string, unknown> | undefined;
  const db = m.databaseOf(input);
  if (activity === 'takeTenantBackup') {
    const r = result as TenantBackupSummary;
    m.backupDuration.observe({ kind: 'tenant', ...db }, seconds);
    m.backupBytes.inc({ kind: 'tenant', ...db }, r.bytes);
    m.backupRows.inc({ kind: 'tenant', ...db }, r.rows);
  } else if (activity === 'takeFullBackup') {
    const r = result as FullBackupSummary;
    m.backupDuration.observe({ kind: 'full', ...db }, seconds);
    m.backupBytes.inc({ kind: 'full', ...db }, r.bytes);
  } else if (restoreSteps[activity]) {
    m.restoreDuration.observe({ step: restoreSteps[activity], ...db }, seconds);
    const applied = activity === 'applyTenantRestore' ? (result as ApplyStepResult) : null;
    if (applied?.kind === 'applied' && !applied.result.alreadyApplied) {
      for (const t of Object.values(applied.result.applied)) {
        for (const change of ['insert', 'update', 'delete'] as const) if (t[change] > 0) m.restoreRows.inc({ change, ...db }, t[change]);
      }
    }
  } else if (verificationSteps[activity]) {
    m.verificationDuration.observe({ step: verificationSteps[activity], ...db }, seconds);
  } else if (activity === 'recordVerification') {
    const r = result as { kind: string; ok: boolean };
    m.verifications.inc({ kind: r.kind, result: r.ok ? 'ok' : 'failed', ...db });
  } else if (activity === 'recordRun') {
    const run = input as unknown as RunRecord;
    if (run?.status === 'failed') m.failures.inc({ workflow: run.workflowType, type: run.errorType ?? 'unknown', ...db });
  } else if (activity === 'archiveWal') {
    m.walSegments.inc(db, (result as WalArchiverProgress).segmentsArchived);
  } else if (activity === 'streamChanges') {
    m.changeLogTransactions.inc(db, (result as ChangeLogProgress).transactions);
  }
}

/** The interceptor: times every activity attempt and records it; a failure is counted by type. */
export function metricsInterceptor(m: WorkerMetrics): ActivityInterceptorsFactory {
  return () => ({
    inbound: {
      async execute(input, next) {
        const started = process.hrtime.bigint();
        let result: unknown;
        try {
          result = await next(input);
        } catch (err) {
          m.activityFailures.inc({ activity: Context.current().info.activityType, type: errorTypeOf(err), ...m.databaseOf(input.args[0]) });
          throw err;
        }
        try {
          recordActivity(m, Context.current().info.activityType, input.args, Number(process.hrtime.bigint() - started) / 1e9, result);
        } catch {
          // a result of an unexpected shape: the activity's outcome stands
        }
        return result;
      },
    },
  });
}

/**
 * Starts the /metrics listener (worker.metricsHost:metricsPort) with the worker's measurements and
 * the catalog-derived gauges, and warms the health report; null when metricsPort is 0.
 */
export async function startWorkerMonitoring(config: Config, engine: Engine, connection: NativeConnection): Promise<WorkerMonitoring | null> {
  const { metricsHost, metricsPort } = config.worker;
  if (metricsPort === 0) return null;
  const registry = processRegistry();
  // with several databases (docs/fleet.md) each measurement has its database's id
  const metrics = new WorkerMetrics(registry, databaseIds(config).length > 0 ? config.databaseId : undefined);
  const client = new Client({ connection, namespace: config.temporal.namespace });
  const sources = healthSources(engine, client, config.monitoring.cacheTtlMs);
  registerHealthMetrics(registry, sources);
  const server = http.createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://localhost').pathname;
    if (req.method !== 'GET' || path !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('tenantsafe worker: GET /metrics\n');
      return;
    }
    serveMetrics(registry, req, res, config.monitoring.metricsToken).catch((err: unknown) => {
      res.writeHead(500, { 'content-type': 'text/plain' });
      res.end(`${err instanceof Error ? err.message : String(err)}\n`);
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) =>
      reject(
        new TenantsafeError(
          ErrorType.BadConfig,
          `The worker cannot serve /metrics on ${metricsHost}:${metricsPort}: ${err.code ?? err.message}.`,
          'Set worker.metricsPort to a free port (each worker on a host needs its own), or 0 to turn the listener off.',
        ),
      ),
    );
    server.listen(metricsPort, metricsHost, () => resolve());
  });
  for (const { cache } of healthCaches(sources)) void cache.refresh();
  const port = (server.address() as AddressInfo).port;
  return {
    metrics,
    url: `http://${metricsHost.includes(':') ? `[${metricsHost}]` : metricsHost}:${port}/metrics`,
    interceptor: metricsInterceptor(metrics),
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
