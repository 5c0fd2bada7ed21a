// Lets Node require the TypeScript sources, for bin/tenantsafe and the processes it starts
// (`node -r scripts/register.js <file>.ts`, e.g. the worker's workflow bundler). While build/
// holds the sources compiled since their last change (scripts/build.js, run by setup and by
// `npm pack`), each module loads as its compiled file, under the source's own name: __dirname,
// require.resolve and every module are the same as when tsx runs the sources, and stack traces
// show TypeScript lines; only the transpiling on every start is gone. Otherwise
// (a source edited since, no build yet) tsx runs the sources; an installed package has no tsx
// and always its build.
'use strict';
const build = require('./build.js');
if (build.buildIsFresh()) {
  const fs = require('node:fs');
  /** The sources loaded as their compiled files: the frames Error.prepareStackTrace maps. */
  const compiled = new Set();
  require('node:module')._extensions['.ts'] = (module, filename) => {
    compiled.add(filename);
    module._compile(fs.readFileSync(build.compiledPathOf(filename), 'utf8'), filename);
  };
  Error.prepareStackTrace = sourceMappedStack(compiled);
} else {
  let tsx;
  try {
    tsx = require('tsx/cjs/api');
  } catch {
    process.stderr.write('tenantsafe: its sources changed since they were compiled (build/), and tsx is not installed to run them.\nHINT: Run `node scripts/build.js` in the tenantsafe folder (it needs the dev dependencies: npm install), or reinstall the package.\n');
    process.exit(2);
  }
  tsx.register();
}

/**
 * Stack traces with TypeScript lines: a frame in a compiled source is mapped through the inline
 * source map of its compiled file when a stack is formatted, which a short command rarely does
 * (an error's message is what it prints). Node's own source maps (`process.setSourceMapsEnabled`)
 * would read and parse, on every start, the map of every module loaded, node_modules' too.
 */
function sourceMappedStack(compiled) {
  const fs = require('node:fs');
  const { SourceMap } = require('node:module');
  const marker = '\n//# sourceMappingURL=data:application/json;base64,';
  /** @type {Map<string, InstanceType<typeof SourceMap> | null>} */
  const maps = new Map();
  const mapOf = (file) => {
    if (!maps.has(file)) {
      let map = null;
      try {
        const code = fs.readFileSync(build.compiledPathOf(file), 'utf8');
        const at = code.lastIndexOf(marker);
        if (at >= 0) map = new SourceMap(JSON.parse(Buffer.from(code.slice(at + marker.length).trim(), 'base64').toString('utf8')));
      } catch {
        // unmapped: the compiled file's line
      }
      maps.set(file, map);
    }
    return maps.get(file);
  };
  const frameText = (frame) => {
    const text = String(frame);
    const file = frame.getFileName();
    const line = frame.getLineNumber();
    const column = frame.getColumnNumber();
    if (!file || !compiled.has(file) || !line || !column) return text;
    const entry = mapOf(file)?.findEntry(line - 1, column - 1);
    if (entry?.originalLine === undefined) return text;
    return text.replace(`${file}:${line}:${column}`, `${file}:${entry.originalLine + 1}:${entry.originalColumn + 1}`);
  };
  return (error, frames) => {
    let header;
    try {
      header = Error.prototype.toString.call(error);
    } catch {
      header = '<error>';
    }
    const lines = frames.map((frame) => {
      try {
        return `    at ${frameText(frame)}`;
      } catch {
        return `    at ${frame}`;
      }
    });
    return [header, ...lines].join('\n');
  };
}
