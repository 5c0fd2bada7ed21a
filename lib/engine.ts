// The engine's shared resources for one process (a worker, the CLI): config, database and
// catalog pools, the store (the primary, or both locations as one when a secondary is
// configured), the alerts' notifier, the audit log. Created lazily, closed once.
import type { Pool } from 'pg';
import { Notifier } from './alerts';
import { AuditLog } from './audit';
import { Catalog } from './catalog';
import { forDatabase, type Config } from './config';
import { attachKeyring, Keyring, keyringOf } from './encryption';
import { createPool } from './pg';
import { createStore, storageLocationOf } from './storage';
import { ReplicatedStore } from './storage/replicated';
import type { ObjectStore, StorageLocation } from './storage/types';

/** What an engine and its views (`from`) share. */
interface Resources {
  pools: Pool[];
  db?: Pool;
  catalog?: Catalog;
  stores: Partial<Record<StorageLocation | 'replicated', ObjectStore>>;
  notifier?: Notifier;
}

export class Engine {
  private readonly shared: Resources;
  private auditLog: AuditLog | undefined;
  /** the engines of the config's other databases (`forDatabase`), each on pools of its own */
  private readonly others = new Map<string, Engine>();

  /** `location`: this engine's store is that location alone (see `from`); none: both, the primary first */
  constructor(
    readonly config: Config,
    private readonly location?: StorageLocation,
    shared?: Resources,
  ) {
    this.shared = shared ?? { pools: [], stores: {} };
  }

  /**
   * This engine reading and writing one storage location only (a restore `--from secondary`),
   * on the same pools; undefined: this engine. Bad input when the config lacks that location.
   */
  from(location: unknown): Engine {
    if (location === undefined || location === this.location) return this;
    return new Engine(this.config, storageLocationOf(this.config, location), this.shared);
  }

  /**
   * The engine of one database of several (docs/fleet.md): made once, closed with this one;
   * undefined or this engine's own id: this engine. An id the config does not name is bad input.
   */
  forDatabase(id: string | undefined): Engine {
    const config = forDatabase(this.config, id);
    if (config === this.config) return this;
    let engine = this.others.get(id!);
    if (!engine) this.others.set(id!, (engine = new Engine(config)));
    return engine;
  }

  get db(): Pool {
    this.shared.db ??= this.track(createPool(this.config.database.url, 4, 'tenantsafe'));
    return this.shared.db;
  }

  get catalog(): Catalog {
    if (!this.shared.catalog) {
      const { url, schema } = this.config.catalog;
      const pool = url === this.config.database.url ? this.db : this.track(createPool(url, 2, 'tenantsafe-catalog'));
      this.shared.catalog = new Catalog(pool, url, schema);
    }
    return this.shared.catalog;
  }

  /** The primary; with storage.secondary, both as one (lib/storage/replicated.ts); a view's one location. */
  get store(): ObjectStore {
    const { primary, secondary } = this.config.storage;
    const stores = this.shared.stores;
    if (this.location === 'secondary') return (stores.secondary ??= this.withKeys(createStore(secondary!)));
    stores.primary ??= this.withKeys(createStore(primary));
    if (this.location === 'primary' || !secondary) return stores.primary;
    stores.secondary ??= this.withKeys(createStore(secondary));
    return (stores.replicated ??= this.withKeys(new ReplicatedStore(stores.primary, stores.secondary)));
  }

  /** The data keys of this engine's store (lib/encryption), unwrapped with the configured master key. */
  get keys(): Keyring {
    return keyringOf(this.store)!;
  }

  private withKeys(store: ObjectStore): ObjectStore {
    return attachKeyring(store, new Keyring(store, this.config.encryption));
  }

  /** Pushed alerts: records outcomes in the catalog and delivers notices in the background. */
  get alerts(): Notifier {
    this.shared.notifier ??= new Notifier(this.config, this.catalog);
    return this.shared.notifier;
  }

  /** The audit log (lib/audit): in the catalog, anchored in this engine's store. */
  get audit(): AuditLog {
    this.auditLog ??= new AuditLog(this.catalog, () => this.store);
    return this.auditLog;
  }

  private track(pool: Pool): Pool {
    this.shared.pools.push(pool);
    return pool;
  }

  async close(): Promise<void> {
    await Promise.all([...this.others.values()].map((e) => e.close()));
    await this.shared.notifier?.stop();
    await Promise.all(this.shared.pools.map((p) => p.end().catch(() => undefined)));
    this.shared.pools = [];
  }
}
