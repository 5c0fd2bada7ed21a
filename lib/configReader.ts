// Reading tenantsafe.yaml through its schema (lib/configSchema.ts): ${ENV} interpolation, one
// reader per kind of value, and the walk that reads every key of a section as the schema says,
// collecting a problem per bad, missing or unknown key, each naming its key.
import * as path from 'node:path';
import { parseDuration } from './duration';
import type { Field, Keys } from './configSchema';

/** A problem with a key's value, as every config error names it. */
export function badValue(key: string, what: string, got: unknown): string {
  return `${key}: ${what} (got ${JSON.stringify(got)})`;
}

/** A problem with a secret's value: the key is named, the value never shown. */
export function badSecret(key: string, what: string): string {
  return `${key}: ${what} (the value is not shown)`;
}

/** Replaces ${VAR} and ${VAR:-default} in every string value. */
export function interpolate(value: unknown, key: string, env: NodeJS.ProcessEnv, problems: string[]): unknown {
  if (typeof value === 'string') {
    return value.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g, (_, name: string, fallback?: string) => {
      const found = env[name];
      if (found !== undefined && found !== '') return found;
      if (fallback !== undefined) return fallback;
      problems.push(`${key}: environment variable ${name} is not set`);
      return '';
    });
  }
  if (Array.isArray(value)) return value.map((v, i) => interpolate(v, `${key}[${i}]`, env, problems));
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(
      Object.entries(value).map(([k, v]) => [k, interpolate(v, key ? `${key}.${k}` : k, env, problems)]),
    );
  }
  return value;
}

/** One mapping of the config; records a problem per bad or unknown key. */
export class Section {
  private readonly values: Record<string, unknown>;
  private readonly seen = new Set<string>();
  /** a missing section was reported once already; its keys are not reported again */
  private readonly absent: boolean;

  constructor(
    value: unknown,
    private readonly prefix: string,
    private readonly problems: string[],
  ) {
    this.absent = value === undefined || value === null;
    if (this.absent) {
      this.values = {};
    } else if (typeof value === 'object' && !Array.isArray(value)) {
      this.values = value as Record<string, unknown>;
    } else {
      this.problems.push(`${prefix || '(top level)'}: must be a mapping of keys`);
      this.values = {};
    }
  }

  private key(name: string): string {
    return this.prefix ? `${this.prefix}.${name}` : name;
  }

  private take(name: string, required: boolean): unknown {
    this.seen.add(name);
    const v = this.values[name];
    if ((v === undefined || v === null || v === '') && required && !(this.absent && this.prefix)) this.problems.push(`${this.key(name)}: is required`);
    return v === null || v === '' ? undefined : v;
  }

  private fail(name: string, what: string, got: unknown): undefined {
    this.problems.push(badValue(this.key(name), what, got));
    return undefined;
  }

  /** Reports the key as missing unless it has a value (a value of the wrong kind was reported already). */
  require(name: string): void {
    this.take(name, true);
  }

  /** The same section's key as a section of no keys (a section written as `true`). */
  empty(name: string): Section {
    return new Section({}, this.key(name), this.problems);
  }

  /** The raw value of a key, without taking it (to choose how to read it). */
  peek(name: string): unknown {
    return this.values[name];
  }

  section(name: string, required = false): Section {
    return new Section(this.take(name, required), this.key(name), this.problems);
  }

  /** A subsection that is there, or undefined when the key is absent. */
  optionalSection(name: string): Section | undefined {
    const v = this.take(name, false);
    return v === undefined ? undefined : new Section(v, this.key(name), this.problems);
  }

  string(name: string, required = false): string | undefined {
    const v = this.take(name, required);
    if (v === undefined) return undefined;
    if (typeof v !== 'string' && typeof v !== 'number') return this.fail(name, 'must be a string', v);
    return String(v);
  }

  oneOf<T extends string>(name: string, allowed: readonly T[], required = false): T | undefined {
    const v = this.string(name, required);
    if (v === undefined) return undefined;
    if (!(allowed as readonly string[]).includes(v)) return this.fail(name, `must be one of ${allowed.join(', ')}`, v);
    return v as T;
  }

  identifier(name: string): string | undefined {
    const v = this.string(name);
    if (v !== undefined && (v.length === 0 || Buffer.byteLength(v) > 63)) return this.fail(name, 'must be a name of 1 to 63 bytes (PostgreSQL keeps no more)', v);
    return v;
  }

  identifierList(name: string): string[] | undefined {
    const v = this.take(name, false);
    if (v === undefined) return undefined;
    if (!Array.isArray(v) || v.some((s) => typeof s !== 'string' || s.length === 0)) {
      return this.fail(name, 'must be a list of names', v);
    }
    return v as string[];
  }

  stringMap(name: string): Record<string, string> | undefined {
    const v = this.take(name, false);
    if (v === undefined) return undefined;
    if (typeof v !== 'object' || Array.isArray(v) || Object.values(v as object).some((s) => typeof s !== 'string')) {
      return this.fail(name, 'must be a mapping of table name to foreign key name', v);
    }
    return v as Record<string, string>;
  }

  integer(name: string, min: number, max: number): number | undefined {
    const v = this.take(name, false);
    if (v === undefined) return undefined;
    const n = typeof v === 'string' && /^-?\d+$/.test(v) ? Number(v) : v;
    if (typeof n !== 'number' || !Number.isInteger(n) || n < min || n > max) {
      return this.fail(name, `must be an integer from ${min} to ${max}`, v);
    }
    return n;
  }

  number(name: string, min: number, max: number): number | undefined {
    const v = this.take(name, false);
    if (v === undefined) return undefined;
    const n = typeof v === 'string' && /^-?\d+(\.\d+)?$/.test(v) ? Number(v) : v;
    if (typeof n !== 'number' || !Number.isFinite(n) || n < min || n > max) return this.fail(name, `must be a number from ${min} to ${max}`, v);
    return n;
  }

  boolean(name: string): boolean | undefined {
    const v = this.take(name, false);
    if (v === undefined) return undefined;
    if (typeof v === 'boolean') return v;
    if (v === 'true' || v === 'false') return v === 'true';
    return this.fail(name, 'must be true or false', v);
  }

  /** 90s, 30m, 24h, 7d, 1h30m */
  duration(name: string): number | undefined {
    const v = this.string(name);
    if (v === undefined) return undefined;
    try {
      return parseDuration(v);
    } catch {
      return this.fail(name, 'must be a duration like 90s, 30m, 24h or 7d', v);
    }
  }

  /** a size in bytes: 1048576, 512kB, 16MB, 1GB (powers of 1024, as Postgres reads them) */
  bytes(name: string): number | undefined {
    const v = this.string(name);
    if (v === undefined) return undefined;
    const bytes = sizeInBytes(v);
    if (bytes === undefined) return this.fail(name, 'must be a size like 1048576, 512kB, 16MB or 1GB', v);
    return bytes;
  }

  /** bytes per second: 512kB/s, 64MB/s, 1GB/s (the /s may be left out; powers of 1024) */
  rate(name: string, min: number, max: number): number | undefined {
    const v = this.string(name);
    if (v === undefined) return undefined;
    const bytes = rateInBytes(v);
    if (bytes === undefined || bytes < min || bytes > max) return this.fail(name, `must be a rate like 512kB/s or 64MB/s, from ${sizeText(min)}/s to ${sizeText(max)}/s`, v);
    return bytes;
  }

  /** a duration, or `off` (null) */
  durationOrOff(name: string): number | null | undefined {
    const v = this.string(name);
    if (v === undefined) return undefined;
    if (v === 'off') return null;
    try {
      return parseDuration(v);
    } catch {
      return this.fail(name, 'must be a duration like 24h, or off', v);
    }
  }

  url(name: string): string | undefined {
    const v = this.string(name);
    if (v === undefined) return undefined;
    if (!/^https?:\/\/[^/\s]+/.test(v)) return this.fail(name, 'must be an http(s) URL', v);
    return v;
  }

  postgresUrl(name: string, required = false): string | undefined {
    const v = this.string(name, required);
    if (v === undefined) return undefined;
    let parsed: URL;
    try {
      parsed = new URL(v);
    } catch {
      return this.fail(name, 'must be a postgres:// URL', redactUrl(v));
    }
    if (!['postgres:', 'postgresql:'].includes(parsed.protocol) || !parsed.pathname.slice(1)) {
      return this.fail(name, 'must be a postgres://user@host:port/database URL', redactUrl(v));
    }
    return v;
  }

  /** An http(s) URL that may hold a secret (a Slack webhook's path is one): problems never echo it. */
  secretUrl(name: string, required = false): string | undefined {
    const v = this.secret(name, required);
    if (v === undefined) return undefined;
    let parsed: URL | undefined;
    try {
      parsed = new URL(v);
    } catch {
      parsed = undefined;
    }
    if (!parsed || !['http:', 'https:'].includes(parsed.protocol) || !parsed.hostname) {
      this.problems.push(`${this.key(name)}: must be an http(s) URL like https://hooks.example.com/... (the value is not shown: it may hold a secret)`);
      return undefined;
    }
    return v;
  }

  /** A mapping of names to strings that may be secrets (HTTP headers): problems name the key, never a value. */
  secretMap(name: string): Record<string, string> | undefined {
    const v = this.take(name, false);
    if (v === undefined) return undefined;
    if (typeof v !== 'object' || Array.isArray(v) || Object.entries(v as object).some(([k, s]) => !/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(k) || (typeof s !== 'string' && typeof s !== 'number'))) {
      this.problems.push(`${this.key(name)}: must be a mapping of header names to strings (e.g. Authorization: "Bearer \${TOKEN}")`);
      return undefined;
    }
    return Object.fromEntries(Object.entries(v as object).map(([k, s]) => [k, String(s)]));
  }

  /** a@b.example, or Name <a@b.example> */
  emailAddress(name: string, required = false): string | undefined {
    const v = this.string(name, required);
    if (v !== undefined && !isEmailAddress(v)) return this.fail(name, 'must be an e-mail address like alerts@example.com', v);
    return v;
  }

  emailList(name: string, required = false): string[] | undefined {
    const v = this.take(name, required);
    if (v === undefined) return undefined;
    const list = typeof v === 'string' ? [v] : v;
    if (!Array.isArray(list) || list.length === 0 || list.some((a) => typeof a !== 'string' || !isEmailAddress(a))) {
      return this.fail(name, 'must be a list of one or more e-mail addresses like [ops@example.com]', v);
    }
    return list as string[];
  }

  hostPort(name: string): string | undefined {
    const v = this.string(name);
    if (v !== undefined && !/^[^\s:/]+:\d{1,5}$/.test(v)) return this.fail(name, 'must be host:port', v);
    return v;
  }

  /** A string that must not be echoed: problems name the key, never the value. */
  secret(name: string, required = false): string | undefined {
    const v = this.take(name, required);
    if (v === undefined) return undefined;
    if (typeof v !== 'string') {
      this.problems.push(`${this.key(name)}: must be a string (e.g. \${ENV_VAR})`);
      return undefined;
    }
    return v;
  }

  /** A mapping of free-form keys (e.g. tenant ids), each value a section read by `read`. */
  mapOf<T>(name: string, read: (section: Section, key: string) => T): Record<string, T> | undefined {
    const v = this.take(name, false);
    if (v === undefined) return undefined;
    if (typeof v !== 'object' || Array.isArray(v)) return this.fail(name, 'must be a mapping', v);
    return Object.fromEntries(Object.entries(v as object).map(([k, sub]) => [k, read(new Section(sub, this.key(`${name}.${k}`), this.problems), k)]));
  }

  /** A problem with a key's value that its reader cannot see (a pattern, another key). */
  reject(name: string, what: string, got: unknown): undefined {
    return this.fail(name, what, got);
  }

  /** Reports keys nobody asked for: usually a typo. */
  done(): void {
    for (const k of Object.keys(this.values)) {
      if (!this.seen.has(k)) this.problems.push(`${this.key(k)}: unknown key`);
    }
  }
}

function isEmailAddress(v: string): boolean {
  return /^(?:[^<>@\r\n]*<[^\s<>@]+@[^\s<>@]+\.[^\s<>@]+>|[^\s<>@]+@[^\s<>@]+\.[^\s<>@]+)$/.test(v.trim());
}


const sizeUnits: Record<string, number> = { B: 1, kB: 1024, MB: 1024 ** 2, GB: 1024 ** 3, TB: 1024 ** 4 };

/** 1048576, 512kB, 16MB, 1GB (powers of 1024, as Postgres reads them); undefined when it is not a size. */
function sizeInBytes(text: string): number | undefined {
  const m = /^\s*(\d+)\s*(B|kB|MB|GB|TB)?\s*$/.exec(text);
  return m ? Number(m[1]) * (sizeUnits[m[2] ?? 'B'] ?? 1) : undefined;
}

/** 64MB/s (or 64MB): bytes per second; undefined when it is not a rate. */
function rateInBytes(text: string): number | undefined {
  return sizeInBytes(text.replace(/\s*\/\s*s\s*$/, ''));
}

/** The largest unit that writes a size exactly: 32kB, 1GB. */
export function sizeText(bytes: number): string {
  const unit = (['TB', 'GB', 'MB', 'kB'] as const).find((u) => bytes % sizeUnits[u] === 0);
  return unit ? `${bytes / sizeUnits[unit]}${unit}` : `${bytes}B`;
}

/** A database URL with its password replaced, safe for logs, errors and workflow history. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return url.replace(/:\/\/([^:@/]+):[^@/]*@/, '://$1:***@');
  }
}

export interface ReadContext {
  /** relative paths are resolved against this directory (the config file's) */
  baseDir: string;
  /** the document's values read so far: conditions and computed defaults look at them */
  root: Record<string, unknown>;
}

/**
 * Reads every key of `keys` from `section` as the schema says, in the schema's order, then fills
 * in the defaults of the keys left out; a key the schema does not name is an unknown key. Keys
 * with neither a value nor a default are absent from the result. `into` receives the values
 * (the top level passes ctx.root, so later keys see earlier sections).
 */
export function readKeys(section: Section, keys: Keys, ctx: ReadContext, into: Record<string, unknown> = {}): Record<string, unknown> {
  for (const [name, field] of Object.entries(keys)) {
    const value = readField(section, name, field, ctx);
    if (value !== undefined) into[name] = value;
  }
  for (const [name, field] of Object.entries(keys)) {
    if (into[name] !== undefined || field.default === undefined) continue;
    const value = defaultOf(field, into, ctx);
    if (value !== undefined) into[name] = value;
  }
  section.done();
  return into;
}

function isRequired(field: Field, ctx: ReadContext): boolean {
  return typeof field.required === 'object' ? field.required.when(ctx.root) : field.required === true;
}

function readField(section: Section, name: string, field: Field, ctx: ReadContext): unknown {
  const required = isRequired(field, ctx);
  switch (field.type) {
    case 'section': {
      const raw = section.peek(name);
      if (field.booleanForm && (typeof raw === 'boolean' || raw === 'true' || raw === 'false')) return section.boolean(name) ? readKeys(section.empty(name), field.keys, ctx) : undefined;
      if (field.optional) {
        const sub = section.optionalSection(name);
        return sub && readKeys(sub, field.keys, ctx);
      }
      return readKeys(section.section(name, required), field.keys, ctx);
    }
    case 'map':
      return section.mapOf(name, (sub) => readKeys(sub, field.keys, ctx)) ?? {};
    case 'variant': {
      const sub = required ? section.section(name, true) : section.optionalSection(name);
      if (!sub) return undefined;
      const tag = sub.oneOf(field.tag, Object.keys(field.variants), true);
      if (tag === undefined) {
        sub.done();
        return undefined;
      }
      return readKeys(sub, field.variants[tag], ctx, { [field.tag]: tag });
    }
  }
  const value = readScalar(section, name, field, ctx);
  if (value === undefined && required) section.require(name);
  return value;
}

function readScalar(section: Section, name: string, field: Exclude<Field, { type: 'section' | 'map' | 'variant' }>, ctx: ReadContext): unknown {
  switch (field.type) {
    case 'string': {
      const v = section.string(name);
      if (v !== undefined && field.pattern && !field.pattern.test(v)) return section.reject(name, field.patternText ?? `must match ${field.pattern}`, v);
      return v;
    }
    case 'path': {
      const v = section.string(name);
      return v === undefined ? undefined : path.resolve(ctx.baseDir, v);
    }
    case 'oneOf':
      return section.oneOf(name, field.values);
    case 'integer':
      return section.integer(name, field.min, field.max);
    case 'number':
      return section.number(name, field.min, field.max);
    case 'rate':
      return section.rate(name, field.min, field.max);
    case 'identifier': {
      const v = section.identifier(name);
      if (v !== undefined && field.pattern && !field.pattern.test(v)) return section.reject(name, field.patternText ?? `must match ${field.pattern}`, v);
      return v;
    }
    case 'identifierList':
      return section.identifierList(name);
    case 'boolean':
      return section.boolean(name);
    case 'duration':
      return section.duration(name);
    case 'durationOrOff':
      return section.durationOrOff(name);
    case 'bytes':
      return section.bytes(name);
    case 'url':
      return section.url(name);
    case 'postgresUrl':
      return section.postgresUrl(name);
    case 'hostPort':
      return section.hostPort(name);
    case 'emailAddress':
      return section.emailAddress(name);
    case 'emailList':
      return section.emailList(name);
    case 'secret':
      return section.secret(name);
    case 'secretUrl':
      return section.secretUrl(name);
    case 'secretMap':
      return section.secretMap(name);
    case 'stringMap':
      return section.stringMap(name);
  }
}

/** A key's default, as a written value of it would read (a duration in ms, a path resolved). */
function defaultOf(field: Field, siblings: Record<string, unknown>, ctx: ReadContext): unknown {
  const written = typeof field.default === 'function' ? (field.default as (s: Record<string, unknown>, r: Record<string, unknown>) => unknown)(siblings, ctx.root) : field.default;
  if (written === undefined || written === null) return undefined;
  switch (field.type) {
    case 'duration':
      return parseDuration(String(written));
    case 'durationOrOff':
      return written === 'off' ? null : parseDuration(String(written));
    case 'bytes':
      return sizeInBytes(String(written));
    case 'rate':
      return rateInBytes(String(written));
    case 'path':
      return path.resolve(ctx.baseDir, String(written));
    default:
      return typeof written === 'object' ? structuredClone(written) : written;
  }
}
