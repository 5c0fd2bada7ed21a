// Every command's --help, found by walking the program the CLI runs (not a hand-kept list): it
// shows the global options, the exit codes and examples that name options the command has;
// required options are marked, exactly-one-of rules stated, `--at` is an ISO-8601 time wherever
// it is shown, `--by` follows one rule. The old spellings still work: `full-backup` is
// `backup full`, `schedule ... --at HH:MM` is `--time` (on a real Temporal dev server), and bad
// input through them still exits 2 with a HINT.
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import type { Command, Option } from 'commander';
import { buildProgram, main } from '../client/cli';
import { CliCommand, isRequired } from '../client/cliCommand';
import { projectRoot } from '../lib/config';
import { databaseScheduleIds } from '../workflows/messages';
import { createTestEnv, runCli, type TestEnv } from './support/env';

/** Every command below the program, hidden ones (old names) included, as the words typed. */
function commandPaths(cmd: Command, prefix: string[] = []): { path: string[]; cmd: Command }[] {
  return cmd.commands.flatMap((sub) => {
    const path = [...prefix, sub.name()];
    return [{ path, cmd: sub }, ...commandPaths(sub, path)];
  });
}

/** What `tenantsafe <path> --help` prints, through the CLI's own main (stdout captured). */
async function helpOf(path: string[]): Promise<{ code: number; text: string }> {
  let text = '';
  const write = process.stdout.write;
  process.stdout.write = ((chunk: string | Uint8Array) => {
    text += chunk.toString();
    return true;
  }) as typeof process.stdout.write;
  try {
    const code = await main(['node', 'tenantsafe', ...path, '--help']);
    return { code, text };
  } finally {
    process.stdout.write = write;
  }
}

const longFlags = (options: readonly Option[]) => options.map((o) => o.long).filter((f): f is string => !!f);

describe('the CLI help', function () {
  const program = buildProgram();
  const commands = commandPaths(program);
  const globalFlags = longFlags(program.options);

  it('finds the commands by walking the program, old names included', () => {
    const names = commands.map((c) => c.path.join(' '));
    assert.ok(commands.length > 60, `only ${commands.length} commands found`);
    for (const expected of ['backup tenant', 'backup all', 'backup full', 'full-backup', 'restore tenant', 'pitr restore', 'schedule full-backups', 'wal stop', 'failover approve']) {
      assert.ok(names.includes(expected), `${expected} missing from ${names.join(', ')}`);
    }
  });

  it('shows the global options, the exit codes and an example of the command in every --help', async () => {
    const problems: string[] = [];
    for (const { path, cmd } of [{ path: [] as string[], cmd: program as Command }, ...commands]) {
      if (path.at(-1) === 'help') continue; // commander's own `help [command]`
      const name = ['tenantsafe', ...path].join(' ');
      const { code, text } = await helpOf(path);
      const say = (problem: string) => problems.push(`${name} --help: ${problem}`);
      if (code !== 0) say(`exit ${code}`);
      const globalSection = path.length === 0 ? /^Options:\n([\s\S]*?)\n\n/m.exec(text) : /^Global Options:\n([\s\S]*?)\n\n/m.exec(text);
      for (const flag of ['--config', '--json', '--version']) if (!globalSection?.[1].includes(flag)) say(`no ${flag} among the global options`);
      const exits = /^Exit codes:\n((?:  .*\n)+)/m.exec(text)?.[1] ?? '';
      for (const exitCode of ['0', '1', '2']) if (!new RegExp(`^  ${exitCode}  \\S`, 'm').test(exits)) say(`exit code ${exitCode} not explained`);
      if (!exits.includes('docs/errors.md')) say('no pointer to docs/errors.md');
      // the tenantsafe command line of each example (after a pipe into it, before a comment or a pipe out)
      const examples = [...text.matchAll(/^  \$ (.*)$/gm)].map((m) => m[1].slice(m[1].indexOf('tenantsafe')).split(/\s+[#|]/)[0].trim());
      if (!examples.some((e) => e === name || e.startsWith(`${name} `))) say(`no example of the command itself (${examples.join(' | ') || 'none'})`);
      // an example names only options its command has (or the global ones): examples cannot rot
      for (const example of examples) {
        const words = example.split(/\s+/);
        const target = commands.filter((c) => c.path.every((p, i) => words[1 + i] === p)).sort((a, b) => b.path.length - a.path.length)[0];
        const known = [...globalFlags, ...longFlags(target?.cmd.options ?? [])];
        for (const flag of words.filter((w) => w.startsWith('--'))) if (!known.includes(flag)) say(`example "${example}" uses ${flag}, which ${target ? target.path.join(' ') : 'no command'} has not`);
      }
      for (const option of cmd.options) {
        if (option.hidden) {
          if (new RegExp(`^ +${option.long}\\b`, 'm').test(text)) say(`hidden ${option.long} listed`);
          continue;
        }
        if (isRequired(option) && !new RegExp(`${option.long}\\b[^\\n]*\\(required\\)`).test(text)) say(`required ${option.long} not marked (required)`);
      }
    }
    assert.deepEqual(problems, []);
  });

  it('states the exactly-one-of rules of restore tenant and pitr restore', async () => {
    assert.match((await helpOf(['restore', 'tenant'])).text, /^What to restore \(exactly one of --backup, --at, --lsn, --backup-before is required\):$/m);
    assert.match((await helpOf(['pitr', 'restore'])).text, /^Recovery target \(exactly one of --at, --lsn, --name, --latest is required\):$/m);
    assert.match((await helpOf(['pitr', 'restore'])).text, /--target <dir>\s+\(required\)/);
  });

  it('gives --at one meaning (an ISO-8601 time) and --by one rule (a requester defaults to the login, a decider is required)', () => {
    const visible = (c: Command, flag: string) => c.options.find((o) => o.long === flag && !o.hidden);
    const atOptions = commands.flatMap(({ path, cmd }) => (visible(cmd, '--at') ? [{ path, option: visible(cmd, '--at')! }] : []));
    assert.ok(atOptions.length >= 2);
    for (const { path, option } of atOptions) assert.match(option.description, /ISO-8601/, `${path.join(' ')} --at`);
    const byOptions = commands.flatMap(({ path, cmd }) => (visible(cmd, '--by') ? [{ path: path.join(' '), option: visible(cmd, '--by')! }] : []));
    const deciders = byOptions.filter((b) => / (approve|reject)$/.test(b.path));
    assert.deepEqual(deciders.map((b) => b.path).sort(), ['failover approve', 'failover reject', 'restore approve', 'restore reject']);
    for (const { path, option } of byOptions) {
      if (deciders.some((d) => d.path === path)) assert.ok(isRequired(option), `${path}: a decision names a person`);
      else assert.equal(option.defaultValueDescription, '$TENANTSAFE_USER, else your login name', `${path} --by`);
    }
  });

  it('lists every command in README\'s CLI table', () => {
    const rows = fs.readFileSync(`${projectRoot}/README.md`, 'utf8').split('\n').filter((l) => l.startsWith('| `tenantsafe '));
    const listed = (words: string[]) => rows.some((row) => new RegExp(`\`(tenantsafe )?${words.join(' ')}[ \`]`).test(row.split(' | ')[0]));
    const hidden = (c: Command) => (c as unknown as { _hidden: boolean })._hidden;
    const missing = commands.filter(({ path: words, cmd }) => cmd.commands.length === 0 && !hidden(cmd) && words.at(-1) !== 'help' && !listed(words));
    assert.deepEqual(missing.map((c) => c.path.join(' ')), []);
  });

  it('keeps full-backup as the old name of backup full, with the same options', () => {
    const full = commands.find((c) => c.path.join(' ') === 'backup full')!.cmd;
    const old = commands.find((c) => c.path.join(' ') === 'full-backup')!.cmd;
    assert.deepEqual(longFlags(old.options), longFlags(full.options));
    assert.ok(old instanceof CliCommand && full instanceof CliCommand);
    assert.equal((old as unknown as { _hidden: boolean })._hidden, true, 'the old name is not listed in tenantsafe --help');
  });

  it('runs the old spellings through the real binary: bad input still exits 2 with a HINT, nothing asked of Temporal', async () => {
    const badTime = await runCli(['schedule', 'full-backups', '--at', '25:00', '--json']);
    assert.equal(badTime.code, 2);
    assert.equal(JSON.parse(badTime.stderr).type, 'BadInput');
    assert.match(JSON.parse(badTime.stderr).error, /--at must be a time of day HH:MM in UTC \(got "25:00"\)\. HINT: Pass --time 02:00\./);
    const both = await runCli(['schedule', 'retention', '--at', '03:00', '--time', '03:30']);
    assert.equal(both.code, 2);
    assert.match(both.stderr, /--at is the old spelling of --time\. HINT:/);
    for (const spelling of [['full-backup'], ['backup', 'full']]) {
      const r = await runCli([...spelling, '--concurrency', '2']);
      assert.equal(r.code, 2, `${spelling.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, /unknown option '--concurrency'\nHINT: `tenantsafe (full-backup|backup full) --help` lists its options/);
      const json = await runCli([...spelling, '--nope', '--json']);
      assert.equal(json.code, 2);
      assert.equal(JSON.parse(json.stderr).type, 'BadInput', 'a usage error is JSON with --json');
    }
    // a decision is never defaulted to the login name, though failover's own --by (who asks) is
    const failoverApprove = await runCli(['failover', 'approve', '20261206-071500X-3f9a2c']);
    assert.equal(failoverApprove.code, 2);
    assert.match(failoverApprove.stderr, /Say who approves: --by is required\. HINT:/);
    const restoreReject = await runCli(['restore', 'reject', '20261125-094500R-4d5e6f']);
    assert.equal(restoreReject.code, 2);
    assert.match(restoreReject.stderr, /required option '--by <who>' not specified\nHINT:/);
    const listed = await runCli(['--help']);
    assert.match(listed.stdout, /^  backup /m);
    assert.doesNotMatch(listed.stdout, /^  full-backup /m, 'only the new name is listed');
  });

  describe('on a Temporal dev server', function () {
    this.timeout(120_000);
    let env: TestEnv;
    before(async function () {
      this.timeout(180_000);
      env = await createTestEnv('local');
    });
    after(async () => {
      await env?.temporal.schedule.getHandle(databaseScheduleIds.fullBackups).delete().catch(() => undefined);
      await env?.close();
    });

    const calendar = async () => {
      const d = await env.temporal.schedule.getHandle(databaseScheduleIds.fullBackups).describe();
      const c = d.spec.calendars?.[0];
      return { hour: c?.hour, minute: c?.minute, comment: c?.comment };
    };

    it('takes schedule full-backups --at HH:MM as --time, with a deprecation warning, and --time without one', async () => {
      const old = await runCli(['schedule', 'full-backups', '--at', '02:30', '--json'], { configFile: env.configFile });
      assert.equal(old.code, 0, old.stderr);
      assert.equal(old.json().at, '02:30 UTC');
      assert.match(old.stderr, /warning: `schedule full-backups --at` is deprecated .*write --time 02:30/);
      assert.deepEqual(await calendar(), { hour: [{ start: 2, end: 2, step: 1 }], minute: [{ start: 30, end: 30, step: 1 }], comment: 'daily at 02:30 UTC' });

      const now = await runCli(['schedule', 'full-backups', '--time', '02:45', '--json'], { configFile: env.configFile });
      assert.equal(now.code, 0, now.stderr);
      assert.equal(now.stderr, '', 'no warning for --time');
      assert.equal((await calendar()).comment, 'daily at 02:45 UTC');

      const bad = await runCli(['schedule', 'full-backups', '--at', '2:45pm'], { configFile: env.configFile });
      assert.equal(bad.code, 2);
      assert.match(bad.stderr, /HINT: Pass --time 02:00/);
      assert.equal((await calendar()).comment, 'daily at 02:45 UTC', 'bad input changed nothing');
    });
  });
});
