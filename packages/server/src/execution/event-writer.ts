/**
 * The run's event writer. Phases and drivers emit synchronously (`EmitFn`); the writer batches what was
 * emitted in one turn of the event loop and appends it through the hub (persist, then deliver) in
 * emission order, one batch after the other. The run actor awaits {@link RunEventWriter.flush} before
 * every commit, so a `run_state_changed` event always follows the events emitted before it.
 *
 * A write the store cannot take for a moment (unreachable, busy) is retried through `retry`; a write the
 * store refuses ends the writer: a fenced write (`AG_ERR_LEASE_LOST`) or a write after the
 * terminal event (`AG_ERR_RUN_ALREADY_TERMINAL`) means this process no longer owns the run, so nothing
 * more is written for it; any other store failure is reported once through `onFailure`.
 */
import type { Logger } from 'pino';
import { toAgentGateError, type AgentGateError } from '../errors.js';
import type { ProgressEventType, ProgressEvents } from '../observability/events.js';
import type { Fence } from '../store/repositories.js';
import type { StoredEvent } from '../store/types.js';

/** One event as emitted, before the store gave it a seq. */
export type PendingEvent = { [T in ProgressEventType]: { type: T; data: ProgressEvents[T] } }[ProgressEventType];

/** Where a run's events are persisted and delivered (the event hub). */
export interface RunEventSink {
  /** Persists the events with consecutive seqs (fenced), then delivers them. */
  append(runId: string, events: readonly PendingEvent[], fence: Fence | null): Promise<unknown>;
  /** Delivers events that were persisted by someone else (the actor's commit). */
  publish(events: readonly StoredEvent[]): void;
}

export class RunEventWriter {
  private pending: PendingEvent[] = [];
  private chain: Promise<void> = Promise.resolve();
  private scheduled = false;
  private stopped = false;
  private failed = false;
  private dropped = 0;

  constructor(
    private readonly runId: string,
    private readonly fence: Fence | null,
    private readonly sink: RunEventSink,
    private readonly logger: Logger,
    private readonly onFailure: (error: AgentGateError) => void,
    /** Wraps each append: the actor retries a store that is briefly unreachable (util/store-retry.ts). */
    private readonly retry: <T>(write: () => Promise<T>) => Promise<T> = (write) => write(),
  ) {}

  /** Events refused after the writer stopped (counted, logged once at stop). */
  get droppedCount(): number {
    return this.dropped;
  }

  emit<T extends ProgressEventType>(type: T, data: ProgressEvents[T]): void {
    if (this.stopped) {
      this.dropped += 1;
      return;
    }
    this.pending.push({ type, data } as PendingEvent);
    if (this.scheduled) return;
    this.scheduled = true;
    // One batch per turn of the event loop: output lines from several I/O callbacks share one write.
    setImmediate(() => this.schedule());
  }

  /** Resolves once everything emitted so far is persisted (or refused). Never rejects. */
  async flush(): Promise<void> {
    this.schedule();
    await this.chain;
  }

  /** Stops accepting events; what was emitted before is still written. */
  stop(): void {
    this.stopped = true;
  }

  private schedule(): void {
    this.scheduled = false;
    if (this.pending.length === 0) return;
    const batch = this.pending;
    this.pending = [];
    this.chain = this.chain.then(() => this.write(batch));
  }

  private async write(batch: readonly PendingEvent[]): Promise<void> {
    if (this.failed) {
      this.dropped += batch.length;
      return;
    }
    try {
      await this.retry(() => this.sink.append(this.runId, batch, this.fence));
    } catch (error) {
      const classified = toAgentGateError(error, 'AG_ERR_STORE_WRITE');
      this.stopped = true;
      this.failed = true;
      this.dropped += batch.length + this.pending.length;
      this.pending = [];
      this.logger.error({ err: classified, code: classified.code, dropped: this.dropped }, 'run events refused by the store');
      this.onFailure(classified);
    }
  }
}
