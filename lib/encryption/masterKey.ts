// Master keys: what wraps the data keys (docs/format.md, "Encryption"). A key provider wraps and
// unwraps a data key and names the master key it used; the local key file is the one provider
// now, a cloud KMS would be another behind the same interface (its key id a key version's name).
import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ErrorType, TenantsafeError } from '../errors';

export interface WrappedKey {
  /** the master key that wrapped it */
  masterKeyId: string;
  /** base64 */
  wrapped: string;
}

export interface KeyProvider {
  /** the master key new data keys are wrapped with */
  currentKeyId(): string;
  /** `context` is bound to the wrapped key: it unwraps only with the same context (the data key's id and owner) */
  wrap(dataKey: Buffer, context: string): Promise<WrappedKey>;
  unwrap(key: WrappedKey, context: string): Promise<Buffer>;
}

/** The key file: every master key still needed to unwrap, the current one first. */
interface KeyFileDocument {
  kind: 'tenantsafeMasterKeys';
  keys: { id: string; key: string; createdAt: string }[];
}

const masterKeyId = (key: Buffer) => `local-${createHash('sha256').update('tenantsafe master key id\n').update(key).digest('hex').slice(0, 16)}`;

function newEntry(): KeyFileDocument['keys'][number] {
  const key = randomBytes(32);
  return { id: masterKeyId(key), key: key.toString('base64'), createdAt: new Date().toISOString() };
}

function keyFileText(doc: KeyFileDocument): string {
  return JSON.stringify(doc, null, 2) + '\n';
}

function missing(file: string): TenantsafeError {
  return new TenantsafeError(
    ErrorType.MasterKeyUnavailable,
    `The master key file ${file} does not exist, and this repository holds data keys wrapped by a master key.`,
    'Put the master key file back at that path (from where you keep its copy), or set encryption.keyFile / TENANTSAFE_MASTER_KEY_FILE to it (docs/runbooks/encryption-keys.md).',
  );
}

/** Master keys in a local file (mode 0600): `tenantsafe keys init` creates it; first use in a new repository too. */
export class LocalKeyFile implements KeyProvider {
  private doc: KeyFileDocument | undefined;
  constructor(readonly file: string) {}

  /** Creates the key file with one new master key; false when it exists already (it is left as it is). */
  static create(file: string): boolean {
    fs.mkdirSync(path.dirname(file), { recursive: true });
    // written whole beside it, then linked in: another process (a second worker making its first
    // backup) sees no file or the whole one, never an empty one, and a file already there wins
    const tmp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.new`;
    try {
      fs.writeFileSync(tmp, keyFileText({ kind: 'tenantsafeMasterKeys', keys: [newEntry()] }), { flag: 'wx', mode: 0o600 });
      fs.linkSync(tmp, file);
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
      throw new TenantsafeError(ErrorType.MasterKeyUnavailable, `Cannot create the master key file ${file}: ${(err as Error).message}.`, 'Make its directory writable, or set encryption.keyFile to a writable path.');
    } finally {
      fs.rmSync(tmp, { force: true });
    }
  }

  exists(): boolean {
    return fs.existsSync(this.file);
  }

  private read(): KeyFileDocument {
    if (this.doc) return this.doc;
    let text: string;
    try {
      text = fs.readFileSync(this.file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw missing(this.file);
      throw new TenantsafeError(ErrorType.MasterKeyUnavailable, `Cannot read the master key file ${this.file}: ${(err as Error).message}.`, 'Give the worker and CLI user read access to it (mode 0600, owned by that user).');
    }
    let doc: KeyFileDocument;
    try {
      doc = JSON.parse(text);
      if (doc.kind !== 'tenantsafeMasterKeys' || !Array.isArray(doc.keys) || doc.keys.length === 0) throw new Error('not a tenantsafe master key file');
      for (const k of doc.keys) if (Buffer.from(k.key, 'base64').length !== 32 || masterKeyId(Buffer.from(k.key, 'base64')) !== k.id) throw new Error(`key ${k.id} is damaged`);
    } catch (err) {
      throw new TenantsafeError(ErrorType.MasterKeyUnavailable, `The master key file ${this.file} is not valid: ${(err as Error).message}.`, 'Restore the file from its copy; `tenantsafe keys init` makes a new one only for a new repository.');
    }
    return (this.doc = doc);
  }

  currentKeyId(): string {
    return this.read().keys[0].id;
  }

  keyIds(): string[] {
    return this.read().keys.map((k) => k.id);
  }

  async wrap(dataKey: Buffer, context: string): Promise<WrappedKey> {
    const current = this.read().keys[0];
    const iv = randomBytes(12);
    const c = createCipheriv('aes-256-gcm', Buffer.from(current.key, 'base64'), iv);
    c.setAAD(Buffer.from(context));
    const wrapped = Buffer.concat([iv, c.update(dataKey), c.final(), c.getAuthTag()]);
    return { masterKeyId: current.id, wrapped: wrapped.toString('base64') };
  }

  async unwrap(key: WrappedKey, context: string): Promise<Buffer> {
    const master = this.read().keys.find((k) => k.id === key.masterKeyId);
    if (!master) {
      throw new TenantsafeError(
        ErrorType.MasterKeyUnavailable,
        `A data key (${context}) is wrapped by master key ${key.masterKeyId}, which the key file ${this.file} does not hold (it holds ${this.keyIds().join(', ')}).`,
        'Point encryption.keyFile (or TENANTSAFE_MASTER_KEY_FILE) at the key file that holds it; after a rotation, the old key stays in the file until every data key is re-wrapped (docs/runbooks/encryption-keys.md).',
      );
    }
    const w = Buffer.from(key.wrapped, 'base64');
    const d = createDecipheriv('aes-256-gcm', Buffer.from(master.key, 'base64'), w.subarray(0, 12));
    d.setAAD(Buffer.from(context));
    d.setAuthTag(w.subarray(w.length - 16));
    try {
      return Buffer.concat([d.update(w.subarray(12, w.length - 16)), d.final()]);
    } catch {
      throw new TenantsafeError(ErrorType.CorruptBackup, `The wrapped data key (${context}) does not unwrap under master key ${master.id}: it was altered or moved.`, 'Restore the key object from the secondary storage location or a copy of the repository.');
    }
  }

  /** Puts a new master key first (the others stay, to unwrap what they wrapped); returns its id. */
  addCurrent(): string {
    const doc = this.read();
    const entry = newEntry();
    this.write({ ...doc, keys: [entry, ...doc.keys] });
    return entry.id;
  }

  /** Drops every master key but the current one. */
  retireOthers(): string[] {
    const doc = this.read();
    this.write({ ...doc, keys: [doc.keys[0]] });
    return doc.keys.slice(1).map((k) => k.id);
  }

  private write(doc: KeyFileDocument): void {
    // a new file beside it, then a rename: a crash leaves the old file or the new one, whole
    const tmp = `${this.file}.${process.pid}.tmp`;
    fs.writeFileSync(tmp, keyFileText(doc), { mode: 0o600 });
    const fd = fs.openSync(tmp, 'r');
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fs.renameSync(tmp, this.file);
    this.doc = doc;
  }
}
