// A client of the Supabase Management API (v1), the backup and PITR part: list backups,
// restore a project to a point in time, read the project's status. Bearer-token auth; 429
// answers are retried after their Retry-After, transient 5xx and network failures with backoff,
// both bounded; everything else becomes an error that says what to fix.
import type { SupabaseConfig } from '../config';
import { ErrorType, TenantsafeError } from '../errors';

export interface SupabaseBackupList {
  region: string;
  walg_enabled: boolean;
  pitr_enabled: boolean;
  backups: { id: number; is_physical_backup: boolean; status: 'COMPLETED' | 'FAILED' | 'PENDING' | 'REMOVED' | 'ARCHIVED' | 'CANCELLED'; inserted_at: string }[];
  physical_backup_data: { earliest_physical_backup_date_unix?: number; latest_physical_backup_date_unix?: number };
}

export interface SupabaseProject {
  ref: string;
  name: string;
  status: string;
  region: string;
  database: { host: string; version: string; postgres_engine: string; release_channel: string };
}

export interface RetryPolicy {
  /** attempts after the first, for 429, 5xx and network failures */
  retries: number;
  /** the longest a Retry-After is honoured; a longer one fails at once */
  maxWaitMs: number;
  /** first backoff for 5xx and network failures; doubles each time */
  backoffMs: number;
}

export const defaultRetryPolicy: RetryPolicy = { retries: 5, maxWaitMs: 60_000, backoffMs: 1000 };

/** Retry-After in seconds or as an HTTP date; ms to wait. */
export function retryAfterMs(header: string | null, now = Date.now()): number | null {
  if (!header) return null;
  if (/^\d+$/.test(header.trim())) return Number(header.trim()) * 1000;
  const at = Date.parse(header);
  return Number.isNaN(at) ? null : Math.max(0, at - now);
}

export class SupabaseApi {
  constructor(
    private readonly cfg: SupabaseConfig,
    private readonly retry: RetryPolicy = defaultRetryPolicy,
  ) {}

  listBackups(): Promise<SupabaseBackupList> {
    return this.request('GET', `/v1/projects/${this.cfg.projectRef}/database/backups`) as Promise<SupabaseBackupList>;
  }

  async restorePitr(recoveryTimeTargetUnix: number): Promise<void> {
    await this.request('POST', `/v1/projects/${this.cfg.projectRef}/database/backups/restore-pitr`, { recovery_time_target_unix: recoveryTimeTargetUnix });
  }

  getProject(): Promise<SupabaseProject> {
    return this.request('GET', `/v1/projects/${this.cfg.projectRef}`) as Promise<SupabaseProject>;
  }

  private async request(method: 'GET' | 'POST', path: string, body?: unknown): Promise<unknown> {
    const url = this.cfg.apiUrl + path;
    for (let attempt = 0; ; attempt++) {
      let res: Response;
      try {
        res = await fetch(url, {
          method,
          headers: { authorization: `Bearer ${this.cfg.accessToken}`, accept: 'application/json', ...(body ? { 'content-type': 'application/json' } : {}) },
          body: body ? JSON.stringify(body) : undefined,
          signal: AbortSignal.timeout(30_000),
        });
      } catch (err) {
        if (attempt >= this.retry.retries) throw this.unavailable(`${method} ${path} failed: ${(err as Error).message}`);
        await sleep(this.retry.backoffMs * 2 ** attempt);
        continue;
      }
      const text = await res.text();
      if (res.ok) return text ? JSON.parse(text) : null;
      const message = messageOf(text) ?? res.statusText;
      if (res.status === 429) {
        const wait = retryAfterMs(res.headers.get('retry-after')) ?? this.retry.backoffMs * 2 ** attempt;
        if (attempt >= this.retry.retries || wait > this.retry.maxWaitMs) {
          throw this.unavailable(`Supabase kept rate-limiting ${method} ${path} (429, Retry-After ${res.headers.get('retry-after') ?? 'none'}) after ${attempt + 1} attempts`);
        }
        await sleep(wait);
        continue;
      }
      if (res.status >= 500) {
        if (attempt >= this.retry.retries) throw this.unavailable(`${method} ${path} answered ${res.status}: ${message}`);
        await sleep(this.retry.backoffMs * 2 ** attempt);
        continue;
      }
      if (res.status === 401 || res.status === 403) {
        throw new TenantsafeError(
          ErrorType.BadConfig,
          `Supabase rejected the access token for ${method} ${path} (${res.status}: ${message}).`,
          'Set supabase.accessToken (e.g. ${SUPABASE_ACCESS_TOKEN}) to a valid personal access token with access to the project.',
        );
      }
      if (res.status === 404) {
        throw new TenantsafeError(
          ErrorType.BadConfig,
          `Supabase has no project "${this.cfg.projectRef}" for this token (${method} ${path}: 404 ${message}).`,
          'Check supabase.projectRef (the 20 letters in the project URL) and that the token belongs to its organization.',
        );
      }
      throw new TenantsafeError(ErrorType.BadInput, `Supabase refused ${method} ${path} (${res.status}: ${message}).`, 'Fix the request as the message says.');
    }
  }

  private unavailable(what: string): TenantsafeError {
    return new TenantsafeError(ErrorType.ProviderUnavailable, `${what}.`, `Check https://status.supabase.com and the network path to ${this.cfg.apiUrl}; the step is retried.`);
  }
}

function messageOf(text: string): string | null {
  try {
    const body = JSON.parse(text) as { message?: unknown };
    return typeof body.message === 'string' ? body.message : null;
  } catch {
    return text.trim() || null;
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
