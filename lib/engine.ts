// The engine's shared resources for one process (a worker, the CLI): config, database and
// catalog pools, the primary store, the alerts' notifier. Created lazily, closed once.
import type { Pool } from 'pg';
import { Notifier } from './alerts';
import { Catalog } from './catalog';
import type { Config } from './config';
import { createPool } from './pg';
import { createStore } from './storage';
import type { ObjectStore } from './storage/types';

export class Engine {
  private pools: Pool[] = [];
  private dbPool?: Pool;
  private catalogInstance?: Catalog;
  private primaryStore?: ObjectStore;
  private notifier?: Notifier;

  constructor(readonly config: Config) {}

  get db(): Pool {
    this.dbPool ??= this.track(createPool(this.config.database.url, 4, 'tenantsafe'));
    return this.dbPool;
  }

  get catalog(): Catalog {
    if (!this.catalogInstance) {
      const { url, schema } = this.config.catalog;
      const pool = url === this.config.database.url ? this.db : this.track(createPool(url, 2, 'tenantsafe-catalog'));
      this.catalogInstance = new Catalog(pool, url, schema);
    }
    return this.catalogInstance;
  }

  get store(): ObjectStore {
    this.primaryStore ??= createStore(this.config.storage.primary);
    return this.primaryStore;
  }

  /** Pushed alerts: records outcomes in the catalog and delivers notices in the background. */
  get alerts(): Notifier {
    this.notifier ??= new Notifier(this.config, this.catalog);
    return this.notifier;
  }

  private track(pool: Pool): Pool {
    this.pools.push(pool);
    return pool;
  }

  async close(): Promise<void> {
    await this.notifier?.stop();
    await Promise.all(this.pools.map((p) => p.end().catch(() => undefined)));
    this.pools = [];
  }
}
