/**
 * Time sources. {@link Clock} is the read-only view (durations, timestamps); {@link TimerClock} adds
 * timers, so deadlines, heartbeats and polling can be driven by a {@link ManualClock} in tests instead
 * of sleeping. The engine, the run actor, leases and (later) CI polling take a `TimerClock`.
 */
export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
}

/** Opaque handle of a timer started by a {@link TimerClock}. */
export interface TimerHandle {
  readonly id: number;
}

export interface TimerClock extends Clock {
  /** Calls `fn` once after `ms` milliseconds of this clock's time. */
  setTimeout(fn: () => void, ms: number): TimerHandle;
  clearTimeout(handle: TimerHandle | undefined): void;
  /** Resolves after `ms`; rejects with the signal's reason when it aborts first. */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

let nextTimerId = 1;

function sleepOn(clock: Pick<TimerClock, 'setTimeout' | 'clearTimeout'>, ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = (): void => {
      clock.clearTimeout(handle);
      reject(signal?.reason);
    };
    const handle = clock.setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

class SystemClock implements TimerClock {
  private readonly timers = new Map<number, ReturnType<typeof setTimeout>>();

  now(): number {
    return Date.now();
  }

  setTimeout(fn: () => void, ms: number): TimerHandle {
    const id = nextTimerId++;
    const timer = setTimeout(() => {
      this.timers.delete(id);
      fn();
    }, ms);
    // A pending deadline or heartbeat never keeps the process alive on its own.
    timer.unref();
    this.timers.set(id, timer);
    return { id };
  }

  clearTimeout(handle: TimerHandle | undefined): void {
    if (handle === undefined) return;
    clearTimeout(this.timers.get(handle.id));
    this.timers.delete(handle.id);
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return sleepOn(this, ms, signal);
  }
}

export const systemClock: TimerClock = new SystemClock();

/**
 * The `now` a lease call passes to the store: none with the system clock, so the store decides at its own
 * clock — PostgreSQL's, which every process sharing the database agrees on, whatever the skew between
 * their hosts — and the injected time with any other clock (tests drive leases with a ManualClock).
 */
export function leaseNow(clock: Clock): { now?: Date } {
  return clock === systemClock ? {} : { now: new Date(clock.now()) };
}

export function isoNow(clock: Clock): string {
  return new Date(clock.now()).toISOString();
}

/**
 * A clock that moves only when told to. `advance(ms)` moves time forward and runs every timer that
 * falls due, in due order, awaiting microtasks between them so promise chains started by one timer
 * run before the next fires.
 */
export class ManualClock implements TimerClock {
  private current: number;
  private readonly timers = new Map<number, { due: number; fn: () => void }>();

  constructor(start = Date.parse('2026-01-01T00:00:00.000Z')) {
    this.current = start;
  }

  now(): number {
    return this.current;
  }

  setTimeout(fn: () => void, ms: number): TimerHandle {
    const id = nextTimerId++;
    this.timers.set(id, { due: this.current + Math.max(0, ms), fn });
    return { id };
  }

  clearTimeout(handle: TimerHandle | undefined): void {
    if (handle !== undefined) this.timers.delete(handle.id);
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return sleepOn(this, ms, signal);
  }

  /** Number of timers waiting to fire. */
  pending(): number {
    return this.timers.size;
  }

  async advance(ms: number): Promise<void> {
    const target = this.current + ms;
    for (;;) {
      let next: [number, { due: number; fn: () => void }] | undefined;
      for (const entry of this.timers) if (entry[1].due <= target && (next === undefined || entry[1].due < next[1].due)) next = entry;
      if (next === undefined) break;
      this.timers.delete(next[0]);
      this.current = next[1].due;
      next[1].fn();
      await flushMicrotasks();
    }
    this.current = target;
    await flushMicrotasks();
  }
}

async function flushMicrotasks(): Promise<void> {
  for (let i = 0; i < 20; i += 1) await Promise.resolve();
}
