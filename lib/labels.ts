// Backup ids: YYYYMMDD-HHMMSS + kind letter + '-' + 6 hex, e.g. 20261125-053012T-3f9a2c.
// They sort by time (pgBackRest style) and stay unique when many start in the same second.
// Pure TypeScript: workflows import it to name backups deterministically.

/** T a tenant backup, S a restore's safety backup, P a tenant rebuilt as of a point in time, F a full backup */
export const backupKinds = { tenant: 'T', safety: 'S', pointInTime: 'P', full: 'F' } as const;
export type BackupKind = keyof typeof backupKinds;

const labelPattern = /^(\d{4})(\d{2})(\d{2})-(\d{2})(\d{2})(\d{2})([TSPF])-([0-9a-f]{6})$/;

/**
 * `unique` is any hex-ish string (a workflow run id); its LAST 6 hex digits are used: run ids
 * are UUIDv7, whose leading digits are a timestamp shared by runs started hours apart.
 */
export function backupLabel(at: Date, kind: BackupKind, unique: string): string {
  return label(at, backupKinds[kind], unique);
}

/** The tenant a restore to a point in time rebuilds is a backup named after the restore: 20261125-053012P-3f9a2c. */
export function pointInTimeLabel(restoreId: string): string {
  return restoreId.replace(/R-([0-9a-f]{6})$/, 'P-$1');
}

/** Restore ids look like backup ids with kind letter R: 20261125-053012R-3f9a2c. */
export function restoreLabel(at: Date, unique: string): string {
  return label(at, 'R', unique);
}

/** Failover and switchover ids: 20261206-071500X-3f9a2c (X a failover, W a switchover). */
export function drLabel(at: Date, kind: 'failover' | 'switchover', unique: string): string {
  return label(at, kind === 'failover' ? 'X' : 'W', unique);
}

function label(at: Date, letter: string, unique: string): string {
  const iso = at.toISOString(); // 2026-11-25T05:30:12.345Z
  const stamp = `${iso.slice(0, 4)}${iso.slice(5, 7)}${iso.slice(8, 10)}-${iso.slice(11, 13)}${iso.slice(14, 16)}${iso.slice(17, 19)}`;
  const hex = unique.toLowerCase().replace(/[^0-9a-f]/g, '').padStart(6, '0').slice(-6);
  return `${stamp}${letter}-${hex}`;
}

export function parseBackupLabel(id: string): { at: Date; kind: BackupKind } | null {
  const m = labelPattern.exec(id);
  if (!m) return null;
  const kind = (Object.keys(backupKinds) as BackupKind[]).find((k) => backupKinds[k] === m[7])!;
  return { at: new Date(Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +m[6])), kind };
}
