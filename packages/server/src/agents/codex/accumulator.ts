/** Folds `codex exec --json` lines into AgentGate events and a {@link CodexStreamSummary}. Pure. */
import { assertNever } from '../../util/abort.js';
import { mapJsonStrings } from '../process-driver/json-lines.js';
import type { StreamAccumulator } from '../process-driver/protocol.js';
import { boundJsonStrings, MAX_EVENT_LINE_CHARS, truncateText } from '../process-driver/text.js';
import {
  CommandItemSchema,
  EventSchema,
  FileChangeItemSchema,
  McpItemSchema,
  MessageItemSchema,
  TextItemSchema,
  WebSearchItemSchema,
  type CodexEmission,
  type CodexStreamSummary,
  type CodexTokenUsage,
  type CodexItem,
  type CodexUsageJson,
} from './events.js';

/** Longest tool output put into one `agent_tool_result` event (its end is kept; the transcript has it all). */
export const MAX_TOOL_OUTPUT_CHARS = 4096;


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
export class CodexEventAccumulator implements StreamAccumulator {
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

  private itemStarted(item: CodexItem): CodexEmission[] {
    const call = this.toolCall(item);
    if (call === undefined) return [];
    this.openCalls.add(item.id);
    return [call];
  }

  private itemCompleted(item: CodexItem): CodexEmission[] {
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

  private toolCall(item: CodexItem): CodexEmission | undefined {
    const described = describeTool(item);
    if (described === undefined) return undefined;
    this.toolCalls += 1;
    return { type: 'agent_tool_call', data: { iteration: this.iteration, tool: described.tool, id: item.id, input: boundJsonStrings(mapJsonStrings(described.input, this.clean), MAX_TOOL_OUTPUT_CHARS) } };
  }

  private toolResult(item: CodexItem): CodexEmission | undefined {
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

function describeTool(item: CodexItem): DescribedTool | undefined {
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

function toTokenUsage(usage: CodexUsageJson): CodexTokenUsage {
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
