/**
 * The durable work-order queue (SPEC 2, 10, 13; the {@link WorkOrderQueue} seam of server/contracts.ts):
 * work orders are stored `queued` and run automatically, oldest first, while fewer than `maxConcurrent`
 * runs are in flight.
 *
 * Durable because the store already is the queue: a waiting work order is one whose status is `queued`,
 * in the order `workOrders.listQueued()` gives (queued time, then creation order). The queue keeps no
 * table of its own, so after a restart the next `start()` simply picks the queued work orders up. In
 * memory it holds only what the store cannot know: the runs it has in flight and, for work orders
 * submitted to this process, the spec with its `agent.env` values (stored redacted; see stored-spec.ts).
 *
 * Scheduling is event-driven — a submission, run-again, the end of a run, a reconciliation tick — and
 * passes never overlap: every pass, cancel and run-again runs under one in-process lock, so "is it
 * queued? then start it / cancel it" cannot interleave. Periodic reconciliation is one `setTimeout` on
 * the injected clock, re-armed after each tick finished.
 *
 * One scheduler per `$AGENTGATE_HOME`: two servers on one store would both start the same queued work
 * order (the second start is refused only while the first run's lease is held by a live process).
 * The CLI's `exec` never starts the queue, so it never takes a server's work.
 *
 * Kept in one file (over 400 lines) on purpose: submit, cancel, run again, the scheduling pass, the
 * reconciliation tick and close all run under the one in-process lock described above; split, that
 * invariant would be scattered over files.
 */
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { AgentGateError, toAgentGateError } from '../errors.js';
import { isTerminalState } from '../orchestrator/state-machine.js';
import type { ResolvedTaskSpec } from '../schemas/resolve.js';
import type { QueueEntry, QueueSnapshot, SubmitWorkOrder, WorkOrderQueue } from '../server/contracts.js';
import type { Repositories } from '../store/repositories.js';
import type { StoredWorkOrder, WorkOrderStatus } from '../store/types.js';
import { assertNever } from '../util/abort.js';
import type { TimerClock, TimerHandle } from '../util/clock.js';
import { storableSpec, type ExecutionEngine, type RunOutcome } from './engine.js';
import { runnableSpec } from './stored-spec.js';
import type { WorkOrderService } from './work-order-service.js';

/** `AGENTGATE_MAX_CONCURRENT`'s default (SPEC 12). */
export const DEFAULT_MAX_CONCURRENT = 2;
/** Period of reconciliation while the queue runs: a dead owner's run is closed within about this long. */
export const DEFAULT_RECONCILE_EVERY_MS = 30_000;
/** Reason of the runs {@link WorkOrderQueue.close} cancels once its drain deadline passed. */
export const DEFAULT_SHUTDOWN_REASON = 'AgentGate is shutting down';
/** Reason on the `work_order_updated` event of a work order queued again by `runAgain`. */
export const RUN_AGAIN_REASON = 'run_again';
/** Work orders read per page while choosing what to start. */
const PAGE_SIZE = 64;
/** Entries listed by `snapshot()` at most (its `depth` still counts all). */
export const SNAPSHOT_MAX_ENTRIES = 1_000;

/** What the queue needs of the engine (the narrow view keeps tests and the seam honest). */
export type QueueEngine = Pick<ExecutionEngine, 'admit' | 'start' | 'cancel'>;

export interface WorkOrderQueueServices {
  repos: Repositories;
  engine: QueueEngine;
  workOrders: WorkOrderService;
  clock: TimerClock;
  logger: Logger;
  /** Closes (or re-queues) runs whose owner died: `Runtime.reconcile`. Called every `reconcileEveryMs`. */
  reconcile: () => Promise<unknown>;
}

export interface WorkOrderQueueOptions {
  /** Runs in flight at most (default {@link DEFAULT_MAX_CONCURRENT}). */
  maxConcurrent?: number;
  /** Period of reconciliation after `start()` (default {@link DEFAULT_RECONCILE_EVERY_MS}); 0 turns it off. */
  reconcileEveryMs?: number;
}

/** A run this queue started (or is starting). */
interface InFlight {
  readonly workOrderId: string;
  runId: string | undefined;
  /** Set by cancel/close before the run id is known; applied once it is. */
  cancelReason: string | undefined;
  /** Settles once the run ended and the work order has its final status. */
  done: Promise<void>;
}

export class DurableWorkOrderQueue implements WorkOrderQueue {
  readonly maxConcurrent: number;
  readonly reconcileEveryMs: number;
  private readonly inFlight = new Map<string, InFlight>();
  /** Specs with their `agent.env` values, of work orders submitted here and not started yet. */
  private readonly submitted = new Map<string, ResolvedTaskSpec>();
  private lockTail: Promise<unknown> = Promise.resolve();
  private started = false;
  private closing: Promise<void> | undefined;
  private dirty = false;
  private passPending = false;
  private reconcileTimer: TimerHandle | undefined;
  private ticking: Promise<void> | undefined;

  constructor(
    private readonly services: WorkOrderQueueServices,
    options: WorkOrderQueueOptions = {},
  ) {
    this.maxConcurrent = options.maxConcurrent ?? DEFAULT_MAX_CONCURRENT;
    this.reconcileEveryMs = options.reconcileEveryMs ?? DEFAULT_RECONCILE_EVERY_MS;
    if (!Number.isInteger(this.maxConcurrent) || this.maxConcurrent < 1) {
      throw new AgentGateError('AG_ERR_CONFIG_INVALID', `maxConcurrent must be a positive integer, got ${this.maxConcurrent}`);
    }
    if (!Number.isFinite(this.reconcileEveryMs) || this.reconcileEveryMs < 0) {
      throw new AgentGateError('AG_ERR_CONFIG_INVALID', `reconcileEveryMs must be 0 or more, got ${this.reconcileEveryMs}`);
    }
  }

  /** Runs in flight (starting or executing) in this process. */
  get running(): number {
    return this.inFlight.size;
  }

  /**
   * Validates like `engine.start` (agent options, delivery, sandbox on this host), then stores the work
   * order `queued` with its `work_order_created` event and schedules. After `close()` a submission is
   * still stored, and runs at the next start (the HTTP server stops accepting requests first).
   */
  async submit(input: SubmitWorkOrder): Promise<StoredWorkOrder> {
    const { repos, clock, engine } = this.services;
    // Everything the engine would refuse at start, refused now — before anything is stored.
    engine.admit(input.spec);
    const id = randomUUID();
    const { workOrder, event } = await repos.workOrders.create({
      id,
      source: input.source,
      spec: storableSpec(input.spec),
      request: input.request,
      status: 'queued',
      createdAt: new Date(clock.now()).toISOString(),
    });
    this.services.workOrders.created(event);
    if (Object.keys(input.spec.agent.env).length > 0) this.submitted.set(id, input.spec);
    this.schedule();
    return workOrder;
  }

  async cancel(workOrderId: string, reason = 'canceled by user'): Promise<StoredWorkOrder> {
    const { repos, engine } = this.services;
    // The run's end is awaited outside the lock (wrapped: an async function would adopt a promise).
    const wait = await this.exclusive(async (): Promise<{ readonly until: Promise<void> } | undefined> => {
      const workOrder = await this.require(workOrderId);
      const flight = this.inFlight.get(workOrderId);
      // A run of ours whose work order already has its final status is only finishing its bookkeeping.
      if (flight !== undefined && !isFinal(workOrder.status)) {
        flight.cancelReason ??= reason;
        if (flight.runId !== undefined) engine.cancel(flight.runId, reason);
        return { until: flight.done };
      }
      switch (workOrder.status) {
        case 'queued':
          this.submitted.delete(workOrderId);
          await this.services.workOrders.setStatus(workOrderId, 'canceled', { reason });
          return undefined;
        case 'running': {
          // Started by this process outside the queue (the engine directly), or by another process.
          const latest = (await repos.runs.list({ workOrderId, limit: 1, offset: 0 })).items[0];
          if (latest !== undefined && !isTerminalState(latest.state) && engine.cancel(latest.id, reason)) return undefined;
          throw conflict(workOrderId, 'its run is executed by another process (a dead one is reconciled)');
        }
        case 'succeeded':
        case 'failed':
        case 'canceled':
          throw conflict(workOrderId, `it already ended (${workOrder.status})`);
        default:
          return assertNever(workOrder.status);
      }
    });
    if (wait !== undefined) await wait.until;
    return this.require(workOrderId);
  }

  async runAgain(workOrderId: string): Promise<StoredWorkOrder> {
    const queued = await this.exclusive(async () => {
      const workOrder = await this.require(workOrderId);
      if (!isFinal(workOrder.status)) throw conflict(workOrderId, `it is ${workOrder.status}`);
      // Its last run ended (the final status is written just before the run's promise settles).
      await this.inFlight.get(workOrderId)?.done;
      // The stored spec must still be admissible here (agents, delivery, sandbox of this host).
      this.services.engine.admit(runnableSpec(workOrder).spec);
      return this.services.workOrders.setStatus(workOrderId, 'queued', { reason: RUN_AGAIN_REASON });
    });
    this.schedule();
    return queued;
  }

  async snapshot(): Promise<QueueSnapshot> {
    const page = await this.services.repos.workOrders.listQueued({ limit: SNAPSHOT_MAX_ENTRIES + this.inFlight.size, offset: 0 });
    // A work order being started is still `queued` in the store until its run begins: it counts as running.
    const waiting = page.items.filter((workOrder) => !this.inFlight.has(workOrder.id));
    const entries: QueueEntry[] = waiting.slice(0, SNAPSHOT_MAX_ENTRIES).map((workOrder, index) => ({
      workOrderId: workOrder.id,
      position: index + 1,
      queuedAt: workOrder.updatedAt,
    }));
    return {
      depth: page.total - (page.items.length - waiting.length),
      running: this.inFlight.size,
      maxConcurrent: this.maxConcurrent,
      entries,
    };
  }

  async position(workOrderId: string): Promise<number | null> {
    if (this.inFlight.has(workOrderId)) return null;
    const workOrder = await this.services.repos.workOrders.get(workOrderId);
    if (workOrder === null || workOrder.status !== 'queued') return null;
    let position = 0;
    for (let offset = 0; ; offset += PAGE_SIZE) {
      const page = await this.services.repos.workOrders.listQueued({ limit: PAGE_SIZE, offset });
      for (const queued of page.items) {
        if (this.inFlight.has(queued.id)) continue;
        position += 1;
        if (queued.id === workOrderId) return position;
      }
      if (page.items.length < PAGE_SIZE) return null;
    }
  }

  start(): void {
    if (this.started || this.closing !== undefined) return;
    this.started = true;
    this.armReconcile();
    this.schedule();
  }

  close(options: { readonly drainMs?: number; readonly cancelReason?: string } = {}): Promise<void> {
    this.closing ??= this.shutDown(options.drainMs ?? 0, options.cancelReason ?? DEFAULT_SHUTDOWN_REASON);
    return this.closing;
  }

  /**
   * Stops scheduling and reconciling, lets the runs in flight finish until `drainMs` passed, then
   * cancels the rest (they end `canceled` with `reason`) and waits for them. Queued work orders stay
   * queued in the store for the next start.
   */
  private async shutDown(drainMs: number, reason: string): Promise<void> {
    const { clock, engine, logger } = this.services;
    clock.clearTimeout(this.reconcileTimer);
    this.reconcileTimer = undefined;
    // The pass, cancel or run-again holding the lock finishes first; a pass stops at its next check.
    await this.exclusive(async () => undefined);
    await this.ticking;
    const flights = [...this.inFlight.values()];
    if (flights.length === 0) return;
    const all = Promise.all(flights.map((flight) => flight.done));
    let drained = false;
    if (drainMs > 0) {
      let timer: TimerHandle | undefined;
      const deadline = new Promise<void>((resolve) => {
        timer = clock.setTimeout(resolve, drainMs);
      });
      await Promise.race([all.then(() => (drained = true)), deadline]);
      clock.clearTimeout(timer);
    }
    if (!drained) {
      logger.warn({ runs: flights.length, drainMs }, 'queue shutdown cancels the runs still in flight');
      for (const flight of flights) {
        flight.cancelReason ??= reason;
        if (flight.runId !== undefined) engine.cancel(flight.runId, reason);
      }
    }
    await all;
  }

  /** Asks for a scheduling pass; passes coalesce (one runs, at most one more is pending). */
  private schedule(): void {
    if (!this.started || this.closing !== undefined) return;
    this.dirty = true;
    if (this.passPending) return;
    this.passPending = true;
    void this.exclusive(async () => {
      try {
        while (this.dirty && this.closing === undefined) {
          this.dirty = false;
          await this.pass();
        }
      } finally {
        this.passPending = false;
      }
    }).catch((error: unknown) => {
      // A store hiccup: the next event or reconciliation tick schedules again.
      const classified = toAgentGateError(error, 'AG_ERR_STORE_WRITE');
      this.services.logger.error({ err: classified, code: classified.code }, 'queue scheduling pass failed');
    });
  }

  /** Starts queued work orders, next first, while capacity allows. Runs under the lock. */
  private async pass(): Promise<void> {
    const { repos } = this.services;
    for (let offset = 0; ; offset += PAGE_SIZE) {
      if (!this.canStart()) return;
      const page = await repos.workOrders.listQueued({ limit: PAGE_SIZE, offset });
      for (const workOrder of page.items) {
        if (!this.canStart()) return;
        if (this.inFlight.has(workOrder.id)) continue;
        // Still `queued` but a run of it is open: another process started it, or a dead process left it
        // (reconciliation closes that run and decides the work order's status). Never two runs at once.
        const latest = (await repos.runs.list({ workOrderId: workOrder.id, limit: 1, offset: 0 })).items[0];
        if (latest !== undefined && !isTerminalState(latest.state)) continue;
        if (!this.canStart()) return;
        if (!(await this.launch(workOrder))) return;
      }
      if (page.items.length < PAGE_SIZE) return;
    }
  }

  private canStart(): boolean {
    return this.closing === undefined && this.inFlight.size < this.maxConcurrent;
  }

  /** Starts one work order's run; false when the store refused for now (retry on a later pass). */
  private async launch(workOrder: StoredWorkOrder): Promise<boolean> {
    const { engine, logger } = this.services;
    const flight: InFlight = { workOrderId: workOrder.id, runId: undefined, cancelReason: undefined, done: Promise.resolve() };
    this.inFlight.set(workOrder.id, flight);
    let outcome: Promise<RunOutcome>;
    try {
      const spec = this.specFor(workOrder);
      const started = await engine.start(spec, { workOrderId: workOrder.id, source: workOrder.source });
      flight.runId = started.runId;
      outcome = started.done;
    } catch (error) {
      this.inFlight.delete(workOrder.id);
      return this.startFailed(workOrder, error);
    }
    this.submitted.delete(workOrder.id);
    if (flight.cancelReason !== undefined) engine.cancel(flight.runId, flight.cancelReason);
    flight.done = outcome.then(
      (result) => logger.debug({ workOrderId: workOrder.id, runId: result.runId, state: result.state }, 'queued run finished'),
      (error: unknown) => {
        // executeRun never rejects; this would be a bug, and it must not stall the queue.
        const classified = toAgentGateError(error);
        logger.error({ err: classified, code: classified.code, workOrderId: workOrder.id }, 'queued run rejected');
      },
    ).finally(() => {
      this.inFlight.delete(workOrder.id);
      this.schedule();
    });
    return true;
  }

  private specFor(workOrder: StoredWorkOrder): ResolvedTaskSpec {
    const kept = this.submitted.get(workOrder.id);
    if (kept !== undefined) return kept;
    const { spec, droppedEnv } = runnableSpec(workOrder);
    if (droppedEnv.length > 0) {
      this.services.logger.warn({ workOrderId: workOrder.id, keys: droppedEnv }, 'agent.env values are not stored; this run starts without them');
    }
    return spec;
  }

  /**
   * A start refused for a passing reason (the store busy, a lease still held) leaves the work order
   * queued for a later pass; any other refusal (its spec is no longer admissible here) fails the work
   * order with the reason, so it cannot block the queue.
   */
  private async startFailed(workOrder: StoredWorkOrder, error: unknown): Promise<boolean> {
    const classified = toAgentGateError(error);
    const { logger, workOrders } = this.services;
    if (classified.retryable || classified.code === 'AG_ERR_LEASE_HELD') {
      logger.warn({ err: classified, code: classified.code, workOrderId: workOrder.id }, 'queued work order could not start yet');
      return false;
    }
    logger.error({ err: classified, code: classified.code, workOrderId: workOrder.id }, 'queued work order could not start');
    this.submitted.delete(workOrder.id);
    await workOrders.setStatus(workOrder.id, 'failed', { reason: `${classified.code}: ${classified.message}` });
    return true;
  }

  private armReconcile(): void {
    if (this.reconcileEveryMs === 0 || this.closing !== undefined) return;
    this.reconcileTimer = this.services.clock.setTimeout(() => {
      this.reconcileTimer = undefined;
      this.ticking = this.tick();
    }, this.reconcileEveryMs);
  }

  private async tick(): Promise<void> {
    try {
      await this.services.reconcile();
    } catch (error) {
      const classified = toAgentGateError(error, 'AG_ERR_STORE_WRITE');
      this.services.logger.error({ err: classified, code: classified.code }, 'periodic reconciliation failed');
    }
    // Reconciliation may have re-queued work orders; a failed pass is retried here too.
    this.schedule();
    this.armReconcile();
  }

  private async require(workOrderId: string): Promise<StoredWorkOrder> {
    const workOrder = await this.services.repos.workOrders.get(workOrderId);
    if (workOrder === null) {
      throw new AgentGateError('AG_ERR_WORK_ORDER_NOT_FOUND', `work order ${workOrderId} does not exist`, { details: { workOrderId } });
    }
    return workOrder;
  }

  /** Runs `fn` after every earlier `exclusive` call settled (one in-process lock). */
  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const result = this.lockTail.then(fn);
    this.lockTail = result.then(
      () => undefined,
      () => undefined,
    );
    return result;
  }
}

function isFinal(status: WorkOrderStatus): boolean {
  return status === 'succeeded' || status === 'failed' || status === 'canceled';
}

function conflict(workOrderId: string, why: string): AgentGateError {
  return new AgentGateError('AG_ERR_API_CONFLICT', `work order ${workOrderId} cannot do this now: ${why}`, { details: { workOrderId } });
}
