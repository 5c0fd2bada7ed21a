import { strict as assert } from 'node:assert';
import { ErrorType, TenantsafeError } from '../lib/errors';
import { approvalInvalid, approvalRefusal, checkRestoreRequest, type ApprovalTarget, type RestoreRequest } from '../lib/restore/rules';

describe('restore rules (no database)', () => {
  const badInput = (pattern: RegExp) => (e: unknown) => e instanceof TenantsafeError && e.type === ErrorType.BadInput && pattern.test(e.message) && / HINT: \S/.test(e.message);

  it('checks a restore request who first, then what, then from which backup, each failure bad input with a hint', () => {
    const req: RestoreRequest = { tenantId: 'globex', requestedBy: 'alice', backupId: '20261125-053012T-3f9a2c' };
    assert.throws(() => checkRestoreRequest({ ...req, tenantId: ' ', mode: 'merge' }), badInput(/^Input must be \{"tenantId": "<id>"\}/));
    assert.throws(() => checkRestoreRequest({ ...req, requestedBy: '', mode: 'merge' }), badInput(/requestedBy is required/));
    assert.throws(() => checkRestoreRequest({ ...req, mode: 'merge', at: 'yesterday' }), badInput(/Unknown mode "merge"/));
    assert.throws(() => checkRestoreRequest({ ...req, changes: [] }), badInput(/--changes is empty/));
    assert.throws(() => checkRestoreRequest({ ...req, tables: [] }), badInput(/--tables is empty/));
    assert.throws(() => checkRestoreRequest({ ...req, missingRefs: 'ignore' }), badInput(/Unknown --missing-refs "ignore"/));
    assert.throws(() => checkRestoreRequest({ ...req, at: '2026-11-25T05:30:00Z' }), badInput(/Give one source, not backupId and at/));
    assert.throws(() => checkRestoreRequest({ ...req, backupId: undefined }), badInput(/Give what to restore/));
    assert.throws(() => checkRestoreRequest({ ...req, backupId: undefined, at: '2026-11-25 05:30' }), badInput(/"2026-11-25 05:30" is not an ISO-8601 time with a time zone/));
    assert.throws(() => checkRestoreRequest({ ...req, backupId: undefined, backupBefore: '2026-11-25 05:30' }), badInput(/"2026-11-25 05:30" is not an ISO-8601 time with a time zone/));
    assert.throws(() => checkRestoreRequest({ ...req, backupId: undefined, lsn: '16/B374D848X' }), badInput(/is not an LSN/));
    const now = new Date('2026-11-25T06:00:00Z');
    assert.throws(() => checkRestoreRequest({ ...req, backupId: undefined, at: '2026-11-25T07:00:00+00:30' }, now), badInput(/is in the future/));
    assert.throws(() => checkRestoreRequest({ ...req, backupId: undefined, backupBefore: '2026-11-25T07:00:00+00:30' }, now), badInput(/is in the future/));

    assert.deepEqual(checkRestoreRequest(req), { tenantId: 'globex', requestedBy: 'alice', selection: { mode: 'replace', missingRefs: 'refuse' }, source: { backupId: req.backupId } });
    const atTime = checkRestoreRequest({ ...req, backupId: undefined, backupBefore: '2026-11-25T06:30:00+01:00', changes: [' insert'], tables: ['app.users'] }, now);
    assert.deepEqual(atTime.source, { backupBefore: '2026-11-25T06:30:00+01:00', time: new Date('2026-11-25T05:30:00Z') });
    assert.deepEqual(checkRestoreRequest({ ...req, backupId: undefined, at: '2026-11-25T06:30:00.000001+01:00' }, now).source, { pointInTime: { at: '2026-11-25T05:30:00.000001Z' } });
    assert.deepEqual(checkRestoreRequest({ ...req, backupId: undefined, lsn: '16/b374d848' }, now).source, { pointInTime: { lsn: '16/B374D848' } });
    assert.deepEqual(atTime.selection, { mode: 'replace', tables: ['app.users'], changes: ['insert'], missingRefs: 'refuse' });
  });

  it('counts an approval only when it names someone other than the requester, while the restore awaits approval, for the current digest, once each', () => {
    const restore: ApprovalTarget = { restoreId: '20261125-053012R-3f9a2c', state: 'awaiting-approval', requestedBy: 'alice', preview: { digest: 'd1' }, approvals: [] };
    const reason = (target: ApprovalTarget, approval: unknown) => approvalRefusal(target, approval as { by: string; digest: string })?.reason;
    assert.equal(reason(restore, { by: 'bob', digest: 'd1' }), undefined);
    assert.match(reason(restore, { digest: 'd1' })!, /names no one/);
    assert.match(reason(restore, null)!, /names no one/);
    assert.match(reason({ ...restore, state: 'expired' }, { by: 'bob', digest: 'd1' })!, /is expired, not awaiting approval/);
    assert.match(reason(restore, { by: 'alice', digest: 'd1' })!, /alice requested restore .* and cannot approve it \(four-eyes\)/);
    assert.match(reason(restore, { by: 'bob', digest: 'd0' })!, /Digest d0 is not the current preview's/);
    assert.match(reason({ ...restore, approvals: [{ by: 'bob' }] }, { by: 'bob', digest: 'd1' })!, /bob already approved/);

    const error = approvalInvalid(approvalRefusal(restore, { by: 'bob', digest: 'd0' })!);
    assert.equal(error.type, ErrorType.ApprovalInvalid);
    assert.match(error.message, /Digest d0 is not the current preview's of restore \S+\. HINT: Review the current preview .* and approve its digest d1\./);
  });
});
