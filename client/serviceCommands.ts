// CLI commands that run tenantsafe itself rather than ask it something: the dashboard, a worker,
// the dev stack, and the demo on that stack. Each action requires what it runs (see cli.ts).
import type { Command } from 'commander';
import { defaultDevLayout } from '../lib/config';
import { Engine } from '../lib/engine';
import type { CliCommand } from './cliCommand';
import { config, fleetConfig, globals, portNumber, withClientOf } from './commandHelpers';
import { ErrorType, TenantsafeError } from '../lib/errors';
import { emit } from './output';

type LayoutFlags = { home: string; pgPort: number; temporalPort: number; uiPort: number; dashboardPort?: number };

const log = (line: string) => process.stderr.write(`${line}\n`);

const untilInterrupted = () => new Promise<void>((resolve) => process.once('SIGINT', () => resolve()).once('SIGTERM', () => resolve()));

export function registerDashboardCommand(program: CliCommand): void {
  program
    .command('dashboard')
    .description('serve the dashboard (pages, the restore approval API, /metrics) until interrupted; with several databases, every one unless --database names one')
    .example('tenantsafe dashboard --config /etc/tenantsafe/tenantsafe.yaml')
    .action(async (_opts: unknown, cmd: Command) => {
      const { TenantsafeClient } = require('./client') as typeof import('./client');
      const { startDashboardServer } = require('./server') as typeof import('./server');
      // with several databases: every one (docs/fleet.md), or the one --database names
      const cfg = globals(cmd).database === undefined ? fleetConfig(cmd) : config(cmd);
      const engine = new Engine(cfg);
      const client = await TenantsafeClient.connect(cfg.temporal);
      const server = await startDashboardServer(cfg, engine, client);
      process.stderr.write(`tenantsafe dashboard: ${server.url}\n`);
      await untilInterrupted();
      await server.close();
      await client.close();
      await engine.close();
    });
}

export function registerHashSecretCommand(program: CliCommand): void {
  program
    .command('hash-secret')
    .description("hash a dashboard user's password (or, with --token, a long random token) read from stdin, for tenantsafe.yaml")
    .option('--token', 'a token of 32 characters or more: a fast sha256 hash (a password gets scrypt)')
    .example('printf %s "$PASSWORD" | tenantsafe hash-secret', 'openssl rand -base64 32 | tenantsafe hash-secret --token')
    .action(async (opts: { token?: boolean }, cmd: Command) => {
      const { hashPassword, hashToken, minTokenLength } = require('../lib/secretHash') as typeof import('../lib/secretHash');
      const chunks: Buffer[] = [];
      for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
      const secret = Buffer.concat(chunks).toString('utf8').replace(/\r?\n$/, '');
      if (secret === '') throw new TenantsafeError(ErrorType.BadInput, 'No secret on stdin.', 'Pipe it in: printf %s "$PASSWORD" | tenantsafe hash-secret');
      if (opts.token && secret.length < minTokenLength) {
        throw new TenantsafeError(ErrorType.BadInput, `A token hashed with --token must be at least ${minTokenLength} characters (a fast hash of a short one could be guessed).`, 'Make one with `openssl rand -base64 32`, or hash a password without --token.');
      }
      const hash = opts.token ? hashToken(secret) : await hashPassword(secret);
      emit(globals(cmd), { hash }, () => hash);
    });
}

export function registerWorkerCommand(program: CliCommand): void {
  program
    .command('worker')
    .description('run a worker on the configured task queue until interrupted; it serves every database of the config')
    .example('tenantsafe worker --config /etc/tenantsafe/tenantsafe.yaml')
    .action(async (_opts: unknown, cmd: Command) => {
      const { runWorkerUntilSignal } = require('../workers/main') as typeof import('../workers/main');
      if (globals(cmd).database !== undefined) throw new TenantsafeError(ErrorType.BadInput, 'A worker serves every database of the config: --database does not narrow it.', 'Leave --database out (to serve fewer databases, give the worker a config that names only those, on a task queue of its own).');
      await runWorkerUntilSignal(fleetConfig(cmd));
    });
}

/** `dev` and `demo`, which share the options of the embedded stack's layout. */
export function registerDevCommands(program: CliCommand): void {
  const layoutOptions = (cmd: CliCommand) =>
    cmd
      .option('--home <dir>', 'where the embedded stack keeps its cluster, Temporal state and backups', defaultDevLayout.home)
      .option('--pg-port <n>', 'port of the private Postgres', portNumber('--pg-port'), defaultDevLayout.pgPort)
      .option('--temporal-port <n>', 'port of the Temporal dev server', portNumber('--temporal-port'), defaultDevLayout.temporalPort)
      .option('--ui-port <n>', 'port of the Temporal Web UI', portNumber('--ui-port'), defaultDevLayout.uiPort)
      .option('--dashboard-port <n>', 'port of the dashboard (default: dashboard.port of the config, 8080)', portNumber('--dashboard-port'));

  layoutOptions(program.command('dev'))
    .description('start Temporal (dev server), a worker and, with no config, a private Postgres with the sample database')
    .example('tenantsafe dev', 'tenantsafe dev --temporal-port 7234 --ui-port 8234')
    .action(async (opts: LayoutFlags, cmd: Command) => {
      const { startDevStack } = require('./dev') as typeof import('./dev');
      const stack = await startDevStack({ configPath: globals(cmd).config, layout: opts, log, ...(opts.dashboardPort ? { dashboardPort: opts.dashboardPort } : {}) });
      log('tenantsafe dev: up; Ctrl-C stops it');
      await untilInterrupted();
      await stack.stop();
    });

  layoutOptions(program.command('demo'))
    .description('the main job end to end on the embedded defaults: back up a tenant, damage it, preview, approve, restore, verify')
    .option('--tenant <tenantId>', 'the tenant to work on', 'globex')
    .option('--keep', 'leave the stack running afterwards')
    .example('tenantsafe demo', 'tenantsafe demo --tenant acme --keep')
    .exits({ 1: 'the restored tenant does not match its backup, or the stack did not start' })
    .action(async (opts: LayoutFlags & { tenant: string; keep?: boolean }, cmd: Command) => {
      const { runDemo } = require('./demo') as typeof import('./demo');
      const out = await runDemo({ configPath: globals(cmd).config, layout: opts, log, tenantId: opts.tenant, keep: !!opts.keep, ...(opts.dashboardPort ? { dashboardPort: opts.dashboardPort } : {}) });
      emit(globals(cmd), out, () =>
        out.tenantMatchesBackup
          ? `Demo done: tenant ${out.tenantId} restored from ${out.backup.backupId} and verified equal to it (restore ${out.restore.restoreId}).`
          : `Demo FAILED: tenant ${out.tenantId} does not match its backup after restore ${out.restore.restoreId}.`,
      );
      if (!out.tenantMatchesBackup) process.exitCode = 1;
    });
}

export function registerTemporalCommands(program: CliCommand): void {
  const temporal = program.command('temporal').description('the Temporal server tenantsafe runs on');
  temporal
    .command('setup')
    .description('register the search attributes tenantsafe sets (TenantId, BackupKind, Database: Keyword) in the configured namespace; idempotent. Once per namespace on a real cluster (the dev server has them)')
    .example('tenantsafe temporal setup --config /etc/tenantsafe/tenantsafe.yaml')
    .action(async (_opts: unknown, cmd: Command) => {
      const out = await withClientOf(cmd, (c) => c.registerSearchAttributes(), { anyDatabase: true });
      emit(globals(cmd), out, () =>
        [...out.registered.map((n) => `registered ${n} (Keyword)`), ...out.present.map((n) => `${n} (Keyword) was there`)].join('\n'),
      );
    });
}
