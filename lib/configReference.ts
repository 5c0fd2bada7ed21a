// docs/configuration.md, rendered from the one schema (lib/configSchema.ts): every key with its
// type, range or allowed values, default and description, an example of each section, and the
// environment variables. `npm run docs:config` writes it; test/configReference.test.ts fails when
// the committed file differs from what the schema renders.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Document, visit } from 'yaml';
import { sizeText } from './configReader';
import { configSchema, environmentVariables, type Field } from './configSchema';

export const configReferenceFile = path.join(__dirname, '..', 'docs', 'configuration.md');

const intro = `# Configuration reference

<!-- Generated from lib/configSchema.ts by \`npm run docs:config\`: edit the schema, not this file
(test/configReference.test.ts fails when the two differ). -->

tenantsafe reads \`tenantsafe.yaml\` from \`--config <path>\`, else \`$TENANTSAFE_CONFIG\`, else
\`./tenantsafe.yaml\`, else it uses the embedded defaults (the dev stack's private PostgreSQL and
\`var/backups\`). The CLI, every worker and the dashboard read it; workflows never see it (their
activities do). It is checked when it is loaded against the schema this page is rendered from:
every bad, missing or unknown key is named at once, exit 2 (\`BadConfig\`).

- **Environment references.** Any value may be written \`\${VAR}\` or \`\${VAR:-default}\`: keep
  passwords, tokens and keys there. A referenced variable that is not set is an error.
- **Durations** are written \`500ms\`, \`90s\`, \`30m\`, \`24h\`, \`7d\`, \`1h30m\`; **sizes** \`1048576\`,
  \`512kB\`, \`16MB\`, \`1GB\` (powers of 1024, as PostgreSQL reads them); **rates** a size per second,
  \`64MB/s\`.
- **Paths** relative to the config file's directory.
- **Secrets** (type *secret*) are never printed, in errors or anywhere else.
- A key marked *required* must be given; every other key has the default shown (— : absent
  unless given).

The smallest config for production names the database and the storage:

\`\`\`yaml
database: { url: "postgres://backup:\${DB_PASSWORD}@db.internal:5432/saas" }
storage: { primary: { kind: gcs, bucket: my-backups, prefix: tenantsafe } }
temporal: { address: "temporal.internal:7233", namespace: tenantsafe, tls: true }
\`\`\`
`;

/** The whole reference, as docs/configuration.md holds it. */
export function renderConfigReference(): string {
  const out = [intro];
  out.push('## Sections\n');
  out.push(links(Object.entries(configSchema).map(([name, f]) => `- [\`${name}\`](#${name.toLowerCase()}): ${firstSentence(f.doc)}`).join('\n')) + '\n');
  for (const [name, field] of Object.entries(configSchema)) out.push(renderSection(name, field));
  out.push(renderEnvironment());
  return out.join('\n');
}

function renderSection(name: string, field: Field): string {
  const lines = [`## \`${name}\``, '', field.doc + (requiredText(field) ? ` The section is ${requiredText(field)}.` : ''), '', '| key | type | default | description |', '| --- | --- | --- | --- |'];
  if (field.type === 'section') for (const [k, f] of Object.entries(field.keys)) rows(`${name}.${k}`, f, lines);
  if (field.type === 'map') for (const [k, f] of Object.entries(field.keys)) rows(`${name}.${field.name}.${k}`, f, lines);
  lines.push('', 'Example:', '', '```yaml', yamlOf({ [name]: exampleOf(field) }), '```', '');
  return links(lines.join('\n'));
}

/** One row per key, nested sections' keys after their own row. */
function rows(key: string, field: Field, lines: string[], when = ''): void {
  const doc = `${when}${field.deprecated ? `**Deprecated:** ${field.deprecated}. ` : ''}${field.doc}`;
  lines.push(`| \`${key}\` | ${typeText(field)} | ${defaultText(field)} | ${escape(doc)} |`);
  if (field.type === 'section') for (const [k, f] of Object.entries(field.keys)) rows(`${key}.${k}`, f, lines);
  if (field.type === 'map') for (const [k, f] of Object.entries(field.keys)) rows(`${key}.${field.name}.${k}`, f, lines);
  if (field.type === 'variant') {
    lines.push(`| \`${key}.${field.tag}\` | one of ${Object.keys(field.variants).map(code).join(', ')} | required | Which kind of location; it decides the other keys. |`);
    for (const [tag, keys] of Object.entries(field.variants)) for (const [k, f] of Object.entries(keys)) rows(`${key}.${k}`, f, lines, `(\`${field.tag}: ${tag}\`) `);
  }
}

function typeText(field: Field): string {
  switch (field.type) {
    case 'section':
      return field.booleanForm ? `section, or \`true\` / \`false\` (${field.booleanForm})` : 'section';
    case 'map':
      return `mapping of \`${field.name}\` to a section`;
    case 'variant':
      return `section chosen by \`${field.tag}\``;
    case 'oneOf':
      return `one of ${field.values.map(code).join(', ')}`;
    case 'integer':
    case 'number':
      return `${field.type}, ${field.min} to ${field.max}`;
    case 'rate':
      return `rate, ${sizeText(field.min)}/s to ${sizeText(field.max)}/s`;
    case 'string':
      return field.patternText ? `string (${field.patternText.replace(/^must be /, '')})` : 'string';
    case 'identifier':
      return field.patternText ? `name (${field.patternText.replace(/^must be /, '')}), 1 to 63 bytes` : scalarTypes.identifier;
    default:
      return scalarTypes[field.type];
  }
}

const scalarTypes: Record<Exclude<Field['type'], 'section' | 'map' | 'variant' | 'oneOf' | 'integer' | 'number' | 'rate' | 'string'>, string> = {
  identifier: 'name, 1 to 63 bytes (UTF-8)',
  identifierList: 'list of names',
  boolean: 'boolean',
  duration: 'duration',
  durationOrOff: 'duration, or `off`',
  bytes: 'size',
  url: 'http(s) URL',
  postgresUrl: '`postgres://` URL',
  hostPort: '`host:port`',
  path: 'path',
  emailAddress: 'e-mail address',
  emailList: 'list of e-mail addresses',
  secret: 'secret',
  secretUrl: 'http(s) URL, secret',
  secretMap: 'mapping of header name to value, secret',
  stringMap: 'mapping of table name to foreign-key name',
};

function requiredText(field: Field): string {
  if (field.required === true) return 'required';
  if (typeof field.required === 'object') return `required ${field.required.text}`;
  return '';
}

function defaultText(field: Field): string {
  const required = requiredText(field);
  if (required) return required;
  if (field.defaultText) return escape(field.defaultText);
  if (field.default === undefined || typeof field.default === 'function') return '—';
  return code(inline(field.default));
}

/** What a key's example is in YAML: its own, else its keys' examples. */
function exampleOf(field: Field): unknown {
  if (field.example !== undefined) return field.example;
  if (field.type === 'section') return Object.fromEntries(Object.entries(field.keys).filter(([, f]) => !f.deprecated).map(([k, f]) => [k, exampleOf(f)]));
  return undefined;
}

/** Every section's example as one document: the examples must make a valid config (a test reads it). */
export function exampleDocument(): Record<string, unknown> {
  // `databases` is the other way to say `database`: its example replaces it (test/fleet.test.ts)
  return Object.fromEntries(Object.entries(configSchema).filter(([name]) => name !== 'databases').map(([name, f]) => [name, exampleOf(f)]));
}

function renderEnvironment(): string {
  const lines = ['## Environment variables', '', 'Read by tenantsafe besides the `${VAR}` references of the config file.', '', '| variable | default | what it does |', '| --- | --- | --- |'];
  for (const v of environmentVariables) lines.push(`| \`${v.name}\` | ${v.default ?? '—'} | ${escape(v.doc)} |`);
  return links(lines.join('\n')) + '\n';
}

/** YAML as a person writes it: lists of plain values on one line. */
function yamlOf(value: unknown): string {
  const doc = new Document(value);
  visit(doc, { Seq: (_, node) => void (node.flow = node.items.every((i) => !(i && typeof i === 'object' && 'items' in i))) });
  return doc.toString({ lineWidth: 0, flowCollectionPadding: false }).trimEnd();
}

/** docs/x.md and README.md#y named in descriptions become links from docs/. */
function links(text: string): string {
  return text
    .replace(/(?<![[/`])docs\/([\w/.-]+\.md)(#[\w-]+)?/g, (_, file: string, anchor = '') => `[docs/${file}${anchor}](${file}${anchor})`)
    .replace(/(?<![[/`])README\.md(#[\w-]+)?/g, (_, anchor = '') => `[README${anchor}](../README.md${anchor})`);
}

function inline(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(inline).join(', ')}]`;
  if (v !== null && typeof v === 'object') return `{${Object.entries(v).map(([k, x]) => `${k}: ${inline(x)}`).join(', ')}}`;
  return String(v);
}

function code(text: string): string {
  return `\`${text}\``;
}

function escape(text: string): string {
  return text.replace(/\|/g, '\\|').replace(/\n/g, ' ');
}

function firstSentence(text: string): string {
  return /^.*?\.(?=\s|$)/.exec(text)?.[0] ?? text;
}

if (require.main === module) {
  fs.writeFileSync(configReferenceFile, renderConfigReference());
  process.stderr.write(`wrote ${path.relative(process.cwd(), configReferenceFile)}\n`);
}
