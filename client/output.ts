// CLI output and exit codes: --json prints exactly the contract's JSON on stdout; humans get
// short text. Exit 0 ok, 1 failed, 2 bad input (docs/architecture.md, core rule 7).
import { CommanderError } from 'commander';
import { ErrorType, isBadInput, TenantsafeError } from '../lib/errors';
import { WorkflowError } from './workflowError';

export interface OutputOptions {
  json?: boolean;
}

export function emit(opts: OutputOptions, value: unknown, human: () => string): void {
  process.stdout.write(opts.json ? JSON.stringify(value, null, 2) + '\n' : human() + '\n');
}

export function table(rows: Record<string, unknown>[], columns: string[]): string {
  if (rows.length === 0) return '(none)';
  const cells = rows.map((r) => columns.map((c) => (r[c] === null || r[c] === undefined ? '-' : String(r[c]))));
  const widths = columns.map((c, i) => Math.max(c.length, ...cells.map((row) => row[i].length)));
  const line = (vals: string[]) => vals.map((v, i) => v.padEnd(widths[i])).join('  ').trimEnd();
  return [line(columns), ...cells.map(line)].join('\n');
}

export function exitCodeOf(err: unknown): number {
  if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : 2;
  if (err instanceof TenantsafeError || err instanceof WorkflowError) return isBadInput(err.type) ? 2 : 1;
  return 1;
}

/** Prints the error (as JSON on stderr with --json) and returns the exit code. */
export function reportError(opts: OutputOptions, err: unknown): number {
  const code = exitCodeOf(err);
  if (err instanceof CommanderError) {
    // a usage error (unknown option, required option missing): commander printed it, unless --json kept it for here
    if (opts.json && code !== 0) process.stderr.write(JSON.stringify({ error: err.message.replace(/^error: /, ''), type: ErrorType.BadInput, exitCode: code }) + '\n');
    return code;
  }
  const message = err instanceof Error ? err.message : String(err);
  const type = err instanceof TenantsafeError || err instanceof WorkflowError ? err.type : undefined;
  if (opts.json) process.stderr.write(JSON.stringify({ error: message, type: type ?? 'Error', exitCode: code }) + '\n');
  else process.stderr.write(`tenantsafe: ${message}\n`);
  if (!(err instanceof TenantsafeError || err instanceof WorkflowError) && process.env.TENANTSAFE_DEBUG) console.error(err);
  return code;
}
