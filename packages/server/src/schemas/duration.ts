/**
 * Human-friendly durations for TaskSpec limits, CI settings and CLI flags.
 *
 * People write `30m`, `1h30m` or `90s`; the engine works in milliseconds. Keeping the parser in one place
 * means every surface (YAML, HTTP body, `--timeout` flag) accepts the same spellings and rejects bad ones
 * with the same message. A bare number means **seconds**, because that is what the legacy WorkOrder API
 * (`maxTime`) and verify.yaml (`timeout`) always used.
 */

import { z } from 'zod';
import { AgentGateError } from '../errors.js';
import type { ErrorCode } from '../errors.js';

/** Milliseconds per unit, largest first: the parser requires components in this order (`1h30m`, not `30m1h`). */
const UNIT_MS = {
  d: 86_400_000,
  h: 3_600_000,
  m: 60_000,
  s: 1_000,
  ms: 1,
} as const;

type DurationUnit = keyof typeof UNIT_MS;

const UNIT_ORDER: readonly DurationUnit[] = ['d', 'h', 'm', 's', 'ms'];

/** One `<number><unit>` component; `ms` must be tried before `m` and `s`. */
const COMPONENT = /(\d+(?:\.\d+)?|\.\d+)\s*(ms|d|h|m|s)/y;

/** Shown in every error so the reader knows what a valid value looks like. */
export const DURATION_HINT = 'use e.g. 30m, 1h, 90s, 1h30m, 500ms or a number of seconds';

export type DurationParseResult = { ok: true; ms: number } | { ok: false; reason: string };

/** Quotes a value for an error message without dumping a huge or nested input. */
function show(value: unknown): string {
  if (typeof value === 'string') {
    const clipped = value.length > 40 ? `${value.slice(0, 40)}…` : value;
    return JSON.stringify(clipped);
  }
  if (typeof value === 'number' || typeof value === 'boolean' || value === null || value === undefined) {
    return String(value);
  }
  return Array.isArray(value) ? 'an array' : 'an object';
}

function invalid(value: unknown): DurationParseResult {
  return { ok: false, reason: `invalid duration ${show(value)} (${DURATION_HINT})` };
}

function secondsToMs(seconds: number): number {
  return Math.round(seconds * 1000);
}

/**
 * Parses a duration without throwing, for use inside zod refinements and flag parsers.
 *
 * Accepts a non-negative finite number (seconds), a numeric string (seconds), or one or more
 * `<number><unit>` components in decreasing unit order with units `d`, `h`, `m`, `s`, `ms`.
 */
export function tryParseDuration(input: unknown): DurationParseResult {
  if (typeof input === 'number') {
    if (!Number.isFinite(input) || input < 0) return invalid(input);
    return withinTimerRange(input, secondsToMs(input));
  }
  if (typeof input !== 'string') return invalid(input);

  const text = input.trim().toLowerCase();
  if (text === '') return invalid(input);
  if (/^(\d+(\.\d+)?|\.\d+)$/.test(text)) return withinTimerRange(input, secondsToMs(Number(text)));

  let total = 0;
  let position = 0;
  let previousUnit = -1;
  while (position < text.length) {
    COMPONENT.lastIndex = position;
    const match = COMPONENT.exec(text);
    if (match === null) return invalid(input);
    const whole = match[0];
    const amount = Number(match[1]);
    const unit = match[2] as DurationUnit;
    const unitIndex = UNIT_ORDER.indexOf(unit);
    if (unitIndex <= previousUnit) {
      return { ok: false, reason: `invalid duration ${show(input)}: units must go from largest to smallest, each once (${DURATION_HINT})` };
    }
    previousUnit = unitIndex;
    total += amount * UNIT_MS[unit];
    position += whole.length;
    while (text[position] === ' ') position += 1;
  }

  const ms = Math.round(total);
  if (!Number.isSafeInteger(ms)) return invalid(input);
  return withinTimerRange(input, ms);
}

/**
 * Node's timers hold at most 2^31-1 ms (about 24.8 days); a longer delay fires after 1 ms. A duration the
 * engine cannot wait for is invalid input, never a run that times out at once.
 * https://nodejs.org/api/timers.html#settimeoutcallback-delay-args
 */
export const MAX_DURATION_MS = 2 ** 31 - 1;

function withinTimerRange(input: unknown, ms: number): DurationParseResult {
  if (ms > MAX_DURATION_MS) return { ok: false, reason: `duration ${show(input)} is too long: at most 24d (${MAX_DURATION_MS} ms)` };
  return { ok: true, ms };
}

/**
 * Parses a duration into milliseconds or throws a classified error.
 *
 * `code` lets each caller classify the failure where it happened: a CLI flag is `AG_ERR_CLI_USAGE`,
 * an environment value `AG_ERR_CONFIG_INVALID`, a document field `AG_ERR_SCHEMA_INVALID`.
 */
export function parseDuration(input: string | number, code: ErrorCode = 'AG_ERR_CONFIG_INVALID'): number {
  const result = tryParseDuration(input);
  if (!result.ok) throw new AgentGateError(code, result.reason, { details: { value: input } });
  return result.ms;
}

/**
 * Formats milliseconds in the same notation the parser accepts (`90000` → `1m30s`), so a resolved value
 * can be echoed back in logs, PR bodies and `--json` output and pasted into a TaskSpec unchanged.
 */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms)) {
    throw new AgentGateError('AG_ERR_INTERNAL', `formatDuration expects a finite number of milliseconds, got ${String(ms)}`);
  }
  if (ms < 0) return `-${formatDuration(-ms)}`;
  let rest = Math.round(ms);
  if (rest === 0) return '0s';
  let out = '';
  for (const unit of UNIT_ORDER) {
    const size = UNIT_MS[unit];
    const count = Math.floor(rest / size);
    if (count > 0) {
      out += `${count}${unit}`;
      rest -= count * size;
    }
  }
  return out;
}

/**
 * A zod schema for a positive duration field. The value stays as written (`"30m"` or `1800`) in the parsed
 * document, so a TaskSpec round-trips unchanged; {@link parseDuration} converts it when the spec is resolved.
 */
export const DurationSchema = z
  .union([z.string(), z.number()], { error: (issue) => (issue.input === undefined ? 'required' : `invalid duration ${show(issue.input)} (${DURATION_HINT})`) })
  .superRefine((value, ctx) => {
    const result = tryParseDuration(value);
    if (!result.ok) ctx.addIssue({ code: 'custom', message: result.reason });
    else if (result.ms <= 0) ctx.addIssue({ code: 'custom', message: `duration must be greater than zero, got ${show(value)}` });
  });

/** Durations as they appear in a document before resolution. */
export type DurationInput = z.infer<typeof DurationSchema>;
