/** Reads a run back from the store and checks the durable guarantees every scenario must keep. */
import { expect } from 'vitest';
import { SqliteRunStore } from '../../src/store/run-store.js';
import type { StoredEvent, StoredRun } from '../../src/store/types.js';

export interface StoredRunView {
  run: StoredRun;
  events: StoredEvent[];
  /** `from→to` of every run_state_changed event, in order. */
  transitions: string[];
  iterations: number;
}

/** Opens the store under `home`, checks seq 1..n without gaps and that the stored transitions chain. */
export function readRun(home: string, runId: string): StoredRunView {
  const store = SqliteRunStore.open({ home });
  try {
    const run = store.getRun(runId);
    expect(run).not.toBeNull();
    const events = store.listEvents(runId, { limit: 100_000 });
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
    return { run: run as StoredRun, events, transitions, iterations: store.listIterations(runId).length };
  } finally {
    store.close();
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
