// Shared by the benchmarks: a cached bench database, medians, RSS, output.
import * as fs from 'node:fs';
import { ensureSampleDatabase, type SampleOptions } from '../lib/sample/generate';

const adminUrl = process.env.BENCH_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

/** A database holding the sample, generated once per option set and kept for later runs. */
export async function benchDatabase(opts: SampleOptions): Promise<{ url: string }> {
  const name = `tenantsafe_bench_${Buffer.from(JSON.stringify(opts)).toString('hex').slice(-12)}`;
  const { url, created } = await ensureSampleDatabase(adminUrl, name, opts);
  if (created) console.error(`bench: generated ${name} (${JSON.stringify(opts)})`);
  return { url };
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

/** Peak resident set size of a process so far (VmHWM), in MB. */
export function peakRssMb(pid: number): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Math.round(Number(m[1]) / 1024) : NaN;
}

export function printTable(title: string, rows: [string, string][]): void {
  const w = Math.max(...rows.map(([k]) => k.length));
  console.log(`\n${title}\n${'-'.repeat(title.length)}`);
  for (const [k, v] of rows) console.log(`${k.padEnd(w)}  ${v}`);
}
