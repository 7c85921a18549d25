/**
 * The `claude-code` agent driver (SPEC 7): runs the real `claude` CLI in print mode in the run's
 * workspace and turns its `--output-format stream-json` output into AgentGate events and an
 * {@link AgentSummary}.
 *
 * Invocation (verified against claude 2.1.330, see docs/agents.md):
 *   claude -p --output-format stream-json --verbose --permission-mode acceptEdits
 *     --allowedTools <list> [--model m] [--max-turns n] [--resume <sessionId>]
 *     --append-system-prompt <gate summary + AgentGate note> -- <prompt>
 * - stdin is empty and closed at once (an open stdin makes claude wait 3 s for piped input);
 * - `acceptEdits` plus an explicit tool list is the permission setup that works when AgentGate runs as
 *   root (`--dangerously-skip-permissions` / `bypassPermissions` are refused as root) and still never
 *   blocks on a prompt: anything not allowed is denied, reported to the model and to us;
 * - `--` ends option parsing so a prompt starting with `-` stays a prompt;
 * - iteration 2+ resumes the previous iteration's session and sends only the feedback; without a session
 *   (or when the session cannot be found) the prompt and the feedback go to a new session.
 *
 * The parser ({@link parseClaudeStreamLine}) and the accumulator ({@link ClaudeStreamAccumulator}) are
 * pure so they are tested on captured output; the driver adds the process, the transcript and the
 * classification ({@link classifyClaudeRun}).
 */
import { randomUUID } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { AgentGateError, toAgentGateError } from '../errors.js';
import type { ProgressEvents } from '../observability/events.js';
import { isoNow } from '../util/clock.js';
import { runProcess, type ProcessLine, type ProcessResult } from '../util/process.js';
import { agentEnv, redact, secretValues, type Env } from '../util/secrets.js';
import { AGENT_FAILURE_CODES, MAX_EVENT_LINE_CHARS, OUTPUT_SUMMARY_CHARS, TRANSCRIPT_FILE, composeAgentInput, waitForProcessGroupExit } from './command.js';
import {
  AGENT_PROCESS_TAG_ENV,
  AgentTranscript,
  arrayField,
  booleanField,
  boundJsonStrings,
  isJsonObject,
  killTaggedProcesses,
  numberField,
  objectField,
  parseJsonObject,
  redactJsonLine,
  stringField,
  truncateText,
  type JsonObject,
} from './stream-json.js';
import { cancellationOf, describeProcessEnd, resolveExecutable, startBlocker } from './driver-support.js';
import type { AgentDriver, AgentFailureKind, AgentOptions, AgentRequest, AgentResult, AgentRunContext, AgentSummary, AgentUsage } from './types.js';

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

/** First line of the prompt of a resumed iteration; the session already holds the task. */
export const CLAUDE_CODE_FEEDBACK_LEAD = 'The verification gates failed. Fix the problems below.';

/** Appended to Claude Code's system prompt after the gate summary. */
export const CLAUDE_CODE_SYSTEM_NOTE =
  'You are running under AgentGate. When you stop, AgentGate runs the verification gates on the working tree; ' +
  'if they fail, this session is resumed with their output as feedback. Make the changes in the current directory ' +
  '(AgentGate commits them itself) and finish with a short summary of what you changed.';

/** Longest tool output put into one `agent_tool_result` event; the transcript keeps it all. */
export const MAX_TOOL_OUTPUT_CHARS = 4096;

/** Longest string inside a tool call's input in an `agent_tool_call` event (a Write carries a whole file). */
export const MAX_TOOL_INPUT_STRING_CHARS = 4096;

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

function isHttpUrl(value: unknown): boolean {
  if (typeof value !== 'string') return false;
  try {
    const url = new URL(value);
    return url.protocol === 'http:' || url.protocol === 'https:';
  } catch (error) {
    if (error instanceof TypeError) return false;
    throw error;
  }
}

/** What one claude invocation gets: its arguments and the prompt inside them. */
export interface ClaudeCodeInvocation {
  args: string[];
  prompt: string;
  /** The session resumed, when there is one. */
  resumeSessionId?: string;
}

/**
 * Builds the command line for one invocation. `resumeSessionId` is normally `request.sessionId`; the
 * driver passes undefined to start over in a new session.
 *
 * The prompt: the task on a fresh start; the feedback (under {@link CLAUDE_CODE_FEEDBACK_LEAD}) when a
 * session is resumed, since the session already holds the task; the task and the feedback together when
 * there is feedback but nothing to resume.
 */
export function buildClaudeCodeInvocation(request: Pick<AgentRequest, 'prompt' | 'feedback' | 'options' | 'gateSummary'>, resumeSessionId: string | undefined): ClaudeCodeInvocation {
  const hasFeedback = request.feedback.trim() !== '';
  const prompt =
    resumeSessionId !== undefined && hasFeedback
      ? `${CLAUDE_CODE_FEEDBACK_LEAD}\n\n${request.feedback.trimEnd()}\n`
      : hasFeedback
        ? composeAgentInput(request.prompt, request.feedback)
        : request.prompt;
  const { options } = request;
  const tools = options.allowedTools ?? CLAUDE_CODE_DEFAULT_ALLOWED_TOOLS;
  const systemNote = request.gateSummary === undefined || request.gateSummary.trim() === '' ? CLAUDE_CODE_SYSTEM_NOTE : `${request.gateSummary.trim()}\n\n${CLAUDE_CODE_SYSTEM_NOTE}`;
  const args = [
    '-p',
    '--output-format',
    'stream-json',
    '--verbose',
    '--permission-mode',
    CLAUDE_CODE_PERMISSION_MODE,
    // One comma-separated argument: the option is variadic and would swallow following words otherwise.
    '--allowedTools',
    tools.join(','),
    ...(options.model === undefined ? [] : ['--model', options.model]),
    ...(options.maxTurns === undefined ? [] : ['--max-turns', String(options.maxTurns)]),
    ...(resumeSessionId === undefined ? [] : ['--resume', resumeSessionId]),
    '--append-system-prompt',
    systemNote,
    '--',
    prompt,
  ];
  return resumeSessionId === undefined ? { args, prompt } : { args, prompt, resumeSessionId };
}

// ---------------------------------------------------------------------------------------------------
// The stream-json protocol
// ---------------------------------------------------------------------------------------------------

export type ClaudeContentBlock =
  | { type: 'text'; text: string }
  | { type: 'tool_use'; id?: string; name: string; input: unknown }
  | { type: 'other'; blockType: string };

export interface ClaudeToolResult {
  toolUseId?: string;
  isError: boolean;
  /** The result's text (text parts joined; other parts named in brackets). */
  output: string;
}

/** Token counts of one invocation. */
export interface ClaudeUsage {
  inputTokens: number;
  outputTokens: number;
  cacheReadTokens: number;
  cacheCreationTokens: number;
}

/** The final `result` line. */
export interface ClaudeResult {
  isError: boolean;
  /** `success`, `error_max_turns`, `error_during_execution` … — `success` even for API errors. */
  subtype?: string;
  /** `completed`, `max_turns`, `api_error` … */
  terminalReason?: string;
  /** HTTP status of the failed model API call, when the run ended on one. */
  apiErrorStatus?: number;
  /** `total_cost_usd`: cumulative over the session, so it grows across `--resume`. */
  totalCostUsd?: number;
  /** This invocation's own cost: the sum of `model_usage_since_last_result[*].costUSD`, when present. */
  invocationCostUsd?: number;
  /** This invocation's tokens (`usage` is per invocation even on resume). */
  usage?: ClaudeUsage;
  /** Model turns of this invocation. */
  numTurns?: number;
  sessionId?: string;
  /** The final answer (absent for some errors, e.g. `error_max_turns`). */
  text?: string;
  errors: string[];
  permissionDenials: number;
}

/** One parsed line of `claude --output-format stream-json --verbose`. */
export type ClaudeStreamMessage =
  | { kind: 'init'; sessionId?: string; model?: string; cwd?: string; permissionMode?: string; version?: string }
  | { kind: 'assistant'; sessionId?: string; messageId?: string; model?: string; blocks: ClaudeContentBlock[]; apiError?: { status?: number; error?: string } }
  | { kind: 'tool_results'; sessionId?: string; results: ClaudeToolResult[] }
  | { kind: 'api_retry'; attempt?: number; maxRetries?: number; retryDelayMs?: number; errorStatus?: number; error?: string }
  | { kind: 'permission_denied'; toolName?: string; toolUseId?: string; message?: string }
  | { kind: 'result'; result: ClaudeResult }
  | { kind: 'other'; type: string; subtype?: string }
  /** A line that is not a JSON object (a warning printed to stdout …). */
  | { kind: 'unparsed'; text: string };

/**
 * Parses one stdout line. Returns undefined for a blank line. Never throws: unknown shapes become
 * `other` / `unparsed`, so a newer CLI with extra message types still runs.
 */
export function parseClaudeStreamLine(line: string): ClaudeStreamMessage | undefined {
  if (line.trim() === '') return undefined;
  const o = parseJsonObject(line);
  if (o === undefined) return { kind: 'unparsed', text: line };
  const type = stringField(o, 'type') ?? '';
  const subtype = stringField(o, 'subtype');
  const sessionId = stringField(o, 'session_id');
  switch (type) {
    case 'system':
      if (subtype === 'init') {
        return compact({ kind: 'init' as const, sessionId, model: stringField(o, 'model'), cwd: stringField(o, 'cwd'), permissionMode: stringField(o, 'permissionMode'), version: stringField(o, 'claude_code_version') });
      }
      if (subtype === 'api_retry') {
        return compact({
          kind: 'api_retry' as const,
          attempt: numberField(o, 'attempt'),
          maxRetries: numberField(o, 'max_retries'),
          retryDelayMs: numberField(o, 'retry_delay_ms'),
          errorStatus: numberField(o, 'error_status'),
          error: stringField(o, 'error'),
        });
      }
      if (subtype === 'permission_denied') {
        return compact({ kind: 'permission_denied' as const, toolName: stringField(o, 'tool_name'), toolUseId: stringField(o, 'tool_use_id'), message: stringField(o, 'message') });
      }
      return compact({ kind: 'other' as const, type, subtype });
    case 'assistant': {
      const message = objectField(o, 'message');
      const blocks = (arrayField(message, 'content') ?? []).flatMap(parseContentBlock);
      const apiError = booleanField(o, 'is_api_error_message') === true ? compact({ status: numberField(o, 'api_error_status'), error: stringField(o, 'error') }) : undefined;
      return compact({ kind: 'assistant' as const, sessionId, messageId: stringField(message, 'id'), model: stringField(message, 'model'), blocks, apiError });
    }
    case 'user': {
      const content = arrayField(objectField(o, 'message'), 'content') ?? [];
      const results = content.filter(isJsonObject).filter((block) => stringField(block, 'type') === 'tool_result').map(parseToolResult);
      return results.length > 0 ? compact({ kind: 'tool_results' as const, sessionId, results }) : { kind: 'other', type };
    }
    case 'result':
      return { kind: 'result', result: parseResult(o) };
    default:
      return compact({ kind: 'other' as const, type, subtype });
  }
}

function parseContentBlock(value: unknown): ClaudeContentBlock[] {
  if (!isJsonObject(value)) return [];
  const type = stringField(value, 'type') ?? '';
  if (type === 'text') return [{ type: 'text', text: stringField(value, 'text') ?? '' }];
  if (type === 'tool_use' || type === 'server_tool_use') {
    const id = stringField(value, 'id');
    const block = { type: 'tool_use' as const, name: stringField(value, 'name') ?? 'unknown', input: value['input'] ?? {} };
    return [id === undefined ? block : { ...block, id }];
  }
  return [{ type: 'other', blockType: type }];
}

function parseToolResult(block: JsonObject): ClaudeToolResult {
  const content = block['content'];
  const output =
    typeof content === 'string'
      ? content
      : Array.isArray(content)
        ? content.map((part) => (isJsonObject(part) && stringField(part, 'type') === 'text' ? (stringField(part, 'text') ?? '') : `[${isJsonObject(part) ? (stringField(part, 'type') ?? 'part') : 'part'}]`)).join('\n')
        : '';
  const toolUseId = stringField(block, 'tool_use_id');
  const result = { isError: booleanField(block, 'is_error') === true, output };
  return toolUseId === undefined ? result : { ...result, toolUseId };
}

function parseResult(o: JsonObject): ClaudeResult {
  const usage = objectField(o, 'usage');
  const since = objectField(o, 'model_usage_since_last_result');
  const invocationCostUsd =
    since === undefined ? undefined : Object.values(since).reduce<number>((sum, model) => sum + (isJsonObject(model) ? (numberField(model, 'costUSD') ?? 0) : 0), 0);
  return compact({
    isError: booleanField(o, 'is_error') === true,
    subtype: stringField(o, 'subtype'),
    terminalReason: stringField(o, 'terminal_reason'),
    apiErrorStatus: numberField(o, 'api_error_status'),
    totalCostUsd: numberField(o, 'total_cost_usd'),
    invocationCostUsd,
    usage:
      usage === undefined
        ? undefined
        : {
            inputTokens: numberField(usage, 'input_tokens') ?? 0,
            outputTokens: numberField(usage, 'output_tokens') ?? 0,
            cacheReadTokens: numberField(usage, 'cache_read_input_tokens') ?? 0,
            cacheCreationTokens: numberField(usage, 'cache_creation_input_tokens') ?? 0,
          },
    numTurns: numberField(o, 'num_turns'),
    sessionId: stringField(o, 'session_id'),
    text: stringField(o, 'result'),
    errors: (arrayField(o, 'errors') ?? []).filter((e): e is string => typeof e === 'string'),
    permissionDenials: arrayField(o, 'permission_denials')?.length ?? 0,
  });
}

/** `T` with every property that may be undefined turned into an optional one. */
type Compacted<T> = { [K in keyof T as undefined extends T[K] ? never : K]: T[K] } & { [K in keyof T as undefined extends T[K] ? K : never]?: Exclude<T[K], undefined> };

/** Drops undefined properties, so optional fields are absent rather than `undefined`. */
function compact<T extends object>(value: T): Compacted<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Compacted<T>;
}

/** An event the accumulator asks the driver to emit. */
export type AgentStreamEvent =
  | { type: 'agent_output'; data: ProgressEvents['agent_output'] }
  | { type: 'agent_tool_call'; data: ProgressEvents['agent_tool_call'] }
  | { type: 'agent_tool_result'; data: ProgressEvents['agent_tool_result'] };

/**
 * Folds the messages of one invocation into events and a summary. Pure: no I/O, no clock; feed it lines
 * (already redacted — it copies strings into events as they are) and read the summary at the end.
 */
export class ClaudeStreamAccumulator {
  private session: string | undefined;
  private modelName: string | undefined;
  private calls = 0;
  private final: ClaudeResult | undefined;
  private init = false;
  private lastText: string | undefined;

  constructor(private readonly iteration: number) {}

  /** Parses and accepts one stdout line. */
  push(line: string): AgentStreamEvent[] {
    const message = parseClaudeStreamLine(line);
    return message === undefined ? [] : this.accept(message);
  }

  accept(message: ClaudeStreamMessage): AgentStreamEvent[] {
    const iteration = this.iteration;
    switch (message.kind) {
      case 'init':
        this.init = true;
        this.session = message.sessionId ?? this.session;
        this.modelName = message.model ?? this.modelName;
        return [];
      case 'assistant': {
        this.session = message.sessionId ?? this.session;
        // Synthetic messages (API errors) carry the model name "<synthetic>"; keep the real one.
        if (message.apiError === undefined && message.model !== undefined && !message.model.startsWith('<')) this.modelName = message.model;
        const events: AgentStreamEvent[] = [];
        for (const block of message.blocks) {
          if (block.type === 'text') {
            if (block.text.trim() === '') continue;
            if (message.apiError === undefined) this.lastText = block.text;
            events.push({ type: 'agent_output', data: { iteration, stream: message.apiError === undefined ? 'text' : 'stderr', text: truncateText(block.text, MAX_EVENT_LINE_CHARS) } });
          } else if (block.type === 'tool_use') {
            this.calls += 1;
            const data = { iteration, tool: block.name, input: boundJsonStrings(block.input, MAX_TOOL_INPUT_STRING_CHARS) };
            events.push({ type: 'agent_tool_call', data: block.id === undefined ? data : { ...data, id: block.id } });
          }
        }
        return events;
      }
      case 'tool_results':
        this.session = message.sessionId ?? this.session;
        return message.results.map((r) => {
          const data = { iteration, isError: r.isError, output: truncateText(r.output, MAX_TOOL_OUTPUT_CHARS) };
          return { type: 'agent_tool_result' as const, data: r.toolUseId === undefined ? data : { ...data, id: r.toolUseId } };
        });
      case 'api_retry': {
        const status = message.errorStatus === undefined ? (message.error ?? 'no response') : `HTTP ${message.errorStatus}${message.error === undefined ? '' : ` ${message.error}`}`;
        const attempt = message.attempt === undefined ? '' : ` ${message.attempt}${message.maxRetries === undefined ? '' : ` of ${message.maxRetries}`}`;
        const delay = message.retryDelayMs === undefined ? '' : ` in ${message.retryDelayMs} ms`;
        return [{ type: 'agent_output', data: { iteration, stream: 'stderr', text: `claude: model API request failed (${status}); retry${attempt}${delay}` } }];
      }
      case 'permission_denied':
        return [{ type: 'agent_output', data: { iteration, stream: 'stderr', text: truncateText(`claude: permission denied for ${message.toolName ?? 'a tool'}: ${message.message ?? ''}`.trimEnd(), MAX_EVENT_LINE_CHARS) } }];
      case 'result':
        this.final = message.result;
        this.session = message.result.sessionId ?? this.session;
        return [];
      case 'unparsed':
        return [{ type: 'agent_output', data: { iteration, stream: 'stdout', text: truncateText(message.text, MAX_EVENT_LINE_CHARS) } }];
      case 'other':
        return [];
      default:
        return assertNever(message);
    }
  }

  get sessionId(): string | undefined {
    return this.session;
  }

  get model(): string | undefined {
    return this.modelName;
  }

  get toolCalls(): number {
    return this.calls;
  }

  get result(): ClaudeResult | undefined {
    return this.final;
  }

  /** Whether the `system/init` line came (it does not when claude fails before starting a session). */
  get sawInit(): boolean {
    return this.init;
  }

  /**
   * This invocation's usage, from the result line. Cost: `model_usage_since_last_result` is this
   * invocation's own spend (verified: a resumed run reports 0.000088 there while `total_cost_usd` went
   * from 0.00394 to 0.004028), so iterations add up to the session total without double counting. A CLI
   * without that field falls back to `total_cost_usd` — exact for a new session, an upper bound for a
   * resumed one (a cost budget then stops early, never late).
   */
  usage(): AgentUsage | undefined {
    const result = this.final;
    if (result === undefined) return undefined;
    const tokens = result.usage ?? { inputTokens: 0, outputTokens: 0, cacheReadTokens: 0, cacheCreationTokens: 0 };
    return { ...tokens, costUsd: result.invocationCostUsd ?? result.totalCostUsd ?? 0 };
  }

  /** The final answer, else the last assistant text, else the reported errors; the last 4 KiB. */
  output(): string {
    const text = this.final?.text ?? this.lastText ?? this.final?.errors.join('\n') ?? '';
    const trimmed = text.trim();
    return trimmed.length <= OUTPUT_SUMMARY_CHARS ? trimmed : trimmed.slice(-OUTPUT_SUMMARY_CHARS);
  }
}

function assertNever(value: never): never {
  throw new AgentGateError('AG_ERR_INTERNAL', `Unhandled value: ${JSON.stringify(value)}`);
}

// ---------------------------------------------------------------------------------------------------
// Classification
// ---------------------------------------------------------------------------------------------------

export type ClaudeRunClassification = 'ok' | 'aborted' | { failure: AgentFailureKind; error: AgentGateError };

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
  const { process: proc, result } = outcome;
  const tail = outcome.lastStderrLine === '' ? '' : `: ${outcome.lastStderrLine}`;
  const details: Record<string, unknown> = {
    agent: CLAUDE_CODE_AGENT_NAME,
    iteration: outcome.iteration,
    outcome: proc.outcome,
    exitCode: proc.exitCode,
    signal: proc.signal,
    ...(outcome.sessionId === undefined ? {} : { sessionId: outcome.sessionId }),
    ...(result === undefined ? {} : { subtype: result.subtype, terminalReason: result.terminalReason, apiErrorStatus: result.apiErrorStatus, numTurns: result.numTurns }),
    ...(outcome.lastStderrLine === '' ? {} : { lastStderrLine: outcome.lastStderrLine }),
    ...outcome.extraDetails,
  };
  const fail = (failure: AgentFailureKind, message: string, extra: { cause?: unknown; retryable?: boolean; code?: AgentGateError['code'] } = {}): ClaudeRunClassification => ({
    failure,
    error: new AgentGateError(extra.code ?? AGENT_FAILURE_CODES[failure], message, {
      details,
      ...(extra.cause === undefined ? {} : { cause: extra.cause }),
      ...(extra.retryable === undefined ? {} : { retryable: extra.retryable }),
    }),
  });

  switch (proc.outcome) {
    case 'aborted':
      return 'aborted';
    case 'spawn_error': {
      const code = (proc.error as NodeJS.ErrnoException | undefined)?.code;
      if (code === 'ENOENT' || code === 'EACCES') {
        return fail('agent_crash', `Claude Code could not be started (${code}). ${CLAUDE_CODE_INSTALL_HINT}`, { cause: proc.error, code: 'AG_ERR_AGENT_NOT_INSTALLED' });
      }
      return fail('agent_crash', `Claude Code could not be started: ${proc.error?.message ?? 'unknown error'}`, { cause: proc.error });
    }
    case 'idle_timeout':
      return fail('agent_timeout', `Claude Code produced no output for ${outcome.idleTimeoutMs} ms and was stopped${tail}`);
    case 'timeout':
      return fail('agent_timeout', `Claude Code was stopped at the run deadline after ${proc.durationMs} ms${tail}`);
    case 'exited':
      break;
    default:
      return assertNever(proc.outcome);
  }

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

function boundMessage(text: string): string {
  const line = text.trim();
  return line.length > 500 ? `${line.slice(0, 500)}…` : line;
}

// ---------------------------------------------------------------------------------------------------
// The driver
// ---------------------------------------------------------------------------------------------------

interface Invocation {
  process: ProcessResult;
  stream: ClaudeStreamAccumulator;
  lastStderrLine: string;
  survivors: number[];
  resumeSessionId: string | undefined;
}

interface RunIo {
  transcript: AgentTranscript;
  clean: (text: string) => string;
  emit: (event: AgentStreamEvent) => void;
}

type PartialSummary = Omit<AgentSummary, 'durationMs'>;

/**
 * Runs Claude Code. Stateless apart from its configuration; one instance serves every run. `run()` never
 * throws, and when it resolves no process claude started is alive (its group is killed and processes
 * that left the group are found by {@link AGENT_PROCESS_TAG_ENV}).
 */
export class ClaudeCodeDriver implements AgentDriver {
  readonly name = CLAUDE_CODE_AGENT_NAME;

  constructor(private readonly config: ClaudeCodeDriverConfig = {}) {}

  async run(request: AgentRequest, ctx: AgentRunContext): Promise<AgentResult> {
    const started = ctx.clock.now();
    try {
      return await this.runChecked(request, ctx, started);
    } catch (error) {
      // Only unexpected failures (file system, a bug) get here: classify them, never let them escape.
      return failed(ctx, started, EMPTY_SUMMARY, 'agent_crash', false, toAgentGateError(error, 'AG_ERR_PHASE_BUILD_AGENT_CRASH'));
    }
  }

  private async runChecked(request: AgentRequest, ctx: AgentRunContext, started: number): Promise<AgentResult> {
    try {
      validateClaudeCodeOptions(request.options);
    } catch (error) {
      return failed(ctx, started, EMPTY_SUMMARY, 'agent_crash', false, toAgentGateError(error, 'AG_ERR_CONFIG_INVALID'));
    }
    if (ctx.signal.aborted) return abortedResult(ctx, started, EMPTY_SUMMARY);
    const blocker = await startBlocker(request, ctx, 'Claude Code');
    if (blocker !== undefined) return failed(ctx, started, EMPTY_SUMMARY, blocker.failure, false, blocker.error);

    const hostEnv = this.config.env ?? process.env;
    const wanted = this.config.binary ?? nonEmpty(hostEnv[CLAUDE_CODE_BIN_ENV]) ?? 'claude';
    const binary = await resolveExecutable(wanted, request.env['PATH'] ?? hostEnv['PATH']);
    if (binary === undefined) {
      const error = new AgentGateError('AG_ERR_AGENT_NOT_INSTALLED', `Claude Code binary "${wanted}" was not found or is not executable. ${CLAUDE_CODE_INSTALL_HINT}`, {
        details: { agent: CLAUDE_CODE_AGENT_NAME, binary: wanted },
      });
      return failed(ctx, started, EMPTY_SUMMARY, 'agent_crash', false, error);
    }

    // Secrets of the server and of the agent's own environment (its API key) are redacted everywhere.
    const secrets = [...new Set([...secretValues(hostEnv), ...secretValues(request.env)])];
    const clean = (text: string): string => redact(text, secrets);
    await mkdir(request.artifactsDir, { recursive: true });
    const transcriptPath = path.join(request.artifactsDir, TRANSCRIPT_FILE);
    const transcript = new AgentTranscript(transcriptPath);
    let emitError: unknown;
    const emit = (event: AgentStreamEvent): void => {
      try {
        emitTyped(ctx, event);
      } catch (error) {
        // Keep claude running and the transcript complete; the failure is reported in the result.
        emitError ??= error;
      }
    };
    const io: RunIo = { transcript, clean, emit };

    let invocation = await this.invoke(binary, request, ctx, io, request.sessionId);
    if (couldNotResume(invocation)) {
      // The session store is gone (another HOME, a wiped config dir): start over with task + feedback
      // rather than failing the iteration on something the agent did not do.
      const note = `claude: session ${request.sessionId ?? ''} could not be resumed; starting a new session with the task and the feedback`;
      transcript.write(`=== ${note} ===`);
      emit({ type: 'agent_output', data: { iteration: request.iteration, stream: 'stderr', text: note } });
      invocation = await this.invoke(binary, request, ctx, io, undefined);
    }
    const transcriptError = await transcript.close();

    const stream = invocation.stream;
    const usage = stream.usage();
    const summary: PartialSummary = {
      exitCode: invocation.process.exitCode,
      output: stream.output(),
      toolCalls: stream.toolCalls,
      ...(stream.sessionId === undefined ? {} : { sessionId: stream.sessionId }),
      ...(stream.model === undefined ? {} : { model: stream.model }),
      ...(usage === undefined ? {} : { usage }),
      ...(stream.result?.numTurns === undefined ? {} : { turns: stream.result.numTurns }),
      ...(transcriptError === undefined ? { transcriptPath } : {}),
    };

    const listenerError = emitError ?? (invocation.process.outcome === 'spawn_error' ? undefined : invocation.process.error);
    const classified = classifyClaudeRun({
      process: invocation.process,
      result: stream.result,
      ...(stream.sessionId === undefined ? {} : { sessionId: stream.sessionId }),
      lastStderrLine: invocation.lastStderrLine,
      idleTimeoutMs: request.idleTimeoutMs,
      iteration: request.iteration,
      // A listener error is isolated while claude runs but never dropped: named in any failure.
      ...(listenerError === undefined ? {} : { extraDetails: { eventError: describeError(listenerError) } }),
    });
    const aborted = classified === 'aborted';
    if (invocation.survivors.length > 0) {
      const error = new AgentGateError('AG_ERR_PHASE_BUILD_AGENT_CRASH', `Claude Code processes survived SIGKILL: ${invocation.survivors.join(', ')}.`, {
        details: { pids: invocation.survivors },
      });
      return failed(ctx, started, summary, 'agent_crash', aborted, error);
    }
    if (aborted) return abortedResult(ctx, started, summary);
    if (classified !== 'ok') {
      return failed(ctx, started, summary, classified.failure, false, classified.error);
    }
    if (listenerError !== undefined) {
      return failed(ctx, started, summary, 'agent_crash', false, toAgentGateError(listenerError, 'AG_ERR_INTERNAL'));
    }
    if (transcriptError !== undefined) {
      const error = new AgentGateError('AG_ERR_PHASE_BUILD_AGENT_CRASH', `The agent transcript could not be written: ${transcriptError.message}`, {
        cause: transcriptError,
        details: { transcriptPath },
      });
      return failed(ctx, started, summary, 'agent_crash', false, error);
    }
    return { ok: true, ...summary, durationMs: ctx.clock.now() - started };
  }

  /** Runs one claude process to its end and makes sure nothing it started is left. */
  private async invoke(binary: string, request: AgentRequest, ctx: AgentRunContext, io: RunIo, resumeSessionId: string | undefined): Promise<Invocation> {
    const { args } = buildClaudeCodeInvocation(request, resumeSessionId);
    const tag = randomUUID();
    // agentEnv() again: the caller already removed AgentGate's own secrets, but a mistake there must not
    // hand a forge token to the agent. request.env's ANTHROPIC_* pass through; options.baseUrl wins.
    const env = agentEnv(request.env, {
      ...CLAUDE_CODE_FIXED_ENV,
      ...(request.options.baseUrl === undefined ? {} : { ANTHROPIC_BASE_URL: request.options.baseUrl }),
      [AGENT_PROCESS_TAG_ENV]: tag,
    });
    const stream = new ClaudeStreamAccumulator(request.iteration);
    let lastStderrLine = '';
    const mode = resumeSessionId === undefined ? 'new session' : `resuming session ${resumeSessionId}`;
    io.transcript.write(`=== iteration ${request.iteration} started ${isoNow(ctx.clock)} (claude-code, ${mode}) ===`);

    const onLine = ({ stream: from, line }: ProcessLine): void => {
      if (line.trim() === '') return;
      if (from === 'stderr') {
        const text = io.clean(line);
        lastStderrLine = truncateText(text.trim(), 500, 'in the transcript');
        io.transcript.write(`[stderr] ${text}`);
        io.emit({ type: 'agent_output', data: { iteration: request.iteration, stream: 'stderr', text: truncateText(text, MAX_EVENT_LINE_CHARS) } });
        return;
      }
      // Redact first: the transcript, every event and the summary are built from the redacted line.
      const safe = redactJsonLine(line, io.clean);
      io.transcript.write(safe);
      for (const event of stream.push(safe)) io.emit(event);
    };

    const timeoutMs = request.deadline === undefined ? undefined : Math.max(1, request.deadline - ctx.clock.now());
    const result = await runProcess({
      command: binary,
      args,
      cwd: request.workspacePath,
      env,
      stdin: '',
      signal: ctx.signal,
      ...(timeoutMs === undefined ? {} : { timeoutMs }),
      idleTimeoutMs: request.idleTimeoutMs,
      onLine,
      ...(this.config.killGraceMs === undefined ? {} : { killGraceMs: this.config.killGraceMs }),
      clock: ctx.clock,
    });
    const reapMs = this.config.reapTimeoutMs ?? 3000;
    const groupSurvivors = result.pid === undefined ? [] : await waitForProcessGroupExit(result.pid, reapMs);
    // claude runs its Bash tool in a process group of its own: when claude was SIGKILLed before it could
    // stop that group, only the tag finds what is left.
    const taggedSurvivors = await killTaggedProcesses(tag, reapMs);
    const survivors = [...new Set([...groupSurvivors, ...taggedSurvivors])];
    io.transcript.write(`=== iteration ${request.iteration} finished: ${describeProcessEnd(result)} after ${result.durationMs} ms ===`);
    return { process: result, stream, lastStderrLine, survivors, resumeSessionId };
  }
}

/** The registry's factory. */
export function createClaudeCodeDriver(config: ClaudeCodeDriverConfig = {}): ClaudeCodeDriver {
  return new ClaudeCodeDriver(config);
}

const EMPTY_SUMMARY: PartialSummary = { exitCode: null, output: '', toolCalls: 0 };

/**
 * A resume that failed before a session started: claude prints no `system/init`, only an `is_error`
 * result with zero turns (observed: `error_during_execution`, "No conversation found with session ID").
 */
function couldNotResume(invocation: Invocation): boolean {
  const result = invocation.stream.result;
  return (
    invocation.resumeSessionId !== undefined &&
    invocation.process.outcome === 'exited' &&
    !invocation.stream.sawInit &&
    result !== undefined &&
    result.isError &&
    (result.numTurns ?? 0) === 0 &&
    result.terminalReason !== 'api_error' &&
    result.apiErrorStatus === undefined
  );
}

function emitTyped(ctx: AgentRunContext, event: AgentStreamEvent): void {
  switch (event.type) {
    case 'agent_output':
      ctx.emit('agent_output', event.data);
      return;
    case 'agent_tool_call':
      ctx.emit('agent_tool_call', event.data);
      return;
    case 'agent_tool_result':
      ctx.emit('agent_tool_result', event.data);
      return;
    default:
      assertNever(event);
  }
}

function failed(ctx: AgentRunContext, started: number, summary: PartialSummary, failure: AgentFailureKind, aborted: boolean, error: AgentGateError): AgentResult {
  return { ok: false, failure, aborted, error, ...summary, durationMs: ctx.clock.now() - started };
}

/**
 * A canceled agent reports *canceled*, not failed. When the signal was aborted with an AgentGateError as
 * its typed reason (e.g. the run's wall clock), that error is kept so the engine can tell why.
 */
function abortedResult(ctx: AgentRunContext, started: number, summary: PartialSummary): AgentResult {
  const { error, failure: kind } = cancellationOf(ctx.signal, 'Claude Code');
  return failed(ctx, started, summary, kind, true, error);
}


function describeError(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value.trim() === '' ? undefined : value;
}



