/**
 * Reconciliation (SPEC 13, 14): a run left non-terminal by a process that died (crash, kill -9, power
 * loss) or stopped past its lease (SIGSTOP, laptop sleep) would otherwise stay "building" forever.
 * Every executing run holds a lease (`run:<runId>`, taken in the transaction that creates the run and
 * renewed by its engine). A run no live lease vouches for, unchanged for `staleAfterMs`, is taken over:
 * the reconciler acquires its lease (possible only because it expired), and a {@link RunActor} commits
 * `system_error` with `AG_ERR_RUN_INTERRUPTED` and the closing `run_failed` event through the same
 * commit point as the engine. Taking the lease is the fence: when the paused owner resumes, the store
 * refuses every write it attempts.
 *
 * Fast path: lease owners are `<host>:<pid>:<uuid>` (`defaultLeaseOwner`). When the owner ran on this
 * host, is not this process, and its pid no longer exists, the owner is provably gone: its lease is
 * released on its behalf and the run is reconciled at once, without waiting out the TTL and the stale
 * period. (A reused pid only makes this fall back to the slow path — it never closes a live run.)
 *
 * With `requeue`, the interrupted run still ends `failed` (a run never leaves a terminal state), but its
 * work order goes back to `queued` (`work_order_updated {status: queued, reason: interrupted}`) and the
 * queue runs it again.
 */
import { hostname } from 'node:os';
import type { StoredRun } from '../store/types.js';
import { killRunProcesses } from '../util/reap.js';
import { isCancelRequestKey } from './cancel-requests.js';
import { RunActor, type RunActorServices } from './run-actor.js';
import { leaseNow } from '../util/clock.js';

export interface ReconcileOptions extends RunActorServices {
  /** Lease owner id of this process (the engine's). */
  owner: string;
  /** TTL of the lease held while closing the run. */
  leaseTtlMs?: number;
  /** Default: 2 × the default lease TTL (120 s). */
  staleAfterMs?: number;
  /** Runs this process is executing right now (never touched). */
  activeRunIds?: ReadonlySet<string>;
  /** Put the work orders of interrupted runs back in the queue instead of leaving them failed. */
  requeue?: boolean;
  /** Whether a lease owner is provably gone (default {@link isOwnerGone} on this host). */
  ownerGone?: (owner: string) => boolean;
}

/** The reason on the work-order event of a reconciled run. */
export const INTERRUPTED_REASON = 'interrupted';

export const DEFAULT_STALE_AFTER_MS = 120_000;

/** Key of the lease an engine holds for each of its runs while it executes them. */
export function runLeaseKey(runId: string): string {
  return `run:${runId}`;
}

/** Fails (or re-queues) interrupted runs; returns the runs it closed. */
export async function reconcileInterruptedRuns(options: ReconcileOptions): Promise<StoredRun[]> {
  const { repos, clock, logger } = options;
  const now = clock.now();
  const staleAfter = options.staleAfterMs ?? DEFAULT_STALE_AFTER_MS;
  const ownerGone = options.ownerGone ?? ((owner: string) => isOwnerGone(owner));
  // Live leases by run: the run lease and the run's branch lease both vouch for a run; a cancel request
  // (cancel-requests.ts) is no sign of life.
  const live = new Map<string, string[]>();
  for (const lease of await repos.leases.listLive(new Date(now))) {
    if (!isCancelRequestKey(lease.key)) live.set(lease.runId, [...(live.get(lease.runId) ?? []), lease.owner]);
  }
  const reconciled: StoredRun[] = [];
  for (const run of await repos.runs.listNonTerminal()) {
    if (options.activeRunIds?.has(run.id)) continue;
    const lease = await repos.leases.get(runLeaseKey(run.id));
    const owners = live.get(run.id) ?? [];
    // Gone only when every live lease vouching for the run (run lease, branch lease) has a gone owner.
    const gone = lease !== null && lease.owner !== options.owner && ownerGone(lease.owner) && owners.every((owner) => owner === lease.owner || ownerGone(owner));
    if (gone) {
      // Released on behalf of the dead owner, so the takeover below can acquire it before it expires.
      await repos.leases.release({ key: lease.key, owner: lease.owner });
    } else {
      if (owners.length > 0) continue;
      if (now - Date.parse(run.updatedAt) < staleAfter) continue;
    }
    const closed = await takeOverAndFail(options, run, now, gone);
    if (closed !== null) reconciled.push(closed);
  }
  if (reconciled.length > 0) logger.warn({ runs: reconciled.map((run) => run.id) }, 'interrupted runs reconciled');
  return reconciled;
}

/** The parts of a lease owner id made by `defaultLeaseOwner()` (`<host>:<pid>:<uuid>`), or null. */
export function parseLeaseOwner(owner: string): { host: string; pid: number } | null {
  const match = /^(.+):(\d+):[^:]+$/.exec(owner);
  if (match === null) return null;
  const pid = Number(match[2]);
  return Number.isSafeInteger(pid) && pid > 0 ? { host: match[1] ?? '', pid } : null;
}

/**
 * True only when `owner` is provably gone: it ran on this host, it is not this process, and no process
 * with its pid exists (`kill(pid, 0)` fails with ESRCH; EPERM means a process exists). Anything else —
 * another host, an owner id of another shape, a live pid — is "not known to be gone".
 */
export function isOwnerGone(owner: string, host: string = hostname(), self: number = process.pid): boolean {
  const parsed = parseLeaseOwner(owner);
  if (parsed === null || parsed.host !== host || parsed.pid === self) return false;
  try {
    process.kill(parsed.pid, 0);
    return false;
  } catch (error) {
    return typeof error === 'object' && error !== null && 'code' in error && error.code === 'ESRCH';
  }
}

async function takeOverAndFail(options: ReconcileOptions, run: StoredRun, now: number, ownerGone: boolean): Promise<StoredRun | null> {
  const { repos } = options;
  const fence = { leaseKey: runLeaseKey(run.id), owner: options.owner };
  const ttlMs = options.leaseTtlMs ?? 60_000;
  // Someone else (another reconciler, the owner waking up in time) holds it: not ours to close.
  if (!(await repos.leases.acquire({ key: fence.leaseKey, owner: fence.owner, runId: run.id, ttlMs, ...leaseNow(options.clock) }))) return null;
  try {
    const iterations = (await repos.iterations.list(run.id)).length;
    const totals = { usage: { inputTokens: 0, outputTokens: 0, costUsd: 0, ...run.meta.usage }, unverified: run.meta.unverified ?? false, iterations };
    const actor = new RunActor(options, run, fence, () => totals);
    const closed = await actor.commit('system_error', {
      code: 'AG_ERR_RUN_INTERRUPTED',
      message: `the process running this run stopped while it was ${run.state} (${ownerGone ? 'its process no longer exists' : 'its lease expired'}); reconciled`,
      iteration: run.iteration,
    });
    if (actor.ownershipLost !== undefined) return null;
    // Processes the dead owner started (agent, tools, gates) may still run when no sandbox held them.
    const survivors = await killRunProcesses(run.id);
    if (survivors.length > 0) options.logger.error({ runId: run.id, survivors }, 'processes of an interrupted run survived SIGKILL');
    if (options.requeue === true) await options.workOrders.setStatus(run.workOrderId, 'queued', { runId: run.id, reason: INTERRUPTED_REASON });
    else await options.workOrders.runFinished(run.workOrderId, run.id, closed.state, INTERRUPTED_REASON);
    options.logger.warn({ runId: run.id, from: run.state }, 'interrupted run reconciled');
    return closed;
  } finally {
    await repos.leases.release({ key: fence.leaseKey, owner: fence.owner });
  }
}
