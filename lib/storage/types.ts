// One interface for every place backups live. Keys are '/'-separated paths relative to the
// store's root (e.g. tenants/acme/20261125-053012-345T/manifest.json).
import type { Readable } from 'node:stream';

/** One of the configured locations (storage.primary, storage.secondary). */
export type StorageLocation = 'primary' | 'secondary';

export interface ObjectInfo {
  key: string;
  bytes: number;
}

export interface PutResult {
  key: string;
  bytes: number;
  /** hex sha256 of the bytes stored */
  sha256: string;
}

export interface ByteRange {
  offset: number;
  length: number;
}

/** A small object whose bytes are all at hand (a batch's manifests). */
export interface SmallObject {
  key: string;
  body: Buffer;
  contentType?: string;
}

export interface PutOptions {
  contentType?: string;
  /** aborts the upload; nothing becomes visible */
  signal?: AbortSignal;
}

export interface ObjectStore {
  /** Where this store points, without credentials: file:///abs/path or gs://bucket/prefix */
  readonly uri: string;
  /**
   * Streams the source into key. The object becomes visible only once complete and durable
   * (local: write to a hidden partial file, fsync, rename; GCS: an upload finalises atomically).
   * Overwrites an existing object. Returns the sha256 and size of what was stored.
   */
  put(key: string, source: Readable | Buffer, opts?: PutOptions): Promise<PutResult>;
  /**
   * A small object stored only when no object has its key, decided by the store at once (local:
   * a hard link of the durable partial file; GCS: a generation precondition of 0): of writers
   * racing for one key exactly one stores. null when an object was there, which is left as it is.
   */
  putIfAbsent(key: string, body: Buffer, opts?: PutOptions): Promise<PutResult | null>;
  /**
   * Writes many small objects, each visible only once complete (as put), all durable when it
   * resolves: local storage makes them durable with one sync of the file system instead of
   * several per object. Not atomic as a group: after a failure some may be there.
   */
  putMany(objects: readonly SmallObject[], opts?: Pick<PutOptions, 'signal'>): Promise<PutResult[]>;
  /** A read stream; rejects with TenantsafeError ObjectMissing when there is no such object. */
  get(key: string): Promise<Readable>;
  getBytes(key: string): Promise<Buffer>;
  /**
   * A read stream of `length` bytes from `offset` (a tenant's part of a shared pack). Rejects with
   * ObjectMissing when there is no such object; a range past the end yields only the bytes that
   * exist (callers check a part's sha256, which catches the short read).
   */
  getRange(key: string, range: ByteRange): Promise<Readable>;
  /** null when there is no such object */
  stat(key: string): Promise<ObjectInfo | null>;
  /** Every complete object whose key starts with prefix, in key order (partial uploads never). */
  list(prefix: string): AsyncIterable<ObjectInfo>;
  /** Idempotent: deleting a missing object is fine. */
  delete(key: string): Promise<void>;
  /** Deletes everything under prefix, partial uploads included; returns how many objects went. */
  deletePrefix(prefix: string): Promise<number>;
  /** Checks the store is reachable and writable; throws StorageUnwritable or StorageUnavailable. */
  probe(): Promise<void>;
}
