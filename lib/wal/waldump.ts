// What is in a WAL segment, read with pg_waldump: commit times (for the newest restorable
// moment) and named restore points (for `pitr restore --name`).
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { runPgTool } from '../postgres/tools';
import { formatMicros, parseMicros } from '../time';

export interface WalMark {
  lsn: string;
  /** commit: time is the commit timestamp (to the microsecond), xid the transaction's; restore-point: name is the point's name */
  kind: 'commit' | 'restore-point';
  time?: string;
  xid?: string;
  name?: string;
}

const linePattern = /tx: +(\d+), lsn: ([0-9A-F]+\/[0-9A-F]+), prev [0-9A-F/]+, desc: (COMMIT|RESTORE_POINT) (.*)$/;

/**
 * The commits and restore points of a WAL directory (a data directory's pg_wal) from `startLsn`
 * on `timeline` to where its valid WAL ends: e.g. what a crashed server had written last.
 */
export async function readWalMarksFrom(walDir: string, startLsn: string, timeline: number): Promise<WalMark[]> {
  // It stops with an error where the valid WAL ends: what it printed before counts.
  const { output } = await runPgTool('pg_waldump', ['--path', walDir, '--start', startLsn, '--timeline', String(timeline), '--rmgr=Transaction', '--rmgr=XLOG'], { asCaller: true, env: { TZ: 'UTC' } });
  return marksOf(output);
}

function marksOf(output: string): WalMark[] {
  const marks: WalMark[] = [];
  for (const line of output.split('\n')) {
    const m = linePattern.exec(line);
    if (!m) continue;
    if (m[3] === 'COMMIT') {
      // "2026-11-25 06:24:20.123456 UTC; inval msgs: ..." → ISO, the microseconds kept (a Date would drop them)
      const t = /^(\d{4}-\d\d-\d\d) (\d\d:\d\d:\d\d(?:\.\d+)?) UTC/.exec(m[4]);
      if (t) marks.push({ lsn: m[2], kind: 'commit', time: formatMicros(parseMicros(`${t[1]}T${t[2]}Z`)), xid: m[1] });
    } else {
      marks.push({ lsn: m[2], kind: 'restore-point', name: m[4].trim() });
    }
  }
  return marks;
}

/** The commits and restore points of one segment (raw bytes, padded to the segment size), in WAL order. */
export async function readWalMarks(segment: Buffer, name: string): Promise<WalMark[]> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'tenantsafe-waldump-'));
  try {
    await writeFile(path.join(dir, name), segment);
    // It stops with an error where the written WAL ends (a partial segment): what it printed before counts.
    const { output } = await runPgTool('pg_waldump', ['--path', dir, '--rmgr=Transaction', '--rmgr=XLOG', name], { asCaller: true, env: { TZ: 'UTC' } });
    return marksOf(output);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
