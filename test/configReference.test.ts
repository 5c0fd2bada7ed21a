import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseConfig, projectRoot } from '../lib/config';
import { configReferenceFile, exampleDocument, renderConfigReference } from '../lib/configReference';
import { configSchema, environmentVariables, type Keys } from '../lib/configSchema';
import { ctx } from './support/config';

describe('the configuration reference (docs/configuration.md)', () => {
  it('is what the schema the config is read with renders (after a schema change: npm run docs:config)', () => {
    const committed = fs.readFileSync(configReferenceFile, 'utf8');
    const rendered = renderConfigReference();
    if (committed !== rendered) {
      const at = [...rendered].findIndex((c, i) => committed[i] !== c);
      assert.fail(`docs/configuration.md differs from the schema's rendering near line ${rendered.slice(0, at).split('\n').length}: run \`npm run docs:config\` and commit the file`);
    }
  });

  it('gives every key a description and every value an example, and the examples together make a valid config', () => {
    const walk = (keys: Keys, prefix: string): void => {
      for (const [k, f] of Object.entries(keys)) {
        const key = `${prefix}${k}`;
        assert.ok(f.doc.trim().length > 10, `${key} has a description`);
        if (f.type === 'section') walk(f.keys, `${key}.`);
        else if (f.type === 'variant') Object.values(f.variants).forEach((v) => walk(v, `${key}.`));
        else if (f.type === 'map') walk(f.keys, `${key}.${f.name}.`);
        else assert.notEqual(f.example, undefined, `${key} has an example`);
      }
    };
    walk(configSchema, '');
    const doc = exampleDocument();
    const names = new Set([...JSON.stringify(doc).matchAll(/\$\{([A-Z_]+)\}/g)].map((m) => m[1]));
    const env = Object.fromEntries([...names].map((n) => [n, n.endsWith('_URL') ? `https://hooks.example.com/${n}` : `${n.toLowerCase()}-0123456789abcdef0123456789abcdef`]));
    const cfg = parseConfig(doc, { ...ctx, env });
    assert.equal(cfg.fullBackup.maxRateKBps, 65536);
    assert.equal(cfg.dashboard.users.length, 2);
  });

  it('lists every environment variable the code reads', () => {
    const osOwn = new Set(['PATH', 'USER']);
    const documented = new Set(environmentVariables.map((v) => v.name));
    const read = new Set<string>();
    for (const dir of ['activities', 'client', 'lib', 'workers', 'workflows', 'sample', 'bin', 'scripts']) {
      for (const file of fs.readdirSync(path.join(projectRoot, dir), { recursive: true }) as string[]) {
        if (!/\.(ts|js)$/.test(file) && dir !== 'bin') continue;
        const text = fs.readFileSync(path.join(projectRoot, dir, file), 'utf8');
        for (const m of text.matchAll(/\benv(?:\.|\[['"])([A-Z][A-Z0-9_]+)/g)) read.add(m[1]);
      }
    }
    const missing = [...read].filter((n) => !documented.has(n) && !osOwn.has(n));
    assert.deepEqual(missing, [], `docs/configuration.md#environment-variables lacks ${missing.join(', ')} (lib/configSchema.ts, environmentVariables)`);
    for (const name of ['PG_BIN_DIR', 'TENANTSAFE_DEBUG', 'TEMPORAL_CLI', 'TENANTSAFE_CONFIG']) assert.ok(read.has(name), `the scan finds ${name}`);
  });
});
