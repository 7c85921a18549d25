/** The command line and prompt of one `codex exec` invocation (verified against codex-cli 0.169.0). */
import { composeAgentInput, FEEDBACK_HEADING } from '../agent-input.js';
import { nonEmpty } from '../process-driver/preflight.js';
import type { AgentRequest } from '../types.js';
import { CODEX_PROVIDER_ID, codexMaxRetries } from './options.js';

/** First line of the prompt of a resumed iteration: the thread already holds the task and the work so far. */
export const CODEX_RESUME_PROMPT =
  'Your changes did not pass verification yet. Fix the problems described below, keep the original task in mind, and finish when everything passes.';

/** Prompt of a resumed invocation that has no feedback to pass on. */
export const CODEX_CONTINUE_PROMPT = 'Continue working on the task until it is complete.';

/** A `-c key=value` override whose value is a TOML string (JSON string escapes are valid TOML). */
function tomlString(key: string, value: string): string[] {
  return ['-c', `${key}=${JSON.stringify(value)}`];
}

/**
 * The prompt of one invocation. Iteration 1 (or any iteration without a thread to resume) gets the task;
 * later iterations without a thread get the task followed by the feedback; a resumed thread already holds
 * the task, so it gets {@link CODEX_RESUME_PROMPT} and the feedback.
 */
export function composeCodexPrompt(request: Pick<AgentRequest, 'prompt' | 'feedback'>, resuming: boolean): string {
  if (!resuming) return composeAgentInput(request.prompt, request.feedback).trimEnd();
  const feedback = request.feedback.trim();
  return feedback === '' ? CODEX_CONTINUE_PROMPT : `${CODEX_RESUME_PROMPT}\n\n${FEEDBACK_HEADING}\n\n${feedback}`;
}

/** The command-line arguments of one `codex exec` invocation (everything after the binary). */
export function buildCodexArgs(request: Pick<AgentRequest, 'prompt' | 'feedback' | 'options' | 'env' | 'gateSummary'>, resumeThreadId?: string): string[] {
  const args = ['exec', '--json', '--skip-git-repo-check', '--disable', 'plugins', '-c', 'analytics.enabled=false', '--dangerously-bypass-approvals-and-sandbox'];
  const { model, baseUrl: optionBaseUrl } = request.options;
  if (model !== undefined) args.push('-m', model);
  if (request.gateSummary !== undefined && request.gateSummary.trim() !== '') args.push(...tomlString('developer_instructions', request.gateSummary));
  const baseUrl = optionBaseUrl ?? nonEmpty(request.env.OPENAI_BASE_URL);
  const retries = codexMaxRetries(request.env);
  if (baseUrl !== undefined) {
    const provider = `model_providers.${CODEX_PROVIDER_ID}`;
    args.push(
      ...tomlString('model_provider', CODEX_PROVIDER_ID),
      ...tomlString(`${provider}.name`, CODEX_PROVIDER_ID),
      ...tomlString(`${provider}.base_url`, baseUrl),
      ...tomlString(`${provider}.env_key`, 'OPENAI_API_KEY'),
      ...tomlString(`${provider}.wire_api`, 'responses'),
    );
    if (retries !== undefined) args.push('-c', `${provider}.request_max_retries=${retries}`, '-c', `${provider}.stream_max_retries=${retries}`);
  }
  // Retry counts of codex's built-in OpenAI provider cannot be overridden; bounding connection retries can.
  if (retries !== undefined) args.push('--disable', 'unbounded_connection_retries');
  if (resumeThreadId !== undefined) args.push('resume', resumeThreadId);
  args.push('--', composeCodexPrompt(request, resumeThreadId !== undefined));
  return args;
}
