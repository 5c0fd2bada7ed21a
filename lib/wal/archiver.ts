// Continuous WAL archiving by streaming: pg_receivewal on a physical replication slot writes
// segments into a local spool; every `partialIntervalMs` we upload what is new: each completed
// segment once (gzipped, sha256 in its key), and the segment being written as a `.partial`
// object holding every byte received so far. So the archive is at most about one interval
// behind the server: the recovery point objective. The slot keeps the server from recycling
// WAL we have not received, so a restart (here or on another worker) leaves no gap.
import type { ChildProcess } from 'node:child_process';
import { spawnTied } from '../process';
import { watch } from 'node:fs';
import { mkdir, open, readdir, readFile, stat, unlink } from 'node:fs/promises';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { gzip } from 'node:zlib';
import { sha256Hex } from '../checksum';
import { pgBin } from '../postgres/tools';
import { ErrorType, TenantsafeError } from '../errors';
import type { Client } from 'pg';
import { connect, connectionError, toolConnection } from '../pg';
import { keyringOf, type DataKey } from '../encryption';
import type { ObjectStore } from '../storage/types';
import { historyFilePattern, historyKey, partialKey, segmentKey } from '../format/walArchive';
import { Wakeup } from '../wakeup';
import { isSegmentName } from './names';

const gzipAsync = promisify(gzip);

export interface WalArchiverOptions {
  url: string;
  store: ObjectStore;
  slot: string;
  spoolDir: string;
  partialIntervalMs: number;
  compressionLevel: number;
  /** returns after this long, having stopped pg_receivewal cleanly (the caller starts it again) */
  runForMs: number;
  signal?: AbortSignal;
  onProgress?: (p: WalArchiverProgress) => void;
}

export interface WalArchiverProgress {
  segmentsArchived: number;
  lastSegment: string | null;
  /** the segment being written and how many of its bytes are in storage */
  partial: { name: string; bytes: number } | null;
  uploadedAt: string | null;
}

export interface WalSource {
  /** names the spool directory: one per cluster */
  systemIdentifier: string;
}

/** Reads what the archiver needs to know about the server, and makes sure the slot exists and is free. */
export async function prepareWalSource(url: string, slot: string): Promise<WalSource> {
  const c = await connect(url, 'tenantsafe-wal');
  try {
    const info = await c.query<{ sysid: string }>(`SELECT system_identifier::text AS sysid FROM pg_control_system()`);
    const holder = await ensureSlot(c, slot);
    if (holder) {
      // Only one archiver runs per database (one workflow id): a holder is a receiver left
      // behind by a killed worker. Disconnect it; it was started with --no-loop and exits.
      await c.query(`SELECT pg_terminate_backend($1)`, [holder]);
      for (let i = 0; i < 100; i++) {
        const r = await c.query(`SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1`, [slot]);
        if (!r.rows[0]?.active_pid) break;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
    return { systemIdentifier: info.rows[0].sysid };
  } catch (err) {
    throw slotError(url, err);
  } finally {
    await c.end();
  }
}

/**
 * Creates the physical slot (reserving WAL from now) unless it exists; returns the pid holding
 * it, if any. A base backup calls it before it starts, so the slot, and so the archive, reaches
 * back to the backup's start even when the archiver starts after the backup.
 */
export async function ensureSlot(c: Client, slot: string): Promise<number | null> {
  const existing = await c.query<{ active_pid: number | null; slot_type: string }>(`SELECT active_pid, slot_type FROM pg_replication_slots WHERE slot_name = $1`, [slot]);
  if (existing.rowCount === 0) {
    await c.query(`SELECT pg_create_physical_replication_slot($1, true)`, [slot]);
    return null;
  }
  if (existing.rows[0].slot_type !== 'physical') {
    throw new TenantsafeError(ErrorType.BadConfig, `Replication slot "${slot}" exists but is a ${existing.rows[0].slot_type} slot.`, 'Set fullBackup.slot to another name, or drop that slot.');
  }
  return existing.rows[0].active_pid;
}

/** Makes sure the slot exists (see ensureSlot), with errors that say what the role lacks. */
export async function ensureSlotAt(url: string, slot: string): Promise<void> {
  const c = await connect(url, 'tenantsafe-wal');
  try {
    await ensureSlot(c, slot);
  } catch (err) {
    throw slotError(url, err);
  } finally {
    await c.end();
  }
}

/** The archiver's slot as the server sees it: there or not, held by a receiver, the WAL it keeps. */
export interface WalSlotState {
  name: string;
  exists: boolean;
  /** a receiver (pg_receivewal) holds it */
  active: boolean;
  /** WAL the server keeps for it now, from its restart LSN to the current position; null when unknown */
  retainedBytes: number | null;
  /** max_slot_wal_keep_size as the server reports it; '-1': unlimited (WAL piles up until the disk is full) */
  maxSlotWalKeepSize: string;
}

export async function walSlotState(url: string, slot: string): Promise<WalSlotState> {
  const c = await connect(url, 'tenantsafe-wal');
  try {
    return await slotStateOn(c, slot);
  } catch (err) {
    throw slotError(url, err);
  } finally {
    await c.end();
  }
}

async function slotStateOn(c: Client, slot: string): Promise<WalSlotState> {
  const r = await c.query<{ active: boolean; retained: string | null }>(
    `SELECT active, pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint::text AS retained FROM pg_replication_slots WHERE slot_name = $1`,
    [slot],
  );
  const keep = await c.query<{ v: string }>(`SELECT current_setting('max_slot_wal_keep_size') AS v`);
  const row = r.rows[0];
  return { name: slot, exists: !!row, active: !!row?.active, retainedBytes: row?.retained == null ? null : Number(row.retained), maxSlotWalKeepSize: keep.rows[0].v };
}

/**
 * Drops the archiver's slot (`wal stop --drop-slot`, once the archiver stopped): the server then
 * keeps no WAL for it. A receiver the cancelled archiver is still ending gets `waitMs` to let go,
 * then is disconnected (it runs with --no-loop and exits). Returns the slot as it was before.
 */
export async function dropWalSlot(url: string, slot: string, waitMs = 10_000): Promise<WalSlotState> {
  const c = await connect(url, 'tenantsafe-wal');
  try {
    const before = await slotStateOn(c, slot);
    if (!before.exists) return before;
    const deadline = Date.now() + waitMs;
    for (;;) {
      const holder = await c.query<{ active_pid: number | null }>(`SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1`, [slot]);
      if (holder.rowCount === 0) return before;
      const pid = holder.rows[0].active_pid;
      if (pid === null) {
        try {
          await c.query(`SELECT pg_drop_replication_slot($1)`, [slot]);
          return before;
        } catch (err) {
          if ((err as { code?: string }).code !== '55006') throw err; // 55006: became active again meanwhile
        }
      } else if (Date.now() >= deadline + waitMs) {
        throw new TenantsafeError(ErrorType.AlreadyRunning, `Replication slot "${slot}" is still streamed from (pid ${pid}) after tenantsafe disconnected its receiver: something started it again.`, 'A full backup starts the WAL archiver again: `tenantsafe wal status`; stop it, then run `tenantsafe wal stop --drop-slot` again.');
      } else if (Date.now() >= deadline) {
        await c.query(`SELECT pg_terminate_backend($1)`, [pid]);
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  } catch (err) {
    throw slotError(url, err);
  } finally {
    await c.end();
  }
}

function slotError(url: string, err: unknown): Error {
  if (err instanceof TenantsafeError) return err;
  const e = err as { code?: string; message: string };
  if (e.code === '42501' || e.code === '55000') {
    return new TenantsafeError(
      ErrorType.BadConfig,
      `The database cannot give tenantsafe a replication slot: ${e.message}.`,
      'Connect as a role with REPLICATION (or superuser), and set max_replication_slots and max_wal_senders of at least 2 (wal_level replica).',
    );
  }
  return connectionError(url, err);
}

/** How many leading bytes of a pre-zeroed segment file hold data: everything after is zeros. */
export function writtenLength(buf: Buffer): number {
  const page = 8192;
  const zeros = Buffer.alloc(page);
  let end = buf.length;
  while (end > 0) {
    const start = Math.max(0, end - page);
    if (buf.compare(zeros, 0, end - start, start, end) !== 0) break;
    end = start;
  }
  while (end > 0 && buf[end - 1] === 0) end--;
  return end;
}

/** Runs pg_receivewal and uploads what it writes, until runForMs passes or the signal aborts. */
export async function archiveWal(opts: WalArchiverOptions): Promise<WalArchiverProgress> {
  const source = await prepareWalSource(opts.url, opts.slot);
  const spool = path.join(opts.spoolDir, source.systemIdentifier);
  await mkdir(spool, { recursive: true, mode: 0o700 });
  const uploader = new SpoolUploader(opts.store, spool, opts.compressionLevel, await keyringOf(opts.store)?.forDatabase(source.systemIdentifier));
  const progress = () => uploader.progress;

  const { conninfo, env } = toolConnection(opts.url, 'tenantsafe-wal');
  const receiver = spawnTied(pgBin('pg_receivewal'), ['-D', spool, '--slot', opts.slot, '--no-loop', '-d', conninfo], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, ...env },
  });
  let stderr = '';
  receiver.stderr!.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
  const exited = new Promise<number | null>((resolve) => receiver.once('close', (code) => resolve(code)));
  let receiverDone = false;
  void exited.then(() => (receiverDone = true));

  // A segment that completes is uploaded at once (a base backup waits for its last one), also
  // when it completes during a pass; the segment being written, every interval.
  const segmentCompleted = new Wakeup();
  const watcher = watch(spool, (_event, file) => {
    if (file && isSegmentName(String(file))) segmentCompleted.wake();
  });
  const deadline = Date.now() + opts.runForMs;
  try {
    while (!receiverDone && Date.now() < deadline && !opts.signal?.aborted) {
      await segmentCompleted.wait(opts.partialIntervalMs, opts.signal);
      await uploader.pass();
      opts.onProgress?.(progress());
    }
    if (receiverDone) {
      await uploader.pass();
      throw new TenantsafeError(
        ErrorType.DatabaseUnreachable,
        `pg_receivewal stopped (exit code ${await exited}): ${stderr.trim() || 'no message'}.`,
        'Check that the database is up and accepts replication connections from this worker (pg_hba.conf, max_wal_senders).',
      );
    }
  } finally {
    watcher.close();
    await stopReceiver(receiver, exited);
  }
  // What it wrote while stopping: the archive holds everything received.
  await uploader.pass();
  opts.onProgress?.(progress());
  opts.signal?.throwIfAborted();
  return progress();
}

async function stopReceiver(child: ChildProcess, exited: Promise<number | null>): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGINT'); // pg_receivewal finishes its current write and exits
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(timer);
}

/** Uploads, on each pass, what pg_receivewal wrote into the spool since the last one. */
class SpoolUploader {
  readonly progress: WalArchiverProgress = { segmentsArchived: 0, lastSegment: null, partial: null, uploadedAt: null };
  private readonly uploaded = new Set<string>();
  private partialSeen: { name: string; mtimeMs: number } | null = null;
  /**
   * Every segment and partial is read into this one buffer, one at a time (each is compressed and
   * stored before the next is read): a new 16 MiB buffer per partial, twice a second while the
   * database writes, kept the worker's garbage collector marking its whole heap over and over.
   */
  private readBuffer = Buffer.alloc(0);

  constructor(
    private readonly store: ObjectStore,
    private readonly spool: string,
    private readonly level: number,
    /** segments and partials are encrypted under the cluster's data key (lib/encryption) */
    private readonly dataKey?: DataKey,
  ) {}

  private async stored(raw: Buffer): Promise<Buffer> {
    const gzipped = await gzipAsync(raw, { level: this.level });
    return this.dataKey ? this.dataKey.sealBuffer(gzipped) : gzipped;
  }

  /** A spool file's bytes, in readBuffer: valid until the next read. */
  private async readSpoolFile(file: string): Promise<Buffer> {
    const fh = await open(path.join(this.spool, file), 'r');
    try {
      const { size } = await fh.stat();
      if (this.readBuffer.length < size) this.readBuffer = Buffer.allocUnsafe(size);
      let filled = 0;
      for (let n = -1; filled < size && n !== 0; filled += n) n = (await fh.read(this.readBuffer, filled, size - filled, filled)).bytesRead;
      return this.readBuffer.subarray(0, filled);
    } finally {
      await fh.close();
    }
  }

  async pass(): Promise<void> {
    const names = (await readdir(this.spool)).sort();
    for (const file of names.filter((n) => historyFilePattern.test(n) && !this.uploaded.has(n))) {
      await this.store.put(historyKey(file), await readFile(path.join(this.spool, file)));
      this.uploaded.add(file);
    }
    const complete = names.filter(isSegmentName);
    for (const name of complete) {
      if (!this.uploaded.has(name)) await this.uploadSegment(name);
    }
    const partial = names.filter((n) => n.endsWith('.partial') && isSegmentName(n.slice(0, -8))).at(-1);
    if (partial) await this.uploadPartial(partial);
    // pg_receivewal resumes after the newest file it finds: keep that one, drop the rest.
    const newest = names.filter((n) => isSegmentName(n.slice(0, 24))).at(-1);
    for (const name of complete) if (name !== newest && this.uploaded.has(name)) await unlink(path.join(this.spool, name)).catch(() => undefined);
  }

  private async uploadSegment(name: string): Promise<void> {
    const raw = await this.readSpoolFile(name);
    // compressed in the thread pool while this thread hashes: a base backup waits for this segment
    const stored = this.stored(raw);
    const sha256 = sha256Hex(raw);
    const key = segmentKey(name, sha256);
    try {
      // After a restart the same segment may be received again: it is already there, byte for byte.
      if (!(await this.store.stat(key))) await this.store.put(key, await stored, { contentType: 'application/gzip' });
    } finally {
      await stored.catch(() => undefined); // done with raw before the next read reuses its buffer
    }
    await this.store.delete(partialKey(name));
    this.uploaded.add(name);
    this.progress.segmentsArchived++;
    this.progress.lastSegment = name;
    this.progress.uploadedAt = new Date().toISOString();
    if (this.progress.partial?.name === name) this.progress.partial = null;
  }

  private async uploadPartial(file: string): Promise<void> {
    const name = file.slice(0, 24);
    const full = path.join(this.spool, file);
    const { mtimeMs } = await stat(full).catch(() => ({ mtimeMs: -1 }));
    if (mtimeMs < 0 || (this.partialSeen?.name === name && this.partialSeen.mtimeMs === mtimeMs)) return;
    let raw: Buffer;
    try {
      raw = await this.readSpoolFile(file);
    } catch {
      return; // renamed to the completed segment meanwhile: the next pass uploads that
    }
    const bytes = writtenLength(raw);
    this.partialSeen = { name, mtimeMs };
    if (bytes === 0 || (this.progress.partial?.name === name && this.progress.partial.bytes === bytes)) return;
    await this.store.put(partialKey(name), await this.stored(raw.subarray(0, bytes)), { contentType: 'application/gzip' });
    this.progress.partial = { name, bytes };
    this.progress.uploadedAt = new Date().toISOString();
  }
}
