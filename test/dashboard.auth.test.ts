// The dashboard's users, roles, sessions and form tokens: the config that defines them (errors
// name the key, never the secret) and the checks the server runs on every request.
import { strict as assert } from 'node:assert';
import { DashboardAuth, legacyTokenUser, sessionCookie } from '../client/dashboard/auth';
import { html } from '../client/dashboard/html';
import { parseConfig, type DashboardConfig } from '../lib/config';
import { ctx, minimal, problemsOf } from './support/config';
import { hashPassword, hashToken, isSecretHash, secretMatches } from '../lib/secretHash';


const longToken = 'tok-' + 'x'.repeat(40);

describe('dashboard users in the config', () => {
  it('reads users with roles, hashed or environment secrets, and keeps dashboard.token', async () => {
    const alicePw = await hashPassword('alice password', 10);
    const cfg = parseConfig(
      {
        ...minimal,
        dashboard: {
          token: '${DASH_TOKEN}',
          sessionTtl: '2h',
          users: {
            alice: { role: 'operator', password: alicePw },
            bob: { role: 'read-only', token: '${BOB_TOKEN}' },
            'support-bot': { role: 'operator', token: hashToken(longToken), relay: true },
          },
        },
      },
      { ...ctx, env: { DASH_TOKEN: 'legacy-token', BOB_TOKEN: 'bob-token-0123456789' } },
    );
    assert.equal(cfg.dashboard.token, 'legacy-token');
    assert.equal(cfg.dashboard.sessionTtlMs, 7_200_000);
    assert.deepEqual(
      cfg.dashboard.users.map((u) => [u.name, u.role, u.relay, !!u.password, !!u.token]),
      [['alice', 'operator', false, true, false], ['bob', 'read-only', false, false, true], ['support-bot', 'operator', true, false, true]],
    );
    assert.ok(isSecretHash(alicePw));
    assert.equal(parseConfig(minimal, ctx).dashboard.users.length, 0);
  });

  it('names every bad key of the users, and never shows a secret', () => {
    const message = problemsOf(
      {
        ...minimal,
        dashboard: {
          token: 12,
          sessionSecret: '${SHORT}',
          users: {
            carol: { role: 'admin', password: 'plain-in-the-file' },
            dave: { role: 'operator' },
            erin: { role: 'operator', password: 'scrypt$15$8$1$broken' },
            'bad name!': { role: 'read-only', token: '${T1}' },
            frank: { role: 'operator', token: '${T1}', shoeSize: 9 },
            gina: { role: 'operator', token: '${T2}' },
          },
        },
      },
      { SHORT: 'short-secret', T1: 'short', T2: 'the-same-token-as-hers' },
    );
    assert.match(message, /dashboard\.token: must be a string/);
    assert.match(message, /dashboard\.sessionSecret: must be at least 32 characters \(the value is not shown\)/);
    assert.match(message, /dashboard\.users\.carol\.role: must be one of read-only, operator/);
    assert.match(message, /dashboard\.users\.carol\.password: must be a hash \(`tenantsafe hash-secret`\) or an environment reference like \$\{CAROL_PASSWORD\}; a secret written in the file is refused \(the value is not shown\)/);
    assert.match(message, /dashboard\.users\.dave: needs a token or a password/);
    assert.match(message, /dashboard\.users\.erin\.password: is not a well-formed hash/);
    assert.match(message, /dashboard\.users\.bad name!: a user name is 1 to 64 letters/);
    assert.match(message, /dashboard\.users\.frank\.token: must be at least 16 characters/);
    assert.match(message, /dashboard\.users\.frank\.shoeSize: unknown key/);
    for (const secret of ['plain-in-the-file', 'short-secret', 'scrypt$15$8$1$broken']) assert.ok(!message.includes(secret), `${secret} shown`);
  });

  it('refuses two users with the same token: a token must say who calls', () => {
    const message = problemsOf({ ...minimal, dashboard: { users: { a: { role: 'operator', token: '${T}' }, b: { role: 'read-only', token: '${T}' } } } }, { T: 'the-same-token-for-both' });
    assert.match(message, /dashboard\.users\.a\.token: is the same as another user's/);
    assert.ok(!message.includes('the-same-token-for-both'));
  });
});

describe('dashboard authentication and form tokens', () => {
  let config: DashboardConfig;
  before(async () => {
    config = {
      host: '127.0.0.1',
      port: 0,
      token: 'legacy-token-value',
      sessionTtlMs: 3_600_000,
      users: [
        { name: 'alice', role: 'operator', password: await hashPassword('alice password', 10), relay: false },
        { name: 'bob', role: 'read-only', token: 'bob-token-0123456789', relay: false },
        { name: 'bot', role: 'operator', token: hashToken(longToken), relay: true },
      ],
    };
  });
  const basic = (user: string, secret: string) => `Basic ${Buffer.from(`${user}:${secret}`).toString('base64')}`;

  it('knows a bearer token, basic auth and dashboard.token (an operator that relays); anything else is invalid', async () => {
    const auth = new DashboardAuth(config);
    assert.deepEqual((await auth.authenticate({ authorization: 'Bearer bob-token-0123456789' })).principal, { name: 'bob', role: 'read-only', relay: false, via: 'token' });
    assert.equal((await auth.authenticate({ authorization: `Bearer ${longToken}` })).principal?.name, 'bot');
    assert.deepEqual((await auth.authenticate({ authorization: 'Bearer legacy-token-value' })).principal, { name: legacyTokenUser, role: 'operator', relay: true, via: 'token' });
    assert.equal((await auth.authenticate({ authorization: basic('alice', 'alice password') })).principal?.name, 'alice');
    for (const authorization of ['Bearer nope', basic('alice', 'wrong'), basic('mallory', 'alice password'), 'Digest x', 'Bearer ']) {
      assert.deepEqual(await auth.authenticate({ authorization }), { principal: null, reason: 'invalid' }, authorization);
    }
    assert.deepEqual(await auth.authenticate({}), { principal: null, reason: 'missing' });
    // a wrong Authorization header is not saved by a good session
    const p = (await auth.signIn('alice', 'alice password'))!;
    assert.equal((await auth.authenticate({ authorization: 'Bearer nope', cookie: `${sessionCookie}=${auth.sessionValue(p)}` })).principal, null);
  });

  it('signs in to a session that a forged, expired, signed-out or re-keyed cookie does not give', async () => {
    let now = 1_000_000;
    const auth = new DashboardAuth(config, () => now);
    assert.equal(await auth.signIn('alice', 'wrong'), null);
    assert.equal(await auth.signIn('nobody', 'alice password'), null);
    const p = (await auth.signIn('alice', 'alice password'))!;
    const cookie = `${sessionCookie}=${auth.sessionValue(p)}`;
    assert.equal((await auth.authenticate({ cookie })).principal?.name, 'alice');
    const [payload, mac] = auth.sessionValue(p).split('.');
    const forged = Buffer.from(JSON.stringify({ ...JSON.parse(Buffer.from(payload, 'base64url').toString()), u: 'bot' })).toString('base64url');
    assert.equal((await auth.authenticate({ cookie: `${sessionCookie}=${forged}.${mac}` })).principal, null, 'another name under the same signature');
    assert.equal((await new DashboardAuth(config, () => now).authenticate({ cookie })).principal, null, 'another process without dashboard.sessionSecret');
    const changed = new DashboardAuth({ ...config, users: config.users.map((u) => (u.name === 'alice' ? { ...u, role: 'read-only' as const } : u)) }, () => now);
    assert.equal((await changed.authenticate({ cookie })).principal, null, 'a change of role or secret ends the session');
    now += 3_600_001;
    assert.equal((await auth.authenticate({ cookie })).principal, null, 'expired');
    now = 1_000_000;
    auth.signOut(p);
    assert.equal((await auth.authenticate({ cookie })).principal, null, 'signed out');
    // with a shared sessionSecret, another dashboard process accepts the session
    const shared = { ...config, sessionSecret: 's'.repeat(40) };
    const a1 = new DashboardAuth(shared, () => now);
    const a2 = new DashboardAuth(shared, () => now);
    const q = (await a1.signIn('alice', 'alice password'))!;
    assert.equal((await a2.authenticate({ cookie: `${sessionCookie}=${a1.sessionValue(q)}` })).principal?.name, 'alice');
  });

  it('accepts a form token once, for its user, action, restore and digest, until it expires', () => {
    let now = 5_000_000;
    const auth = new DashboardAuth(config, () => now);
    const token = auth.formToken('bob', 'approve', 'R1\nd1');
    assert.equal(auth.useFormToken(token, 'alice', 'approve', 'R1\nd1'), 'invalid', 'another user');
    assert.equal(auth.useFormToken(token, 'bob', 'reject', 'R1\nd1'), 'invalid', 'another action');
    assert.equal(auth.useFormToken(token, 'bob', 'approve', 'R2\nd1'), 'invalid', 'another restore');
    assert.equal(auth.useFormToken(token, 'bob', 'approve', 'R1\nd2'), 'invalid', 'another digest');
    assert.equal(auth.useFormToken(token.replace(/^\d+/, String(now + 10 ** 9)), 'bob', 'approve', 'R1\nd1'), 'invalid', 'a later expiry');
    assert.equal(auth.useFormToken(undefined, 'bob', 'approve', 'R1\nd1'), 'invalid');
    assert.equal(auth.useFormToken(token, 'bob', 'approve', 'R1\nd1'), 'ok');
    assert.equal(auth.useFormToken(token, 'bob', 'approve', 'R1\nd1'), 'used', 'a replay');
    const late = auth.formToken('bob', 'approve', 'R1\nd1');
    now += 31 * 60_000;
    assert.equal(auth.useFormToken(late, 'bob', 'approve', 'R1\nd1'), 'expired');
  });

  it('hashes: scrypt for passwords, sha256 for long tokens, plain values compared in constant time', async () => {
    const h = await hashPassword('pw', 10);
    assert.match(h, /^scrypt\$10\$8\$1\$/);
    assert.ok(await secretMatches(h, 'pw'));
    assert.ok(!(await secretMatches(h, 'pw ')));
    assert.ok(await secretMatches(hashToken(longToken), longToken));
    assert.ok(await secretMatches('plain', 'plain'));
    assert.ok(!(await secretMatches('plain', 'plain2')));
  });

  it('escapes every value a page shows', () => {
    const evil = `<script>alert("x")</script>' & "`;
    assert.equal(html`<p title="${evil}">${evil}</p>`.text, '<p title="&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&#39; &amp; &quot;">&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&#39; &amp; &quot;</p>');
    assert.equal(html`<ul>${['<a>', html`<li>kept</li>`]}</ul>`.text, '<ul>&lt;a&gt;<li>kept</li></ul>');
  });
});

describe('the dashboard\'s retention view of a tenant', () => {
  it('says why each restore point is kept, what the next run removes and what expires next by age', () => {
    const { retentionView } = require('../lib/dashboard/retention') as typeof import('../lib/dashboard/retention');
    const now = new Date('2026-06-30T12:00:00Z');
    const day = (d: number) => new Date(now.getTime() - d * 86_400_000).toISOString();
    const points = [0, 1, 5, 20, 40, 90].map((d) => ({ backupId: `b${d}`, at: day(d) }));
    const v = retentionView(points, new Set(['b90']), new Set(), { days: 30, minCount: 2, daily: 0, weekly: 0, monthly: 0, yearly: 0 }, now);
    assert.deepEqual(v.points.map((p) => [p.backupId, p.reasons]), [
      ['b0', ['min-count', 'recent']],
      ['b1', ['min-count', 'recent']],
      ['b5', ['recent']],
      ['b20', ['recent']],
      ['b40', []],
      ['b90', ['pinned']],
    ]);
    assert.deepEqual(v.removable, ['b40']);
    assert.deepEqual(v.nextToGo, { backupId: 'b20', at: day(20), goesAt: new Date(Date.parse(day(20)) + 30 * 86_400_000).toISOString() });
    assert.equal(retentionView(points.slice(0, 2), new Set(), new Set(), { days: 30, minCount: 2, daily: 0, weekly: 0, monthly: 0, yearly: 0 }, now).nextToGo, null, 'the newest two stay whatever their age');
  });
});
