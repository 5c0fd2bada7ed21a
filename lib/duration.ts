// Durations as operators write them: 90s, 30m, 24h, 7d, 1h30m.
import { ErrorType, TenantsafeError } from './errors';

const unitMs: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };

export function parseDuration(text: string, what = 'duration'): number {
  const parts = [...text.trim().matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h|d|w)/g)];
  if (parts.length === 0 || parts.map((p) => p[0]).join('') !== text.trim()) {
    throw new TenantsafeError(ErrorType.BadInput, `Invalid ${what} "${text}".`, 'Write it like 90s, 30m, 24h, 7d or 1h30m.');
  }
  return parts.reduce((ms, p) => ms + Number(p[1]) * unitMs[p[2]], 0);
}
