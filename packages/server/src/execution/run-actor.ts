/**
 * The run actor: one object per run that owns the run's snapshot (the stored row it last committed),
 * its abort scope and the single {@link RunActor.commit} through which every transition goes — the
 * engine's and the reconciler's alike.
 *
 * `commit(event)` flushes the events emitted so far, applies the state machine to the snapshot (an
 * illegal event is a bug and throws before anything is written), and hands the store one fenced,
 * version-checked write: the run row, `run_state_changed` and — when the run becomes terminal — its
 * closing event (`run_completed` / `run_failed` / `run_canceled`). Only then are the stored events
 * published. A write the store refuses for ownership (lease lost, already terminal, version conflict)
 * ends the actor's ownership: it writes nothing more for the run, ever.
 *
 * `execute()` drives a run through the step table (`steps/index.ts`): look up the step of the current
 * state, run it, commit the event it returns — unless the scope was aborted meanwhile, in which case
 * the typed abort reason decides the event (`abortOutcome`). Cleanup (workspace removal, delivery
 * finalize, lease release) runs outside the abortable scope with its own time limit.
 */
import type { Logger } from 'pino';
import { AgentGateError, toAgentGateError } from '../errors.js';
import type { EmitFn, UsageTotals } from '../observability/events.js';
import { applyTransition, isTerminalState, type NonTerminalState, type RunErrorInfo, type RunEvent, type RunState } from '../orchestrator/state-machine.js';
import type { Fence, Repositories } from '../store/repositories.js';
import type { NewEvent, RunMeta, StoredRun } from '../store/types.js';
import { abortReason, abortWith, leaseLost, storeFailed, type RunAbort } from '../util/abort.js';
import type { TimerClock } from '../util/clock.js';
import { redact } from '../util/secrets.js';
import { retryStoreWrite } from '../util/store-retry.js';
import { RunEventWriter, type RunEventSink } from './event-writer.js';
import { publishedBranch } from './run-branch.js';
import type { WorkOrderService } from './work-order-service.js';

/** Services every actor needs, executing or adopting. */
export interface RunActorServices {
  repos: Repositories;
  hub: RunEventSink;
  workOrders: WorkOrderService;
  clock: TimerClock;
  logger: Logger;
  /** Secret values redacted from every stored error message. */
  secrets: readonly string[];
}

/** What the closing event reports about the run. */
export interface RunTotals {
  usage: UsageTotals;
  unverified: boolean;
  iterations: number;
}

/** Store errors that mean "this process no longer owns the run". */
const OWNERSHIP_CODES = new Set(['AG_ERR_LEASE_LOST', 'AG_ERR_RUN_ALREADY_TERMINAL', 'AG_ERR_STORE_CONFLICT']);

export class RunActor {
  readonly runId: string;
  readonly workOrderId: string;
  readonly fence: Fence;
  readonly logger: Logger;
  private current: StoredRun;
  private readonly scope = new AbortController();
  private readonly writer: RunEventWriter;
  private readonly startedAt: number;
  private lostOwnership: AgentGateError | undefined;
  /** Runs before a terminal commit (closes the open iteration). */
  private beforeTerminal: () => Promise<void> = () => Promise.resolve();

  constructor(
    private readonly services: RunActorServices,
    run: StoredRun,
    fence: Fence,
    private readonly totals: () => RunTotals,
    options: { startedAt?: number } = {},
  ) {
    this.runId = run.id;
    this.workOrderId = run.workOrderId;
    this.current = run;
    this.fence = fence;
    this.startedAt = options.startedAt ?? Date.parse(run.createdAt);
    this.logger = services.logger.child({ runId: run.id, workOrderId: run.workOrderId });
    this.writer = new RunEventWriter(run.id, fence, services.hub, this.logger, (error) => this.onWriteRefused(error), (write) => this.retried(write));
  }

  /** The run as last committed. */
  get run(): StoredRun {
    return this.current;
  }

  get state(): RunState {
    return this.current.state;
  }

  get signal(): AbortSignal {
    return this.scope.signal;
  }

  /** Set once the store refused a write for ownership; the actor then writes nothing more. */
  get ownershipLost(): AgentGateError | undefined {
    return this.lostOwnership;
  }

  /** Emits an event of this run (persisted in order before delivery; see RunEventWriter). */
  readonly emit: EmitFn = (type, data) => {
    this.writer.emit(type, data);
  };

  /** Aborts the run's scope; the first reason wins. */
  abort(reason: RunAbort): void {
    abortWith(this.scope, reason);
  }

  /** Registers the hook that runs before the terminal commit (at most one). */
  onBeforeTerminal(hook: () => Promise<void>): void {
    this.beforeTerminal = hook;
  }

  /** Everything emitted so far is persisted (or refused). */
  flush(): Promise<void> {
    return this.writer.flush();
  }

  /** The state the run is in while it is not terminal. */
  nonTerminalState(): NonTerminalState | undefined {
    const state = this.current.state;
    return isTerminalState(state) ? undefined : state;
  }

  /**
   * The one commit point. Returns the committed run; when ownership was lost (now or before) it writes
   * nothing and returns the last snapshot.
   * @throws InvalidTransitionError when `event` is illegal from the current state (a bug; nothing written);
   *   the store's error when the store failed for another reason.
   */
  async commit(event: RunEvent, error?: RunErrorInfo): Promise<StoredRun> {
    if (this.lostOwnership !== undefined) return this.current;
    const at = new Date(this.services.clock.now()).toISOString();
    const stored = error === undefined ? undefined : { ...error, message: redact(error.message, [...this.services.secrets]) };
    // Pure first: an illegal event throws here, before any write.
    const next = applyTransition(this.current, event, stored === undefined ? { at } : { at, error: stored });
    let closing: NewEvent | undefined;
    if (isTerminalState(next.state)) {
      await this.beforeTerminal();
      await this.writer.flush();
      this.writer.stop();
      closing = this.closingEvent(next.state, next.result ?? 'failed_error', next.error, at);
    } else {
      await this.writer.flush();
    }
    if (this.lostOwnership !== undefined) return this.current;
    try {
      const outcome = await this.retried(() => this.services.repos.runs.commit(this.runId, {
        event,
        fence: this.fence,
        at,
        expectedVersion: this.current.version,
        ...(stored !== undefined && { error: stored }),
        ...(closing !== undefined && { closing }),
      }));
      this.current = outcome.run;
      this.services.hub.publish(outcome.events);
      return outcome.run;
    } catch (caught) {
      const classified = toAgentGateError(caught, 'AG_ERR_STORE_WRITE');
      if (OWNERSHIP_CODES.has(classified.code)) {
        this.loseOwnership(classified);
        return this.current;
      }
      throw classified;
    }
  }

  /** Merges into the run's metadata (fenced). */
  async updateMeta(patch: Partial<RunMeta>): Promise<void> {
    if (this.lostOwnership !== undefined) return;
    try {
      this.current = await this.retried(() => this.services.repos.runs.updateMeta(this.runId, patch, this.fence));
    } catch (caught) {
      const classified = toAgentGateError(caught, 'AG_ERR_STORE_WRITE');
      if (!OWNERSHIP_CODES.has(classified.code)) throw classified;
      this.loseOwnership(classified);
    }
  }

  /** The typed reason the scope was aborted with. */
  abortReason(): RunAbort {
    return abortReason(this.scope.signal);
  }

  private closingEvent(state: 'succeeded' | 'failed' | 'canceled', result: NonNullable<StoredRun['result']>, error: RunErrorInfo | null, at: string): NewEvent {
    const { usage, unverified, iterations } = this.totals();
    const branch = publishedBranch(this.current) ?? '';
    const durationMs = this.services.clock.now() - this.startedAt;
    switch (state) {
      case 'succeeded':
        return { type: 'run_completed', timestamp: at, data: { result, iterations, branch, durationMs, unverified, usage: { ...usage } } };
      case 'canceled':
        return { type: 'run_canceled', timestamp: at, data: { iterations, branch, durationMs, reason: error?.message ?? 'canceled' } };
      case 'failed':
        return { type: 'run_failed', timestamp: at, data: { result, iterations, branch, durationMs, error, usage: { ...usage } } };
      default: {
        const unreachable: never = state;
        throw new AgentGateError('AG_ERR_INTERNAL', `unknown terminal state ${String(unreachable)}`);
      }
    }
  }

  /** A store write of this run, retried while the store is briefly unreachable or busy. */
  retried<T>(write: () => Promise<T>): Promise<T> {
    return retryStoreWrite(write, {
      clock: this.services.clock,
      onRetry: (error, attempt, delayMs) => this.logger.warn({ code: error.code, err: error, attempt, delayMs }, 'store unavailable; retrying the run\'s write'),
    });
  }

  private onWriteRefused(error: AgentGateError): void {
    if (OWNERSHIP_CODES.has(error.code)) this.loseOwnership(error);
    else this.abort(storeFailed(error));
  }

  private loseOwnership(error: AgentGateError): void {
    if (this.lostOwnership !== undefined) return;
    this.lostOwnership = error;
    this.writer.stop();
    this.logger.warn({ code: error.code, err: error }, 'run ownership lost; this process writes nothing more for it');
    this.abort(leaseLost(`this process no longer owns the run: ${error.message}`));
  }
}
