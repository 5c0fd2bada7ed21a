// Compiles the TypeScript sources the CLI runs to JavaScript in build/, one file per source
// (build/lib/config.js for lib/config.ts), so bin/tenantsafe need not transpile them on every
// start. `node scripts/build.js` (setup.sh runs it, and `npm pack` before it packs) compiles only
// when a source changed since. Mocha (the tests' own code) and Temporal's bundler (the worker's
// workflow code) still read the sources.
'use strict';
const { createHash } = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');

const root = path.join(__dirname, '..');
const buildDir = path.join(root, 'build');
const sourceDirs = ['activities', 'client', 'lib', 'sample', 'workers', 'workflows'];
/** The compiled sources, one a line: its path and the sha256 of what was compiled; its mtime is when their compilation started. */
const sourceList = path.join(buildDir, 'sources.txt');

/** The compiled file that stands in for a source file. */
function compiledPathOf(source) {
  return path.join(buildDir, path.relative(root, source)).replace(/\.ts$/, '.js');
}

/** The compiled sources as build/sources.txt lists them: `{file, sha256}`. */
function listedSources() {
  return fs
    .readFileSync(sourceList, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((line) => ({ file: line.split(' ')[0], sha256: line.split(' ')[1] }));
}

function sha256(text) {
  return createHash('sha256').update(text).digest('hex');
}

/**
 * True when every source build/ was compiled from is unchanged since (none is newer, none is
 * gone). A source newer than the build counts as changed only when its content differs: a copy
 * of the tree (the installed package, a fresh checkout) gives every file a new time.
 */
function buildIsFresh() {
  const built = fs.statSync(sourceList, { throwIfNoEntry: false });
  if (!built) return false;
  return listedSources().every(({ file, sha256: compiled }) => {
    const source = path.join(root, file);
    const stat = fs.statSync(source, { throwIfNoEntry: false });
    if (!stat) return false;
    return stat.mtimeMs <= built.mtimeMs || (compiled !== undefined && sha256(fs.readFileSync(source)) === compiled);
  });
}

function currentSources() {
  return sourceDirs.flatMap((dir) => fs.readdirSync(path.join(root, dir), { recursive: true }).filter((f) => f.endsWith('.ts')).map((f) => path.join(dir, f))).sort();
}

/** Compiles the sources unless build/ is fresh and complete; returns how many it compiled. */
function build() {
  const sources = currentSources();
  const listed = fs.existsSync(sourceList) ? listedSources() : [];
  if (buildIsFresh() && listed.every((l) => l.sha256) && listed.map((l) => l.file).join('\n') === sources.join('\n')) return 0;

  const startedAt = Date.now() / 1000;
  // Compiled beside build/ and then swapped in, so a CLI starting meanwhile sees the old build
  // or none (and runs the sources), never half of one.
  const next = `${buildDir}.${process.pid}.tmp`;
  try {
    const esbuild = require('esbuild');
    const tsconfigRaw = fs.readFileSync(path.join(root, 'tsconfig.json'), 'utf8');
    // One file at a time, its source map naming the source by its base name: the map is read
    // relative to the module's file name, which is the source's.
    const listing = [];
    for (const source of sources) {
      const text = fs.readFileSync(path.join(root, source));
      listing.push(`${source} ${sha256(text)}\n`);
      const { code } = esbuild.transformSync(text.toString('utf8'), { loader: 'ts', format: 'cjs', platform: 'node', target: 'node20', tsconfigRaw, sourcemap: 'inline', sourcesContent: false, sourcefile: path.basename(source) });
      const out = path.join(next, source.replace(/\.ts$/, '.js'));
      fs.mkdirSync(path.dirname(out), { recursive: true });
      fs.writeFileSync(out, code);
    }
    fs.writeFileSync(path.join(next, 'sources.txt'), listing.join(''));
    // A source saved while the compiler ran is newer than this and makes the build stale.
    fs.utimesSync(path.join(next, 'sources.txt'), startedAt, startedAt);
    fs.rmSync(buildDir, { recursive: true, force: true });
    fs.renameSync(next, buildDir);
  } finally {
    fs.rmSync(next, { recursive: true, force: true });
  }
  return sources.length;
}

module.exports = { buildIsFresh, compiledPathOf };

if (require.main === module) {
  const compiled = build();
  if (compiled) process.stderr.write(`build: compiled ${compiled} TypeScript sources into build/\n`);
}
