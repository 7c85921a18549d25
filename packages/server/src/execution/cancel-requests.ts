/**
 * Cancel requests across processes (issue 14): `DELETE /api/v1/work-orders/:id` on node A for a run that
 * worker B executes. A cannot abort B's run; it records the request durably in the shared store, and B's
 * queue, which looks at its runs every poll (`work-order-queue.ts`), aborts the run with the typed
 * cancel — the run ends `canceled` through its own commit, exactly as a local cancel.
 *
 * The request is a row of the lease table: key `cancel:<runId>`, owned by the requesting process, for
 * {@link CANCEL_REQUEST_TTL_MS}. Why not the run row (`runs.updateMeta(runId, { cancelRequested }, null)`,
 * which the store allows unfenced)? Every write to the run row bumps its version, and the executing run
 * actor commits with `expectedVersion`: its next commit would fail `AG_ERR_STORE_CONFLICT` and B would
 * lose its run. A work-order status write has no compare-and-set, so it could overwrite a final status
 * written a moment earlier. A lease row touches neither; reconciliation ignores these keys (a request
 * never vouches for a run's liveness).
 *
 * Best effort by nature: a request for a run that ends first is simply never acted on (the row expires).
 */
import type { LeaseRepository } from '../store/repositories.js';
import type { Lease } from '../store/types.js';
import { leaseNow, type Clock } from '../util/clock.js';

/** Prefix of the lease keys that are cancel requests, not ownership. */
export const CANCEL_REQUEST_PREFIX = 'cancel:';
/** How long a request stays pending: far beyond any poll period, short enough to clean itself up. */
export const CANCEL_REQUEST_TTL_MS = 10 * 60_000;
/** The reason a run canceled on another node's request ends with. */
export const REMOTE_CANCEL_REASON = 'canceled via the API (request recorded by another node)';

export function cancelRequestKey(runId: string): string {
  return `${CANCEL_REQUEST_PREFIX}${runId}`;
}

export function isCancelRequestKey(key: string): boolean {
  return key.startsWith(CANCEL_REQUEST_PREFIX);
}

export class CancelRequests {
  constructor(
    private readonly leases: Pick<LeaseRepository, 'acquire' | 'get' | 'release'>,
    private readonly clock: Clock,
  ) {}

  /**
   * Records that `runId` is to be canceled by whichever process executes it. Idempotent: when another
   * requester's request is pending already, that one stands.
   */
  async request(runId: string, requester: string): Promise<void> {
    await this.leases.acquire({ key: cancelRequestKey(runId), owner: requester, runId, ttlMs: CANCEL_REQUEST_TTL_MS, ...leaseNow(this.clock) });
  }

  /** The pending request for `runId`, or null. */
  async pending(runId: string): Promise<Lease | null> {
    const lease = await this.leases.get(cancelRequestKey(runId));
    return lease !== null && Date.parse(lease.expiresAt) > this.clock.now() ? lease : null;
  }

  /** Removes a request once it was acted on. */
  async clear(request: Lease): Promise<void> {
    await this.leases.release({ key: request.key, owner: request.owner });
  }

  /**
   * Calls `cancel` for each of `runs` (those with a run id) that has a pending request, then removes
   * the request. The executing process calls it on its poll period.
   */
  async actOn<R extends { readonly runId: string | undefined }>(runs: Iterable<R>, cancel: (run: R, request: Lease) => void): Promise<void> {
    for (const run of [...runs]) {
      if (run.runId === undefined) continue;
      const request = await this.pending(run.runId);
      if (request === null) continue;
      cancel(run, request);
      await this.clear(request);
    }
  }
}
