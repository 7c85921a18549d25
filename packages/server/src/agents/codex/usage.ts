/**
 * Per-iteration token usage of codex, whose reports are cumulative over a thread, and the per-run file
 * that remembers each thread's total after its last invocation.
 */
import { readFile, rename, writeFile } from 'node:fs/promises';
import { z } from 'zod';
import type { AgentUsage } from '../types.js';
import { tokenCount as count, type CodexTokenUsage } from './events.js';

/**
 * Per-run file (in `request.artifactsDir`) remembering each codex thread's cumulative token usage after
 * the last invocation, so a resumed iteration can report only its own tokens (see {@link perIterationUsage}).
 */
export const CODEX_THREAD_USAGE_FILE = 'codex-thread-usage.json';

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

type ThreadUsageMap = Record<string, CodexTokenUsage>;

const ThreadUsageFileSchema = z.record(
  z.string(),
  z.object({ inputTokens: count, cachedInputTokens: count, cacheWriteInputTokens: count.optional(), outputTokens: count, reasoningOutputTokens: count }),
);

/**
 * Reads {@link CODEX_THREAD_USAGE_FILE}. A missing file is an empty map; an unreadable one is reported
 * through `note` (into the transcript) and treated as empty, which only makes usage err on the high side.
 */
export async function readThreadUsage(file: string, note: (text: string) => void): Promise<ThreadUsageMap> {
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
export async function writeThreadUsage(file: string, map: ThreadUsageMap): Promise<void> {
  const temp = `${file}.${process.pid}.tmp`;
  await writeFile(temp, `${JSON.stringify(map, null, 2)}\n`, 'utf8');
  await rename(temp, file);
}
