/**
 * The typed event bus of a run (SPEC 11). Every event is appended to the durable log with its per-run
 * `seq` *before* any listener sees it, so a subscriber that reconnects with its last seq can replay
 * from the store and never sees a gap. Listeners are isolated: one that throws is reported through
 * the logger and the `listenerErrors` counter and never stops a run or the other listeners.
 */
import type { Logger } from 'pino';
import type { RunStore, StoredEvent } from '../store/types.js';
import type { EmitFn, ProgressEnvelope, ProgressEventType, ProgressEvents } from './events.js';

export type ProgressListener = (event: ProgressEnvelope) => void;

/** The part of the store the emitter needs: appending to the durable log. */
export type EventLog = Pick<RunStore, 'appendEvent'>;

export class ProgressEmitter {
  private readonly listeners = new Set<ProgressListener>();
  private readonly log: EventLog;
  private readonly logger: Logger | undefined;
  private errors = 0;

  constructor(options: { log: EventLog; logger?: Logger }) {
    this.log = options.log;
    this.logger = options.logger;
  }

  /** Number of listener calls that threw since start-up. */
  get listenerErrors(): number {
    return this.errors;
  }

  /** Registers a listener for every event of every run; returns the unsubscribe function. */
  on(listener: ProgressListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Listener for one event type, with its payload typed. */
  onType<T extends ProgressEventType>(type: T, listener: (event: ProgressEnvelope<T>) => void): () => void {
    return this.on((event) => {
      if (event.type === type) listener(event as ProgressEnvelope<T>);
    });
  }

  /** Persists the event (assigning its seq), then delivers it. Store errors propagate to the caller. */
  emit<T extends ProgressEventType>(runId: string, type: T, data: ProgressEvents[T]): ProgressEnvelope<T> {
    const stored = this.log.appendEvent(runId, type, data);
    const envelope = toEnvelope<T>(stored, type, data);
    this.deliver(envelope);
    return envelope;
  }

  /**
   * Delivers an event that the store already persisted (for example the `run_state_changed` event
   * written in the same transaction as the run row).
   */
  publish(stored: StoredEvent): void {
    this.deliver(stored as ProgressEnvelope);
  }

  /** An {@link EmitFn} bound to one run, handed to phases and drivers. */
  forRun(runId: string): EmitFn {
    return (type, data) => {
      this.emit(runId, type, data);
    };
  }

  private deliver(envelope: ProgressEnvelope): void {
    for (const listener of this.listeners) {
      try {
        listener(envelope);
      } catch (error) {
        this.errors += 1;
        this.logger?.error({ err: error, runId: envelope.runId, type: envelope.type, seq: envelope.seq }, 'progress listener failed');
      }
    }
  }
}

function toEnvelope<T extends ProgressEventType>(stored: StoredEvent, type: T, data: ProgressEvents[T]): ProgressEnvelope<T> {
  return { seq: stored.seq, runId: stored.runId, workOrderId: stored.workOrderId, type, timestamp: stored.timestamp, data };
}
