// Root hooks of the fault suite (.mocharc.faults.json): a durable test stack, so the Temporal
// server and the storage emulator can restart mid-step, and the table of every case at the end.
import { useDurableTestStack } from '../support/stack';
import { faultTable, renderFaultTable } from './rig';

useDurableTestStack();

export const mochaHooks = {
  afterAll() {
    if (faultTable.length) console.log(`\nfault-injection cases\n${renderFaultTable(faultTable)}\n`);
  },
};
