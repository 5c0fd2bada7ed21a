// The change log's activity: streams a slice of committed changes into storage (lib/changeLog),
// heartbeating how far it stored; cancellation stops it after it stored what it received.
import { Context } from '@temporalio/activity';
import { captureChanges, type ChangeLogProgress } from '../lib/changeLog/capture';
import type { Engine } from '../lib/engine';
import { withFailures } from './failures';
import { heartbeatEvery } from './tenantBackup';

export function createChangeLogActivities(engine: Engine) {
  return withFailures({
    /** Streams for `runForMs`, then returns (the workflow calls it again); a retry resumes from what the catalog says is stored. */
    async streamChanges({ runForMs }: { runForMs: number }): Promise<ChangeLogProgress> {
      let progress: ChangeLogProgress | { phase: string } = { phase: 'starting' };
      const stop = heartbeatEvery(2000, () => progress);
      try {
        return await captureChanges(engine, { runForMs, signal: Context.current().cancellationSignal, onProgress: (p) => (progress = { ...p }) });
      } finally {
        stop();
      }
    },
  });
}

export type ChangeLogActivities = ReturnType<typeof createChangeLogActivities>;
