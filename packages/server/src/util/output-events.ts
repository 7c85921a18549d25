/**
 * Turns a process's output lines into a bounded stream of output events. One event per line made an
 * agent printing 100 MB write about a million rows (the database grew by ~490 MB); here:
 *
 * - lines that arrive together (in one read of the pipe, before the microtask queue drains) are
 *   **coalesced** into one event of at most `maxLinesPerEvent` lines and `maxCharsPerEvent` characters;
 * - events are **rate-limited** by a token bucket (`eventsPerSecond`, bursts of `burstEvents`) and the
 *   text put into events over the limiter's life is capped at `maxCharsTotal`;
 * - a line that does not fit is **dropped from events** (the capped log keeps head and tail) and
 *   counted; an omission marker (`… N lines / B bytes omitted …`) is emitted before the next admitted
 *   output, at most every `markerIntervalMs` while the flood lasts, and at {@link OutputEventLimiter.close};
 * - the last `tailLines` dropped lines are held back and emitted at close, after the last marker, so the
 *   end of the output (an agent's final message right after a flood) is in the events too.
 *
 * A dropped line is never rendered (redacted), so a flood costs a counter update per line. Time comes
 * from the injected clock; nothing here starts a timer.
 */
import type { Clock } from './clock.js';

export interface OutputEventLimits {
  maxLinesPerEvent: number;
  maxCharsPerEvent: number;
  eventsPerSecond: number;
  burstEvents: number;
  /** Characters of output text put into events in total; after that only omission markers. */
  maxCharsTotal: number;
  markerIntervalMs: number;
  /** Dropped lines held back and emitted at close when nothing was emitted after them. */
  tailLines: number;
}

/**
 * Defaults: at most 10 events/s (bursts of 20) of at most 200 lines / 16 KiB each, 4 MiB of text in
 * total — a flood costs at most ~160 KiB/s of event text and 4 MiB overall, while a normal agent (a few
 * lines a second) still gets one event per line, live.
 */
export const DEFAULT_OUTPUT_EVENT_LIMITS: OutputEventLimits = {
  maxLinesPerEvent: 200,
  maxCharsPerEvent: 16 * 1024,
  eventsPerSecond: 10,
  burstEvents: 20,
  maxCharsTotal: 4 * 1024 * 1024,
  markerIntervalMs: 1000,
  tailLines: 20,
};

/** Text of the omission marker event. */
export function omittedOutputText(lines: number, bytes: number): string {
  return `… ${lines} lines / ${bytes} bytes of output omitted from events (rate limit; the transcript or log keeps head and tail) …`;
}

/** Receives one coalesced event's text (lines joined with `\n`). */
export type OutputEventSink<S extends string> = (stream: S, text: string) => void;

interface HeldLine<S extends string> {
  stream: S;
  raw: string;
  bytes: number;
  render: (raw: string) => string;
}

const identity = (line: string): string => line;

/**
 * Characters of a held-back line kept for rendering at close. Renderers cut event lines far shorter
 * (8 KiB), and a secret starting within those is far shorter than the rest, so redaction still sees it whole.
 */
const HELD_LINE_CHARS = 64 * 1024;

export interface OutputEventStats {
  events: number;
  markers: number;
  omittedLines: number;
  omittedBytes: number;
}

export class OutputEventLimiter<S extends string> {
  private tokens: number;
  private refilledAt: number;
  private chunk: string[] = [];
  private chunkChars = 0;
  private chunkStream: S | undefined;
  private flushScheduled = false;
  private charsEmitted = 0;
  /** Omitted since the last marker. */
  private pendingLines = 0;
  private pendingBytes = 0;
  private pendingStream: S | undefined;
  /** When the current run of omitted lines started (the marker interval counts from there). */
  private pendingSince = 0;
  /** The last omitted lines since anything was emitted (at most `tailLines`). */
  private held: Array<HeldLine<S>> = [];
  private closed = false;
  private readonly totals: OutputEventStats = { events: 0, markers: 0, omittedLines: 0, omittedBytes: 0 };

  constructor(
    private readonly sink: OutputEventSink<S>,
    private readonly clock: Clock,
    private readonly limits: OutputEventLimits = DEFAULT_OUTPUT_EVENT_LIMITS,
  ) {
    this.tokens = limits.burstEvents;
    this.refilledAt = clock.now();
  }

  get stats(): OutputEventStats {
    return { ...this.totals };
  }

  /**
   * Offers one line. `render` (redaction, truncation) runs only when the line is admitted into an event
   * (or held back for close); its result should be at most `maxCharsPerEvent` characters.
   */
  push(stream: S, raw: string, render: (raw: string) => string = identity): void {
    if (this.closed) return;
    if (this.chunkStream !== undefined && (this.chunkStream !== stream || this.chunk.length >= this.limits.maxLinesPerEvent)) this.seal();
    if (this.chunkStream === undefined && !this.open(stream)) {
      this.countOmitted(stream, raw, render);
      return;
    }
    const text = render(raw);
    if (this.chunk.length > 0 && this.chunkChars + text.length + 1 > this.limits.maxCharsPerEvent) {
      this.seal();
      if (!this.open(stream)) {
        this.countOmitted(stream, raw, render);
        return;
      }
    }
    this.chunk.push(text);
    this.chunkChars += text.length + 1;
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      // Everything pushed in this turn (one pipe read holds many lines) becomes one event.
      queueMicrotask(() => this.flush());
    }
  }

  /**
   * Whether a line pushed now on `stream` would be admitted (the open event has room, or a new one may
   * start). Lets a caller skip work (parsing, redaction) for a line that would only be counted.
   */
  accepting(stream: S): boolean {
    if (this.closed) return false;
    if (this.chunkStream === stream && this.chunk.length < this.limits.maxLinesPerEvent) return true;
    this.refill();
    return this.tokens >= 1 && this.charsEmitted < this.limits.maxCharsTotal;
  }

  /** Counts a line as omitted without offering it (after {@link accepting} said no). */
  omit(stream: S, raw: string, render: (raw: string) => string = identity): void {
    if (this.closed) return;
    this.seal();
    this.countOmitted(stream, raw, render);
  }

  /** Emits the open event, if any (keeps order before an event that bypasses the limiter). */
  flush(): void {
    this.flushScheduled = false;
    this.seal();
  }

  /**
   * Flushes, then emits the final omission marker if lines were dropped since the last one, and the
   * held-back last lines (one event per stream run; these bypass the rate, once).
   */
  close(): void {
    if (this.closed) return;
    this.flush();
    const held = this.held;
    this.held = [];
    for (const line of held) {
      this.pendingLines -= 1;
      this.pendingBytes -= line.bytes;
      this.totals.omittedLines -= 1;
      this.totals.omittedBytes -= line.bytes;
    }
    if (this.pendingLines > 0) this.marker();
    for (const line of held) {
      const text = line.render(line.raw);
      if (this.chunkStream !== line.stream || (this.chunk.length > 0 && this.chunkChars + text.length + 1 > this.limits.maxCharsPerEvent)) this.seal();
      this.chunkStream = line.stream;
      this.chunk.push(text);
      this.chunkChars += text.length + 1;
    }
    this.seal();
    this.closed = true;
  }

  /** Starts an event for `stream` when a token is free and the total is not used up. */
  private open(stream: S): boolean {
    this.refill();
    if (this.tokens < 1 || this.charsEmitted >= this.limits.maxCharsTotal) return false;
    if (this.pendingLines > 0) this.marker();
    this.tokens -= 1;
    this.chunkStream = stream;
    return true;
  }

  private seal(): void {
    const stream = this.chunkStream;
    if (stream === undefined) return;
    const text = this.chunk.join('\n');
    this.held = [];
    this.chunk = [];
    this.chunkChars = 0;
    this.chunkStream = undefined;
    this.charsEmitted += text.length;
    this.totals.events += 1;
    this.sink(stream, text);
  }

  private countOmitted(stream: S, raw: string, render: (raw: string) => string): void {
    const bytes = Buffer.byteLength(raw, 'utf8') + 1;
    if (this.limits.tailLines > 0) {
      // Held lines are rendered (and cut by the renderer) at close; a multi-megabyte line is not kept whole.
      this.held.push({ stream, raw: raw.length > HELD_LINE_CHARS ? raw.slice(0, HELD_LINE_CHARS) : raw, bytes, render });
      if (this.held.length > this.limits.tailLines) this.held.shift();
    }
    const now = this.clock.now();
    if (this.pendingLines === 0) {
      this.pendingSince = now;
      // The marker goes on the stream of the first line it counts.
      this.pendingStream = stream;
    }
    this.pendingLines += 1;
    this.pendingBytes += bytes;
    this.totals.omittedLines += 1;
    this.totals.omittedBytes += bytes;
    // The periodic marker of a flood leaves the held-back lines out: the flood may end right here, and
    // they are then the output's last lines, emitted at close.
    if (now - this.pendingSince >= this.limits.markerIntervalMs) this.marker({ keepHeld: true });
  }

  /**
   * Emits the omission marker for the lines counted since the last one. With `keepHeld`, the held-back
   * lines are not part of it: they stay held and counted as pending (for the next marker, or for close).
   * Otherwise they are: output emitted after them means they are not the end.
   */
  private marker(options: { keepHeld?: boolean } = {}): void {
    const stream = this.pendingStream;
    if (stream === undefined) return;
    const kept = options.keepHeld === true ? this.held : [];
    const keptBytes = kept.reduce((sum, line) => sum + line.bytes, 0);
    const lines = this.pendingLines - kept.length;
    const bytes = this.pendingBytes - keptBytes;
    if (kept.length > 0) {
      this.pendingLines = kept.length;
      this.pendingBytes = keptBytes;
      this.pendingStream = kept[0]?.stream;
      this.pendingSince = this.clock.now();
    } else {
      this.held = [];
      this.pendingLines = 0;
      this.pendingBytes = 0;
      this.pendingStream = undefined;
    }
    if (lines <= 0) return;
    this.totals.markers += 1;
    this.sink(stream, omittedOutputText(lines, bytes));
  }

  private refill(): void {
    const now = this.clock.now();
    const elapsed = Math.max(0, now - this.refilledAt);
    this.refilledAt = now;
    this.tokens = Math.min(this.limits.burstEvents, this.tokens + (elapsed * this.limits.eventsPerSecond) / 1000);
  }
}
