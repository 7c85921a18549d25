import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { AgentGateError } from '../../src/errors.js';
import { InvalidTransitionError } from '../../src/orchestrator/state-machine.js';
import { TempStores, manualClock, seedRun, seedWorkOrder } from './helpers/store-fixture.js';

const temp = new TempStores();
afterEach(() => temp.cleanup());

function caught(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  throw new Error('expected a throw, nothing was thrown');
}

async function storeWithRun() {
  const path = await temp.dbPath();
  const clock = manualClock();
  const store = temp.open(path, clock);
  seedWorkOrder(store);
  seedRun(store);
  return { path, clock, store };
}

describe('SqliteRunStore.transition', () => {
  it('writes the new run state and its run_state_changed event together', async () => {
    const { store, clock } = await storeWithRun();
    clock.advance(1500);
    const { run, event } = store.transition('run-1', 'workspace_acquired');

    expect(run).toMatchObject({ state: 'leased', iteration: 1, version: 2, updatedAt: '2025-01-01T00:00:01.500Z', completedAt: null });
    expect(event).toEqual({
      seq: 1,
      runId: 'run-1',
      workOrderId: 'wo-1',
      type: 'run_state_changed',
      timestamp: '2025-01-01T00:00:01.500Z',
      data: { from: 'queued', event: 'workspace_acquired', to: 'leased', iteration: 1 },
    });
    expect(store.getRun('run-1')).toEqual(run);
    expect(store.listEvents('run-1')).toEqual([event]);
  });

  it('records result, error and completion time on entering a terminal state', async () => {
    const { store } = await storeWithRun();
    store.transition('run-1', 'workspace_acquired');
    store.transition('run-1', 'build_started');
    const error = { code: 'AG_ERR_PHASE_BUILD_AGENT_CRASH', message: 'agent exited 1', phase: 'build', iteration: 1 };
    const { run, event } = store.transition('run-1', 'build_failed', { error, at: '2025-02-02T00:00:00.000Z' });

    expect(run).toMatchObject({ state: 'failed', result: 'failed_build', error, completedAt: '2025-02-02T00:00:00.000Z', version: 4 });
    expect(event.data).toEqual({ from: 'building', event: 'build_failed', to: 'failed', iteration: 1, result: 'failed_build', error });
    expect(store.listEvents('run-1').map((e) => e.seq)).toEqual([1, 2, 3]);
  });

  it('advances the iteration on feedback_generated', async () => {
    const { store } = await storeWithRun();
    for (const e of ['workspace_acquired', 'build_started', 'build_completed', 'snapshot_completed', 'verify_failed_retryable'] as const) {
      store.transition('run-1', e);
    }
    const { run, event } = store.transition('run-1', 'feedback_generated');
    expect(run).toMatchObject({ state: 'building', iteration: 2 });
    expect(event.data).toMatchObject({ from: 'feedback', to: 'building', iteration: 2 });
  });

  it('throws the InvalidTransitionError untouched and writes nothing', async () => {
    const { store } = await storeWithRun();
    store.transition('run-1', 'workspace_acquired');
    const before = store.getRun('run-1');
    const eventsBefore = store.listEvents('run-1');

    const err = caught(() => store.transition('run-1', 'ci_passed'));

    expect(err).toBeInstanceOf(InvalidTransitionError);
    expect(err).toMatchObject({ code: 'AG_ERR_RUN_INVALID_TRANSITION', from: 'leased', event: 'ci_passed' });
    expect(store.getRun('run-1')).toEqual(before);
    expect(store.listEvents('run-1')).toEqual(eventsBefore);
  });

  it('refuses every event once the run is terminal', async () => {
    const { store } = await storeWithRun();
    store.transition('run-1', 'user_canceled');
    expect(caught(() => store.transition('run-1', 'system_error'))).toBeInstanceOf(InvalidTransitionError);
    expect(store.lastSeq('run-1')).toBe(1);
  });

  it('reports an unknown run as AG_ERR_RUN_NOT_FOUND', async () => {
    const { store } = await storeWithRun();
    expect(caught(() => store.transition('missing', 'workspace_acquired'))).toMatchObject({ code: 'AG_ERR_RUN_NOT_FOUND' });
  });

  it('fails a stale expectedVersion with AG_ERR_STORE_CONFLICT and writes nothing', async () => {
    const { store } = await storeWithRun();
    const read = store.getRun('run-1');
    store.updateRunMeta('run-1', { workspacePath: '/tmp/w' });

    const err = caught(() => store.transition('run-1', 'workspace_acquired', { expectedVersion: read?.version ?? 0 }));

    expect(err).toMatchObject({ code: 'AG_ERR_STORE_CONFLICT' });
    expect(store.getRun('run-1')?.state).toBe('queued');
    expect(store.lastSeq('run-1')).toBe(0);
    expect(store.transition('run-1', 'workspace_acquired', { expectedVersion: 2 }).run.version).toBe(3);
  });

  it('rolls the run row back when the event insert fails half-way', async () => {
    const { store, path } = await storeWithRun();
    const before = store.getRun('run-1');
    const saboteur = new Database(path);
    try {
      // RAISE(ABORT) makes the event insert fail with SQLITE_CONSTRAINT_TRIGGER after the run row was updated.
      saboteur.exec(`CREATE TRIGGER sabotage BEFORE INSERT ON events BEGIN SELECT RAISE(ABORT, 'forced failure'); END`);

      const err = caught(() => store.transition('run-1', 'workspace_acquired'));

      expect(err).toBeInstanceOf(AgentGateError);
      expect(err).toMatchObject({ code: 'AG_ERR_STORE_CONFLICT', details: { sqliteCode: 'SQLITE_CONSTRAINT_TRIGGER' } });
      expect(store.getRun('run-1')).toEqual(before);
      expect(store.lastSeq('run-1')).toBe(0);

      saboteur.exec('DROP TRIGGER sabotage');
      expect(store.transition('run-1', 'workspace_acquired').event.seq).toBe(1);
    } finally {
      saboteur.close();
    }
  });
});

describe('SqliteRunStore.runInTransaction', () => {
  it('commits every store call made inside it together', async () => {
    const { store, path } = await storeWithRun();
    store.runInTransaction(() => {
      store.transition('run-1', 'workspace_acquired');
      store.updateRunMeta('run-1', { workspacePath: '/tmp/w' });
      store.appendEvent('run-1', 'phase_started', { phase: 'build' });
    });
    const other = temp.open(path);
    expect(other.getRun('run-1')).toMatchObject({ state: 'leased', meta: { workspacePath: '/tmp/w' } });
    expect(other.lastSeq('run-1')).toBe(2);
  });

  it('leaves nothing behind when the callback inserts and then throws', async () => {
    const { store } = await storeWithRun();
    const failure = new Error('half-way');

    const err = caught(() =>
      store.runInTransaction(() => {
        seedWorkOrder(store, 'wo-2');
        store.transition('run-1', 'workspace_acquired');
        store.appendEvent('run-1', 'agent_output', { text: 'lost' });
        throw failure;
      }),
    );

    expect(err).toBe(failure);
    expect(store.getWorkOrder('wo-2')).toBeNull();
    expect(store.getRun('run-1')).toMatchObject({ state: 'queued', version: 1 });
    expect(store.lastSeq('run-1')).toBe(0);
  });

  it('rolls back a transition when a later constraint fails in the same transaction', async () => {
    const { store } = await storeWithRun();
    const err = caught(() =>
      store.runInTransaction(() => {
        store.transition('run-1', 'workspace_acquired');
        seedWorkOrder(store, 'wo-1');
      }),
    );
    expect(err).toMatchObject({ code: 'AG_ERR_STORE_CONFLICT' });
    expect(store.getRun('run-1')?.state).toBe('queued');
    expect(store.lastSeq('run-1')).toBe(0);
  });

  it('keeps the outer transaction when a nested store call fails and is handled', async () => {
    const { store } = await storeWithRun();
    store.runInTransaction(() => {
      store.transition('run-1', 'workspace_acquired');
      const invalid = caught(() => store.transition('run-1', 'ci_passed'));
      expect(invalid).toBeInstanceOf(InvalidTransitionError);
      store.transition('run-1', 'build_started');
    });
    expect(store.getRun('run-1')?.state).toBe('building');
    expect(store.listEvents('run-1').map((e) => e.data['to'])).toEqual(['leased', 'building']);
  });

  it('rejects an async callback and rolls back what it did before its first await', async () => {
    const { store } = await storeWithRun();
    const err = caught(() =>
      store.runInTransaction(async () => {
        store.appendEvent('run-1', 'agent_output', { text: 'too early' });
      }),
    );
    expect(err).toBeInstanceOf(TypeError);
    expect(store.lastSeq('run-1')).toBe(0);
  });
});
