// Every workflow type the worker registers (DESIGN: public contract, workflow types).
export { tenantBackup } from './tenantBackup';
export { tenantBackupsAll } from './tenantBackupsAll';
export { tenantRestore } from './tenantRestore';
