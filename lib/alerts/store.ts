// The alerts' state in the catalog (tables: lib/catalog.ts, migration 5):
//   alerts            one row per alert key: open or resolved, since when, failures counted
//   alert_events      the idempotency keys of the outcomes counted (workflow id + run id + step)
//   alert_deliveries  the outbox: each notice once per channel, pending until a receiver took it
// An outcome is counted, and its notices queued, in one transaction: before anything is sent. A
// retried activity finds its idempotency key and changes nothing; a delivery is marked sent only
// after the receiver accepted it, so a crash in between sends it again (at least once, never lost).
import type { Catalog } from '../catalog';
import { inTransaction } from '../pg';
import type { AlertChannel, AlertNotice, AlertRunRef } from './types';

export interface CountedOutcome {
  alertKey: string;
  kind: string;
  subject: string;
  idempotencyKey: string;
  outcome: 'failed' | 'succeeded';
  run: AlertRunRef;
  error?: { message: string; type?: string };
}

/** What the transition needs to write its notice, given the alert's state after it. */
export type NoticeOf = (alert: { event: 'failing' | 'resolved'; sequence: number; openedAt: string; resolvedAt?: string; failures: number; openedBy: AlertRunRef }) => AlertNotice;

export interface CountResult {
  duplicate: boolean;
  transition: 'opened' | 'resolved' | null;
  queued: number;
}

export interface Delivery {
  deliveryId: number;
  channel: AlertChannel;
  attempts: number;
  createdAt: Date;
  notice: AlertNotice;
}

const iso = (d: Date | null | undefined) => (d ? d.toISOString() : undefined);

/**
 * Counts one outcome: a failure opens the alert unless it is open (then it only counts), a success
 * resolves an open alert (else nothing). A transition queues its notice on every channel.
 */
export function countOutcome(catalog: Catalog, o: CountedOutcome, channels: AlertChannel[], noticeOf: NoticeOf): Promise<CountResult> {
  return catalog.withSchema((c, s) =>
    inTransaction(c, async () => {
      // one outcome of a key at a time (two workers may report the same key at once)
      await c.query(`SELECT pg_advisory_xact_lock(hashtext($1))`, [`tenantsafe.alert:${o.alertKey}`]);
      const fresh = await c.query(`INSERT INTO ${s}.alert_events (idempotency_key, alert_key, outcome) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`, [
        o.idempotencyKey,
        o.alertKey,
        o.outcome,
      ]);
      if (fresh.rowCount === 0) return { duplicate: true, transition: null, queued: 0 };
      const current = (await c.query(`SELECT state, sequence FROM ${s}.alerts WHERE alert_key = $1`, [o.alertKey])).rows[0] as { state: string; sequence: number } | undefined;
      let notice: AlertNotice | undefined;
      if (o.outcome === 'failed' && current?.state === 'open') {
        await c.query(
          `UPDATE ${s}.alerts SET failures = failures + 1, last_error_type = $2, last_error = $3, last_failed_by = $4, updated_at = now() WHERE alert_key = $1`,
          [o.alertKey, o.error?.type ?? null, o.error?.message ?? null, JSON.stringify(o.run)],
        );
      } else if (o.outcome === 'failed') {
        const sequence = (current?.sequence ?? 0) + 1;
        const r = await c.query(
          `INSERT INTO ${s}.alerts (alert_key, kind, subject, state, sequence, failures, opened_at, last_error_type, last_error, opened_by, last_failed_by)
           VALUES ($1, $2, $3, 'open', $4, 1, now(), $5, $6, $7, $7)
           ON CONFLICT (alert_key) DO UPDATE SET state = 'open', sequence = EXCLUDED.sequence, failures = 1, opened_at = EXCLUDED.opened_at, resolved_at = NULL,
             last_error_type = EXCLUDED.last_error_type, last_error = EXCLUDED.last_error, opened_by = EXCLUDED.opened_by, last_failed_by = EXCLUDED.last_failed_by,
             resolved_by = NULL, updated_at = now()
           RETURNING opened_at`,
          [o.alertKey, o.kind, o.subject, sequence, o.error?.type ?? null, o.error?.message ?? null, JSON.stringify(o.run)],
        );
        notice = noticeOf({ event: 'failing', sequence, openedAt: iso(r.rows[0].opened_at)!, failures: 1, openedBy: o.run });
      } else if (current?.state === 'open') {
        const r = await c.query(
          `UPDATE ${s}.alerts SET state = 'resolved', resolved_at = now(), resolved_by = $2, updated_at = now() WHERE alert_key = $1
           RETURNING sequence, opened_at, resolved_at, failures, opened_by`,
          [o.alertKey, JSON.stringify(o.run)],
        );
        const a = r.rows[0];
        notice = noticeOf({ event: 'resolved', sequence: a.sequence, openedAt: iso(a.opened_at)!, resolvedAt: iso(a.resolved_at), failures: a.failures, openedBy: a.opened_by });
      }
      const transition = notice ? (notice.event === 'failing' ? 'opened' : 'resolved') : null;
      for (const channel of notice ? channels : []) {
        await c.query(`INSERT INTO ${s}.alert_deliveries (notice_id, channel, alert_key, notice) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING`, [
          notice!.noticeId,
          channel,
          o.alertKey,
          JSON.stringify(notice),
        ]);
      }
      if (transition) await c.query(`UPDATE ${s}.alert_events SET transition = $2 WHERE idempotency_key = $1`, [o.idempotencyKey, transition]);
      return { duplicate: false, transition, queued: notice ? channels.length : 0 };
    }),
  );
}

/**
 * Takes the oldest due delivery for this process for `leaseMs`: pending, its retry time come, not
 * taken by a live lease, and the first pending one of its alert on its channel (a resolved notice
 * never overtakes its failing one). Another worker skips it while the lease lasts.
 */
export function claimDelivery(catalog: Catalog, leaseMs: number, channels: AlertChannel[]): Promise<Delivery | undefined> {
  return catalog.withSchema(async (c, s) => {
    const r = await c.query(
      `UPDATE ${s}.alert_deliveries SET leased_until = now() + $1 * interval '1 millisecond', attempts = attempts + 1
        WHERE delivery_id = (
          SELECT p.delivery_id FROM ${s}.alert_deliveries p
           WHERE p.status = 'pending' AND p.channel = ANY($2) AND p.next_attempt_at <= now() AND (p.leased_until IS NULL OR p.leased_until < now())
             AND NOT EXISTS (SELECT 1 FROM ${s}.alert_deliveries e WHERE e.status = 'pending' AND e.alert_key = p.alert_key AND e.channel = p.channel AND e.delivery_id < p.delivery_id)
           ORDER BY p.delivery_id LIMIT 1 FOR UPDATE SKIP LOCKED)
        RETURNING delivery_id, channel, attempts, created_at, notice`,
      [leaseMs, channels],
    );
    const d = r.rows[0];
    return d && { deliveryId: Number(d.delivery_id), channel: d.channel, attempts: d.attempts, createdAt: d.created_at, notice: d.notice };
  });
}

export function markSent(catalog: Catalog, deliveryId: number): Promise<void> {
  return catalog.withSchema(async (c, s) => {
    await c.query(`UPDATE ${s}.alert_deliveries SET status = 'sent', sent_at = now(), leased_until = NULL, last_error = NULL WHERE delivery_id = $1`, [deliveryId]);
  });
}

/** A failed attempt: tried again after `retryMs`, or given up once the notice is older than `giveUpAfterMs`. Says which. */
export function markFailed(catalog: Catalog, deliveryId: number, error: string, retryMs: number, giveUpAfterMs: number): Promise<'pending' | 'abandoned'> {
  return catalog.withSchema(async (c, s) => {
    const r = await c.query(
      `UPDATE ${s}.alert_deliveries SET leased_until = NULL, last_error = $2, next_attempt_at = now() + $3 * interval '1 millisecond',
              status = CASE WHEN created_at + $4 * interval '1 millisecond' <= now() + $3 * interval '1 millisecond' THEN 'abandoned' ELSE 'pending' END
        WHERE delivery_id = $1 RETURNING status`,
      [deliveryId, error, retryMs, giveUpAfterMs],
    );
    return r.rows[0]?.status ?? 'abandoned';
  });
}

/** Milliseconds until the next pending delivery may be tried (0: now), or undefined when none waits. */
export function nextDueInMs(catalog: Catalog, channels: AlertChannel[]): Promise<number | undefined> {
  return catalog.withSchema(async (c, s) => {
    const r = await c.query(
      `SELECT greatest(0, extract(epoch FROM min(greatest(next_attempt_at, coalesce(leased_until, next_attempt_at))) - now()) * 1000)::float8 AS ms
         FROM ${s}.alert_deliveries WHERE status = 'pending' AND channel = ANY($1)`,
      [channels],
    );
    return r.rows[0].ms ?? undefined;
  });
}

/** Forgets idempotency keys after a week (a retry comes within minutes) and delivered notices after 90 days. */
export function pruneAlerts(catalog: Catalog): Promise<void> {
  return catalog.withSchema(async (c, s) => {
    await c.query(`DELETE FROM ${s}.alert_events WHERE recorded_at < now() - interval '7 days'`);
    await c.query(`DELETE FROM ${s}.alert_deliveries WHERE status <> 'pending' AND created_at < now() - interval '90 days'`);
  });
}

/** An alert's row, for status pages and tests. */
export interface AlertState {
  alertKey: string;
  state: 'open' | 'resolved';
  sequence: number;
  failures: number;
  openedAt: string;
  resolvedAt: string | null;
  lastErrorType: string | null;
  lastError: string | null;
}

export function listAlerts(catalog: Catalog): Promise<AlertState[]> {
  return catalog.withSchema(async (c, s) => {
    const r = await c.query(`SELECT * FROM ${s}.alerts ORDER BY alert_key`);
    return r.rows.map((a) => ({
      alertKey: a.alert_key,
      state: a.state,
      sequence: a.sequence,
      failures: a.failures,
      openedAt: iso(a.opened_at)!,
      resolvedAt: iso(a.resolved_at) ?? null,
      lastErrorType: a.last_error_type,
      lastError: a.last_error,
    }));
  });
}
