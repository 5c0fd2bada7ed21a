// Lets Node require the TypeScript sources, for bin/tenantsafe and the processes it starts
// (`node -r scripts/register.js <file>.ts`, e.g. the worker's workflow bundler). While build/
// holds the sources compiled since their last change (scripts/build.js, run by setup and by
// `npm pack`), each module loads as its compiled file, under the source's own name: __dirname,
// require.resolve and every module are the same as when tsx runs the sources, and stack traces
// (source maps) show TypeScript lines; only the transpiling on every start is gone. Otherwise
// (a source edited since, no build yet) tsx runs the sources; an installed package has no tsx
// and always its build.
'use strict';
const build = require('./build.js');
if (build.buildIsFresh()) {
  const fs = require('node:fs');
  process.setSourceMapsEnabled(true);
  require('node:module')._extensions['.ts'] = (module, filename) => module._compile(fs.readFileSync(build.compiledPathOf(filename), 'utf8'), filename);
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
