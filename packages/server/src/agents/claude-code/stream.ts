/**
 * The `claude --output-format stream-json --verbose` protocol: one JSON message per stdout line, parsed
 * into {@link ClaudeStreamMessage}. Pure; tested on captured claude 2.1.330 output.
 */
import { arrayField, booleanField, isJsonObject, numberField, objectField, parseJsonObject, stringField, type JsonObject } from '../process-driver/json-lines.js';

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
