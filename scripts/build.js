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

/** This file: listed with the sources, so a build made by another version of it counts as stale. */
const compiler = path.relative(root, __filename);

/** A compiled module's import bindings: `var import_b = require("./b");` (`__toESM(...)` for a default import). */
const importBinding = /^var (import_[\w$]+) = (require\("[^"\\]+"\)|__toESM\(require\("[^"\\]+"\)(?:, 1)?\));$/gm;

/** Defines the objects that stand in for import bindings (appended to each module that has one). */
const lazyImportHelper = 'function __lazyImport(load, names) { let m; const o = {}; for (const n of names) Object.defineProperty(o, n, { get: () => (m ??= load())[n], enumerable: true }); return o; }';

/**
 * Makes a compiled module require what it imports when it first uses it, not when it loads, so a
 * command loads only what it runs (`--help` neither pg nor the Temporal SDK). esbuild compiles
 * `import { a } from './b'` to `var import_b = require("./b");` and every use of `a` to
 * `import_b.a`: such a binding becomes an object with a getter for each name the module reads
 * from it, and the first read requires the module (once; the getters read its exports, live as
 * before). A binding used any other way keeps its require, and so do imports for side effects
 * (`import './b'`), namespace imports (`import * as b`) and re-exports (`export * from`). No line
 * moves: source maps and stack traces are unchanged. No source does anything at load but declare
 * (and run itself when it is the main module), so deferring a load changes nothing else
 * (test/cliStartup.test.ts holds the sources to that).
 */
function lazyImports(code) {
  let lazy = 0;
  const out = code.replace(importBinding, (line, name, load) => {
    const names = new Set();
    const uses = new RegExp(`(?<![\\w$.])${name.replace(/\$/g, '\\$')}(?![\\w$])(\\.[A-Za-z_$][\\w$]*)?`, 'g');
    let other = false;
    for (const use of code.matchAll(uses)) {
      if (code.startsWith(line, use.index - 'var '.length)) continue;
      if (use[1]) names.add(use[1].slice(1));
      else other = true;
    }
    if (other || names.size === 0) return line;
    lazy++;
    return `var ${name} = __lazyImport(() => ${load}, ${JSON.stringify([...names])});`;
  });
  if (!lazy) return out;
  const map = out.lastIndexOf('\n//# sourceMappingURL=');
  return map < 0 ? `${out}\n${lazyImportHelper}\n` : `${out.slice(0, map)}\n${lazyImportHelper}${out.slice(map)}`;
}

/** Compiles the sources unless build/ is fresh and complete; returns how many it compiled. */
function build() {
  const sources = [...currentSources(), compiler];
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
      if (source === compiler) continue;
      const { code } = esbuild.transformSync(text.toString('utf8'), { loader: 'ts', format: 'cjs', platform: 'node', target: 'node20', tsconfigRaw, sourcemap: 'inline', sourcesContent: false, sourcefile: path.basename(source) });
      const out = path.join(next, source.replace(/\.ts$/, '.js'));
      fs.mkdirSync(path.dirname(out), { recursive: true });
      fs.writeFileSync(out, lazyImports(code));
    }
    fs.writeFileSync(path.join(next, 'sources.txt'), listing.join(''));
    // A source saved while the compiler ran is newer than this and makes the build stale.
    fs.utimesSync(path.join(next, 'sources.txt'), startedAt, startedAt);
    fs.rmSync(buildDir, { recursive: true, force: true });
    fs.renameSync(next, buildDir);
  } finally {
    fs.rmSync(next, { recursive: true, force: true });
  }
  return sources.length - 1;
}

module.exports = { buildIsFresh, compiledPathOf, lazyImports };

if (require.main === module) {
  const compiled = build();
  if (compiled) process.stderr.write(`build: compiled ${compiled} TypeScript sources into build/\n`);
}
