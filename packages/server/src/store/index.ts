/**
 * The durable store (SPEC section 13): the asynchronous repository contract and its embedded SQLite
 * implementation.
 */
export { CLOSING_EVENT_TYPES } from './repositories.js';
export type {
  CommitOutcome,
  CommitRequest,
  CreateRunInput,
  Fence,
  IterationRepository,
  LeaseRepository,
  Repositories,
  RunRepository,
  StoredIterationRecord,
  WorkOrderRepository,
} from './repositories.js';
export type { IterationErrorRecord, IterationRecord } from './records.js';
export {
  DEFAULT_BUSY_TIMEOUT_MS,
  DEFAULT_EVENTS_LIMIT,
  STORE_FILE_NAME,
  openSqliteRepositories,
} from './sqlite/index.js';
export type { SqliteOpenOptions, SqliteRepositories } from './sqlite/index.js';
export { migrate, getSchemaVersion, MIGRATIONS, LATEST_SCHEMA_VERSION } from './migrations.js';
export type { Migration, MigrateOptions, MigrateResult } from './migrations.js';
export { classifySqliteCode, isSqliteError, translateSqliteError } from './sqlite-errors.js';
export {
  WorkOrderSource,
  WorkOrderStatus,
  ALL_WORK_ORDER_SOURCES,
  ALL_WORK_ORDER_STATUSES,
} from './types.js';
export type {
  AcquireLeaseRequest,
  JsonObject,
  Lease,
  ListEventsQuery,
  ListRunsQuery,
  ListWorkOrdersQuery,
  NewEvent,
  NewRunMeta,
  NewWorkOrder,
  Page,
  ReleaseLeaseRequest,
  RenewLeaseRequest,
  RunMeta,
  RunStateChangedData,
  RunUsage,
  StoredEvent,
  StoredRun,
  StoredWorkOrder,
  StoredWorkOrderEvent,
} from './types.js';
