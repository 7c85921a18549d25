/**
 * Bounds on what an agent's output may put into events and summaries. An agent that prints a minified
 * bundle on one line, or a tool result holding a whole file, must not produce a multi-megabyte event;
 * the transcript keeps such lines (up to 1 MiB each, within its head and tail caps: transcript.ts).
 * How many output events a run gets is bounded separately (util/output-events).
 */
import { mapJsonStrings } from './json-lines.js';

/** How much of the end of the agent's output is kept as the iteration's `output` (read by ralph and the run record). */
export const OUTPUT_SUMMARY_CHARS = 4096;

/** Longest line text put into one `agent_output` event. */
export const MAX_EVENT_LINE_CHARS = 8192;

/** `text` cut to `max` characters with a note saying how much was left out. */
export function truncateText(text: string, max: number, where = 'in the transcript'): string {
  return text.length <= max ? text : `${text.slice(0, max)}… [${text.length - max} more characters ${where}]`;
}

/** A JSON value whose strings are each cut to `max` characters (tool inputs can hold whole files). */
export function boundJsonStrings(value: unknown, max: number): unknown {
  return mapJsonStrings(value, (text) => truncateText(text, max));
}

/** The last non-empty line of `text`, at most 500 characters (for error messages). */
export function lastLine(text: string): string {
  const lines = text.split('\n').map((l) => l.trim()).filter((l) => l !== '');
  const last = lines.at(-1) ?? '';
  return last.length > 500 ? `${last.slice(0, 500)}…` : last;
}

/** The trimmed end of a final message, at most {@link OUTPUT_SUMMARY_CHARS}. */
export function summaryTail(text: string): string {
  const trimmed = text.trim();
  return trimmed.length <= OUTPUT_SUMMARY_CHARS ? trimmed : trimmed.slice(-OUTPUT_SUMMARY_CHARS);
}

/** The last {@link OUTPUT_SUMMARY_CHARS} of raw output, starting at a line boundary when one is available. */
export function outputTail(output: string): string {
  const trimmed = output.trimEnd();
  if (trimmed.length <= OUTPUT_SUMMARY_CHARS) return trimmed;
  const tail = trimmed.slice(-OUTPUT_SUMMARY_CHARS);
  const newline = tail.indexOf('\n');
  return newline >= 0 && newline < tail.length - 1 ? tail.slice(newline + 1) : tail;
}
