/**
 * What the end of a claude invocation means (SPEC 4 classifications), and when a failed resume should
 * start over in a new session. Pure; tested without a process.
 */
import type { ProcessResult } from '../../util/process.js';
import { classifyProcessStop, failWith, type AgentClassification } from '../process-driver/classification.js';
import { CLAUDE_CODE_AGENT_NAME, CLAUDE_CODE_BIN_ENV } from './options.js';
import type { ClaudeResult } from './stream.js';

export type ClaudeRunClassification = AgentClassification;

export interface ClaudeRunOutcome {
  process: Pick<ProcessResult, 'outcome' | 'exitCode' | 'signal' | 'durationMs' | 'error'>;
  result: ClaudeResult | undefined;
  sessionId?: string;
  /** Last non-empty stderr line, redacted. */
  lastStderrLine: string;
  idleTimeoutMs: number;
  iteration: number;
  /** Added to the error's details. */
  extraDetails?: Record<string, unknown>;
}

/** Install hint used when the binary is missing. */
export const CLAUDE_CODE_INSTALL_HINT = `Install Claude Code (npm install -g @anthropic-ai/claude-code) or set ${CLAUDE_CODE_BIN_ENV} to the path of the claude binary.`;

/**
 * Maps how claude ended to SPEC 4's classifications:
 * - the idle watchdog / run deadline → `agent_timeout`; cancel → aborted;
 * - a result with `is_error` caused by the model API (`terminal_reason: api_error` or an
 *   `api_error_status`) → `agent_crash` naming the HTTP status (retryable unless a 4xx other than 408/429);
 * - any other `is_error` result (`error_max_turns`, `error_during_execution` …) → `agent_task_failure`;
 *   `subtype` is `success` even for API errors, so it is never the test;
 * - no result line, a non-zero exit after success, a signal, a failed spawn → `agent_crash`.
 */
export function classifyClaudeRun(outcome: ClaudeRunOutcome): ClaudeRunClassification {
  const { process: proc, result, lastStderrLine } = outcome;
  const tail = lastStderrLine === '' ? '' : `: ${lastStderrLine}`;
  const fail = failWith({
    agent: CLAUDE_CODE_AGENT_NAME,
    iteration: outcome.iteration,
    outcome: proc.outcome,
    exitCode: proc.exitCode,
    signal: proc.signal,
    ...(outcome.sessionId === undefined ? {} : { sessionId: outcome.sessionId }),
    ...(result === undefined ? {} : { subtype: result.subtype, terminalReason: result.terminalReason, apiErrorStatus: result.apiErrorStatus, numTurns: result.numTurns }),
    ...(lastStderrLine === '' ? {} : { lastStderrLine }),
    ...outcome.extraDetails,
  });
  const stopped = classifyProcessStop(proc, {
    agent: 'Claude Code',
    idleTimeoutMs: outcome.idleTimeoutMs,
    lastStderrLine,
    fail,
    notInstalled: (code, cause) => fail('agent_crash', `Claude Code could not be started (${code}). ${CLAUDE_CODE_INSTALL_HINT}`, { cause, code: 'AG_ERR_AGENT_NOT_INSTALLED' }),
  });
  if (stopped !== undefined) return stopped;

  if (result !== undefined) {
    const said = boundMessage(result.errors.length > 0 ? result.errors.join('; ') : (result.text ?? ''));
    if (result.isError && (result.terminalReason === 'api_error' || result.apiErrorStatus !== undefined)) {
      const status = result.apiErrorStatus;
      const retryable = status === undefined || status >= 500 || status === 408 || status === 429;
      const what = status === undefined ? 'The model API request failed' : `The model API failed with HTTP ${status}`;
      return fail('agent_crash', `${what}${said === '' ? '' : `: ${said}`}`, { retryable });
    }
    if (result.isError) {
      const why = [result.subtype, result.terminalReason].filter((s) => s !== undefined).join(', ');
      return fail('agent_task_failure', `Claude Code reported that the task failed${why === '' ? '' : ` (${why})`}${said === '' ? '' : `: ${said}`}`);
    }
    if (proc.exitCode === 0) return 'ok';
    if (proc.exitCode === null) return fail('agent_crash', `Claude Code was killed by signal ${proc.signal ?? 'unknown'} after its result${tail}`);
    return fail('agent_crash', `Claude Code exited with code ${proc.exitCode} after a successful result${tail}`);
  }
  if (proc.exitCode === null) return fail('agent_crash', `Claude Code was killed by signal ${proc.signal ?? 'unknown'} before its result message${tail}`);
  if (proc.exitCode === 0) {
    return fail('agent_crash', 'Claude Code exited without a result message (its stream-json output ended early).', { code: 'AG_ERR_AGENT_PROTOCOL' });
  }
  return fail('agent_crash', `Claude Code exited with code ${proc.exitCode} and no result message${tail}`);
}

/**
 * A resume that failed before a session started: claude prints no `system/init`, only an `is_error`
 * result with zero turns (observed: `error_during_execution`, "No conversation found with session ID").
 */
export function claudeSessionNotFound(end: { process: Pick<ProcessResult, 'outcome'>; sawInit: boolean; result: ClaudeResult | undefined }): boolean {
  const { result } = end;
  return (
    end.process.outcome === 'exited' &&
    !end.sawInit &&
    result !== undefined &&
    result.isError &&
    (result.numTurns ?? 0) === 0 &&
    result.terminalReason !== 'api_error' &&
    result.apiErrorStatus === undefined
  );
}

function boundMessage(text: string): string {
  const line = text.trim();
  return line.length > 500 ? `${line.slice(0, 500)}…` : line;
}
