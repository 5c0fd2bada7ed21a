// Activity option profiles. Every one bounds its retries: the SDK default retries forever.
import type { ActivityOptions } from '@temporalio/workflow';

/** Catalog writes, checks, small object operations. */
export const shortStep: ActivityOptions = {
  startToCloseTimeout: '60s',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '10s', maximumAttempts: 4 },
};

/** Streaming a tenant or a database: long, so it heartbeats; a dead worker is noticed in 15 s. */
export const bulkCopy: ActivityOptions = {
  startToCloseTimeout: '12h',
  heartbeatTimeout: '15s',
  retry: { initialInterval: '2s', backoffCoefficient: 2, maximumInterval: '60s', maximumAttempts: 5 },
};
