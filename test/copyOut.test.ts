import { strict as assert } from 'node:assert';
import { buffer } from 'node:stream/consumers';
import type { Client } from 'pg';
import { to as copyTo } from 'pg-copy-streams';
import { copyOut } from '../lib/copyOut';
import { connect } from '../lib/pg';
import { adminUrl } from './support/db';

describe('copyOut (COPY … TO STDOUT, rows moved together in place)', () => {
  let c: Client;
  before(async () => {
    c = await connect(adminUrl, 'tenantsafe-test-copy-out');
  });
  after(async () => {
    await c.end();
  });

  /** rows of some bytes to some hundred kB, so messages and their headers straddle the socket's chunks everywhere */
  const mixedRows = `SELECT g, repeat(md5(g::text), CASE WHEN g % 997 = 0 THEN 5000 ELSE g % 7 END) AS body, CASE WHEN g % 3 = 0 THEN NULL ELSE E'tab\\there' END AS note FROM generate_series(1, 60000) g`;

  it('gives the very bytes pg-copy-streams gives, and the row count', async () => {
    const theirs = await buffer(c.query(copyTo(`COPY (${mixedRows}) TO STDOUT`)));
    const stream = c.query(copyOut(`COPY (${mixedRows}) TO STDOUT`));
    const ours = await buffer(stream);
    assert.ok(theirs.length > 10_000_000, `${theirs.length} bytes`);
    assert.ok(ours.equals(theirs), `${ours.length} bytes against ${theirs.length}`);
    assert.equal(stream.rowCount, 60000);
    assert.equal((await c.query('SELECT 1 AS one')).rows[0].one, 1, 'the connection goes on');
  });

  it('passes over notices sent between the rows', async () => {
    await c.query(`CREATE FUNCTION pg_temp.noisy(n int) RETURNS int LANGUAGE plpgsql AS $$ BEGIN IF n % 500 = 0 THEN RAISE NOTICE 'row %', n; END IF; RETURN n; END $$`);
    // the function does send them: 40 in a plain query (inside a COPY both parsers pass over them, pg never sees them)
    const notices: string[] = [];
    const onNotice = (n: { message?: string }) => notices.push(n.message ?? '');
    c.on('notice', onNotice);
    try {
      await c.query('SELECT count(pg_temp.noisy(g)) FROM generate_series(1, 20000) g');
    } finally {
      c.off('notice', onNotice);
    }
    assert.equal(notices.length, 40);
    const sql = `COPY (SELECT pg_temp.noisy(g), md5(g::text) FROM generate_series(1, 20000) g) TO STDOUT`;
    const ours = await buffer(c.query(copyOut(sql)));
    const theirs = await buffer(c.query(copyTo(sql)));
    assert.ok(ours.equals(theirs));
    assert.equal(ours.toString().split('\n').length - 1, 20000);
  });

  it('fails with the server error of a COPY that breaks off, and the connection goes on', async () => {
    const stream = c.query(copyOut(`COPY (SELECT g, 1 / (g - 40000) FROM generate_series(1, 50000) g) TO STDOUT`));
    await assert.rejects(buffer(stream), /division by zero/);
    assert.equal((await c.query('SELECT 2 AS two')).rows[0].two, 2);
  });

  it("replaces this pg-copy-streams version's parser (an upgrade that renames its internals falls back to the library's, and fails here)", () => {
    const q = copyOut('COPY (SELECT 1) TO STDOUT') as unknown as { _parse: unknown };
    assert.equal(typeof q._parse, 'function');
    assert.notEqual(q._parse, Object.getPrototypeOf(q)._parse);
  });

  it('ends at once on no rows', async () => {
    const stream = c.query(copyOut(`COPY (SELECT 1 WHERE false) TO STDOUT`));
    assert.equal((await buffer(stream)).length, 0);
    assert.equal(stream.rowCount, 0);
    assert.equal((await c.query('SELECT 3 AS three')).rows[0].three, 3);
  });
});
