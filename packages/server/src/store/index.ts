/**
 * The durable store (SPEC section 13): the {@link RunStore} contract and its SQLite implementation.
 */
export { SqliteRunStore, STORE_FILE_NAME, DEFAULT_BUSY_TIMEOUT_MS, DEFAULT_EVENTS_LIMIT } from './run-store.js';
export type { SqliteRunStoreOptions } from './run-store.js';
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
  RunStore,
  RunUsage,
  StoredEvent,
  StoredIteration,
  StoredRun,
  StoredWorkOrder,
  StoredWorkOrderEvent,
  StoreTransitionDetail,
  TransitionOutcome,
} from './types.js';
