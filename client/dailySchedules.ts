// The daily schedules of whole-database work, their default times of day (UTC) and how a time of
// day is given. Apart from schedules.ts so the CLI shows the defaults in its help, and checks a
// time before it connects, without loading the Temporal SDK.
import { ErrorType, TenantsafeError } from '../lib/errors';

export type DailyScheduleKind = 'full-backups' | 'retention' | 'verification';

export const dailyDefaults: Record<DailyScheduleKind, string> = { 'full-backups': '02:00', retention: '03:00', verification: '04:00' };

/** HH:MM (UTC) as hour and minute; bad input naming the flag otherwise. */
export function parseTimeOfDay(value: string, kind: DailyScheduleKind, flag = '--time'): { hour: number; minute: number } {
  const m = /^([01]\d|2[0-3]):([0-5]\d)$/.exec(value);
  if (!m) throw new TenantsafeError(ErrorType.BadInput, `${flag} must be a time of day HH:MM in UTC (got "${value}").`, `Pass --time ${dailyDefaults[kind]}.`);
  return { hour: Number(m[1]), minute: Number(m[2]) };
}
