/**
 * The record of the iteration in progress. Steps fill in its parts (agent, snapshot, verification,
 * decision, feedback, error); the tracker persists it (fenced, through the iteration repository) and
 * emits `iteration_started` / `iteration_completed` — the latter exactly once per iteration, however the
 * iteration ends. The run actor closes an open iteration before any terminal commit, so the
 * `iteration_completed` event always precedes the run's terminal event.
 */
import type { EmitFn } from '../observability/events.js';
import type { IterationRecord } from '../store/records.js';
import type { Fence, IterationRepository } from '../store/repositories.js';
import type { Clock } from '../util/clock.js';

interface OpenIteration {
  readonly iteration: number;
  readonly startedAt: number;
  readonly record: IterationRecord;
  completed: boolean;
}

export class IterationTracker {
  private current: OpenIteration | undefined;
  private started = 0;

  constructor(
    private readonly runId: string,
    private readonly repository: IterationRepository,
    private readonly fence: Fence,
    private readonly emit: EmitFn,
    private readonly clock: Clock,
  ) {}

  /** Iterations begun so far. */
  get count(): number {
    return this.started;
  }

  /** The record of the iteration in progress (an empty one before the first). */
  get record(): IterationRecord {
    return this.current?.record ?? {};
  }

  begin(iteration: number): void {
    this.current = { iteration, startedAt: this.clock.now(), record: {}, completed: false };
    this.started += 1;
    this.emit('iteration_started', { iteration });
  }

  /** Persists the record as it stands (insert or replace). */
  async save(): Promise<void> {
    const open = this.current;
    if (open === undefined) return;
    await this.repository.save(
      {
        runId: this.runId,
        iteration: open.iteration,
        record: open.record,
        startedAt: new Date(open.startedAt).toISOString(),
        completedAt: new Date(this.clock.now()).toISOString(),
      },
      this.fence,
    );
  }

  /** Emits `iteration_completed` (once) and persists the record. */
  async complete(passed: boolean): Promise<void> {
    const open = this.current;
    if (open === undefined || open.completed) return;
    open.completed = true;
    const agent = open.record.agent;
    const usage = agent?.usage;
    this.emit('iteration_completed', {
      iteration: open.iteration,
      passed,
      durationMs: this.clock.now() - open.startedAt,
      ...(agent !== undefined && {
        agent: { inputTokens: usage?.inputTokens ?? 0, outputTokens: usage?.outputTokens ?? 0, costUsd: usage?.costUsd ?? 0, turns: agent.turns ?? 0 },
      }),
    });
    await this.save();
  }

  /** Completes the iteration in progress as not passed, if one is open. */
  async closeOpen(): Promise<void> {
    if (this.current !== undefined && !this.current.completed) await this.complete(false);
  }
}
