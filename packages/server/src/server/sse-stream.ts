/**
 * One SSE stream of a run (`GET /api/v1/runs/:id/stream`, SPEC 10–11): the same envelopes as the
 * WebSocket, as `text/event-stream` frames `id: <seq>` / `event: <type>` / `data: <envelope JSON>`.
 *
 * - Resume: the client's `Last-Event-ID` (EventSource sends it on reconnect) is the `afterSeq` of an
 *   {@link EventHub} subscription, so a reconnect sees every later event exactly once, in order.
 * - Flow control: a frame is written only after the previous write drained (`res.write` returned true
 *   or `drain` fired), so the server holds at most `maxBufferedEvents` envelopes (the hub queue) plus one
 *   socket buffer. A reader that falls further behind gets `event: lagged` with the seq to resume from
 *   and the response ends; EventSource reconnects with that `Last-Event-ID` by itself.
 * - Heartbeat: a comment line (`: heartbeat`) every `heartbeatMs`, so proxies keep the stream open and
 *   a dead peer is noticed at the next write.
 * - End: after the run's closing event (`run_completed` / `run_failed` / `run_canceled`) the response
 *   ends. A client that already has the closing event gets 204, which tells EventSource to stop.
 */
import type { ServerResponse } from 'node:http';
import type { FastifyBaseLogger } from 'fastify';
import type { EventHub } from '../observability/event-hub.js';
import type { RunEventEnvelope } from '../observability/events.js';
import { assertNever } from '../util/abort.js';
import type { TimerClock, TimerHandle } from '../util/clock.js';
import { isClosingEvent } from './ws-connection.js';

export interface SseStreamOptions {
  readonly hub: EventHub;
  readonly runId: string;
  readonly afterSeq: number;
  readonly heartbeatMs: number;
  readonly maxBufferedEvents: number;
  readonly clock: TimerClock;
  readonly logger: FastifyBaseLogger;
  /** Ends the stream early (the client went away, the server is closing). */
  readonly signal: AbortSignal;
}

/** Suggested reconnect delay for EventSource, in ms. */
export const SSE_RETRY_MS = 2_000;

export function sseFrame(event: RunEventEnvelope): string {
  // JSON.stringify escapes line breaks inside strings, so the envelope is one `data:` line.
  return `id: ${event.seq}\nevent: ${event.type}\ndata: ${JSON.stringify(event)}\n\n`;
}

/** Streams the run's events into `res` (headers already sent) until the run ends or the client leaves. */
export async function streamRunEvents(res: ServerResponse, options: SseStreamOptions): Promise<void> {
  const { hub, clock, signal } = options;
  const subscription = hub.subscribe({ runId: options.runId, afterSeq: options.afterSeq, maxQueued: options.maxBufferedEvents });
  let heartbeat: TimerHandle | undefined;
  let drained: (() => void) | null = null;
  const onDrain = (): void => {
    drained?.();
    drained = null;
  };
  const onAbort = (): void => {
    subscription.close();
    onDrain();
  };
  signal.addEventListener('abort', onAbort, { once: true });
  res.on('drain', onDrain);
  const write = async (chunk: string): Promise<void> => {
    if (res.write(chunk) || signal.aborted) return;
    await new Promise<void>((resolve) => {
      drained = resolve;
    });
  };
  const armHeartbeat = (): void => {
    heartbeat = clock.setTimeout(() => {
      if (signal.aborted || res.writableEnded) return;
      // Written even when congested: a comment is tiny, and a stalled reader is bounded by the hub queue.
      res.write(': heartbeat\n\n');
      armHeartbeat();
    }, options.heartbeatMs);
  };
  try {
    await write(`retry: ${SSE_RETRY_MS}\n\n`);
    armHeartbeat();
    for await (const event of subscription) {
      if (signal.aborted) break;
      await write(sseFrame(event));
      if (isClosingEvent(event)) break;
    }
    const end = subscription.end;
    if (end !== null && !signal.aborted) {
      switch (end.reason) {
        case 'closed':
          break;
        case 'lagged':
          options.logger.warn({ runId: options.runId, lastSeq: end.lastSeq }, 'sse client lagged');
          res.write(`event: lagged\ndata: ${JSON.stringify({ lastSeq: end.lastSeq })}\n\n`);
          break;
        case 'error':
          options.logger.error({ runId: options.runId, err: end.error }, 'sse subscription failed');
          res.write(`event: error\ndata: ${JSON.stringify({ code: end.error.code, message: end.error.message, lastSeq: end.lastSeq })}\n\n`);
          break;
        default:
          assertNever(end);
      }
    }
  } finally {
    subscription.close();
    clock.clearTimeout(heartbeat);
    signal.removeEventListener('abort', onAbort);
    res.off('drain', onDrain);
    if (!res.writableEnded) res.end();
  }
}
