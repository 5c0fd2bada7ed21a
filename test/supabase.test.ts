// The Supabase provider against a local double of the Management API that holds itself to the
// published OpenAPI shapes: list backups, the PITR window, a PITR restore, the error paths
// (401, 404, 429 then success), and the logical dump into our own storage.
import { strict as assert } from 'node:assert';
import { startFakeSupabase, type FakeSupabase } from './doubles/supabaseApi';
import { createStore } from '../lib/storage';
import { databaseWorkflowIds } from '../workflows/messages';
import { createTestEnv, runCli, type TestEnv } from './support/env';

const projectRef = 'abcdefghijklmnopqrst';
const token = 'sbp_0123456789abcdef0123456789abcdef01234567';
const nowS = Math.floor(Date.now() / 1000);

describe('the Supabase provider', function () {
  this.timeout(120_000);
  let api: FakeSupabase;
  let env: TestEnv;
  const cli = (args: string[], extraEnv: NodeJS.ProcessEnv = {}, configFile = env.configFile) => runCli([...args, '--json'], { configFile, env: { SUPABASE_ACCESS_TOKEN: token, ...extraEnv } });

  before(async () => {
    api = await startFakeSupabase({
      token,
      projects: [
        {
          ref: projectRef,
          name: 'acme-prod',
          pitrEnabled: true,
          earliestBackup: nowS - 7 * 86_400,
          latestBackup: nowS - 60,
          backups: [
            { id: 101, status: 'COMPLETED', insertedAt: new Date((nowS - 2 * 86_400) * 1000).toISOString() },
            { id: 102, status: 'COMPLETED', insertedAt: new Date((nowS - 86_400) * 1000).toISOString() },
          ],
          status: 'ACTIVE_HEALTHY',
        },
      ],
    });
    process.env.SUPABASE_ACCESS_TOKEN = token;
    env = await createTestEnv('local', {
      configure: (doc) => {
        doc.fullBackup = { provider: 'supabase' };
        doc.supabase = { projectRef, accessToken: '${SUPABASE_ACCESS_TOKEN}', apiUrl: api.url };
      },
    });
    await env.startWorker();
  });
  after(async () => {
    await env?.close();
    await api?.stop();
    delete process.env.SUPABASE_ACCESS_TOKEN;
  });

  it('lists the project\'s backups and its PITR window through the API', async () => {
    const list = await cli(['full-backups', 'list', '--provider']);
    assert.equal(list.code, 0, list.stderr);
    assert.deepEqual(list.json().map((b: { id: string; status: string; physical: boolean }) => [b.id, b.status, b.physical]), [
      ['102', 'COMPLETED', true],
      ['101', 'COMPLETED', true],
    ], 'newest first');
    const window = await cli(['pitr', 'window']);
    assert.deepEqual(window.json(), { earliest: new Date((nowS - 7 * 86_400) * 1000).toISOString(), latest: new Date((nowS - 60) * 1000).toISOString() });
    assert.deepEqual(api.violations, []);
  });

  it('triggers a PITR restore of the project in place once the target names it, and waits until it is healthy', async () => {
    const at = new Date((nowS - 3600) * 1000).toISOString();
    const wrongTarget = await cli(['pitr', 'restore', '--at', at, '--target', '/tmp/somewhere']);
    assert.equal(wrongTarget.code, 2);
    assert.match(JSON.parse(wrongTarget.stderr).error, /in place; the target must be its ref "abcdefghijklmnopqrst".*HINT: Pass --target abcdefghijklmnopqrst/);
    const outside = await cli(['pitr', 'restore', '--at', '2020-01-01T00:00:00Z', '--target', projectRef]);
    assert.equal(outside.code, 2);
    assert.match(JSON.parse(outside.stderr).error, /before the first backup: the recoverable window is .* to /);
    assert.deepEqual(api.restores, [], 'nothing was restored on bad input');

    const res = await cli(['pitr', 'restore', '--at', at, '--target', projectRef]);
    assert.equal(res.code, 0, res.stderr);
    assert.deepEqual(res.json(), { recoveredTo: at, lsn: null, dataDir: null, port: null });
    assert.deepEqual(api.restores, [{ ref: projectRef, recoveryTimeTargetUnix: nowS - 3600 }]);
    assert.equal(api.projects.get(projectRef)!.status, 'ACTIVE_HEALTHY');
    assert.ok(api.requests.filter((r) => r.path === `/v1/projects/${projectRef}` && r.status === 200).length >= 3, 'polled the project status until healthy');
  });

  it('says the token was rejected on 401, and names the project ref on 404 (exit 2)', async () => {
    const unauthorized = await cli(['pitr', 'window'], { SUPABASE_ACCESS_TOKEN: 'sbp_wrong' });
    assert.equal(unauthorized.code, 2);
    assert.equal(JSON.parse(unauthorized.stderr).type, 'BadConfig');
    assert.match(JSON.parse(unauthorized.stderr).error, /Supabase rejected the access token .*\(401: Unauthorized\).*HINT: Set supabase\.accessToken/);
    assert.doesNotMatch(unauthorized.stderr, /sbp_wrong/, 'the token is never printed');
    const otherRef = env.writeConfig('other-ref.yaml', (d) => (d.supabase.projectRef = 'zyxwvutsrqponmlkjihg'));
    const notFound = await cli(['pitr', 'window'], {}, otherRef);
    assert.equal(notFound.code, 2);
    assert.match(JSON.parse(notFound.stderr).error, /Supabase has no project "zyxwvutsrqponmlkjihg" .*404 Project not found/);
  });

  it('waits out a 429 as long as Retry-After says, then succeeds; gives up on a wait beyond its bound', async () => {
    api.rateLimit(2, 1);
    const seen = api.requests.length;
    const started = Date.now();
    const list = await cli(['full-backups', 'list', '--provider']);
    assert.equal(list.code, 0, list.stderr);
    assert.ok(Date.now() - started >= 2000, 'waited Retry-After twice');
    assert.deepEqual(api.requests.slice(seen).map((r) => r.status), [429, 429, 200]);

    api.rateLimit(1, 3600);
    const tooLong = await cli(['full-backups', 'list', '--provider']);
    assert.equal(tooLong.code, 1);
    assert.equal(JSON.parse(tooLong.stderr).type, 'ProviderUnavailable');
    assert.match(JSON.parse(tooLong.stderr).error, /kept rate-limiting .*Retry-After 3600/);
  });

  it('keeps its own copy: a logical pg_dump -Fd of the database in our storage, verified by pg_restore', async () => {
    const res = await cli(['full-backup', '--wait']);
    assert.equal(res.code, 0, res.stderr);
    const out = res.json();
    assert.equal(out.kind, 'logical');
    assert.equal(out.startLsn, null);
    const keys: string[] = [];
    for await (const o of createStore(env.config.storage.primary).list(`full/${out.backupId}/`)) keys.push(o.key.slice(`full/${out.backupId}/`.length));
    assert.ok(keys.includes('dump/toc.dat') && keys.includes('manifest.json'), keys.join(', '));
    assert.ok(keys.filter((k) => /^dump\/\d+\.dat\.gz$/.test(k)).length >= 12, 'one data file per table');
    const verified = await cli(['verify', out.backupId]);
    assert.equal(verified.code, 0, verified.stdout);
    assert.deepEqual(verified.json().checks.at(-1), { check: 'restore', target: 'pg_restore --list', result: 'ok' });

    // the token reached the activities through the config, never through Temporal
    for (const id of [databaseWorkflowIds.fullBackup(), databaseWorkflowIds.pitrRestore(projectRef)]) {
      const history = JSON.stringify(await env.temporal.workflow.getHandle(id).fetchHistory());
      const decoded = history + [...history.matchAll(/"data":"([A-Za-z0-9+/=]+)"/g)].map((m) => Buffer.from(m[1], 'base64').toString('utf8')).join('\n');
      assert.match(decoded, /\d{8}-\d{6}F-|abcdefghijklmnopqrst/, 'history was decoded');
      assert.ok(!decoded.includes(token), `the access token is in the history of ${id}`);
    }
    assert.deepEqual(api.violations, []);
  });
});
