/**
 * Reconciliation (SPEC 13, 14): a run left non-terminal by a process that died (crash, kill -9, power
 * loss) or stopped past its lease (SIGSTOP, laptop sleep) would otherwise stay "building" forever.
 * Every executing run holds a lease (`run:<runId>`, taken in the transaction that creates the run and
 * renewed by its engine). A run no live lease vouches for, unchanged for `staleAfterMs`, is taken over:
 * the reconciler acquires its lease (possible only because it expired), and a {@link RunActor} commits
 * `system_error` with `AG_ERR_RUN_INTERRUPTED` and the closing `run_failed` event through the same
 * commit point as the engine. Taking the lease is the fence: when the paused owner resumes, the store
 * refuses every write it attempts.
 */
import type { StoredRun } from '../store/types.js';
import { killRunProcesses } from '../util/reap.js';
import { RunActor, type RunActorServices } from './run-actor.js';

export interface ReconcileOptions extends RunActorServices {
  /** Lease owner id of this process (the engine's). */
  owner: string;
  /** TTL of the lease held while closing the run. */
  leaseTtlMs?: number;
  /** Default: 2 × the default lease TTL (120 s). */
  staleAfterMs?: number;
  /** Runs this process is executing right now (never touched). */
  activeRunIds?: ReadonlySet<string>;
}

export const DEFAULT_STALE_AFTER_MS = 120_000;

/** Key of the lease an engine holds for each of its runs while it executes them. */
export function runLeaseKey(runId: string): string {
  return `run:${runId}`;
}

/** Fails interrupted runs; returns the runs it closed. */
export async function reconcileInterruptedRuns(options: ReconcileOptions): Promise<StoredRun[]> {
  const { repos, clock, logger } = options;
  const now = clock.now();
  const staleAfter = options.staleAfterMs ?? DEFAULT_STALE_AFTER_MS;
  const live = new Set((await repos.leases.listLive(new Date(now))).map((lease) => lease.runId));
  const reconciled: StoredRun[] = [];
  for (const run of await repos.runs.listNonTerminal()) {
    if (live.has(run.id) || options.activeRunIds?.has(run.id)) continue;
    if (now - Date.parse(run.updatedAt) < staleAfter) continue;
    const closed = await takeOverAndFail(options, run, now);
    if (closed !== null) reconciled.push(closed);
  }
  if (reconciled.length > 0) logger.warn({ runs: reconciled.map((run) => run.id) }, 'interrupted runs reconciled');
  return reconciled;
}

async function takeOverAndFail(options: ReconcileOptions, run: StoredRun, now: number): Promise<StoredRun | null> {
  const { repos } = options;
  const fence = { leaseKey: runLeaseKey(run.id), owner: options.owner };
  const ttlMs = options.leaseTtlMs ?? 60_000;
  // Someone else (another reconciler, the owner waking up in time) holds it: not ours to close.
  if (!(await repos.leases.acquire({ key: fence.leaseKey, owner: fence.owner, runId: run.id, ttlMs, now: new Date(now) }))) return null;
  try {
    const iterations = (await repos.iterations.list(run.id)).length;
    const totals = { usage: { inputTokens: 0, outputTokens: 0, costUsd: 0, ...run.meta.usage }, unverified: run.meta.unverified ?? false, iterations };
    const actor = new RunActor(options, run, fence, () => totals);
    const closed = await actor.commit('system_error', {
      code: 'AG_ERR_RUN_INTERRUPTED',
      message: `the process running this run stopped while it was ${run.state} (its lease expired); reconciled`,
      iteration: run.iteration,
    });
    if (actor.ownershipLost !== undefined) return null;
    // Processes the dead owner started (agent, tools, gates) may still run when no sandbox held them.
    const survivors = await killRunProcesses(run.id);
    if (survivors.length > 0) options.logger.error({ runId: run.id, survivors }, 'processes of an interrupted run survived SIGKILL');
    await options.workOrders.runFinished(run.workOrderId, run.id, closed.state, 'interrupted');
    options.logger.warn({ runId: run.id, from: run.state }, 'interrupted run reconciled');
    return closed;
  } finally {
    await repos.leases.release({ key: fence.leaseKey, owner: fence.owner });
  }
}
