/**
 * What the end of a codex invocation means (SPEC 4 classifications) and when a failed resume should
 * start over in a new thread. Pure; tested without a process.
 */
import { AgentGateError } from '../../errors.js';
import { assertNever } from '../../util/abort.js';
import type { ProcessResult } from '../../util/process.js';
import { classifyProcessStop, failWith, type AgentClassification } from '../process-driver/classification.js';
import type { AgentRequest } from '../types.js';
import type { CodexStreamSummary } from './events.js';
import { CODEX_AGENT_NAME, CODEX_BIN_ENV } from './options.js';

/** Why a codex turn failed, read from its message (codex prints no status field). */
export type CodexFailureCause =
  | { kind: 'api'; httpStatus?: number; description: string }
  | { kind: 'config'; description: string }
  | { kind: 'task'; description: string };

/**
 * Classifies a `turn.failed` / `error` message of codex-cli 0.169.0. Model API and connection errors are
 * crashes of the infrastructure (`agent_crash`, retryable); a missing credential is a configuration crash;
 * anything else — e.g. the model's context window running out — is the agent failing the task.
 *
 * codex names the HTTP status for most errors (`unexpected status 502 Bad Gateway: …`,
 * `exceeded retry limit, last status: 429 …`) but renders HTTP 500 only as "We're currently
 * experiencing high demand…", and a 400 as the raw JSON error body.
 */
export function classifyCodexFailure(message: string): CodexFailureCause {
  const status = /\b(?:unexpected status|last status:?)\s+(\d{3})\b/i.exec(message)?.[1];
  if (status !== undefined) return { kind: 'api', httpStatus: Number(status), description: `the model API returned HTTP ${status}` };
  if (/experiencing high demand/i.test(message)) return { kind: 'api', httpStatus: 500, description: 'the model API returned HTTP 500 (Internal Server Error)' };
  if (/^\s*\{\s*"error"\s*:/.test(message)) return { kind: 'api', description: 'the model API rejected the request (HTTP 4xx)' };
  if (/stream disconnected|idle timeout waiting for SSE|connection failed|error sending request|waiting for network|timed out/i.test(message)) {
    return { kind: 'api', description: 'the connection to the model API failed' };
  }
  if (/quota exceeded|rate limit|usage limit|out of credits|spend cap|at capacity|unauthorized|invalid api key|incorrect api key/i.test(message)) {
    return { kind: 'api', description: 'the model API refused the request' };
  }
  if (/missing environment variable|not logged in|login required|codex login/i.test(message)) {
    return { kind: 'config', description: 'codex has no credentials for the model API (set OPENAI_API_KEY or run `codex login`)' };
  }
  return { kind: 'task', description: 'codex reported that the turn failed' };
}

/** One codex invocation's end, as classified. */
export interface CodexRunOutcome {
  process: Pick<ProcessResult, 'outcome' | 'exitCode' | 'signal' | 'durationMs' | 'error' | 'stderr'>;
  stream: CodexStreamSummary;
  /** Last non-empty stderr line, redacted. */
  lastStderrLine: string;
  /** The binary asked for (named when it cannot be started). */
  binary: string;
  /** Added to the error's details. */
  extraDetails?: Record<string, unknown>;
}

/**
 * Maps how codex ended to SPEC 4's classifications: the idle watchdog and the deadline are
 * `agent_timeout`; a `turn.failed` is classified by {@link classifyCodexFailure}; exit 0 with a completed
 * turn is success; any other exit, or exit 0 without a `turn.completed`, is `agent_crash`.
 */
export function classifyCodexRun(outcome: CodexRunOutcome, request: Pick<AgentRequest, 'iteration' | 'idleTimeoutMs'>, clean: (text: string) => string = (text) => text): AgentClassification {
  const { process: result, stream: summary, lastStderrLine } = outcome;
  const tail = lastStderrLine === '' ? '' : `: ${lastStderrLine}`;
  const fail = failWith({
    iteration: request.iteration,
    exitCode: result.exitCode,
    signal: result.signal,
    outcome: result.outcome,
    lastStderrLine,
    ...(summary.threadId === undefined ? {} : { sessionId: summary.threadId }),
    ...outcome.extraDetails,
  });
  const stopped = classifyProcessStop(result, {
    agent: 'codex',
    idleTimeoutMs: request.idleTimeoutMs,
    lastStderrLine,
    fail,
    notInstalled: (_code, cause) => ({ failure: 'agent_crash', error: codexNotInstalled(outcome.binary, cause) }),
  });
  if (stopped !== undefined) return stopped;

  const failedWith = summary.turnFailure ?? (result.exitCode === 0 ? undefined : summary.errors.at(-1));
  if (failedWith !== undefined) {
    const message = clean(failedWith);
    const cause = classifyCodexFailure(message);
    const details = { codexMessage: message, ...(cause.kind === 'api' && cause.httpStatus !== undefined ? { httpStatus: cause.httpStatus } : {}) };
    switch (cause.kind) {
      case 'api':
      case 'config':
        return fail('agent_crash', `codex failed because ${cause.description}: ${message}`, { details });
      case 'task':
        return fail('agent_task_failure', `codex failed the task: ${message}`, { details });
      default:
        return assertNever(cause);
    }
  }
  if (result.exitCode === null) return fail('agent_crash', `codex was killed by signal ${result.signal ?? 'unknown'}${tail}`);
  if (result.exitCode !== 0) return fail('agent_crash', `codex exited with code ${result.exitCode}${tail}`);
  if (summary.turnsCompleted === 0) return fail('agent_crash', `codex exited without a result message (no turn.completed event)${tail}`);
  return 'ok';
}

/** A resume whose thread does not exist: codex exits 1 before starting a thread. */
export function codexThreadNotFound({ process: result, stream }: Pick<CodexRunOutcome, 'process' | 'stream'>): boolean {
  return result.outcome === 'exited' && result.exitCode !== 0 && stream.threadId === undefined && /no rollout found|thread\/resume failed/i.test(result.stderr);
}

/** `AG_ERR_AGENT_NOT_INSTALLED` with how to install codex. */
export function codexNotInstalled(binary: string, cause?: unknown): AgentGateError {
  return new AgentGateError(
    'AG_ERR_AGENT_NOT_INSTALLED',
    `The codex CLI was not found ("${binary}"). Install it with \`npm install -g @openai/codex\`, or set ${CODEX_BIN_ENV} to the path of the codex binary.`,
    cause === undefined ? { details: { agent: CODEX_AGENT_NAME, binary } } : { details: { agent: CODEX_AGENT_NAME, binary }, cause },
  );
}
