// The workflow bundle, built once per version of the workflow sources, in a child process:
// webpack's memory peak then never counts against a worker, and a restarted worker
// starts in a second instead of re-bundling.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { type BundleOptions, bundleWorkflowCode } from '@temporalio/worker';
import { projectRoot } from '../lib/config';

type Configuration = Parameters<NonNullable<BundleOptions['webpackConfigHook']>>[0];

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

/** var/cache in the tenantsafe folder; where that folder is not writable (a package installed by root), the user's ~/.cache/tenantsafe. */
function defaultCacheDir(): string {
  const own = path.join(projectRoot, 'var', 'cache');
  try {
    fs.mkdirSync(own, { recursive: true });
    fs.accessSync(own, fs.constants.W_OK);
    return own;
  } catch {
    return path.join(os.homedir(), '.cache', 'tenantsafe');
  }
}

/** Path of a bundle matching the current sources, building it first when there is none. */
export function workflowBundlePath(cacheDir = defaultCacheDir()): string {
  const file = path.join(cacheDir, `workflow-bundle-${sourcesHash()}.js`);
  if (!fs.existsSync(file)) {
    fs.mkdirSync(cacheDir, { recursive: true });
    // The sources as the CLI runs them (compiled, else tsx): an installed package has no tsx.
    execFileSync(process.execPath, ['-r', path.join(projectRoot, 'scripts', 'register.js'), __filename, file], { stdio: ['ignore', 'ignore', 'inherit'] });
  }
  return file;
}

/** Is the file one of tenantsafe's own sources (not a dependency's), wherever tenantsafe is installed? */
function isOwnSource(file: string): boolean {
  const relative = path.relative(projectRoot, file);
  return !relative.startsWith('..') && !path.isAbsolute(relative) && !relative.split(path.sep).includes('node_modules');
}

/**
 * The bundler compiles TypeScript outside node_modules only; installed as a package, tenantsafe's
 * own sources are inside node_modules, and are compiled all the same.
 */
function compileOwnSources(config: Configuration): Configuration {
  for (const rule of config.module?.rules ?? []) {
    if (rule && typeof rule === 'object' && String(rule.test) === String(/\.ts$/)) rule.exclude = (file: string) => /[\\/]node_modules[\\/]/.test(file) && !isOwnSource(file);
  }
  return config;
}

async function buildTo(file: string): Promise<void> {
  const { code } = await bundleWorkflowCode({
    workflowsPath: require.resolve('../workflows'),
    webpackConfigHook: compileOwnSources,
    logger: { log() {}, trace() {}, debug() {}, info() {}, warn: console.warn, error: console.error },
  });
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
