// A directory as an object store. A key maps to root/<key>; an object appears only through an
// atomic rename of a fully written and fsynced hidden partial file, so a crash or a killed
// writer leaves either the old object, the new one, or an invisible partial file that
// deletePrefix cleans up.
import { createHash, randomBytes } from 'node:crypto';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { link, mkdir, open, readdir, readFile, rename, rmdir, stat, unlink, writeFile, type FileHandle } from 'node:fs/promises';
import * as path from 'node:path';
import { addAbortSignal, Readable } from 'node:stream';
import { pathToFileURL } from 'node:url';
import type { StorageConfig } from '../config';
import { sha256Hex } from '../checksum';
import { ErrorType, TenantsafeError } from '../errors';
import { mapLimit } from '../limit';
import { byKey, checkKey, partialName } from './keys';
import type { ByteRange, ObjectInfo, ObjectStore, PutOptions, PutResult, SmallObject } from './types';

export type LocalStorageConfig = Extract<StorageConfig, { kind: 'local' }>;

function partialPath(file: string): string {
  return path.join(path.dirname(file), `.${path.basename(file)}.partial-${process.pid}-${randomBytes(6).toString('hex')}`);
}

interface Entry {
  kind: 'object' | 'partial' | 'dir';
  key: string;
  file: string;
}

/** bytes written between two background syncs of a large object (BatchedWriter) */
const backgroundSyncBytes = 32 << 20;

export class LocalStore implements ObjectStore {
  readonly uri: string;
  private readonly root: string;

  constructor(cfg: LocalStorageConfig) {
    this.root = path.resolve(cfg.path);
    this.uri = pathToFileURL(this.root).href;
  }

  async put(key: string, source: Readable | Buffer, opts: PutOptions = {}): Promise<PutResult> {
    const replace = async (partial: string, file: string) => {
      await this.writing(rename(partial, file), file);
      return true;
    };
    return (await this.write(key, source, opts, replace))!;
  }

  putIfAbsent(key: string, body: Buffer, opts: PutOptions = {}): Promise<PutResult | null> {
    return this.write(key, body, opts, (partial, file) => this.linkIfAbsent(partial, file, body));
  }

  /**
   * The written partial file becomes the key only if nothing has it: a hard link fails on an
   * existing name, atomically. A file system without hard links (some FUSE mounts) gets a rename,
   * then a wait longer than a racing writer's rename takes, and whichever bytes stayed win.
   */
  private async linkIfAbsent(partial: string, file: string, body: Buffer): Promise<boolean> {
    try {
      await link(partial, file);
      await unlink(partial).catch(() => undefined);
      return true;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? '';
      if (code === 'EEXIST') return false;
      if (!['EPERM', 'ENOTSUP', 'EOPNOTSUPP', 'ENOSYS'].includes(code)) throw this.unwritable(err, file);
    }
    if (await stat(file).then(() => true, (err: unknown) => (isMissing(err) ? false : Promise.reject(this.unwritable(err, file))))) return false;
    await this.writing(rename(partial, file), file);
    await new Promise((resolve) => setTimeout(resolve, withoutLinksSettleMs));
    return (await readFile(file).catch(() => null))?.equals(body) === true;
  }

  /** put, with `publish` making the durable partial file the key's (false: it did not, and null is returned) */
  private async write(key: string, source: Readable | Buffer, opts: PutOptions, publish: (partial: string, file: string) => Promise<boolean>): Promise<PutResult | null> {
    checkKey(key);
    opts.signal?.throwIfAborted();
    const file = path.join(this.root, key);
    const dir = path.dirname(file);
    const partial = partialPath(file);
    const hash = createHash('sha256');
    let bytes = 0;
    let fh: FileHandle | undefined;
    try {
      await this.mkdirDurably(dir);
      fh = await this.writing(open(partial, 'wx'), partial);
      const chunks = Buffer.isBuffer(source) ? [source] : opts.signal ? addAbortSignal(opts.signal, source) : source;
      const writer = new BatchedWriter(fh, (op) => this.writing(op, partial));
      // Errors of the source pass through as they are: only our own writes are storage errors.
      for await (const chunk of chunks) {
        const buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as string);
        hash.update(buf);
        bytes += buf.length;
        await writer.write(buf);
      }
      await writer.end();
      opts.signal?.throwIfAborted();
      await this.writing(fh.sync(), partial);
      await this.writing(fh.close(), partial);
      fh = undefined;
      if (!(await publish(partial, file))) {
        await unlink(partial).catch(() => undefined);
        return null;
      }
      await this.writing(fsyncDir(dir), dir);
    } catch (err) {
      await fh?.close().catch(() => undefined);
      await unlink(partial).catch(() => undefined);
      throw err;
    }
    return { key, bytes, sha256: hash.digest('hex') };
  }

  /**
   * put's order for each object (written, durable, renamed, the rename durable), paid once for
   * all: every partial file written, one sync of the file system, every rename, one more sync.
   */
  async putMany(objects: readonly SmallObject[], opts: Pick<PutOptions, 'signal'> = {}): Promise<PutResult[]> {
    for (const o of objects) checkKey(o.key);
    const files = objects.map((o) => path.join(this.root, o.key));
    const partials = files.map(partialPath);
    try {
      await mapLimit([...new Set(files.map((f) => path.dirname(f)))], fileOpsInFlight, (dir) => this.writing(mkdir(dir, { recursive: true }), dir));
      await mapLimit(objects, fileOpsInFlight, async (o, i) => {
        opts.signal?.throwIfAborted();
        await this.writing(writeFile(partials[i], o.body, { flag: 'wx' }), partials[i]);
      });
      await this.syncFileSystem();
      opts.signal?.throwIfAborted();
      await mapLimit(objects, fileOpsInFlight, (_, i) => this.writing(rename(partials[i], files[i]), files[i]));
      await this.syncFileSystem();
    } catch (err) {
      await mapLimit(partials, fileOpsInFlight, (p) => unlink(p).catch(() => undefined));
      throw err;
    }
    return objects.map((o) => ({ key: o.key, bytes: o.body.length, sha256: sha256Hex(o.body) }));
  }

  /** syncfs(2) of the store's file system: everything written to it so far is durable. */
  private async syncFileSystem(): Promise<void> {
    await syncFileSystem(this.root).catch((err: unknown) => {
      throw this.unwritable(err, this.root);
    });
  }

  get(key: string): Promise<Readable> {
    return this.open(key);
  }

  getRange(key: string, range: ByteRange): Promise<Readable> {
    return this.open(key, range);
  }

  private async open(key: string, range?: ByteRange): Promise<Readable> {
    checkKey(key);
    const fh = await this.reading(open(path.join(this.root, key), 'r'), key);
    try {
      // open() succeeds on a directory; reading it would fail later with EISDIR.
      if (!(await this.reading(fh.stat(), key)).isFile()) throw this.missing(key);
    } catch (err) {
      await fh.close();
      throw err;
    }
    if (range?.length === 0) {
      await fh.close();
      return Readable.from([]);
    }
    // end is inclusive
    // 1 MiB reads: a backup's objects run to gigabytes, and each chunk costs a read and a pass through every transform
    return fh.createReadStream({ highWaterMark: 1 << 20, ...(range ? { start: range.offset, end: range.offset + range.length - 1 } : {}) });
  }

  async getBytes(key: string): Promise<Buffer> {
    checkKey(key);
    return this.reading(readFile(path.join(this.root, key)), key);
  }

  async stat(key: string): Promise<ObjectInfo | null> {
    checkKey(key);
    try {
      const st = await this.reading(stat(path.join(this.root, key)), key);
      return st.isFile() ? { key, bytes: st.size } : null;
    } catch (err) {
      if (err instanceof TenantsafeError && err.type === ErrorType.ObjectMissing) return null;
      throw err;
    }
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    checkKey(prefix, 'prefix');
    let found: ObjectInfo[] = [];
    for (let reading = 1; ; reading++) {
      found = [];
      let vanished = false;
      for (const e of await this.entries(prefix)) {
        if (e.kind !== 'object') continue;
        // Gone meanwhile (a concurrent delete): not listed.
        const st = await stat(e.file).catch(() => undefined);
        if (st) found.push({ key: e.key, bytes: st.size });
        else vanished = true;
      }
      // What took its place may have come in after its directory was read (the WAL archiver stores
      // a segment, then deletes its partial): read again, a few times at most.
      if (!vanished || reading === listReadings) break;
    }
    yield* found.sort(byKey);
  }

  async delete(key: string): Promise<void> {
    checkKey(key);
    await this.remove(path.join(this.root, key));
  }

  async deletePrefix(prefix: string): Promise<number> {
    checkKey(prefix, 'prefix');
    let deleted = 0;
    // Post-order: a directory comes after its contents, so it is empty when its turn comes.
    for (const e of await this.entries(prefix)) {
      if (e.kind === 'dir') {
        // Not empty: someone is writing there right now (or it holds what the prefix excludes).
        await rmdir(e.file).catch(() => undefined);
        continue;
      }
      if ((await this.remove(e.file)) && e.kind === 'object') deleted++;
    }
    return deleted;
  }

  async probe(): Promise<void> {
    // A name of the partial kind: invisible to list, and removed by deletePrefix if we die here.
    const file = partialPath(path.join(this.root, 'probe'));
    await this.mkdirDurably(this.root);
    const fh = await this.writing(open(file, 'wx'), file);
    try {
      await this.writing(fh.write('tenantsafe probe\n'), file);
      await this.writing(fh.sync(), file);
    } finally {
      await fh.close().catch(() => undefined);
      await unlink(file).catch(() => undefined);
    }
  }

  /**
   * Everything under the directory that `prefix` ends in whose key (for a partial file: the key
   * it was going to become; for a directory: its key plus '/') starts with prefix.
   */
  private async entries(prefix: string): Promise<Entry[]> {
    const out: Entry[] = [];
    const walk = async (dirKey: string): Promise<void> => {
      let names;
      try {
        names = await readdir(path.join(this.root, dirKey), { withFileTypes: true });
      } catch (err) {
        if (isMissing(err)) return; // no such directory, or removed meanwhile: nothing there
        throw this.unavailable(err, dirKey);
      }
      for (const d of names) {
        const key = dirKey + d.name;
        const file = path.join(this.root, key);
        if (d.isDirectory()) {
          // The walk starts in the directory the prefix ends in: below it, a directory either
          // matches as a whole or not at all.
          if (`${key}/`.startsWith(prefix)) {
            await walk(`${key}/`);
            out.push({ kind: 'dir', key, file });
          }
        } else if (d.isFile()) {
          const target = partialName.exec(d.name);
          if (target) {
            if ((dirKey + target[1]).startsWith(prefix)) out.push({ kind: 'partial', key: dirKey + target[1], file });
          } else if (key.startsWith(prefix)) {
            out.push({ kind: 'object', key, file });
          }
        }
      }
    };
    const start = prefix.slice(0, prefix.lastIndexOf('/') + 1);
    await walk(start);
    // A prefix ending in '/' covers its own directory too (never the root: start is '' then).
    if (start && start === prefix) out.push({ kind: 'dir', key: start.slice(0, -1), file: path.join(this.root, start) });
    return out;
  }

  /** mkdir -p, then fsyncs the parent of every directory it created so they survive a crash. */
  private async mkdirDurably(dir: string): Promise<void> {
    const first = await this.writing(mkdir(dir, { recursive: true }), dir);
    if (!first) return;
    for (let d = dir; ; d = path.dirname(d)) {
      await this.writing(fsyncDir(path.dirname(d)), path.dirname(d));
      if (d === first) return;
    }
  }

  /** unlink; false when it was not there (deleting is idempotent). */
  private async remove(file: string): Promise<boolean> {
    try {
      await unlink(file);
      return true;
    } catch (err) {
      if (isMissing(err)) return false;
      throw this.unwritable(err, file);
    }
  }

  private async writing<T>(op: Promise<T>, file: string): Promise<T> {
    try {
      return await op;
    } catch (err) {
      throw this.unwritable(err, file);
    }
  }

  private unwritable(err: unknown, file: string): TenantsafeError {
    const e = err as NodeJS.ErrnoException;
    const why = e.code === 'EEXIST' ? `${e.message} (a file where a directory must be)` : e.message;
    return new TenantsafeError(
      ErrorType.StorageUnwritable,
      `Cannot write ${file} in local storage ${this.root}: ${why}.`,
      `Make ${this.root} a writable directory (permissions, free space, no read-only mount, no regular file in the path), or point storage.primary.path (or storage.secondary.path) at one.`,
    );
  }

  private async reading<T>(op: Promise<T>, key: string): Promise<T> {
    try {
      return await op;
    } catch (err) {
      throw isMissing(err) ? this.missing(key) : this.unavailable(err, key);
    }
  }

  private missing(key: string): TenantsafeError {
    return new TenantsafeError(ErrorType.ObjectMissing, `There is no object ${key} in ${this.uri}.`, 'Check the backup id; `tenantsafe verify <backupId>` reports every missing object.');
  }

  private unavailable(err: unknown, key: string): TenantsafeError {
    return new TenantsafeError(
      ErrorType.StorageUnavailable,
      `Cannot read ${key || '/'} in local storage ${this.root}: ${(err as Error).message}.`,
      `Check that ${this.root} is mounted and readable.`,
    );
  }
}

/** putIfAbsent without hard links: how long a writer waits for a racing writer's rename before it reads back whose bytes stayed */
const withoutLinksSettleMs = 1000;
/** file system calls of one putMany in flight at once (libuv runs them on its thread pool) */
const fileOpsInFlight = 16;
/** how many times a listing reads its directories while objects vanish under it */
const listReadings = 3;

/** No object at this path: nothing there, a file where a directory should be, or a directory. */
function isMissing(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return code === 'ENOENT' || code === 'ENOTDIR' || code === 'EISDIR';
}

/** syncfs(2) of the file system holding `dir` (coreutils' `sync -f`), everything written to it so far made durable. */
export async function syncFileSystem(dir: string): Promise<void> {
  const sync = spawn('sync', ['-f', dir], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  sync.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  // once() rejects when the process cannot start ('error')
  const [code] = (await once(sync, 'close')) as [number | null];
  if (code !== 0) throw new Error(`sync -f exited with ${code}: ${stderr.trim()}`);
}

/** A rename or a new entry is durable only once its directory is fsynced. */
async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/**
 * Writes a stream's small pieces (an encrypted object's chunks come with their tags apart) as one
 * writev per MiB, and has what is written made durable in the background every few tens of MiB:
 * the sync that makes a large object durable then finds little left to write, where it would
 * otherwise start writing gigabytes only after the last byte came in.
 */
class BatchedWriter {
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private sinceSync = 0;
  private syncing: Promise<unknown> | null = null;
  constructor(
    private readonly fh: FileHandle,
    private readonly writing: <T>(op: Promise<T>) => Promise<T>,
  ) {}

  async write(buf: Buffer): Promise<void> {
    this.pending.push(buf);
    this.pendingBytes += buf.length;
    if (this.pendingBytes >= 1 << 20) await this.flush();
  }

  async end(): Promise<void> {
    await this.flush();
    await this.syncing;
  }

  private async flush(): Promise<void> {
    if (this.pendingBytes === 0) return;
    const buffers = this.pending;
    const size = this.pendingBytes;
    this.pending = [];
    this.pendingBytes = 0;
    const { bytesWritten } = await this.writing(this.fh.writev(buffers));
    // a short write (a full disk) is finished, or failed, by a plain write of the rest
    if (bytesWritten < size) await this.writing(this.fh.write(Buffer.concat(buffers).subarray(bytesWritten)));
    this.sinceSync += size;
    if (this.sinceSync >= backgroundSyncBytes && !this.syncing) {
      this.sinceSync = 0;
      // its failure is the final sync's to report: that one runs and fails alike
      this.syncing = this.fh.datasync().catch(() => undefined).finally(() => (this.syncing = null));
    }
  }
}
