// Shared by the benchmarks: a cached bench database, medians, RSS, output.
import * as fs from 'node:fs';
import { Client } from 'pg';
import { generateSample, type SampleOptions } from '../lib/sample/generate';

const adminUrl = process.env.BENCH_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

/** A database holding the sample, generated once per option set and kept for later runs. */
export async function benchDatabase(opts: SampleOptions): Promise<{ url: string }> {
  const name = `tenantsafe_bench_${Buffer.from(JSON.stringify(opts)).toString('hex').slice(-12)}`;
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  const admin = new Client({ connectionString: adminUrl });
  await admin.connect();
  try {
    const exists = await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
    if (exists.rowCount === 0) {
      console.error(`bench: generating ${name} (${JSON.stringify(opts)}) ...`);
      await admin.query(`CREATE DATABASE ${name}`);
      const c = new Client({ connectionString: url.toString() });
      await c.connect();
      try {
        await generateSample(c, opts);
      } catch (err) {
        await c.end();
        await admin.query(`DROP DATABASE ${name}`);
        throw err;
      }
      await c.end();
    }
  } finally {
    await admin.end();
  }
  return { url: url.toString() };
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
