// A scene for tests that kill worker processes: a fresh sample database, a stack on it, and the
// worker processes the test starts (killed, with the rest, after the describe).
import type { ChildProcess } from 'node:child_process';
import type { SampleOptions } from '../../sample/generate';
import type { ObjectStore } from '../../lib/storage/types';
import { spawnWorkerProcess } from '../../workers/process';
import { freshDatabase, type TestDatabase } from './db';
import { createTestEnv, type TestEnv } from './env';

export interface WorkerScene {
  db: TestDatabase;
  env: TestEnv;
  /** the engine's store (decrypts what it reads) */
  store: ObjectStore;
  workers: ChildProcess[];
  /** one more worker process, polling when it resolves */
  spawnWorker(): Promise<ChildProcess>;
}

/** Registers the describe's before and after hooks; the scene's fields are set once `before` ran. */
export function workerScene(sample: SampleOptions): WorkerScene {
  const scene = { workers: [] as ChildProcess[] } as unknown as WorkerScene;
  scene.spawnWorker = async () => {
    const w = await spawnWorkerProcess(scene.env.configFile);
    scene.workers.push(w);
    return w;
  };
  before(async function () {
    this.timeout(600_000);
    scene.db = await freshDatabase(sample);
    scene.env = await createTestEnv('local', { db: scene.db });
    scene.store = scene.env.engine.store;
  });
  after(async () => {
    scene.workers.splice(0).forEach((w) => w.kill('SIGKILL'));
    await scene.env?.close();
    await scene.db?.drop();
  });
  return scene;
}

/**
 * Kills the scene's first worker (SIGKILL) once a batch has stored a first pack and before its
 * index (no manifest yet): the keys under packs/ at that moment.
 */
export async function killOnFirstPack(scene: WorkerScene, timeoutMs = 120_000): Promise<string[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const keys: string[] = [];
    for await (const o of scene.store.list('packs/')) keys.push(o.key);
    if (keys.some((k) => k.endsWith('index.json'))) throw new Error('the batch reached its manifests before the worker could be killed');
    if (keys.some((k) => k.endsWith('.pack'))) {
      scene.workers[0].kill('SIGKILL');
      return keys;
    }
    if (Date.now() > deadline) throw new Error('the batch never wrote a pack');
    await new Promise((r) => setTimeout(r, 20));
  }
}
