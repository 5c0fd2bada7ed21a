// PostgreSQL's own programs (initdb, pg_ctl, pg_basebackup, pg_receivewal, pg_waldump, ...):
// where they are, and running them as the user that owns the clusters.
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ErrorType, TenantsafeError } from '../errors';

const defaultMajor = 15;

/** Server binaries: $PG_BIN_DIR, else Debian's /usr/lib/postgresql/15/bin (`pg_config --bindir` may name another major). */
export function pgBinDir(): string {
  return process.env.PG_BIN_DIR || `/usr/lib/postgresql/${defaultMajor}/bin`;
}

export function pgBin(name: string): string {
  const file = path.join(pgBinDir(), name);
  if (!fs.existsSync(file)) {
    throw new TenantsafeError(
      ErrorType.BadConfig,
      `PostgreSQL binary ${file} is missing.`,
      'Run `bash scripts/setup.sh` (installs postgresql-15), or set PG_BIN_DIR to the bin directory of PostgreSQL.',
    );
  }
  return file;
}

/** initdb, pg_ctl and postgres refuse to run as root; as root they run as the postgres OS user. */
export const asRoot = process.getuid?.() === 0;

/** The command line that runs a PostgreSQL program as the clusters' owner. */
export function asClusterOwner(name: string, args: string[]): [string, string[]] {
  return asRoot ? ['runuser', ['-u', 'postgres', '--', pgBin(name), ...args]] : [pgBin(name), args];
}

export interface PgToolOptions {
  /** client tools reading or writing our own files (pg_waldump, pg_verifybackup) run as the caller instead */
  asCaller?: boolean;
  env?: Record<string, string>;
}

/**
 * Runs a PostgreSQL tool (initdb, pg_ctl, pg_basebackup, pg_controldata, ...) as the user that
 * owns the clusters; resolves with its exit code and combined output, never throws for a failure.
 */
export function runPgTool(name: string, args: string[], opts: PgToolOptions = {}): Promise<{ code: number; output: string }> {
  const [cmd, argv] = opts.asCaller ? [pgBin(name), args] : asClusterOwner(name, args);
  return new Promise((resolve, reject) => {
    // cwd /: the postgres user may not be allowed into the caller's working directory.
    const child = spawn(cmd, argv, { cwd: '/', stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...opts.env } });
    const chunks: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => chunks.push(c));
    child.stderr.on('data', (c: Buffer) => chunks.push(c));
    child.once('error', reject);
    child.once('close', (code) => resolve({ code: code ?? 1, output: Buffer.concat(chunks).toString('utf8').trim() }));
  });
}

/** Who owns a cluster's files: the postgres OS user when we run as root, else we do. */
export function clusterFileOwner(): { uid: number; gid: number } {
  if (!asRoot) return { uid: process.getuid!(), gid: process.getgid!() };
  const id = (flag: string) => Number(spawnSync('id', [flag, 'postgres'], { encoding: 'utf8' }).stdout.trim());
  return { uid: id('-u'), gid: id('-g') };
}

/** Makes the postgres OS user own `paths` (only when we run as root, else we own them already). */
export function chownToPostgres(paths: string[], recursive = false): void {
  if (!asRoot || paths.length === 0) return;
  const r = spawnSync('chown', [...(recursive ? ['-R'] : []), 'postgres:postgres', ...paths], { encoding: 'utf8' });
  if (r.status !== 0) throw new TenantsafeError(ErrorType.BadConfig, `chown postgres ${paths.join(' ')} failed: ${r.stderr || r.error?.message}.`, 'Run tenantsafe as root or as the user that owns the data directory.');
}
