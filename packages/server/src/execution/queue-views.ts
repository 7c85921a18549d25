/**
 * Read-only views of the durable queue (`GET /api/v1/queue`, a work order's position): the store's
 * queued work orders, less those this process is starting right now (still `queued` in the store until
 * their claim commits — they count as running).
 */
import type { QueueEntry, QueueSnapshot } from '../server/contracts.js';
import type { WorkOrderRepository } from '../store/repositories.js';

/** Entries listed by a snapshot at most (its `depth` still counts all). */
export const SNAPSHOT_MAX_ENTRIES = 1_000;
/** Work orders read per page while looking for a position. */
const PAGE_SIZE = 64;

export interface QueueViewSource {
  readonly workOrders: Pick<WorkOrderRepository, 'get' | 'listQueued'>;
  /** Work orders this process has in flight (starting or running). */
  readonly inFlight: ReadonlySet<string> | ReadonlyMap<string, unknown>;
  readonly maxConcurrent: number;
}

export async function queueSnapshot({ workOrders, inFlight, maxConcurrent }: QueueViewSource): Promise<QueueSnapshot> {
  const page = await workOrders.listQueued({ limit: SNAPSHOT_MAX_ENTRIES + inFlight.size, offset: 0 });
  const waiting = page.items.filter((workOrder) => !inFlight.has(workOrder.id));
  const entries: QueueEntry[] = waiting.slice(0, SNAPSHOT_MAX_ENTRIES).map((workOrder, index) => ({
    workOrderId: workOrder.id,
    position: index + 1,
    queuedAt: workOrder.updatedAt,
  }));
  return { depth: page.total - (page.items.length - waiting.length), running: inFlight.size, maxConcurrent, entries };
}

/** 1 = next to start; null when the work order is not waiting. */
export async function queuePosition({ workOrders, inFlight }: QueueViewSource, workOrderId: string): Promise<number | null> {
  if (inFlight.has(workOrderId)) return null;
  const workOrder = await workOrders.get(workOrderId);
  if (workOrder === null || workOrder.status !== 'queued') return null;
  let position = 0;
  for (let offset = 0; ; offset += PAGE_SIZE) {
    const page = await workOrders.listQueued({ limit: PAGE_SIZE, offset });
    for (const queued of page.items) {
      if (inFlight.has(queued.id)) continue;
      position += 1;
      if (queued.id === workOrderId) return position;
    }
    if (page.items.length < PAGE_SIZE) return null;
  }
}
