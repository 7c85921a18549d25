/**
 * Small pieces every process-based agent driver (command, claude-code, codex) needs the same way:
 * how a cancellation is reported, how a process's end is described, and the last line of its stderr.
 */
import { AgentGateError } from '../errors.js';
import type { ProcessResult } from '../util/process.js';
import type { AgentFailureKind } from './types.js';

/**
 * A canceled agent reports *canceled*, not failed. When the signal was aborted with an AgentGateError as
 * its typed reason (e.g. the run's wall clock), that error is kept so the engine can tell why; a timeout
 * reason makes the failure kind `agent_timeout`.
 */
export function cancellationOf(signal: AbortSignal, agent: string): { error: AgentGateError; failure: AgentFailureKind } {
  const reason: unknown = signal.reason;
  const error = reason instanceof AgentGateError ? reason : new AgentGateError('AG_ERR_RUN_CANCELED', `${agent} was stopped because the run was canceled.`, { cause: reason });
  const failure: AgentFailureKind = error.code === 'AG_ERR_RUN_TIMEOUT' || error.code === 'AG_ERR_PHASE_BUILD_AGENT_TIMEOUT' ? 'agent_timeout' : 'agent_crash';
  return { error, failure };
}

/** `exit 3`, `signal SIGKILL`, `idle_timeout` … for transcript markers and messages. */
export function describeProcessEnd(result: ProcessResult): string {
  if (result.outcome !== 'exited') return result.outcome;
  return result.exitCode === null ? `signal ${result.signal ?? 'unknown'}` : `exit ${result.exitCode}`;
}

/** The last non-empty line of `text`, at most 500 characters (for error messages). */
export function lastLine(text: string): string {
  const lines = text.split('\n').map((l) => l.trim()).filter((l) => l !== '');
  const last = lines.at(-1) ?? '';
  return last.length > 500 ? `${last.slice(0, 500)}…` : last;
}
