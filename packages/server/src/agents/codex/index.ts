/**
 * The `codex` agent driver (SPEC 7): runs OpenAI's real Codex CLI non-interactively,
 *
 *   codex exec --json --skip-git-repo-check --disable plugins -c analytics.enabled=false
 *     --dangerously-bypass-approvals-and-sandbox [-m <model>] [-c developer_instructions=<gate summary>]
 *     [custom provider -c flags] [retry -c flags] [resume <thread id>] -- <prompt>
 *
 * in the run's worktree with an empty stdin, and turns its `--json` event stream into AgentGate events
 * and an {@link AgentResult}. Why each flag (all verified against codex-cli 0.169.0, see docs/agents.md):
 *
 * - `--skip-git-repo-check`: codex refuses to run outside a directory it trusts otherwise.
 * - `--disable plugins -c analytics.enabled=false`: without them codex clones a plugin repository from
 *   GitHub and calls an analytics host on every run; with them it talks to the model API only.
 * - `--dangerously-bypass-approvals-and-sandbox`: exec's default sandbox is read-only, so the agent could
 *   not edit the worktree; AgentGate already isolates the run in its own worktree and branch.
 * - `--`: a prompt or feedback that starts with `-` must not be read as a flag.
 *
 * Model API: the user's `OPENAI_API_KEY` (or a `codex login` in `CODEX_HOME`) and codex's built-in OpenAI
 * provider, unless a base URL is configured — `options.baseUrl` (TaskSpec `agent.baseUrl`) or
 * `OPENAI_BASE_URL` in the agent environment — in which case a custom Responses-API provider named
 * `agentgate` is configured with that base URL and `OPENAI_API_KEY` as its key variable.
 *
 * Retries: codex's own defaults apply (a 5xx is retried for ~25 s) unless the agent environment sets
 * `AGENTGATE_CODEX_MAX_RETRIES=<n>`: then the custom provider's `request_max_retries` and
 * `stream_max_retries` are `n`, and `unbounded_connection_retries` is disabled so a refused connection
 * fails instead of waiting for the network forever. Tests use 0 to keep failures fast.
 *
 * Sessions: codex's `thread_id` is the iteration's `sessionId`; the next iteration resumes that thread
 * (same `CODEX_HOME` needed) and sends only the feedback. A thread codex no longer has is replaced by a
 * new one that gets the task and the feedback. Processes: besides the process-group kill, every process
 * carrying this invocation's tag ({@link AGENT_PROCESS_TAG_ENV}) is killed when the run ends, because
 * codex runs each shell command in a session of its own.
 *
 * Layout: `options.ts` (names, configuration, option checks), `args.ts` (the command line and prompt),
 * `events.ts` (event schemas), `accumulator.ts` (events and summary of one invocation), `usage.ts`
 * (per-iteration usage of a thread), `classification.ts` (what the end means), `protocol.ts` (the
 * driver: the protocol plugged into ProcessAgentDriver).
 */
export { CodexEventAccumulator, MAX_TOOL_OUTPUT_CHARS } from './accumulator.js';
export { buildCodexArgs, CODEX_CONTINUE_PROMPT, CODEX_RESUME_PROMPT, composeCodexPrompt } from './args.js';
export { classifyCodexFailure, classifyCodexRun, codexNotInstalled, codexThreadNotFound, type CodexFailureCause, type CodexRunOutcome } from './classification.js';
export type { CodexEmission, CodexStreamSummary, CodexTokenUsage } from './events.js';
export { CODEX_AGENT_NAME, CODEX_BIN_ENV, CODEX_MAX_RETRIES_ENV, CODEX_PROVIDER_ID, codexMaxRetries, validateCodexOptions, type CodexDriverConfig } from './options.js';
export { CodexDriver, codexProtocol, createCodexDriver } from './protocol.js';
export { CODEX_THREAD_USAGE_FILE, perIterationUsage } from './usage.js';
