// What every benchmark shares about its run and its answer: the options (scale, rounds, quick),
// the rows it reports (ours, the baseline measured in the same run, the ratio, the target), the
// one table those rows make, and how a scenario file runs on its own or as `npm run bench`'s child.
import * as fs from 'node:fs';

/** A target on the ratio (ours / baseline) or on our own figure. */
export interface Target {
  of: 'ratio' | 'ours';
  op: '<=' | '>=';
  value: number;
}

export const ratioAtMost = (value: number): Target => ({ of: 'ratio', op: '<=', value });
export const ratioAtLeast = (value: number): Target => ({ of: 'ratio', op: '>=', value });
export const atMost = (value: number): Target => ({ of: 'ours', op: '<=', value });
export const atLeast = (value: number): Target => ({ of: 'ours', op: '>=', value });

/** One measure of one scenario, as `npm run bench` prints it and writes it to bench/results/. */
export interface BenchRow {
  scenario: string;
  measure: string;
  /** our figure, in `unit` (null: not measured) */
  ours: number | null;
  /** the baseline's figure, measured in the same run on the same data, in `unit` */
  baseline: number | null;
  /** ours / baseline unless the scenario says otherwise (e.g. a median of per-round ratios) */
  ratio: number | null;
  target: Target | null;
  unit: string;
  /** whether the target is met; null without a target or a figure */
  met: boolean | null;
  /** what ours and the baseline are, each round, what the figure leaves out */
  note?: string;
}

export function benchRow(
  scenario: string,
  measure: string,
  r: { ours: number | null; baseline?: number | null; ratio?: number | null; unit: string; target?: Target | null; note?: string },
): BenchRow {
  const baseline = r.baseline ?? null;
  const ratio = r.ratio !== undefined ? r.ratio : r.ours !== null && baseline ? r.ours / baseline : null;
  const target = r.target ?? null;
  const value = target?.of === 'ratio' ? ratio : r.ours;
  const met = target && value !== null && Number.isFinite(value) ? (target.op === '<=' ? value <= target.value : value >= target.value) : null;
  return { scenario, measure, ours: r.ours, baseline, ratio, target, unit: r.unit, met, ...(r.note ? { note: r.note } : {}) };
}

/** A figure with its unit, as the table shows it. */
export function formatValue(v: number | null, unit: string): string {
  if (v === null || !Number.isFinite(v)) return '—';
  const digits = unit === 's' ? 2 : unit === 'ms' || unit === '%' ? (v < 10 ? 1 : 0) : unit === 'TPS' || Number.isInteger(v) ? 0 : unit === 'MB' || unit === 'MiB' ? 1 : 2;
  return unit === 'count' ? String(Math.round(v)) : `${v.toFixed(digits)} ${unit}`;
}

function formatTarget(t: Target | null, unit: string): string {
  if (!t) return '';
  const op = t.op === '<=' ? '≤' : '≥';
  return t.of === 'ratio' ? `ratio ${op} ${t.value}` : `${op} ${Number.isInteger(t.value) && unit !== 'count' ? `${t.value} ${unit}` : formatValue(t.value, unit)}`;
}

/** The rows as one table (Markdown, aligned), notes numbered below it. */
export function formatTable(rows: BenchRow[]): string {
  const notes: string[] = [];
  const cells = rows.map((r) => {
    const ref = r.note ? ` [${notes.push(r.note)}]` : '';
    return [
      r.scenario,
      r.measure + ref,
      formatValue(r.ours, r.unit),
      formatValue(r.baseline, r.unit),
      r.ratio === null || !Number.isFinite(r.ratio) ? '—' : `${r.ratio.toFixed(2)}×`,
      formatTarget(r.target, r.unit),
      r.met === null ? '' : r.met ? 'met' : 'MISSED',
    ];
  });
  const head = ['scenario', 'measure', 'ours', 'baseline', 'ratio', 'target', 'result'];
  const width = head.map((h, i) => Math.max(h.length, ...cells.map((c) => [...c[i]].length)));
  const line = (c: string[]) => `| ${c.map((x, i) => x + ' '.repeat(width[i] - [...x].length)).join(' | ')} |`;
  return [line(head), `|${width.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...cells.map(line), '', ...notes.map((n, i) => `[${i + 1}] ${n}`)].join('\n');
}

/** How large and how often: one set for every scenario (flags, else the environment). */
export interface BenchOptions {
  /** the small run: scale 0.01 unless given, and each scenario's few rounds */
  quick: boolean;
  /** data as a share of full scale (1: the sizes bench/README describes; 0.01 when quick) */
  scale: number;
  /** rounds of each measurement; absent: each scenario's own (fewer when quick) */
  rounds?: number;
}

/** Bad flags or values: the message names it and says what to do; exit 2. */
export class BenchInputError extends Error {}

/** `--quick`, `--scale <x>`, `--rounds <n>` (also as `--x=v`), else BENCH_QUICK=1, BENCH_SCALE, BENCH_ROUNDS. */
export function parseBenchOptions(argv: string[], env: NodeJS.ProcessEnv = process.env): BenchOptions {
  const flags: Record<string, string | true> = {};
  for (let i = 0; i < argv.length; i++) {
    const m = /^--(quick|scale|rounds)(?:=(.*))?$/.exec(argv[i]);
    if (!m) throw new BenchInputError(`unknown argument ${argv[i]}\nHINT: the options are --quick, --scale <share of full scale>, --rounds <n>`);
    flags[m[1]] = m[1] === 'quick' ? true : (m[2] ?? argv[++i] ?? '');
  }
  const quick = flags.quick === true || env.BENCH_QUICK === '1';
  const number = (name: string, text: string | undefined, integer: boolean): number | undefined => {
    if (text === undefined || text === '') return undefined;
    const n = Number(text);
    if (!(n > 0) || (integer && !Number.isInteger(n))) throw new BenchInputError(`--${name} ${text}: not a ${integer ? 'whole number' : 'number'} above 0\nHINT: e.g. --${name} ${integer ? 3 : 0.1}`);
    return n;
  };
  const scale = number('scale', (flags.scale as string | undefined) ?? env.BENCH_SCALE, false) ?? (quick ? 0.01 : 1);
  const rounds = number('rounds', (flags.rounds as string | undefined) ?? env.BENCH_ROUNDS, true);
  return { quick, scale, ...(rounds ? { rounds } : {}) };
}

/** Rounds of a measurement: the option, else the scenario's full or quick number. */
export const roundsOf = (opts: BenchOptions, full: number, quick: number): number => opts.rounds ?? (opts.quick ? quick : full);

/** A full-scale size at the run's scale, at least `min`. */
export const scaled = (opts: BenchOptions, full: number, min: number): number => Math.max(min, Math.round(full * opts.scale));

export type Scenario = (opts: BenchOptions) => Promise<BenchRow[]>;

/**
 * Runs a scenario file as a program: `npx tsx bench/<name>.ts [--quick] [--scale x] [--rounds n]`
 * prints its table; as `npm run bench`'s child (BENCH_RESULT_FILE set) it writes its rows there.
 * The process then ends (a pool or timer left open by a library cannot keep it alive), once
 * stdout has handed its data to the OS.
 */
export function runScenario(scenario: Scenario): void {
  const end = (code: number): void => void process.stdout.write('', () => process.exit(code));
  let opts: BenchOptions;
  try {
    opts = parseBenchOptions(process.argv.slice(2));
  } catch (err) {
    if (!(err instanceof BenchInputError)) throw err;
    console.error(err.message);
    return end(2);
  }
  scenario(opts).then(
    (rows) => {
      if (process.env.BENCH_RESULT_FILE) fs.writeFileSync(process.env.BENCH_RESULT_FILE, JSON.stringify(rows));
      else console.log(`\n${formatTable(rows)}`);
      end(0);
    },
    (err) => {
      console.error(err);
      end(1);
    },
  );
}
