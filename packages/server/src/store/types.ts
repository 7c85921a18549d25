/**
 * The data types of AgentGate's store (SPEC section 13): work orders, runs, iterations, the durable
 * per-run event log and leases. The repository interfaces that read and write them are in
 * `repositories.ts`; the SQLite implementation is in `sqlite/`.
 */
import type { Run, RunErrorInfo, RunEvent, RunResult, RunState } from '../orchestrator/state-machine.js';

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
  /**
   * False from the workspace's creation until the first snapshot commit reached the repository, true
   * after: a run whose agent never changed anything (or that ended earlier) has no branch.
   */
  branchPublished?: boolean;
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
   * Bumped by every write to the run row. Pass it back as `expectedVersion` to `runs.commit()` to make
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

/** Payload of the `run_state_changed` event that `runs.commit()` writes with the new run row. */
export interface RunStateChangedData {
  readonly from: RunState;
  readonly event: RunEvent;
  readonly to: RunState;
  readonly iteration: number;
  readonly result?: RunResult;
  readonly error?: RunErrorInfo;
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
