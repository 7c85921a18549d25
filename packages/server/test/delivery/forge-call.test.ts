import { describe, expect, it } from 'vitest';
import { AgentGateError } from '../../src/errors.js';
import { classifyForgeError, DEFAULT_FORGE_RETRY, forgeCall, rateLimitWaitMs, type ForgeCallOptions } from '../../src/delivery/forge-call.js';
import { ManualClock } from '../../src/util/clock.js';

/** An error shaped like Octokit's RequestError. */
function httpError(status: number, headers: Record<string, string> = {}): Error {
  return Object.assign(new Error(`HTTP ${status}`), { status, response: { headers } });
}

/** Moves the manual clock a minute at a time until `done` (timers fire at their due time). */
async function settle(clock: ManualClock, done: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !done(); i += 1) {
    await new Promise((resolve) => setImmediate(resolve));
    if (clock.pending() > 0) await clock.advance(60_000);
  }
}

function options(clock: ManualClock, extra: Partial<ForgeCallOptions> = {}): ForgeCallOptions {
  return { what: 'read the thing', clock, signal: new AbortController().signal, policy: DEFAULT_FORGE_RETRY, classify: (e) => classifyForgeError(e, clock.now()), secrets: ['s3cr3t-token'], ...extra };
}

describe('forgeCall', () => {
  it('waits until x-ratelimit-reset on the injected clock, then retries', async () => {
    const clock = new ManualClock(1_000_000);
    const attempts: number[] = [];
    let result: string | undefined;
    const call = forgeCall(async () => {
      attempts.push(clock.now());
      if (attempts.length === 1) throw httpError(403, { 'x-ratelimit-remaining': '0', 'x-ratelimit-reset': String(1_000_000 / 1000 + 600) });
      return 'ok';
    }, options(clock)).then((value) => (result = value));
    await settle(clock, () => result !== undefined);
    await call;
    expect(result).toBe('ok');
    expect(attempts[1]! - attempts[0]!).toBe(601_000);
  });

  it('honours retry-after and backs off exponentially on 5xx, with a bounded number of attempts', async () => {
    const clock = new ManualClock(0);
    const attempts: number[] = [];
    let failure: unknown;
    const call = forgeCall(async () => {
      attempts.push(clock.now());
      throw httpError(502);
    }, options(clock, { policy: { ...DEFAULT_FORGE_RETRY, maxAttempts: 4 } })).catch((error: unknown) => (failure = error));
    await settle(clock, () => failure !== undefined);
    await call;
    expect(attempts).toEqual([0, 1000, 3000, 7000]);
    expect(failure).toBeInstanceOf(AgentGateError);
    expect((failure as AgentGateError).code).toBe('AG_ERR_DELIVERY_FORGE');
    expect((failure as AgentGateError).retryable).toBe(true);
  });

  it('does not retry a 404 and redacts the token from the message', async () => {
    const clock = new ManualClock(0);
    let calls = 0;
    const error = await forgeCall(async () => {
      calls += 1;
      throw Object.assign(new Error('Not Found for s3cr3t-token'), { status: 404, response: { headers: {} } });
    }, options(clock)).catch((e: unknown) => e);
    expect(calls).toBe(1);
    expect((error as AgentGateError).message).not.toContain('s3cr3t-token');
    expect((error as AgentGateError).retryable).toBe(false);
  });

  it('gives up at once when the rate limit resets past the deadline, marking it as a deadline', async () => {
    const clock = new ManualClock(0);
    const error = await forgeCall(() => Promise.reject(httpError(429, { 'retry-after': '120' })), options(clock, { deadline: 60_000 })).catch((e: unknown) => e);
    expect((error as AgentGateError).details?.['deadline']).toBe(true);
  });

  it('reads retry-after as seconds or a date, and the reset as epoch seconds plus one', () => {
    expect(rateLimitWaitMs({ 'retry-after': '3' }, 0)).toBe(3000);
    expect(rateLimitWaitMs({ 'retry-after': new Date(10_000).toUTCString() }, 0)).toBe(10_000);
    expect(rateLimitWaitMs({ 'x-ratelimit-reset': '5' }, 1000)).toBe(5000);
    expect(rateLimitWaitMs({}, 0)).toBeUndefined();
  });
});
