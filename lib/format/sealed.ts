// What every manifest of ours shares (docs/format.md): a format version readers check, and a
// checksum over its own canonical JSON; written last and atomically, so a present manifest means
// a complete backup.
import { canonicalJson, sha256Hex } from '../checksum';
import { ErrorType, TenantsafeError } from '../errors';
import { gunzipSync, gzipSync } from 'node:zlib';
import type { ObjectStore } from '../storage/types';

export const manifestFormatVersion = 1;
export const manifestFile = 'manifest.json';
/** written first: marks a backup in progress (or, beside a manifest, where a complete one began) */
export const startedMarkerFile = 'started.json';

/** Adds the checksum over the canonical JSON of every field (tenant and full backup manifests alike). */
export function sealManifest<const T extends { formatVersion: number }>(m: T): T & { manifestChecksum: string } {
  return { ...m, manifestChecksum: sha256Hex(canonicalJson(m)) };
}

/** Writes the manifest last and atomically; returns its sha256. */
export async function writeManifest(store: ObjectStore, prefix: string, manifest: { manifestChecksum: string }): Promise<string> {
  const body = Buffer.from(JSON.stringify(manifest, null, 2) + '\n');
  const put = await store.put(prefix + manifestFile, body, { contentType: 'application/json' });
  return put.sha256;
}

/**
 * A manifest's bytes as a batch stores them: gzip of its JSON without indentation (a batch writes
 * one per tenant, where the manifest can outweigh the tenant's data; readers tell by the gzip
 * magic bytes).
 */
export function compactManifest(manifest: { manifestChecksum: string }): Buffer {
  return gzipSync(Buffer.from(JSON.stringify(manifest) + '\n'), { windowBits: 14, memLevel: 6 });
}

const isGzip = (b: Buffer) => b.length > 2 && b[0] === 0x1f && b[1] === 0x8b;

/** Parses any manifest of ours (plain JSON, or gzip of it): rejects bad JSON, a format version not in `readable` and a checksum that does not match. */
export function parseSealedManifest<T extends { formatVersion: number; manifestChecksum: string }>(body: Buffer, key: string, readable: readonly number[] = [manifestFormatVersion]): T {
  let m: T;
  try {
    m = JSON.parse((isGzip(body) ? gunzipSync(body) : body).toString('utf8'));
  } catch (err) {
    throw new TenantsafeError(ErrorType.CorruptBackup, `Manifest ${key} is not valid JSON: ${(err as Error).message}.`, 'The backup cannot be trusted; use another backup.');
  }
  if (!readable.includes(m?.formatVersion)) {
    throw new TenantsafeError(
      ErrorType.UnsupportedFormat,
      `Manifest ${key} has format version ${JSON.stringify(m?.formatVersion)}; this tenantsafe reads ${versionsText(readable)}.`,
      'Use the tenantsafe release that wrote this backup, or a newer one.',
    );
  }
  const { manifestChecksum, ...rest } = m;
  if (manifestChecksum !== sha256Hex(canonicalJson(rest))) {
    throw new TenantsafeError(ErrorType.CorruptBackup, `Manifest ${key} does not match its own checksum: it was altered or damaged.`, 'The backup cannot be trusted; use another backup.');
  }
  return m;
}

/** `version 1`, `versions 1 and 2`, `versions 1 to 6` */
function versionsText(versions: readonly number[]): string {
  const sorted = [...versions].sort((a, b) => a - b);
  if (sorted.length === 1) return `version ${sorted[0]}`;
  const contiguous = sorted.every((v, i) => i === 0 || v === sorted[i - 1] + 1);
  return contiguous && sorted.length > 2 ? `versions ${sorted[0]} to ${sorted[sorted.length - 1]}` : `versions ${sorted.slice(0, -1).join(', ')} and ${sorted[sorted.length - 1]}`;
}
