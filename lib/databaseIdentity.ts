// Which database a tenantsafe process serves, beyond its URL: the cluster's system identifier
// (a new initdb, or a cluster restored elsewhere, is another) and the database's oid (a database
// dropped and created again is another). Long-lived workflows that own a slot or a stream are
// one per database and store, and their ids say so: two configurations sharing a Temporal
// namespace never find each other's archiver or change log.
import { sha256Hex } from './checksum';
import type { Engine } from './engine';
import { withClient } from './pg';

export interface DatabaseIdentity {
  systemIdentifier: string;
  databaseOid: number;
}

export async function databaseIdentity(engine: Engine): Promise<DatabaseIdentity> {
  return withClient(engine.db, engine.config.database.url, async (c) => {
    const r = await c.query<{ system: string; db: number }>(
      `SELECT s.system_identifier::text AS system, d.oid::int AS db FROM pg_control_system() s, pg_database d WHERE d.datname = current_database()`,
    );
    return { systemIdentifier: r.rows[0].system, databaseOid: r.rows[0].db };
  });
}

/** What the ids of the WAL archiver (per cluster) and the change log (per database) end with, the store's included. */
export async function workflowScopes(engine: Engine): Promise<{ walArchiver: string; changeLog: string }> {
  const id = await databaseIdentity(engine);
  const store = sha256Hex(engine.store.uri).slice(0, 8);
  return { walArchiver: `${id.systemIdentifier}/${store}`, changeLog: `${id.systemIdentifier}-${id.databaseOid}/${store}` };
}
