/**
 * One WebSocket to `/ws` for the page (docs/events.md). Each subscription remembers the last seq its
 * owner holds; after a dropped connection (any close, a 4008 `lagged` included) the socket is reopened
 * with backoff and every open subscription is sent again with `afterSeq`, so the server replays exactly
 * what was missed. With an API key, each connection first gets a single-use ticket from
 * `POST /api/v1/auth/ticket` and offers it as a subprotocol (browsers cannot set headers).
 */
import { api, storedKey, type Ticket } from './api.js';
import type { EventEnvelope } from './timeline.js';

export type ConnectionState = 'idle' | 'connecting' | 'live' | 'reconnecting';

export type Target = { readonly runId: string } | { readonly workOrderId: string };

export interface SubscriptionHandlers {
  /** The last seq already shown: the replay starts after it. */
  afterSeq(): number;
  onEvent(event: EventEnvelope): void;
  /** The server ended it for good (`run_ended`, `error`). */
  onEnded?(reason: string): void;
}

interface Subscription {
  readonly key: string;
  readonly target: Target;
  readonly handlers: SubscriptionHandlers;
  done: boolean;
}

/** Backoff after a dropped connection: 250 ms doubling up to 5 s. */
const RETRY_MIN_MS = 250;
const RETRY_MAX_MS = 5000;

function keyOf(target: Target): string {
  return 'runId' in target ? `run:${target.runId}` : `wo:${target.workOrderId}`;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null;
}

/** An event frame as the timeline holds it; null for a frame without seq, type or data. */
function toEnvelope(message: Record<string, unknown>): EventEnvelope | null {
  const { seq, type, data, workOrderId, runId, timestamp, coalesced } = message;
  if (typeof seq !== 'number' || typeof type !== 'string' || !isRecord(data) || typeof workOrderId !== 'string') return null;
  const merged = isRecord(coalesced) && typeof coalesced.fromSeq === 'number' && typeof coalesced.count === 'number' ? { fromSeq: coalesced.fromSeq, count: coalesced.count } : undefined;
  return {
    seq,
    type,
    data,
    workOrderId,
    timestamp: typeof timestamp === 'string' ? timestamp : '',
    ...(typeof runId === 'string' && { runId }),
    ...(merged !== undefined && { coalesced: merged }),
  };
}

export class LiveConnection {
  private socket: WebSocket | null = null;
  private readonly subs = new Map<string, Subscription>();
  private retryMs = RETRY_MIN_MS;
  private retryTimer: ReturnType<typeof setTimeout> | null = null;
  private generation = 0;
  state: ConnectionState = 'idle';
  /** Reconnections made so far (shown, and read by tests). */
  reconnects = 0;

  constructor(private readonly onState: (state: ConnectionState, detail: string) => void) {}

  subscribe(target: Target, handlers: SubscriptionHandlers): () => void {
    const sub: Subscription = { key: keyOf(target), target, handlers, done: false };
    this.subs.set(sub.key, sub);
    if (this.socket !== null && this.socket.readyState === WebSocket.OPEN) this.sendSubscribe(sub);
    else this.ensureOpen();
    return () => {
      if (this.subs.get(sub.key) !== sub) return;
      this.subs.delete(sub.key);
      if (!sub.done && this.socket?.readyState === WebSocket.OPEN) this.socket.send(JSON.stringify({ type: 'unsubscribe', ...target }));
      if (this.subs.size === 0) this.stop();
    };
  }

  /** Closes the socket and forgets every subscription (navigating away). */
  stop(): void {
    this.generation += 1;
    this.subs.clear();
    if (this.retryTimer !== null) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    const socket = this.socket;
    this.socket = null;
    socket?.close(1000, 'page left');
    this.setState('idle', '');
  }

  private setState(state: ConnectionState, detail: string): void {
    this.state = state;
    this.onState(state, detail);
  }

  private ensureOpen(): void {
    if (this.socket !== null || this.retryTimer !== null) return;
    void this.open();
  }

  private async open(): Promise<void> {
    const generation = this.generation;
    if (this.state !== 'reconnecting') this.setState('connecting', '');
    const protocols = ['agentgate.v1'];
    try {
      if (storedKey() !== null) protocols.push((await api<Ticket>('POST', '/api/v1/auth/ticket')).protocol);
    } catch (error) {
      if (generation === this.generation) this.retry(error instanceof Error ? error.message : String(error));
      return;
    }
    if (generation !== this.generation) return;
    const url = new URL('/ws', location.href);
    url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
    const socket = new WebSocket(url, protocols);
    this.socket = socket;
    socket.addEventListener('open', () => {
      if (this.socket !== socket) return;
      this.retryMs = RETRY_MIN_MS;
      this.setState('live', '');
      for (const sub of this.subs.values()) if (!sub.done) this.sendSubscribe(sub);
    });
    socket.addEventListener('message', (message) => {
      if (this.socket === socket && typeof message.data === 'string') this.receive(message.data);
    });
    socket.addEventListener('close', (event) => {
      if (this.socket !== socket) return;
      this.socket = null;
      if ([...this.subs.values()].some((sub) => !sub.done)) this.retry(`closed (${event.code}${event.reason === '' ? '' : `: ${event.reason}`})`);
      else this.setState('idle', '');
    });
  }

  private retry(detail: string): void {
    this.setState('reconnecting', detail);
    const delay = this.retryMs;
    this.retryMs = Math.min(this.retryMs * 2, RETRY_MAX_MS);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      this.reconnects += 1;
      void this.open();
    }, delay);
  }

  private sendSubscribe(sub: Subscription): void {
    this.socket?.send(JSON.stringify({ type: 'subscribe', ...sub.target, afterSeq: sub.handlers.afterSeq() }));
  }

  private receive(text: string): void {
    let message: unknown;
    try {
      message = JSON.parse(text);
    } catch (error) {
      console.warn('agentgate: a WebSocket frame that is not JSON', error);
      return;
    }
    if (!isRecord(message)) return;
    const runId = typeof message.runId === 'string' ? message.runId : undefined;
    const workOrderId = typeof message.workOrderId === 'string' ? message.workOrderId : undefined;
    const sub =
      message.kind === 'event' && typeof message.type === 'string' && message.type.startsWith('work_order_')
        ? this.subs.get(`wo:${workOrderId ?? ''}`)
        : runId !== undefined
          ? this.subs.get(`run:${runId}`)
          : this.subs.get(`wo:${workOrderId ?? ''}`);
    if (message.kind === 'event') {
      const event = toEnvelope(message);
      if (event !== null) sub?.handlers.onEvent(event);
      return;
    }
    if (message.type === 'subscription_ended' && sub !== undefined) {
      const reason = typeof message.reason === 'string' ? message.reason : 'ended';
      // `lagged` is followed by a 4008 close: the reconnect resumes it. Anything else is final.
      if (reason !== 'lagged') {
        sub.done = true;
        sub.handlers.onEnded?.(reason);
      }
    } else if (message.type === 'error') {
      console.warn('agentgate: WebSocket error message', message);
    }
  }
}
