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
 */
import { randomUUID } from 'node:crypto';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { AgentGateError, toAgentGateError } from '../errors.js';
import type { ProgressEvents } from '../observability/events.js';
import { isoNow } from '../util/clock.js';
import { runProcess, type ProcessLine, type ProcessResult } from '../util/process.js';
import { agentEnv, redact, secretValues, type Env } from '../util/secrets.js';
import { AGENT_FAILURE_CODES, FEEDBACK_HEADING, MAX_EVENT_LINE_CHARS, OUTPUT_SUMMARY_CHARS, TRANSCRIPT_FILE, composeAgentInput, waitForProcessGroupExit } from './command.js';
import { AGENT_PROCESS_TAG_ENV, AgentTranscript, boundJsonStrings, killTaggedProcesses, mapJsonStrings, redactJsonLine, truncateText } from './stream-json.js';
import { cancellationOf, describeProcessEnd, lastLine, resolveExecutable, startBlocker } from './driver-support.js';
import type { AgentDriver, AgentFailureKind, AgentOptions, AgentRequest, AgentResult, AgentRunContext, AgentSummary, AgentUsage } from './types.js';

/** Name under which the driver is registered (`agent.driver: codex`). */
export const CODEX_AGENT_NAME = 'codex';

/** Environment variable naming the codex binary when the factory config does not. */
export const CODEX_BIN_ENV = 'AGENTGATE_CODEX_BIN';

/** Environment variable that lowers codex's retries (request, stream, connection); unset = codex defaults. */
export const CODEX_MAX_RETRIES_ENV = 'AGENTGATE_CODEX_MAX_RETRIES';

/** Id of the custom model provider configured when a base URL is set. */
export const CODEX_PROVIDER_ID = 'agentgate';

/**
 * Per-run file (in `request.artifactsDir`) remembering each codex thread's cumulative token usage after
 * the last invocation, so a resumed iteration can report only its own tokens (see {@link perIterationUsage}).
 */
export const CODEX_THREAD_USAGE_FILE = 'codex-thread-usage.json';

/** Longest tool output put into one `agent_tool_result` event (its end is kept; the transcript has it all). */
export const MAX_TOOL_OUTPUT_CHARS = 4096;

/** First line of the prompt of a resumed iteration: the thread already holds the task and the work so far. */
export const CODEX_RESUME_PROMPT =
  'Your changes did not pass verification yet. Fix the problems described below, keep the original task in mind, and finish when everything passes.';

/** Prompt of a resumed invocation that has no feedback to pass on. */
export const CODEX_CONTINUE_PROMPT = 'Continue working on the task until it is complete.';

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

function isHttpUrl(value: string): boolean {
  try {
    const url = new URL(value);
    return url.protocol === 'http:' || url.protocol === 'https:';
  } catch (error) {
    if (error instanceof TypeError) return false;
    throw error;
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

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value.trim() === '' ? undefined : value;
}

// ---------------------------------------------------------------------------------------------------
// The --json event stream
// ---------------------------------------------------------------------------------------------------

/** `turn.completed.usage` as codex prints it: cumulative over the whole thread (see {@link perIterationUsage}). */
export interface CodexTokenUsage {
  inputTokens: number;
  cachedInputTokens: number;
  cacheWriteInputTokens?: number;
  outputTokens: number;
  reasoningOutputTokens: number;
}

const count = z.number().int().nonnegative();
const UsageSchema = z.object({
  input_tokens: count,
  cached_input_tokens: count.optional(),
  cache_write_input_tokens: count.optional(),
  output_tokens: count,
  reasoning_output_tokens: count.optional(),
});
const ItemSchema = z.object({ id: z.string(), type: z.string() }).loose();
const EventSchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('thread.started'), thread_id: z.string().min(1) }),
  z.object({ type: z.literal('turn.started') }),
  z.object({ type: z.literal('turn.completed'), usage: UsageSchema.optional() }),
  z.object({ type: z.literal('turn.failed'), error: z.object({ message: z.string() }).optional() }),
  z.object({ type: z.literal('error'), message: z.string() }),
  z.object({ type: z.enum(['item.started', 'item.updated', 'item.completed']), item: ItemSchema }),
]);
const CommandItemSchema = z.object({ command: z.string(), aggregated_output: z.string().optional(), exit_code: z.number().int().nullable().optional(), status: z.string().optional() });
const FileChangeItemSchema = z.object({ changes: z.array(z.object({ path: z.string(), kind: z.string() })), status: z.string().optional() });
const TextItemSchema = z.object({ text: z.string() });
const MessageItemSchema = z.object({ message: z.string() });
const McpItemSchema = z.object({
  server: z.string(),
  tool: z.string(),
  arguments: z.unknown().optional(),
  result: z.unknown().optional(),
  error: z.object({ message: z.string() }).nullable().optional(),
  status: z.string().optional(),
});
const WebSearchItemSchema = z.object({ query: z.string() });

/** An event for the ProgressEmitter, as data (the accumulator does no I/O). */
export type CodexEmission =
  | { type: 'agent_output'; data: ProgressEvents['agent_output'] }
  | { type: 'agent_tool_call'; data: ProgressEvents['agent_tool_call'] }
  | { type: 'agent_tool_result'; data: ProgressEvents['agent_tool_result'] };

/** What one invocation's stream said, for classification and the summary. */
export interface CodexStreamSummary {
  threadId: string | undefined;
  /** Number of `turn.completed` events (one per successful `codex exec`). */
  turnsCompleted: number;
  /** The last `turn.completed.usage`: cumulative over the thread. */
  usage: CodexTokenUsage | undefined;
  /** The message of the last `turn.failed`. */
  turnFailure: string | undefined;
  /** Messages of top-level `error` events (retries, then the fatal one), the last 20. */
  errors: string[];
  /** The last `agent_message` text. */
  lastMessage: string | undefined;
  toolCalls: number;
}

/**
 * Folds `codex exec --json` lines into AgentGate events and a {@link CodexStreamSummary}. Pure: `push()`
 * returns the events to emit, so tests feed it real captured lines.
 *
 * Mapping: `agent_message` → `agent_output` (text); `command_execution` → `agent_tool_call`
 * `exec_command` {command} when it starts and `agent_tool_result` (aggregated output, `isError` for a
 * non-zero exit code) when it completes; `file_change` → `apply_patch` {changes}; `mcp_tool_call` →
 * `mcp:<server>/<tool>`; `web_search` → `web_search` {query}; `error` events and items → `agent_output`
 * on stderr. Reasoning, to-do lists and unknown items stay in the transcript only. A line that is not
 * JSON is passed on as stdout text.
 */
export class CodexEventAccumulator {
  private threadId: string | undefined;
  private turnsCompleted = 0;
  private usage: CodexTokenUsage | undefined;
  private turnFailure: string | undefined;
  private readonly errors: string[] = [];
  private lastMessage: string | undefined;
  private toolCalls = 0;
  private readonly openCalls = new Set<string>();

  /** @param clean applied to every text that leaves the accumulator (secret redaction). */
  constructor(
    private readonly iteration: number,
    private readonly clean: (text: string) => string = (text) => text,
  ) {}

  push(line: string): CodexEmission[] {
    if (line.trim() === '') return [];
    let json: unknown;
    try {
      json = JSON.parse(line);
    } catch (error) {
      if (!(error instanceof SyntaxError)) throw error;
      return [this.output('stdout', line)];
    }
    const parsed = EventSchema.safeParse(json);
    // An event type this version does not know (or a changed shape) is kept in the transcript only.
    if (!parsed.success) return [];
    const event = parsed.data;
    switch (event.type) {
      case 'thread.started':
        this.threadId = event.thread_id;
        return [];
      case 'turn.started':
        return [];
      case 'turn.completed':
        this.turnsCompleted += 1;
        if (event.usage !== undefined) this.usage = toTokenUsage(event.usage);
        return [];
      case 'turn.failed':
        this.turnFailure = event.error?.message ?? 'turn failed without a message';
        return [];
      case 'error':
        this.errors.push(event.message);
        if (this.errors.length > 20) this.errors.shift();
        return [this.output('stderr', `codex: ${event.message}`)];
      case 'item.started':
        return this.itemStarted(event.item);
      case 'item.updated':
        return [];
      case 'item.completed':
        return this.itemCompleted(event.item);
      default:
        return assertNever(event);
    }
  }

  summary(): CodexStreamSummary {
    return {
      threadId: this.threadId,
      turnsCompleted: this.turnsCompleted,
      usage: this.usage,
      turnFailure: this.turnFailure,
      errors: [...this.errors],
      lastMessage: this.lastMessage,
      toolCalls: this.toolCalls,
    };
  }

  private itemStarted(item: z.infer<typeof ItemSchema>): CodexEmission[] {
    const call = this.toolCall(item);
    if (call === undefined) return [];
    this.openCalls.add(item.id);
    return [call];
  }

  private itemCompleted(item: z.infer<typeof ItemSchema>): CodexEmission[] {
    switch (item.type) {
      case 'agent_message': {
        const parsed = TextItemSchema.safeParse(item);
        if (!parsed.success) return [];
        this.lastMessage = this.clean(parsed.data.text);
        return [this.output('text', parsed.data.text)];
      }
      case 'error': {
        const parsed = MessageItemSchema.safeParse(item);
        return parsed.success ? [this.output('stderr', `codex: ${parsed.data.message}`)] : [];
      }
      default: {
        const result = this.toolResult(item);
        if (result === undefined) return [];
        // A tool item seen only on completion (no item.started) still gets its call first.
        const call = this.openCalls.delete(item.id) ? undefined : this.toolCall(item);
        return call === undefined ? [result] : [call, result];
      }
    }
  }

  private toolCall(item: z.infer<typeof ItemSchema>): CodexEmission | undefined {
    const described = describeTool(item);
    if (described === undefined) return undefined;
    this.toolCalls += 1;
    return { type: 'agent_tool_call', data: { iteration: this.iteration, tool: described.tool, id: item.id, input: boundJsonStrings(mapJsonStrings(described.input, this.clean), MAX_TOOL_OUTPUT_CHARS) } };
  }

  private toolResult(item: z.infer<typeof ItemSchema>): CodexEmission | undefined {
    const described = describeTool(item);
    if (described === undefined) return undefined;
    return { type: 'agent_tool_result', data: { iteration: this.iteration, id: item.id, isError: described.isError, output: boundToolOutput(this.clean(described.output)) } };
  }

  private output(stream: 'stdout' | 'stderr' | 'text', text: string): CodexEmission {
    return { type: 'agent_output', data: { iteration: this.iteration, stream, text: truncateText(this.clean(text), MAX_EVENT_LINE_CHARS) } };
  }
}

interface DescribedTool {
  tool: string;
  input: unknown;
  output: string;
  isError: boolean;
}

function describeTool(item: z.infer<typeof ItemSchema>): DescribedTool | undefined {
  const failedStatus = (status: string | undefined): boolean => status === 'failed' || status === 'declined';
  switch (item.type) {
    case 'command_execution': {
      const parsed = CommandItemSchema.safeParse(item);
      if (!parsed.success) return undefined;
      const { command, aggregated_output: output = '', exit_code: exitCode, status } = parsed.data;
      return { tool: 'exec_command', input: { command }, output, isError: (exitCode !== null && exitCode !== undefined && exitCode !== 0) || failedStatus(status) };
    }
    case 'file_change': {
      const parsed = FileChangeItemSchema.safeParse(item);
      if (!parsed.success) return undefined;
      const { changes, status } = parsed.data;
      return { tool: 'apply_patch', input: { changes }, output: changes.map((c) => `${c.kind} ${c.path}`).join('\n'), isError: failedStatus(status) };
    }
    case 'mcp_tool_call': {
      const parsed = McpItemSchema.safeParse(item);
      if (!parsed.success) return undefined;
      const { server, tool, arguments: input, result, error, status } = parsed.data;
      const output = error?.message ?? (result === undefined || result === null ? '' : JSON.stringify(result));
      return { tool: `mcp:${server}/${tool}`, input: input ?? {}, output, isError: (error !== undefined && error !== null) || failedStatus(status) };
    }
    case 'web_search': {
      const parsed = WebSearchItemSchema.safeParse(item);
      return parsed.success ? { tool: 'web_search', input: { query: parsed.data.query }, output: '', isError: false } : undefined;
    }
    default:
      return undefined;
  }
}

function toTokenUsage(usage: z.infer<typeof UsageSchema>): CodexTokenUsage {
  return {
    inputTokens: usage.input_tokens,
    cachedInputTokens: usage.cached_input_tokens ?? 0,
    ...(usage.cache_write_input_tokens === undefined ? {} : { cacheWriteInputTokens: usage.cache_write_input_tokens }),
    outputTokens: usage.output_tokens,
    reasoningOutputTokens: usage.reasoning_output_tokens ?? 0,
  };
}

/** The end of a tool's output (where errors and summaries are), at most {@link MAX_TOOL_OUTPUT_CHARS}. */
function boundToolOutput(output: string): string {
  if (output.length <= MAX_TOOL_OUTPUT_CHARS) return output;
  return `[… ${output.length - MAX_TOOL_OUTPUT_CHARS} earlier characters omitted]\n${output.slice(-MAX_TOOL_OUTPUT_CHARS)}`;
}

/**
 * One iteration's usage from the thread's cumulative usage.
 *
 * codex prints `turn.completed.usage` cumulative over the thread: an invocation that resumes a thread
 * reports the earlier invocations' tokens too (verified with codex-cli 0.169.0: 300 input tokens after
 * the first invocation, 400 after a resumed one that used 100). AgentGate adds every iteration's usage
 * to the run's totals and budgets, so the driver subtracts the cumulative usage it saw at the end of the
 * thread's previous invocation (`baseline`, kept in {@link CODEX_THREAD_USAGE_FILE}). Without a baseline
 * (a thread resumed from elsewhere) the cumulative figure is reported: budgets then err on the safe side.
 *
 * The result follows Anthropic's convention, which the claude-code driver reports as is: `inputTokens`
 * are the input tokens not read from the cache, `cacheReadTokens` the cached ones (OpenAI counts both
 * in `input_tokens`), so run totals and token budgets mean the same for both agents.
 * codex reports no price, so `costUsd` is 0: token budgets work, cost budgets never trigger.
 */
export function perIterationUsage(cumulative: CodexTokenUsage, baseline?: CodexTokenUsage): AgentUsage {
  const minus = (a: number, b: number | undefined): number => Math.max(0, a - (b ?? 0));
  const input = minus(cumulative.inputTokens, baseline?.inputTokens);
  const cached = Math.min(input, minus(cumulative.cachedInputTokens, baseline?.cachedInputTokens));
  return {
    inputTokens: input - cached,
    outputTokens: minus(cumulative.outputTokens, baseline?.outputTokens),
    cacheReadTokens: cached,
    ...(cumulative.cacheWriteInputTokens === undefined ? {} : { cacheCreationTokens: minus(cumulative.cacheWriteInputTokens, baseline?.cacheWriteInputTokens) }),
    costUsd: 0,
  };
}

// ---------------------------------------------------------------------------------------------------
// Classification
// ---------------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------------
// The driver
// ---------------------------------------------------------------------------------------------------

interface Invocation {
  result: ProcessResult;
  summary: CodexStreamSummary;
  /** Processes that survived the kill (group members or marked session leaders). */
  survivors: number[];
}

type Summary = Omit<AgentSummary, 'durationMs'>;

/**
 * Runs the codex CLI for one iteration. Stateless apart from its configuration; `run()` never throws and,
 * whatever the outcome, no process codex started is alive when it resolves.
 */
export class CodexDriver implements AgentDriver {
  readonly name = CODEX_AGENT_NAME;

  constructor(private readonly config: CodexDriverConfig = {}) {}

  async run(request: AgentRequest, ctx: AgentRunContext): Promise<AgentResult> {
    const started = ctx.clock.now();
    try {
      return await this.runChecked(request, ctx, started);
    } catch (error) {
      // Only unexpected failures (file system, a bug) get here: classify them, never let them escape.
      return failure(ctx, started, emptySummary(), 'agent_crash', false, toAgentGateError(error, 'AG_ERR_PHASE_BUILD_AGENT_CRASH'));
    }
  }

  private async runChecked(request: AgentRequest, ctx: AgentRunContext, started: number): Promise<AgentResult> {
    try {
      validateCodexOptions(request.options);
      codexMaxRetries(request.env);
    } catch (error) {
      return failure(ctx, started, emptySummary(), 'agent_crash', false, toAgentGateError(error, 'AG_ERR_CONFIG_INVALID'));
    }
    if (ctx.signal.aborted) return abortedResult(ctx, started, emptySummary());

    const blocker = await startBlocker(request, ctx, 'codex');
    if (blocker !== undefined) return failure(ctx, started, emptySummary(), blocker.failure, false, blocker.error);

    const timeoutMs = request.deadline === undefined ? undefined : request.deadline - ctx.clock.now();
    const wanted = this.config.binary ?? nonEmpty(request.env[CODEX_BIN_ENV]) ?? 'codex';
    const executable = await resolveExecutable(wanted, request.env.PATH ?? '');
    if (executable === undefined) return failure(ctx, started, emptySummary(), 'agent_crash', false, notInstalled(wanted));

    const secrets = [...new Set([...secretValues(this.config.secretEnv ?? process.env), ...secretValues(request.env)])];
    const clean = (text: string): string => redact(text, secrets);

    await mkdir(request.artifactsDir, { recursive: true });
    const transcriptPath = path.join(request.artifactsDir, TRANSCRIPT_FILE);
    const transcript = new AgentTranscript(transcriptPath);
    const usageFile = path.join(request.artifactsDir, CODEX_THREAD_USAGE_FILE);
    const usageByThread = await readThreadUsage(usageFile, (note) => transcript.write(note));
    const baselineOfResumedThread = request.sessionId === undefined ? undefined : usageByThread[request.sessionId];

    let emitError: unknown;
    const emit = (emission: CodexEmission): void => {
      try {
        emitOne(ctx, emission);
      } catch (error) {
        // Keep codex running and the transcript complete; the failure is reported in the result.
        emitError ??= error;
      }
    };

    const invoke = async (resumeThreadId: string | undefined, timeout: number | undefined): Promise<Invocation> => {
      const accumulator = new CodexEventAccumulator(request.iteration, clean);
      const tag = randomUUID();
      transcript.write(`=== iteration ${request.iteration} started ${isoNow(ctx.clock)}: codex exec${resumeThreadId === undefined ? '' : ` resume ${resumeThreadId}`} ===`);
      const onLine = ({ stream, line }: ProcessLine): void => {
        if (stream === 'stderr') {
          const text = clean(line);
          transcript.write(`[stderr] ${text}`);
          emit({ type: 'agent_output', data: { iteration: request.iteration, stream: 'stderr', text: truncateText(text, MAX_EVENT_LINE_CHARS) } });
          return;
        }
        // Redacted on the decoded JSON strings, so JSON escaping cannot hide a secret from the transcript.
        transcript.write(redactJsonLine(line, clean));
        for (const emission of accumulator.push(line)) emit(emission);
      };
      const result = await runProcess({
        command: executable,
        args: buildCodexArgs(request, resumeThreadId),
        cwd: request.workspacePath,
        // agentEnv() again: the caller already removed AgentGate's own secrets, but a mistake there must
        // not hand a forge token to the agent. The tag finds the processes codex starts in sessions of
        // their own (one PTY per command), which the process-group kill of util/process does not reach.
        env: agentEnv(request.env, { [AGENT_PROCESS_TAG_ENV]: tag }),
        signal: ctx.signal,
        ...(timeout === undefined ? {} : { timeoutMs: timeout }),
        idleTimeoutMs: request.idleTimeoutMs,
        onLine,
        ...(this.config.killGraceMs === undefined ? {} : { killGraceMs: this.config.killGraceMs }),
        clock: ctx.clock,
      });
      const reapTimeoutMs = this.config.reapTimeoutMs ?? 3000;
      const groupSurvivors = result.pid === undefined ? [] : await waitForProcessGroupExit(result.pid, reapTimeoutMs);
      const taggedSurvivors = await killTaggedProcesses(tag, reapTimeoutMs);
      const summary = accumulator.summary();
      transcript.write(`=== iteration ${request.iteration} finished: ${describeProcessEnd(result)} after ${result.durationMs} ms ===`);
      return { result, summary, survivors: [...new Set([...groupSurvivors, ...taggedSurvivors])] };
    };

    let invocation = await invoke(request.sessionId, timeoutMs);
    if (request.sessionId !== undefined && resumeNotFound(invocation) && !ctx.signal.aborted) {
      // The thread is gone (another CODEX_HOME, a cleaned-up session): start a new one with the task and
      // the feedback rather than failing every later iteration on the same missing thread.
      transcript.write(`=== codex has no thread ${request.sessionId}; starting a new thread ===`);
      invocation = await invoke(undefined, request.deadline === undefined ? undefined : request.deadline - ctx.clock.now());
    }
    const { result, summary: stream, survivors } = invocation;
    if (stream.threadId !== undefined && stream.usage !== undefined) {
      usageByThread[stream.threadId] = stream.usage;
      try {
        await writeThreadUsage(usageFile, usageByThread);
      } catch (error) {
        // Only the next resumed iteration's usage suffers (it is reported cumulatively); say so where the
        // run's agent record points.
        transcript.write(`=== could not record the thread's usage in ${CODEX_THREAD_USAGE_FILE}: ${error instanceof Error ? error.message : String(error)} ===`);
      }
    }
    const transcriptError = await transcript.close();

    // Only an invocation that really continued the requested thread has its earlier usage to subtract.
    const baseline = stream.threadId !== undefined && stream.threadId === request.sessionId ? baselineOfResumedThread : undefined;
    const summary: Summary = {
      exitCode: result.exitCode,
      ...(stream.threadId === undefined ? {} : { sessionId: stream.threadId }),
      ...(request.options.model === undefined ? {} : { model: request.options.model }),
      ...(stream.usage === undefined ? {} : { usage: perIterationUsage(stream.usage, baseline) }),
      turns: stream.turnsCompleted,
      toolCalls: stream.toolCalls,
      output: summarise(stream.lastMessage ?? ''),
      ...(transcriptError === undefined ? { transcriptPath } : {}),
    };

    const listenerError = emitError ?? (result.outcome === 'spawn_error' ? undefined : result.error);
    const extra = listenerError === undefined ? {} : { eventError: listenerError instanceof Error ? listenerError.message : String(listenerError) };
    const outcome = classify(invocation, request, clean, wanted, extra);
    const aborted = outcome === 'aborted';
    if (survivors.length > 0) {
      const error = new AgentGateError('AG_ERR_PHASE_BUILD_AGENT_CRASH', `codex processes survived SIGKILL: ${survivors.join(', ')}.`, { details: { pids: survivors, ...extra } });
      return failure(ctx, started, summary, 'agent_crash', aborted, error);
    }
    if (aborted) return abortedResult(ctx, started, summary);
    if (outcome !== 'ok') return failure(ctx, started, summary, outcome.failure, false, outcome.error);
    if (listenerError !== undefined) return failure(ctx, started, summary, 'agent_crash', false, toAgentGateError(listenerError, 'AG_ERR_INTERNAL'));
    if (transcriptError !== undefined) {
      const error = new AgentGateError('AG_ERR_PHASE_BUILD_AGENT_CRASH', `The agent transcript could not be written: ${transcriptError.message}`, {
        cause: transcriptError,
        details: { transcriptPath },
      });
      return failure(ctx, started, summary, 'agent_crash', false, error);
    }
    return { ok: true, ...summary, durationMs: ctx.clock.now() - started };
  }
}

/** The registry's factory. */
export function createCodexDriver(config: CodexDriverConfig = {}): CodexDriver {
  return new CodexDriver(config);
}

type ThreadUsageMap = Record<string, CodexTokenUsage>;

const ThreadUsageFileSchema = z.record(
  z.string(),
  z.object({ inputTokens: count, cachedInputTokens: count, cacheWriteInputTokens: count.optional(), outputTokens: count, reasoningOutputTokens: count }),
);

/**
 * Reads {@link CODEX_THREAD_USAGE_FILE}. A missing file is an empty map; an unreadable one is reported
 * through `note` (into the transcript) and treated as empty, which only makes usage err on the high side.
 */
async function readThreadUsage(file: string, note: (text: string) => void): Promise<ThreadUsageMap> {
  let raw: string;
  try {
    raw = await readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw error;
  }
  let parsed: ReturnType<typeof ThreadUsageFileSchema.safeParse>;
  try {
    parsed = ThreadUsageFileSchema.safeParse(JSON.parse(raw));
  } catch (error) {
    if (!(error instanceof SyntaxError)) throw error;
    note(`=== ${CODEX_THREAD_USAGE_FILE} is not JSON (${error.message}); usage of resumed threads is reported cumulatively ===`);
    return {};
  }
  if (!parsed.success) {
    note(`=== ${CODEX_THREAD_USAGE_FILE} is malformed; usage of resumed threads is reported cumulatively ===`);
    return {};
  }
  const map: ThreadUsageMap = {};
  for (const [thread, usage] of Object.entries(parsed.data)) {
    map[thread] = {
      inputTokens: usage.inputTokens,
      cachedInputTokens: usage.cachedInputTokens,
      ...(usage.cacheWriteInputTokens === undefined ? {} : { cacheWriteInputTokens: usage.cacheWriteInputTokens }),
      outputTokens: usage.outputTokens,
      reasoningOutputTokens: usage.reasoningOutputTokens,
    };
  }
  return map;
}

/** Writes the map atomically (a crash mid-write must not leave a half file for the next iteration). */
async function writeThreadUsage(file: string, map: ThreadUsageMap): Promise<void> {
  const temp = `${file}.${process.pid}.tmp`;
  await writeFile(temp, `${JSON.stringify(map, null, 2)}\n`, 'utf8');
  await rename(temp, file);
}

type Classified = 'ok' | 'aborted' | { failure: AgentFailureKind; error: AgentGateError };

/**
 * Maps how codex ended to SPEC 4's classifications: the idle watchdog and the deadline are
 * `agent_timeout`; a `turn.failed` is classified by {@link classifyCodexFailure}; exit 0 with a completed
 * turn is success; any other exit, or exit 0 without a `turn.completed`, is `agent_crash`.
 */
function classify({ result, summary }: Invocation, request: AgentRequest, clean: (text: string) => string, binary: string, extra: Record<string, unknown>): Classified {
  const lastStderr = lastLine(clean(result.stderr));
  const lastError = summary.errors.at(-1);
  const details = {
    iteration: request.iteration,
    exitCode: result.exitCode,
    signal: result.signal,
    outcome: result.outcome,
    lastStderrLine: lastStderr,
    ...(summary.threadId === undefined ? {} : { sessionId: summary.threadId }),
    ...extra,
  };
  const fail = (failure: AgentFailureKind, message: string, more: Record<string, unknown> = {}, cause?: unknown): Classified => ({
    failure,
    error: new AgentGateError(AGENT_FAILURE_CODES[failure], message, cause === undefined ? { details: { ...details, ...more } } : { details: { ...details, ...more }, cause }),
  });
  const tail = lastStderr === '' ? '' : `: ${lastStderr}`;

  switch (result.outcome) {
    case 'aborted':
      return 'aborted';
    case 'spawn_error': {
      const code = (result.error as NodeJS.ErrnoException | undefined)?.code;
      if (code === 'ENOENT' || code === 'EACCES') return { failure: 'agent_crash', error: notInstalled(binary, result.error) };
      return fail('agent_crash', `codex could not be started: ${result.error?.message ?? 'unknown error'}`, {}, result.error);
    }
    case 'idle_timeout':
      return fail('agent_timeout', `codex produced no output for ${request.idleTimeoutMs} ms and was stopped${tail}`);
    case 'timeout':
      return fail('agent_timeout', `codex was stopped at the run deadline after ${result.durationMs} ms${tail}`);
    case 'exited':
      break;
    default:
      return assertNever(result.outcome);
  }

  const failedWith = summary.turnFailure ?? (result.exitCode === 0 ? undefined : lastError);
  if (failedWith !== undefined) {
    const message = clean(failedWith);
    const cause = classifyCodexFailure(message);
    const more = { codexMessage: message, ...(cause.kind === 'api' && cause.httpStatus !== undefined ? { httpStatus: cause.httpStatus } : {}) };
    switch (cause.kind) {
      case 'api':
      case 'config':
        return fail('agent_crash', `codex failed because ${cause.description}: ${message}`, more);
      case 'task':
        return fail('agent_task_failure', `codex failed the task: ${message}`, more);
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
function resumeNotFound({ result, summary }: Invocation): boolean {
  return result.outcome === 'exited' && result.exitCode !== 0 && summary.threadId === undefined && /no rollout found|thread\/resume failed/i.test(result.stderr);
}

function notInstalled(binary: string, cause?: unknown): AgentGateError {
  return new AgentGateError(
    'AG_ERR_AGENT_NOT_INSTALLED',
    `The codex CLI was not found ("${binary}"). Install it with \`npm install -g @openai/codex\`, or set ${CODEX_BIN_ENV} to the path of the codex binary.`,
    cause === undefined ? { details: { agent: CODEX_AGENT_NAME, binary } } : { details: { agent: CODEX_AGENT_NAME, binary }, cause },
  );
}




function emitOne(ctx: AgentRunContext, emission: CodexEmission): void {
  switch (emission.type) {
    case 'agent_output':
      ctx.emit('agent_output', emission.data);
      return;
    case 'agent_tool_call':
      ctx.emit('agent_tool_call', emission.data);
      return;
    case 'agent_tool_result':
      ctx.emit('agent_tool_result', emission.data);
      return;
    default:
      assertNever(emission);
  }
}

function emptySummary(): Summary {
  return { exitCode: null, output: '', toolCalls: 0 };
}

function failure(ctx: AgentRunContext, started: number, summary: Summary, kind: AgentFailureKind, aborted: boolean, error: AgentGateError): AgentResult {
  return { ok: false, failure: kind, aborted, error, ...summary, durationMs: ctx.clock.now() - started };
}

/**
 * A canceled run reports *canceled*, not failed; an AgentGateError given as the abort reason (e.g. the
 * run's wall clock) is kept so the engine can tell why.
 */
function abortedResult(ctx: AgentRunContext, started: number, summary: Summary): AgentResult {
  const { error, failure: kind } = cancellationOf(ctx.signal, 'codex');
  return failure(ctx, started, summary, kind, true, error);
}



/** The end of the final message, at most {@link OUTPUT_SUMMARY_CHARS}. */
function summarise(text: string): string {
  const trimmed = text.trim();
  return trimmed.length <= OUTPUT_SUMMARY_CHARS ? trimmed : trimmed.slice(-OUTPUT_SUMMARY_CHARS);
}

function assertNever(value: never): never {
  throw new AgentGateError('AG_ERR_INTERNAL', `Unhandled codex case: ${JSON.stringify(value)}`);
}
