/**
 * Small pieces every process-based agent driver (command, claude-code, codex) needs the same way:
 * how a cancellation is reported, how a process's end is described, and the last line of its stderr.
 */
import { constants } from 'node:fs';
import { access, stat } from 'node:fs/promises';
import path from 'node:path';
import { AgentGateError } from '../errors.js';
import type { ProcessResult } from '../util/process.js';
import type { AgentFailureKind, AgentRequest, AgentRunContext } from './types.js';

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

/**
 * Why an agent must not be started at all: the run deadline already passed, or the workspace is gone.
 * Undefined when it may start.
 */
export async function startBlocker(request: AgentRequest, ctx: AgentRunContext, agent: string): Promise<{ failure: AgentFailureKind; error: AgentGateError } | undefined> {
  if (request.deadline !== undefined && request.deadline <= ctx.clock.now()) {
    const error = new AgentGateError('AG_ERR_PHASE_BUILD_AGENT_TIMEOUT', `${agent} was not started: the run deadline passed ${ctx.clock.now() - request.deadline} ms ago.`, {
      details: { iteration: request.iteration, deadline: request.deadline },
    });
    return { failure: 'agent_timeout', error };
  }
  if (!(await isDirectory(request.workspacePath))) {
    const error = new AgentGateError('AG_ERR_PHASE_BUILD_AGENT_CRASH', `${agent} was not started: the workspace ${request.workspacePath} is not a directory.`, {
      details: { iteration: request.iteration, workspacePath: request.workspacePath },
    });
    return { failure: 'agent_crash', error };
  }
  return undefined;
}

/** The executable `name` resolves to: a path (relative to `cwd`) or a lookup in `searchPath`. */
export async function resolveExecutable(name: string, searchPath: string | undefined, cwd = process.cwd()): Promise<string | undefined> {
  const candidates = name.includes('/')
    ? [path.resolve(cwd, name)]
    : (searchPath ?? '')
        .split(path.delimiter)
        .filter((dir) => dir !== '')
        .map((dir) => path.join(dir, name));
  for (const candidate of candidates) {
    if (await isExecutableFile(candidate)) return candidate;
  }
  return undefined;
}

async function isExecutableFile(file: string): Promise<boolean> {
  try {
    if (!(await stat(file)).isFile()) return false;
    await access(file, constants.X_OK);
    return true;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'EACCES' || code === 'ENOTDIR' || code === 'ELOOP') return false;
    throw error;
  }
}

async function isDirectory(dir: string): Promise<boolean> {
  try {
    return (await stat(dir)).isDirectory();
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return false;
    throw error;
  }
}
