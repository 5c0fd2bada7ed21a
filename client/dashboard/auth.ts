// Who is asking, and may they: the dashboard's users (config dashboard.users, and the HTTP API's
// dashboard.token of before), their sessions, and the tokens that make its forms safe from
// cross-site requests and replays.
//
//   Authorization: Bearer <token>      a user's token (scripts, services, the HTTP API)
//   Authorization: Basic <name:secret> a user's password (or token)
//   Cookie tenantsafe_session=...      after signing in with the form: HMAC-signed name, expiry,
//                                      session id and a tag of the user's secret (changing the
//                                      secret or signing out ends it); HttpOnly, SameSite=Strict
//
// Every form carries a token bound to the user, the action, the restore and the preview digest
// it shows, with an expiry and a one-time nonce: a form posted from elsewhere, for another
// restore or digest, by someone else, late, or a second time is refused before anything is done.
// Secrets are compared in constant time and never logged; a signed-in session holds none.
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { DashboardConfig, DashboardRole } from '../../lib/config';
import { secretMatches, secretTag } from '../../lib/secretHash';

export interface Principal {
  name: string;
  role: DashboardRole;
  /** over the HTTP API, may name who approves (`by`): a relaying service, or dashboard.token */
  relay: boolean;
  via: 'token' | 'basic' | 'session';
  /** signed in with the form: the session to end on sign-out */
  sessionId?: string;
}

export type AuthResult = { principal: Principal } | { principal: null; reason: 'missing' | 'invalid' };

interface UserEntry {
  name: string;
  role: DashboardRole;
  relay: boolean;
  token?: string;
  password?: string;
  /** changes when the user's secrets or role change: sessions made before no longer count */
  tag: string;
}

export const sessionCookie = 'tenantsafe_session';
/** The name dashboard.token signs in with (an operator that relays, as the HTTP API always allowed). */
export const legacyTokenUser = 'dashboard.token';
/** How long a form may wait to be sent. */
export const formTtlMs = 30 * 60_000;
const verifiedTtlMs = 5 * 60_000;

const b64 = (b: Buffer | string) => Buffer.from(b).toString('base64url');

export class DashboardAuth {
  private readonly users = new Map<string, UserEntry>();
  private readonly key: Buffer;
  /** nonces of forms already sent, until they expire */
  private readonly usedForms = new Map<string, number>();
  /** sessions signed out, until they expire */
  private readonly endedSessions = new Map<string, number>();
  /** basic-auth and token checks that passed recently (scrypt is slow on purpose): sha256 of name + secret → until */
  private readonly verified = new Map<string, number>();

  constructor(
    private readonly config: DashboardConfig,
    private readonly now: () => number = Date.now,
  ) {
    for (const u of config.users) this.users.set(u.name, { ...u, tag: secretTag(`${u.role}\n${u.token ?? ''}\n${u.password ?? ''}`) });
    if (config.token && !this.users.has(legacyTokenUser)) {
      this.users.set(legacyTokenUser, { name: legacyTokenUser, role: 'operator', relay: true, token: config.token, tag: secretTag(`operator\n${config.token}`) });
    }
    this.key = config.sessionSecret ? createHmac('sha256', 'tenantsafe-dashboard').update(config.sessionSecret).digest() : randomBytes(32);
  }

  /** At least one way in: without one the dashboard would be open to anyone. */
  get hasUsers(): boolean {
    return this.users.size > 0;
  }

  private sign(label: string, payload: string): string {
    return b64(createHmac('sha256', this.key).update(`${label}\n${payload}`).digest());
  }

  private static same(a: string, b: string): boolean {
    const x = createHash('sha256').update(a).digest();
    const y = createHash('sha256').update(b).digest();
    return timingSafeEqual(x, y);
  }

  private principalOf(u: UserEntry, via: Principal['via'], sessionId?: string): Principal {
    return { name: u.name, role: u.role, relay: u.relay, via, ...(sessionId ? { sessionId } : {}) };
  }

  /** A secret of the user: checked once, then remembered a few minutes (only what passed). */
  private async check(u: UserEntry, secret: string, kinds: ('token' | 'password')[]): Promise<boolean> {
    const memo = createHash('sha256').update(`${u.name}\0${u.tag}\0${secret}`).digest('base64url');
    const until = this.verified.get(memo);
    if (until !== undefined && until > this.now()) return true;
    for (const kind of kinds) {
      const expected = u[kind];
      if (expected !== undefined && (await secretMatches(expected, secret))) {
        if (this.verified.size > 1000) this.verified.clear();
        this.verified.set(memo, this.now() + verifiedTtlMs);
        return true;
      }
    }
    return false;
  }

  /** The user a request speaks for: an Authorization header first (a wrong one is never ignored), else the session cookie. */
  async authenticate(headers: { authorization?: string; cookie?: string }): Promise<AuthResult> {
    const auth = headers.authorization;
    if (auth !== undefined) {
      const bearer = /^Bearer +(\S+)\s*$/i.exec(auth);
      if (bearer) {
        for (const u of this.users.values()) {
          if (u.token !== undefined && (await this.check(u, bearer[1], ['token']))) return { principal: this.principalOf(u, 'token') };
        }
        return { principal: null, reason: 'invalid' };
      }
      const basic = /^Basic +([A-Za-z0-9+/=]+)\s*$/i.exec(auth);
      if (basic) {
        const text = Buffer.from(basic[1], 'base64').toString('utf8');
        const colon = text.indexOf(':');
        const u = colon > 0 ? this.users.get(text.slice(0, colon)) : undefined;
        if (u && (await this.check(u, text.slice(colon + 1), ['password', 'token']))) return { principal: this.principalOf(u, 'basic') };
        return { principal: null, reason: 'invalid' };
      }
      return { principal: null, reason: 'invalid' };
    }
    const cookie = cookieValue(headers.cookie, sessionCookie);
    if (cookie === undefined) return { principal: null, reason: 'missing' };
    const session = this.readSession(cookie);
    return session ? { principal: session } : { principal: null, reason: 'invalid' };
  }

  /** The sign-in form: a name and its password (or token). */
  async signIn(name: string, secret: string): Promise<Principal | null> {
    const u = this.users.get(name);
    if (!u || secret === '' || !(await this.check(u, secret, ['password', 'token']))) return null;
    return this.principalOf(u, 'session', b64(randomBytes(12)));
  }

  /** The cookie's value for a signed-in user. */
  sessionValue(p: Principal): string {
    const u = this.users.get(p.name)!;
    const payload = b64(JSON.stringify({ u: p.name, s: p.sessionId, e: this.now() + this.config.sessionTtlMs, t: u.tag }));
    return `${payload}.${this.sign('session', payload)}`;
  }

  private readSession(value: string): Principal | null {
    const [payload, mac] = value.split('.');
    if (!payload || !mac || !DashboardAuth.same(mac, this.sign('session', payload))) return null;
    let s: { u?: unknown; s?: unknown; e?: unknown; t?: unknown };
    try {
      s = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8'));
    } catch {
      return null;
    }
    const u = typeof s.u === 'string' ? this.users.get(s.u) : undefined;
    if (!u || typeof s.e !== 'number' || s.e <= this.now() || s.t !== u.tag || typeof s.s !== 'string' || this.endedSessions.has(s.s)) return null;
    return this.principalOf(u, 'session', s.s);
  }

  signOut(p: Principal): void {
    if (!p.sessionId) return;
    this.prune(this.endedSessions);
    this.endedSessions.set(p.sessionId, this.now() + this.config.sessionTtlMs);
  }

  /** A form's token: for this user, action and subject (restore id + digest), valid formTtlMs, once. */
  formToken(user: string, action: string, subject: string): string {
    const payload = `${this.now() + formTtlMs}.${b64(randomBytes(12))}`;
    return `${payload}.${this.sign('form', `${user}\n${action}\n${subject}\n${payload}`)}`;
  }

  /** ok, or why a posted form does not count; an accepted token is used up. */
  useFormToken(token: unknown, user: string, action: string, subject: string): 'ok' | 'invalid' | 'expired' | 'used' {
    if (typeof token !== 'string') return 'invalid';
    const m = /^(\d{1,16})\.([A-Za-z0-9_-]{16})\.([A-Za-z0-9_-]{43})$/.exec(token);
    if (!m || !DashboardAuth.same(m[3], this.sign('form', `${user}\n${action}\n${subject}\n${m[1]}.${m[2]}`))) return 'invalid';
    const expires = Number(m[1]);
    if (expires <= this.now()) return 'expired';
    if (this.usedForms.has(m[2])) return 'used';
    this.prune(this.usedForms);
    this.usedForms.set(m[2], expires);
    return 'ok';
  }

  private prune(m: Map<string, number>): void {
    if (m.size < 1000) return;
    const now = this.now();
    for (const [k, until] of m) if (until <= now) m.delete(k);
  }
}

export function cookieValue(header: string | undefined, name: string): string | undefined {
  for (const part of (header ?? '').split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}
