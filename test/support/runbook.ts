// Runs a runbook's commands as written, so the runbooks cannot rot. A runbook marks the blocks an
// operator types as ```sh runbook; each line of them (a trailing `\` continues it) is one command,
// run in order by bash with the real `tenantsafe` on PATH. `<name>` placeholders are what the
// operator reads off earlier output (an id, a digest): the test supplies them, from that output
// or its own knowledge of the scene. A line ending in `# exit N` is expected to exit N (a
// check that reports a problem), every other line to exit 0.
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { projectRoot } from '../../lib/config';

export interface RunbookStep {
  /** the command as written in the runbook */
  command: string;
  /** runbook file and line, for failure messages */
  where: string;
  expectedExit: number;
}

export interface StepOutput {
  step: RunbookStep;
  /** the command after placeholders were filled */
  ran: string;
  code: number;
  stdout: string;
  stderr: string;
}

export const runbooksDir = path.join(projectRoot, 'docs', 'runbooks');

const placeholder = /<([a-z][a-z0-9-]*)>/g;

/** The runnable steps of docs/runbooks/<name>.md, in order. */
export function runbookSteps(name: string): RunbookStep[] {
  const file = path.join(runbooksDir, `${name}.md`);
  const lines = fs.readFileSync(file, 'utf8').split('\n');
  const steps: RunbookStep[] = [];
  let inBlock = false;
  let pending: { text: string; line: number } | undefined;
  lines.forEach((raw, i) => {
    if (/^```sh runbook\s*$/.test(raw)) return void (inBlock = true);
    if (inBlock && /^```\s*$/.test(raw)) return void (inBlock = false);
    if (!inBlock) return;
    const text = pending ? `${pending.text} ${raw.trim()}` : raw.trim();
    const line = pending?.line ?? i + 1;
    if (text.endsWith('\\')) return void (pending = { text: text.slice(0, -1).trimEnd(), line });
    pending = undefined;
    if (text === '' || text.startsWith('#')) return;
    const exit = /\s#\s*exit (\d+)\s*$/.exec(text);
    steps.push({ command: text, where: `docs/runbooks/${name}.md:${line}`, expectedExit: exit ? Number(exit[1]) : 0 });
  });
  if (steps.length === 0) throw new Error(`docs/runbooks/${name}.md has no \`\`\`sh runbook block`);
  return steps;
}

export interface RunbookOptions {
  configFile: string;
  env?: NodeJS.ProcessEnv;
  /** each placeholder's value, asked for when a step that holds it is about to run */
  fill: Record<string, (earlier: StepOutput[]) => string | Promise<string>>;
  /** called after each step, e.g. to break the scene as the runbook assumes */
  after?: (output: StepOutput) => void | Promise<void>;
  timeoutMs?: number;
}

/** Runs every step of the runbook; fails on the first step that exits other than expected. */
export async function runRunbook(name: string, opts: RunbookOptions): Promise<StepOutput[]> {
  const outputs: StepOutput[] = [];
  for (const step of runbookSteps(name)) {
    let ran = step.command;
    for (const [, key] of [...step.command.matchAll(placeholder)]) {
      const value = opts.fill[key];
      if (!value) throw new Error(`${step.where}: the test does not know the placeholder <${key}>`);
      ran = ran.replaceAll(`<${key}>`, await value(outputs));
    }
    const result = await bash(ran, opts);
    const output = { step, ran, ...result };
    if (result.code !== step.expectedExit) {
      throw new Error(`${step.where}: \`${ran}\` exited ${result.code}, expected ${step.expectedExit}\n--- stdout\n${result.stdout}\n--- stderr\n${result.stderr}`);
    }
    outputs.push(output);
    await opts.after?.(output);
  }
  return outputs;
}

/** The last match of `pattern`'s first group in the steps' output so far. */
export function readOff(earlier: StepOutput[], pattern: RegExp): string {
  for (const o of [...earlier].reverse()) {
    const m = [...`${o.stdout}\n${o.stderr}`.matchAll(new RegExp(pattern, 'g'))].pop();
    if (m) return m[1];
  }
  throw new Error(`no earlier runbook output matches ${pattern}`);
}

function bash(command: string, opts: RunbookOptions): Promise<{ code: number; stdout: string; stderr: string }> {
  const env = {
    ...process.env,
    ...opts.env,
    TENANTSAFE_CONFIG: opts.configFile,
    PATH: `${path.join(projectRoot, 'bin')}:${process.env.PATH ?? ''}`,
  };
  return new Promise((resolve) => {
    execFile('bash', ['-o', 'pipefail', '-c', command], { env, timeout: opts.timeoutMs ?? 300_000, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}
