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
 * queued? then start it / cancel it" cannot interleave in this process. Periodic reconciliation is one
 * `setTimeout` on the injected clock, re-armed after each tick finished (periodic-task.ts).
 *
 * Several processes on one store (issue 14, docs/deployment.md): a work order is started by *claiming*
 * it — `engine.start(spec, { claim: true })` creates the run only if the work order is still `queued`,
 * setting it `running` in the same transaction — so exactly one queue wins it; the losers skip it
 * (`AG_ERR_WORK_ORDER_CLAIMED`). A run that would share a repository branch with an unfinished one is
 * refused by the store (`AG_ERR_RUN_EXCLUSIVE_BUSY`, see exclusive-key.ts) and stays queued for a later
 * pass. With `start({ pollEveryMs })` the queue also looks every period for work queued through other
 * processes and for cancel requests other processes recorded for its runs (cancel-requests.ts);
 * `start({ execute: false })` (an API-only node) never starts work and only reconciles.
 * The CLI's `exec` never starts the queue, so it never takes a server's work.
 *
 * Kept in one file (over 400 lines) on purpose: submit, cancel, run again, the scheduling pass, the
 * periodic ticks and close all run under the one in-process lock described above; split, that
 * invariant would be scattered over files. What needs no lock lives beside it: starting one work order
 * (queue-launch.ts), the read-only views (queue-views.ts), cancel requests (cancel-requests.ts).
 */
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { AgentGateError, toAgentGateError } from '../errors.js';
import { isTerminalState } from '../orchestrator/state-machine.js';
import type { ResolvedTaskSpec } from '../schemas/resolve.js';
import type { QueueSnapshot, SubmitWorkOrder, WorkOrderQueue } from '../server/contracts.js';
import type { Repositories } from '../store/repositories.js';
import type { StoredWorkOrder, WorkOrderStatus } from '../store/types.js';
import { assertNever } from '../util/abort.js';
import type { TimerClock } from '../util/clock.js';
import { CancelRequests, REMOTE_CANCEL_REASON } from './cancel-requests.js';
import { storableSpec } from './engine.js';
import { exclusiveKeyOf, type ExclusiveKeyPolicy } from './exclusive-key.js';
import { PeriodicTask, settlesWithin } from './periodic-task.js';
import { launchClaimed, type LaunchResult, type LaunchServices, type QueueEngine } from './queue-launch.js';
import { queuePosition, queueSnapshot, type QueueViewSource } from './queue-views.js';
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
export { SNAPSHOT_MAX_ENTRIES } from './queue-views.js';

export type { QueueEngine } from './queue-launch.js';

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
  /** The exclusive key of a spec (default {@link exclusiveKeyOf}: change requests by repository and base). */
  exclusiveKey?: ExclusiveKeyPolicy;
}

/** How this process takes part in the queue (its role, docs/deployment.md). */
export interface QueueStartOptions {
  /**
   * Every this many ms, look for work queued through other processes and for cancel requests of this
   * queue's runs (0, the default: only on this process's own events — one process per store).
   */
  readonly pollEveryMs?: number;
  /** False: never start work orders here (`agentgate serve --no-worker`); reconciliation still runs. */
  readonly execute?: boolean;
}

/** Options of {@link DurableWorkOrderQueue.close}. */
export interface QueueCloseOptions {
  /** How long runs in flight may take to finish before they are canceled (default 0). */
  readonly drainMs?: number;
  readonly cancelReason?: string;
  /** Runs canceled at the deadline hand their work orders back to the queue (`queued`), not `canceled`. */
  readonly handBack?: boolean;
}

/** A run this queue started (or is starting). */
interface InFlight {
  readonly workOrderId: string;
  runId: string | undefined;
  /** Set by cancel/close before the run id is known; applied once it is. */
  cancelReason: string | undefined;
  /** Set by a draining close: the work order goes back to the queue when the run ends canceled. */
  handBack: boolean;
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
  private executing = false;
  private closing: Promise<void> | undefined;
  private dirty = false;
  private passPending = false;
  private readonly reconcileTask: PeriodicTask;
  private pollTask: PeriodicTask | undefined;
  private readonly cancelRequests: CancelRequests;
  private readonly launchServices: LaunchServices;
  private readonly views: QueueViewSource;

  constructor(
    private readonly services: WorkOrderQueueServices,
    options: WorkOrderQueueOptions = {},
  ) {
    this.maxConcurrent = options.maxConcurrent ?? DEFAULT_MAX_CONCURRENT;
    this.reconcileEveryMs = options.reconcileEveryMs ?? DEFAULT_RECONCILE_EVERY_MS;
    if (!Number.isInteger(this.maxConcurrent) || this.maxConcurrent < 1) {
      throw new AgentGateError('AG_ERR_CONFIG_INVALID', `maxConcurrent must be a positive integer, got ${this.maxConcurrent}`);
    }
    assertPeriod(this.reconcileEveryMs, 'reconcileEveryMs');
    this.views = { workOrders: services.repos.workOrders, inFlight: this.inFlight, maxConcurrent: this.maxConcurrent };
    this.launchServices = { engine: services.engine, workOrders: services.workOrders, logger: services.logger, exclusiveKey: options.exclusiveKey ?? exclusiveKeyOf };
    this.cancelRequests = new CancelRequests(services.repos.leases, services.clock);
    this.reconcileTask = new PeriodicTask({
      clock: services.clock,
      everyMs: this.reconcileEveryMs,
      run: async () => {
        await this.services.reconcile();
        // Reconciliation may have re-queued work orders; a failed pass is retried here too.
        this.schedule();
      },
      onError: (error) => {
        this.schedule();
        this.logFailure(error, 'periodic reconciliation failed');
      },
    });
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

  /**
   * Cancels a queued work order, or its run. A run another process executes is canceled through a
   * request recorded in the store (cancel-requests.ts), which its queue acts on within its poll period:
   * then the work order is returned still `running`, and ends `canceled` shortly after.
   */
  async cancel(workOrderId: string, reason = 'canceled by user'): Promise<StoredWorkOrder> {
    const { engine } = this.services;
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
        case 'queued': {
          this.submitted.delete(workOrderId);
          await this.services.workOrders.setStatus(workOrderId, 'canceled', { reason });
          // Another process's claim may have won between the read above and this write: its run (created
          // before the write, which the claim requires) is canceled too, and ends the work order canceled.
          const raced = await this.openRun(workOrderId);
          if (raced !== undefined) await this.cancelElsewhere(raced, reason);
          return undefined;
        }
        case 'running': {
          // Started by this process outside the queue (the engine directly), or by another process.
          const latest = await this.openRun(workOrderId);
          if (latest === undefined) throw conflict(workOrderId, 'its run is finishing');
          if (!engine.cancel(latest, reason)) await this.cancelElsewhere(latest, reason);
          return undefined;
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

  snapshot(): Promise<QueueSnapshot> {
    return queueSnapshot(this.views);
  }

  position(workOrderId: string): Promise<number | null> {
    return queuePosition(this.views, workOrderId);
  }

  /** Starts scheduling and periodic reconciliation (and polling, see {@link QueueStartOptions}). Idempotent. */
  start(options: QueueStartOptions = {}): void {
    if (this.started || this.closing !== undefined) return;
    const pollEveryMs = options.pollEveryMs ?? 0;
    assertPeriod(pollEveryMs, 'pollEveryMs');
    this.started = true;
    this.executing = options.execute ?? true;
    this.reconcileTask.start();
    if (this.executing && pollEveryMs > 0) {
      this.pollTask = new PeriodicTask({
        clock: this.services.clock,
        everyMs: pollEveryMs,
        run: async () => {
          this.schedule();
          // Outside the lock: it only reads and aborts, like a local cancel.
          await this.cancelRequests.actOn(this.inFlight.values(), (flight, request) => {
            this.services.logger.info({ runId: request.runId, workOrderId: flight.workOrderId, requester: request.owner }, 'run canceled on request of another process');
            flight.cancelReason ??= REMOTE_CANCEL_REASON;
            this.services.engine.cancel(request.runId, REMOTE_CANCEL_REASON);
          });
        },
        onError: (error) => this.logFailure(error, 'queue poll failed'),
      });
      this.pollTask.start();
    }
    this.schedule();
  }

  close(options: QueueCloseOptions = {}): Promise<void> {
    this.closing ??= this.shutDown(options.drainMs ?? 0, options.cancelReason ?? DEFAULT_SHUTDOWN_REASON, options.handBack ?? false);
    return this.closing;
  }

  /**
   * Stops scheduling and reconciling, lets the runs in flight finish until `drainMs` passed, then
   * cancels the rest (they end `canceled` with `reason`; with `handBack` their work orders are queued
   * again instead) and waits for them. Queued work orders stay queued in the store for the next start.
   * Cancel requests from other processes are still acted on while the runs drain.
   */
  private async shutDown(drainMs: number, reason: string, handBack: boolean): Promise<void> {
    const { clock, engine, logger, workOrders } = this.services;
    // The pass, cancel or run-again holding the lock finishes first; a pass stops at its next check.
    await Promise.all([this.reconcileTask.stop(), this.exclusive(async () => undefined)]);
    const flights = [...this.inFlight.values()];
    const all = Promise.all(flights.map((flight) => flight.done));
    const drained = flights.length === 0 || (drainMs > 0 && (await settlesWithin(clock, all, drainMs)));
    if (!drained) {
      logger.warn({ runs: flights.length, drainMs, handBack }, 'queue shutdown cancels the runs still in flight');
      for (const flight of flights) {
        flight.cancelReason ??= reason;
        flight.handBack = handBack;
        if (flight.runId === undefined) continue;
        if (handBack) workOrders.handBack(flight.runId);
        engine.cancel(flight.runId, reason);
      }
    }
    await all;
    await this.pollTask?.stop();
  }

  /** Asks for a scheduling pass; passes coalesce (one runs, at most one more is pending). */
  private schedule(): void {
    if (!this.started || !this.executing || this.closing !== undefined) return;
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
      // A store hiccup: the next event, poll or reconciliation tick schedules again.
      this.logFailure(error, 'queue scheduling pass failed');
    });
  }

  /** Starts queued work orders, next first, while capacity allows. Runs under the lock. */
  private async pass(): Promise<void> {
    const { repos } = this.services;
    // Exclusive keys refused during this pass: later work orders with the same key wait without a try.
    const busy = new Set<string>();
    for (let offset = 0; ; ) {
      if (!this.canStart()) return;
      const page = await repos.workOrders.listQueued({ limit: PAGE_SIZE, offset });
      let left = 0;
      for (const workOrder of page.items) {
        if (!this.canStart()) return;
        if (this.inFlight.has(workOrder.id)) continue;
        // Cheap filter before the claim: still `queued` but a run of it is open — started outside the
        // queue, or left by a dead process (reconciliation closes that run and decides the work order's
        // status). Never two runs at once.
        if ((await this.openRun(workOrder.id)) !== undefined) continue;
        if (!this.canStart()) return;
        const outcome = await this.launch(workOrder, busy);
        if (outcome === 'retry_later') return;
        if (outcome === 'started' || outcome === 'failed') left += 1;
      }
      if (page.items.length < PAGE_SIZE) return;
      // Work orders this pass started or failed are no longer queued: the next page starts earlier.
      offset += PAGE_SIZE - left;
    }
  }

  private canStart(): boolean {
    return this.closing === undefined && this.inFlight.size < this.maxConcurrent;
  }

  /** Claims one work order and starts its run (queue-launch.ts). Runs under the lock. */
  private async launch(workOrder: StoredWorkOrder, busy: Set<string>): Promise<LaunchResult['outcome']> {
    const { engine, logger } = this.services;
    const flight: InFlight = { workOrderId: workOrder.id, runId: undefined, cancelReason: undefined, handBack: false, done: Promise.resolve() };
    this.inFlight.set(workOrder.id, flight);
    const launched = await launchClaimed(this.launchServices, workOrder, () => this.specFor(workOrder), busy);
    // Its env values are needed no more once the work order ran, failed, or went to another process.
    if (launched.outcome !== 'busy' && launched.outcome !== 'retry_later') this.submitted.delete(workOrder.id);
    if (launched.outcome !== 'started') {
      this.inFlight.delete(workOrder.id);
      return launched.outcome;
    }
    const { runId, done } = launched.run;
    flight.runId = runId;
    if (flight.cancelReason !== undefined) {
      if (flight.handBack) this.services.workOrders.handBack(runId);
      engine.cancel(runId, flight.cancelReason);
    }
    flight.done = done.then(
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
    return 'started';
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

  /** Records a cancel request for a run this process does not execute; its executor acts on it. */
  private async cancelElsewhere(runId: string, reason: string): Promise<void> {
    await this.cancelRequests.request(runId, this.services.engine.owner);
    this.services.logger.info({ runId, reason }, 'cancel of a run executed by another process recorded');
  }

  /** The id of the work order's latest run when that run is not terminal. */
  private async openRun(workOrderId: string): Promise<string | undefined> {
    const latest = (await this.services.repos.runs.list({ workOrderId, limit: 1, offset: 0 })).items[0];
    return latest === undefined || isTerminalState(latest.state) ? undefined : latest.id;
  }

  private logFailure(error: unknown, message: string): void {
    const classified = toAgentGateError(error, 'AG_ERR_STORE_WRITE');
    this.services.logger.error({ err: classified, code: classified.code }, message);
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

function assertPeriod(value: number, name: string): void {
  if (!Number.isFinite(value) || value < 0) throw new AgentGateError('AG_ERR_CONFIG_INVALID', `${name} must be 0 or more, got ${value}`);
}

function conflict(workOrderId: string, why: string): AgentGateError {
  return new AgentGateError('AG_ERR_API_CONFLICT', `work order ${workOrderId} cannot do this now: ${why}`, { details: { workOrderId } });
}
