// npm run bench [-- --quick] [--scale x] [--rounds n] [--only a,b] [--skip a,b]
// Every scenario, one after another, each in a child process of its own (a scenario's pools,
// clusters and memory end with it; one that fails does not stop the others), then ONE table of
// their rows (ours, the baseline measured in the same run, the ratio, the target, met or missed)
// on stdout, and the run written to bench/results/<YYYY-MM-DD>T<HHMM>.json (UTC). The scenarios'
// progress goes to stderr. Exit 1 when a scenario failed, 2 on bad arguments; a missed target is
// a result, not a failure.
import { execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { withConnection } from '../lib/pg';
import { BenchInputError, benchRow, formatTable, parseBenchOptions, type BenchOptions, type BenchRow } from './report';

/** In the order they run: the cheap ones first. */
export const scenarios = ['cli', 'tenantBackup', 'tenantBackupsAll', 'scale', 'tenantRestore', 'encryption', 'fullBackup', 'tenantPitr', 'monitoring', 'dashboard', 'failover', 'drill'];

interface ScenarioRun {
  name: string;
  seconds: number;
  ok: boolean;
  error?: string;
}

/** One scenario in a child: its rows from the file it writes; its stdout and stderr to our stderr. */
function runChild(name: string, opts: BenchOptions): Promise<{ rows: BenchRow[]; run: ScenarioRun }> {
  const file = path.join(os.tmpdir(), `tenantsafe-bench-${process.pid}-${name}.json`);
  const env = { ...process.env, BENCH_RESULT_FILE: file, BENCH_QUICK: opts.quick ? '1' : '0', BENCH_SCALE: String(opts.scale), BENCH_ROUNDS: opts.rounds ? String(opts.rounds) : '' };
  const t0 = performance.now();
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--require', require.resolve('tsx/cjs'), path.join(__dirname, `${name}.ts`)], { stdio: ['ignore', process.stderr, process.stderr], env });
    child.once('exit', (code, signal) => {
      const seconds = (performance.now() - t0) / 1000;
      let rows: BenchRow[] = [];
      let error = code === 0 ? undefined : `exit ${code ?? signal}`;
      try {
        if (code === 0) rows = JSON.parse(fs.readFileSync(file, 'utf8')) as BenchRow[];
      } catch (err) {
        error = `no rows: ${(err as Error).message}`;
      }
      fs.rmSync(file, { force: true });
      if (error) rows = [benchRow(name, `FAILED (${error}; its output is above)`, { ours: null, unit: '' })];
      resolve({ rows, run: { name, seconds, ok: !error, ...(error ? { error } : {}) } });
    });
  });
}

/** `--only a,b` and `--skip a,b` (also as --x=v); the rest are the options every scenario takes. */
function parseArgs(argv: string[]): { opts: BenchOptions; names: string[] } {
  const rest: string[] = [];
  let names = scenarios;
  for (let i = 0; i < argv.length; i++) {
    const m = /^--(only|skip)(?:=(.*))?$/.exec(argv[i]);
    if (!m) {
      rest.push(argv[i]);
      continue;
    }
    const listed = (m[2] ?? argv[++i] ?? '').split(',').filter(Boolean);
    const unknown = listed.filter((n) => !scenarios.includes(n));
    if (!listed.length || unknown.length) throw new BenchInputError(`--${m[1]} ${unknown.join(',') || '(nothing)'}: no such scenario\nHINT: the scenarios are ${scenarios.join(', ')}`);
    names = m[1] === 'only' ? scenarios.filter((n) => listed.includes(n)) : names.filter((n) => !listed.includes(n));
  }
  return { opts: parseBenchOptions(rest), names };
}

/** What the machine was: the figures are only comparable between runs on the same one. */
async function machine() {
  const version = await withConnection(process.env.BENCH_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres', (c) => c.query<{ v: string }>('SHOW server_version')).then(
    (r) => r.rows[0].v,
    () => null,
  );
  let commit: string | null = null;
  try {
    commit = execFileSync('git', ['-C', path.join(__dirname, '..'), 'describe', '--always', '--dirty'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    // not a git checkout
  }
  return { cores: os.availableParallelism(), memoryGiB: Math.round(os.totalmem() / 2 ** 30), node: process.version, postgres: version, commit };
}

async function main(): Promise<number> {
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs(process.argv.slice(2));
  } catch (err) {
    if (!(err instanceof BenchInputError)) throw err;
    console.error(err.message);
    return 2;
  }
  const { opts, names } = parsed;
  const startedAt = new Date();
  const loadAtStart = os.loadavg()[0];
  const host = await machine();
  const rows: BenchRow[] = [];
  const runs: ScenarioRun[] = [];
  for (const name of names) {
    console.error(`\n== bench ${name} (${opts.quick ? 'quick, ' : ''}scale ${opts.scale}${opts.rounds ? `, ${opts.rounds} rounds` : ''}) ==`);
    const r = await runChild(name, opts);
    rows.push(...r.rows);
    runs.push(r.run);
    console.error(`== bench ${name}: ${r.run.ok ? 'done' : 'FAILED'} in ${r.run.seconds.toFixed(0)} s ==`);
  }
  const finishedAt = new Date();
  const dir = path.join(__dirname, 'results');
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `${startedAt.toISOString().slice(0, 16).replace(':', '')}.json`);
  const load = { start: loadAtStart, end: os.loadavg()[0] };
  fs.writeFileSync(file, `${JSON.stringify({ startedAt, finishedAt, options: opts, machine: { ...host, loadAverage1m: load }, scenarios: runs, rows }, null, 2)}\n`);

  const missed = rows.filter((r) => r.met === false).length;
  const met = rows.filter((r) => r.met === true).length;
  const minutes = ((finishedAt.getTime() - startedAt.getTime()) / 60_000).toFixed(1);
  console.log(
    [
      `tenantsafe bench ${startedAt.toISOString()}: ${opts.quick ? 'quick, ' : ''}scale ${opts.scale}, ${host.cores} cores, load ${load.start.toFixed(1)} → ${load.end.toFixed(1)}, ${minutes} min, commit ${host.commit ?? '?'}`,
      ...(opts.quick || opts.scale < 1 ? ['(below full scale the fixed costs weigh more: the targets are set for scale 1)'] : []),
      '',
      formatTable(rows),
      '',
      `targets met ${met}, missed ${missed}; scenarios failed ${runs.filter((r) => !r.ok).length} of ${runs.length}; written to ${path.relative(process.cwd(), file)}`,
    ].join('\n'),
  );
  return runs.every((r) => r.ok) ? 0 : 1;
}

main().then(
  (code) => (process.exitCode = code),
  (err) => {
    console.error(err);
    process.exitCode = 1;
  },
);
