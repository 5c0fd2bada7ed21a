// Serves the WAL archive to a recovering PostgreSQL, for its restore_command. Segments are
// fetched from storage, checked against their sha256 and prefetched ahead into a spool
// directory beside the data directory, so the restore_command mostly just renames a file that
// is already there (faster than a copy); a segment not spooled yet is fetched over HTTP on
// 127.0.0.1. A segment that fails its check is answered with 500 (PostgreSQL would take any
// failure for "no such file" and end recovery early); the error is kept, and the restore fails
// with it.
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { chown, rename, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';
import { clusterFileOwner } from '../postgres/tools';
import type { ObjectStore } from '../storage/types';
import { fetchWalFile, type WalArchiveListing } from '../wal/archive';
import { isSegmentName, segmentName, segmentNumber, timelineOf } from '../wal/names';

export interface WalServer {
  /** the restore_command that takes a spooled segment, or fetches from this server */
  restoreCommand: string;
  /** failures to fetch a file that exists (a corrupt or unreadable segment) */
  errors: string[];
  stop(): Promise<void>;
}

const prefetchDepth = 6;
/** segments gunzipped and checked at once: replay itself needs a core of the machine */
const prefetchConcurrency = 2;

/**
 * curl if the machine has it (fast to start); node otherwise (always there: it runs us).
 * An answer that the file is not there (HTTP 404, or 500 for a segment storage failed to give,
 * which `errors` reports) exits 1: the end of the archive, recovery ends. No answer at all means
 * the worker serving it is gone (killed mid-restore): exit 126, which PostgreSQL takes as a failed
 * command, not a missing file, so recovery aborts and the server stops, instead of promoting a
 * cluster that replayed only part of the WAL and leaving it running.
 */
function fetchCommand(url: string): string {
  const curl = (process.env.PATH ?? '').split(':').map((d) => path.join(d, 'curl')).find((f) => existsSync(f));
  // curl: 22 for an HTTP error (--fail), 7 and others for no answer
  if (curl) return `${curl} --silent --fail --output "%p" ${url}/%f || { [ $? -eq 22 ] && exit 1; exit 126; }`;
  const script = `const [u,p]=process.argv.slice(1);require('http').get(u,(r)=>{if(r.statusCode!==200)process.exit(1);r.pipe(require('fs').createWriteStream(p)).on('finish',()=>process.exit(0))}).on('error',()=>process.exit(126))`;
  return `${process.execPath} -e "${script}" ${url}/%f "%p"`;
}

/**
 * Starts serving. `spoolBeside`: the data directory being recovered; the spool is a temporary
 * directory next to it (same file system, so taking a segment is a rename), removed by stop().
 */
export async function startWalServer(opts: {
  store: ObjectStore;
  listing: WalArchiveListing;
  segmentSize: number;
  spoolBeside: string;
  /** the first segment replay needs (the base backup's start): spooled at once */
  firstSegment?: string;
}): Promise<WalServer> {
  const cache = new Map<string, Promise<Buffer | null>>();
  const errors: string[] = [];
  const spool = mkdtempSync(path.join(path.dirname(opts.spoolBeside), `.${path.basename(opts.spoolBeside)}-wal-`));
  // the restore_command runs as the server's user: it moves segments out, and the server owns them after
  const owner = clusterFileOwner();
  chownSync(spool, owner.uid, owner.gid);
  /** on their way to the spool, or in it */
  const spooling = new Set<string>();
  const inSpool = new Set<string>();
  const served = new Set<string>();
  const archived = new Set([...opts.listing.segments, ...opts.listing.partials].map((s) => s.name));
  let stopped = false;

  const load = (file: string) => {
    let p = cache.get(file);
    if (!p) {
      p = fetchWalFile(opts.store, opts.listing, file, opts.segmentSize);
      p.catch(() => undefined); // a prefetch nobody asks for must not crash the process
      cache.set(file, p);
    }
    return p;
  };
  const toSpool = async (file: string) => {
    const body = await load(file).catch(() => null); // a failing segment is left to the HTTP path, which reports it
    if (body && !stopped && !served.has(file)) {
      const part = path.join(spool, `${file}.part`);
      await writeFile(part, body);
      await chown(part, owner.uid, owner.gid);
      await rename(part, path.join(spool, file)); // the restore_command never sees a partly written segment
      inSpool.add(file);
    } else {
      spooling.delete(file);
    }
    cache.delete(file);
  };
  // in replay order, a few at a time
  const queued: string[] = [];
  let inFlight = 0;
  const pump = () => {
    while (inFlight < prefetchConcurrency && queued.length > 0) {
      const next = queued.shift()!;
      if (served.has(next)) {
        spooling.delete(next);
        continue;
      }
      inFlight++;
      void toSpool(next)
        .catch((err: Error) => errors.push(`${next}: ${err.message}`))
        .finally(() => {
          inFlight--;
          pump();
        });
    }
  };
  const prefetchFrom = (file: string, skip: bigint) => {
    const n = segmentNumber(file, opts.segmentSize);
    for (let i = skip; i < skip + BigInt(prefetchDepth); i++) {
      const next = segmentName(timelineOf(file), n + i, opts.segmentSize);
      if (!archived.has(next) || spooling.has(next) || served.has(next)) continue;
      spooling.add(next);
      queued.push(next);
    }
    pump();
  };
  // a segment gone from the spool was taken by the restore_command: keep the spool filled after it
  const watcher = setInterval(() => {
    if (inSpool.size === 0) return;
    const present = new Set(readdirSync(spool));
    for (const file of [...inSpool].filter((f) => !present.has(f))) {
      inSpool.delete(file);
      spooling.delete(file);
      served.add(file);
      prefetchFrom(file, 1n);
    }
  }, 20);

  if (opts.firstSegment) prefetchFrom(opts.firstSegment, 0n);

  const server = createServer((req, res) => {
    const file = decodeURIComponent((req.url ?? '').replace(/^\/wal\//, ''));
    void (async () => {
      try {
        const body = await load(file);
        cache.delete(file);
        served.add(file);
        if (isSegmentName(file)) prefetchFrom(file, 1n);
        if (!body) {
          res.writeHead(404).end();
          return;
        }
        res.writeHead(200, { 'content-length': body.length }).end(body);
      } catch (err) {
        errors.push(`${file}: ${(err as Error).message}`);
        res.writeHead(500).end();
      }
    })();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/wal`;
  return {
    restoreCommand: `mv "${spool}/%f" "%p" 2>/dev/null || ${fetchCommand(url)}`,
    errors,
    stop: async () => {
      stopped = true;
      clearInterval(watcher);
      await new Promise<void>((resolve) => server.close(() => resolve()));
      rmSync(spool, { recursive: true, force: true });
    },
  };
}
