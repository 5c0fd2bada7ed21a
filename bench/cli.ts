// The CLI as a user meets it (issue 26), against a running stack (Temporal dev server, worker):
//   start-up: `tenantsafe --version`, `npx tenantsafe --version`, `tenantsafe backups list
//     --json` (config, catalog) and `tenantsafe schedule list --json` (config, the Temporal SDK,
//     one call to the server), 10 of each interleaved with `node -e 0`, medians
//   a small tenant end to end: `tenantsafe backup tenant globex --wait` (command → done) against
//     psql `\copy` of the same rows out (one REPEATABLE READ transaction, a file per table); the
//     tenant wiped, then `restore tenant globex --backup <id>` (→ preview) and `restore approve …
//     --wait` (→ verified) against psql `\copy` of the rows back in (one transaction, parents
//     first). Each round after a CHECKPOINT, the order alternating; 5 rounds (quick: 3).
// The sample is small at every scale (5 tenants, 20k rows; globex ~4.4k rows): this is the fixed
// cost a user pays per command.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { TenantBackupResult, TenantRestoreResult } from '../workflows/messages';
import type { RestoreRequested } from '../client/client';
import { connect, qualified, quoteIdent } from '../lib/pg';
import { pgBin } from '../lib/postgres/tools';
import { discoverTenancy, tenantRowsQuery, type TenancyPlan } from '../lib/tenancy';
import { atMost, benchRow, roundsOf, runScenario, type BenchOptions, type BenchRow } from './report';
import { benchStack, median, runCommand, wipeTenant } from './support';

const tenantId = 'globex';
const root = path.join(__dirname, '..');
const bin = path.join(root, 'bin', 'tenantsafe');
const startups = 10;

/** Seconds a command takes, and its stdout. */
async function timed(cmd: string, args: string[]): Promise<{ seconds: number; out: string }> {
  const t0 = performance.now();
  const out = await runCommand(cmd, args);
  return { seconds: (performance.now() - t0) / 1000, out };
}

/** psql scripts: the tenant's rows of every owned table out to a file each, and back in. */
function psqlScripts(plan: TenancyPlan, dir: string): { out: string; in: string } {
  const file = (i: number) => path.join(dir, `${i}.copy`);
  const out = plan.tables.map((t, i) => `\\copy (${tenantRowsQuery(plan, t, tenantId).replace(/\s+/g, ' ')}) TO '${file(i)}'`);
  const into = plan.tables.map((t, i) => `\\copy ${qualified(t.schema, t.name)} (${t.copyColumns.map(quoteIdent).join(', ')}) FROM '${file(i)}'`);
  const script = (name: string, begin: string, lines: string[]) => {
    const f = path.join(dir, name);
    fs.writeFileSync(f, ['\\set ON_ERROR_STOP 1', begin, ...lines, 'COMMIT;', ''].join('\n'));
    return f;
  };
  return { out: script('out.sql', 'BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY;', out), in: script('in.sql', 'BEGIN;', into) };
}

export async function run(opts: BenchOptions): Promise<BenchRow[]> {
  const rounds = roundsOf(opts, 5, 3);
  const stack = await benchStack({ tenants: 5, rows: 20_000 });
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'tenantsafe-bench-cli-'));
  const sql = await connect(stack.dbUrl, 'bench');
  const cli = async <T>(args: string[]) => {
    const r = await timed(bin, ['--config', stack.configFile, ...args, '--json']);
    return { seconds: r.seconds, json: JSON.parse(r.out) as T };
  };
  const psql = (script: string) => timed(pgBin('psql'), ['-X', '-q', '-f', script, stack.dbUrl]);
  const m = { backup: [] as number[], copyOut: [] as number[], preview: [] as number[], approve: [] as number[], restore: [] as number[], copyIn: [] as number[] };
  const start = { node: [] as number[], version: [] as number[], npx: [] as number[], list: [] as number[], temporal: [] as number[] };
  let rows = 0;
  try {
    const plan = await discoverTenancy(sql, stack.config.tenancy);
    const scripts = psqlScripts(plan, work);
    const checkpoint = () => sql.query('CHECKPOINT');

    // the small tenant out: ours and psql, the order alternating
    let backupId = '';
    for (let i = 0; i < rounds; i++) {
      const ours = async () => {
        await checkpoint();
        const r = await cli<TenantBackupResult>(['backup', 'tenant', tenantId, '--wait']);
        m.backup.push(r.seconds);
        backupId = r.json.backupId;
        rows = r.json.rows ?? 0;
      };
      const raw = async () => {
        await checkpoint();
        m.copyOut.push((await psql(scripts.out)).seconds);
      };
      for (const step of i % 2 ? [raw, ours] : [ours, raw]) await step();
    }

    // start-up, against the stack: the catalog now lists backups
    for (let i = 0; i < startups; i++) {
      start.node.push((await timed(process.execPath, ['-e', '0'])).seconds);
      start.version.push((await timed(bin, ['--version'])).seconds);
      start.npx.push((await timed('npx', ['tenantsafe', '--version'])).seconds);
      start.list.push((await cli(['backups', 'list'])).seconds);
      start.temporal.push((await cli(['schedule', 'list'])).seconds);
    }

    // the small tenant back in after a wipe: ours (preview, then approval → verified) and psql
    for (let i = 0; i < rounds; i++) {
      const ours = async () => {
        await wipeTenant(sql, plan, tenantId);
        await checkpoint();
        const requested = await cli<RestoreRequested>(['restore', 'tenant', tenantId, '--backup', backupId, '--by', 'bench']);
        if (requested.json.state !== 'awaiting-approval') throw new Error(`bench: restore not awaiting approval: ${JSON.stringify(requested.json)}`);
        const done = await cli<TenantRestoreResult & { state: string }>(['restore', 'approve', requested.json.restoreId, '--by', 'bench-approver', '--digest', requested.json.previewDigest!, '--wait']);
        if (done.json.state !== 'done' || !done.json.verification?.ok) throw new Error(`bench: restore ${done.json.state}, verification ${JSON.stringify(done.json.verification)}`);
        m.preview.push(requested.seconds);
        m.approve.push(done.seconds);
        m.restore.push(requested.seconds + done.seconds);
      };
      const raw = async () => {
        await wipeTenant(sql, plan, tenantId);
        await checkpoint();
        m.copyIn.push((await psql(scripts.in)).seconds);
      };
      for (const step of i % 2 ? [raw, ours] : [ours, raw]) await step();
    }
  } finally {
    await sql.end();
    await stack.stop();
    fs.rmSync(work, { recursive: true, force: true });
  }

  const list = (xs: number[]) => `[${xs.map((x) => x.toFixed(2)).join(', ')}]`;
  const node = median(start.node);
  const small = `small tenant (${tenantId}, ${rows} rows)`;
  return [
    benchRow('CLI start-up', '`tenantsafe --version` vs `node -e 0`', { ours: median(start.version), baseline: node, unit: 's', note: `medians of ${startups}, interleaved; ours ${list(start.version)}, node -e 0 ${list(start.node)}` }),
    benchRow('CLI start-up', '`npx tenantsafe --version` vs `node -e 0`', { ours: median(start.npx), baseline: node, unit: 's', note: 'npx finds the bin in the project: no download' }),
    benchRow('CLI start-up', '`tenantsafe backups list --json` vs `node -e 0`', { ours: median(start.list), baseline: node, unit: 's', note: `reads the config and the catalog, against a running stack: ${list(start.list)}` }),
    benchRow('CLI start-up', '`tenantsafe schedule list --json` vs `node -e 0`', {
      ours: median(start.temporal),
      baseline: node,
      unit: 's',
      note: `the config, the Temporal SDK (most of it: its protobuf definitions) and one call to the server: ${list(start.temporal)}`,
    }),
    benchRow(small, '`backup tenant --wait` from the CLI vs psql `\\copy` out', {
      ours: median(m.backup),
      baseline: median(m.copyOut),
      unit: 's',
      target: atMost(1),
      note: `medians of ${rounds}: ours ${list(m.backup)}, psql ${list(m.copyOut)} (one REPEATABLE READ transaction, a file per table)`,
    }),
    benchRow(small, 'restore after a wipe from the CLI (`restore tenant` + `restore approve --wait` → verified) vs psql `\\copy` in', {
      ours: median(m.restore),
      baseline: median(m.copyIn),
      unit: 's',
      note: `ours ${list(m.restore)} = preview ${list(m.preview)} + approval → verified ${list(m.approve)}; psql ${list(m.copyIn)} (one transaction, parents first, into the live tables)`,
    }),
    benchRow(small, '`restore approve --wait` from the CLI → verified', { ours: median(m.approve), unit: 's', target: atMost(2), note: 'the approving person\'s command: safety backup, apply, verify, the CLI\'s start' }),
  ];
}

if (require.main === module) runScenario(run);
