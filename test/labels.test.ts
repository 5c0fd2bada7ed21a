import { strict as assert } from 'node:assert';
import { backupLabel, parseBackupLabel } from '../lib/labels';

describe('backup ids', () => {
  it('sort by time and carry their kind', () => {
    const id = backupLabel(new Date('2026-11-25T05:30:12.345Z'), 'tenant', '019abc12-3456-7def-8123-4567890abcde');
    assert.equal(id, '20261125-053012T-0abcde');
    assert.deepEqual(parseBackupLabel(id), { at: new Date('2026-11-25T05:30:12Z'), kind: 'tenant' });
    assert.ok(backupLabel(new Date('2026-11-25T05:30:13Z'), 'full', 'x') > id);
    assert.equal(parseBackupLabel('not-a-label'), null);
  });

  it('stay distinct for runs whose UUIDv7 ids share their timestamp prefix', () => {
    const at = new Date('2026-11-25T05:30:12Z');
    const a = backupLabel(at, 'tenant', '019abc12-3456-7def-8123-4567890abcde');
    const b = backupLabel(at, 'tenant', '019abc12-3456-7def-8123-4567890fffff');
    assert.notEqual(a, b);
  });
});
