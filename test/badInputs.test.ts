// The bad-input table (docs/architecture.md, core rule 7): every row is one bad input — a CLI
// argument, a config file, a signal another service sends, a request to the dashboard's HTTP
// API, or damaged storage contents — with the answer it must get (exit code, HTTP status or the
// error type, and a message a person can act on: a HINT: line on the CLI) and a proof that it
// changed nothing: a picture of the database (every table, the catalog's and the tenants'), of
// storage (every object and its sha256) and of the workflows on the task queue, taken before and
// after, must be equal. A row that reaches a workflow leaves the run and its record (a failed
// restore) and no more: it names the parts of the picture it may add to.
import { strict as assert } from 'node:assert';
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { TenantsafeClient } from '../client/client';
import { startDashboardServer, type DashboardServer } from '../client/server';
import { parseConfig } from '../lib/config';
import { Engine } from '../lib/engine';
import { sealManifest, writeManifest } from '../lib/format/sealed';
import { readManifest, tenantBackupPrefix, type TenantManifest } from '../lib/format/tenantManifest';
import { backupLabel } from '../lib/labels';
import { quoteIdent } from '../lib/pg';
import { batchBackupIds, takeTenantBatch } from '../lib/tenantBackup/batch';
import { damageTenant } from '../sample/damage';
import { tenantRestoreStatusQuery, workflowIds, type TenantRestoreStatus } from '../workflows/messages';
import { backUpNow } from './support/backups';
import { withDb } from './support/db';
import { createTestEnv, runCli, type TestEnv } from './support/env';

/** What a bad input got back. */
interface Answer {
  /** CLI exit code */
  code?: number;
  /** HTTP status */
  status?: number;
  /** the error's type (TenantsafeError / ApplicationFailure type, a Temporal client error's name, `refused` for a signal that did not count) */
  type?: string;
  message: string;
}

/** The parts of the picture a row may add to: a run it started and failed, and its record. */
type Part = 'workflows' | `catalog.${string}`;

interface Row {
  /** the bad input, in words */
  input: string;
  /** puts the bad thing in place (damaged storage, say), before the first picture */
  arrange?: () => Promise<void>;
  act: () => Promise<Answer>;
  expect: { code?: number; status?: number; type?: string; message: RegExp };
  mayChange?: Part[];
  /** takes the bad thing away again, after the second picture */
  undo?: () => Promise<void>;
}

/** A failed tenant restore leaves its run, its record and the failure alert it raised (or counted). */
const failedRestore: Part[] = ['workflows', 'catalog.restores', 'catalog.alerts', 'catalog.alert_events', 'catalog.alert_deliveries'];

const globex = 'globex'; // a restore of it waits for approval all along (signals, HTTP)
const tenant = 'initech'; // restores that must fail, one after the other
const small = 'wonka'; // a small tenant: damaged backups of it

describe('bad input: a clear answer, and nothing changed', function () {
  this.timeout(120_000);
  let env: TestEnv;
  let client: TenantsafeClient;
  let dashboard: DashboardServer;
  let dashboardEngine: Engine;
  let downConfig: string;
  const token = 'bad-input-relay-token-0123456789';
  const backups: Record<string, string> = {};
  /** the restore of globex waiting for approval, and an earlier one (another run) that was rejected */
  let pending: { restoreId: string; digest: string; runId: string };
  let earlier: { restoreId: string; digest: string; runId: string };
  let batched: string;

  before(async function () {
    this.timeout(300_000);
    env = await createTestEnv('local');
    await env.startWorker();
    for (const t of ['acme', tenant, small]) backups[t] = await backUpNow(env.engine, t);
    backups[globex] = await backUpNow(env.engine, globex);
    const batchId = backupLabel(new Date(), 'tenant', randomBytes(3).toString('hex'));
    await takeTenantBatch(env.engine, { batchId, attempt: 1, skip: [] });
    batched = batchBackupIds(batchId, env.db.tenants.map((t) => t.tenantId)).get('tyrell')!;

    client = await TenantsafeClient.connect(env.config.temporal);
    await withDb(env.db.url, (c) => damageTenant(c, globex));
    const request = async () => {
      const r = await client.restores.request({ tenantId: globex, backupId: backups[globex], requestedBy: 'alice' });
      assert.equal(r.state, 'awaiting-approval', r.error);
      const runId = (await env.engine.catalog.getRestore(r.restoreId)).runId;
      return { restoreId: r.restoreId, digest: r.previewDigest!, runId };
    };
    earlier = await request();
    await client.restores.reject({ workflowId: workflowIds.tenantRestore(globex), runId: earlier.runId }, { by: 'bob', reason: 'the wrong backup' });
    await env.temporal.workflow.getHandle(workflowIds.tenantRestore(globex), earlier.runId).result();
    pending = await request();
    assert.notEqual(pending.digest, earlier.digest);

    const cfg = parseConfig({ ...env.document, dashboard: { port: 0, token } }, { env: {}, source: 'test', baseDir: env.dir });
    dashboardEngine = new Engine(cfg);
    dashboard = await startDashboardServer(cfg, dashboardEngine, client, { log: () => undefined });

    // Temporal and the database where nothing answers: bad arguments must be refused before either is asked
    const closed = await closedPort();
    downConfig = env.writeConfig('down.yaml', (d) => {
      d.temporal.address = `127.0.0.1:${closed}`;
      d.database.url = `postgres://postgres@127.0.0.1:${closed}/nowhere`;
    });
  });

  after(async () => {
    await dashboard?.close();
    await dashboardEngine?.close();
    await client?.close();
    await env?.close();
  });

  // --- how each kind of input is made, and its answer read --------------------------------------

  /** The CLI with --json: the exit code, and the error it printed as JSON on stderr. */
  const cli = async (args: string[], configFile = env.configFile): Promise<Answer> => {
    const r = await runCli([...args, '--json'], { configFile });
    if (r.code === 0) return { code: 0, message: r.stdout };
    let error: { error?: string; type?: string } = {};
    try {
      error = JSON.parse(r.stderr.trim().split('\n').at(-1)!);
    } catch {
      error = { error: r.stderr };
    }
    return { code: r.code, type: error.type, message: error.error ?? r.stderr };
  };
  const down = (...args: string[]) => cli(args, downConfig);
  /** A config file with one thing wrong, given to a command that would write (a tenant backup). */
  const withConfig = async (name: string, text: (yaml: string) => string, args = ['backup', 'tenant', globex, '--wait']) => {
    const file = path.join(env.dir, name);
    fs.writeFileSync(file, text(fs.readFileSync(env.configFile, 'utf8')));
    return cli(args, file);
  };

  const restoreHandle = (runId: string) => env.temporal.workflow.getHandle(workflowIds.tenantRestore(globex), runId);
  /** A signal as another service sends it (a plain Temporal client, no tenantsafe code); the answer is the refusal the restore recorded. */
  const signal = async (name: 'approve' | 'reject', payload: unknown, runId = pending.runId): Promise<Answer> => {
    const handle = restoreHandle(runId);
    let before: TenantRestoreStatus;
    try {
      before = await handle.query(tenantRestoreStatusQuery);
      await handle.signal(name, payload);
    } catch (err) {
      return { type: (err as Error).name, message: (err as Error).message };
    }
    for (let i = 0; i < 100; i++) {
      const s = await handle.query(tenantRestoreStatusQuery);
      if (s.refused.length > before.refused.length) return { type: 'refused', message: s.refused.at(-1)!.reason };
      if (s.state !== before.state || s.approvals.length > before.approvals.length) return { type: 'accepted', message: `${s.state}; approvals ${JSON.stringify(s.approvals)}` };
      await new Promise((r) => setTimeout(r, 100));
    }
    return { type: 'ignored', message: 'the signal left no trace in the status' };
  };

  const http = async (pathname: string, init: RequestInit & { json?: unknown } = {}): Promise<Answer> => {
    const { json, ...rest } = init;
    const res = await fetch(`${dashboard.url}${pathname}`, {
      method: 'POST',
      ...rest,
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', ...(rest.headers as Record<string, string>) },
      ...(json !== undefined ? { body: JSON.stringify(json) } : {}),
    });
    const text = await res.text();
    let body: { error?: string; type?: string } = {};
    try {
      body = JSON.parse(text);
    } catch {
      body = { error: text };
    }
    return { status: res.status, type: body.type, message: body.error ?? text };
  };

  // --- storage: a backup's files damaged, or manifests that lie ---------------------------------

  const root = () => (env.config.storage.primary as { path: string }).path;
  /** The largest data object of a backup, as a file. */
  const largestObject = async (tenantId: string, backupId: string) => {
    const m = await readManifest(env.engine.store, tenantBackupPrefix(tenantId, backupId));
    const t = [...m.tables].sort((a, b) => b.object.bytes - a.object.bytes)[0];
    return path.join(root(), tenantBackupPrefix(tenantId, backupId), t.object.key);
  };
  /** Changes a file for one row and puts it back after it. */
  const damaged = (file: () => Promise<string>, damage: (bytes: Buffer) => Buffer | null) => {
    let saved: { file: string; bytes: Buffer } | undefined;
    return {
      arrange: async () => {
        const f = await file();
        saved = { file: f, bytes: fs.readFileSync(f) };
        const after = damage(Buffer.from(saved.bytes));
        if (after === null) fs.rmSync(f);
        else fs.writeFileSync(f, after);
      },
      undo: async () => fs.writeFileSync(saved!.file, saved!.bytes),
    };
  };
  /** A backup that is not what it claims, written (manifest sealed, so only its place or content gives it away) and indexed. */
  const planted = (make: (m: TenantManifest, backupId: string) => { tenantId: string; manifest: Omit<TenantManifest, 'manifestChecksum'>; index: boolean }) => {
    let placed: { prefix: string; backupId: string } | undefined;
    return {
      arrange: async () => {
        const backupId = backupLabel(new Date(), 'tenant', randomBytes(3).toString('hex'));
        const { manifestChecksum: _, ...source } = await readManifest(env.engine.store, tenantBackupPrefix(small, backups[small]));
        const { tenantId, manifest, index } = make(source as TenantManifest, backupId);
        const prefix = tenantBackupPrefix(tenantId, backupId);
        const sealed = sealManifest(manifest);
        const sha256 = await writeManifest(env.engine.store, prefix, sealed);
        if (index) await env.engine.catalog.recordBackup(sealed as TenantManifest, env.engine.store.uri, prefix, sha256);
        placed = { prefix, backupId };
      },
      undo: async () => {
        await env.engine.store.deletePrefix(placed!.prefix);
        await env.engine.catalog.forgetBackup(placed!.backupId);
      },
      backupId: () => placed!.backupId,
    };
  };
  const restoreOf = (tenantId: string, backupId: string) => cli(['restore', 'tenant', tenantId, '--backup', backupId, '--by', 'alice']);

  const truncated = damaged(() => largestObject(small, backups[small]), (b) => b.subarray(0, Math.floor(b.length / 2)));
  const flipped = damaged(() => largestObject(small, backups[small]), (b) => {
    b[Math.floor(b.length / 2)] ^= 0x01;
    return b;
  });
  const missing = damaged(() => largestObject(small, backups[small]), () => null);
  const future = planted((m, backupId) => ({ tenantId: small, manifest: { ...m, backupId, formatVersion: 99 }, index: true }));
  const elsewhere = planted((m, backupId) => ({ tenantId: 'acme', manifest: { ...m, backupId }, index: false }));
  let acmeManifest: TenantManifest;
  const foreignKey = planted((m, backupId) => ({
    tenantId: small,
    // wonka's backup, but its tables' data are acme's objects, read as parts of a "pack" at offset 0
    manifest: {
      ...m,
      backupId,
      tables: m.tables.map((t) => {
        const a = acmeManifest.tables.find((x) => x.table === t.table)!;
        return { ...t, rows: a.rows, rawBytes: a.rawBytes, rowChecksum: a.rowChecksum, object: { key: tenantBackupPrefix('acme', backups.acme) + a.object.key, bytes: a.object.bytes, sha256: a.object.sha256, packOffset: 0 } };
      }),
    },
    index: true,
  }));
  const climbing = planted((m, backupId) => ({
    tenantId: small,
    manifest: { ...m, backupId, tables: m.tables.map((t) => ({ ...t, object: { ...t.object, key: `../../acme/${backups.acme}/${t.object.key}` } })) },
    index: true,
  }));
  let sharedSaved: { file: string; bytes: Buffer } | undefined;

  const digest = () => pending.digest;
  const rows: Row[] = [
    // --- CLI arguments, with Temporal and the database unreachable: refused before either is asked
    { input: 'restore tenant --at notatime (Temporal down)', act: () => down('restore', 'tenant', globex, '--at', 'notatime', '--by', 'alice'), expect: { code: 2, type: 'BadInput', message: /"notatime" is not an ISO-8601 time with a time zone\. HINT: / } },
    { input: 'restore tenant --at a time in the future (Temporal down)', act: () => down('restore', 'tenant', globex, '--at', '2999-01-01T00:00:00Z', '--by', 'alice'), expect: { code: 2, type: 'BadInput', message: /is in the future\. HINT: / } },
    { input: 'restore tenant --backup and --at together (Temporal down)', act: () => down('restore', 'tenant', globex, '--backup', '20260101-000000T-000001', '--at', '2026-01-01T00:00:00Z', '--by', 'alice'), expect: { code: 2, type: 'BadInput', message: /Give one source, not backupId and at\. HINT: / } },
    { input: 'restore tenant --mode sideways (Temporal down)', act: () => down('restore', 'tenant', globex, '--backup', '20260101-000000T-000001', '--mode', 'sideways', '--by', 'alice'), expect: { code: 2, type: 'BadInput', message: /Unknown mode "sideways"\. HINT: / } },
    { input: 'restore tenant --lsn that is no LSN (Temporal down)', act: () => down('restore', 'tenant', globex, '--lsn', '0/XYZ', '--by', 'alice'), expect: { code: 2, type: 'BadInput', message: /"0\/XYZ" is not an LSN\. HINT: / } },
    { input: 'pitr restore --at yesterday (Temporal down)', act: () => down('pitr', 'restore', '--at', 'yesterday', '--target', path.join(env.dir, 'pitr')), expect: { code: 2, type: 'BadInput', message: /"yesterday" is not an ISO-8601 time with a time zone\. HINT: / } },
    { input: 'pitr restore --port 99999 (Temporal down)', act: () => down('pitr', 'restore', '--latest', '--target', path.join(env.dir, 'pitr'), '--port', '99999'), expect: { code: 2, type: 'BadInput', message: /--port must be a port from 1 to 65535 \(got "99999"\)\. HINT: / } },
    { input: 'schedule full-backups --time 25:00 (Temporal down)', act: () => down('schedule', 'full-backups', '--time', '25:00'), expect: { code: 2, type: 'BadInput', message: /--time must be a time of day HH:MM in UTC \(got "25:00"\)\. HINT: / } },
    { input: 'schedule tenant-backups --every 0s (Temporal down)', act: () => down('schedule', 'tenant-backups', '--every', '0s'), expect: { code: 2, type: 'BadInput', message: /--every must be at least 1s \(got "0s"\)\. HINT: / } },
    { input: 'backups pin without --reason (Temporal down)', act: () => down('backups', 'pin', backups.acme), expect: { code: 2, type: 'BadInput', message: /required option '--reason <text>' not specified\nHINT: `tenantsafe backups pin --help`/ } },
    { input: 'backups pin of an id that is no backup id (Temporal down)', act: () => down('backups', 'pin', 'last-friday', '--reason', 'LEGAL-1'), expect: { code: 2, type: 'BackupNotFound', message: /There is no backup "last-friday": backup ids look like .* HINT: / } },
    { input: 'restore approve --digest that is no digest (Temporal down)', act: () => down('restore', 'approve', pending.restoreId, '--by', 'bob', '--digest', 'looks-fine'), expect: { code: 2, type: 'BadInput', message: /--digest must be the preview's digest, 64 hex digits \(got "looks-fine"\)\. HINT: / } },
    { input: 'restore reject --by "" (Temporal down)', act: () => down('restore', 'reject', pending.restoreId, '--by', ''), expect: { code: 2, type: 'BadInput', message: /--by is empty\. HINT: / } },
    { input: 'restore status of an id that is no restore id (Temporal down)', act: () => down('restore', 'status', 'R-1'), expect: { code: 2, type: 'RestoreNotFound', message: /There is no restore "R-1": restore ids look like .* HINT: / } },
    { input: 'restore list --state bogus (Temporal down)', act: () => down('restore', 'list', '--state', 'bogus'), expect: { code: 2, type: 'BadInput', message: /--state must be one of previewing, .* \(got "bogus"\)\. HINT: / } },
    { input: 'verify of an id that is no backup id (Temporal down)', act: () => down('verify', 'notabackup'), expect: { code: 2, type: 'BackupNotFound', message: /There is no backup "notabackup".* HINT: / } },
    { input: 'backup tenant "" (Temporal down)', act: () => down('backup', 'tenant', ''), expect: { code: 2, type: 'BadInput', message: /The tenant id is empty\. HINT: / } },
    { input: 'drill list --limit abc (Temporal down)', act: () => down('drill', 'list', '--limit', 'abc'), expect: { code: 2, type: 'BadInput', message: /--limit must be a positive integer \(got "abc"\)\. HINT: / } },
    { input: 'an option no command has (Temporal down)', act: () => down('backup', 'tenant', globex, '--everything'), expect: { code: 2, type: 'BadInput', message: /unknown option '--everything'\nHINT: / } },

    // --- CLI arguments a server has to judge
    { input: 'restore tenant from another tenant\'s backup', act: () => restoreOf(tenant, backups.acme), expect: { code: 2, type: 'BadInput', message: /Backup \S+ is of tenant "acme", not "initech"\. HINT: List the tenant's backups/ }, mayChange: failedRestore },
    { input: 'restore tenant from a backup that does not exist', act: () => restoreOf(tenant, '20200101-000000T-000000'), expect: { code: 2, type: 'BackupNotFound', message: /Backup "20200101-000000T-000000" is not in the catalog\. HINT: / }, mayChange: failedRestore },
    { input: 'restore tenant --tables naming a table the backup does not hold', act: () => cli(['restore', 'tenant', tenant, '--backup', backups[tenant], '--tables', 'app.nope', '--by', 'alice']), expect: { code: 2, type: 'BadInput', message: /Table\(s\) app\.nope are not in backup .* HINT: Tables in it: / }, mayChange: failedRestore },
    { input: 'restore tenant while one of that tenant waits for approval', act: () => restoreOf(globex, backups[globex]), expect: { code: 2, type: 'AlreadyRunning', message: /A restore of tenant "globex" is already running \(restore \S+, awaiting-approval\).* HINT: / } },
    { input: 'backup tenant of a tenant that does not exist', act: () => cli(['backup', 'tenant', 'no-such-tenant', '--wait']), expect: { code: 2, type: 'TenantNotFound', message: /Tenant "no-such-tenant" does not exist .* HINT: / }, mayChange: ['workflows', 'catalog.runs', 'catalog.alerts', 'catalog.alert_events', 'catalog.alert_deliveries'] },
    { input: 'backups pin of a backup that does not exist', act: () => cli(['backups', 'pin', '20200101-000000T-000000', '--reason', 'LEGAL-1']), expect: { code: 2, type: 'BackupNotFound', message: /There is no backup "20200101-000000T-000000"\. HINT: / } },
    { input: 'restore approve by the requester', act: () => cli(['restore', 'approve', pending.restoreId, '--by', 'alice', '--digest', digest()]), expect: { code: 2, type: 'ApprovalInvalid', message: /alice requested restore \S+ and cannot approve it \(four-eyes\)\. HINT: / } },
    { input: 'restore approve of a restore that was rejected', act: () => cli(['restore', 'approve', earlier.restoreId, '--by', 'bob', '--digest', earlier.digest]), expect: { code: 2, type: 'ApprovalInvalid', message: /Restore \S+ is rejected, not awaiting approval\. HINT: / } },
    { input: 'restore reject of a restore that was rejected already', act: () => cli(['restore', 'reject', earlier.restoreId, '--by', 'carol']), expect: { code: 2, type: 'ApprovalInvalid', message: /Restore \S+ is rejected: too late to reject it\. HINT: / } },
    { input: 'restore approve of a restore that does not exist', act: () => cli(['restore', 'approve', '20200101-000000R-000000', '--by', 'bob', '--digest', 'a'.repeat(64)]), expect: { code: 2, type: 'RestoreNotFound', message: /Restore "20200101-000000R-000000" is not in the catalog\. HINT: / } },

    // --- config files
    { input: 'config: a misspelt key', act: () => withConfig('misspelt.yaml', (y) => y.replace(/^database:/m, 'databse:')), expect: { code: 2, type: 'BadConfig', message: /databse: unknown key.*HINT: /s } },
    { input: 'config: a number that is words', act: () => withConfig('words.yaml', (y) => y.replace(/parallelism: 2/, 'parallelism: many')), expect: { code: 2, type: 'BadConfig', message: /backup\.parallelism: must be an integer from 1 to 64 \(got "many"\).*HINT: /s } },
    { input: 'config: an environment variable that is not set', act: () => withConfig('unset.yaml', (y) => y.replace(/url: postgres:\/\/\S+/, 'url: postgres://app:${TENANTSAFE_TEST_NEVER_SET}@db/x')), expect: { code: 2, type: 'BadConfig', message: /database\.url: environment variable TENANTSAFE_TEST_NEVER_SET is not set.*HINT: /s } },
    { input: 'config: YAML that does not parse', act: () => withConfig('broken.yaml', (y) => `${y}\nstorage: [unclosed\n`), expect: { code: 2, type: 'BadConfig', message: /broken\.yaml is not valid YAML: .*HINT: Fix the YAML syntax at the line shown/s } },
    { input: 'config: a storage kind tenantsafe does not have', act: () => withConfig('ftp.yaml', (y) => y.replace(/kind: local/, 'kind: ftp')), expect: { code: 2, type: 'BadConfig', message: /storage\.primary\.kind: must be one of local, gcs \(got "ftp"\).*HINT: /s } },
    { input: 'config: a tenancy name longer than PostgreSQL keeps', act: () => withConfig('long.yaml', (y) => `${y}tenancy:\n  tenantTable: ${'t'.repeat(64)}\n`), expect: { code: 2, type: 'BadConfig', message: /tenancy\.tenantTable: must be a name of 1 to 63 bytes.*HINT: /s } },
    { input: 'config: a replication slot name PostgreSQL would refuse (a quote in it)', act: () => withConfig('slot.yaml', (y) => `${y}changeLog:\n  slot: "it's_mine"\n`), expect: { code: 2, type: 'BadConfig', message: /changeLog\.slot: must be lowercase letters, digits and _ \(a replication slot name\).*HINT: /s } },
    { input: 'config: --config naming a file that is not there', act: () => cli(['backup', 'tenant', globex, '--wait'], path.join(env.dir, 'nowhere.yaml')), expect: { code: 2, type: 'BadConfig', message: /Cannot read config file \S+nowhere\.yaml: ENOENT.* HINT: Pass --config <path>/s } },

    // --- signals from services (a plain Temporal client)
    { input: 'signal approve with a digest that is no preview\'s', act: () => signal('approve', { by: 'service-bot', digest: 'f'.repeat(64) }), expect: { type: 'refused', message: /^Digest f+ is not the current preview's of restore / } },
    { input: 'signal approve with the digest of another run (the rejected restore before it)', act: () => signal('approve', { by: 'service-bot', digest: earlier.digest }), expect: { type: 'refused', message: /^Digest [0-9a-f]{64} is not the current preview's of restore / } },
    { input: 'signal approve without fields', act: () => signal('approve', {}), expect: { type: 'refused', message: /^The approval names no one \(by\)$/ } },
    { input: 'signal approve with a number for a digest', act: () => signal('approve', { by: 'service-bot', digest: 42 }), expect: { type: 'refused', message: /^Digest 42 is not the current preview's/ } },
    { input: 'signal approve by the requester', act: () => signal('approve', { by: 'alice', digest: digest() }), expect: { type: 'refused', message: /^alice requested restore \S+ and cannot approve it \(four-eyes\)$/ } },
    { input: 'signal reject without a "by"', act: () => signal('reject', { reason: 'no one said so' }), expect: { type: 'refused', message: /^The rejection names no one \(by\)$/ } },
    { input: 'signal approve to another run (the rejected restore, by its run id)', act: () => signal('approve', { by: 'service-bot', digest: earlier.digest }, earlier.runId), expect: { type: 'WorkflowNotFoundError', message: /workflow execution already completed/ } },

    // --- the dashboard's HTTP API
    { input: 'HTTP: a body that is not JSON', act: () => http(`/api/restores/${pending.restoreId}/approve`, { body: '{"by": "bob", digest' }), expect: { status: 400, type: 'BadInput', message: /The request body is not a JSON object\. HINT: / } },
    { input: 'HTTP: a JSON array for a body', act: () => http(`/api/restores/${pending.restoreId}/approve`, { json: ['bob', digest()] }), expect: { status: 400, type: 'BadInput', message: /not a JSON object/ } },
    { input: 'HTTP: the body as a form, not JSON', act: () => http(`/api/restores/${pending.restoreId}/approve`, { headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: `by=bob&digest=${digest()}` }), expect: { status: 415, message: /send the body as application\/json/ } },
    { input: 'HTTP: no digest', act: () => http(`/api/restores/${pending.restoreId}/approve`, { json: { by: 'bob' } }), expect: { status: 400, type: 'BadInput', message: /"digest" is required\. HINT: / } },
    { input: 'HTTP: a stale digest (the rejected run\'s preview)', act: () => http(`/api/restores/${pending.restoreId}/approve`, { json: { by: 'bob', digest: earlier.digest } }), expect: { status: 409, type: 'ApprovalInvalid', message: /Digest [0-9a-f]{64} is not the current preview's/ } },
    { input: 'HTTP: a restore that does not exist', act: () => http('/api/restores/20200101-000000R-000000/approve', { json: { by: 'bob', digest: digest() } }), expect: { status: 404, type: 'RestoreNotFound', message: /not in the catalog/ } },
    { input: 'HTTP: a restore id with a control character', act: () => http(`/api/restores/${encodeURIComponent(`${pending.restoreId}\n`)}`, { method: 'GET' }), expect: { status: 400, message: /That is not a restore id/ } },
    { input: 'HTTP: no token', act: () => http(`/api/restores/${pending.restoreId}/approve`, { headers: { authorization: '' }, json: { by: 'bob', digest: digest() } }), expect: { status: 401, message: /missing or wrong bearer token/ } },
    { input: 'HTTP: a rejection of a restore that was rejected already', act: () => http(`/api/restores/${earlier.restoreId}/reject`, { json: { by: 'carol' } }), expect: { status: 409, type: 'ApprovalInvalid', message: /is rejected: too late to reject it/ } },
    { input: 'HTTP: a body over 64 KiB', act: () => http(`/api/restores/${pending.restoreId}/approve`, { json: { by: 'bob', digest: digest(), note: 'x'.repeat(70_000) } }), expect: { status: 413, message: /over 64 KiB/ } },

    // --- storage contents
    { input: 'storage: a data object cut in half', ...truncated, act: () => restoreOf(small, backups[small]), expect: { code: 1, type: 'CorruptBackup', message: /Backup object \S+ \(app\.\w+\) is damaged: .* HINT: Restore from another backup/ }, mayChange: failedRestore },
    { input: 'storage: a data object with one bit flipped', ...flipped, act: () => restoreOf(small, backups[small]), expect: { code: 1, type: 'CorruptBackup', message: /Backup object \S+ \(app\.\w+\) is damaged: .* HINT: Restore from another backup/ }, mayChange: failedRestore },
    { input: 'storage: a data object gone', ...missing, act: () => restoreOf(small, backups[small]), expect: { code: 1, type: 'ObjectMissing', message: /There is no object tenants\/wonka\/\S+ in file:\/\/.* HINT: / }, mayChange: failedRestore },
    { input: 'storage: a manifest of a format version from the future', ...future, act: () => restoreOf(small, future.backupId()), expect: { code: 2, type: 'UnsupportedFormat', message: /format version 99; this tenantsafe reads versions 1 to 6\. HINT: Use the tenantsafe release that wrote this backup/ }, mayChange: failedRestore },
    { input: 'storage: a manifest naming another tenant than its place (catalog rebuild)', ...elsewhere, act: async () => {
      const r = await cli(['catalog', 'rebuild']);
      const invalid = r.code === 0 ? (JSON.parse(r.message) as { invalid: { key: string; error: string }[] }).invalid : [];
      return { code: r.code, type: invalid.length ? 'invalid' : 'indexed', message: invalid.map((i) => `${i.key}: ${i.error}`).join('\n') };
    }, expect: { code: 0, type: 'invalid', message: /^tenants\/acme\/\S+\/manifest\.json: Manifest \S+ describes backup "\S+" of tenant "wonka", whose place is tenants\/wonka\/.*HINT: / } },
    { input: 'storage: a manifest naming another tenant\'s objects as its data', ...foreignKey, arrange: async () => {
      acmeManifest = await readManifest(env.engine.store, tenantBackupPrefix('acme', backups.acme));
      await foreignKey.arrange();
    }, act: () => restoreOf(small, foreignKey.backupId()), expect: { code: 1, type: 'CorruptBackup', message: /names "tenants\/acme\/\S+" as the data of app\.\w+: neither an object of its own backup nor a part of a pack\. HINT: / }, mayChange: failedRestore },
    { input: 'storage: a manifest whose object key climbs into another tenant\'s prefix (../)', ...climbing, act: () => restoreOf(small, climbing.backupId()), expect: { code: 1, type: 'CorruptBackup', message: /names "\.\.\/\.\.\/acme\/\S+" as the data of .* HINT: / }, mayChange: failedRestore },
    { input: 'storage: a batched (format 3) manifest whose shared description is missing', arrange: async () => {
      const m = await readManifest(env.engine.store, tenantBackupPrefix('tyrell', batched));
      const file = path.join(root(), m.batch!.key);
      sharedSaved = { file, bytes: fs.readFileSync(file) };
      fs.rmSync(file);
    }, undo: async () => fs.writeFileSync(sharedSaved!.file, sharedSaved!.bytes), act: () => restoreOf('tyrell', batched), expect: { code: 1, type: 'CorruptBackup', message: /names its batch's description packs\/\S+\/shared\.json, which is missing\. HINT: / }, mayChange: failedRestore },
  ];

  it('has at least 30 rows, of every kind of input', () => {
    assert.ok(rows.length >= 30, `${rows.length} rows`);
    for (const kind of ['(Temporal down)', 'config:', 'signal ', 'HTTP:', 'storage:']) assert.ok(rows.some((r) => r.input.includes(kind)), kind);
  });

  for (const row of rows) {
    it(row.input, async () => {
      await row.arrange?.();
      try {
        const before = await picture();
        const answer = await row.act();
        const said = JSON.stringify(answer, null, 1);
        if (row.expect.code !== undefined) assert.equal(answer.code, row.expect.code, said);
        if (row.expect.status !== undefined) assert.equal(answer.status, row.expect.status, said);
        if (row.expect.type !== undefined) assert.equal(answer.type, row.expect.type, said);
        assert.match(answer.message, row.expect.message, said);
        if (answer.code !== undefined && answer.code !== 0) assert.match(answer.message, /HINT: /, 'the CLI says what to do');
        const after = await picture();
        const allowed = new Set<string>(row.mayChange ?? []);
        const changed = Object.keys({ ...before, ...after }).filter((part) => part !== 'catalog.audit_log' && JSON.stringify(before[part]) !== JSON.stringify(after[part]));
        assert.deepEqual(after['catalog.audit_log'].slice(0, before['catalog.audit_log'].length), before['catalog.audit_log'], 'the audit log only grew');
        assert.deepEqual(changed.filter((part) => !allowed.has(part)), [], 'nothing changed');
        if (allowed.has('workflows')) {
          // what it may add is one failed (or rejected) run of its own, never another change to one that was there
          const added = Object.keys(after.workflows).filter((id) => !(id in before.workflows));
          assert.ok(added.length <= 1, JSON.stringify(added));
          for (const id of Object.keys(before.workflows)) assert.equal(after.workflows[id], before.workflows[id], id);
          for (const id of added) assert.match(after.workflows[id], /FAILED/, id);
        }
      } finally {
        await row.undo?.();
      }
    });
  }

  it('left the restore waiting for approval as it was: no approval counted, and it is approved once a person approves', async () => {
    const status = await restoreHandle(pending.runId).query(tenantRestoreStatusQuery);
    assert.equal(status.state, 'awaiting-approval');
    assert.deepEqual(status.approvals, []);
    assert.equal(status.preview!.digest, pending.digest);
    const ok = await cli(['restore', 'approve', pending.restoreId, '--by', 'bob', '--digest', pending.digest, '--wait']);
    assert.equal(ok.code, 0, ok.message);
    assert.equal(JSON.parse(ok.message).state, 'done');
  });

  /**
   * What a bad input must not change: every table of the database (the tenants' rows and the
   * catalog, by a hash of their rows) and its schemas, every object in storage (by sha256), and the
   * workflows on the task queue (by run and status).
   */
  async function picture(): Promise<Record<string, any>> {
    const parts: Record<string, any> = {};
    await withDb(env.db.url, async (c) => {
      const tables = await c.query<{ schema: string; name: string }>(
        `SELECT n.nspname AS schema, c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%' ORDER BY 1, 2`,
      );
      parts.schemas = (await c.query(`SELECT nspname FROM pg_namespace WHERE nspname NOT LIKE 'pg_%' ORDER BY 1`)).rows.map((r) => r.nspname);
      for (const t of tables.rows) {
        const name = `${quoteIdent(t.schema)}.${quoteIdent(t.name)}`;
        const r = await c.query<{ n: number; h: string }>(`SELECT count(*)::int AS n, md5(coalesce(string_agg(x::text, E'\\n' ORDER BY x::text), '')) AS h FROM ${name} x`);
        parts[t.schema === env.config.catalog.schema ? `catalog.${t.name}` : `${t.schema}.${t.name}`] = `${r.rows[0].n}:${r.rows[0].h}`;
      }
      // the audit log records an attempt, refused or failed (its growth is checked apart): its entries as they were
      parts['catalog.audit_log'] = (await c.query<{ hash: string }>(`SELECT hash FROM ${quoteIdent(env.config.catalog.schema)}.audit_log ORDER BY seq`)).rows.map((r) => r.hash);
    });
    const objects: Record<string, string> = {};
    for await (const o of env.engine.store.list('')) {
      // audit/head.json: the audit log's newest entry, anchored (it moves with the log)
      if (!o.key.startsWith('audit/')) objects[o.key] = createHash('sha256').update(await env.engine.store.getBytes(o.key)).digest('hex');
    }
    parts.storage = objects;
    const runs: Record<string, string> = {};
    for await (const w of env.temporal.workflow.list({ query: `TaskQueue = "${env.config.temporal.taskQueue}"` })) runs[`${w.workflowId}/${w.runId}`] = w.status.name;
    parts.workflows = runs;
    return parts;
  }
});

/** A port nothing listens on. */
async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

