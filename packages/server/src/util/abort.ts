/**
 * Typed cancellation. A run's signal is only ever aborted with a {@link RunAbort}: an AgentGateError
 * whose `kind` says why (canceled, timed out, lease lost, store failed). Everything that stops because
 * the signal fired reports that same error through {@link abortError}, so a run whose wall clock ran out
 * during the build, a snapshot or a gate says *timeout* in its phase event, its iteration record and its
 * terminal transition — never *canceled*. The run actor maps the reason to its terminal event in
 * {@link abortOutcome}: the one place the reason is read.
 */
import { AgentGateError, type ErrorCode } from '../errors.js';
import type { RunErrorInfo } from '../orchestrator/state-machine.js';

export type AbortKind = 'canceled' | 'timeout' | 'lease_lost' | 'store_failed';

const CODES = {
  canceled: 'AG_ERR_RUN_CANCELED',
  timeout: 'AG_ERR_RUN_TIMEOUT',
  lease_lost: 'AG_ERR_LEASE_LOST',
  store_failed: 'AG_ERR_STORE_WRITE',
} as const satisfies Record<AbortKind, ErrorCode>;

export class RunAbort extends AgentGateError {
  readonly kind: AbortKind;

  constructor(kind: AbortKind, message: string, cause?: unknown, code: ErrorCode = CODES[kind]) {
    super(code, message, cause === undefined ? {} : { cause });
    this.kind = kind;
  }
}

export function runCanceled(reason: string): RunAbort {
  return new RunAbort('canceled', reason);
}

export function runTimedOut(limitMs: number): RunAbort {
  return new RunAbort('timeout', `run exceeded its wall clock of ${Math.round(limitMs / 1000)} s`);
}

export function leaseLost(detail = 'the run lost its lease (expired or taken over)'): RunAbort {
  return new RunAbort('lease_lost', detail);
}

export function storeFailed(cause: unknown): RunAbort {
  const message = cause instanceof Error ? cause.message : String(cause);
  // A full disk keeps its own code, so the run's error says what to fix.
  const code = cause instanceof AgentGateError && cause.code === 'AG_ERR_DISK_FULL' ? cause.code : CODES.store_failed;
  return new RunAbort('store_failed', `the store refused a write of this run: ${message}`, cause, code);
}

/** The reason a signal was aborted with, as a {@link RunAbort} (a foreign reason counts as a cancel). */
export function abortReason(signal: AbortSignal): RunAbort {
  const reason: unknown = signal.reason;
  if (reason instanceof RunAbort) return reason;
  return new RunAbort('canceled', 'aborted', reason);
}

/**
 * The error a step reports when it stopped because `signal` fired: the typed reason when the signal
 * carries one (so a timeout stays a timeout), otherwise AG_ERR_RUN_CANCELED naming what was stopped.
 */
export function abortError(signal: AbortSignal, what: string): AgentGateError {
  const reason: unknown = signal.reason;
  if (reason instanceof AgentGateError) return reason;
  return new AgentGateError('AG_ERR_RUN_CANCELED', `Canceled while trying to ${what}`, { cause: reason });
}

/** Aborts with `reason` unless already aborted (the first reason wins). */
export function abortWith(controller: AbortController, reason: RunAbort): void {
  if (!controller.signal.aborted) controller.abort(reason);
}

/** The terminal event and stored error of a run whose signal fired. */
export function abortOutcome(reason: RunAbort, iteration: number): { event: 'user_canceled' | 'timeout' | 'system_error'; error: RunErrorInfo } {
  const error: RunErrorInfo = { code: reason.code, message: reason.message, iteration };
  switch (reason.kind) {
    case 'canceled':
      return { event: 'user_canceled', error };
    case 'timeout':
      return { event: 'timeout', error };
    case 'lease_lost':
    case 'store_failed':
      return { event: 'system_error', error };
    default:
      return assertNever(reason.kind);
  }
}

export function assertNever(value: never): never {
  throw new AgentGateError('AG_ERR_INTERNAL', `unhandled value ${String(value)}`);
}
