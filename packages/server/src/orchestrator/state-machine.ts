/**
 * The run state machine (SPEC section 3): pure data and pure functions, no I/O.
 *
 * The engine is the only caller that changes a run's state: it calls {@link applyTransition},
 * persists the new run together with its `run_state_changed` event, and only then emits.
 */
import { AgentGateError } from '../errors.js';

export const RunState = {
  Queued: 'queued',
  Leased: 'leased',
  Building: 'building',
  Snapshotting: 'snapshotting',
  Verifying: 'verifying',
  Feedback: 'feedback',
  PrCreated: 'pr_created',
  CiPolling: 'ci_polling',
  Succeeded: 'succeeded',
  Failed: 'failed',
  Canceled: 'canceled',
} as const;
export type RunState = (typeof RunState)[keyof typeof RunState];

export const RunEvent = {
  WorkspaceAcquired: 'workspace_acquired',
  BuildStarted: 'build_started',
  BuildCompleted: 'build_completed',
  BuildFailed: 'build_failed',
  SnapshotCompleted: 'snapshot_completed',
  SnapshotFailed: 'snapshot_failed',
  VerifyPassed: 'verify_passed',
  VerifyFailedRetryable: 'verify_failed_retryable',
  VerifyFailedTerminal: 'verify_failed_terminal',
  FeedbackGenerated: 'feedback_generated',
  PrCreated: 'pr_created',
  CiPollingStarted: 'ci_polling_started',
  CiPassed: 'ci_passed',
  CiFailed: 'ci_failed',
  CiTimeout: 'ci_timeout',
  UserCanceled: 'user_canceled',
  SystemError: 'system_error',
  Timeout: 'timeout',
} as const;
export type RunEvent = (typeof RunEvent)[keyof typeof RunEvent];

export const RunResult = {
  Passed: 'passed',
  FailedVerification: 'failed_verification',
  FailedBuild: 'failed_build',
  FailedTimeout: 'failed_timeout',
  FailedError: 'failed_error',
  Canceled: 'canceled',
} as const;
export type RunResult = (typeof RunResult)[keyof typeof RunResult];

export const ALL_STATES: readonly RunState[] = Object.values(RunState);
export const ALL_EVENTS: readonly RunEvent[] = Object.values(RunEvent);
export const ALL_RESULTS: readonly RunResult[] = Object.values(RunResult);

export const TERMINAL_STATES = ['succeeded', 'failed', 'canceled'] as const satisfies readonly RunState[];
export type TerminalState = (typeof TERMINAL_STATES)[number];
export type NonTerminalState = Exclude<RunState, TerminalState>;

/** One row of the transition table: the target state and, for terminal targets, the result. */
export interface TransitionTarget {
  readonly to: RunState;
  readonly result?: RunResult;
}

/** Events every non-terminal state accepts (SPEC 3, the three universal rows). */
const UNIVERSAL = {
  user_canceled: { to: 'canceled', result: 'canceled' },
  system_error: { to: 'failed', result: 'failed_error' },
  timeout: { to: 'failed', result: 'failed_timeout' },
} as const;

/**
 * The transition table. Typed with `satisfies` so a missing state fails to compile; every
 * (state, event) pair not listed is invalid.
 */
export const TRANSITIONS = {
  queued: { workspace_acquired: { to: 'leased' }, ...UNIVERSAL },
  leased: { build_started: { to: 'building' }, ...UNIVERSAL },
  building: {
    build_completed: { to: 'snapshotting' },
    build_failed: { to: 'failed', result: 'failed_build' },
    ...UNIVERSAL,
  },
  snapshotting: {
    snapshot_completed: { to: 'verifying' },
    snapshot_failed: { to: 'failed', result: 'failed_error' },
    ...UNIVERSAL,
  },
  verifying: {
    verify_passed: { to: 'succeeded', result: 'passed' },
    verify_failed_retryable: { to: 'feedback' },
    verify_failed_terminal: { to: 'failed', result: 'failed_verification' },
    pr_created: { to: 'pr_created' },
    ...UNIVERSAL,
  },
  feedback: {
    feedback_generated: { to: 'building' },
    // The seed's Bug #65: a run in feedback whose strategy stops must fail as a verification failure.
    verify_failed_terminal: { to: 'failed', result: 'failed_verification' },
    ...UNIVERSAL,
  },
  pr_created: {
    ci_polling_started: { to: 'ci_polling' },
    verify_passed: { to: 'succeeded', result: 'passed' },
    ...UNIVERSAL,
  },
  ci_polling: {
    ci_passed: { to: 'succeeded', result: 'passed' },
    ci_failed: { to: 'feedback' },
    ci_timeout: { to: 'failed', result: 'failed_timeout' },
    ...UNIVERSAL,
  },
  succeeded: {},
  failed: {},
  canceled: {},
} as const satisfies Record<RunState, Partial<Record<RunEvent, TransitionTarget>>>;

type Table = typeof TRANSITIONS;

/** `TransitionMap[S]` is the union of events state `S` accepts (`never` for terminal states). */
export type TransitionMap = { [S in RunState]: keyof Table[S] & RunEvent };

/** The state reached from `S` on event `E`, at the type level. */
export type NextState<S extends RunState, E extends TransitionMap[S]> = Table[S][E] extends { to: infer T extends RunState } ? T : never;

export interface RunErrorInfo {
  code: string;
  message: string;
  phase?: string;
  iteration?: number;
}

export interface Run {
  readonly id: string;
  readonly workOrderId: string;
  readonly state: RunState;
  /** 1-based iteration currently running or last run. */
  readonly iteration: number;
  readonly maxIterations: number;
  readonly result: RunResult | null;
  readonly error: RunErrorInfo | null;
  readonly createdAt: string;
  readonly updatedAt: string;
  readonly completedAt: string | null;
}

/** A run statically known to be in state `S`. */
export type RunIn<S extends RunState> = Omit<Run, 'state'> & { readonly state: S };

export interface CreateRunInput {
  id: string;
  workOrderId: string;
  maxIterations: number;
  /** ISO timestamp; defaults to now. */
  createdAt?: string;
}

export interface TransitionDetail {
  /** Recorded as the run's `error` (typically on failure). */
  error?: RunErrorInfo;
  /** ISO timestamp of the transition; defaults to now. Pass it to keep a call fully deterministic. */
  at?: string;
}

export class InvalidTransitionError extends AgentGateError {
  readonly from: RunState;
  readonly event: RunEvent;

  constructor(from: RunState, event: RunEvent) {
    super('AG_ERR_RUN_INVALID_TRANSITION', `Invalid transition: ${from} + ${event}`, { details: { from, event } });
    this.from = from;
    this.event = event;
  }
}

export function createRun(input: CreateRunInput): Run {
  if (!Number.isInteger(input.maxIterations) || input.maxIterations < 1) {
    throw new AgentGateError('AG_ERR_SCHEMA_INVALID', `maxIterations: must be a positive integer, got ${String(input.maxIterations)}`);
  }
  const at = input.createdAt ?? new Date().toISOString();
  return {
    id: input.id,
    workOrderId: input.workOrderId,
    state: 'queued',
    iteration: 1,
    maxIterations: input.maxIterations,
    result: null,
    error: null,
    createdAt: at,
    updatedAt: at,
    completedAt: null,
  };
}

export function isTerminalState(state: RunState): state is TerminalState {
  return (TERMINAL_STATES as readonly RunState[]).includes(state);
}

function lookup(state: RunState, event: RunEvent): TransitionTarget | undefined {
  const row: Partial<Record<RunEvent, TransitionTarget>> = TRANSITIONS[state];
  return Object.prototype.hasOwnProperty.call(row, event) ? row[event] : undefined;
}

export function canTransition(state: RunState, event: RunEvent): boolean {
  return lookup(state, event) !== undefined;
}

export function getNextState(state: RunState, event: RunEvent): RunState | null {
  return lookup(state, event)?.to ?? null;
}

/**
 * Applies one event to a run and returns the new run; the input is never mutated.
 * Entering a terminal state sets `result` (from the table) and `completedAt`; `feedback_generated`
 * starts the next iteration; `detail.error` is recorded as the run's error.
 * @throws InvalidTransitionError when the table has no row for (run.state, event).
 */
export function applyTransition(run: Run, event: RunEvent, detail: TransitionDetail = {}): Run {
  const target = lookup(run.state, event);
  if (target === undefined) throw new InvalidTransitionError(run.state, event);
  const at = detail.at ?? new Date().toISOString();
  const terminal = isTerminalState(target.to);
  return {
    ...run,
    state: target.to,
    iteration: event === 'feedback_generated' ? run.iteration + 1 : run.iteration,
    // Every row into a terminal state carries its result; other rows carry none and keep the old value.
    result: target.result ?? run.result,
    error: detail.error ?? run.error,
    updatedAt: at,
    completedAt: terminal ? at : run.completedAt,
  };
}

/**
 * Compile-time checked transition: `transition(run as Run & { state: 'queued' }, 'ci_passed')` does
 * not compile. The runtime behaviour is {@link applyTransition}.
 */
export function transition<S extends RunState, E extends TransitionMap[S]>(
  run: RunIn<S>,
  event: E,
  detail?: TransitionDetail,
): RunIn<NextState<S, E>> {
  return applyTransition(run, event, detail) as RunIn<NextState<S, E>>;
}

/** All (state, event, target) rows of the table, in table order. */
export function listTransitions(): Array<{ from: RunState; event: RunEvent; to: RunState; result?: RunResult }> {
  const rows: Array<{ from: RunState; event: RunEvent; to: RunState; result?: RunResult }> = [];
  for (const from of ALL_STATES) {
    for (const event of ALL_EVENTS) {
      const target = lookup(from, event);
      if (target) rows.push(target.result ? { from, event, to: target.to, result: target.result } : { from, event, to: target.to });
    }
  }
  return rows;
}
