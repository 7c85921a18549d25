/**
 * WorkOrderService: the one place a work order's status changes and its events are written and
 * published. The engine calls it when a run starts and ends; the reconciler when it closes a run a
 * dead process left open; the API (issue 9) when a work order is queued or canceled. Each status change
 * is one store write (status + `work_order_updated`, atomically) followed by delivery through the hub
 * on the work order's own sequence.
 *
 * A queued work order started by the queue is *claimed* by `runs.create({ claim: true })`: the store
 * sets it `running` in the transaction that creates the run (exactly one worker wins). The service then
 * only publishes that event; `runStarted` writes no second `running`.
 */
import type { Logger } from 'pino';
import type { RunState } from '../orchestrator/state-machine.js';
import type { CreateRunResult, WorkOrderRepository } from '../store/repositories.js';
import type { StoredWorkOrder, StoredWorkOrderEvent, WorkOrderStatus } from '../store/types.js';
import type { Clock } from '../util/clock.js';

/** Where work-order events go once stored (the event hub). */
export interface WorkOrderEventSink {
  publishWorkOrder(event: StoredWorkOrderEvent): void;
}

export interface WorkOrderServiceOptions {
  workOrders: WorkOrderRepository;
  hub: WorkOrderEventSink;
  clock: Clock;
  logger: Logger;
}

/** The work-order status a finished run leaves behind. */
export function workOrderStatusOf(state: RunState): WorkOrderStatus {
  switch (state) {
    case 'succeeded':
      return 'succeeded';
    case 'canceled':
      return 'canceled';
    case 'failed':
      return 'failed';
    case 'queued':
      return 'queued';
    default:
      return 'running';
  }
}

/** Reason on the `work_order_updated {status: queued}` of a work order a draining worker handed back. */
export const HANDED_BACK_REASON = 'handed_back';

export class WorkOrderService {
  /** Runs whose `running` the claim wrote with the run: `runStarted` writes nothing for them. */
  private readonly claimed = new Set<string>();
  /** Runs whose work order goes back to `queued` (not `canceled`) when they end canceled. */
  private readonly handedBack = new Set<string>();

  constructor(private readonly options: WorkOrderServiceOptions) {}

  /** Publishes the `work_order_created` event written together with a new work order. */
  created(event: StoredWorkOrderEvent | null): void {
    if (event !== null) this.options.hub.publishWorkOrder(event);
  }

  /**
   * Publishes what `runs.create` wrote of the work order (`work_order_created` and/or the claim's
   * `work_order_updated {status: running}`), in seq order. `claimed`: the create claimed the work order.
   */
  runCreated(result: CreateRunResult, options: { readonly claimed: boolean }): void {
    for (const event of result.workOrderEvents) this.options.hub.publishWorkOrder(event);
    if (options.claimed) this.claimed.add(result.run.id);
  }

  /** The work order becomes `running` — unless its claim already made it so with this run. */
  async runStarted(workOrderId: string, runId: string): Promise<void> {
    if (this.claimed.delete(runId)) return;
    await this.setStatus(workOrderId, 'running', { runId });
  }

  /**
   * Marks a run as handed back (a draining worker cancels it at its deadline): when it ends `canceled`
   * its work order is queued again for another worker instead of ending canceled.
   */
  handBack(runId: string): void {
    this.handedBack.add(runId);
  }

  /** Drops what the service remembers of a run once its execution ended, however it ended. */
  forget(runId: string): void {
    this.claimed.delete(runId);
    this.handedBack.delete(runId);
  }

  /** Records the end of a run (called after the run's terminal commit). */
  async runFinished(workOrderId: string, runId: string, state: RunState, reason?: string): Promise<StoredWorkOrder> {
    if (this.handedBack.delete(runId) && state === 'canceled') return this.setStatus(workOrderId, 'queued', { runId, reason: HANDED_BACK_REASON });
    return this.setStatus(workOrderId, workOrderStatusOf(state), reason === undefined ? { runId } : { runId, reason });
  }

  async setStatus(workOrderId: string, status: WorkOrderStatus, data: { runId?: string; reason?: string }): Promise<StoredWorkOrder> {
    const at = new Date(this.options.clock.now()).toISOString();
    const { workOrder, event } = await this.options.workOrders.setStatus(workOrderId, status, data, at);
    this.options.hub.publishWorkOrder(event);
    this.options.logger.debug({ workOrderId, status, runId: data.runId }, 'work order status changed');
    return workOrder;
  }
}
