/**
 * How every process-based agent's end becomes one of SPEC 4's classifications. The parts that do not
 * depend on the CLI live here — cancellation, the idle watchdog, the deadline, a failed start — so a
 * protocol only decides what a process that *exited* meant.
 */
import { AgentGateError, type ErrorCode } from '../../errors.js';
import { assertNever } from '../../util/abort.js';
import type { ProcessResult } from '../../util/process.js';
import type { AgentFailureKind } from '../types.js';

/** The failure classification → error code mapping every driver follows (SPEC 4, Build). */
export const AGENT_FAILURE_CODES = {
  agent_crash: 'AG_ERR_PHASE_BUILD_AGENT_CRASH',
  agent_timeout: 'AG_ERR_PHASE_BUILD_AGENT_TIMEOUT',
  agent_task_failure: 'AG_ERR_PHASE_BUILD_AGENT_TASK_FAILURE',
} as const satisfies Record<AgentFailureKind, ErrorCode>;

export interface AgentFailure {
  failure: AgentFailureKind;
  error: AgentGateError;
}

/** How one invocation ended: success, canceled (reported by the base from the abort reason), or a failure. */
export type AgentClassification = 'ok' | 'aborted' | AgentFailure;

export interface FailOptions {
  cause?: unknown;
  retryable?: boolean;
  /** Overrides the code of the failure kind (e.g. `AG_ERR_AGENT_NOT_INSTALLED`, `AG_ERR_AGENT_PROTOCOL`). */
  code?: ErrorCode;
  /** Merged into the shared details. */
  details?: Record<string, unknown>;
}

export type FailFn = (failure: AgentFailureKind, message: string, options?: FailOptions) => AgentFailure;

/** A failure builder whose errors all carry `details` (plus what each call adds). */
export function failWith(details: Record<string, unknown>): FailFn {
  return (failure, message, options = {}) => ({
    failure,
    error: new AgentGateError(options.code ?? AGENT_FAILURE_CODES[failure], message, {
      details: options.details === undefined ? details : { ...details, ...options.details },
      ...(options.cause === undefined ? {} : { cause: options.cause }),
      ...(options.retryable === undefined ? {} : { retryable: options.retryable }),
    }),
  });
}

export interface ProcessStopContext {
  /** `Claude Code`, `codex`, `The agent` — the subject of the messages. */
  agent: string;
  idleTimeoutMs: number;
  /** The last stderr line, redacted ('' when none). */
  lastStderrLine: string;
  fail: FailFn;
  /** The failure for a spawn that found no executable (ENOENT / EACCES); default: a plain crash. */
  notInstalled?: (code: string, cause: Error | undefined) => AgentFailure;
}

/**
 * Classifies every outcome but a normal exit: cancel → `aborted`; idle watchdog and run deadline →
 * `agent_timeout`; a failed start → `agent_crash`. Returns undefined for `exited`, which the protocol
 * classifies from what the agent said.
 */
export function classifyProcessStop(process: Pick<ProcessResult, 'outcome' | 'durationMs' | 'error'>, ctx: ProcessStopContext): AgentClassification | undefined {
  const tail = ctx.lastStderrLine === '' ? '' : `: ${ctx.lastStderrLine}`;
  switch (process.outcome) {
    case 'aborted':
      return 'aborted';
    case 'spawn_error': {
      const code = (process.error as NodeJS.ErrnoException | undefined)?.code;
      if ((code === 'ENOENT' || code === 'EACCES') && ctx.notInstalled !== undefined) return ctx.notInstalled(code, process.error);
      return ctx.fail('agent_crash', `${ctx.agent} could not be started: ${process.error?.message ?? 'unknown error'}`, { cause: process.error });
    }
    case 'idle_timeout':
      return ctx.fail('agent_timeout', `${ctx.agent} produced no output for ${ctx.idleTimeoutMs} ms and was stopped${tail}`);
    case 'timeout':
      return ctx.fail('agent_timeout', `${ctx.agent} was stopped at the run deadline after ${process.durationMs} ms${tail}`);
    case 'exited':
      return undefined;
    default:
      return assertNever(process.outcome);
  }
}

/**
 * A canceled agent reports *canceled*, not failed. When the signal was aborted with an AgentGateError as
 * its typed reason (e.g. the run's wall clock), that error is kept so the engine can tell why; a timeout
 * reason makes the failure kind `agent_timeout`.
 */
export function cancellationOf(signal: AbortSignal, agent: string): AgentFailure {
  const reason: unknown = signal.reason;
  const error = reason instanceof AgentGateError ? reason : new AgentGateError('AG_ERR_RUN_CANCELED', `${agent} was stopped because the run was canceled.`, { cause: reason });
  const failure: AgentFailureKind = error.code === 'AG_ERR_RUN_TIMEOUT' || error.code === 'AG_ERR_PHASE_BUILD_AGENT_TIMEOUT' ? 'agent_timeout' : 'agent_crash';
  return { error, failure };
}

/** `exit 3`, `signal SIGKILL`, `idle_timeout` … for transcript markers and messages. */
export function describeProcessEnd(result: Pick<ProcessResult, 'outcome' | 'exitCode' | 'signal'>): string {
  if (result.outcome !== 'exited') return result.outcome;
  return result.exitCode === null ? `signal ${result.signal ?? 'unknown'}` : `exit ${result.exitCode}`;
}
