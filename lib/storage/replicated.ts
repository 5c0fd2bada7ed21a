// Two locations as one store (storage.primary and storage.secondary, e.g. two regions). Every
// object is written to the primary, then copied from it to the secondary, the copy's sha256
// checked against the primary's. Reads take the primary and fall over to the secondary when the
// primary fails or lacks the object; listings are the union of both. A location that misses a
// write or a delete (it was down) is recorded as behind by a marker object in the other one;
// `tenantsafe storage sync` (sync.ts) catches it up. While the secondary is behind, manifests are
// not copied to it, so it never holds a manifest whose objects it lacks (docs/architecture.md,
// core rule 3): a secondary that is behind holds fewer backups, never broken ones.
import { randomBytes } from 'node:crypto';
import type { Readable } from 'node:stream';
import { ErrorType, TenantsafeError } from '../errors';
import { changeLogObjectOfKey } from '../format/changeLog';
import { manifestFile } from '../format/sealed';
import { byKey } from './keys';
import { mapLimit } from '../limit';
import type { ByteRange, ObjectInfo, ObjectStore, PutOptions, PutResult, SmallObject, StorageLocation } from './types';

/** `storage-lag/<location>/<time>-<random>.json`: a write or delete that location missed, kept in the other one */
export const lagPrefix = 'storage-lag/';

export interface LagMarker {
  /** the location that missed the change */
  behind: StorageLocation;
  op: 'put' | 'delete' | 'deletePrefix';
  key: string;
  at: string;
  error: string;
}

/** When a marker was written, from its key (ISO-8601, to the second). */
export function lagMarkerTime(markerKey: string): string {
  const s = markerKey.slice(markerKey.lastIndexOf('/') + 1);
  return `${s.slice(0, 4)}-${s.slice(4, 6)}-${s.slice(6, 8)}T${s.slice(9, 11)}:${s.slice(11, 13)}:${s.slice(13, 15)}Z`;
}

/** After the primary fails, reads and writes go straight to the secondary for this long before the primary is tried again. */
const primaryRetryMs = 60_000;
/** The same notice is logged at most once in this long (a lost primary fails every read). */
const noticeEveryMs = 60_000;

export function isStorageFailure(err: unknown): boolean {
  return err instanceof TenantsafeError && (err.type === ErrorType.StorageUnavailable || err.type === ErrorType.StorageUnwritable);
}

function isObjectMissing(err: unknown): boolean {
  return err instanceof TenantsafeError && err.type === ErrorType.ObjectMissing;
}

/** Objects their writers write last (tenant and full backup manifests, change-log segment manifests). */
export function isManifestKey(key: string): boolean {
  return key.endsWith(`/${manifestFile}`) || (changeLogObjectOfKey(key)?.kind === 'segment' && key.endsWith('.json'));
}

export function otherLocation(location: StorageLocation): StorageLocation {
  return location === 'primary' ? 'secondary' : 'primary';
}

export class ReplicatedStore implements ObjectStore {
  /** the primary's: workflow scopes and catalog rows name the primary, with or without a copy */
  readonly uri: string;
  private primaryFailedUntil = 0;
  private readonly noticed = new Map<string, number>();

  constructor(
    readonly primary: ObjectStore,
    readonly secondary: ObjectStore,
    private readonly log: (message: string) => void = (m) => console.error(`tenantsafe storage: ${m}`),
  ) {
    this.uri = primary.uri;
  }

  location(which: StorageLocation): ObjectStore {
    return which === 'primary' ? this.primary : this.secondary;
  }

  async put(key: string, source: Readable | Buffer, opts: PutOptions = {}): Promise<PutResult> {
    if (!this.primaryFailing()) {
      const stored = await this.primary.put(key, source, opts).catch((err: unknown) => {
        if (!isStorageFailure(err)) throw err;
        this.primaryFailed(err);
        if (Buffer.isBuffer(source)) return undefined; // written to the secondary below
        // a stream is spent: a retry (transient, so activities retry) writes it to the secondary
        throw new TenantsafeError(
          ErrorType.StorageUnavailable,
          `${(err as TenantsafeError).message.replace(/ HINT: .*$/s, '')}; the secondary ${this.secondary.uri} takes the next attempt.`,
          'Retry: writes go to the secondary while the primary fails; `tenantsafe storage sync` copies them back once it is fixed.',
        );
      });
      if (stored) {
        await this.copyToSecondary(key, stored, opts);
        return stored;
      }
    }
    const stored = await this.secondary.put(key, source, opts);
    await this.recordLag('primary', 'put', key, 'the primary is failing');
    return stored;
  }

  /** As put: the primary decides while it works, the secondary while it fails. */
  async putIfAbsent(key: string, body: Buffer, opts: PutOptions = {}): Promise<PutResult | null> {
    if (!this.primaryFailing()) {
      try {
        const stored = await this.primary.putIfAbsent(key, body, opts);
        if (stored) await this.copyToSecondary(key, stored, opts);
        return stored;
      } catch (err) {
        if (!isStorageFailure(err)) throw err;
        this.primaryFailed(err);
      }
    }
    const stored = await this.secondary.putIfAbsent(key, body, opts);
    if (stored) await this.recordLag('primary', 'put', key, 'the primary is failing');
    return stored;
  }

  /**
   * All to the primary at once, then all to the secondary, each copy's sha256 checked against
   * the primary's (the bytes are at hand); manifests held back while the secondary is behind.
   * A failing primary: object by object through put, which writes to the secondary instead.
   */
  async putMany(objects: readonly SmallObject[], opts: Pick<PutOptions, 'signal'> = {}): Promise<PutResult[]> {
    const oneByOne = () => mapLimit(objects, 8, (o) => this.put(o.key, o.body, { contentType: o.contentType, signal: opts.signal }));
    if (this.primaryFailing()) return oneByOne();
    let stored: PutResult[];
    try {
      stored = await this.primary.putMany(objects, opts);
    } catch (err) {
      if (!isStorageFailure(err)) throw err;
      this.primaryFailed(err);
      return oneByOne();
    }
    const behind = (await this.lagMarkers('secondary').catch(() => [])).length > 0;
    const held = behind ? objects.filter((o) => isManifestKey(o.key)) : [];
    const copies = behind ? objects.filter((o) => !isManifestKey(o.key)) : objects;
    try {
      const copied = await this.secondary.putMany(copies, opts);
      const primarySha = new Map(stored.map((s) => [s.key, s.sha256]));
      const wrong = copied.find((c) => c.sha256 !== primarySha.get(c.key));
      if (wrong) throw new TenantsafeError(ErrorType.CorruptBackup, `The copy of ${wrong.key} has sha256 ${wrong.sha256}, the primary's ${primarySha.get(wrong.key)}.`, 'Run `tenantsafe storage sync --verify`.');
    } catch (err) {
      if (opts.signal?.aborted) throw err;
      // which copies made it is not known: all are recorded as missed, `storage sync` copies them again
      await mapLimit(copies, 8, (o) => this.recordLag('secondary', 'put', o.key, messageOf(err)));
    }
    await mapLimit(held, 8, (o) => this.recordLag('secondary', 'put', o.key, 'held back until the objects the secondary misses are copied'));
    return stored;
  }

  get(key: string): Promise<Readable> {
    return this.read(key, (s) => s.get(key));
  }

  getBytes(key: string): Promise<Buffer> {
    return this.read(key, (s) => s.getBytes(key));
  }

  getRange(key: string, range: ByteRange): Promise<Readable> {
    return this.read(key, (s) => s.getRange(key, range));
  }

  async stat(key: string): Promise<ObjectInfo | null> {
    if (this.primaryFailing()) return this.secondary.stat(key);
    try {
      const info = await this.primary.stat(key);
      if (info) return info;
    } catch (err) {
      if (!isStorageFailure(err)) throw err;
      this.primaryFailed(err);
      return this.secondary.stat(key);
    }
    // the primary answered that it has none: a secondary that cannot answer changes nothing
    return this.secondary.stat(key).catch(() => null);
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    const fromSecondary = listAll(this.secondary, prefix);
    fromSecondary.catch(() => undefined); // awaited below; until then a rejection is not unhandled
    let primaryObjects: ObjectInfo[] | undefined;
    if (!this.primaryFailing()) {
      try {
        primaryObjects = await listAll(this.primary, prefix);
      } catch (err) {
        if (!isStorageFailure(err)) throw err;
        this.primaryFailed(err);
      }
    }
    let secondaryObjects: ObjectInfo[];
    try {
      secondaryObjects = await fromSecondary;
    } catch (err) {
      if (!primaryObjects) throw err;
      this.notice('secondary-list', `cannot list the secondary ${this.secondary.uri} (${messageOf(err)}); listing the primary alone`);
      yield* primaryObjects;
      return;
    }
    if (!primaryObjects) {
      yield* secondaryObjects;
      return;
    }
    const onPrimary = new Set(primaryObjects.map((o) => o.key));
    const onlyOnSecondary = secondaryObjects.filter((o) => !onPrimary.has(o.key));
    if (onlyOnSecondary.length > 0) {
      this.notice('secondary-only', `${onlyOnSecondary.length} object(s) under ${prefix || '/'} are on the secondary ${this.secondary.uri} only (${onlyOnSecondary[0].key} the first); reading them from it`);
    }
    yield* [...primaryObjects, ...onlyOnSecondary].sort(byKey);
  }

  delete(key: string): Promise<void> {
    return this.onBoth('delete', key, (s) => s.delete(key)).then(() => undefined);
  }

  async deletePrefix(prefix: string): Promise<number> {
    return Math.max(...(await this.onBoth('deletePrefix', prefix, (s) => s.deletePrefix(prefix))));
  }

  /** Writable means the primary, or failing that the secondary (backups go on; the primary is behind). */
  async probe(): Promise<void> {
    try {
      await this.primary.probe();
    } catch (err) {
      if (!isStorageFailure(err)) throw err;
      this.primaryFailed(err);
      await this.secondary.probe();
    }
  }

  /** The markers of what `location` missed (kept in the other location). */
  lagMarkers(location: StorageLocation): Promise<ObjectInfo[]> {
    return listAll(this.location(otherLocation(location)), `${lagPrefix}${location}/`);
  }

  private async copyToSecondary(key: string, stored: PutResult, opts: PutOptions): Promise<void> {
    try {
      // a manifest waits until its objects are all there: `storage sync` copies it after them
      if (isManifestKey(key) && (await this.lagMarkers('secondary')).length > 0) {
        // recorded too: a sync that began before this manifest existed leaves the secondary still marked behind
        await this.recordLag('secondary', 'put', key, 'held back until the objects the secondary misses are copied');
        return;
      }
      const copied = await this.secondary.put(key, await this.primary.get(key), { contentType: opts.contentType, signal: opts.signal });
      if (copied.sha256 !== stored.sha256) {
        await this.secondary.delete(key).catch(() => undefined);
        throw new TenantsafeError(ErrorType.CorruptBackup, `The copy of ${key} has sha256 ${copied.sha256}, the primary's ${stored.sha256}.`, 'Run `tenantsafe storage sync --verify`.');
      }
    } catch (err) {
      if (opts.signal?.aborted) throw err;
      await this.recordLag('secondary', 'put', key, messageOf(err));
    }
  }

  private async read<T>(key: string, op: (s: ObjectStore) => Promise<T>): Promise<T> {
    if (this.primaryFailing()) return op(this.secondary);
    try {
      return await op(this.primary);
    } catch (err) {
      if (isObjectMissing(err)) {
        const found = await op(this.secondary).catch(() => {
          throw err;
        });
        this.notice('missing-on-primary', `objects missing on the primary ${this.primary.uri} are read from the secondary ${this.secondary.uri} (${key} the first)`);
        return found;
      }
      if (!isStorageFailure(err)) throw err;
      this.primaryFailed(err);
      return op(this.secondary);
    }
  }

  private async onBoth<T>(op: 'delete' | 'deletePrefix', key: string, run: (s: ObjectStore) => Promise<T>): Promise<T[]> {
    const locations: StorageLocation[] = ['primary', 'secondary'];
    const results = await Promise.allSettled(locations.map((l) => run(this.location(l))));
    const done = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
    for (const [i, r] of results.entries()) {
      if (r.status === 'fulfilled') continue;
      if (!isStorageFailure(r.reason) || done.length === 0) throw r.reason;
      if (locations[i] === 'primary') this.primaryFailed(r.reason);
      await this.recordLag(locations[i], op, key, messageOf(r.reason));
    }
    return done;
  }

  /** Notes in the other location that `behind` missed a change; if that fails too, says so (both locations are failing). */
  private async recordLag(behind: StorageLocation, op: LagMarker['op'], key: string, error: string): Promise<void> {
    const at = new Date().toISOString();
    const marker: LagMarker = { behind, op, key, at, error };
    const markerKey = `${lagPrefix}${behind}/${at.replace(/[-:.]/g, '')}-${randomBytes(4).toString('hex')}.json`;
    this.notice(`lag-${behind}`, `the ${behind} ${this.location(behind).uri} is behind: ${op} of ${key} missed (${error}); \`tenantsafe storage sync\` catches it up`);
    await this.location(otherLocation(behind))
      .put(markerKey, Buffer.from(JSON.stringify(marker) + '\n'), { contentType: 'application/json' })
      .catch((err) => this.log(`could not record that the ${behind} missed ${op} of ${key}: ${messageOf(err)}`));
  }

  private primaryFailing(): boolean {
    return Date.now() < this.primaryFailedUntil;
  }

  private primaryFailed(err: unknown): void {
    this.primaryFailedUntil = Date.now() + primaryRetryMs;
    this.notice('primary-failed', `the primary ${this.primary.uri} is failing (${messageOf(err)}); reading and writing the secondary ${this.secondary.uri} for the next ${primaryRetryMs / 1000} s`);
  }

  private notice(kind: string, message: string): void {
    const last = this.noticed.get(kind) ?? 0;
    if (Date.now() - last < noticeEveryMs) return;
    this.noticed.set(kind, Date.now());
    this.log(message);
  }
}

async function listAll(store: ObjectStore, prefix: string): Promise<ObjectInfo[]> {
  const out: ObjectInfo[] = [];
  for await (const o of store.list(prefix)) out.push(o);
  return out;
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
