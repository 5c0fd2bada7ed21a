// Data keys (docs/format.md, "Encryption"): one per tenant for its tenant backups, one per
// database cluster for its full backups, WAL and change log. Each lives in storage, wrapped by
// the master key, beside the backups it opens (a lost catalog loses no key):
//   keys/tenants/<tenant segment>.json   keys/database/<system identifier>.json
// Destroying a tenant's key file makes every byte encrypted under it unreadable (crypto-shredding).
import { randomBytes } from 'node:crypto';
import type { Transform } from 'node:stream';
import { ErrorType, TenantsafeError } from '../errors';
import { tenantKeyPath } from '../format/tenantManifest';
import { mapLimit } from '../limit';
import type { ObjectStore } from '../storage/types';
import { LocalKeyFile } from './masterKey';
import { keyIdBytes, objectCipher, openBuffer, OpenStream, sealBuffer, SealStream } from './sealedObject';

export const keysArea = 'keys/';
/** data keys being made in this process, by store and key path (Keyring.createOnce) */
const creating = new Map<string, Promise<DataKey>>();
const tenantKeysArea = `${keysArea}tenants/`; // tenantKeyPath's folder
const databaseKeysArea = `${keysArea}database/`;

/** What a manifest records of its encryption: the scheme, the data key's id and where its wrapped key is stored. */
export interface EncryptionRecord {
  cipher: typeof objectCipher;
  keyId: string;
  /** the key file's key from the store's root */
  key: string;
}

type KeyOwner = { tenantId: string } | { database: string };

/** keys/…/<owner>.json as stored. */
interface DataKeyFile {
  formatVersion: 1;
  kind: 'dataKey';
  owner: KeyOwner;
  keyId: string;
  masterKeyId: string;
  /** the data key wrapped by the master key, bound to the key id and owner */
  wrapped: string;
  createdAt: string;
  rewrappedAt?: string;
}

export function databaseKeyPath(database: string): string {
  return `${databaseKeysArea}${encodeURIComponent(database)}.json`;
}

const ownerText = (o: KeyOwner) => ('tenantId' in o ? `tenant ${JSON.stringify(o.tenantId)}` : `database ${o.database}`);
const wrapContext = (f: Pick<DataKeyFile, 'keyId' | 'owner'>) => `tenantsafe data key ${f.keyId} of ${ownerText(f.owner)}`;

/** An unwrapped data key: what encrypts and decrypts objects. */
export class DataKey {
  /** `created`: made just now (Keyring.confirm checks it is still the stored one before a manifest names it) */
  constructor(
    readonly id: string,
    private readonly key: Buffer,
    readonly path: string,
    readonly created = false,
  ) {}
  get record(): EncryptionRecord {
    return { cipher: objectCipher, keyId: this.id, key: this.path };
  }
  seal(): Transform {
    return new SealStream(this.key, Buffer.from(this.id, 'hex'));
  }
  sealBuffer(plain: Buffer): Buffer {
    return sealBuffer(this.key, Buffer.from(this.id, 'hex'), plain);
  }
  /** `name`: the object, for errors */
  open(name: string): Transform {
    return new OpenStream((id) => this.checked(id, name), name);
  }
  openBuffer(sealed: Buffer, name: string): Buffer {
    return openBuffer(this.checked(sealed.subarray(4, 4 + keyIdBytes).toString('hex'), name), sealed, name);
  }
  private checked(id: string, name: string): Buffer {
    if (id !== this.id) throw new TenantsafeError(ErrorType.CorruptBackup, `Encrypted object ${name} names data key ${id}; its manifest names ${this.id}.`, 'The backup cannot be trusted; use another backup.');
    return this.key;
  }
}

export interface KeyringOptions {
  /** encryption.enabled: new backups are encrypted */
  enabled: boolean;
  /** the master key file (encryption.keyFile, or TENANTSAFE_MASTER_KEY_FILE) */
  keyFile: string;
}

/** The data keys of one store, unwrapped with the configured master key. Each call reads storage afresh: an erased key is gone at once. */
export class Keyring {
  readonly provider: LocalKeyFile;
  private readonly databaseKeys = new Map<string, DataKey>();
  constructor(
    private readonly store: ObjectStore,
    private readonly opts: KeyringOptions,
  ) {
    this.provider = new LocalKeyFile(opts.keyFile);
  }

  get enabled(): boolean {
    return this.opts.enabled;
  }

  /** The key a tenant backup is written with (made on first use); undefined when encryption is off. */
  async forTenant(tenantId: string): Promise<DataKey | undefined> {
    return this.opts.enabled ? this.forOwner({ tenantId }) : undefined;
  }

  /** The keys of many tenants (a batch): one listing, then the existing files read and the missing ones made, a few at once. */
  async forTenants(tenantIds: readonly string[]): Promise<Map<string, DataKey> | undefined> {
    if (!this.opts.enabled) return undefined;
    const existing = new Set<string>();
    for await (const o of this.store.list(tenantKeysArea)) existing.add(o.key);
    const keys = await mapLimit(tenantIds, 16, (tenantId) => (existing.has(tenantKeyPath(tenantId)) ? this.read(tenantKeyPath(tenantId), { tenantId }) : this.createOnce({ tenantId })));
    return new Map(tenantIds.map((t, i) => [t, keys[i]]));
  }

  /** The key full backups, WAL and change-log segments of a database cluster are written with; undefined when off. */
  async forDatabase(database: string): Promise<DataKey | undefined> {
    return this.opts.enabled ? this.forOwner({ database }) : undefined;
  }

  /**
   * After a backup's objects are written and before its manifest: the key it used must still be
   * the stored one (two first backups of a tenant at once would each make a key, and the later
   * file would replace the earlier). A retry encrypts again under the stored key.
   */
  async confirm(key: DataKey | undefined): Promise<void> {
    if (!key) return;
    const body = await this.store.getBytes(key.path).catch(() => null);
    const stored = body && (JSON.parse(body.toString('utf8')) as DataKeyFile).keyId;
    if (stored !== key.id) {
      throw new TenantsafeError(ErrorType.StorageUnavailable, `Data key ${key.path} changed while a backup was written under it (${key.id}, now ${stored ?? 'gone'}).`, 'The backup is retried by itself, under the stored key.');
    }
  }

  /** The key a manifest's record names, to read its objects. */
  async open(record: EncryptionRecord, what: string): Promise<DataKey> {
    if (record?.cipher !== objectCipher) {
      throw new TenantsafeError(ErrorType.UnsupportedFormat, `${what} is encrypted with ${JSON.stringify(record?.cipher)}; this tenantsafe reads ${objectCipher}.`, 'Use the tenantsafe release that wrote this backup, or a newer one.');
    }
    const key = await this.read(record.key, null, what);
    if (key.id !== record.keyId) throw erased(what, record, `its key file now holds another key (${key.id})`);
    return key;
  }

  /**
   * An encrypted object without a manifest (a WAL segment): its header names the database key.
   * Kept once found: a restore reads many segments, and a database key is never erased.
   */
  async openById(keyId: string, what: string): Promise<DataKey> {
    const known = this.databaseKeys.get(keyId);
    if (known) return known;
    for await (const o of this.store.list(databaseKeysArea)) {
      const key = await this.read(o.key, null, what);
      this.databaseKeys.set(key.id, key);
      if (key.id === keyId) return key;
    }
    throw new TenantsafeError(ErrorType.DataKeyErased, `${what} is encrypted under data key ${keyId}, which no key file under ${databaseKeysArea} holds.`, 'Restore the key files from the secondary storage location or a copy of the repository (docs/runbooks/encryption-keys.md).');
  }

  /** Destroys a tenant's data key: every object encrypted under it is unreadable from now on. False: there was none. */
  async eraseTenant(tenantId: string): Promise<boolean> {
    const path = tenantKeyPath(tenantId);
    const had = (await this.store.stat(path)) !== null;
    await this.store.delete(path);
    return had;
  }

  /**
   * Master-key rotation: a new master key becomes current, every data key is re-wrapped with it
   * (backups are not rewritten: their data keys stay the same), then the old master keys are
   * dropped from the key file. Run again after a crash: it finishes what it began.
   */
  async rotate(): Promise<{ masterKeyId: string; retired: string[]; rewrapped: number }> {
    const masterKeyId = this.provider.addCurrent();
    let rewrapped = 0;
    // passes until one finds nothing left: a key a writer made under the old master meanwhile is caught by the next
    for (let pass = 0, found = -1; found !== 0; pass++) {
      if (pass === 5) throw new TenantsafeError(ErrorType.StorageUnavailable, 'Data keys under the old master key keep appearing: backups are being written with an old key file.', 'Give every worker the new key file (it holds both keys now), then run `tenantsafe keys rotate` again.');
      const files: string[] = [];
      for await (const o of this.store.list(keysArea)) if (o.key.endsWith('.json')) files.push(o.key);
      found = 0;
      await mapLimit(files, 8, async (path) => {
        const file = await this.readFile(path);
        if (file.masterKeyId === masterKeyId) return;
        const dataKey = await this.provider.unwrap(file, wrapContext(file));
        const next: DataKeyFile = { ...file, ...(await this.provider.wrap(dataKey, wrapContext(file))), rewrappedAt: new Date().toISOString() };
        await this.store.put(path, Buffer.from(JSON.stringify(next, null, 2) + '\n'), { contentType: 'application/json' });
        found++;
      });
      rewrapped += found;
    }
    return { masterKeyId, retired: this.provider.retireOthers(), rewrapped };
  }

  /** The master keys in the key file (current first) and how many data keys each wraps; `unreadable`: key files that did not parse. */
  async status(): Promise<{ keyFile: string; enabled: boolean; masterKeys: string[]; dataKeys: Record<string, number>; tenantKeys: number; databaseKeys: number; unreadable: string[] }> {
    const masterKeys = this.provider.exists() ? this.provider.keyIds() : [];
    const dataKeys: Record<string, number> = {};
    const unreadable: string[] = [];
    let tenantKeys = 0;
    let databaseKeys = 0;
    for await (const o of this.store.list(keysArea)) {
      try {
        const f = await this.readFile(o.key);
        dataKeys[f.masterKeyId] = (dataKeys[f.masterKeyId] ?? 0) + 1;
        if ('tenantId' in f.owner) tenantKeys++;
        else databaseKeys++;
      } catch {
        unreadable.push(o.key);
      }
    }
    return { keyFile: this.provider.file, enabled: this.opts.enabled, masterKeys, dataKeys, tenantKeys, databaseKeys, unreadable };
  }

  /** Whether the store holds any data key (a repository that has used encryption). */
  async hasKeys(): Promise<boolean> {
    for await (const _ of this.store.list(keysArea)) return true;
    return false;
  }

  private async forOwner(owner: KeyOwner): Promise<DataKey> {
    const path = 'tenantId' in owner ? tenantKeyPath(owner.tenantId) : databaseKeyPath(owner.database);
    return (await this.store.stat(path)) ? this.read(path, owner) : this.createOnce(owner);
  }

  /**
   * One creation per key at a time in this process (the WAL archiver and a base backup of a new
   * cluster start together on one worker): a second asker waits for the first's key. Across
   * processes, the store decides (create()).
   */
  private createOnce(owner: KeyOwner): Promise<DataKey> {
    const id = `${this.store.uri}\0${'tenantId' in owner ? tenantKeyPath(owner.tenantId) : databaseKeyPath(owner.database)}`;
    let made = creating.get(id);
    if (!made) {
      made = this.create(owner).finally(() => creating.delete(id));
      creating.set(id, made);
    }
    return made;
  }

  /**
   * A new data key, stored only where no key file is (putIfAbsent): of two writers that both
   * found none, the one that stores second reads and uses the first's, before encrypting
   * anything. confirm() checks again before a manifest names the key.
   */
  private async create(owner: KeyOwner): Promise<DataKey> {
    await this.masterKey();
    const keyId = randomBytes(keyIdBytes).toString('hex');
    const dataKey = randomBytes(32);
    const path = 'tenantId' in owner ? tenantKeyPath(owner.tenantId) : databaseKeyPath(owner.database);
    const file: DataKeyFile = { formatVersion: 1, kind: 'dataKey', owner, keyId, ...(await this.provider.wrap(dataKey, wrapContext({ keyId, owner }))), createdAt: new Date().toISOString() };
    const stored = await this.store.putIfAbsent(path, Buffer.from(JSON.stringify(file, null, 2) + '\n'), { contentType: 'application/json' });
    return stored ? new DataKey(keyId, dataKey, path, true) : this.read(path, owner);
  }

  /**
   * The master key before the first data key is made: a key file that is missing in a repository
   * with no data key yet is created (a new repository encrypts from its first backup); missing in
   * one with data keys, it is an error (the old key must come back, not a new one be made).
   */
  private async masterKey(): Promise<void> {
    if (this.provider.exists()) return;
    if (await this.hasKeys()) this.provider.currentKeyId();
    if (LocalKeyFile.create(this.provider.file)) console.error(`tenantsafe: created the master key file ${this.provider.file}; keep a copy of it apart from the backups: without it no encrypted backup can be read (docs/runbooks/encryption-keys.md).`);
  }

  private async readFile(path: string, what?: string): Promise<DataKeyFile> {
    let body: Buffer;
    try {
      body = await this.store.getBytes(path);
    } catch (err) {
      if (err instanceof TenantsafeError && err.type === ErrorType.ObjectMissing) {
        throw new TenantsafeError(ErrorType.DataKeyErased, `${what ?? 'An object'} cannot be decrypted: its data key ${path} is gone (erased with \`tenantsafe tenant erase-backups\`, or lost).`, 'An erased tenant\'s backups cannot be restored. If the key was lost, restore keys/ from the secondary storage location or a copy of the repository.');
      }
      throw err;
    }
    try {
      const file = JSON.parse(body.toString('utf8')) as DataKeyFile;
      if (file.kind !== 'dataKey' || file.formatVersion !== 1) throw new Error(`kind ${JSON.stringify(file.kind)}, format ${JSON.stringify(file.formatVersion)}`);
      return file;
    } catch (err) {
      throw new TenantsafeError(ErrorType.CorruptBackup, `Data key file ${path} is not valid: ${(err as Error).message}.`, 'Restore it from the secondary storage location or a copy of the repository.');
    }
  }

  private async read(path: string, owner: KeyOwner | null, what?: string): Promise<DataKey> {
    const file = await this.readFile(path, what);
    if (owner && JSON.stringify(file.owner) !== JSON.stringify(owner)) {
      throw new TenantsafeError(ErrorType.CorruptBackup, `Data key file ${path} belongs to ${ownerText(file.owner)}, not ${ownerText(owner)}.`, 'Restore keys/ from a copy of the repository.');
    }
    return new DataKey(file.keyId, await this.provider.unwrap(file, wrapContext(file)), path);
  }
}

function erased(what: string, record: EncryptionRecord, why: string): TenantsafeError {
  return new TenantsafeError(ErrorType.DataKeyErased, `${what} cannot be decrypted: data key ${record.keyId} (${record.key}) is gone: ${why}.`, 'An erased tenant\'s backups cannot be restored; use a backup taken after the erasure.');
}
