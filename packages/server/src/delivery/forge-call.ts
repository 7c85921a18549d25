/**
 * One forge API call with retries on the injected clock. The HTTP clients retry a little on their own
 * (Octokit's retry plugin for 5xx, gitbeaker for 429/502, both with short in-process waits); what they
 * give up on comes here:
 * - **rate limits** wait until the forge says: `retry-after` seconds, else `x-ratelimit-reset` /
 *   `ratelimit-reset` (epoch seconds), plus one second
 *   (https://docs.github.com/en/rest/using-the-rest-api/rate-limits-for-the-rest-api#exceeding-the-rate-limit,
 *   https://docs.gitlab.com/ee/administration/settings/user_and_ip_rate_limits.html#response-headers);
 * - **transient failures** (5xx, network) back off exponentially;
 * - everything else (401, 404, 422 …) fails at once.
 * Waits never go past `deadline`, and the number of attempts is bounded, so a flapping forge costs a
 * known number of requests. The final failure is `AG_ERR_DELIVERY_FORGE` with the token redacted.
 */
import { AgentGateError } from '../errors.js';
import { abortError } from '../util/abort.js';
import type { TimerClock } from '../util/clock.js';
import { redact } from '../util/secrets.js';

export type ForgeFailure =
  | { readonly retry: 'rate_limit'; readonly waitMs: number; readonly status: number }
  | { readonly retry: 'transient'; readonly status?: number; readonly waitMs?: number }
  | { readonly retry: 'never'; readonly status?: number };

export interface ForgeRetryPolicy {
  /** Attempts per call, the first included. Default 6. */
  readonly maxAttempts: number;
  /** First backoff after a transient failure; doubled each time. Default 1 s. */
  readonly baseDelayMs: number;
  /** Longest backoff. Default 60 s. */
  readonly maxDelayMs: number;
  /** Longest wait for a rate-limit reset before giving up. Default 15 min. */
  readonly maxRateLimitWaitMs: number;
}

export const DEFAULT_FORGE_RETRY: ForgeRetryPolicy = { maxAttempts: 6, baseDelayMs: 1000, maxDelayMs: 60_000, maxRateLimitWaitMs: 15 * 60_000 };

export interface ForgeCallOptions {
  readonly what: string;
  readonly clock: TimerClock;
  readonly signal: AbortSignal;
  readonly policy: ForgeRetryPolicy;
  readonly classify: (error: unknown) => ForgeFailure;
  /** Values to redact from messages (the token). */
  readonly secrets: readonly string[];
  /** No wait goes past this instant (epoch ms); the last failure is reported instead. */
  readonly deadline?: number;
  /** Called before each wait (for ci_status events and logs). */
  readonly onWait?: (info: { attempt: number; waitMs: number; reason: 'rate_limit' | 'transient' }) => void;
}

/** The wait a rate-limited response asks for, from its headers; undefined when it names none. */
export function rateLimitWaitMs(headers: Readonly<Record<string, string | undefined>>, nowMs: number): number | undefined {
  const retryAfter = headers['retry-after'];
  if (retryAfter !== undefined && retryAfter.trim() !== '') {
    const seconds = Number(retryAfter);
    if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
    const date = Date.parse(retryAfter);
    if (Number.isFinite(date)) return Math.max(0, date - nowMs);
  }
  const reset = headers['x-ratelimit-reset'] ?? headers['ratelimit-reset'];
  if (reset !== undefined && /^\d+$/.test(reset)) return Math.max(0, Number(reset) * 1000 - nowMs) + 1000;
  return undefined;
}

export async function forgeCall<T>(call: () => Promise<T>, options: ForgeCallOptions): Promise<T> {
  const { clock, signal, policy } = options;
  let delay = policy.baseDelayMs;
  for (let attempt = 1; ; attempt += 1) {
    if (signal.aborted) throw abortError(signal, options.what);
    let failure: ForgeFailure;
    let caught: unknown;
    try {
      return await call();
    } catch (error) {
      if (signal.aborted) throw abortError(signal, options.what);
      caught = error;
      failure = options.classify(error);
    }
    const last = attempt >= policy.maxAttempts || failure.retry === 'never';
    let waitMs = 0;
    if (failure.retry === 'rate_limit') waitMs = failure.waitMs;
    else if (failure.retry === 'transient') {
      waitMs = Math.max(failure.waitMs ?? 0, delay);
      delay = Math.min(delay * 2, policy.maxDelayMs);
    }
    const tooLong = failure.retry === 'rate_limit' && waitMs > policy.maxRateLimitWaitMs;
    const pastDeadline = options.deadline !== undefined && clock.now() + waitMs > options.deadline;
    if (last || tooLong || pastDeadline) throw forgeError(options, caught, failure, attempt, tooLong, pastDeadline && !last && !tooLong);
    options.onWait?.({ attempt, waitMs, reason: failure.retry === 'rate_limit' ? 'rate_limit' : 'transient' });
    try {
      await clock.sleep(waitMs, signal);
    } catch {
      throw abortError(signal, options.what);
    }
  }
}

function forgeError(options: ForgeCallOptions, caught: unknown, failure: ForgeFailure, attempts: number, tooLong: boolean, pastDeadline: boolean): AgentGateError {
  if (caught instanceof AgentGateError) return caught;
  const detail = redact(caught instanceof Error ? caught.message : String(caught), options.secrets).replace(/\s+/g, ' ').slice(0, 300);
  const status = failure.status === undefined ? '' : ` (HTTP ${failure.status})`;
  const why = tooLong || pastDeadline ? '; the forge asked to wait past the deadline' : failure.retry === 'never' ? '' : ` after ${attempts} attempt(s)`;
  return new AgentGateError('AG_ERR_DELIVERY_FORGE', `Could not ${options.what}${status}${why}: ${detail}`, {
    retryable: failure.retry !== 'never',
    details: { attempts, deadline: pastDeadline, ...(failure.status === undefined ? {} : { status: failure.status }) },
  });
}

/** Status and headers of an HTTP client error: Octokit's RequestError or gitbeaker's (`cause.response`). */
export function httpErrorInfo(error: unknown): { status?: number; headers: Record<string, string | undefined>; gaveUp?: boolean } {
  if (typeof error !== 'object' || error === null) return { headers: {} };
  if ('status' in error && typeof error.status === 'number') {
    const response = 'response' in error ? error.response : undefined;
    const raw = typeof response === 'object' && response !== null && 'headers' in response ? response.headers : undefined;
    const headers: Record<string, string | undefined> = {};
    if (typeof raw === 'object' && raw !== null) {
      for (const [key, value] of Object.entries(raw)) headers[key.toLowerCase()] = value === undefined || value === null ? undefined : String(value);
    }
    return { status: error.status, headers };
  }
  const cause = 'cause' in error ? error.cause : undefined;
  if (typeof cause === 'object' && cause !== null && 'response' in cause && cause.response instanceof Response) {
    return { status: cause.response.status, headers: Object.fromEntries([...cause.response.headers.entries()].map(([k, v]) => [k.toLowerCase(), v])) };
  }
  // gitbeaker gives up on 429/502 after its own quick retries and reports neither status nor headers.
  if (error instanceof Error && error.name === 'GitbeakerRetryError') return { headers: {}, gaveUp: true };
  return { headers: {} };
}

/**
 * The retry class of a forge client error: rate limits (403/429 with an exhausted quota or a
 * `retry-after`), transient (5xx, 408, network failures, a client that gave up retrying 429/502), never
 * (other 4xx).
 */
export function classifyForgeError(error: unknown, nowMs: number): ForgeFailure {
  const { status, headers, gaveUp } = httpErrorInfo(error);
  if (gaveUp === true) return { retry: 'transient' };
  if (status === undefined) {
    // No HTTP status: fetch rejects network failures (refused, reset) with a TypeError — worth retrying.
    // (Octokit reports them as status 500 itself.) Anything else is our own bug: not retried.
    return error instanceof TypeError ? { retry: 'transient' } : { retry: 'never' };
  }
  if (status === 403 || status === 429) {
    const limited = headers['x-ratelimit-remaining'] === '0' || headers['ratelimit-remaining'] === '0' || headers['retry-after'] !== undefined || status === 429;
    if (limited) return { retry: 'rate_limit', status, waitMs: rateLimitWaitMs(headers, nowMs) ?? 60_000 };
    return { retry: 'never', status };
  }
  if (status >= 500 || status === 408) {
    const waitMs = rateLimitWaitMs(headers, nowMs);
    return { retry: 'transient', status, ...(waitMs === undefined ? {} : { waitMs }) };
  }
  return { retry: 'never', status };
}
