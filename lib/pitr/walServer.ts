// Serves the WAL archive to a recovering PostgreSQL over HTTP on 127.0.0.1, for its
// restore_command. Segments are fetched from storage, checked against their sha256 and
// prefetched a few ahead, so replay rarely waits on storage. A segment that fails its check is
// answered with 500 (PostgreSQL would take any failure for "no such file" and end recovery
// early); the error is kept, and the restore fails with it.
import { existsSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';
import type { ObjectStore } from '../storage/types';
import { fetchWalFile, type WalArchiveListing } from '../wal/archive';
import { isSegmentName, segmentName, segmentNumber, timelineOf } from '../wal/names';

export interface WalServer {
  /** the restore_command that fetches from this server */
  restoreCommand: string;
  /** files asked for, in order, and whether they were there */
  requests: { file: string; found: boolean }[];
  /** failures to fetch a file that exists (a corrupt or unreadable segment) */
  errors: string[];
  stop(): Promise<void>;
}

const prefetchDepth = 4;

/** curl if the machine has it (fast to start); node otherwise (always there: it runs us). */
function fetchCommand(url: string): string {
  const curl = (process.env.PATH ?? '').split(':').map((d) => path.join(d, 'curl')).find((f) => existsSync(f));
  if (curl) return `${curl} --silent --fail --output "%p" ${url}/%f`;
  const script = `const [u,p]=process.argv.slice(1);require('http').get(u,(r)=>{if(r.statusCode!==200)process.exit(1);r.pipe(require('fs').createWriteStream(p)).on('finish',()=>process.exit(0))}).on('error',()=>process.exit(2))`;
  return `${process.execPath} -e "${script}" ${url}/%f "%p"`;
}

export async function startWalServer(opts: { store: ObjectStore; listing: WalArchiveListing; segmentSize: number }): Promise<WalServer> {
  const cache = new Map<string, Promise<Buffer | null>>();
  const requests: WalServer['requests'] = [];
  const errors: string[] = [];
  const load = (file: string) => {
    let p = cache.get(file);
    if (!p) {
      p = fetchWalFile(opts.store, opts.listing, file, opts.segmentSize);
      p.catch(() => undefined); // a prefetch nobody asks for must not crash the process
      cache.set(file, p);
    }
    return p;
  };
  const prefetchAfter = (file: string) => {
    const n = segmentNumber(file, opts.segmentSize);
    for (let i = 1n; i <= BigInt(prefetchDepth); i++) {
      const next = segmentName(timelineOf(file), n + i, opts.segmentSize);
      if ([...opts.listing.segments, ...opts.listing.partials].some((s) => s.name === next)) void load(next);
    }
  };
  const server = createServer((req, res) => {
    const file = decodeURIComponent((req.url ?? '').replace(/^\/wal\//, ''));
    void (async () => {
      try {
        const body = await load(file);
        cache.delete(file);
        requests.push({ file, found: body !== null });
        if (isSegmentName(file)) prefetchAfter(file);
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
    restoreCommand: fetchCommand(url),
    requests,
    errors,
    stop: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
