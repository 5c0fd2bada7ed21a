import { strict as assert } from 'node:assert';
import type { Config } from '../lib/config';
import { ErrorType, TenantsafeError } from '../lib/errors';
import { assertTenantExists, discoverTenancy, listTenants, planTenancy, tenantRowsQuery, type TableInfo, type TenancyPlan } from '../lib/tenancy';
import { freshDatabase, withDb, type TestDatabase } from './support/db';
import { createTestEnv, dbPassword, runCli, type TestEnv } from './support/env';

const appTenancy: Config['tenancy'] = { schemas: ['app'], tenantTable: 'tenants', tenantColumn: 'tenant_id', globalTables: [], ownership: {} };

function table(key: string, columns: [string, boolean][], pk: string[] | null, fks: { name: string; columns: string[]; ref: string; refColumns: string[] }[] = []): TableInfo {
  const [schema, name] = key.split('.');
  const cols = columns.map(([n, notNull]) => ({ name: n, type: 'text', typeKind: 'b', notNull, hasDefault: false, generated: false, identity: '' as const, sequence: null }));
  return {
    key, schema, name, partitioned: false, partitions: [], columns: cols, primaryKey: pk, uniqueKeys: [], estimatedRows: 0,
    foreignKeys: fks.map((f) => ({ name: f.name, columns: f.columns, refTable: f.ref, refColumns: f.refColumns, deferrable: false, nullable: f.columns.some((c) => !cols.find((x) => x.name === c)!.notNull) })),
  };
}

const tables = (...ts: TableInfo[]) => new Map(ts.map((t) => [t.key, t]));
const ownershipOf = (plan: TenancyPlan, key: string) => plan.tables.find((t) => t.key === key)?.ownership;

describe('tenancy planning (pure)', () => {
  const tenants = table('s.tenants', [['tenant_id', true]], ['tenant_id']);

  it('follows foreign keys through any depth and orders parents before children', () => {
    const plan = planTenancy(
      tables(
        tenants,
        table('s.a', [['id', true], ['tenant_id', true]], ['id'], [{ name: 'a_t', columns: ['tenant_id'], ref: 's.tenants', refColumns: ['tenant_id'] }]),
        table('s.d', [['c1', true], ['c2', true]], null, [{ name: 'd_c', columns: ['c1', 'c2'], ref: 's.c', refColumns: ['x', 'y'] }]),
        table('s.c', [['x', true], ['y', true], ['b_id', true]], ['x', 'y'], [{ name: 'c_b', columns: ['b_id'], ref: 's.b', refColumns: ['id'] }]),
        table('s.b', [['id', true], ['a_id', true]], ['id'], [{ name: 'b_a', columns: ['a_id'], ref: 's.a', refColumns: ['id'] }]),
      ),
      { ...appTenancy, schemas: ['s'] },
    );
    assert.deepEqual(plan.tables.map((t) => [t.key, t.depth]), [['s.tenants', 0], ['s.a', 0], ['s.b', 1], ['s.c', 2], ['s.d', 3]]);
    assert.deepEqual(ownershipOf(plan, 's.d'), { kind: 'parent', foreignKey: 'd_c', parent: 's.c', columns: ['c1', 'c2'], parentColumns: ['x', 'y'], override: false });
    assert.ok(plan.warnings.some((w) => w.includes('s.d has no primary key')));
  });

  it('uses a foreign-key column that maps onto the tenant column directly, without a join', () => {
    const plan = planTenancy(
      tables(
        tenants,
        table('s.labels', [['tenant_id', true], ['code', true]], ['tenant_id', 'code'], [{ name: 'l_t', columns: ['tenant_id'], ref: 's.tenants', refColumns: ['tenant_id'] }]),
        table('s.link', [['lt', true], ['lc', true]], ['lt', 'lc'], [{ name: 'link_l', columns: ['lt', 'lc'], ref: 's.labels', refColumns: ['tenant_id', 'code'] }]),
        table('s.owned_by_fk', [['org', true]], ['org'], [{ name: 'o_t', columns: ['org'], ref: 's.tenants', refColumns: ['tenant_id'] }]),
      ),
      { ...appTenancy, schemas: ['s'] },
    );
    assert.equal(ownershipOf(plan, 's.link')?.kind, 'column');
    assert.equal((ownershipOf(plan, 's.link') as { column: string }).column, 'lt');
    assert.equal((ownershipOf(plan, 's.owned_by_fk') as { column: string }).column, 'org');
  });

  it('prefers a path of NOT NULL keys over a shorter nullable one, and warns when only nullable paths exist', () => {
    const users = table('s.users', [['id', true], ['tenant_id', true]], ['id'], [{ name: 'u_t', columns: ['tenant_id'], ref: 's.tenants', refColumns: ['tenant_id'] }]);
    const projects = table('s.projects', [['id', true], ['tenant_id', true]], ['id'], []);
    const tasks = table('s.tasks', [['id', true], ['project_id', true]], ['id'], [{ name: 'tk_p', columns: ['project_id'], ref: 's.projects', refColumns: ['id'] }]);
    const comments = table('s.comments', [['id', true], ['task_id', true], ['author_id', false]], ['id'], [
      { name: 'c_author', columns: ['author_id'], ref: 's.users', refColumns: ['id'] },
      { name: 'c_task', columns: ['task_id'], ref: 's.tasks', refColumns: ['id'] },
    ]);
    const notes = table('s.notes', [['id', true], ['author_id', false]], ['id'], [{ name: 'n_author', columns: ['author_id'], ref: 's.users', refColumns: ['id'] }]);
    const plan = planTenancy(tables(tenants, users, projects, tasks, comments, notes), { ...appTenancy, schemas: ['s'] });
    assert.equal((ownershipOf(plan, 's.comments') as { foreignKey: string }).foreignKey, 'c_task');
    assert.deepEqual(plan.tables.find((t) => t.key === 's.comments')!.alternatives, ['c_author → s.users']);
    assert.ok(plan.warnings.some((w) => w.startsWith('s.notes is tied to its tenant through a nullable foreign key (n_author')));
  });

  it('lets configuration pick the foreign key and force tables to be global', () => {
    const users = table('s.users', [['id', true], ['tenant_id', true]], ['id']);
    const groups = table('s.groups', [['id', true], ['tenant_id', true]], ['id']);
    const member = table('s.member', [['user_id', true], ['group_id', true]], ['user_id', 'group_id'], [
      { name: 'm_user', columns: ['user_id'], ref: 's.users', refColumns: ['id'] },
      { name: 'm_group', columns: ['group_id'], ref: 's.groups', refColumns: ['id'] },
    ]);
    const plan = planTenancy(tables(tenants, users, groups, member), {
      ...appTenancy, schemas: ['s'], ownership: { member: 'm_user' }, globalTables: ['s.groups'],
    });
    assert.deepEqual(ownershipOf(plan, 's.member'), { kind: 'parent', foreignKey: 'm_user', parent: 's.users', columns: ['user_id'], parentColumns: ['id'], override: true });
    assert.deepEqual(plan.globalTables.map((g) => [g.key, g.reason, g.referencedBy]), [['s.groups', 'configured', ['s.member']]]);
  });

  it('reports a foreign-key cycle instead of looping, and never derives a table from itself', () => {
    const a = table('s.a', [['id', true], ['tenant_id', true], ['b_id', false]], ['id'], [{ name: 'a_b', columns: ['b_id'], ref: 's.b', refColumns: ['id'] }]);
    const b = table('s.b', [['id', true], ['a_id', true]], ['id'], [{ name: 'b_a', columns: ['a_id'], ref: 's.a', refColumns: ['id'] }]);
    const plan = planTenancy(tables(tenants, a, b), { ...appTenancy, schemas: ['s'] });
    assert.equal(ownershipOf(plan, 's.b')?.kind, 'parent');
    assert.ok(plan.warnings.some((w) => w.includes('cycle among s.a, s.b')));
  });

  it('refuses a configuration that names tables or keys that do not exist, naming them', () => {
    const check = (cfg: Partial<Config['tenancy']>, pattern: RegExp) =>
      assert.throws(() => planTenancy(tables(tenants), { ...appTenancy, schemas: ['s'], ...cfg }), (e: TenantsafeError) => e.type === ErrorType.TenancyUnresolved && pattern.test(e.message));
    check({ tenantTable: 'customers' }, /Tenant table "customers" was not found/);
    check({ globalTables: ['nope'] }, /Table "nope" named in tenancy config does not exist/);
  });
});

describe('tenancy discovery on the sample database', () => {
  let db: TestDatabase;
  let plan: TenancyPlan;
  before(async () => {
    db = await freshDatabase();
    plan = await withDb(db.url, (c) => discoverTenancy(c, appTenancy));
  });
  after(() => db.drop());

  it('finds every tenant-owned shape: direct, child, grandchild, join table, partitioned, quoted', () => {
    const summary = Object.fromEntries(plan.tables.map((t) => [t.key, t.ownership.kind === 'parent' ? `via ${t.ownership.parent}` : t.ownership.kind === 'column' ? `column ${t.ownership.column}` : 'tenant']));
    assert.deepEqual(summary, {
      'app.tenants': 'tenant',
      'app.AuditLog': 'column tenant_id',
      'app.events': 'column tenant_id',
      'app.invoices': 'column tenant_id',
      'app.labels': 'column tenant_id',
      'app.page_views': 'column tenant_id',
      'app.users': 'column tenant_id',
      'app.InvoiceLines': 'via app.invoices',
      'app.projects': 'column tenant_id',
      'app.tasks': 'via app.projects',
      'app.comments': 'via app.tasks',
      'app.task_labels': 'column label_tenant',
    });
    const events = plan.tables.find((t) => t.key === 'app.events')!;
    assert.equal(events.partitioned, true);
    assert.deepEqual(events.partitions, ['app.events_2026_h1', 'app.events_2026_h2', 'app.events_other']);
    assert.ok(!plan.tables.some((t) => t.key.startsWith('app.events_')), 'partitions are read through their parent');
  });

  it('excludes global tables and says who references them', () => {
    assert.deepEqual(
      plan.globalTables.map((g) => [g.key, g.referencedBy]),
      [['app.countries', ['app.tenants']], ['app.feature_flags', []], ['app.plans', ['app.tenants', 'app.invoices']]],
    );
  });

  it('leaves generated columns out of the exported columns and keeps enum and domain types', () => {
    const tasks = plan.tables.find((t) => t.key === 'app.tasks')!;
    assert.ok(tasks.columns.find((c) => c.name === 'title_search')!.generated);
    assert.ok(!tasks.copyColumns.includes('title_search'));
    assert.equal(tasks.columns.find((c) => c.name === 'status')!.typeKind, 'e');
    assert.equal(plan.tables.find((t) => t.key === 'app.users')!.columns.find((c) => c.name === 'email')!.typeKind, 'd');
    assert.match(plan.tables.find((t) => t.key === 'app.users')!.columns.find((c) => c.name === 'user_id')!.sequence ?? '', /users_user_id_seq/);
  });

  it('selects each row of an owned table for exactly one tenant', async () => {
    await withDb(db.url, async (c) => {
      const tenantIds = await listTenants(c, plan);
      for (const t of plan.tables) {
        const total = await c.query(`SELECT count(*)::int AS n FROM ${t.partitioned ? '' : 'ONLY '}"${t.schema}"."${t.name}"`);
        let sum = 0;
        for (const id of tenantIds) {
          sum += (await c.query(`SELECT count(*)::int AS n FROM (${tenantRowsQuery(plan, t, id)}) x`)).rows[0].n;
        }
        assert.equal(sum, total.rows[0].n, `${t.key}: rows over all tenants`);
      }
    });
  });

  it('says clearly when a tenant does not exist, also for ids of the wrong type', async () => {
    await withDb(db.url, async (c) => {
      await assert.rejects(assertTenantExists(c, plan, 'no-such-tenant'), (e: TenantsafeError) => e.type === ErrorType.TenantNotFound && /Tenant "no-such-tenant" does not exist.*HINT/s.test(e.message));
      await assertTenantExists(c, plan, 'acme');
    });
  });

  it('handles mixed-case schemas, integer tenant keys and composite keys at depth three', async () => {
    await withDb(db.url, async (c) => {
      await c.query(`
        CREATE SCHEMA "Mixed Schema";
        CREATE TABLE "Mixed Schema"."Orgs" (id int PRIMARY KEY, name text);
        CREATE TABLE "Mixed Schema".teams (team_id int PRIMARY KEY, "orgId" int NOT NULL REFERENCES "Mixed Schema"."Orgs");
        CREATE TABLE "Mixed Schema".boards (team_id int NOT NULL REFERENCES "Mixed Schema".teams, board_no int, PRIMARY KEY (team_id, board_no));
        CREATE TABLE "Mixed Schema".cards (id int PRIMARY KEY, team_id int NOT NULL, board_no int NOT NULL,
          FOREIGN KEY (team_id, board_no) REFERENCES "Mixed Schema".boards);
        CREATE TABLE "Mixed Schema"."Card Notes" (card_id int NOT NULL REFERENCES "Mixed Schema".cards, note text);
        INSERT INTO "Mixed Schema"."Orgs" VALUES (1, 'one'), (2, 'two');
        INSERT INTO "Mixed Schema".teams VALUES (10, 1), (20, 2);
        INSERT INTO "Mixed Schema".boards VALUES (10, 1), (20, 1);
        INSERT INTO "Mixed Schema".cards VALUES (100, 10, 1), (200, 20, 1);
        INSERT INTO "Mixed Schema"."Card Notes" VALUES (100, 'a'), (100, 'b'), (200, 'c');`);
      const p = await discoverTenancy(c, { schemas: ['Mixed Schema'], tenantTable: 'Orgs', tenantColumn: 'tenant_id', globalTables: [], ownership: {} });
      assert.equal(p.tenantColumn, 'id', 'falls back to the tenant table primary key');
      assert.deepEqual(p.tables.map((t) => [t.key, t.depth]), [
        ['Mixed Schema.Orgs', 0], ['Mixed Schema.teams', 0], ['Mixed Schema.boards', 1], ['Mixed Schema.cards', 2], ['Mixed Schema.Card Notes', 3],
      ]);
      const notes = p.tables.find((t) => t.name === 'Card Notes')!;
      const rows = await c.query(tenantRowsQuery(p, notes, '1'));
      assert.deepEqual(rows.rows.map((r) => r.note).sort(), ['a', 'b']);
      await assert.rejects(assertTenantExists(c, p, 'abc'), (e: TenantsafeError) => e.type === ErrorType.TenantNotFound);
    });
  });
});

describe('tenantsafe tenancy show', function () {
  let env: TestEnv;
  before(async function () {
    this.timeout(120_000);
    env = await createTestEnv('local');
  });
  after(async () => env?.close());

  it('prints every owned table with how it is filtered, the tenant\'s estimated rows, and the global tables', async () => {
    const res = await runCli(['tenancy', 'show', '--tenant', 'acme', '--tenants', '--json'], { configFile: env.configFile });
    assert.equal(res.code, 0, res.stderr);
    const out = res.json();
    assert.equal(out.tenantTable, 'app.tenants');
    assert.equal(out.tables.length, 12);
    const comments = out.tables.find((t: { table: string }) => t.table === 'app.comments');
    assert.match(comments.filter, /^through app\.tasks \(task_id → task_id, foreign key comments_task_id_fkey\)$/);
    assert.ok(out.tables.every((t: { estimatedRows: number }) => t.estimatedRows > 0), 'acme has rows in every table');
    assert.ok(out.tables.find((t: { table: string }) => t.table === 'app.users').estimatedRows < 5000, 'estimates are for acme, not all tenants');
    assert.deepEqual(out.globalTables.map((g: { key: string }) => g.key), ['app.countries', 'app.feature_flags', 'app.plans']);
    assert.deepEqual(out.tenants, env.db.tenants.map((t) => t.tenantId).sort());
    assert.ok(!JSON.stringify(out).includes(dbPassword), 'the database URL is shown without its password');
    assert.deepEqual(out.needReplicaIdentityFull, ['app.page_views'], 'the keyless table the change log needs REPLICA IDENTITY FULL for');

    const human = await runCli(['tenancy', 'show'], { configFile: env.configFile });
    assert.match(human.stdout, /app\.task_labels\s+\d+\s+label_tenant = tenant \(foreign key task_labels_label_tenant_label_code_fkey to app\.labels\.tenant_id\)/);
    assert.match(human.stdout, /Global tables \(not backed up with a tenant\): app\.countries \(referenced by app\.tenants\)/);
    assert.match(human.stdout, /warning: app\.page_views has no primary key/);
    assert.match(human.stdout, /Change log: without a primary key, these need REPLICA IDENTITY FULL .*: app\.page_views$/m);
  });

  it('prints a JSON document of several megabytes whole through a pipe', async () => {
    // Node writes to a pipe asynchronously: an exit right after the write used to cut it at 128 KiB
    await withDb(env.db.url, (c) =>
      c.query(`INSERT INTO app.tenants (tenant_id, name, plan_id, created_at)
               SELECT 'pipe-tenant-' || lpad(g::text, 24, '0'), 'Pipe ' || g, (SELECT min(plan_id) FROM app.plans), now()
                 FROM generate_series(1, 60000) g`),
    );
    const res = await runCli(['tenancy', 'show', '--tenants', '--json'], { configFile: env.configFile });
    assert.equal(res.code, 0, res.stderr);
    assert.ok(res.stdout.length > 2 << 20, `${res.stdout.length} bytes of JSON`);
    const out = res.json();
    assert.equal(out.tenants.length, env.db.tenants.length + 60000);
    assert.ok(out.tenants.includes('pipe-tenant-000000000000000000060000'), 'the last tenant is in the document');
  });
});
