// `tenantsafe storage sync` and `storage status`: the two locations compared, and made to hold the
// same objects again after one missed writes or deletes (it was down, or is new, or was lost and
// recreated empty). Every copy is read back from where it went and its sha256 compared with the
// source's. Within each direction objects go first and manifests last (docs/architecture.md, core
// rule 3), so a sync cut short leaves no manifest without its objects.
import { sha256OfStream } from '../checksum';
import { ErrorType, TenantsafeError } from '../errors';
import { isManifestKey, lagPrefix, otherLocation, type LagMarker, type ReplicatedStore } from './replicated';
import type { ObjectInfo, ObjectStore, StorageLocation } from './types';

export interface LocationStatus {
  uri: string;
  reachable: boolean;
  error?: string;
  objects: number;
  bytes: number;
  /** changes it missed, recorded when they happened (markers in the other location) */
  missedChanges: number;
  /** objects the other location holds and this one lacks, or holds at another size */
  behindBy: number;
}

export interface StorageStatus {
  primary: LocationStatus;
  secondary: LocationStatus;
  /** both reachable and neither behind */
  inSync: boolean;
}

export interface SyncResult {
  /** objects copied to each location, each read back and checked by sha256 */
  copied: Record<StorageLocation, number>;
  bytesCopied: number;
  /** deletes a location missed, carried out now */
  deleted: Record<StorageLocation, number>;
  /** with verify: objects on both whose sha256 were compared */
  compared: number;
  /** with verify: keys whose contents differed (the primary's copy now on both) */
  differed: string[];
  status: StorageStatus;
}

/** Lists one location's objects (markers aside); null and the error when it cannot be listed. */
async function objectsOf(store: ObjectStore): Promise<{ objects: Map<string, ObjectInfo>; error?: string }> {
  const objects = new Map<string, ObjectInfo>();
  try {
    for await (const o of store.list('')) if (!o.key.startsWith(lagPrefix)) objects.set(o.key, o);
    return { objects };
  } catch (err) {
    return { objects, error: (err as Error).message };
  }
}

export async function storageStatus(store: ReplicatedStore): Promise<StorageStatus> {
  const [p, s] = await Promise.all([objectsOf(store.primary), objectsOf(store.secondary)]);
  const locations = { primary: p, secondary: s };
  const statusOf = async (l: StorageLocation): Promise<LocationStatus> => {
    const mine = locations[l];
    const theirs = locations[otherLocation(l)];
    const markers = await store.lagMarkers(l).catch(() => []);
    return {
      uri: store.location(l).uri,
      reachable: !mine.error,
      ...(mine.error ? { error: mine.error } : {}),
      objects: mine.objects.size,
      bytes: [...mine.objects.values()].reduce((n, o) => n + o.bytes, 0),
      missedChanges: markers.length,
      behindBy: [...theirs.objects.values()].filter((o) => mine.objects.get(o.key)?.bytes !== o.bytes).length,
    };
  };
  const primary = await statusOf('primary');
  const secondary = await statusOf('secondary');
  const inSync = [primary, secondary].every((l) => l.reachable && l.missedChanges === 0 && l.behindBy === 0);
  return { primary, secondary, inSync };
}

/**
 * Catches both locations up: the deletes each missed, then every object one lacks (or, from the
 * primary, holds at another size; with `verify`, with other contents) copied from the other.
 * The markers of missed changes are removed once all of it succeeded.
 */
export async function syncStorage(store: ReplicatedStore, opts: { verify?: boolean; onProgress?: (done: number, total: number) => void } = {}): Promise<SyncResult> {
  for (const l of ['primary', 'secondary'] as const) {
    await store.location(l).probe().catch((err: Error) => {
      throw new TenantsafeError(ErrorType.StorageUnavailable, `Cannot sync: the ${l} ${store.location(l).uri} is not usable: ${err.message}`, `Bring the ${l} location back (or fix storage.${l} in the config), then run \`tenantsafe storage sync\` again.`);
    });
  }
  const markers = { primary: await store.lagMarkers('primary'), secondary: await store.lagMarkers('secondary') };

  const deleted = { primary: 0, secondary: 0 };
  for (const behind of ['primary', 'secondary'] as const) {
    const target = store.location(behind);
    for (const m of markers[behind]) {
      const marker = JSON.parse((await store.location(otherLocation(behind)).getBytes(m.key)).toString('utf8')) as LagMarker;
      if (marker.op === 'delete') {
        if (await target.stat(marker.key)) deleted[behind]++;
        await target.delete(marker.key);
      } else if (marker.op === 'deletePrefix') {
        deleted[behind] += await target.deletePrefix(marker.key);
      }
    }
  }

  const [p, s] = await Promise.all([objectsOf(store.primary), objectsOf(store.secondary)]);
  const failed = p.error ?? s.error;
  if (failed) throw new TenantsafeError(ErrorType.StorageUnavailable, `Cannot sync: listing failed: ${failed}`, 'Check both storage locations are reachable, then run `tenantsafe storage sync` again.');
  const differed: string[] = [];
  let compared = 0;
  if (opts.verify) {
    for (const [key, o] of p.objects) {
      if (s.objects.get(key)?.bytes !== o.bytes) continue; // copied below anyway
      compared++;
      const [a, b] = await Promise.all([sha256OfStream(await store.primary.get(key)), sha256OfStream(await store.secondary.get(key))]);
      if (a !== b) differed.push(key);
    }
  }
  const toSecondary = [...p.objects.values()].filter((o) => s.objects.get(o.key)?.bytes !== o.bytes || differed.includes(o.key));
  const toPrimary = [...s.objects.values()].filter((o) => !p.objects.has(o.key));
  const plan = [
    ...manifestsLast(toPrimary).map((o) => ({ o, to: 'primary' as const })),
    ...manifestsLast(toSecondary).map((o) => ({ o, to: 'secondary' as const })),
  ];

  const copied = { primary: 0, secondary: 0 };
  let bytesCopied = 0;
  for (const [i, { o, to }] of plan.entries()) {
    bytesCopied += await copyChecked(store.location(otherLocation(to)), store.location(to), o.key);
    copied[to]++;
    opts.onProgress?.(i + 1, plan.length);
  }
  for (const behind of ['primary', 'secondary'] as const) {
    for (const m of markers[behind]) await store.location(otherLocation(behind)).delete(m.key);
  }
  return { copied, bytesCopied, deleted, compared, differed, status: await storageStatus(store) };
}

function manifestsLast(objects: ObjectInfo[]): ObjectInfo[] {
  return [...objects.filter((o) => !isManifestKey(o.key)), ...objects.filter((o) => isManifestKey(o.key))];
}

/** Copies one object and reads the copy back: its sha256 must be the source's. Returns the bytes copied. */
async function copyChecked(from: ObjectStore, to: ObjectStore, key: string): Promise<number> {
  const put = await to.put(key, await from.get(key));
  const stored = await sha256OfStream(await to.get(key));
  if (stored !== put.sha256) {
    throw new TenantsafeError(
      ErrorType.StorageUnwritable,
      `The copy of ${key} in ${to.uri} reads back with sha256 ${stored}; ${from.uri} sent ${put.sha256}.`,
      `Check ${to.uri} (disk, bucket) and run \`tenantsafe storage sync\` again.`,
    );
  }
  return put.bytes;
}
