// Compression of a base backup's tar (fullBackup.compression). zstd and lz4 run as the Debian
// tools in a process of their own, fed through a pipe: Node 20's zlib has neither, and a
// separate process leaves this one free to read the tar and write the store; zstd spreads
// over the cores itself (-T). gzip stays in-process (ParallelGzip, one member per 4 MiB).
// Reading back, GNU tar runs the same tool (-I): decompression and extraction in two
// processes, beside the sha256 check here.
import { spawnTied } from '../process';
import { availableParallelism } from 'node:os';
import type { Readable, Writable } from 'node:stream';
import { ErrorType, TenantsafeError } from '../errors';
import type { BaseCompression } from '../format/fullManifest';
import { ParallelGzip } from '../streams';

export interface Compressor {
  /** write the raw tar here */
  input: Writable;
  /** the compressed bytes, to store */
  output: Readable;
  /** settles once the compressor is done: rejects when its tool failed */
  done: Promise<void>;
  /** stops it early (the backup failed) */
  kill(): void;
}

/** the tools' command lines; tar runs them with -d to read */
function toolArgs(c: BaseCompression): [string, string[]] | null {
  if (c.method === 'lz4') return ['lz4', ['-q', '-c', `-${c.level}`]];
  if (c.method === 'zstd') return ['zstd', ['-q', '-c', `-${c.level}`, `-T${availableParallelism()}`]];
  return null;
}

export function compressor(c: BaseCompression): Compressor {
  const tool = toolArgs(c);
  if (!tool) {
    const gzip = new ParallelGzip({ level: c.level, blockSize: 4 << 20 });
    return { input: gzip, output: gzip, done: Promise.resolve(), kill: () => gzip.destroy() };
  }
  const [cmd, args] = tool;
  const child = spawnTied(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-2000)));
  const done = new Promise<void>((resolve, reject) => {
    child.once('error', (err) => reject(toolMissing(cmd, err)));
    child.once('close', (code, signal) => (code === 0 ? resolve() : reject(new TenantsafeError(ErrorType.BadConfig, `${cmd} ended with ${signal ?? `exit code ${code}`}: ${stderr.trim() || 'no message'}.`, `Check that \`${cmd}\` works on the worker, or set fullBackup.compression to another method.`))));
  });
  done.catch(() => undefined); // the caller awaits it after the pipeline; an early failure shows there too
  return { input: child.stdin, output: child.stdout, done, kill: () => child.kill('SIGTERM') };
}

/** GNU tar's arguments that read a tar compressed so (`tar -x -f - <these>`). */
export function tarDecompressArgs(c: BaseCompression): string[] {
  return ['-I', c.method];
}

function toolMissing(cmd: string, err: Error): TenantsafeError {
  return new TenantsafeError(ErrorType.BadConfig, `${cmd} could not be started: ${err.message}.`, `Install ${cmd} on the worker (Debian package ${cmd}; scripts/setup.sh does), or set fullBackup.compression to gzip.`);
}
