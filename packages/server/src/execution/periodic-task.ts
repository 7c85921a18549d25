/**
 * Periodic work on the injected clock (STYLE 12): one `setTimeout`, re-armed only after the previous
 * tick finished, so ticks never overlap and a slow store stretches the period instead of piling up
 * calls; `stop()` clears the timer and waits for a tick in progress. Used by the queue for
 * reconciliation and for polling a shared store.
 */
import type { TimerClock, TimerHandle } from '../util/clock.js';

export interface PeriodicTaskOptions {
  readonly clock: TimerClock;
  /** Period in ms; 0 never runs. */
  readonly everyMs: number;
  /** One tick. A rejection goes to `onError` and the task goes on. */
  readonly run: () => Promise<void>;
  readonly onError: (error: unknown) => void;
}

export class PeriodicTask {
  private timer: TimerHandle | undefined;
  private running: Promise<void> | undefined;
  private started = false;
  private stopped = false;

  constructor(private readonly options: PeriodicTaskOptions) {}

  /** Arms the first tick after one period. Idempotent; does nothing once stopped. */
  start(): void {
    if (this.started || this.stopped) return;
    this.started = true;
    this.arm();
  }

  /** No more ticks; resolves once a tick in progress finished. Idempotent. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.options.clock.clearTimeout(this.timer);
    this.timer = undefined;
    await this.running;
  }

  private arm(): void {
    if (this.stopped || this.options.everyMs === 0) return;
    this.timer = this.options.clock.setTimeout(() => {
      this.timer = undefined;
      this.running = this.tick();
    }, this.options.everyMs);
  }

  private async tick(): Promise<void> {
    try {
      await this.options.run();
    } catch (error) {
      this.options.onError(error);
    }
    this.arm();
  }
}

/** Waits for `promise` at most `ms` on `clock`: true when it settled first (its rejection counts as settled). */
export async function settlesWithin(clock: TimerClock, promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: TimerHandle | undefined;
  const deadline = new Promise<false>((resolve) => {
    timer = clock.setTimeout(() => resolve(false), ms);
  });
  const settled = promise.then(
    () => true,
    () => true,
  );
  try {
    return await Promise.race([settled, deadline]);
  } finally {
    clock.clearTimeout(timer);
  }
}
