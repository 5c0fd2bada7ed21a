// Scratch clusters under verification.scratchDir: a whole cluster recovered from a base backup
// and the WAL archive for a while (a PITR clone of one tenant's point in time, a DR drill), then
// removed. Shared here: the disk check before anything is written, the working directory, the
// removal that always happens.
import { chmod, mkdtemp, readdir, readFile, rm, statfs, writeFile } from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import type { FullBackupRecord } from '../catalog';
import type { Engine } from '../engine';
import { ErrorType, TenantsafeError } from '../errors';
import { readFullManifest } from '../format/fullManifest';
import { parseLsn } from '../wal/names';
import { alive, PrivateCluster } from './cluster';

/**
 * Refuses, before anything is written, a scratch cluster the scratch file system cannot hold. The
 * estimate errs high, on the side of refusing rather than filling the disk halfway through:
 *   the base backup unpacked (its manifest's uncompressed size)
 * + twice the WAL that replay may read (up to `replayEnd`): once for the data files, which grow by
 *   at most what the replayed records carry; once for pg_wal, where recovery keeps the segments it
 *   replayed until a restartpoint recycles them
 * + a tenth of both for the server log, the segments fetched ahead, the WAL written after
 *   promotion and the file system's own overhead.
 * Free is what an unprivileged user may take (bavail): the cluster's files belong to the postgres
 * OS user, who cannot use the blocks kept for root. `what` names the cluster in the message.
 */
export async function assertScratchSpace(engine: Engine, backup: FullBackupRecord, replayEnd: bigint, what: string): Promise<void> {
  const { scratchDir, scratchKeepFreePercent } = engine.config.verification;
  const wal = backup.wal!;
  const base = (await readFullManifest(engine.store, backup.prefix)).totals.rawBytes;
  const replayed = Number(replayEnd > parseLsn(wal.startLsn) ? replayEnd - parseLsn(wal.startLsn) : 0n);
  const needed = Math.ceil((base + 2 * replayed) * 1.1);
  let disk;
  try {
    disk = await statfs(scratchDir);
  } catch (err) {
    throw new TenantsafeError(ErrorType.BadConfig, `verification.scratchDir ${scratchDir} cannot be used: ${(err as Error).message}.`, 'Point verification.scratchDir at an existing directory the worker may write to.');
  }
  const free = disk.bavail * disk.bsize;
  const keepFree = Math.ceil((disk.blocks * disk.bsize * scratchKeepFreePercent) / 100);
  if (free - needed >= keepFree) return;
  throw new TenantsafeError(
    ErrorType.InsufficientSpace,
    `${what} of full backup ${backup.backupId} needs about ${sizeText(needed)} in ${scratchDir} (the base backup unpacked, ${sizeText(base)}, and room for ${sizeText(replayed)} of WAL twice): ` +
      `${sizeText(free)} are free, of which verification.scratchKeepFreePercent keeps ${sizeText(keepFree)} (${scratchKeepFreePercent}% of the file system) free.`,
    'Free space there, or point verification.scratchDir at a file system with more room; nothing was written.',
  );
}

function sizeText(bytes: number): string {
  return bytes >= 2 ** 30 ? `${(bytes / 2 ** 30).toFixed(1)} GiB` : `${Math.ceil(bytes / 2 ** 20)} MiB`;
}

/** Names the process that owns a scratch directory (it removes it when done). */
const ownerFile = 'owner.json';

/**
 * A new working directory under verification.scratchDir (`<prefix>XXXXXX`); the cluster's data
 * directory goes in `data/`. It names its owner, this process: the scratch a killed worker could
 * not remove is removed by the next one that makes one (removeOrphanScratch).
 */
export async function makeScratchDir(engine: Engine, prefix: string): Promise<{ work: string; dataDir: string }> {
  const work = await makeOwnedDir(engine.config.verification.scratchDir, prefix);
  await chmod(work, 0o755); // the postgres OS user runs the cluster inside it
  return { work, dataDir: path.join(work, 'data') };
}

/**
 * A new directory under `parent` (`<prefix>XXXXXX`) that names its owner, this process, after
 * removing those there whose owner is gone (removeOrphanScratch): a scratch cluster's, a base
 * backup's spool.
 */
export async function makeOwnedDir(parent: string, prefix: string): Promise<string> {
  await removeOrphanScratch(parent);
  const work = await mkdtemp(path.join(parent, prefix));
  await writeFile(path.join(work, ownerFile), JSON.stringify({ pid: process.pid, host: os.hostname() }));
  return work;
}

/**
 * Removes the owned directories (scratch clusters, stopped first; spools) whose owner on this machine is gone:
 * a worker killed (SIGKILL, out of memory, the machine's power) in the middle of a verification,
 * a PITR clone, a drill or a base backup. Returns what it removed.
 */
export async function removeOrphanScratch(scratchDir: string): Promise<string[]> {
  const removed: string[] = [];
  for (const entry of await readdir(scratchDir).catch(() => [])) {
    const work = path.join(scratchDir, entry);
    const owner = await readFile(path.join(work, ownerFile), 'utf8').then((t) => JSON.parse(t) as { pid: number; host: string }, () => undefined);
    if (!owner || owner.host !== os.hostname() || alive(owner.pid)) continue;
    await removeScratchCluster(work);
    removed.push(work);
  }
  return removed;
}

/**
 * Stops the scratch cluster and deletes its working directory. Always: after work that failed or
 * was aborted too. A cluster pg_ctl cannot stop is killed: its data is going anyway.
 */
export async function removeScratchCluster(work: string): Promise<void> {
  const cluster = await PrivateCluster.attach(path.join(work, 'data')).catch(() => undefined); // none: it never got as far as a cluster
  try {
    await cluster?.remove();
  } catch {
    if (cluster?.isRunning()) await cluster.crash();
  }
  await rm(work, { recursive: true, force: true });
}
