// Storage keys: one rule for every driver, so a key names the same object everywhere and can
// never escape a store's root.
import { ErrorType, TenantsafeError } from '../errors';

/** `.<name>.partial-<pid>-<hex>`: where a put writes before it renames onto <name>. */
export const partialName = /^\.(.+)\.partial-\d+-[0-9a-f]+$/;

/**
 * Throws BadInput unless `key` is a relative '/'-separated path of plain names (shared by all
 * drivers, so a key means the same object everywhere and can never escape the store's root).
 * A prefix may also be empty, end with '/', or end inside a name.
 */
export function checkKey(key: string, kind: 'key' | 'prefix' = 'key'): void {
  const segments = key.split('/');
  const last = segments.length - 1;
  let problem: string | undefined;
  if (key.includes('\0')) problem = 'contains a NUL character';
  else if (key.startsWith('/')) problem = 'starts with /';
  else if (segments.some((s, i) => s === '' && !(kind === 'prefix' && i === last))) problem = 'is empty or has an empty segment (//)';
  else if (segments.some((s) => s === '.' || s === '..')) problem = 'has a . or .. segment';
  else if (kind === 'key' && partialName.test(segments[last])) problem = 'has the name of a partial upload';
  if (problem) {
    throw new TenantsafeError(ErrorType.BadInput, `Invalid storage ${kind} ${JSON.stringify(key)}: it ${problem}.`, 'Use a relative path of names separated by single slashes.');
  }
}


/** Key order as GCS lists it: by UTF-8 bytes (every driver lists in this order). */
export function byKey(a: { key: string }, b: { key: string }): number {
  return Buffer.compare(Buffer.from(a.key), Buffer.from(b.key));
}
