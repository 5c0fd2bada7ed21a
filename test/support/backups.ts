// Backups in tests: taking one as the workflow does; reading objects, their rows, and the live
// rows they should equal.
import { randomBytes } from 'node:crypto';
import { gunzipSync } from 'node:zlib';
import { decompress as zstdDecompress } from 'zstd-napi';
import { to as copyTo } from 'pg-copy-streams';
import { RowDigest } from '../../lib/checksum';
import { openObject, readManifest, tenantBackupPrefix, type TenantManifest } from '../../lib/format/tenantManifest';
import type { ClientBase } from 'pg';
import { connect } from '../../lib/pg';
import type { ObjectStore } from '../../lib/storage/types';
import { requireKeyring } from '../../lib/encryption';
import { discoverTenancy, tenantRowsQuery, type TenancyPlan } from '../../lib/tenancy';
import type { Config } from '../../lib/config';
import { recordTenantBackup, takeTenantBackup } from '../../lib/tenantBackup';
import type { Engine } from '../../lib/engine';
import { backupLabel } from '../../lib/labels';

/** Takes a backup of a tenant now (labelled as of `at`) and records it in the catalog, as the backup workflow does: its id. */
export async function backUpNow(engine: Engine, tenantId: string, at = new Date()): Promise<string> {
  const backupId = backupLabel(at, 'tenant', randomBytes(3).toString('hex'));
  const s = await takeTenantBackup(engine, { tenantId, backupId });
  await recordTenantBackup(engine, { tenantId, backupId, manifestSha256: s.manifestSha256 });
  return backupId;
}

export interface BackupContents {
  manifest: TenantManifest;
  /** every key under the backup prefix */
  keys: string[];
  /** table → its rows as COPY text lines */
  rows: Map<string, string[]>;
}

export async function readBackup(store: ObjectStore, tenantId: string, backupId: string): Promise<BackupContents> {
  const prefix = tenantBackupPrefix(tenantId, backupId);
  const manifest = await readManifest(store, prefix);
  const keys: string[] = [];
  for await (const o of store.list(prefix)) keys.push(o.key.slice(prefix.length));
  const rows = new Map<string, string[]>();
  // an encrypted backup's objects open with its tenant's data key (the store's keyring)
  const dataKey = manifest.encryption && (await requireKeyring(store, 'test').open(manifest.encryption, 'test'));
  const decompress = manifest.data.compression === 'zstd' ? zstdDecompress : gunzipSync;
  for (const t of manifest.tables) {
    const stored = Buffer.concat(await (await openObject(store, prefix, t.object)).toArray());
    const text = decompress(dataKey ? dataKey.openBuffer(stored, t.object.key) : stored).toString('utf8');
    rows.set(t.table, text === '' ? [] : text.slice(0, -1).split('\n'));
  }
  return { manifest, keys, rows };
}

export function digestOf(lines: string[]): string {
  const d = new RowDigest();
  if (lines.length) d.update(Buffer.from(lines.join('\n') + '\n'));
  return d.digest();
}

/** The tenant's live rows per table, as COPY text under the same session settings as a backup; as of an exported snapshot when given. */
export async function liveRows(config: Config, tenantId: string, plan?: TenancyPlan, snapshot?: string): Promise<Map<string, string[]>> {
  const c = await connect(config.database.url);
  try {
    if (snapshot) await c.query(`BEGIN ISOLATION LEVEL REPEATABLE READ; SET TRANSACTION SNAPSHOT '${snapshot}'`);
    return await tenantRowsOver(c, plan ?? (await discoverTenancy(c, config.tenancy)), tenantId);
  } finally {
    await c.end();
  }
}

/** The tenant's rows per table as COPY text, read by a given session (in its transaction's snapshot, if it has one). */
export async function tenantRowsOver(c: ClientBase, plan: TenancyPlan, tenantId: string): Promise<Map<string, string[]>> {
  const out = new Map<string, string[]>();
  for (const t of plan.tables) {
    const chunks: Buffer[] = [];
    const stream = c.query(copyTo(`COPY (${tenantRowsQuery(plan, t, tenantId)}) TO STDOUT`));
    for await (const chunk of stream) chunks.push(chunk as Buffer);
    const text = Buffer.concat(chunks).toString('utf8');
    out.set(t.key, text === '' ? [] : text.slice(0, -1).split('\n'));
  }
  return out;
}

export const sorted = (xs: string[]) => [...xs].sort();
