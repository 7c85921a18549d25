/** Names, defaults and option checks of the `claude-code` driver (see ./index.ts for the invocation). */
import { AgentGateError } from '../../errors.js';
import type { Env } from '../../util/secrets.js';
import { isHttpUrl } from '../process-driver/preflight.js';
import type { AgentOptions } from '../types.js';

/** Name under which the driver is registered (`agentType` / `--agent`). */
export const CLAUDE_CODE_AGENT_NAME = 'claude-code';

/** Server environment variable naming the claude binary (path or bare name looked up on PATH). */
export const CLAUDE_CODE_BIN_ENV = 'AGENTGATE_CLAUDE_BIN';

/**
 * Tools the agent may use without asking when the task does not name its own list. Covers editing,
 * reading and running commands (tests, builds); web access and sub-agents stay off unless asked for.
 */
export const CLAUDE_CODE_DEFAULT_ALLOWED_TOOLS: readonly string[] = ['Bash', 'Edit', 'Write', 'Read', 'Glob', 'Grep', 'MultiEdit', 'NotebookEdit', 'TodoWrite'];

/** See the module comment: the permission mode that works as root and never prompts. */
export const CLAUDE_CODE_PERMISSION_MODE = 'acceptEdits';
/** Environment the driver always sets for claude (on top of `request.env`). */
export const CLAUDE_CODE_FIXED_ENV: Readonly<Record<string, string>> = {
  // No telemetry, feature-flag or connectivity traffic: the only host contacted is the model API.
  CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: '1',
  DISABLE_AUTOUPDATER: '1',
};

export interface ClaudeCodeDriverConfig {
  /** Path or bare name of the claude binary. Default: `AGENTGATE_CLAUDE_BIN` from `env`, else `claude` on PATH. */
  binary?: string;
  /**
   * The server's environment: where `AGENTGATE_CLAUDE_BIN` is read and whose secret values are redacted
   * from events and the transcript (besides those of `request.env`). Default `process.env`.
   */
  env?: Env;
  /** Time between SIGTERM and SIGKILL when claude is stopped. Default 2 s (util/process). */
  killGraceMs?: number;
  /** How long to wait for stopped agent processes to be gone before reporting survivors. Default 3 s. */
  reapTimeoutMs?: number;
}

/**
 * Checks a task's claude-code options when it is submitted, so a bad value is a 400 / exit 2 rather
 * than a failed first build.
 *
 * @throws AgentGateError `AG_ERR_CONFIG_INVALID` naming the option.
 */
export function validateClaudeCodeOptions(options: AgentOptions): void {
  const invalid = (option: string, message: string): AgentGateError =>
    new AgentGateError('AG_ERR_CONFIG_INVALID', `claude-code option "${option}" ${message}`, { details: { agent: CLAUDE_CODE_AGENT_NAME, option } });
  if (options.maxTurns !== undefined && !(Number.isInteger(options.maxTurns) && options.maxTurns > 0)) {
    throw invalid('maxTurns', `must be a positive integer (got ${String(options.maxTurns)}).`);
  }
  if (options.allowedTools !== undefined) {
    if (!Array.isArray(options.allowedTools) || options.allowedTools.length === 0) throw invalid('allowedTools', 'must list at least one tool.');
    const bad = options.allowedTools.find((tool) => typeof tool !== 'string' || tool.trim() === '');
    if (bad !== undefined) throw invalid('allowedTools', `must contain only non-empty tool names (got ${JSON.stringify(bad)}).`);
  }
  if (options.model !== undefined && (typeof options.model !== 'string' || options.model.trim() === '')) {
    throw invalid('model', 'must be a non-empty model name.');
  }
  if (options.baseUrl !== undefined && !isHttpUrl(options.baseUrl)) {
    throw invalid('baseUrl', `must be an http(s) URL (got ${JSON.stringify(options.baseUrl)}).`);
  }
}

