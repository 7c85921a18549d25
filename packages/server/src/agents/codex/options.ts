/** Names, configuration and option checks of the `codex` driver (see ./index.ts for the invocation). */
import { AgentGateError } from '../../errors.js';
import type { Env } from '../../util/secrets.js';
import { isHttpUrl } from '../process-driver/preflight.js';
import type { AgentOptions } from '../types.js';

/** Name under which the driver is registered (`agent.driver: codex`). */
export const CODEX_AGENT_NAME = 'codex';

/** Environment variable naming the codex binary when the factory config does not. */
export const CODEX_BIN_ENV = 'AGENTGATE_CODEX_BIN';

/** Environment variable that lowers codex's retries (request, stream, connection); unset = codex defaults. */
export const CODEX_MAX_RETRIES_ENV = 'AGENTGATE_CODEX_MAX_RETRIES';

/** Id of the custom model provider configured when a base URL is set. */
export const CODEX_PROVIDER_ID = 'agentgate';

export interface CodexDriverConfig {
  /**
   * The codex executable: a path, or a bare name looked up on the agent environment's PATH. Default:
   * `AGENTGATE_CODEX_BIN` from the agent environment, else `codex`.
   */
  binary?: string;
  /** Environment whose secret values are redacted in addition to those of `request.env`. Default `process.env`. */
  secretEnv?: Env;
  /** Time between SIGTERM and SIGKILL when codex is stopped. Default 2 s (util/process). */
  killGraceMs?: number;
  /** How long to wait for stopped processes to be gone before reporting survivors. Default 3 s. */
  reapTimeoutMs?: number;
}

/**
 * Checks a TaskSpec's agent options for codex when the task is submitted. codex exec has no turn limit
 * and no per-run tool list, so `maxTurns` / `allowedTools` are rejected rather than silently ignored.
 *
 * @throws AgentGateError `AG_ERR_CONFIG_INVALID` naming the option.
 */
export function validateCodexOptions(options: AgentOptions): void {
  const invalid = (option: string, message: string): AgentGateError => new AgentGateError('AG_ERR_CONFIG_INVALID', message, { details: { agent: CODEX_AGENT_NAME, option } });
  if (options.command !== undefined) throw invalid('command', 'The codex agent does not take a "command" option (it runs the codex CLI); use the command agent for a custom command.');
  if (options.maxTurns !== undefined) throw invalid('maxTurns', 'The codex agent has no turn limit; remove "maxTurns" (limit the run with maxIterations, budgets or the wall clock).');
  if (options.allowedTools !== undefined) throw invalid('allowedTools', 'The codex agent cannot restrict its tools; remove "allowedTools".');
  if (options.model !== undefined && (options.model.trim() === '' || options.model.startsWith('-') || /\s/.test(options.model))) {
    throw invalid('model', `The codex model "${options.model}" must be a model name without spaces (for example gpt-5.5).`);
  }
  if (options.baseUrl !== undefined && !isHttpUrl(options.baseUrl)) {
    throw invalid('baseUrl', `The codex base URL "${options.baseUrl}" must be an http(s) URL (for example https://api.openai.com/v1).`);
  }
}

/**
 * Reads `AGENTGATE_CODEX_MAX_RETRIES` from the agent environment.
 * @throws AgentGateError `AG_ERR_CONFIG_INVALID` when it is set but not a non-negative integer.
 */
export function codexMaxRetries(env: Record<string, string>): number | undefined {
  const raw = env[CODEX_MAX_RETRIES_ENV];
  if (raw === undefined || raw.trim() === '') return undefined;
  if (!/^\d{1,3}$/.test(raw.trim())) {
    throw new AgentGateError('AG_ERR_CONFIG_INVALID', `${CODEX_MAX_RETRIES_ENV} must be a non-negative integer, got "${raw}".`, { details: { variable: CODEX_MAX_RETRIES_ENV } });
  }
  return Number(raw.trim());
}
