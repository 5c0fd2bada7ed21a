// Every workflow type the worker registers (the workflow types of the public contract: docs/architecture.md).
export { tenantBackup } from './tenantBackup';
export { tenantBackupsAll } from './tenantBackupsAll';
export { tenantBackupBatcher } from './tenantBackupBatcher';
export { tenantRestore } from './tenantRestore';
export { fullBackup } from './fullBackup';
export { walArchiver } from './walArchiver';
export { changeLog } from './changeLog';
export { pitrRestore } from './pitrRestore';
export { verifyBackup } from './verifyBackup';
export { verifyRecentBackups } from './verifyRecentBackups';
export { applyRetention } from './applyRetention';
export { standbyCreate } from './standbyCreate';
export { standbyRebuild } from './standbyRebuild';
export { drDrill } from './drDrill';
export { failover } from './failover';
export { switchover } from './switchover';
