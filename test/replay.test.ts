import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { historyFromJSON } from '@temporalio/common/lib/proto-utils';
import { Worker } from '@temporalio/worker';
import * as workflows from '../workflows';
import { installRuntime } from '../workers/worker';
import { historiesDir } from './support/histories';
import { testStack } from './support/stack';

describe('workflow replay (histories recorded with RECORD_HISTORIES=1 npm test)', () => {
  const files = fs.existsSync(historiesDir) ? fs.readdirSync(historiesDir).filter((f) => f.endsWith('.json')) : [];

  it('has a recorded history of every workflow type the worker registers', () => {
    // <type>.json, and <type>.<version>.json for a later version of a type's code
    assert.deepEqual([...new Set(files.map((f) => path.basename(f, '.json').split('.')[0]))].sort(), Object.keys(workflows).sort());
  });

  for (const file of files) {
    it(`replays the recorded ${path.basename(file, '.json')} run with the current workflow code, command for command`, async () => {
      installRuntime();
      const { workflowId, history } = JSON.parse(fs.readFileSync(path.join(historiesDir, file), 'utf8')) as { workflowId: string; history: unknown };
      await Worker.runReplayHistory({ workflowBundle: (await testStack()).bundle }, historyFromJSON(history), workflowId);
    });
  }
});
