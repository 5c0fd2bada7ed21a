// Long activities resume from their heartbeat details where that saves work: the verification's
// object checks. A retry after a killed worker takes the checks its heartbeat listed as made and
// reads only the other objects (run in Temporal's mock activity environment, on a real backup).
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { MockActivityEnvironment } from '@temporalio/testing';
import { createVerifyActivities, type VerificationStart } from '../activities/verify';
import { readManifest, tenantBackupPrefix } from '../lib/format/tenantManifest';
import type { VerificationCheck } from '../lib/verification/verifyBackup';
import { backUpNow } from './support/backups';
import { createTestEnv, type TestEnv } from './support/env';

const tenantId = 'acme';

describe('a verification retried after its worker died', function () {
  this.timeout(120_000);
  let env: TestEnv;
  before(async () => {
    env = await createTestEnv('local');
  });
  after(async () => env?.close());

  it('takes the object checks its heartbeat listed and reads only the objects after them', async () => {
    const backupId = await backUpNow(env.engine, tenantId);
    const prefix = tenantBackupPrefix(tenantId, backupId);
    const objects = (await readManifest(env.engine.store, prefix)).tables.map((t) => t.object.key);
    const root = env.config.storage.primary.kind === 'local' ? env.config.storage.primary.path : '';
    // every object damaged now: a check that reads one finds it; one taken from the heartbeat does not
    for (const key of objects) {
      const file = path.join(root, prefix, key);
      const bytes = fs.readFileSync(file);
      bytes[Math.floor(bytes.length / 2)] ^= 0x01;
      fs.writeFileSync(file, bytes);
    }
    const [first, second] = objects;
    const earlier: VerificationCheck[] = [
      { check: 'manifest', target: 'manifest.json', result: 'ok' },
      { check: 'object', target: first, result: 'ok' },
      { check: 'object', target: second, result: 'ok' },
    ];
    const retry = new MockActivityEnvironment({ attempt: 2, heartbeatDetails: { checks: earlier } });
    const heartbeats: { checks: VerificationCheck[] }[] = [];
    retry.on('heartbeat', (d: { checks: VerificationCheck[] }) => heartbeats.push(d));
    const { verifyManifestAndObjects } = createVerifyActivities(env.engine);
    const start: VerificationStart = await retry.run(verifyManifestAndObjects, { backupId });

    const results = Object.fromEntries(start.checks.filter((c) => c.check === 'object').map((c) => [c.target, c.result]));
    assert.deepEqual(Object.keys(results), objects, 'one check per object, in manifest order');
    assert.equal(results[first], 'ok', 'taken from the heartbeat: not read again');
    assert.equal(results[second], 'ok');
    for (const key of objects.slice(2)) assert.equal(results[key], 'checksum_mismatch', `${key} read and checked`);
    assert.equal(start.intact, false);
    assert.ok(heartbeats.length > 0 && heartbeats[0].checks.length >= 2, 'the heartbeat carries the checks made so far');
  });
});
