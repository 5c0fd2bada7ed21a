// Not a benchmark of its own: the change log's capture (lib/changeLog/capture.ts) alone in a
// process, as tenantPitr.ts starts it so that its CPU time and memory can be read from /proc.
//   node --require tsx/cjs bench/captureProcess.ts <config file>
// It streams until SIGTERM, then stores what it received and prints its progress as JSON.
import { captureChanges } from '../lib/changeLog/capture';
import { loadConfig } from '../lib/config';
import { Engine } from '../lib/engine';

async function main(): Promise<void> {
  const engine = new Engine(loadConfig({ path: process.argv[2] }));
  const stop = new AbortController();
  process.once('SIGTERM', () => stop.abort());
  try {
    const progress = await captureChanges(engine, { runForMs: 3_600_000, signal: stop.signal });
    process.stdout.write(`${JSON.stringify(progress)}\n`);
  } finally {
    await engine.close();
  }
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
