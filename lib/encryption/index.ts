// Encryption at rest (docs/format.md, "Encryption"): the object format (sealedObject.ts), master
// keys (masterKey.ts) and data keys in storage (keyring.ts). A store the engine made carries its
// keyring, so every reader of that store can open what it finds encrypted.
import type { ObjectStore } from '../storage/types';
import { ErrorType, TenantsafeError } from '../errors';
import type { Keyring } from './keyring';

export { DataKey, Keyring, databaseKeyPath, keysArea, type EncryptionRecord } from './keyring';
export { tenantKeyPath } from '../format/tenantManifest';
export { LocalKeyFile, type KeyProvider, type WrappedKey } from './masterKey';
export { isSealed, objectCipher, sealedKeyId } from './sealedObject';

const keyrings = new WeakMap<ObjectStore, Keyring>();

export function attachKeyring(store: ObjectStore, keyring: Keyring): ObjectStore {
  keyrings.set(store, keyring);
  return store;
}

/** The store's keyring; undefined for a store made outside an engine (it writes unencrypted). */
export function keyringOf(store: ObjectStore): Keyring | undefined {
  return keyrings.get(store);
}

/** The keyring to read an encrypted object of this store with. */
export function requireKeyring(store: ObjectStore, what: string): Keyring {
  const k = keyrings.get(store);
  if (!k) throw new TenantsafeError(ErrorType.MasterKeyUnavailable, `${what} is encrypted, and this reader has no master key.`, 'Read it through an engine with the config that names the master key file (encryption.keyFile).');
  return k;
}
