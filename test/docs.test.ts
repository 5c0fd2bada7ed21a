// The docs hold to the code and to each other: README's workflow table names every workflow type
// and every field of its input; every file the docs cite exists and every link (with its #anchor)
// leads somewhere; README's production config is one the code accepts.
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { parseConfig, projectRoot } from '../lib/config';
import { ctx } from './support/config';

const read = (file: string) => fs.readFileSync(path.join(projectRoot, file), 'utf8');
const readme = read('README.md');
const docFiles = ['README.md', ...(fs.readdirSync(path.join(projectRoot, 'docs'), { recursive: true }) as string[]).filter((f) => f.endsWith('.md')).map((f) => path.join('docs', f))];

/** The text of README's `## <title>` section, up to the next `## `. */
function section(title: string): string {
  const start = readme.indexOf(`\n## ${title}`);
  assert.ok(start >= 0, `README has a section ${title}`);
  const end = readme.indexOf('\n## ', start + 1);
  return readme.slice(start, end < 0 ? undefined : end);
}

/** GitHub's anchor of a heading: lower case, punctuation dropped, spaces as dashes. */
function slug(heading: string): string {
  return heading
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N} _-]/gu, '')
    .replace(/ /g, '-');
}

function anchorsOf(file: string): Set<string> {
  return new Set([...read(file).matchAll(/^#{1,6} (.+)$/gm)].map((m) => slug(m[1])));
}

/** The fields of `export interface <name>` in workflows/messages.ts (empty for `Record<string, never>`). */
function inputFields(messages: string, name: string): string[] {
  const m = new RegExp(`export (?:interface ${name} \\{([\\s\\S]*?)\\n\\}|type ${name} = Record<string, never>;)`).exec(messages);
  assert.ok(m, `workflows/messages.ts declares ${name}`);
  return [...(m[1] ?? '').replace(/\/\*\*[\s\S]*?\*\//g, '').matchAll(/^ {2}(\w+)\??:/gm)].map((f) => f[1]);
}

describe('the docs', () => {
  it('list every workflow type in README with every field of its input', () => {
    const table = section('Workflows (Temporal UI inputs)');
    const messages = read('workflows/messages.ts');
    const types = [...read('workflows/index.ts').matchAll(/^export \{ (\w+) \}/gm)].map((m) => m[1]);
    assert.ok(types.length >= 15, 'workflows/index.ts exports the workflow types');
    const setByWorkflows = new Set(['inBatch', 'carried', 'remaining']);
    for (const type of types) {
      const row = new RegExp(`^\\| \`${type}\` \\| (.+?) \\| `, 'm').exec(table);
      assert.ok(row, `README's workflow table has a row for ${type}`);
      const inputType = `${type[0].toUpperCase()}${type.slice(1)}Input`;
      for (const field of inputFields(messages, inputType).filter((f) => !setByWorkflows.has(f))) {
        assert.match(row[1], new RegExp(`"${field}"`), `README's ${type} input names ${field}`);
      }
    }
  });

  it('cite only files that exist, and link only to files and headings that exist', () => {
    const cited = /(?<![\w./-])((?:activities|bench|bin|client|docs|lib|monitoring|sample|scripts|test|workers|workflows)\/[\w./-]*\w)/g;
    const problems: string[] = [];
    for (const file of [...docFiles, 'temporal-dev.yaml']) {
      const text = read(file);
      for (const m of text.matchAll(cited)) if (!fs.existsSync(path.join(projectRoot, m[1]))) problems.push(`${file} cites ${m[1]}`);
      if (!file.endsWith('.md')) continue;
      for (const m of text.matchAll(/\]\(([^)\s]*)\)/g)) {
        const [target, anchor] = m[1].split('#');
        if (/^[a-z]+:/.test(target)) continue;
        const linked = target ? path.normalize(path.join(path.dirname(file), target)) : file;
        if (!fs.existsSync(path.join(projectRoot, linked))) problems.push(`${file} links to ${m[1]}: no such file`);
        else if (anchor && linked.endsWith('.md') && !anchorsOf(linked).has(anchor)) problems.push(`${file} links to ${m[1]}: no such heading`);
      }
    }
    assert.deepEqual(problems, []);
  });

  it('give in README a production config that the code accepts', () => {
    const yaml = /```yaml\n([\s\S]*?)```/.exec(section('Configuration'));
    assert.ok(yaml, 'README\'s Configuration section has a YAML example');
    const doc = parseYaml(yaml[1]);
    const env = Object.fromEntries([...yaml[1].matchAll(/\$\{(\w+)\}/g)].map((m) => [m[1], m[1].endsWith('_URL') ? 'https://hooks.example.com/x' : 'a-long-enough-secret-0123456789']));
    const cfg = parseConfig(doc, { ...ctx, env });
    assert.equal(cfg.fullBackup.maxRateKBps, 65536);
    assert.ok(cfg.storage.secondary);
  });
});
