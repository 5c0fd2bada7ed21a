// What the CLI's command modules share: the global options, the engine or Temporal client a
// command runs with, option parsers and how sizes are printed.
import * as os from 'node:os';
import { Option, type Command } from 'commander';
import { databaseIds, forDatabase, loadConfig, type Config } from '../lib/config';
import { Engine } from '../lib/engine';
import { ErrorType, TenantsafeError } from '../lib/errors';
import { parseDuration } from '../lib/duration';
import { parseBackupLabel } from '../lib/labels';
import { storageLocationOf } from '../lib/storage';
import type { StorageLocation } from '../lib/storage/types';
import { CliCommand } from './cliCommand';
import type { TenantsafeClient } from './client';
import type { OutputOptions } from './output';

interface GlobalOptions extends OutputOptions {
  config?: string;
  /** with several databases in the config: the one the command is about (docs/fleet.md) */
  database?: string;
}

export function globals(cmd: Command): GlobalOptions {
  return cmd.optsWithGlobals<GlobalOptions>();
}

/**
 * The config of the database the command is about: the one `--database` names (an id the config
 * does not name: bad input listing them), which is required when the config names several. A
 * single-database config as it is. Disaster recovery's commands (failover, switchover, standby,
 * drills) serve one database: they refuse a config naming several, and there `--database` keeps
 * its older meaning, the database's name (failover, switchover).
 */
export function config(cmd: Command): Config {
  const whole = fleetConfig(cmd);
  const { database } = globals(cmd);
  const ids = databaseIds(whole);
  if (cmd instanceof CliCommand && cmd.isDisasterRecovery()) {
    if (ids.length > 0) {
      throw new TenantsafeError(
        ErrorType.BadInput,
        `Disaster recovery (the standby, failover, switchover, drills) is not per database yet: it serves the one database of a single-database config, and this config names ${ids.length === 1 ? 'its database' : 'several'} under \`databases\` (${ids.join(', ')}); --database does not pick one here.`,
        'Run this command with a config of that one database: `database: { url: ... }` in place of `databases`, the rest as it is (docs/fleet.md, "What is not per database yet").',
      );
    }
    return whole;
  }
  if (database === undefined && ids.length > 1) {
    throw new TenantsafeError(ErrorType.BadInput, `The config names ${ids.length} databases: say which one this command is about.`, `Pass --database <id>, one of: ${ids.join(', ')}.`);
  }
  return forDatabase(whole, database);
}

/** The whole config, every database's view in `databases`: what the worker serves, what lists cover. */
export function fleetConfig(cmd: Command): Config {
  return loadConfig({ path: globals(cmd).config });
}

/**
 * The databases a listing covers: the one `--database` names, else every one of the config; each
 * with its id (null: a single-database config).
 */
function listedDatabases(cmd: Command): { id: string | null; config: Config }[] {
  const whole = fleetConfig(cmd);
  if (globals(cmd).database !== undefined || databaseIds(whole).length === 0) {
    const one = config(cmd);
    return [{ id: one.databaseId ?? null, config: one }];
  }
  return Object.entries(whole.databases).map(([id, view]) => ({ id, config: view }));
}

/** A listed row: with its database's id, when the config names its databases (docs/fleet.md). */
export type Listed<T> = T & { database?: string };

/**
 * A listing of every database's rows (docs/fleet.md): `read` on each listed database's engine, each
 * row with its `database` (none in a single-database config); rows of several databases merged in
 * the order `by` gives (newest first, or `oldestFirst`) and cut to `limit`. `columns`: the table's
 * columns, `database` first when the rows carry one.
 */
export async function listAcrossDatabases<T extends object>(
  cmd: Command,
  read: (engine: Engine) => Promise<T[]>,
  order: { by: (row: T) => string; oldestFirst?: boolean; limit?: number },
  columns: string[] = [],
): Promise<{ rows: Listed<T>[]; columns: string[] }> {
  const listed = listedDatabases(cmd);
  let rows: Listed<T>[] = [];
  for (const { id, config } of listed) {
    const engine = new Engine(config);
    const mine = await read(engine).finally(() => engine.close());
    rows.push(...mine.map((row) => (id === null ? row : { ...row, database: id })));
  }
  if (listed.length > 1) {
    const sign = order.oldestFirst ? 1 : -1;
    rows.sort((a, b) => (order.by(a) < order.by(b) ? sign : order.by(a) > order.by(b) ? -sign : 0));
    if (order.limit !== undefined) rows = rows.slice(0, order.limit);
  }
  return { rows, columns: [...(listed[0].id === null ? [] : ['database']), ...columns] };
}

export async function withEngine<T>(cmd: Command, fn: (engine: Engine) => Promise<T>): Promise<T> {
  const engine = new Engine(config(cmd));
  try {
    return await fn(engine);
  } finally {
    await engine.close();
  }
}

/** A restore's `--from <location>`, checked against the config before anything starts (bad input: exit 2). */
export function fromOption(cmd: Command, value: string | undefined): StorageLocation | undefined {
  return value === undefined ? undefined : storageLocationOf(config(cmd), value);
}

export const fromOptionHelp = 'read the backups from this storage location only: secondary (storage.secondary) or primary; default: the primary, falling over to the secondary';

/** `anyDatabase`: the command is about the Temporal namespace, not one database (schedule list, temporal setup). */
export async function withClientOf<T>(cmd: Command, fn: (client: TenantsafeClient, cfg: Config) => Promise<T>, opts: { anyDatabase?: boolean } = {}): Promise<T> {
  const cfg = opts.anyDatabase ? fleetConfig(cmd) : config(cmd);
  const { TenantsafeClient } = require('./client') as typeof import('./client');
  const client = await TenantsafeClient.connect(cfg.temporal, opts.anyDatabase ? undefined : cfg.databaseId);
  try {
    return await fn(client, cfg);
  } finally {
    await client.close();
  }
}

export function positiveInt(name: string) {
  return (v: string) => {
    if (!/^\d+$/.test(v) || Number(v) < 1) throw new TenantsafeError(ErrorType.BadInput, `${name} must be a positive integer (got "${v}").`, `Pass ${name} <n>.`);
    return Number(v);
  };
}

/** A TCP port option: 1 to 65535. */
export function portNumber(name: string) {
  return (v: string) => {
    if (!/^\d{1,5}$/.test(v) || Number(v) < 1 || Number(v) > 65535) throw new TenantsafeError(ErrorType.BadInput, `${name} must be a port from 1 to 65535 (got "${v}").`, `Pass ${name} <port>, e.g. ${name} 5433.`);
    return Number(v);
  };
}

/** An interval a schedule repeats at: a duration of at least a second. */
export function intervalOption(text: string, name: string): number {
  const ms = parseDuration(text, name);
  if (ms < 1000) throw new TenantsafeError(ErrorType.BadInput, `${name} must be at least 1s (got "${text}").`, `Pass ${name} 24h, say.`);
  return ms;
}

/** An id argument or option that must not be empty (a tenant id, a name): checked before anything is asked. */
export function nonEmpty(value: string, what: string, hint: string): string {
  if (value.trim() === '') throw new TenantsafeError(ErrorType.BadInput, `${what} is empty.`, hint);
  return value;
}

/** A backup id as the CLI takes it: a backup label (20261125-093000T-1a2b3c), else BackupNotFound before anything is asked. */
export function backupIdArg(backupId: string): string {
  if (!parseBackupLabel(backupId)) {
    throw new TenantsafeError(ErrorType.BackupNotFound, `There is no backup "${backupId}": backup ids look like 20261125-093000T-1a2b3c.`, 'List backups with `tenantsafe backups list` or `tenantsafe full-backups list`.');
  }
  return backupId;
}

const restoreIdPattern = /^\d{8}-\d{6}R-[0-9a-f]{6}$/;

/** A restore id (20261125-094500R-4d5e6f), else RestoreNotFound before the catalog is asked. */
export function restoreIdArg(restoreId: string): string {
  if (!restoreIdPattern.test(restoreId)) {
    throw new TenantsafeError(ErrorType.RestoreNotFound, `There is no restore "${restoreId}": restore ids look like 20261125-094500R-4d5e6f.`, 'Copy the id `tenantsafe restore tenant` printed; `tenantsafe restore list` shows them.');
  }
  return restoreId;
}

/** A preview digest: the 64 hex digits `restore tenant` and `restore status` print. */
export function digestArg(digest: string): string {
  if (!/^[0-9a-f]{64}$/.test(digest)) {
    throw new TenantsafeError(ErrorType.BadInput, `--digest must be the preview's digest, 64 hex digits (got "${digest.slice(0, 80)}").`, 'Copy previewDigest from `tenantsafe restore status <restoreId>`.');
  }
  return digest;
}

/** A decider's --by (approve, reject): a name, checked before anything is asked. */
export function deciderArg(by: string): string {
  return nonEmpty(by, '--by', 'Pass --by <who> (someone other than the requester).');
}

export const list = (v: string) => v.split(',').map((x) => x.trim()).filter(Boolean);

/** $TENANTSAFE_USER, else the OS login; undefined when neither is known (a container without a passwd entry). */
export function defaultUser(): string | undefined {
  if (process.env.TENANTSAFE_USER) return process.env.TENANTSAFE_USER;
  try {
    return os.userInfo().username || undefined;
  } catch {
    return process.env.USER || undefined;
  }
}

/**
 * `--by` of a command that asks for something (restore tenant, failover, switchover, backups
 * pin): defaults to $TENANTSAFE_USER, else the OS login. The commands that decide (restore and
 * failover approve/reject) take --by as a required option instead: under four-eyes a decision
 * names a person, never whoever happens to be logged in (README, CLI).
 */
export function requesterOption(description = 'who asks'): Option {
  return new Option('--by <who>', description).default(defaultUser(), '$TENANTSAFE_USER, else your login name');
}

/** The requester a command records: --by or its default, or bad input when neither is known. */
export function requester(by: string | undefined): string {
  if (by && by.trim() !== '') return by;
  throw new TenantsafeError(ErrorType.BadInput, 'Say who asks: neither --by, $TENANTSAFE_USER nor a login name is known.', 'Pass --by <who>, or set TENANTSAFE_USER.');
}

/** A decider's --by (approve, reject): required, described the same way everywhere. */
export const deciderHelp = (verb: string) => `who ${verb} (not the requester); never defaulted: a decision names a person`;

export const sizeText = (n: number | null) => (n === null ? '-' : n >= 1 << 20 ? `${(n / (1 << 20)).toFixed(1)} MiB` : n >= 1024 ? `${(n / 1024).toFixed(1)} KiB` : `${n} B`);
