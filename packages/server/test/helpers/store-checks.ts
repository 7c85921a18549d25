/** Reads a run back from the store and checks the durable guarantees every scenario must keep. */
import { expect } from 'vitest';
import { openSqliteRepositories } from '../../src/store/sqlite/index.js';
import type { StoredIterationRecord } from '../../src/store/repositories.js';
import type { StoredEvent, StoredRun } from '../../src/store/types.js';

export interface StoredRunView {
  run: StoredRun;
  events: StoredEvent[];
  /** `from→to` of every run_state_changed event, in order. */
  transitions: string[];
  iterations: number;
  records: StoredIterationRecord[];
}

const CLOSING = new Set(['run_completed', 'run_failed', 'run_canceled']);

/**
 * Opens the store under `home`, checks seq 1..n without gaps, that the stored transitions chain from
 * queued to the stored state, and that a terminal run's last event is its closing event (nothing after).
 */
export async function readRun(home: string, runId: string): Promise<StoredRunView> {
  const repos = openSqliteRepositories({ home });
  try {
    const run = await repos.runs.get(runId);
    expect(run).not.toBeNull();
    const events = await repos.runs.listEvents(runId, { limit: 100_000 });
    expect(events.map((e) => e.seq)).toEqual(events.map((_, i) => i + 1));
    const changes = events.filter((e) => e.type === 'run_state_changed');
    const transitions = changes.map((e) => `${String(e.data['from'])}→${String(e.data['to'])}`);
    // Each transition starts where the previous one ended, from queued to the stored final state.
    let state = 'queued';
    for (const change of changes) {
      expect(change.data['from']).toBe(state);
      state = String(change.data['to']);
    }
    expect(state).toBe(run?.state);
    if (run !== null && ['succeeded', 'failed', 'canceled'].includes(run.state)) {
      expect(CLOSING.has(events.at(-1)?.type ?? '')).toBe(true);
      expect(events.filter((e) => CLOSING.has(e.type))).toHaveLength(1);
      expect(events.at(-2)?.type).toBe('run_state_changed');
    }
    const records = await repos.iterations.list(runId);
    return { run: run as StoredRun, events, transitions, iterations: records.length, records };
  } finally {
    await repos.close();
  }
}

/** The state path of SPEC 3 for a run that passes on iteration `n` (local delivery). */
export function passingPath(iterations: number): string[] {
  const path = ['queued→leased', 'leased→building'];
  for (let i = 1; i <= iterations; i += 1) {
    path.push('building→snapshotting', 'snapshotting→verifying');
    path.push(i < iterations ? 'verifying→feedback' : 'verifying→succeeded');
    if (i < iterations) path.push('feedback→building');
  }
  return path;
}
