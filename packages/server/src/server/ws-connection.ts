/**
 * One `/ws` socket (SPEC 11): its subscriptions, its flow control and its heartbeat.
 *
 * Kept in one file (over 400 lines) on purpose: subscriptions, pumps, flow control and the heartbeat all act
 * on one socket's state (closed flag, writable waiters, counters); the shared settings and the registry of
 * sockets are in ws-registry.ts.
 *
 * Flow control, so that a slow or stalled client never slows a run and never grows server memory:
 * - Each subscription is an {@link EventHub} subscription (replay after `afterSeq`, then live, no gap, no
 *   duplicate) with `maxQueued` = the connection's `maxBufferedEvents`. The hub pushes into it without
 *   waiting; a pump moves events from it to the socket.
 * - A pump only takes the next event while the socket's own buffer (`bufferedAmount`: frames the kernel has
 *   not accepted yet) is below `highWaterBytes`. A client that stops reading therefore leaves events in the
 *   hub queue, which is bounded: one more than `maxBufferedEvents` and the hub drops the subscription as
 *   `lagged`. The socket is then closed with {@link WS_CLOSE.lagged} (4008), the reason naming the seq to
 *   resume from, and terminated after `closeGraceMs` if the close handshake cannot get through.
 * - While the socket buffer is above `coalesceBytes`, consecutive `agent_output` events of one iteration
 *   and stream that are already queued are sent as one frame (texts joined by `\n`, `seq` the last one,
 *   `coalesced: { fromSeq, count }`): nothing is lost, the client just gets fewer frames to catch up with.
 * Per connection the server holds at most `maxBufferedEvents` envelopes per subscription plus
 * `highWaterBytes` and one frame of socket buffer.
 *
 * Heartbeat: a ws ping every `heartbeatMs` (re-armed timer on the injected clock); a socket that has not
 * answered the previous ping is terminated.
 */
import type { FastifyBaseLogger } from 'fastify';
import type { WebSocket } from 'ws';
import { toAgentGateError } from '../errors.js';
import type { EventHub, Subscription, SubscriptionEnd } from '../observability/event-hub.js';
import type { RunEventEnvelope, RunEventType, WorkOrderEventEnvelope } from '../observability/events.js';
import { isTerminalState } from '../orchestrator/state-machine.js';
import { CLOSING_EVENT_TYPES, isClosingEventType, type Repositories } from '../store/repositories.js';
import { assertNever } from '../util/abort.js';
import type { WsConnectionStats, WsConnections, WsFlowOptions } from './ws-registry.js';
import type { TimerClock, TimerHandle } from '../util/clock.js';
import {
  MAX_SUBSCRIPTIONS_PER_SOCKET,
  parseClientMessage,
  targetKey,
  targetOf,
  WS_CLOSE,
  type ServerControlMessage,
  type SubscribeMessage,
  type SubscriptionEndReason,
  type SubscriptionTarget,
  type UnsubscribeMessage,
} from './ws-protocol.js';

type Envelope = RunEventEnvelope | WorkOrderEventEnvelope;

export { DEFAULT_WS_FLOW, WsConnections } from './ws-registry.js';
export type { WsConnectionStats, WsFlowOptions, WsRegistryStats } from './ws-registry.js';

/** The events that end a run's log (the store's list): nothing follows them (docs/events.md). */
const CLOSING_TYPES: readonly RunEventType[] = Object.values(CLOSING_EVENT_TYPES);

export function isClosingEvent(event: Envelope): boolean {
  return isClosingEventType(event.type);
}

interface ActiveSubscription {
  readonly key: string;
  readonly target: SubscriptionTarget;
  readonly subscription: Subscription<Envelope>;
  readonly events: AsyncIterator<Envelope>;
  /** The client's filter; closing events are always subscribed (to know when a run's log ends). */
  readonly clientTypes: ReadonlySet<string> | null;
  /** An event taken from the hub while coalescing but not sent yet. */
  carry: Envelope | null;
  /** Set when the server stops it (unsubscribe, run ended, lag, socket closed): its pump exits quietly. */
  stopped: boolean;
}

export interface WsConnectionServices {
  readonly hub: EventHub;
  readonly repos: Pick<Repositories, 'runs' | 'workOrders'>;
  readonly clock: TimerClock;
  readonly logger: FastifyBaseLogger;
  readonly registry: WsConnections;
  readonly flow: WsFlowOptions;
}

export class WsConnection {
  private readonly subscriptions = new Map<string, ActiveSubscription>();
  private readonly writableWaiters = new Set<() => void>();
  /** Client messages are handled one at a time, in order. */
  private inbox: Promise<void> = Promise.resolve();
  private heartbeat: TimerHandle | undefined;
  private graceTimer: TimerHandle | undefined;
  private alive = true;
  private closed = false;
  private counters = { eventsSent: 0, eventsCoalesced: 0, peakBufferedBytes: 0, peakQueuedEvents: 0 };

  constructor(
    private readonly socket: WebSocket,
    private readonly services: WsConnectionServices,
  ) {
    services.registry.add(this);
    socket.on('message', (data, isBinary) => {
      if (isBinary) {
        this.reject('AG_ERR_API_BAD_REQUEST', 'binary messages are not supported; send JSON text');
        return;
      }
      const text = Array.isArray(data) ? Buffer.concat(data).toString('utf8') : data instanceof ArrayBuffer ? Buffer.from(data).toString('utf8') : data.toString('utf8');
      this.inbox = this.inbox.then(() => this.handle(text));
    });
    socket.on('pong', () => {
      this.alive = true;
    });
    socket.on('close', () => this.dispose());
    socket.on('error', (error) => {
      services.logger.debug({ err: error }, 'websocket error');
      this.dispose();
    });
    this.armHeartbeat();
  }

  get stats(): WsConnectionStats {
    let queuedEvents = 0;
    for (const active of this.subscriptions.values()) queuedEvents += active.subscription.stats.queued + (active.carry === null ? 0 : 1);
    if (queuedEvents > this.counters.peakQueuedEvents) this.counters.peakQueuedEvents = queuedEvents;
    return {
      subscriptions: this.subscriptions.size,
      bufferedBytes: this.socket.bufferedAmount,
      queuedEvents,
      ...this.counters,
    };
  }

  /** Closes the socket with a close frame; terminates it if the frame cannot get through in time. */
  close(code: number, reason: string): void {
    if (this.closed) return;
    this.stopAll();
    try {
      this.socket.close(code, reason);
    } catch (error) {
      this.services.logger.debug({ err: error }, 'websocket close failed');
      this.socket.terminate();
    }
    this.graceTimer = this.services.clock.setTimeout(() => this.socket.terminate(), this.services.flow.closeGraceMs);
  }

  private async handle(text: string): Promise<void> {
    if (this.closed) return;
    const parsed = parseClientMessage(text);
    if (!parsed.ok) {
      this.reject('AG_ERR_API_BAD_REQUEST', parsed.message, { issues: parsed.issues });
      return;
    }
    const { message } = parsed;
    try {
      switch (message.type) {
        case 'ping':
          this.control({ type: 'pong', timestamp: new Date(this.services.clock.now()).toISOString() });
          return;
        case 'subscribe':
          await this.subscribe(message);
          return;
        case 'unsubscribe':
          this.unsubscribe(message);
          return;
        default:
          assertNever(message);
      }
    } catch (error) {
      // Only server-side failures land here (a store read failed): reported on this socket, never thrown.
      const classified = toAgentGateError(error, 'AG_ERR_INTERNAL');
      this.services.logger.error({ err: classified }, 'websocket message failed');
      this.reject(classified.code, classified.message);
    }
  }

  private async subscribe(message: SubscribeMessage): Promise<void> {
    const target = targetOf(message);
    const key = targetKey(target);
    if (this.subscriptions.has(key)) {
      this.reject('AG_ERR_API_CONFLICT', 'already subscribed to this log; unsubscribe first', { ...target });
      return;
    }
    if (this.subscriptions.size >= MAX_SUBSCRIPTIONS_PER_SOCKET) {
      this.reject('AG_ERR_API_BAD_REQUEST', `at most ${MAX_SUBSCRIPTIONS_PER_SOCKET} subscriptions per socket`);
      return;
    }
    const afterSeq = message.afterSeq ?? 0;
    const clientTypes = message.filters === undefined ? null : new Set<string>(message.filters);
    const { hub, repos, flow } = this.services;
    let subscription: Subscription<Envelope>;
    let alreadyEnded = false;
    if ('runId' in target) {
      const run = await repos.runs.get(target.runId);
      if (run === null) {
        this.reject('AG_ERR_RUN_NOT_FOUND', 'no run with this id', { runId: target.runId });
        return;
      }
      // A finished run whose log the client has seen to the end: confirm, then say it is over.
      alreadyEnded = isTerminalState(run.state) && afterSeq >= (await repos.runs.lastSeq(target.runId));
      const filter = clientTypes === null ? undefined : ([...clientTypes, ...CLOSING_TYPES] as RunEventType[]);
      subscription = hub.subscribe({ runId: target.runId, afterSeq, maxQueued: flow.maxBufferedEvents, ...(filter !== undefined && { filter }) });
    } else {
      if ((await repos.workOrders.get(target.workOrderId)) === null) {
        this.reject('AG_ERR_WORK_ORDER_NOT_FOUND', 'no work order with this id', { workOrderId: target.workOrderId });
        return;
      }
      const filter = clientTypes === null ? undefined : ([...clientTypes] as WorkOrderEventEnvelope['type'][]);
      subscription = hub.subscribe({ workOrderId: target.workOrderId, afterSeq, maxQueued: flow.maxBufferedEvents, ...(filter !== undefined && { filter }) });
    }
    if (this.closed) {
      subscription.close();
      return;
    }
    const active: ActiveSubscription = { key, target, subscription, events: subscription[Symbol.asyncIterator](), clientTypes, carry: null, stopped: false };
    this.subscriptions.set(key, active);
    void subscription.ended.then((end) => this.onEnded(active, end));
    this.control({ type: 'subscription_confirmed', ...target, afterSeq, filters: message.filters ?? null });
    if (alreadyEnded) {
      this.endSubscription(active, 'run_ended', afterSeq);
      return;
    }
    void this.pump(active);
  }

  private unsubscribe(message: UnsubscribeMessage): void {
    const target = targetOf(message);
    const active = this.subscriptions.get(targetKey(target));
    if (active === undefined) {
      this.reject('AG_ERR_API_CONFLICT', 'not subscribed to this log', { ...target });
      return;
    }
    const lastSeq = this.stop(active);
    this.control({ type: 'subscription_ended', ...active.target, reason: 'unsubscribed', lastSeq });
  }

  /** Moves events from one hub subscription to the socket, at the socket's pace. */
  private async pump(active: ActiveSubscription): Promise<void> {
    try {
      for (;;) {
        const waiting = this.waitWritable();
        if (waiting !== null) await waiting;
        if (active.stopped) return;
        let event: Envelope;
        if (active.carry !== null) {
          event = active.carry;
          active.carry = null;
        } else {
          const next = await active.events.next();
          if (active.stopped) return;
          if (next.done === true) break;
          event = next.value;
        }
        if (event.type === 'agent_output' && this.socket.bufferedAmount >= this.services.flow.coalesceBytes) {
          const merged = await this.coalesce(active, event);
          if (active.stopped) return;
          this.sendEvent(active, merged.frame, merged.last);
          continue;
        }
        this.sendEvent(active, eventFrame(event), event);
        if (active.stopped) return;
      }
    } catch (error) {
      this.services.logger.error({ err: error, stream: active.key }, 'websocket pump failed');
    }
  }

  /**
   * How a hub subscription ended, acted on at once — a pump waiting for a congested socket must not be
   * what notices that its client lagged.
   */
  private onEnded(active: ActiveSubscription, end: SubscriptionEnd): void {
    if (active.stopped || this.closed) return;
    switch (end.reason) {
      case 'lagged':
        this.closeLagged(active);
        return;
      case 'error':
        this.endSubscription(active, 'error', end.lastSeq, { code: end.error.code, message: end.error.message });
        return;
      case 'closed':
        // Closed by the hub, not by this connection: the server is stopping.
        this.close(WS_CLOSE.goingAway, 'server shutting down');
        return;
      default:
        assertNever(end);
    }
  }

  /** Merges the queued agent output that follows `first` (same iteration and stream) into one frame. */
  private async coalesce(active: ActiveSubscription, first: Envelope): Promise<{ frame: object | string; last: Envelope }> {
    if (first.type !== 'agent_output') return { frame: eventFrame(first), last: first };
    const texts = [first.data.text];
    let bytes = first.data.text.length;
    let last: Envelope = first;
    let lastOutput = first;
    while (active.subscription.stats.queued > 0 && bytes < this.services.flow.maxCoalescedBytes) {
      const next = await active.events.next();
      if (next.done === true || active.stopped) break;
      const event = next.value;
      if (event.type !== 'agent_output' || event.data.iteration !== first.data.iteration || event.data.stream !== first.data.stream) {
        active.carry = event;
        break;
      }
      texts.push(event.data.text);
      bytes += event.data.text.length;
      last = event;
      lastOutput = event;
    }
    if (texts.length === 1) return { frame: eventFrame(first), last: first };
    this.counters.eventsCoalesced += texts.length - 1;
    const frame = {
      ...lastOutput,
      kind: 'event',
      data: { ...lastOutput.data, text: texts.join('\n') },
      coalesced: { fromSeq: first.seq, count: texts.length },
    };
    return { frame, last };
  }

  private sendEvent(active: ActiveSubscription, frame: object | string, event: Envelope): void {
    const closing = 'runId' in active.target && isClosingEvent(event);
    if (active.clientTypes === null || active.clientTypes.has(event.type)) {
      this.send(typeof frame === 'string' ? frame : JSON.stringify(frame));
      this.counters.eventsSent += 1;
    }
    if (closing) this.endSubscription(active, 'run_ended', event.seq);
  }

  /** Lag closes the whole socket: the client resumes each subscription with the `afterSeq` it is told. */
  private closeLagged(lagging: ActiveSubscription): void {
    if (this.closed) return;
    const resume: string[] = [];
    for (const active of [...this.subscriptions.values()]) {
      const lastSeq = this.stop(active);
      this.control({ type: 'subscription_ended', ...active.target, reason: 'lagged', lastSeq });
      if (active === lagging) resume.unshift(`${'runId' in active.target ? `runId=${active.target.runId}` : `workOrderId=${active.target.workOrderId}`} afterSeq=${lastSeq}`);
    }
    this.services.registry.counters.laggedCloses += 1;
    this.services.logger.warn({ stream: lagging.key }, 'websocket client lagged');
    const more = this.subscriptions.size > 1 ? ' (+ others: see subscription_ended)' : '';
    this.close(WS_CLOSE.lagged, truncateReason(`lagged: resume ${resume[0] ?? ''}${more}`));
  }

  private endSubscription(active: ActiveSubscription, reason: SubscriptionEndReason, lastSeq: number, error?: { code: string; message: string }): void {
    this.stop(active);
    this.control({ type: 'subscription_ended', ...active.target, reason, lastSeq, ...(error !== undefined && { error }) });
  }

  /** Stops one subscription; returns the last seq the client got (or that was filtered out). */
  private stop(active: ActiveSubscription): number {
    active.stopped = true;
    this.subscriptions.delete(active.key);
    active.subscription.close();
    const end = active.subscription.end;
    const hubLast = end === null ? active.subscription.stats.lastSeq : end.lastSeq;
    const lastSeq = active.carry === null ? hubLast : Math.min(hubLast, active.carry.seq - 1);
    active.carry = null;
    this.wakeWritable();
    return lastSeq;
  }

  private stopAll(): void {
    for (const active of [...this.subscriptions.values()]) this.stop(active);
  }

  private control(message: ServerControlMessage): void {
    this.send(JSON.stringify(message));
  }

  private reject(code: string, message: string, details?: Record<string, unknown>): void {
    this.services.registry.counters.rejectedMessages += 1;
    this.control({ type: 'error', code, message, ...(details !== undefined && { details }) });
  }

  private send(text: string): void {
    if (this.closed || this.socket.readyState !== this.socket.OPEN) return;
    this.socket.send(text, (error) => {
      if (error !== undefined && error !== null) this.services.logger.debug({ err: error }, 'websocket send failed');
      this.wakeWritable();
    });
    const buffered = this.socket.bufferedAmount;
    if (buffered > this.counters.peakBufferedBytes) this.counters.peakBufferedBytes = buffered;
    // Control messages bypass the pumps; a client that floods pings and never reads is cut off too.
    if (buffered > this.services.flow.highWaterBytes * 4) this.closeLaggedConnection();
  }

  private closeLaggedConnection(): void {
    const first = this.subscriptions.values().next();
    if (first.done !== true) {
      this.closeLagged(first.value);
      return;
    }
    this.services.registry.counters.laggedCloses += 1;
    this.close(WS_CLOSE.lagged, 'lagged');
  }

  /** Null when the socket can take more now; else a promise resolved when its buffer has drained. */
  private waitWritable(): Promise<void> | null {
    if (this.closed || this.socket.bufferedAmount < this.services.flow.highWaterBytes) return null;
    return new Promise((resolve) => this.writableWaiters.add(resolve));
  }

  private wakeWritable(): void {
    if (this.writableWaiters.size === 0) return;
    if (!this.closed && this.socket.bufferedAmount >= this.services.flow.highWaterBytes) return;
    const waiters = [...this.writableWaiters];
    this.writableWaiters.clear();
    for (const resolve of waiters) resolve();
  }

  private armHeartbeat(): void {
    this.heartbeat = this.services.clock.setTimeout(() => {
      if (this.closed) return;
      if (!this.alive) {
        this.services.registry.counters.heartbeatTimeouts += 1;
        this.services.logger.info('websocket heartbeat missed; terminating');
        this.socket.terminate();
        this.dispose();
        return;
      }
      this.alive = false;
      try {
        this.socket.ping();
      } catch (error) {
        this.services.logger.debug({ err: error }, 'websocket ping failed');
      }
      this.armHeartbeat();
    }, this.services.flow.heartbeatMs);
  }

  /** Releases everything the socket held. Idempotent. */
  private dispose(): void {
    if (this.closed) {
      this.services.clock.clearTimeout(this.graceTimer);
      return;
    }
    this.stopAll();
    this.closed = true;
    this.services.clock.clearTimeout(this.heartbeat);
    this.services.clock.clearTimeout(this.graceTimer);
    this.wakeWritable();
    this.services.registry.remove(this);
  }
}

/** A close reason is at most 123 bytes (RFC 6455 §5.5). */
function truncateReason(reason: string): string {
  const bytes = Buffer.from(reason, 'utf8');
  return bytes.length <= 123 ? reason : bytes.subarray(0, 123).toString('utf8').replace(/\uFFFD$/, '');
}

/**
 * The wire form of one event, serialised once however many sockets it goes to: live events reach every
 * subscriber as the same envelope object, so the cache (weak: it never holds an event alive) turns N
 * serialisations of a fan-out into one.
 */
const frames = new WeakMap<object, string>();

function eventFrame(event: Envelope): string {
  let frame = frames.get(event);
  if (frame === undefined) {
    frame = JSON.stringify({ ...event, kind: 'event' });
    frames.set(event, frame);
  }
  return frame;
}
