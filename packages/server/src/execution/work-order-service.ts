/**
 * WorkOrderService: the one place a work order's status changes and its events are written and
 * published. The engine calls it when a run starts and ends; the reconciler when it closes a run a
 * dead process left open; the API (issue 9) when a work order is queued or canceled. Each status change
 * is one store write (status + `work_order_updated`, atomically) followed by delivery through the hub
 * on the work order's own sequence.
 */
import type { Logger } from 'pino';
import type { RunState } from '../orchestrator/state-machine.js';
import type { WorkOrderRepository } from '../store/repositories.js';
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

export class WorkOrderService {
  constructor(private readonly options: WorkOrderServiceOptions) {}

  /** Publishes the `work_order_created` event written together with a new work order. */
  created(event: StoredWorkOrderEvent | null): void {
    if (event !== null) this.options.hub.publishWorkOrder(event);
  }

  async runStarted(workOrderId: string, runId: string): Promise<StoredWorkOrder> {
    return this.setStatus(workOrderId, 'running', { runId });
  }

  /** Records the end of a run (called after the run's terminal commit). */
  async runFinished(workOrderId: string, runId: string, state: RunState, reason?: string): Promise<StoredWorkOrder> {
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
