/**
 * One subscriber's view of one event log (a run's or a work order's): stored events after `afterSeq`,
 * then live ones, in seq order, each exactly once (SPEC 11).
 *
 * How "no gap, no duplicate" holds without racing two sources:
 * 1. The subscription is registered with the hub *before* anything is read, so from that instant
 *    every live event lands in its `pending` buffer.
 * 2. The consumer's pulls page through the store after the last accounted seq (`lastSeq`).
 * 3. When the store is exhausted, `pending` is drained: seq ≤ lastSeq is a duplicate and skipped,
 *    lastSeq + 1 is accepted, anything higher means events reached the log without being published
 *    (or out of order) — the missing range is read from the store before going on.
 * 4. Then the subscription is live: an event with the next seq goes straight to the ready queue; one
 *    that skips ahead switches back to step 2.
 *
 * Writers never wait for a subscriber: `push` is synchronous and O(1). Store reads happen only in the
 * consumer's `next()`, at the consumer's pace. Memory is bounded: when `ready + pending` would exceed
 * `maxQueued`, the subscription ends `lagged` (reporting the last seq it fully delivered, so the client
 * can resubscribe with `afterSeq`) and both buffers are released.
 *
 * `lastSeq` advances over *every* event, including those the filter rejects, so a filtered subscription
 * still detects gaps; only accepted events occupy the queue.
 *
 * Following the store (issue 14): when the log is written by another process (a run executed by another
 * worker sharing the database), nothing is pushed here. With `follow`, a live subscription whose
 * consumer is waiting reads the store every `everyMs` — the catch-up of step 2, so the same
 * dedup and gap rules hold — while `follow.needed()` says so (the hub answers false for runs this
 * process executes: their events are pushed). After the log's last event (`isLast`: a run's closing
 * event) it stops. Reads still happen only while the consumer waits, so a slow consumer is never
 * flooded by polls.
 */
import { AgentGateError, toAgentGateError } from '../errors.js';
import type { TimerClock, TimerHandle } from '../util/clock.js';

/** Why a subscription ended. `lastSeq`: every event up to it was delivered (or filtered out). */
export type SubscriptionEnd =
  | { readonly reason: 'closed'; readonly lastSeq: number }
  | { readonly reason: 'lagged'; readonly lastSeq: number }
  | { readonly reason: 'error'; readonly lastSeq: number; readonly error: AgentGateError };

export interface SubscriptionStats {
  /** Events held for this subscriber now (ready to read plus buffered during a catch-up). */
  readonly queued: number;
  /** The most it ever held; never above `maxQueued`. */
  readonly peakQueued: number;
  readonly maxQueued: number;
  /** Events handed to the consumer. */
  readonly delivered: number;
  /** Highest seq accounted for (queued, delivered or filtered out). */
  readonly lastSeq: number;
  /** Live events skipped because the store read had already covered them. */
  readonly duplicatesSkipped: number;
  /** Store reads made to fill a gap in the live stream (not counting the initial replay). */
  readonly gapReads: number;
  /** Poll periods that ended in a store read (following the store). */
  readonly storePolls: number;
}

/** An ordered, gap-free stream of one log's envelopes. Iterate it once; `break` closes it. */
export interface Subscription<E> extends AsyncIterable<E> {
  /** Ends the subscription (`closed`) and releases its buffers. Idempotent. */
  close(): void;
  /** Resolves when the subscription ends, whatever the reason. */
  readonly ended: Promise<SubscriptionEnd>;
  /** How it ended, or `null` while it is open. */
  readonly end: SubscriptionEnd | null;
  readonly stats: SubscriptionStats;
}

/** What a subscription needs from its log: a page of events after a seq, in seq order. */
export type FetchPage<E> = (afterSeq: number, limit: number) => Promise<E[]>;

/** How a subscription follows a log that another process writes (see the module comment). */
export interface StoreFollow {
  readonly clock: TimerClock;
  /** Poll period while live and waiting. */
  readonly everyMs: number;
  /** Whether a poll is needed now (false while this process writes the log and pushes its events). */
  readonly needed: () => boolean;
}

export interface EventSubscriptionOptions<E extends { readonly seq: number }> {
  readonly afterSeq: number;
  readonly maxQueued: number;
  readonly pageSize: number;
  readonly fetch: FetchPage<E>;
  readonly accept: ((event: E) => boolean) | null;
  readonly follow?: StoreFollow;
  /** The log's last event (nothing is ever written after it): following stops once it is taken. */
  readonly isLast?: (event: E) => boolean;
  /** Called once when the subscription ends, so the hub forgets it. */
  readonly onEnd: (subscription: EventSubscription<E>, end: SubscriptionEnd) => void;
}

/** A FIFO with O(1) push and shift; memory of shifted items is released as it goes. */
class Fifo<T> {
  private items: (T | undefined)[] = [];
  private head = 0;

  get length(): number {
    return this.items.length - this.head;
  }

  push(item: T): void {
    this.items.push(item);
  }

  peek(): T | undefined {
    return this.items[this.head];
  }

  shift(): T | undefined {
    if (this.head >= this.items.length) return undefined;
    const item = this.items[this.head];
    this.items[this.head] = undefined;
    this.head += 1;
    if (this.head === this.items.length) {
      this.items = [];
      this.head = 0;
    } else if (this.head >= 1024 && this.head * 2 >= this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return item;
  }

  clear(): void {
    this.items = [];
    this.head = 0;
  }
}

export class EventSubscription<E extends { readonly seq: number }> implements Subscription<E>, AsyncIterator<E> {
  private readonly ready = new Fifo<E>();
  private readonly pending = new Fifo<E>();
  private readonly options: EventSubscriptionOptions<E>;
  private lastSeq: number;
  /** True while replaying or filling a gap: live events wait in `pending`. */
  private catchingUp = true;
  /** The store read in flight, shared by concurrent `next()` calls. */
  private reading: Promise<void> | null = null;
  private readonly waiters = new Set<() => void>();
  private endState: SubscriptionEnd | null = null;
  private resolveEnded: (end: SubscriptionEnd) => void = () => undefined;
  readonly ended: Promise<SubscriptionEnd>;
  private counters = { peakQueued: 0, delivered: 0, duplicatesSkipped: 0, gapReads: 0, storePolls: 0 };
  private replayDone = false;
  /** The current catch-up was started by a poll, not by a gap. */
  private polled = false;
  /** The log's last event was taken: nothing more can come. */
  private complete = false;

  constructor(options: EventSubscriptionOptions<E>) {
    this.options = options;
    this.lastSeq = options.afterSeq;
    this.ended = new Promise((resolve) => {
      this.resolveEnded = resolve;
    });
  }

  get end(): SubscriptionEnd | null {
    return this.endState;
  }

  get stats(): SubscriptionStats {
    return {
      queued: this.ready.length + this.pending.length,
      maxQueued: this.options.maxQueued,
      lastSeq: this.lastSeq,
      ...this.counters,
    };
  }

  /** Called by the hub for every live event of this log, in the writer's call stack: never blocks. */
  push(event: E): void {
    if (this.endState) return;
    if (event.seq <= this.lastSeq) {
      this.counters.duplicatesSkipped += 1;
      return;
    }
    if (this.catchingUp) {
      this.pending.push(event);
    } else if (event.seq === this.lastSeq + 1) {
      if (!this.take(event)) return;
    } else {
      this.catchingUp = true;
      this.pending.push(event);
    }
    const queued = this.ready.length + this.pending.length;
    if (queued > this.options.maxQueued) {
      this.finish('lagged');
      return;
    }
    if (queued > this.counters.peakQueued) this.counters.peakQueued = queued;
    this.wake();
  }

  close(): void {
    this.finish('closed');
  }

  [Symbol.asyncIterator](): AsyncIterator<E> {
    return this;
  }

  next(): Promise<IteratorResult<E, undefined>> {
    // Fast path without an async frame: a reader keeping up pays one resolved promise per event.
    const event = this.ready.shift();
    if (event === undefined) return this.wait();
    this.counters.delivered += 1;
    return Promise.resolve({ value: event, done: false });
  }

  private async wait(): Promise<IteratorResult<E, undefined>> {
    for (;;) {
      const event = this.ready.shift();
      if (event !== undefined) {
        this.counters.delivered += 1;
        return { value: event, done: false };
      }
      if (this.endState) return { value: undefined, done: true };
      if (this.catchingUp) {
        this.reading ??= this.readStore().finally(() => {
          this.reading = null;
        });
        await this.reading;
      } else {
        await this.idle();
      }
    }
  }

  /**
   * Waits for a push or the end; when following the store, for at most one poll period, after which
   * the loop reads the store (the poll is a catch-up: `catchingUp` set).
   */
  private idle(): Promise<void> {
    const follow = this.options.follow;
    return new Promise<void>((resolve) => {
      const timer: TimerHandle | undefined =
        follow === undefined || this.complete
          ? undefined
          : follow.clock.setTimeout(() => {
              this.waiters.delete(waiter);
              if (this.endState === null && !this.catchingUp && !this.complete && follow.needed()) {
                this.catchingUp = true;
                this.polled = true;
                this.counters.storePolls += 1;
              }
              resolve();
            }, follow.everyMs);
      const waiter = (): void => {
        follow?.clock.clearTimeout(timer);
        resolve();
      };
      this.waiters.add(waiter);
    });
  }

  /** `break` in a `for await` lands here. */
  async return(): Promise<IteratorResult<E, undefined>> {
    this.close();
    return { value: undefined, done: true };
  }

  /**
   * One catch-up step: read one page after `lastSeq`, and when the store had nothing more, drain the
   * live buffer. Leaves `catchingUp` set while there is more to read or a gap to fill.
   */
  private async readStore(): Promise<void> {
    // An event already buffered proves that every lower seq was committed before this read started.
    const target = this.pending.peek()?.seq;
    const limit = Math.max(1, Math.min(this.options.pageSize, Math.ceil(this.options.maxQueued / 2)));
    if (this.replayDone && !this.polled) this.counters.gapReads += 1;
    let page: E[];
    try {
      page = await this.options.fetch(this.lastSeq, limit);
    } catch (error) {
      this.fail(toAgentGateError(error, 'AG_ERR_INTERNAL'));
      return;
    }
    if (this.endState) return;
    for (const event of page) {
      if (event.seq !== this.lastSeq + 1) {
        this.fail(gapError(this.lastSeq, event.seq, 'the store returned a non-consecutive page'));
        return;
      }
      if (!this.take(event)) return;
    }
    if (page.length === limit) return;
    this.replayDone = true;
    for (let next = this.pending.peek(); next !== undefined; next = this.pending.peek()) {
      if (next.seq <= this.lastSeq) {
        this.counters.duplicatesSkipped += 1;
      } else if (next.seq === this.lastSeq + 1) {
        if (!this.take(next)) return;
      } else {
        if (page.length === 0 && target !== undefined && target > this.lastSeq + 1) {
          this.fail(gapError(this.lastSeq, target, 'the store lacks events below one already published'));
        }
        return;
      }
      this.pending.shift();
    }
    this.catchingUp = false;
    this.polled = false;
  }

  /** Accounts for the next event and queues it when the filter accepts it; false when the filter threw. */
  private take(event: E): boolean {
    const { accept } = this.options;
    let accepted: boolean;
    try {
      accepted = accept === null || accept(event);
    } catch (error) {
      this.fail(toAgentGateError(error, 'AG_ERR_INTERNAL'));
      return false;
    }
    this.lastSeq = event.seq;
    if (this.options.isLast?.(event) === true) this.complete = true;
    if (accepted) this.ready.push(event);
    return true;
  }

  private fail(error: AgentGateError): void {
    this.finish('error', error);
  }

  private finish(reason: SubscriptionEnd['reason'], error?: AgentGateError): void {
    if (this.endState) return;
    // Everything below the first undelivered event was delivered or filtered out.
    const head = this.ready.peek();
    const lastSeq = head === undefined ? this.lastSeq : head.seq - 1;
    const end: SubscriptionEnd =
      reason === 'error'
        ? { reason, lastSeq, error: error ?? new AgentGateError('AG_ERR_INTERNAL', 'Subscription failed') }
        : { reason, lastSeq };
    this.endState = end;
    this.ready.clear();
    this.pending.clear();
    this.catchingUp = false;
    this.wake();
    this.options.onEnd(this, end);
    this.resolveEnded(end);
  }

  private wake(): void {
    if (this.waiters.size === 0) return;
    const waiters = [...this.waiters];
    this.waiters.clear();
    for (const resolve of waiters) resolve();
  }
}

function gapError(lastSeq: number, seq: number, problem: string): AgentGateError {
  return new AgentGateError('AG_ERR_INTERNAL', `Event log gap: ${problem}`, { details: { lastSeq, seq } });
}
