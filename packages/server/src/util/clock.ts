/**
 * Time source injected wherever deadlines, heartbeats, backoff or durations are computed, so tests can
 * drive time with fake timers instead of sleeping. Timers themselves use the global setTimeout, which
 * vitest's fake timers replace.
 */
export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
}

export const systemClock: Clock = { now: () => Date.now() };

export function isoNow(clock: Clock): string {
  return new Date(clock.now()).toISOString();
}
