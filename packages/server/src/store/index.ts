/**
 * The durable store (SPEC section 13): the asynchronous repository contract, its embedded SQLite
 * implementation and its PostgreSQL implementation, and the choice between them (`openRepositories`).
 */
export { CLOSING_EVENT_TYPES } from './repositories.js';
export type {
  CommitOutcome,
  CommitRequest,
  CreateRunInput,
  CreateRunResult,
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
export { openPostgresRepositories, POSTGRES_SCHEMA_VERSION, classifyPostgresCode, translatePostgresError } from './postgres/index.js';
export type { PostgresOpenOptions, PostgresPoolOptions, PostgresRepositories } from './postgres/index.js';
export { openRepositories } from './open.js';
export type { OpenRepositoriesOptions, OpenedRepositories } from './open.js';
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
