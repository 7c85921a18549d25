/**
 * Starting one queued work order (the queue's `launch`, work-order-queue.ts): its exclusive key, the
 * claim through `engine.start(spec, { claim: true })`, and what a refusal means for the work order.
 * Several processes may try the same work order at once; the store lets exactly one claim win.
 */
import type { Logger } from 'pino';
import { toAgentGateError } from '../errors.js';
import type { ResolvedTaskSpec } from '../schemas/resolve.js';
import type { StoredWorkOrder } from '../store/types.js';
import type { ExecutionEngine, StartedRun } from './engine.js';
import type { ExclusiveKeyPolicy } from './exclusive-key.js';
import type { WorkOrderService } from './work-order-service.js';

/** What the queue needs of the engine (the narrow view keeps tests and the seam honest). */
export type QueueEngine = Pick<ExecutionEngine, 'admit' | 'start' | 'cancel' | 'owner'>;

export interface LaunchServices {
  readonly engine: QueueEngine;
  readonly workOrders: WorkOrderService;
  readonly logger: Logger;
  readonly exclusiveKey: ExclusiveKeyPolicy;
}

/**
 * - `started`: this process claimed the work order and its run executes here;
 * - `claimed_elsewhere`: another process claimed it (or it was canceled) first — not ours any more;
 * - `busy`: its exclusive key is held by an unfinished run — it stays queued for a later pass;
 * - `retry_later`: a passing refusal (store busy or unreachable, a lease still held) — it stays queued
 *   and the pass stops; the next event, poll or reconciliation tick tries again;
 * - `failed`: every other refusal (its spec is no longer admissible here): the work order was failed with
 *   the reason, so it cannot block the queue.
 */
export type LaunchResult =
  | { readonly outcome: 'started'; readonly run: StartedRun }
  | { readonly outcome: 'claimed_elsewhere' | 'busy' | 'retry_later' | 'failed' };

/**
 * Claims `workOrder` and starts its run. `busy` holds the exclusive keys refused earlier in the same
 * pass: a work order with one of them is not tried again (`busy`), and a new refusal adds its key.
 * `specOf` may throw (a stored spec this build cannot read): that fails the work order.
 */
export async function launchClaimed(
  services: LaunchServices,
  workOrder: StoredWorkOrder,
  specOf: () => ResolvedTaskSpec,
  busy: Set<string>,
): Promise<LaunchResult> {
  let exclusiveKey: string | undefined;
  try {
    const spec = specOf();
    exclusiveKey = await services.exclusiveKey(spec);
    if (exclusiveKey !== undefined && busy.has(exclusiveKey)) return { outcome: 'busy' };
    const run = await services.engine.start(spec, {
      workOrderId: workOrder.id,
      source: workOrder.source,
      claim: true,
      ...(exclusiveKey !== undefined && { exclusiveKey }),
    });
    return { outcome: 'started', run };
  } catch (error) {
    return { outcome: await startRefused(services, workOrder, error, exclusiveKey, busy) };
  }
}

async function startRefused(
  services: LaunchServices,
  workOrder: StoredWorkOrder,
  error: unknown,
  exclusiveKey: string | undefined,
  busy: Set<string>,
): Promise<Exclude<LaunchResult['outcome'], 'started'>> {
  const { logger, workOrders } = services;
  const classified = toAgentGateError(error);
  const fields = { code: classified.code, workOrderId: workOrder.id };
  if (classified.code === 'AG_ERR_WORK_ORDER_CLAIMED') {
    logger.debug(fields, 'queued work order was claimed by another process first');
    return 'claimed_elsewhere';
  }
  if (classified.code === 'AG_ERR_RUN_EXCLUSIVE_BUSY') {
    logger.debug({ ...fields, exclusiveKey }, 'queued work order waits for an unfinished run on the same repository branch');
    if (exclusiveKey !== undefined) busy.add(exclusiveKey);
    return 'busy';
  }
  if (classified.retryable || classified.code === 'AG_ERR_LEASE_HELD') {
    logger.warn({ err: classified, ...fields }, 'queued work order could not start yet');
    return 'retry_later';
  }
  logger.error({ err: classified, ...fields }, 'queued work order could not start');
  await workOrders.setStatus(workOrder.id, 'failed', { reason: `${classified.code}: ${classified.message}` });
  return 'failed';
}
