// The daily schedules of whole-database work and their default times of day (UTC). Apart from
// schedules.ts so the CLI shows the defaults in its help without loading the Temporal SDK.
export type DailyScheduleKind = 'full-backups' | 'retention' | 'verification';

export const dailyDefaults: Record<DailyScheduleKind, string> = { 'full-backups': '02:00', retention: '03:00', verification: '04:00' };
