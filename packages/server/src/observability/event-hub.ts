/**
 * The event hub (SPEC 11): where run and work-order events are persisted, then delivered — to trusted
 * in-process listeners synchronously (`on`: metrics, the CLI display) and to subscribers as ordered,
 * gap-free, replayable streams (`subscribe`: the WebSocket API, `agentgate logs --follow`).
 *
 * Persist before deliver: `append` writes through `RunRepository.appendEvents` and delivers only what
 * the store returned, with the seq it assigned; `publish` delivers events someone else already
 * persisted (the run actor's `commit` writes `run_state_changed` and the closing event itself).
 *
 * A writer never waits for a reader. Delivery to a subscriber is a push onto its bounded queue; a
 * subscriber that falls `maxQueued` behind is dropped as `lagged` and resumes with `afterSeq`. The
 * replay/live hand-off that makes resuming gap-free is described in `event-subscription.ts`.
 *
 * Ordering: a subscription delivers in seq order whatever order events reach the hub. `append` calls
 * for one run are chained, so the hub's own writes also reach listeners in seq order; events handed to
 * `publish` reach listeners in the order they are published.
 *
 * Several processes on one store (issue 14): a run executed by another worker never passes through this
 * hub. After `followStore()`, a subscription to such a run — or to any work order, whose events any
 * process may write — reads the store every `pollEveryMs` while it is live (event-subscription.ts), so
 * a WebSocket client on an API node follows a run executed elsewhere with the same replay, order and
 * no-gap guarantees, about half a period later on average (docs/deployment.md). Runs this process
 * executes (`isLocalRun`) keep the in-process fast path and are not polled. Listeners (`on`: metrics,
 * the CLI display) only ever see this process's events: each node counts what it executes.
 */
import type { Logger } from 'pino';
import { AgentGateError } from '../errors.js';
import { assertNever } from '../util/abort.js';
import type { TimerClock } from '../util/clock.js';
import { isClosingEventType, type Fence, type RunRepository, type WorkOrderRepository } from '../store/repositories.js';
import type { StoredEvent, StoredWorkOrderEvent } from '../store/types.js';
import {
  isRunEnvelopeOfType,
  isRunEventType,
  isWorkOrderEventType,
  toRunEventEnvelope,
  toWorkOrderEventEnvelope,
} from './event-envelope.js';
import { EventSubscription, type StoreFollow, type Subscription, type SubscriptionEnd } from './event-subscription.js';
import type {
  NewRunEvent,
  RunEnvelopeMap,
  RunEventEnvelope,
  RunEventType,
  WorkOrderEventEnvelope,
} from './events.js';

export type { Subscription, SubscriptionEnd, SubscriptionStats } from './event-subscription.js';

/**
 * Default bound of one subscriber's queue. At the SPEC 15 rate of 20,000 events/s it is 50 ms of
 * traffic: enough to absorb a consumer's scheduling hiccup, small enough that 50 stalled subscribers
 * hold at most 50,000 envelopes.
 */
export const DEFAULT_MAX_QUEUED = 1000;

/** Default page of a store read during replay or gap fill (capped at half of `maxQueued`). */
export const DEFAULT_PAGE_SIZE = 500;

export type RunEventListener = (event: RunEventEnvelope) => void;
export type WorkOrderEventListener = (event: WorkOrderEventEnvelope) => void;

/** What a trusted listener (metrics, CLI display) needs from the hub: its `on`. */
export interface RunEventSource {
  on(listener: RunEventListener): () => void;
}

/** Keep events of these types, or those the predicate accepts. Applied before queueing. */
export type EventFilter<E extends { readonly type: string }> = readonly E['type'][] | ((event: E) => boolean);

interface SubscribeOptions<E extends { readonly type: string }> {
  /** Replay stored events with seq greater than this (the last seq the client saw). Default 0: all. */
  readonly afterSeq?: number;
  readonly filter?: EventFilter<E>;
  /** Bound of this subscriber's queue; default {@link DEFAULT_MAX_QUEUED}. */
  readonly maxQueued?: number;
}

export interface RunSubscribeRequest extends SubscribeOptions<RunEventEnvelope> {
  readonly runId: string;
}

/** `afterSeq` counts in the work order's own sequence. */
export interface WorkOrderSubscribeRequest extends SubscribeOptions<WorkOrderEventEnvelope> {
  readonly workOrderId: string;
}

/** Default poll period of {@link EventHub.followStore}: the added latency is about half of it on average. */
export const DEFAULT_FOLLOW_EVERY_MS = 1000;

/** How subscriptions follow logs written by other processes sharing the store (see the module comment). */
export interface FollowStoreOptions {
  readonly clock: TimerClock;
  /** Poll period of a live subscription (default {@link DEFAULT_FOLLOW_EVERY_MS}). */
  readonly pollEveryMs?: number;
  /** Whether this process executes the run now (its events are pushed: no polling). Default: none is. */
  readonly isLocalRun?: (runId: string) => boolean;
}

export interface EventHubOptions {
  readonly runs: Pick<RunRepository, 'appendEvents' | 'listEvents'>;
  readonly workOrders: Pick<WorkOrderRepository, 'listEvents'>;
  readonly logger?: Logger;
  readonly maxQueued?: number;
  readonly pageSize?: number;
  /** Follow the store from the start (same as calling {@link EventHub.followStore}). */
  readonly followStore?: FollowStoreOptions;
}

export interface EventHubStats {
  readonly subscriptions: number;
  /** Envelopes held for all subscribers together. */
  readonly queued: number;
  /** Subscribers dropped for falling behind, since start-up. */
  readonly lagged: number;
  /** Listener calls that threw, since start-up. */
  readonly listenerErrors: number;
}

export class EventHub implements RunEventSource {
  private readonly runs: EventHubOptions['runs'];
  private readonly workOrders: EventHubOptions['workOrders'];
  private readonly logger: Logger | undefined;
  private readonly maxQueued: number;
  private readonly pageSize: number;
  private readonly listeners = new Set<RunEventListener>();
  private readonly workOrderListeners = new Set<WorkOrderEventListener>();
  private readonly runSubscribers = new Map<string, Set<EventSubscription<RunEventEnvelope>>>();
  private readonly workOrderSubscribers = new Map<string, Set<EventSubscription<WorkOrderEventEnvelope>>>();
  /** The last `append` of each run still in flight: the next one waits for it (see the module comment). */
  private readonly appendTails = new Map<string, Promise<unknown>>();
  private errors = 0;
  private laggedCount = 0;
  private closed = false;
  private follow: Required<FollowStoreOptions> | undefined;

  constructor(options: EventHubOptions) {
    this.runs = options.runs;
    this.workOrders = options.workOrders;
    this.logger = options.logger;
    this.maxQueued = positiveInteger(options.maxQueued ?? DEFAULT_MAX_QUEUED, 'maxQueued');
    this.pageSize = positiveInteger(options.pageSize ?? DEFAULT_PAGE_SIZE, 'pageSize');
    if (options.followStore !== undefined) this.followStore(options.followStore);
  }

  /**
   * Subscriptions made from now on also deliver events other processes write to the store, read every
   * `pollEveryMs` while live (see the module comment). For a process that shares its store: an API
   * node, or a server next to separate workers.
   */
  followStore(options: FollowStoreOptions): void {
    const pollEveryMs = positiveInteger(options.pollEveryMs ?? DEFAULT_FOLLOW_EVERY_MS, 'pollEveryMs');
    this.follow = { clock: options.clock, pollEveryMs, isLocalRun: options.isLocalRun ?? (() => false) };
  }

  /** Number of listener calls that threw since start-up. */
  get listenerErrors(): number {
    return this.errors;
  }

  get stats(): EventHubStats {
    let subscriptions = 0;
    let queued = 0;
    for (const topics of [this.runSubscribers, this.workOrderSubscribers]) {
      for (const subscribers of topics.values()) {
        for (const subscription of subscribers) {
          subscriptions += 1;
          queued += subscription.stats.queued;
        }
      }
    }
    return { subscriptions, queued, lagged: this.laggedCount, listenerErrors: this.errors };
  }

  /**
   * Persists `events` for the run (consecutive seqs, one transaction, fenced), then delivers them.
   * Store errors (AG_ERR_LEASE_LOST, AG_ERR_RUN_ALREADY_TERMINAL …) reach the caller and nothing is
   * delivered. `run_state_changed` and closing events are written by `runs.commit`, not here.
   */
  async append(runId: string, events: readonly NewRunEvent[], fence: Fence | null): Promise<RunEventEnvelope[]> {
    if (events.length === 0) return [];
    const previous = this.appendTails.get(runId);
    const write = async (): Promise<RunEventEnvelope[]> => {
      const stored = await this.runs.appendEvents(runId, events, fence);
      const envelopes = stored.map(toRunEventEnvelope);
      for (const envelope of envelopes) this.deliverRun(envelope);
      return envelopes;
    };
    // The previous append's failure belongs to its caller; this one only waits for it to settle.
    const result = previous === undefined ? write() : previous.then(write, write);
    this.appendTails.set(runId, result);
    try {
      return await result;
    } finally {
      if (this.appendTails.get(runId) === result) this.appendTails.delete(runId);
    }
  }

  /**
   * Delivers run events that are already persisted, in the order given (normally seq order).
   * @throws AG_ERR_INTERNAL when one has a type this build does not know (then none is delivered).
   */
  publish(stored: readonly StoredEvent[]): RunEventEnvelope[] {
    const envelopes = stored.map(toRunEventEnvelope);
    for (const envelope of envelopes) this.deliverRun(envelope);
    return envelopes;
  }

  /** Delivers a work-order event already persisted (by `workOrders.create` / `setStatus`). */
  publishWorkOrder(stored: StoredWorkOrderEvent): WorkOrderEventEnvelope {
    const envelope = toWorkOrderEventEnvelope(stored);
    for (const listener of this.workOrderListeners) {
      try {
        listener(envelope);
      } catch (error) {
        this.listenerFailed(error, { workOrderId: envelope.workOrderId, type: envelope.type, seq: envelope.seq });
      }
    }
    const subscribers = this.workOrderSubscribers.get(envelope.workOrderId);
    if (subscribers) for (const subscription of subscribers) subscription.push(envelope);
    return envelope;
  }

  /**
   * An ordered stream of one run's (or one work order's) events: the stored ones after `afterSeq`,
   * then live ones, each exactly once. See `docs/events.md` for replay and lag semantics.
   */
  subscribe(request: RunSubscribeRequest): Subscription<RunEventEnvelope>;
  subscribe(request: WorkOrderSubscribeRequest): Subscription<WorkOrderEventEnvelope>;
  subscribe(request: RunSubscribeRequest | WorkOrderSubscribeRequest): Subscription<RunEventEnvelope> | Subscription<WorkOrderEventEnvelope> {
    const follow = this.follow;
    if ('runId' in request) {
      const { runId } = request;
      const accept = acceptor(request.filter, isRunEventType);
      const following: Following<RunEventEnvelope> | undefined =
        follow === undefined
          ? undefined
          : { follow: { clock: follow.clock, everyMs: follow.pollEveryMs, needed: () => !follow.isLocalRun(runId) }, isLast: (event) => isClosingEventType(event.type) };
      return this.register(this.runSubscribers, runId, request, accept, following, async (afterSeq, limit) =>
        (await this.runs.listEvents(runId, { afterSeq, limit })).map(toRunEventEnvelope),
      );
    }
    const { workOrderId } = request;
    const accept = acceptor(request.filter, isWorkOrderEventType);
    // Any process may write a work order's events (a claim, a run's end, a cancel): always polled.
    const following: Following<WorkOrderEventEnvelope> | undefined =
      follow === undefined ? undefined : { follow: { clock: follow.clock, everyMs: follow.pollEveryMs, needed: () => true } };
    return this.register(this.workOrderSubscribers, workOrderId, request, accept, following, async (afterSeq, limit) =>
      (await this.workOrders.listEvents(workOrderId, { afterSeq, limit })).map(toWorkOrderEventEnvelope),
    );
  }

  /** A trusted in-process listener for every run event; returns the unsubscribe function. */
  on(listener: RunEventListener): () => void {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  }

  /** A listener for one run event type, with its payload typed. */
  onType<T extends RunEventType>(type: T, listener: (event: RunEnvelopeMap[T]) => void): () => void {
    return this.on((event) => {
      if (isRunEnvelopeOfType(event, type)) listener(event);
    });
  }

  /** A trusted in-process listener for every work-order event. */
  onWorkOrder(listener: WorkOrderEventListener): () => void {
    this.workOrderListeners.add(listener);
    return () => {
      this.workOrderListeners.delete(listener);
    };
  }

  /** Ends every subscription (`closed`) and refuses new ones. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const topics of [this.runSubscribers, this.workOrderSubscribers]) {
      for (const subscribers of [...topics.values()]) for (const subscription of [...subscribers]) subscription.close();
    }
    this.listeners.clear();
    this.workOrderListeners.clear();
  }

  private deliverRun(envelope: RunEventEnvelope): void {
    for (const listener of this.listeners) {
      try {
        listener(envelope);
      } catch (error) {
        this.listenerFailed(error, { runId: envelope.runId, type: envelope.type, seq: envelope.seq });
      }
    }
    const subscribers = this.runSubscribers.get(envelope.runId);
    if (subscribers) for (const subscription of subscribers) subscription.push(envelope);
  }

  private register<E extends { readonly seq: number; readonly type: string }>(
    topics: Map<string, Set<EventSubscription<E>>>,
    key: string,
    options: SubscribeOptions<E>,
    accept: ((event: E) => boolean) | null,
    following: Following<E> | undefined,
    fetch: (afterSeq: number, limit: number) => Promise<E[]>,
  ): EventSubscription<E> {
    if (this.closed) throw new AgentGateError('AG_ERR_INTERNAL', 'The event hub is closed');
    const subscription = new EventSubscription<E>({
      afterSeq: nonNegativeInteger(options.afterSeq ?? 0, 'afterSeq'),
      maxQueued: positiveInteger(options.maxQueued ?? this.maxQueued, 'maxQueued'),
      pageSize: this.pageSize,
      fetch,
      accept,
      ...following,
      onEnd: (ended, end) => {
        const subscribers = topics.get(key);
        subscribers?.delete(ended);
        if (subscribers?.size === 0) topics.delete(key);
        this.subscriptionEnded(key, end);
      },
    });
    // Registered before the first store read: from here on no live event can be missed.
    let subscribers = topics.get(key);
    if (subscribers === undefined) {
      subscribers = new Set();
      topics.set(key, subscribers);
    }
    subscribers.add(subscription);
    return subscription;
  }

  private subscriptionEnded(key: string, end: SubscriptionEnd): void {
    switch (end.reason) {
      case 'closed':
        return;
      case 'lagged':
        this.laggedCount += 1;
        this.logger?.warn({ stream: key, lastSeq: end.lastSeq }, 'event subscriber lagged');
        return;
      case 'error':
        this.logger?.error({ stream: key, lastSeq: end.lastSeq, err: end.error }, 'event subscription failed');
        return;
      default:
        assertNever(end);
    }
  }

  private listenerFailed(error: unknown, fields: Record<string, unknown>): void {
    this.errors += 1;
    this.logger?.error({ err: error, ...fields }, 'event listener failed');
  }
}

/** How one subscription follows the store: its poll and the event that ends its log. */
interface Following<E> {
  readonly follow: StoreFollow;
  readonly isLast?: (event: E) => boolean;
}

/** A filter as one function, or `null` for "everything"; type lists are checked against the known types. */
function acceptor<E extends { readonly type: string }>(
  filter: EventFilter<E> | undefined,
  isKnown: (type: string) => boolean,
): ((event: E) => boolean) | null {
  if (filter === undefined) return null;
  if (typeof filter === 'function') return filter;
  const types = new Set<string>(filter);
  for (const type of types) {
    if (!isKnown(type)) throw new AgentGateError('AG_ERR_CONFIG_INVALID', `Unknown event type in filter: ${type}`, { details: { type } });
  }
  return (event) => types.has(event.type);
}

function positiveInteger(value: number, name: string): number {
  if (!Number.isInteger(value) || value < 1) {
    throw new AgentGateError('AG_ERR_CONFIG_INVALID', `${name} must be a positive integer`, { details: { [name]: value } });
  }
  return value;
}

function nonNegativeInteger(value: number, name: string): number {
  if (!Number.isInteger(value) || value < 0) {
    throw new AgentGateError('AG_ERR_CONFIG_INVALID', `${name} must be a non-negative integer`, { details: { [name]: value } });
  }
  return value;
}
