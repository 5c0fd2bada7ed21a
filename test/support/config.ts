// Config tests' shared pieces: a parse context, the smallest valid document, and the problems a
// document that must be refused is refused with.
import { strict as assert } from 'node:assert';
import { parseConfig } from '../../lib/config';
import { ErrorType, TenantsafeError } from '../../lib/errors';

export const ctx = { env: {}, source: 'test', baseDir: '/srv/tenantsafe' };
export const minimal = { database: { url: 'postgres://app@db:5432/saas' }, storage: { primary: { kind: 'local', path: 'backups' } } };

/** The BadConfig message `doc` is refused with; fails the test when it is accepted. */
export function problemsOf(doc: unknown, env: NodeJS.ProcessEnv = {}): string {
  try {
    parseConfig(doc, { ...ctx, env });
  } catch (err) {
    assert.ok(err instanceof TenantsafeError);
    assert.equal(err.type, ErrorType.BadConfig);
    return err.message;
  }
  assert.fail('config was accepted');
}
