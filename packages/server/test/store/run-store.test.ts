import { mkdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { AgentGateError } from '../../src/errors.js';
import { SqliteRunStore } from '../../src/store/run-store.js';
import { classifySqliteCode } from '../../src/store/sqlite-errors.js';
import { TempStores, manualClock, newRun, seedRun, seedWorkOrder } from './helpers/store-fixture.js';

const temp = new TempStores();
afterEach(() => temp.cleanup());

function caught(fn: () => unknown): AgentGateError {
  try {
    fn();
  } catch (err) {
    if (err instanceof AgentGateError) return err;
    throw err;
  }
  throw new Error('expected an AgentGateError, nothing was thrown');
}

describe('SqliteRunStore', () => {
  describe('when opened', () => {
    it('creates <home>/agentgate.db, with the directory, in WAL mode with the documented pragmas', async () => {
      const home = join(await temp.dir(), 'nested', 'home');
      const store = SqliteRunStore.open({ home });
      try {
        expect(store.path).toBe(join(home, 'agentgate.db'));
        expect((await stat(store.path)).isFile()).toBe(true);
      } finally {
        store.close();
      }
      const raw = new Database(join(home, 'agentgate.db'));
      try {
        expect(raw.pragma('journal_mode', { simple: true })).toBe('wal');
      } finally {
        raw.close();
      }
    });

    it('fails with AG_ERR_STORE_OPEN when the path cannot be a database', async () => {
      const dir = await temp.dir();
      await mkdir(join(dir, 'a-directory'));
      const err = caught(() => SqliteRunStore.open({ path: join(dir, 'a-directory') }));
      expect(err.code).toBe('AG_ERR_STORE_OPEN');
      expect(err.cause).toBeDefined();
    });

    it('supports :memory: for callers that need no durability', () => {
      const store = SqliteRunStore.open({ path: ':memory:' });
      try {
        seedWorkOrder(store);
        seedRun(store);
        expect(store.transition('run-1', 'workspace_acquired').event.seq).toBe(1);
      } finally {
        store.close();
      }
    });

    it('closes idempotently and then refuses calls with AG_ERR_STORE_OPEN', async () => {
      const store = SqliteRunStore.open({ path: await temp.dbPath() });
      store.close();
      store.close();
      expect(caught(() => store.getRun('run-1')).code).toBe('AG_ERR_STORE_OPEN');
    });
  });

  describe('after close and reopen', () => {
    it('still holds the work order, run, iterations, events, work-order events and leases', async () => {
      const path = await temp.dbPath();
      const clock = manualClock();
      const first = SqliteRunStore.open({ path, clock: clock.now });
      seedWorkOrder(first);
      seedRun(first);
      first.updateRunMeta('run-1', { unverified: true, usage: { inputTokens: 10, outputTokens: 5, costUsd: 0.01 } });
      first.transition('run-1', 'workspace_acquired');
      first.saveIteration('run-1', 1, { agent: { sessionId: 's-1' } }, '2025-01-01T00:00:01.000Z', '2025-01-01T00:00:09.000Z');
      first.appendEvent('run-1', 'agent_output', { text: 'hello' });
      first.appendWorkOrderEvent('wo-1', 'work_order_created', { runId: 'run-1' });
      expect(first.acquireLease({ key: 'repo#main', owner: 'proc-a', runId: 'run-1', ttlMs: 30_000 })).toBe(true);
      first.close();

      const second = temp.open(path, clock);
      expect(second.getWorkOrder('wo-1')).toEqual({
        id: 'wo-1',
        status: 'queued',
        source: 'task_spec',
        spec: { prompt: 'fix the failing test', maxIterations: 3 },
        request: { taskPrompt: 'fix the failing test' },
        createdAt: '2025-01-01T00:00:00.000Z',
        updatedAt: '2025-01-01T00:00:00.000Z',
      });
      const run = second.getRun('run-1');
      expect(run).toMatchObject({
        state: 'leased',
        branch: 'agentgate/run-1',
        meta: { unverified: true, usage: { inputTokens: 10, outputTokens: 5, costUsd: 0.01 } },
        version: 3,
      });
      expect(second.listIterations('run-1')).toEqual([
        { runId: 'run-1', iteration: 1, data: { agent: { sessionId: 's-1' } }, startedAt: '2025-01-01T00:00:01.000Z', completedAt: '2025-01-01T00:00:09.000Z' },
      ]);
      expect(second.listEvents('run-1').map((e) => [e.seq, e.type])).toEqual([
        [1, 'run_state_changed'],
        [2, 'agent_output'],
      ]);
      expect(second.listWorkOrderEvents('wo-1')).toEqual([
        { seq: 1, workOrderId: 'wo-1', type: 'work_order_created', timestamp: '2025-01-01T00:00:00.000Z', data: { runId: 'run-1' } },
      ]);
      expect(second.getLease('repo#main')).toEqual({
        key: 'repo#main',
        owner: 'proc-a',
        runId: 'run-1',
        expiresAt: '2025-01-01T00:00:30.000Z',
        heartbeatAt: '2025-01-01T00:00:00.000Z',
      });
      expect(second.acquireLease({ key: 'repo#main', owner: 'proc-b', runId: 'run-2', ttlMs: 30_000 })).toBe(false);
    });
  });

  describe('work orders', () => {
    it('lists newest first with total, limit, offset and a status filter', async () => {
      const clock = manualClock();
      const store = temp.open(await temp.dbPath(), clock);
      for (let i = 1; i <= 5; i += 1) {
        clock.advance(1000);
        seedWorkOrder(store, `wo-${i}`);
      }
      store.updateWorkOrderStatus('wo-2', 'running');
      store.updateWorkOrderStatus('wo-4', 'running');

      const page = store.listWorkOrders({ limit: 2, offset: 1 });
      expect(page.total).toBe(5);
      expect(page.items.map((w) => w.id)).toEqual(['wo-4', 'wo-3']);
      const running = store.listWorkOrders({ limit: 10, offset: 0, status: 'running' });
      expect(running).toMatchObject({ total: 2, items: [{ id: 'wo-4', status: 'running' }, { id: 'wo-2', status: 'running' }] });
    });

    it('updates the status with the update time', async () => {
      const clock = manualClock();
      const store = temp.open(await temp.dbPath(), clock);
      seedWorkOrder(store);
      clock.advance(5000);
      expect(store.updateWorkOrderStatus('wo-1', 'succeeded')).toMatchObject({
        status: 'succeeded',
        createdAt: '2025-01-01T00:00:00.000Z',
        updatedAt: '2025-01-01T00:00:05.000Z',
      });
    });

    it('rejects a duplicate id with AG_ERR_STORE_CONFLICT carrying the SqliteError as cause', async () => {
      const store = temp.open(await temp.dbPath());
      seedWorkOrder(store);
      const err = caught(() => seedWorkOrder(store));
      expect(err.code).toBe('AG_ERR_STORE_CONFLICT');
      expect(err.cause).toBeInstanceOf(Database.SqliteError);
      expect(err.details).toMatchObject({ sqliteCode: 'SQLITE_CONSTRAINT_PRIMARYKEY' });
    });

    it('reports an unknown work order as AG_ERR_WORK_ORDER_NOT_FOUND', async () => {
      const store = temp.open(await temp.dbPath());
      expect(store.getWorkOrder('nope')).toBeNull();
      expect(caught(() => store.updateWorkOrderStatus('nope', 'failed')).code).toBe('AG_ERR_WORK_ORDER_NOT_FOUND');
      expect(caught(() => store.appendWorkOrderEvent('nope', 'work_order_updated', {})).code).toBe('AG_ERR_WORK_ORDER_NOT_FOUND');
      expect(caught(() => store.insertRun(newRun('run-1', 'nope'))).code).toBe('AG_ERR_WORK_ORDER_NOT_FOUND');
    });
  });

  describe('runs', () => {
    it('returns the run as inserted, with branch, metadata and version 1', async () => {
      const store = temp.open(await temp.dbPath());
      seedWorkOrder(store);
      const run = newRun('run-1');
      const stored = store.insertRun(run, { branch: 'agentgate/run-1', data: { workspacePath: '/tmp/w' } });
      expect(stored).toEqual({ ...run, branch: 'agentgate/run-1', meta: { workspacePath: '/tmp/w' }, version: 1 });
      expect(store.getRun('run-1')).toEqual(stored);
      expect(store.getRun('missing')).toBeNull();
    });

    it('lists by work order and by state, newest first, with totals', async () => {
      const store = temp.open(await temp.dbPath());
      seedWorkOrder(store, 'wo-1');
      seedWorkOrder(store, 'wo-2');
      seedRun(store, 'run-a', 'wo-1', '2025-01-01T00:00:01.000Z');
      seedRun(store, 'run-b', 'wo-1', '2025-01-01T00:00:02.000Z');
      seedRun(store, 'run-c', 'wo-2', '2025-01-01T00:00:03.000Z');
      store.transition('run-b', 'workspace_acquired');

      expect(store.listRuns({ limit: 10, offset: 0 }).items.map((r) => r.id)).toEqual(['run-c', 'run-b', 'run-a']);
      expect(store.listRuns({ limit: 10, offset: 0, workOrderId: 'wo-1' })).toMatchObject({ total: 2, items: [{ id: 'run-b' }, { id: 'run-a' }] });
      expect(store.listRuns({ limit: 10, offset: 0, state: 'queued' }).items.map((r) => r.id)).toEqual(['run-c', 'run-a']);
      expect(store.listRuns({ limit: 1, offset: 0, workOrderId: 'wo-1', state: 'leased' })).toMatchObject({ total: 1, items: [{ id: 'run-b' }] });
      expect(store.listRuns({ limit: 1, offset: 1 })).toMatchObject({ total: 3, items: [{ id: 'run-b' }] });
    });

    it('lists only non-terminal runs, oldest first, for reconciliation', async () => {
      const store = temp.open(await temp.dbPath());
      seedWorkOrder(store);
      seedRun(store, 'run-done', 'wo-1', '2025-01-01T00:00:01.000Z');
      seedRun(store, 'run-building', 'wo-1', '2025-01-01T00:00:02.000Z');
      seedRun(store, 'run-canceled', 'wo-1', '2025-01-01T00:00:03.000Z');
      seedRun(store, 'run-queued', 'wo-1', '2025-01-01T00:00:04.000Z');
      store.transition('run-done', 'workspace_acquired');
      store.transition('run-done', 'system_error', { error: { code: 'AG_ERR_RUN_UNEXPECTED', message: 'boom' } });
      store.transition('run-building', 'workspace_acquired');
      store.transition('run-building', 'build_started');
      store.transition('run-canceled', 'user_canceled');

      expect(store.listNonTerminalRuns().map((r) => [r.id, r.state])).toEqual([
        ['run-building', 'building'],
        ['run-queued', 'queued'],
      ]);
    });

    it('merges metadata patches, drops keys set to undefined, and bumps the version', async () => {
      const store = temp.open(await temp.dbPath());
      seedWorkOrder(store);
      seedRun(store);
      store.updateRunMeta('run-1', { prUrl: 'https://example.test/pr/1', warnings: ['dirty tree'] });
      const updated = store.updateRunMeta('run-1', { unverified: true, warnings: undefined });
      expect(updated.meta).toEqual({ prUrl: 'https://example.test/pr/1', unverified: true });
      expect(updated.version).toBe(3);
      expect(store.setRunBranch('run-1', 'agentgate/other')).toMatchObject({ branch: 'agentgate/other', version: 4 });
      expect(caught(() => store.updateRunMeta('missing', {})).code).toBe('AG_ERR_RUN_NOT_FOUND');
    });

    it('rejects a payload that is not a JSON object with AG_ERR_SCHEMA_INVALID, writing nothing', async () => {
      const store = temp.open(await temp.dbPath());
      seedWorkOrder(store);
      seedRun(store);
      const cyclic: Record<string, unknown> = {};
      cyclic['self'] = cyclic;
      expect(caught(() => store.appendEvent('run-1', 'agent_output', cyclic)).code).toBe('AG_ERR_SCHEMA_INVALID');
      expect(caught(() => store.appendEvent('run-1', 'agent_output', ['not', 'an', 'object'])).code).toBe('AG_ERR_SCHEMA_INVALID');
      expect(store.lastSeq('run-1')).toBe(0);
    });
  });

  describe('iterations', () => {
    it('upserts one record per iteration and lists them in order', async () => {
      const store = temp.open(await temp.dbPath());
      seedWorkOrder(store);
      seedRun(store);
      store.saveIteration('run-1', 2, { phase: 'build' }, '2025-01-01T00:01:00.000Z');
      store.saveIteration('run-1', 1, { done: true }, '2025-01-01T00:00:00.000Z', '2025-01-01T00:00:30.000Z');
      const replaced = store.saveIteration('run-1', 2, { done: true }, '2025-01-01T00:01:00.000Z', '2025-01-01T00:01:30.000Z');
      expect(replaced.completedAt).toBe('2025-01-01T00:01:30.000Z');
      expect(store.listIterations('run-1').map((i) => [i.iteration, i.data, i.completedAt])).toEqual([
        [1, { done: true }, '2025-01-01T00:00:30.000Z'],
        [2, { done: true }, '2025-01-01T00:01:30.000Z'],
      ]);
      expect(caught(() => store.saveIteration('missing', 1, {}, '2025-01-01T00:00:00.000Z')).code).toBe('AG_ERR_RUN_NOT_FOUND');
    });
  });

  describe('events', () => {
    it('numbers events 1, 2, 3 per run with the run envelope and the clock as default timestamp', async () => {
      const clock = manualClock();
      const store = temp.open(await temp.dbPath(), clock);
      seedWorkOrder(store);
      seedRun(store, 'run-1');
      seedRun(store, 'run-2');
      expect(store.appendEvent('run-1', 'run_started', { iteration: 1 })).toEqual({
        seq: 1,
        runId: 'run-1',
        workOrderId: 'wo-1',
        type: 'run_started',
        timestamp: '2025-01-01T00:00:00.000Z',
        data: { iteration: 1 },
      });
      expect(store.appendEvent('run-2', 'run_started', {}).seq).toBe(1);
      clock.advance(10);
      expect(store.appendEvent('run-1', 'phase_started', { phase: 'build' }, '2030-01-01T00:00:00.000Z')).toMatchObject({
        seq: 2,
        timestamp: '2030-01-01T00:00:00.000Z',
      });
      const batch = store.appendEvents('run-1', [
        { type: 'agent_output', data: { text: 'a' } },
        { type: 'agent_output', data: { text: 'b' } },
      ]);
      expect(batch.map((e) => [e.seq, e.timestamp])).toEqual([
        [3, '2025-01-01T00:00:00.010Z'],
        [4, '2025-01-01T00:00:00.010Z'],
      ]);
      expect(store.lastSeq('run-1')).toBe(4);
      expect(store.lastSeq('run-2')).toBe(1);
      expect(store.lastSeq('missing')).toBe(0);
    });

    it('pages with afterSeq and limit, in seq order', async () => {
      const store = temp.open(await temp.dbPath());
      seedWorkOrder(store);
      seedRun(store);
      for (let i = 0; i < 10; i += 1) store.appendEvent('run-1', 'agent_output', { i });
      expect(store.listEvents('run-1', { afterSeq: 3, limit: 4 }).map((e) => e.seq)).toEqual([4, 5, 6, 7]);
      expect(store.listEvents('run-1', { afterSeq: 10 })).toEqual([]);
      expect(store.listEvents('run-1').length).toBe(10);
      expect(caught(() => store.listEvents('run-1', { afterSeq: -1 })).code).toBe('AG_ERR_SCHEMA_INVALID');
    });

    it('refuses events for an unknown run with AG_ERR_RUN_NOT_FOUND', async () => {
      const store = temp.open(await temp.dbPath());
      expect(caught(() => store.appendEvent('missing', 'agent_output', {})).code).toBe('AG_ERR_RUN_NOT_FOUND');
    });
  });

  describe('error translation', () => {
    it('reports a writer locked out beyond the busy timeout as retryable AG_ERR_STORE_BUSY', async () => {
      const path = await temp.dbPath();
      const setup = temp.open(path);
      seedWorkOrder(setup);
      seedRun(setup);
      const impatient = SqliteRunStore.open({ path, busyTimeoutMs: 0 });
      const holder = new Database(path);
      try {
        holder.exec('BEGIN IMMEDIATE');
        const err = caught(() => impatient.appendEvent('run-1', 'agent_output', {}));
        expect(err.code).toBe('AG_ERR_STORE_BUSY');
        expect(err.retryable).toBe(true);
        expect(err.cause).toBeInstanceOf(Database.SqliteError);
        holder.exec('ROLLBACK');
        expect(impatient.appendEvent('run-1', 'agent_output', {}).seq).toBe(1);
      } finally {
        holder.close();
        impatient.close();
      }
    });

    it('classifies SQLite result codes by code, not message', () => {
      expect(classifySqliteCode('SQLITE_BUSY')).toBe('AG_ERR_STORE_BUSY');
      expect(classifySqliteCode('SQLITE_BUSY_SNAPSHOT')).toBe('AG_ERR_STORE_BUSY');
      expect(classifySqliteCode('SQLITE_LOCKED_SHAREDCACHE')).toBe('AG_ERR_STORE_BUSY');
      expect(classifySqliteCode('SQLITE_CONSTRAINT_FOREIGNKEY')).toBe('AG_ERR_STORE_CONFLICT');
      expect(classifySqliteCode('SQLITE_CONSTRAINT')).toBe('AG_ERR_STORE_CONFLICT');
      expect(classifySqliteCode('SQLITE_IOERR_WRITE')).toBe('AG_ERR_STORE_WRITE');
      expect(classifySqliteCode('SQLITE_FULL')).toBe('AG_ERR_STORE_WRITE');
    });
  });
});
