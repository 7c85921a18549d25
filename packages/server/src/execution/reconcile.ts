/**
 * Start-up reconciliation (SPEC 13, 14): a run left non-terminal by a process that died (crash,
 * kill -9, power loss) would otherwise stay "building" forever. Every executing run holds a lease
 * (`run:<runId>`, taken in the transaction that creates the run and renewed by its engine); runs that
 * no live lease vouches for and that have not changed for `staleAfterMs` are failed with
 * `AG_ERR_RUN_INTERRUPTED`, followed by `run_failed`. The grace period is a second safety margin for
 * runs written by an older AgentGate that did not lease them.
 */
import type { Logger } from 'pino';
import { isTerminalState } from '../orchestrator/state-machine.js';
import type { ProgressEmitter } from '../observability/progress-emitter.js';
import type { RunStore, StoredRun } from '../store/types.js';
import type { Clock } from '../util/clock.js';

export interface ReconcileOptions {
  store: RunStore;
  emitter: ProgressEmitter;
  clock: Clock;
  logger: Logger;
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

/** Fails interrupted runs; returns the runs it reconciled. */
export function reconcileInterruptedRuns(options: ReconcileOptions): StoredRun[] {
  const { store, emitter, clock, logger } = options;
  const now = clock.now();
  const staleAfter = options.staleAfterMs ?? DEFAULT_STALE_AFTER_MS;
  const live = new Set(store.listLiveLeases(new Date(now)).map((lease) => lease.runId));
  const reconciled: StoredRun[] = [];
  for (const run of store.listNonTerminalRuns()) {
    if (live.has(run.id) || options.activeRunIds?.has(run.id)) continue;
    if (now - Date.parse(run.updatedAt) < staleAfter) continue;
    const outcome = store.runInTransaction(() => {
      const current = store.getRun(run.id);
      if (current === null || isTerminalState(current.state)) return null;
      return store.transition(run.id, 'system_error', {
        at: new Date(now).toISOString(),
        error: { code: 'AG_ERR_RUN_INTERRUPTED', message: `the process running this run died while it was ${current.state}; reconciled at start-up`, iteration: current.iteration },
      });
    });
    if (outcome === null) continue;
    emitter.publish(outcome.event);
    // A follower waiting for the run's last event gets one.
    emitter.emit(run.id, 'run_failed', {
      result: outcome.run.result ?? 'failed_error',
      iterations: outcome.run.iteration,
      branch: outcome.run.branch ?? '',
      durationMs: now - Date.parse(outcome.run.createdAt),
      error: outcome.run.error,
      usage: outcome.run.meta.usage ?? { inputTokens: 0, outputTokens: 0, costUsd: 0 },
    });
    store.updateWorkOrderStatus(run.workOrderId, 'failed');
    store.appendWorkOrderEvent(run.workOrderId, 'work_order_updated', { status: 'failed', runId: run.id });
    logger.warn({ runId: run.id, from: run.state }, 'interrupted run reconciled');
    reconciled.push(outcome.run);
  }
  return reconciled;
}
