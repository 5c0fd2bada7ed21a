// Google Cloud Storage (or fake-gcs-server) as an object store. Keys live under
// gs://<bucket>/<prefix>/. An object becomes visible only when its upload finalises, which
// for a stream happens only after the source has ended: a failed or aborted put leaves at most
// an unfinished resumable session, which GCS never lists and expires after a week.
import { createHash, randomBytes } from 'node:crypto';
import { PassThrough, Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { IdempotencyStrategy, Storage, type Bucket } from '@google-cloud/storage';
import type { StorageConfig } from '../config';
import { ErrorType, TenantsafeError } from '../errors';
import { mapLimit } from '../limit';
import { checkKey } from './keys';
import type { ByteRange, ObjectInfo, ObjectStore, PutOptions, PutResult, SmallObject } from './types';

export type GcsStorageConfig = Extract<StorageConfig, { kind: 'gcs' }>;

/**
 * Resumable uploads send the stream in chunks of this size and keep the last one in memory,
 * so a chunk that fails half-way can be sent again; without a chunk size the library sends
 * one long request that cannot resume after a partial failure.
 */
const chunkSize = 8 * 1024 * 1024;

/** deletes in flight at once during deletePrefix */
const deleteConcurrency = 16;

/** Connection-level failures of the HTTP clients the library uses (node-fetch, gaxios). */
const networkCode = /^E[A-Z]+$/;

/** uploads of one putMany in flight at once */
const requestsInFlight = 32;

export class GcsStore implements ObjectStore {
  readonly uri: string;
  private readonly bucket: Bucket;
  /** '' or '<prefix>/' */
  private readonly base: string;
  private readonly endpoint: string;

  constructor(private readonly cfg: GcsStorageConfig) {
    this.base = cfg.prefix ? `${cfg.prefix}/` : '';
    this.uri = `gs://${cfg.bucket}${cfg.prefix ? `/${cfg.prefix}` : ''}`;
    const custom = normalEndpoint(cfg.apiEndpoint || process.env.STORAGE_EMULATOR_HOST);
    this.endpoint = custom ?? 'https://storage.googleapis.com';
    const storage = new Storage({
      // A custom endpoint (the emulator) means no authentication, unless useAuthWithCustomEndpoint.
      apiEndpoint: custom,
      projectId: cfg.projectId,
      // Per API call, until the response starts: streamed bodies (downloads) are not cut off.
      timeout: 10_000,
      retryOptions: {
        // Few, short retries: a dead endpoint fails in seconds rather than minutes; the
        // activity that called us retries on its own schedule (StorageUnavailable is transient).
        maxRetries: 2,
        retryDelayMultiplier: 2,
        maxRetryDelay: 4,
        totalTimeout: 15,
        // Every put writes a whole object under a key the caller owns, and deletes ignore
        // missing objects: repeating any of our calls is harmless.
        idempotencyStrategy: IdempotencyStrategy.RetryAlways,
      },
    });
    // With STORAGE_EMULATOR_HOST set, the library sends API calls to that URL as is (no
    // /storage/v1) but uploads to <it>/upload/storage/v1: no form of the variable suits both,
    // so the API base is pinned to the endpoint we resolved.
    if (custom) storage.baseUrl = `${custom}/storage/v1`;
    this.bucket = storage.bucket(cfg.bucket);
  }

  async put(key: string, source: Readable | Buffer, opts: PutOptions = {}): Promise<PutResult> {
    if (Buffer.isBuffer(source)) return (await this.saveWhole(key, source, opts, false))!;
    checkKey(key);
    opts.signal?.throwIfAborted();
    const file = this.bucket.file(this.base + key);
    const hash = createHash('sha256');
    let bytes = 0;
    let sourceError: unknown;
    const tap = async function* (chunks: AsyncIterable<Buffer | string>): AsyncGenerator<Buffer> {
      try {
        for await (const chunk of chunks) {
          const buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk);
          hash.update(buf);
          bytes += buf.length;
          yield buf;
        }
      } catch (err) {
        sourceError = err;
        throw err;
      }
    };
    try {
      await pipeline(source, tap, file.createWriteStream({ resumable: true, chunkSize, contentType: opts.contentType }), { signal: opts.signal });
    } catch (err) {
      // The caller's own failures (its source, its abort) reach it unchanged.
      if (err === sourceError || opts.signal?.aborted) throw err;
      throw await this.writeError(err, key);
    }
    const sha256 = hash.digest('hex');
    // The digest is known only now, after the object went live. The generation precondition
    // keeps us from labelling an object someone else wrote over ours meanwhile.
    await this.call(`labelling ${key} with its sha256`, () =>
      file.setMetadata({ metadata: { sha256 } }, { ifGenerationMatch: file.metadata.generation }),
    );
    return { key, bytes, sha256 };
  }

  putIfAbsent(key: string, body: Buffer, opts: PutOptions = {}): Promise<PutResult | null> {
    return this.saveWhole(key, body, opts, true);
  }

  /**
   * One request: a small object (a manifest, a key file) whose digest is known before it is sent.
   * `ifAbsent`: generation 0 as a precondition, only if no live object has the name, and null when
   * one has (a retry of a lost reply finds ours there, and reads it as the caller would another's).
   */
  private async saveWhole(key: string, body: Buffer, opts: PutOptions, ifAbsent: boolean): Promise<PutResult | null> {
    checkKey(key);
    opts.signal?.throwIfAborted();
    const sha256 = createHash('sha256').update(body).digest('hex');
    try {
      await this.bucket.file(this.base + key).save(body, { resumable: false, contentType: opts.contentType, metadata: { metadata: { sha256 } }, ...(ifAbsent ? { preconditionOpts: { ifGenerationMatch: 0 } } : {}) });
    } catch (err) {
      if (ifAbsent && (err as { code?: number }).code === 412) return null;
      throw await this.writeError(err, key);
    }
    return { key, bytes: body.length, sha256 };
  }

  /** One request per object (an upload is durable once it finalises), several in flight. */
  async putMany(objects: readonly SmallObject[], opts: Pick<PutOptions, 'signal'> = {}): Promise<PutResult[]> {
    return mapLimit(objects, requestsInFlight, (o) => this.put(o.key, o.body, { contentType: o.contentType, signal: opts.signal }));
  }

  get(key: string): Promise<Readable> {
    return this.open(key);
  }

  getRange(key: string, range: ByteRange): Promise<Readable> {
    return this.open(key, range);
  }

  private async open(key: string, range?: ByteRange): Promise<Readable> {
    checkKey(key);
    const found = await this.objectMetadata(key);
    if (!found) throw this.missing(key);
    if (range?.length === 0) return Readable.from([]);
    // Pinned to the generation just seen: an overwrite meanwhile cannot mix two versions. A range
    // is a ranged GET (end inclusive): only those bytes leave the bucket.
    const file = this.bucket.file(this.base + key, { generation: found.generation });
    const src = file.createReadStream(range ? { start: range.offset, end: range.offset + range.length - 1 } : {});
    const out = new PassThrough();
    // the caller reads it later (after making its own output ready): an error before then (the
    // object removed meanwhile, a WAL partial replaced by its segment) waits in the stream for
    // that reader, where without a listener it would be thrown and end the process
    out.on('error', () => undefined);
    src.once('error', (err) => out.destroy(isNotFound(err) ? this.missing(key) : (this.storeError(err, `reading ${key}`) as Error)));
    out.once('close', () => src.destroy());
    return src.pipe(out);
  }

  async getBytes(key: string): Promise<Buffer> {
    checkKey(key);
    try {
      const [data] = await this.bucket.file(this.base + key).download();
      return data;
    } catch (err) {
      throw isNotFound(err) ? this.missing(key) : this.storeError(err, `reading ${key}`);
    }
  }

  async stat(key: string): Promise<ObjectInfo | null> {
    checkKey(key);
    const found = await this.objectMetadata(key);
    return found && { key, bytes: found.bytes };
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    checkKey(prefix, 'prefix');
    let pageToken: string | undefined;
    do {
      const [files, next] = await this.call(`listing ${prefix || '/'}`, () =>
        this.bucket.getFiles({ prefix: this.base + prefix, autoPaginate: false, maxResults: 1000, pageToken }),
      );
      // GCS lists in key order; so does fake-gcs-server.
      for (const f of files) yield { key: f.name.slice(this.base.length), bytes: Number(f.metadata.size) };
      pageToken = (next as { pageToken?: string } | null)?.pageToken;
    } while (pageToken);
  }

  async delete(key: string): Promise<void> {
    checkKey(key);
    await this.call(`deleting ${key}`, () => this.bucket.file(this.base + key).delete({ ignoreNotFound: true }));
  }

  async deletePrefix(prefix: string): Promise<number> {
    const keys: string[] = [];
    for await (const o of this.list(prefix)) keys.push(o.key);
    for (let i = 0; i < keys.length; i += deleteConcurrency) {
      await Promise.all(keys.slice(i, i + deleteConcurrency).map((k) => this.delete(k)));
    }
    return keys.length;
  }

  async probe(): Promise<void> {
    const file = this.bucket.file(`${this.base}.tenantsafe-probe-${process.pid}-${randomBytes(6).toString('hex')}`);
    await this.call('writing a probe object', () => file.save(Buffer.from('tenantsafe probe\n'), { resumable: false }));
    await this.call('deleting the probe object', () => file.delete({ ignoreNotFound: true }));
  }

  private async objectMetadata(key: string): Promise<{ bytes: number; generation: number } | null> {
    try {
      const [m] = await this.bucket.file(this.base + key).getMetadata();
      return { bytes: Number(m.size), generation: Number(m.generation) };
    } catch (err) {
      if (isNotFound(err)) return null;
      throw this.storeError(err, `reading ${key}`);
    }
  }

  private async call<T>(what: string, op: () => Promise<T>): Promise<T> {
    try {
      return await op();
    } catch (err) {
      throw this.storeError(err, what);
    }
  }

  /**
   * A write's failure. A 404 while the bucket is there (looked up again) is a passing state of the
   * service, not a missing bucket: a resumable upload's session lost when the storage restarted,
   * a bucket not served yet by a restarting server. Retried, not refused for good.
   */
  private async writeError(err: unknown, key: string): Promise<unknown> {
    if (isNotFound(err) && (await this.bucket.exists().then(([yes]) => yes, () => false))) {
      return new TenantsafeError(ErrorType.StorageUnavailable, `GCS ${this.uri} (${this.endpoint}) lost the write of ${key} (HTTP 404 while the bucket exists).`, 'Retrying is safe: the object is written again from the start.');
    }
    return this.storeError(err, `writing ${key}`);
  }

  private missing(key: string): TenantsafeError {
    return new TenantsafeError(ErrorType.ObjectMissing, `There is no object ${key} in ${this.uri}.`, 'Check the backup id; `tenantsafe verify <backupId>` reports every missing object.');
  }

  /** Our error types for what GCS or the network said; anything else (a bug) as it is. */
  private storeError(err: unknown, what: string): unknown {
    const status = httpStatus(err);
    const message = (err as Error).message?.split('\n')[0];
    const where = `GCS ${this.uri} (${this.endpoint})`;
    if (status === 401 || status === 403) {
      return new TenantsafeError(
        ErrorType.StorageUnwritable,
        `${where} refused ${what}: HTTP ${status} ${message}.`,
        'Give the credentials (GOOGLE_APPLICATION_CREDENTIALS or the workload identity) roles/storage.objectAdmin on the bucket.',
      );
    }
    // Object reads handle their own 404s: a 404 here is about the bucket.
    if (status === 404) {
      return new TenantsafeError(
        ErrorType.StorageUnwritable,
        `${where}: bucket ${this.cfg.bucket} does not exist (HTTP 404 while ${what}).`,
        'Create the bucket, or fix storage.primary.bucket (or storage.secondary.bucket) in the config.',
      );
    }
    const code = (err as { code?: unknown }).code;
    if (
      status === 408 ||
      status === 429 ||
      (status !== undefined && status >= 500) ||
      (typeof code === 'string' && networkCode.test(code)) ||
      (err as { type?: unknown }).type === 'request-timeout' ||
      // What the resumable upload throws once it gives up retrying a retryable failure.
      /^Retry (total time )?limit exceeded/.test(message ?? '')
    ) {
      return new TenantsafeError(
        ErrorType.StorageUnavailable,
        `${where} is unavailable while ${what}: ${message}.`,
        `Check that ${this.endpoint} is reachable; retrying is safe.`,
      );
    }
    return err;
  }
}

/** apiEndpoint or STORAGE_EMULATOR_HOST with a scheme (http if none: emulators), without /storage/v1. */
function normalEndpoint(value: string | undefined): string | undefined {
  if (!value) return undefined;
  const url = /^[a-z]+:\/\//i.test(value) ? value : `http://${value}`;
  return url.replace(/\/+$/, '').replace(/\/storage\/v1$/, '');
}

/** The HTTP status of an error from either client the library uses, if it has one. */
function httpStatus(err: unknown): number | undefined {
  const e = err as { code?: unknown; status?: unknown; response?: { status?: unknown } } | undefined;
  return [e?.code, e?.status, e?.response?.status].find((v): v is number => typeof v === 'number');
}

function isNotFound(err: unknown): boolean {
  return httpStatus(err) === 404;
}
