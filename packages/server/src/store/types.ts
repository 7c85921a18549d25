/**
 * The storage contract of AgentGate (SPEC section 13): work orders, runs, iterations, the durable
 * per-run event log and leases.
 *
 * {@link RunStore} is the one repository interface the engine, the queue and the API talk to. The
 * embedded implementation is `SqliteRunStore`; a PostgreSQL implementation is planned behind the
 * same contract, and both will run one shared conformance suite.
 *
 * The methods are synchronous on purpose. better-sqlite3 is synchronous, and a synchronous store gives
 * the engine the guarantee it needs for "persist, then emit": when `transition()` returns, the run row
 * and its `run_state_changed` event are committed, and no other JavaScript on this thread ran between
 * reading the run and writing it. It also makes `runInTransaction` safe: better-sqlite3 cannot hold a
 * transaction open across an `await`, so a callback-based API that accepted async functions would
 * silently commit early. A network-backed store cannot be synchronous; the PostgreSQL implementation
 * will come with an `AsyncRunStore` twin of this interface (same names, `Promise` results) and the
 * SQLite store will be adapted to it — not a mix of both styles in one interface.
 */
import type { Run, RunErrorInfo, RunEvent, RunResult, RunState, TransitionDetail } from '../orchestrator/state-machine.js';

/** How a work order entered the system: the legacy WorkOrder API or a TaskSpec (SPEC section 2). */
export const WorkOrderSource = {
  TaskSpec: 'task_spec',
  WorkOrder: 'work_order',
} as const;
export type WorkOrderSource = (typeof WorkOrderSource)[keyof typeof WorkOrderSource];
export const ALL_WORK_ORDER_SOURCES: readonly WorkOrderSource[] = Object.values(WorkOrderSource);

/**
 * Lifecycle of a work order as a whole. A work order may own several runs ("run again"); its status
 * summarises the latest one and is maintained by the work-order service, not derived by the store.
 */
export const WorkOrderStatus = {
  Queued: 'queued',
  Running: 'running',
  Succeeded: 'succeeded',
  Failed: 'failed',
  Canceled: 'canceled',
} as const;
export type WorkOrderStatus = (typeof WorkOrderStatus)[keyof typeof WorkOrderStatus];
export const ALL_WORK_ORDER_STATUSES: readonly WorkOrderStatus[] = Object.values(WorkOrderStatus);

/** A JSON object as stored in a `*_json` column and handed back by the store. */
export type JsonObject = Record<string, unknown>;

export interface NewWorkOrder {
  readonly id: string;
  readonly source: WorkOrderSource;
  /** The resolved task spec every run of this work order executes (`ResolvedTaskSpec`). */
  readonly spec: object;
  /** The request exactly as the client sent it, kept for the legacy API's responses and for audits. */
  readonly request?: object | null;
  /** Defaults to `queued`. */
  readonly status?: WorkOrderStatus;
  /** ISO timestamp; defaults to the store's clock. */
  readonly createdAt?: string;
}

export interface StoredWorkOrder {
  readonly id: string;
  readonly status: WorkOrderStatus;
  readonly source: WorkOrderSource;
  readonly spec: JsonObject;
  readonly request: JsonObject | null;
  readonly createdAt: string;
  readonly updatedAt: string;
}

/** Token and cost totals of a run, summed over its iterations. */
export interface RunUsage {
  readonly inputTokens: number;
  readonly outputTokens: number;
  readonly costUsd: number;
}

/**
 * Extensible run metadata kept in `runs.data_json`, so adding a field needs no migration. The named
 * fields are the ones every surface shows (SPEC sections 6, 8, 12); anything else must be JSON.
 */
export interface RunMeta {
  /** No gates were found: the run executed but nothing verified it (never a silent pass). */
  unverified?: boolean;
  usage?: RunUsage;
  prUrl?: string;
  workspacePath?: string;
  warnings?: string[];
  [key: string]: unknown;
}

export interface NewRunMeta {
  /** The run branch (`agentgate/<runId>`), when already known at insert time. */
  readonly branch?: string | null;
  readonly data?: RunMeta;
}

/** A run as persisted: the state machine's {@link Run} plus what only the store tracks. */
export interface StoredRun extends Run {
  readonly branch: string | null;
  readonly meta: RunMeta;
  /**
   * Bumped by every write to the run row. Pass it back as `expectedVersion` to `transition()` to make
   * a read-decide-write sequence fail with `AG_ERR_STORE_CONFLICT` if someone else wrote in between.
   */
  readonly version: number;
}

/** One entry of a run's durable event log: the envelope of SPEC section 11. */
export interface StoredEvent {
  /** 1, 2, 3 … per run, no gaps, assigned by the store inside the writing transaction. */
  readonly seq: number;
  readonly runId: string;
  readonly workOrderId: string;
  readonly type: string;
  readonly timestamp: string;
  readonly data: JsonObject;
}

/** One entry of a work order's own event log (`work_order_created`, `work_order_updated`). */
export interface StoredWorkOrderEvent {
  readonly seq: number;
  readonly workOrderId: string;
  readonly type: string;
  readonly timestamp: string;
  readonly data: JsonObject;
}

export interface NewEvent {
  readonly type: string;
  readonly data: object;
  /** ISO timestamp; defaults to the store's clock. */
  readonly timestamp?: string;
}

/** The per-iteration record (agent summary, snapshot, verification report, feedback, timings). */
export interface StoredIteration {
  readonly runId: string;
  readonly iteration: number;
  readonly data: JsonObject;
  readonly startedAt: string;
  readonly completedAt: string | null;
}

/** Payload of the `run_state_changed` event that `transition()` writes with the new run row. */
export interface RunStateChangedData {
  readonly from: RunState;
  readonly event: RunEvent;
  readonly to: RunState;
  readonly iteration: number;
  readonly result?: RunResult;
  readonly error?: RunErrorInfo;
}

export interface StoreTransitionDetail extends TransitionDetail {
  /** When set, the transition fails with `AG_ERR_STORE_CONFLICT` unless the stored run has this version. */
  readonly expectedVersion?: number;
}

export interface TransitionOutcome {
  readonly run: StoredRun;
  readonly event: StoredEvent;
}

export interface Page<T> {
  readonly items: T[];
  /** Rows matching the filter, ignoring limit and offset. */
  readonly total: number;
}

export interface ListWorkOrdersQuery {
  readonly limit: number;
  readonly offset: number;
  readonly status?: WorkOrderStatus;
}

export interface ListRunsQuery {
  readonly limit: number;
  readonly offset: number;
  readonly workOrderId?: string;
  readonly state?: RunState;
}

export interface ListEventsQuery {
  /** Only events with `seq > afterSeq` (resume after the last one seen). Default 0. */
  readonly afterSeq?: number;
  /** Default 1000. */
  readonly limit?: number;
}

/** A lease on a key (typically a repository branch, SPEC section 8) held by one owner for one run. */
export interface Lease {
  readonly key: string;
  readonly owner: string;
  readonly runId: string;
  readonly expiresAt: string;
  readonly heartbeatAt: string;
}

export interface AcquireLeaseRequest {
  readonly key: string;
  /** Identifies the holder (process/instance id); the same owner may re-acquire its own lease. */
  readonly owner: string;
  readonly runId: string;
  readonly ttlMs: number;
  /** Defaults to the store's clock. */
  readonly now?: Date;
}

export interface RenewLeaseRequest {
  readonly key: string;
  readonly owner: string;
  readonly ttlMs: number;
  /** Defaults to the store's clock. */
  readonly now?: Date;
}

export interface ReleaseLeaseRequest {
  readonly key: string;
  readonly owner: string;
}

/**
 * The durable store behind the engine, queue and API. Every write is atomic; every failure is an
 * `AgentGateError` (`AG_ERR_STORE_*`, `AG_ERR_RUN_NOT_FOUND`, `AG_ERR_WORK_ORDER_NOT_FOUND`, or the
 * state machine's `InvalidTransitionError`). See the module comment for why it is synchronous.
 */
export interface RunStore {
  /** @throws AG_ERR_STORE_CONFLICT when the id exists. */
  createWorkOrder(input: NewWorkOrder): StoredWorkOrder;
  getWorkOrder(id: string): StoredWorkOrder | null;
  /** Newest first. */
  listWorkOrders(query: ListWorkOrdersQuery): Page<StoredWorkOrder>;
  /** @throws AG_ERR_WORK_ORDER_NOT_FOUND */
  updateWorkOrderStatus(id: string, status: WorkOrderStatus, at?: string): StoredWorkOrder;

  /** @throws AG_ERR_WORK_ORDER_NOT_FOUND when the run's work order does not exist; AG_ERR_STORE_CONFLICT on a duplicate id. */
  insertRun(run: Run, meta?: NewRunMeta): StoredRun;
  getRun(id: string): StoredRun | null;
  /** Newest first. */
  listRuns(query: ListRunsQuery): Page<StoredRun>;
  /** Runs not in a terminal state, oldest first: the input of start-up reconciliation. */
  listNonTerminalRuns(): StoredRun[];
  /** Shallow-merges `patch` into the run's metadata; a key set to `undefined` is removed. */
  updateRunMeta(runId: string, patch: Partial<RunMeta>): StoredRun;
  setRunBranch(runId: string, branch: string | null): StoredRun;
  /**
   * Applies one state-machine event and appends its `run_state_changed` event in one transaction.
   * @throws InvalidTransitionError (unchanged, nothing written) when the table has no row for it.
   */
  transition(runId: string, event: RunEvent, detail?: StoreTransitionDetail): TransitionOutcome;

  /** Appends one event with the next seq of the run. */
  appendEvent(runId: string, type: string, data: object, timestamp?: string): StoredEvent;
  /** Appends several events with consecutive seqs in one transaction (all or nothing). */
  appendEvents(runId: string, events: readonly NewEvent[]): StoredEvent[];
  /** Ordered by seq. */
  listEvents(runId: string, query?: ListEventsQuery): StoredEvent[];
  /** The highest seq of the run, 0 when it has no events. */
  lastSeq(runId: string): number;
  appendWorkOrderEvent(workOrderId: string, type: string, data: object, timestamp?: string): StoredWorkOrderEvent;
  listWorkOrderEvents(workOrderId: string, query?: ListEventsQuery): StoredWorkOrderEvent[];

  /** Inserts or replaces the record of one iteration. */
  saveIteration(runId: string, iteration: number, data: object, startedAt: string, completedAt?: string | null): StoredIteration;
  /** Ordered by iteration. */
  listIterations(runId: string): StoredIteration[];

  /** True when the lease was free, expired, or already held by `owner`; false when someone else holds it. */
  acquireLease(request: AcquireLeaseRequest): boolean;
  /** False when the lease was lost: expired, released, or taken over. */
  renewLease(request: RenewLeaseRequest): boolean;
  /** True when `owner` held the lease and it is now released. */
  releaseLease(request: ReleaseLeaseRequest): boolean;
  getLease(key: string): Lease | null;
  /** Leases whose expiry is at or before `now`: their runs' owners are presumed dead. */
  listExpiredLeases(now?: Date): Lease[];
  /** Leases whose expiry is after `now`: their runs have a live owner. */
  listLiveLeases(now?: Date): Lease[];

  /**
   * Runs `fn` in one `BEGIN IMMEDIATE` transaction (a savepoint when nested); store calls inside it
   * join the transaction. `fn` must be synchronous. Whatever it throws rolls everything back and is
   * rethrown.
   */
  runInTransaction<T>(fn: () => T): T;
  /** Idempotent. */
  close(): void;
}
