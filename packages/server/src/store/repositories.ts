/**
 * The asynchronous repository contract (SPEC 13) every storage backend implements: one repository per
 * kind of data — work orders (with their event log), runs (with their event log), iterations and
 * leases. The engine, the reconciler, the event hub and the API talk only to these interfaces; SQLite
 * (`store/sqlite/`) is the embedded implementation and a network backend (PostgreSQL) implements the
 * same interfaces and runs the same contract suite (`test/store/repository-contract.ts`).
 *
 * Two rules are enforced by the store itself, not only by the engine:
 * - **Terminal is final.** Once a run is terminal no event is appended to it and no transition is
 *   applied (`AG_ERR_RUN_ALREADY_TERMINAL`). The terminal transition writes the run row, its
 *   `run_state_changed` event and the closing event (`run_completed` / `run_failed` / `run_canceled`)
 *   in one transaction, so "an event after the terminal event" cannot exist.
 * - **Fencing.** Every write made on behalf of an executing run carries a {@link Fence}: the run lease
 *   key and the owner that believes it holds it. The write is refused with `AG_ERR_LEASE_LOST` unless,
 *   inside the writing transaction, that owner holds that lease and it has not expired at the store's
 *   clock. A process paused past its lease (SIGSTOP, laptop sleep) therefore writes nothing when it
 *   resumes, whoever took the run over.
 */
import type { Run, RunErrorInfo, RunEvent, TerminalState } from '../orchestrator/state-machine.js';
import type { IterationRecord } from './records.js';
import type {
  Lease,
  AcquireLeaseRequest,
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
  StoredEvent,
  StoredRun,
  StoredWorkOrder,
  StoredWorkOrderEvent,
  WorkOrderStatus,
} from './types.js';

/**
 * Proof of ownership carried by every write of an executing run (see the module comment). Methods take
 * `Fence | null`: `null` is an unfenced administrative write (the API, tests) that no lease vouches for.
 * The engine and the reconciler (after taking the expired lease over) always pass their fence.
 */
export interface Fence {
  readonly leaseKey: string;
  readonly owner: string;
}

/**
 * The closing event of each terminal state: a commit into that state must carry exactly this event type
 * as `closing`, and these types (like `run_state_changed`) can only be written by `commit`.
 */
export const CLOSING_EVENT_TYPES = {
  succeeded: 'run_completed',
  failed: 'run_failed',
  canceled: 'run_canceled',
} as const satisfies Record<TerminalState, string>;

/** Whether an event type is a closing event: nothing follows it in a run's log. */
export function isClosingEventType(type: string): boolean {
  return (Object.values(CLOSING_EVENT_TYPES) as readonly string[]).includes(type);
}

export interface WorkOrderRepository {
  /** @throws AG_ERR_STORE_CONFLICT when the id exists. Also appends `work_order_created`. */
  create(input: NewWorkOrder): Promise<{ workOrder: StoredWorkOrder; event: StoredWorkOrderEvent }>;
  get(id: string): Promise<StoredWorkOrder | null>;
  /** Newest first. */
  list(query: ListWorkOrdersQuery): Promise<Page<StoredWorkOrder>>;
  /**
   * Work orders waiting to run (status `queued`), next first: in the order they were queued — by
   * `updatedAt` (the time of the status change that queued them, or their creation), ties in the order
   * the work orders were created. The durable queue's order (`execution/work-order-queue.ts`): the store
   * already knows it, so the queue keeps no table of its own. `total` counts every queued work order.
   */
  listQueued(query: { readonly limit: number; readonly offset: number }): Promise<Page<StoredWorkOrder>>;
  /**
   * Sets the status and appends its `work_order_updated` event (`{ status, ...data }`) in one
   * transaction. @throws AG_ERR_WORK_ORDER_NOT_FOUND
   */
  setStatus(
    id: string,
    status: WorkOrderStatus,
    data?: { readonly runId?: string; readonly reason?: string },
    at?: string,
  ): Promise<{ workOrder: StoredWorkOrder; event: StoredWorkOrderEvent }>;
  /** Ordered by seq (the work order's own sequence, 1, 2, 3 … with no gaps). */
  listEvents(id: string, query?: ListEventsQuery): Promise<StoredWorkOrderEvent[]>;
  /** The highest event seq of the work order, 0 when it has none. */
  lastSeq(id: string): Promise<number>;
}

export interface CreateRunInput {
  /** Created in the same transaction when given and not yet stored (with its `work_order_created`). */
  readonly workOrder?: NewWorkOrder;
  readonly run: Run;
  readonly meta?: NewRunMeta;
  /** The run's lease, taken in the same transaction: no instant exists in which the run is unowned. */
  readonly lease: { readonly key: string; readonly owner: string; readonly ttlMs: number; readonly now?: Date };
  /**
   * Claim the work order for this run: in the same transaction the stored work order must be `queued`;
   * it becomes `running` with its `work_order_updated {status: 'running', runId}`. When it is not queued
   * (another worker claimed it first) the create fails with `AG_ERR_WORK_ORDER_CLAIMED` and writes
   * nothing. With `workOrders.listQueued` this is the whole queue protocol of several workers sharing one
   * store: list, then claim; exactly one concurrent claim of a work order wins.
   */
  readonly claim?: boolean;
  /**
   * At most one run that is not terminal holds this key (a repository + branch): a create whose key is
   * held fails with the retryable `AG_ERR_RUN_EXCLUSIVE_BUSY` and writes nothing. The key is free again
   * once its run is terminal. Enforced by the store (a partial unique index over non-terminal runs).
   */
  readonly exclusiveKey?: string;
}

export interface CreateRunResult {
  readonly run: StoredRun;
  /** The `work_order_created` event when this call created the work order, else null. */
  readonly workOrderEvent: StoredWorkOrderEvent | null;
  /** Every work-order event this call wrote, in seq order: `work_order_created` and/or the claim's `work_order_updated`. */
  readonly workOrderEvents: StoredWorkOrderEvent[];
}

export interface CommitRequest {
  readonly event: RunEvent;
  readonly fence: Fence | null;
  readonly error?: RunErrorInfo;
  /** ISO timestamp; defaults to the store's clock. */
  readonly at?: string;
  /** Fails with AG_ERR_STORE_CONFLICT unless the stored run has this version. */
  readonly expectedVersion?: number;
  /**
   * The closing event (`run_completed` / `run_failed` / `run_canceled`), written in the same
   * transaction when the event makes the run terminal. Required exactly then.
   */
  readonly closing?: NewEvent;
}

export interface CommitOutcome {
  readonly run: StoredRun;
  /** `run_state_changed`, then the closing event when the run became terminal. */
  readonly events: StoredEvent[];
}

export interface RunRepository {
  /**
   * Inserts the work order (when given and absent, with its `work_order_created`), claims it when asked,
   * and inserts the run and the run's lease, in one transaction. Nothing is written when it fails:
   * @throws AG_ERR_WORK_ORDER_CLAIMED (claim of a work order that is not queued), AG_ERR_LEASE_HELD
   * (another live owner holds the lease), AG_ERR_RUN_EXCLUSIVE_BUSY (the exclusive key is held),
   * AG_ERR_STORE_CONFLICT (duplicate run id), AG_ERR_WORK_ORDER_NOT_FOUND.
   */
  create(input: CreateRunInput): Promise<CreateRunResult>;
  get(id: string): Promise<StoredRun | null>;
  /** Newest first. */
  list(query: ListRunsQuery): Promise<Page<StoredRun>>;
  /** Runs not in a terminal state, oldest first: the input of reconciliation. */
  listNonTerminal(): Promise<StoredRun[]>;
  /** Shallow-merges `patch` into the run's metadata (fenced; refused once the run is terminal). */
  updateMeta(runId: string, patch: Partial<RunMeta>, fence: Fence | null): Promise<StoredRun>;
  /**
   * The one commit point of a run's state (fenced). Applies the state machine, writes the run row,
   * `run_state_changed` and, on a terminal event, the closing event — all or nothing.
   * @throws InvalidTransitionError, AG_ERR_RUN_ALREADY_TERMINAL, AG_ERR_LEASE_LOST, AG_ERR_RUN_NOT_FOUND
   */
  commit(runId: string, request: CommitRequest): Promise<CommitOutcome>;
  /**
   * Appends events with consecutive seqs in one transaction (fenced; refused once terminal).
   * `run_state_changed` and the closing types are refused (AG_ERR_INTERNAL): only `commit` writes them.
   */
  appendEvents(runId: string, events: readonly NewEvent[], fence: Fence | null): Promise<StoredEvent[]>;
  /** Ordered by seq. */
  listEvents(runId: string, query?: ListEventsQuery): Promise<StoredEvent[]>;
  /** The highest seq of the run, 0 when it has no events. */
  lastSeq(runId: string): Promise<number>;
}

export interface StoredIterationRecord {
  readonly runId: string;
  readonly iteration: number;
  readonly record: IterationRecord;
  readonly startedAt: string;
  readonly completedAt: string | null;
}

export interface IterationRepository {
  /** Inserts or replaces the record of one iteration (fenced; refused once the run is terminal). */
  save(input: StoredIterationRecord, fence: Fence | null): Promise<StoredIterationRecord>;
  /** Ordered by iteration. */
  list(runId: string): Promise<StoredIterationRecord[]>;
}

export interface LeaseRepository {
  /** True when the lease was free, expired, or already held by `owner`; false when someone else holds it. */
  acquire(request: AcquireLeaseRequest): Promise<boolean>;
  /** False when the lease was lost: expired, released, or taken over. */
  renew(request: RenewLeaseRequest): Promise<boolean>;
  /** True when `owner` held the lease and it is now released. */
  release(request: ReleaseLeaseRequest): Promise<boolean>;
  get(key: string): Promise<Lease | null>;
  /** Leases whose expiry is at or before `now`. */
  listExpired(now?: Date): Promise<Lease[]>;
  /** Leases whose expiry is after `now`. */
  listLive(now?: Date): Promise<Lease[]>;
}

/** All repositories of one backend. */
export interface Repositories {
  readonly workOrders: WorkOrderRepository;
  readonly runs: RunRepository;
  readonly iterations: IterationRepository;
  readonly leases: LeaseRepository;
  /** Idempotent. */
  close(): Promise<void>;
}
