// The workflow bundle, built once per version of the workflow sources, in a child process:
// webpack's memory peak then never counts against a worker, and a restarted worker
// starts in a second instead of re-bundling.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { bundleWorkflowCode } from '@temporalio/worker';
import { projectRoot } from '../lib/config';

const sourceDirs = ['workflows', 'lib'];

function sourcesHash(): string {
  const h = createHash('sha256');
  h.update(require('@temporalio/workflow/package.json').version);
  for (const dir of sourceDirs) {
    const files = (fs.readdirSync(path.join(projectRoot, dir), { recursive: true }) as string[]).filter((f) => f.endsWith('.ts')).sort();
    for (const f of files) h.update(f).update(fs.readFileSync(path.join(projectRoot, dir, f)));
  }
  return h.digest('hex').slice(0, 16);
}

/** Path of a bundle matching the current sources, building it first when there is none. */
export function workflowBundlePath(cacheDir = path.join(projectRoot, 'var', 'cache')): string {
  const file = path.join(cacheDir, `workflow-bundle-${sourcesHash()}.js`);
  if (!fs.existsSync(file)) {
    fs.mkdirSync(cacheDir, { recursive: true });
    execFileSync(process.execPath, ['--import', 'tsx', __filename, file], { stdio: ['ignore', 'ignore', 'inherit'] });
  }
  return file;
}

async function buildTo(file: string): Promise<void> {
  const { code } = await bundleWorkflowCode({ workflowsPath: require.resolve('../workflows'), logger: { log() {}, trace() {}, debug() {}, info() {}, warn: console.warn, error: console.error } });
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, code);
  fs.renameSync(tmp, file);
}

if (require.main === module) {
  buildTo(process.argv[2]).catch((err) => {
    console.error(err);
    process.exit(1);
  });
}
