/**
 * The shapes of `codex exec --json` events (codex-cli 0.169.0) and what one invocation's stream said.
 * Unknown event types and changed shapes fail these schemas and stay in the transcript only.
 */
import { z } from 'zod';
import type { AgentStreamEvent } from '../process-driver/protocol.js';

/** `turn.completed.usage` as codex prints it: cumulative over the whole thread (see {@link perIterationUsage}). */
export interface CodexTokenUsage {
  inputTokens: number;
  cachedInputTokens: number;
  cacheWriteInputTokens?: number;
  outputTokens: number;
  reasoningOutputTokens: number;
}

/** A token count in a usage report. */
export const tokenCount = z.number().int().nonnegative();
export const UsageSchema = z.object({
  input_tokens: tokenCount,
  cached_input_tokens: tokenCount.optional(),
  cache_write_input_tokens: tokenCount.optional(),
  output_tokens: tokenCount,
  reasoning_output_tokens: tokenCount.optional(),
});
export const ItemSchema = z.object({ id: z.string(), type: z.string() }).loose();
export const EventSchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('thread.started'), thread_id: z.string().min(1) }),
  z.object({ type: z.literal('turn.started') }),
  z.object({ type: z.literal('turn.completed'), usage: UsageSchema.optional() }),
  z.object({ type: z.literal('turn.failed'), error: z.object({ message: z.string() }).optional() }),
  z.object({ type: z.literal('error'), message: z.string() }),
  z.object({ type: z.enum(['item.started', 'item.updated', 'item.completed']), item: ItemSchema }),
]);
export const CommandItemSchema = z.object({ command: z.string(), aggregated_output: z.string().optional(), exit_code: z.number().int().nullable().optional(), status: z.string().optional() });
export const FileChangeItemSchema = z.object({ changes: z.array(z.object({ path: z.string(), kind: z.string() })), status: z.string().optional() });
export const TextItemSchema = z.object({ text: z.string() });
export const MessageItemSchema = z.object({ message: z.string() });
export const McpItemSchema = z.object({
  server: z.string(),
  tool: z.string(),
  arguments: z.unknown().optional(),
  result: z.unknown().optional(),
  error: z.object({ message: z.string() }).nullable().optional(),
  status: z.string().optional(),
});
export const WebSearchItemSchema = z.object({ query: z.string() });

export type CodexItem = z.infer<typeof ItemSchema>;
export type CodexUsageJson = z.infer<typeof UsageSchema>;

/** An event for the event hub, as data (the accumulator does no I/O). */
export type CodexEmission = AgentStreamEvent;

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
