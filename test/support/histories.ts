// Replay histories (STYLE 15): one recorded run of every workflow type, committed under
// test/fixtures/histories and replayed against the current workflow code by test/replay.test.ts,
// so a change that would break runs already in flight fails CI. `RECORD_HISTORIES=1 npm test`
// records them anew from the test run's own server: for each type, its completed run with the
// longest history (the most paths through the code). A workflow that changed behind a patch keeps
// its older history (<type>.json, the runs in flight then) beside one of the new code
// (<type>.<version>.json): `RECORD_HISTORIES=1 RECORD_HISTORIES_AS=<version>` writes those.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { historyToJSON } from '@temporalio/common/lib/proto-utils';

export const historiesDir = path.join(__dirname, '..', 'fixtures', 'histories');

export async function recordHistories(address: string, namespace: string): Promise<string[]> {
  const connection = await Connection.connect({ address });
  try {
    const client = new Client({ connection, namespace });
    const longest = new Map<string, { workflowId: string; runId: string; events: number }>();
    for await (const run of client.workflow.list({ query: `ExecutionStatus = 'Completed'` })) {
      const events = run.historyLength;
      const best = longest.get(run.type);
      if (!best || events > best.events) longest.set(run.type, { workflowId: run.workflowId, runId: run.runId, events });
    }
    fs.mkdirSync(historiesDir, { recursive: true });
    for (const [type, run] of longest) {
      const history = await client.workflow.getHandle(run.workflowId, run.runId).fetchHistory();
      const version = process.env.RECORD_HISTORIES_AS ? `.${process.env.RECORD_HISTORIES_AS}` : '';
      fs.writeFileSync(path.join(historiesDir, `${type}${version}.json`), JSON.stringify({ workflowId: run.workflowId, history: JSON.parse(historyToJSON(history)) }, null, 1) + '\n');
    }
    return [...longest.keys()].sort();
  } finally {
    await connection.close();
  }
}
