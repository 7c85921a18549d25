/**
 * Folds the stream-json messages of one claude invocation into AgentGate events and what the driver
 * needs afterwards (session, model, result, usage, output). Pure; tested on captured output.
 */
import { assertNever } from '../../util/abort.js';
import type { AgentStreamEvent, StreamAccumulator } from '../process-driver/protocol.js';
import { boundJsonStrings, MAX_EVENT_LINE_CHARS, summaryTail, truncateText } from '../process-driver/text.js';
import type { AgentUsage } from '../types.js';
import { parseClaudeStreamLine, type ClaudeResult, type ClaudeStreamMessage } from './stream.js';

/** Longest tool output put into one `agent_tool_result` event; the transcript keeps it all. */
export const MAX_TOOL_OUTPUT_CHARS = 4096;

/** Longest string inside a tool call's input in an `agent_tool_call` event (a Write carries a whole file). */
export const MAX_TOOL_INPUT_STRING_CHARS = 4096;

/**
 * Folds the messages of one invocation into events and a summary. Pure: no I/O, no clock; feed it lines
 * (already redacted — it copies strings into events as they are) and read the summary at the end.
 */
export class ClaudeStreamAccumulator implements StreamAccumulator {
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
    return summaryTail(this.final?.text ?? this.lastText ?? this.final?.errors.join('\n') ?? '');
  }
}
