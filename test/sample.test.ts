import { strict as assert } from 'node:assert';
import { connect } from '../lib/pg';
import { generateSample, sampleDigest, sampleTenants, zipfExponent } from '../sample/generate';
import { adminUrl, databaseUrl, withDb } from './support/db';

describe('the sample generator', () => {
  it('sizes tenants 1/rank by default, and with largestShare gives the largest about that share', () => {
    const byDefault = sampleTenants({ tenants: 40, rows: 100_000 });
    assert.equal(byDefault[0].tenantId, 'acme');
    // 1/rank: the second tenant about half the first, the tenth about a tenth
    assert.ok(Math.abs(byDefault[1].users / byDefault[0].users - 1 / 2) < 0.02);
    assert.ok(Math.abs(byDefault[9].users / byDefault[0].users - 1 / 10) < 0.02);

    for (const tenants of [100, 1000]) {
      const skewed = sampleTenants({ tenants, rows: 10_000_000, largestShare: 0.1 });
      const total = skewed.reduce((n, t) => n + t.users, 0);
      assert.ok(Math.abs(skewed[0].users / total - 0.1) < 0.005, `${tenants} tenants: the largest holds ${skewed[0].users / total}`);
      assert.ok(skewed.every((t, i) => i === 0 || t.users <= skewed[i - 1].users), 'sizes fall with rank');
    }
    assert.equal(zipfExponent(10, 0.05), 0, 'a share below 1/n: equal sizes');
  });

  it('names option sets apart, however alike their JSON ends', () => {
    assert.notEqual(sampleDigest({ tenants: 5, rows: 20_000 }), sampleDigest({ tenants: 12, rows: 20_000 }));
    assert.equal(sampleDigest({ tenants: 5, rows: 20_000 }), sampleDigest({ tenants: 5, rows: 20_000 }));
  });

  describe('with payloads', () => {
    const name = `tenantsafe_test_sample_${process.pid}`;
    before(() => withDb(adminUrl, (c) => c.query(`DROP DATABASE IF EXISTS ${name}`).then(() => c.query(`CREATE DATABASE ${name}`))));
    after(() => withDb(adminUrl, (c) => c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)));

    it('refuses a payload size out of range before writing anything', async () => {
      const c = await connect(databaseUrl(name));
      try {
        await assert.rejects(generateSample(c, { tenants: 3, rows: 1000, payloadBytes: 10 }), /payloadBytes 10: 0, or an integer from 64 to 4096/);
        assert.equal((await c.query(`SELECT 1 FROM pg_namespace WHERE nspname = 'app'`)).rowCount, 0);
      } finally {
        await c.end();
      }
    });

    it('puts text of about that size in every comment and in every event payload, different from row to row', async () => {
      const c = await connect(databaseUrl(name));
      try {
        await generateSample(c, { tenants: 3, rows: 2000, payloadBytes: 120 });
        const r = await c.query<{ body: number; note: number; notes: number; events: number; same: boolean }>(
          `SELECT (SELECT min(length(body)) FROM app.comments) AS body,
                  (SELECT min(length(payload->>'note')) FROM app.events WHERE payload IS NOT NULL) AS note,
                  (SELECT count(*) FROM app.events WHERE payload ? 'note')::int AS notes,
                  (SELECT count(*) FROM app.events WHERE payload IS NOT NULL)::int AS events,
                  (SELECT payload->>'note' FROM app.events ORDER BY tenant_id, event_id LIMIT 1 OFFSET 1) = (SELECT payload->>'note' FROM app.events ORDER BY tenant_id, event_id LIMIT 1 OFFSET 2) AS same`,
        );
        assert.ok(r.rows[0].body >= 120, `comment bodies hold the payload: shortest ${r.rows[0].body}`);
        assert.equal(r.rows[0].note, 120);
        assert.equal(r.rows[0].notes, r.rows[0].events);
        assert.equal(r.rows[0].same, false, 'rows get payloads of their own');
      } finally {
        await c.end();
      }
    });
  });
});
