// Scratch clusters (verification's restore test, PITR clones, drills) whose worker was killed
// before it could remove them: the next scratch directory made on the machine stops and removes
// them, and leaves alone those of a worker still running.
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { PrivateCluster } from '../lib/postgres/cluster';
import { removeOrphanScratch } from '../lib/postgres/scratch';

describe('scratch clusters a killed worker left', function () {
  this.timeout(60_000);
  let dir: string;
  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tenantsafe-scratch-'));
    fs.chmodSync(dir, 0o755);
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  const scratch = (name: string, pid: number) => {
    const work = path.join(dir, name);
    fs.mkdirSync(work, { mode: 0o755 });
    fs.chmodSync(work, 0o755);
    fs.writeFileSync(path.join(work, 'owner.json'), JSON.stringify({ pid, host: os.hostname() }));
    return work;
  };

  it('are stopped and removed; those of a running worker, and directories of no worker, stay', async () => {
    const deadPid = spawnSync('true').pid!;
    const orphan = scratch('tenantsafe-verify-orphan', deadPid);
    const cluster = await PrivateCluster.create({ dataDir: path.join(orphan, 'data'), port: 0 });
    await cluster.start();
    const mine = scratch('tenantsafe-pitr-clone-mine', process.pid);
    const foreign = path.join(dir, 'someone-elses');
    fs.mkdirSync(foreign);

    assert.deepEqual(await removeOrphanScratch(dir), [orphan]);
    assert.equal(cluster.isRunning(), false, 'its cluster stopped');
    assert.equal(fs.existsSync(orphan), false, 'its directory removed');
    assert.ok(fs.existsSync(mine) && fs.existsSync(foreign), 'the others stay');
  });
});
