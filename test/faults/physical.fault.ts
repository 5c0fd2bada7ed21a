// Faults in the middle of the physical steps: a base backup, WAL streaming, change-log streaming
// and a PITR restore, each under the rig's faults. Nothing may be lost: the backup verifies (a
// real restore), the WAL archive reaches past a commit made after the fault, the change log holds
// every committed row exactly once, the PITR restore reaches the LSN it was asked for.
// A PostgreSQL crash during a PITR restore is left out: the restore reads storage and the WAL
// archive, never the live database, which the other rows of the table already crash.
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { WorkflowFailedError } from '@temporalio/client';
import { readChangeLog } from '../../lib/changeLog/read';
import { changeLogState } from '../../lib/changeLog/capture';
import { parseLsn } from '../../lib/wal/names';
import { withConnection } from '../../lib/pg';
import { PrivateCluster } from '../../lib/postgres/cluster';
import type { fullBackup, pitrRestore, verifyBackup } from '../../workflows';
import { databaseWorkflowIds } from '../../workflows/messages';
import { baseKeyOf } from '../support/compressions';
import { stopWalArchiver } from '../support/cluster';
import { waitFor } from '../support/wait';
import { createRig, faults, sleep, type Rig } from './rig';

const archiverSlot = 'tenantsafe';
const changeLogSlot = 'tenantsafe_changes';

describe('faults in the physical steps', function () {
  let rig: Rig;
  const sql = <T extends Record<string, unknown>>(text: string, params?: unknown[]) => withConnection(rig.env.db.url, async (c) => (await c.query<T>(text, params)).rows);
  const startFullBackup = () => rig.env.temporal.workflow.start<typeof fullBackup>('fullBackup', { taskQueue: rig.env.config.temporal.taskQueue, workflowId: databaseWorkflowIds.fullBackup(), args: [{}] });
  const startVerifyBackup = (backupId: string) =>
    rig.env.temporal.workflow.start<typeof verifyBackup>('verifyBackup', { taskQueue: rig.env.config.temporal.taskQueue, workflowId: databaseWorkflowIds.verifyBackup(backupId), args: [{ backupId }] });
  const startPitrRestore = (target: string) =>
    rig.env.temporal.workflow.start<typeof pitrRestore>('pitrRestore', { taskQueue: rig.env.config.temporal.taskQueue, workflowId: databaseWorkflowIds.pitrRestore(target), args: [{ latest: true, target }] });

  before(async function () {
    this.timeout(600_000);
    rig = await createRig({
      settings: { wal_level: 'logical' },
      configure: (doc, dir, source) => {
        doc.fullBackup = { maxRate: '4MB/s', compression: 'zstd:3', walPartialInterval: '200ms', walSpoolDir: path.join(dir, 'spool'), archiveWait: '60s' };
        doc.verification = { scratchDir: source.dir };
        doc.changeLog = { enabled: true, replicaIdentityFull: true };
      },
    });
    // ~30 MB of table data: at 4 MB/s the base backup streams for several seconds
    await sql(`CREATE TABLE public.filler AS SELECT g AS id, md5(g::text) || md5((g * 7)::text) AS pad FROM generate_series(1, 400000) g`);
    const started = await rig.cli('changelog', 'start');
    assert.equal(started.code, 0, started.stderr);
  });
  after(async () => {
    if (rig) {
      await rig.cli('changelog', 'stop');
      await stopWalArchiver(rig.env);
    }
    await rig?.close();
  });
  const slots = [archiverSlot, changeLogSlot];

  /** A commit now, and when the server says it happened. */
  const commitMarker = async (note: string) => (await sql<{ at: string; lsn: string }>(`INSERT INTO public.markers (note) VALUES ($1) RETURNING now()::text AS at, pg_current_wal_lsn()::text AS lsn`, [note]))[0];
  before(async () => sql(`CREATE TABLE public.markers (id serial PRIMARY KEY, note text NOT NULL)`));
  const archiveReaches = (at: string) =>
    waitFor(`the WAL archive reaches ${at}`, async () => {
      const w = await rig.cli('pitr', 'window');
      return w.code === 0 && w.json().latest !== null && Date.parse(w.json().latest) >= Date.parse(at);
    }, { tries: 600 });

  for (const fault of faults) {
    describe(`under ${fault}`, () => {
      let fullBackupId: string;
      it('base backup: the backup completes and verifies by a real restore', () =>
        rig.faultCase('base backup', fault, async ({ inject, recovered }) => {
          const handle = await startFullBackup();
          await waitFor('pg_basebackup streams files', async () => {
            const [p] = await rig.source.cluster.psql<{ phase: string; done: string }>(`SELECT phase, backup_streamed::text AS done FROM pg_stat_progress_basebackup`);
            return p?.phase === 'streaming database files' && Number(p.done) > 2 << 20;
          });
          await inject();
          const { backupId } = await handle.result();
          recovered();
          fullBackupId = backupId;
          const keys: string[] = [];
          for await (const o of rig.env.engine.store.list(`full/${backupId}/`)) keys.push(o.key.slice(`full/${backupId}/`.length));
          assert.deepEqual(keys.sort(), ['backup_manifest', baseKeyOf('zstd:3'), 'manifest.json', 'started.json']);
          const verified = await rig.cli('verify', backupId);
          assert.equal(verified.code, 0, verified.stdout + verified.stderr);
          return 'done; verified';
        }, { slots }));

      // the verification's restore test reads storage and runs a scratch cluster: the live database is not in it
      if (fault !== 'postgres crash') {
        it('backup verification: the restore test ends ok, and its scratch cluster is gone', () =>
          rig.faultCase('backup verification', fault, async ({ inject, recovered }) => {
            const handle = await startVerifyBackup(fullBackupId);
            const scratchRunning = () => fs.readdirSync(rig.source.dir).some((f) => f.startsWith('tenantsafe-verify-') && fs.existsSync(path.join(rig.source.dir, f, 'data', 'postmaster.pid')));
            await waitFor('the restore test runs its scratch cluster', async () => scratchRunning(), { tries: 1200, intervalMs: 50 });
            await inject();
            const report = await handle.result();
            recovered();
            assert.ok(report.ok, JSON.stringify(report.checks.filter((c) => c.result !== 'ok')));
            return 'done; ok';
          }, { slots }));
      }

      it('WAL streaming: the archive reaches a commit made after the fault, with no gap', () =>
        rig.faultCase('WAL streaming', fault, async ({ inject, recovered }) => {
          const before = await commitMarker(`before ${fault}`);
          await inject(async () => void (await commitMarker(`during ${fault}`).catch(() => undefined)));
          const after = await commitMarker(`after ${fault}`);
          await archiveReaches(after.at);
          recovered();
          const window = (await rig.cli('pitr', 'window')).json();
          assert.ok(Date.parse(window.earliest) <= Date.parse(before.at), 'one window from before the fault to after it');
          return 'streaming; archive past the fault';
        }, { slots }));

      it('change-log streaming: every row committed around the fault is in the log exactly once', () =>
        rig.faultCase('change-log streaming', fault, async ({ inject, recovered }) => {
          const tag = `/fault-${faults.indexOf(fault)}-`;
          let writing = true;
          let n = 0;
          const writer = (async () => {
            while (writing) {
              await sql(`INSERT INTO app.page_views (tenant_id, path, viewed_at) VALUES ('acme', $1, now())`, [`${tag}${n}`]).then(() => n++, () => sleep(200));
              await sleep(20);
            }
          })();
          await sleep(1000);
          await inject();
          await sleep(1000);
          writing = false;
          await writer;
          const [{ lsn }] = await sql<{ lsn: string }>(`SELECT pg_current_wal_lsn()::text AS lsn`);
          await waitFor(`the change log is durable to ${lsn}`, async () => {
            const state = await changeLogState(rig.env.engine);
            return !!state.durable && parseLsn(state.durable.lsn) >= parseLsn(lsn);
            // where the stream was when it never got there (its state, restarts, last error)
          }, { tries: 900, state: async () => (await rig.cli('changelog', 'status')).stdout });
          recovered();
          const committed = (await sql<{ path: string }>(`SELECT path FROM app.page_views WHERE path LIKE $1 ORDER BY 1`, [`${tag}%`])).map((r) => r.path);
          const state = await changeLogState(rig.env.engine);
          assert.deepEqual(state.gaps, [], 'no gap in the log');
          const logged: string[] = [];
          for await (const { txn } of readChangeLog(rig.env.engine.store, rig.env.engine.catalog, state.stream, 0n)) {
            for (const ch of txn.changes) {
              const p = ch.kind === 'insert' && ch.table === 'app.page_views' ? ch.row.find((v) => typeof v === 'string' && v.startsWith(tag)) : undefined;
              if (p) logged.push(p);
            }
          }
          assert.ok(committed.length > 20, `rows were written around the fault (${committed.length})`);
          assert.deepEqual(logged.sort(), committed, 'each committed row once, none lost');
          return `streaming; ${committed.length} rows, each once`;
        }, { slots }));

      if (fault === 'postgres crash') return;
      it('PITR restore: the restored cluster reaches the asked LSN, or the run fails saying why with nothing left running', () =>
        rig.faultCase('PITR restore', fault, async ({ inject, recovered }) => {
          // WAL to replay: ~20 MB after the newest base backup
          await sql(`INSERT INTO public.filler SELECT g, md5(g::text) FROM generate_series(1, 150000) g`);
          const mark = await commitMarker(`pitr ${fault}`);
          await archiveReaches(mark.at);
          const target = path.join(rig.source.dir, `pitr-${faults.indexOf(fault)}`);
          const handle = await startPitrRestore(target);
          await waitFor('the restored cluster replays WAL', async () => fs.existsSync(path.join(target, 'postmaster.pid')), { tries: 1200, intervalMs: 50 });
          await inject();
          const outcome = await handle.result().then(
            (r) => {
              recovered();
              assert.ok(parseLsn(r.lsn!) >= parseLsn(mark.lsn), `recovered to ${r.lsn}, past the marker at ${mark.lsn}`);
              return `done; reached ${r.lsn}`;
            },
            (err: unknown) => {
              recovered();
              assert.ok(err instanceof WorkflowFailedError, String(err));
              return `failed: ${String(err.cause?.message ?? err.message).slice(0, 60)}`;
            },
          );
          const cluster = await PrivateCluster.attach(target).catch(() => undefined);
          assert.ok(!cluster?.isRunning(), 'no cluster left running in the target');
          fs.rmSync(target, { recursive: true, force: true });
          return outcome;
        }, { slots }));
    });
  }
});
