/**
 * What the `/ws` sockets of one server share: the flow-control settings every connection runs with, and
 * the registry of open connections with its totals (`stats` shows that memory stays bounded; `closeAll`
 * runs at shutdown). One socket's own logic is `ws-connection.ts`.
 */
import type { WsConnection } from './ws-connection.js';
import { WS_CLOSE } from './ws-protocol.js';

export interface WsFlowOptions {
  /** Heartbeat ping interval; default 30 s. */
  readonly heartbeatMs: number;
  /** Events one subscription may hold for a slow socket before it is closed as lagged; default 1000. */
  readonly maxBufferedEvents: number;
  /** Socket buffer above which pumps stop taking events; default 1 MiB. */
  readonly highWaterBytes: number;
  /** Socket buffer above which queued agent output is coalesced; default 256 KiB. */
  readonly coalesceBytes: number;
  /** Largest text of one coalesced frame; default 256 KiB. */
  readonly maxCoalescedBytes: number;
  /** How long a lagged socket gets to take its close frame before it is terminated; default 5 s. */
  readonly closeGraceMs: number;
}

export const DEFAULT_WS_FLOW: WsFlowOptions = {
  heartbeatMs: 30_000,
  maxBufferedEvents: 1000,
  highWaterBytes: 1024 * 1024,
  coalesceBytes: 256 * 1024,
  maxCoalescedBytes: 256 * 1024,
  closeGraceMs: 5_000,
};

export interface WsConnectionStats {
  readonly subscriptions: number;
  /** Bytes the socket holds that the kernel has not accepted. */
  readonly bufferedBytes: number;
  readonly peakBufferedBytes: number;
  /** Envelopes the hub holds for this socket's subscriptions. */
  readonly queuedEvents: number;
  readonly peakQueuedEvents: number;
  readonly eventsSent: number;
  /** Events merged into a previous frame by coalescing. */
  readonly eventsCoalesced: number;
}

/** Totals over all sockets of one server, for tests, the benchmark and metrics. */
export interface WsRegistryStats {
  readonly connections: number;
  readonly subscriptions: number;
  readonly bufferedBytes: number;
  readonly peakBufferedBytes: number;
  readonly queuedEvents: number;
  readonly peakQueuedEvents: number;
  readonly eventsSent: number;
  readonly eventsCoalesced: number;
  /** Sockets closed with 4008 since start-up. */
  readonly laggedCloses: number;
  /** Sockets terminated for missing a heartbeat since start-up. */
  readonly heartbeatTimeouts: number;
  /** Client messages answered with `error` since start-up. */
  readonly rejectedMessages: number;
}

/**
 * The open sockets of one server. `closeAll` runs at shutdown; `stats` shows that memory stays bounded.
 * Pass one to `eventRoutes` to read it; otherwise the plugin makes its own.
 */
export class WsConnections {
  private readonly open = new Set<WsConnection>();
  private peakBuffered = 0;
  private peakQueued = 0;
  private closedTotals = { eventsSent: 0, eventsCoalesced: 0 };
  /** @internal counters bumped by connections. */
  readonly counters = { laggedCloses: 0, heartbeatTimeouts: 0, rejectedMessages: 0 };

  constructor(private readonly onCountChange?: (connections: number) => void) {}

  add(connection: WsConnection): void {
    this.open.add(connection);
    this.onCountChange?.(this.open.size);
  }

  remove(connection: WsConnection): void {
    if (!this.open.delete(connection)) return;
    const stats = connection.stats;
    this.closedTotals.eventsSent += stats.eventsSent;
    this.closedTotals.eventsCoalesced += stats.eventsCoalesced;
    this.notePeaks(stats);
    this.onCountChange?.(this.open.size);
  }

  notePeaks(stats: WsConnectionStats): void {
    if (stats.peakBufferedBytes > this.peakBuffered) this.peakBuffered = stats.peakBufferedBytes;
    if (stats.peakQueuedEvents > this.peakQueued) this.peakQueued = stats.peakQueuedEvents;
  }

  get stats(): WsRegistryStats {
    let subscriptions = 0;
    let bufferedBytes = 0;
    let queuedEvents = 0;
    let { eventsSent, eventsCoalesced } = this.closedTotals;
    for (const connection of this.open) {
      const stats = connection.stats;
      subscriptions += stats.subscriptions;
      bufferedBytes += stats.bufferedBytes;
      queuedEvents += stats.queuedEvents;
      eventsSent += stats.eventsSent;
      eventsCoalesced += stats.eventsCoalesced;
      this.notePeaks(stats);
    }
    return {
      connections: this.open.size,
      subscriptions,
      bufferedBytes,
      peakBufferedBytes: this.peakBuffered,
      queuedEvents,
      peakQueuedEvents: this.peakQueued,
      eventsSent,
      eventsCoalesced,
      ...this.counters,
    };
  }

  /** Closes every socket with 1001 (server going away). */
  closeAll(): void {
    for (const connection of [...this.open]) connection.close(WS_CLOSE.goingAway, 'server shutting down');
  }
}
