/**
 * Checks made before an agent process is started: the deadline and the workspace, the executable, and
 * option values shared by several CLIs.
 */
import { constants } from 'node:fs';
import { access, stat } from 'node:fs/promises';
import path from 'node:path';
import { AgentGateError } from '../../errors.js';
import type { Clock } from '../../util/clock.js';
import type { AgentRequest } from '../types.js';
import type { AgentFailure } from './classification.js';

/**
 * Why an agent must not be started at all: the run deadline already passed, or the workspace is gone.
 * Undefined when it may start.
 */
export async function startBlocker(request: Pick<AgentRequest, 'deadline' | 'iteration' | 'workspacePath'>, clock: Clock, agent: string): Promise<AgentFailure | undefined> {
  if (request.deadline !== undefined && request.deadline <= clock.now()) {
    const error = new AgentGateError('AG_ERR_PHASE_BUILD_AGENT_TIMEOUT', `${agent} was not started: the run deadline passed ${clock.now() - request.deadline} ms ago.`, {
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

/** Whether `value` is an absolute http(s) URL (a model API base URL). */
export function isHttpUrl(value: unknown): boolean {
  if (typeof value !== 'string') return false;
  try {
    const url = new URL(value);
    return url.protocol === 'http:' || url.protocol === 'https:';
  } catch (error) {
    if (error instanceof TypeError) return false;
    throw error;
  }
}

/** `value`, or undefined when it is missing or blank (an environment variable set to ''). */
export function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value.trim() === '' ? undefined : value;
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
