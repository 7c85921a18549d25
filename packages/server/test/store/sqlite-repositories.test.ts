import { mkdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { classifySqliteCode } from '../../src/store/sqlite-errors.js';
import { openSqliteRepositories } from '../../src/store/sqlite/index.js';
import { rejectedAgentGateError, thrownAgentGateError } from '../helpers/errors.js';
import { describeRepositoryContract } from './repository-contract.js';
import { TempStores, manualClock, seedRun } from './helpers/store-fixture.js';

const temp = new TempStores();
afterEach(() => temp.cleanup());

describeRepositoryContract('SQLite (temp-dir file, real better-sqlite3)', async () => {
  const dir = new TempStores();
  const repos = openSqliteRepositories({ path: await dir.dbPath() });
  return {
    repos,
    cleanup: async () => {
      await repos.close();
      await dir.cleanup();
    },
  };
});

describe('openSqliteRepositories', () => {
  describe('when opened', () => {
    it('creates <home>/agentgate.db, with the directory, in WAL mode', async () => {
      const home = join(await temp.dir(), 'nested', 'home');
      const repos = openSqliteRepositories({ home });
      try {
        expect(repos.path).toBe(join(home, 'agentgate.db'));
        expect((await stat(repos.path)).isFile()).toBe(true);
      } finally {
        await repos.close();
      }
      const raw = new Database(join(home, 'agentgate.db'));
      try {
        expect(raw.pragma('journal_mode', { simple: true })).toBe('wal');
      } finally {
        raw.close();
      }
    });

    it('fails with AG_ERR_STORE_OPEN when the path cannot be a database, and AG_ERR_CONFIG_INVALID without a location', async () => {
      const dir = await temp.dir();
      await mkdir(join(dir, 'a-directory'));
      const err = thrownAgentGateError(() => openSqliteRepositories({ path: join(dir, 'a-directory') }));
      expect(err.code).toBe('AG_ERR_STORE_OPEN');
      expect(err.cause).toBeDefined();
      expect(thrownAgentGateError(() => openSqliteRepositories({})).code).toBe('AG_ERR_CONFIG_INVALID');
      expect(thrownAgentGateError(() => openSqliteRepositories({ path: ':memory:', busyTimeoutMs: -1 })).code).toBe('AG_ERR_CONFIG_INVALID');
    });

    it('supports :memory: for callers that need no durability', async () => {
      const repos = openSqliteRepositories({ path: ':memory:' });
      try {
        await seedRun(repos);
        expect((await repos.runs.commit('run-1', { event: 'workspace_acquired', fence: null })).events[0]?.seq).toBe(1);
      } finally {
        await repos.close();
      }
    });

    it('closes idempotently and then refuses calls with AG_ERR_STORE_OPEN', async () => {
      const repos = openSqliteRepositories({ path: await temp.dbPath() });
      const first = repos.close();
      expect(repos.close()).toBe(first);
      await first;
      expect((await rejectedAgentGateError(repos.runs.get('run-1'))).code).toBe('AG_ERR_STORE_OPEN');
      expect((await rejectedAgentGateError(repos.leases.acquire({ key: 'k', owner: 'a', runId: 'r', ttlMs: 1000 }))).code).toBe('AG_ERR_STORE_OPEN');
    });
  });

  describe('after close and reopen', () => {
    it('still holds the work order, run, iterations, events, work-order events and leases', async () => {
      const path = await temp.dbPath();
      const clock = manualClock();
      const first = openSqliteRepositories({ path, clock: clock.now });
      await seedRun(first);
      const fence = { leaseKey: 'run:run-1', owner: 'owner-a' };
      await first.runs.updateMeta('run-1', { unverified: true, usage: { inputTokens: 10, outputTokens: 5, costUsd: 0.01 } }, fence);
      await first.runs.commit('run-1', { event: 'workspace_acquired', fence });
      await first.iterations.save(
        { runId: 'run-1', iteration: 1, record: { feedback: { text: 'try again', truncated: false } }, startedAt: '2025-01-01T00:00:01.000Z', completedAt: null },
        fence,
      );
      await first.runs.appendEvents('run-1', [{ type: 'agent_output', data: { text: 'hello' } }], fence);
      await first.workOrders.setStatus('wo-1', 'running', { runId: 'run-1' });
      await first.close();

      const second = temp.open(path, clock);
      expect(await second.workOrders.get('wo-1')).toMatchObject({ status: 'running', createdAt: '2025-01-01T00:00:00.000Z' });
      expect(await second.runs.get('run-1')).toMatchObject({
        state: 'leased',
        branch: 'agentgate/run-1',
        meta: { unverified: true, usage: { inputTokens: 10, outputTokens: 5, costUsd: 0.01 } },
        version: 3,
      });
      expect(await second.iterations.list('run-1')).toEqual([
        { runId: 'run-1', iteration: 1, record: { feedback: { text: 'try again', truncated: false } }, startedAt: '2025-01-01T00:00:01.000Z', completedAt: null },
      ]);
      expect((await second.runs.listEvents('run-1')).map((e) => [e.seq, e.type, e.timestamp])).toEqual([
        [1, 'run_state_changed', '2025-01-01T00:00:00.000Z'],
        [2, 'agent_output', '2025-01-01T00:00:00.000Z'],
      ]);
      expect((await second.workOrders.listEvents('wo-1')).map((e) => [e.seq, e.type, e.data])).toEqual([
        [1, 'work_order_created', { status: 'queued' }],
        [2, 'work_order_updated', { status: 'running', runId: 'run-1' }],
      ]);
      expect(await second.leases.get('run:run-1')).toEqual({
        key: 'run:run-1',
        owner: 'owner-a',
        runId: 'run-1',
        expiresAt: '2025-01-01T00:01:00.000Z',
        heartbeatAt: '2025-01-01T00:00:00.000Z',
      });
      expect(await second.leases.acquire({ key: 'run:run-1', owner: 'owner-b', runId: 'run-2', ttlMs: 30_000 })).toBe(false);
    });
  });

  describe('with the store clock', () => {
    it('stamps defaults with it and checks lease expiry, and so the fence, against it', async () => {
      const clock = manualClock();
      const repos = temp.open(await temp.dbPath(), clock);
      await seedRun(repos);
      const fence = { leaseKey: 'run:run-1', owner: 'owner-a' };
      clock.advance(59_999);
      const [event] = await repos.runs.appendEvents('run-1', [{ type: 'agent_output', data: {} }], fence);
      expect(event?.timestamp).toBe('2025-01-01T00:00:59.999Z');
      expect(await repos.leases.renew({ key: 'run:run-1', owner: 'owner-a', ttlMs: 60_000 })).toBe(true);
      expect(await repos.leases.get('run:run-1')).toMatchObject({ heartbeatAt: '2025-01-01T00:00:59.999Z', expiresAt: '2025-01-01T00:01:59.999Z' });
      clock.advance(60_000);
      expect((await repos.leases.listExpired()).map((lease) => lease.key)).toEqual(['run:run-1']);
      expect(await repos.leases.listLive()).toEqual([]);
      expect((await rejectedAgentGateError(repos.runs.commit('run-1', { event: 'workspace_acquired', fence }))).code).toBe('AG_ERR_LEASE_LOST');
      expect(await repos.runs.lastSeq('run-1')).toBe(1);
    });

    it('prefers an explicit now over the store clock for leases', async () => {
      const repos = temp.open(await temp.dbPath());
      const now = new Date('2030-06-01T00:00:00.000Z');
      await repos.leases.acquire({ key: 'k', owner: 'a', runId: 'run-1', ttlMs: 30_000, now });
      expect((await repos.leases.get('k'))?.expiresAt).toBe('2030-06-01T00:00:30.000Z');
      expect(await repos.leases.renew({ key: 'k', owner: 'a', ttlMs: 30_000, now: new Date('2030-06-01T00:00:29.999Z') })).toBe(true);
    });
  });

  describe('across two connections to one file', () => {
    it('keeps a lease exclusive and fences the losing connection', async () => {
      const path = await temp.dbPath();
      const clock = manualClock();
      const one = temp.open(path, clock);
      const two = temp.open(path, clock);
      await seedRun(one);
      expect(await two.leases.acquire({ key: 'run:run-1', owner: 'owner-b', runId: 'run-1', ttlMs: 60_000 })).toBe(false);
      clock.advance(60_000);
      expect(await two.leases.acquire({ key: 'run:run-1', owner: 'owner-b', runId: 'run-1', ttlMs: 60_000 })).toBe(true);
      expect(await one.leases.renew({ key: 'run:run-1', owner: 'owner-a', ttlMs: 60_000 })).toBe(false);
      const stale = { leaseKey: 'run:run-1', owner: 'owner-a' };
      expect((await rejectedAgentGateError(one.runs.appendEvents('run-1', [{ type: 'agent_output', data: {} }], stale))).code).toBe('AG_ERR_LEASE_LOST');
      await two.runs.commit('run-1', { event: 'workspace_acquired', fence: { leaseKey: 'run:run-1', owner: 'owner-b' } });
      expect((await one.runs.get('run-1'))?.state).toBe('leased');
    });
  });

  describe('when a write fails half-way', () => {
    it('rolls back the run row and run_state_changed when the closing event cannot be written', async () => {
      const path = await temp.dbPath();
      const repos = temp.open(path);
      await seedRun(repos);
      const before = await repos.runs.get('run-1');
      const saboteur = new Database(path);
      try {
        // RAISE(ABORT) fails the closing event's insert after the run row and run_state_changed were written.
        saboteur.exec(`CREATE TRIGGER sabotage BEFORE INSERT ON events WHEN NEW.type = 'run_canceled' BEGIN SELECT RAISE(ABORT, 'forced failure'); END`);
        const err = await rejectedAgentGateError(repos.runs.commit('run-1', { event: 'user_canceled', fence: null, closing: { type: 'run_canceled', data: {} } }));
        expect(err).toMatchObject({ code: 'AG_ERR_STORE_CONFLICT', details: { sqliteCode: 'SQLITE_CONSTRAINT_TRIGGER' } });
        expect(err.cause).toBeInstanceOf(Database.SqliteError);
        expect(await repos.runs.get('run-1')).toEqual(before);
        expect(await repos.runs.lastSeq('run-1')).toBe(0);

        saboteur.exec('DROP TRIGGER sabotage');
        const { events } = await repos.runs.commit('run-1', { event: 'user_canceled', fence: null, closing: { type: 'run_canceled', data: {} } });
        expect(events.map((e) => e.seq)).toEqual([1, 2]);
      } finally {
        saboteur.close();
      }
    });

    it('rolls back the work order when the run insert of runs.create fails', async () => {
      const path = await temp.dbPath();
      const repos = temp.open(path);
      const saboteur = new Database(path);
      try {
        saboteur.exec(`CREATE TRIGGER sabotage BEFORE INSERT ON runs BEGIN SELECT RAISE(ABORT, 'forced failure'); END`);
        expect((await rejectedAgentGateError(seedRun(repos))).code).toBe('AG_ERR_STORE_CONFLICT');
        expect(await repos.workOrders.get('wo-1')).toBeNull();
        expect(await repos.workOrders.lastSeq('wo-1')).toBe(0);
        expect(await repos.leases.get('run:run-1')).toBeNull();
      } finally {
        saboteur.close();
      }
    });
  });

  describe('error translation', () => {
    it('reports a duplicate id as AG_ERR_STORE_CONFLICT carrying the SqliteError as cause', async () => {
      const repos = temp.open(await temp.dbPath());
      await repos.workOrders.create({ id: 'wo-1', source: 'task_spec', spec: {} });
      const err = await rejectedAgentGateError(repos.workOrders.create({ id: 'wo-1', source: 'task_spec', spec: {} }));
      expect(err.cause).toBeInstanceOf(Database.SqliteError);
      expect(err.details).toMatchObject({ sqliteCode: 'SQLITE_CONSTRAINT_PRIMARYKEY' });
    });

    it('reports a writer locked out beyond the busy timeout as retryable AG_ERR_STORE_BUSY', async () => {
      const path = await temp.dbPath();
      await seedRun(temp.open(path));
      const impatient = temp.open(path, manualClock(), 0);
      const holder = new Database(path);
      try {
        holder.exec('BEGIN IMMEDIATE');
        const err = await rejectedAgentGateError(impatient.runs.appendEvents('run-1', [{ type: 'agent_output', data: {} }], null));
        expect(err.code).toBe('AG_ERR_STORE_BUSY');
        expect(err.retryable).toBe(true);
        expect(err.cause).toBeInstanceOf(Database.SqliteError);
        holder.exec('ROLLBACK');
        expect((await impatient.runs.appendEvents('run-1', [{ type: 'agent_output', data: {} }], null))[0]?.seq).toBe(1);
      } finally {
        holder.close();
      }
    });

    it('classifies SQLite result codes by code, not message', () => {
      expect(classifySqliteCode('SQLITE_BUSY')).toBe('AG_ERR_STORE_BUSY');
      expect(classifySqliteCode('SQLITE_BUSY_SNAPSHOT')).toBe('AG_ERR_STORE_BUSY');
      expect(classifySqliteCode('SQLITE_LOCKED_SHAREDCACHE')).toBe('AG_ERR_STORE_BUSY');
      expect(classifySqliteCode('SQLITE_CONSTRAINT_FOREIGNKEY')).toBe('AG_ERR_STORE_CONFLICT');
      expect(classifySqliteCode('SQLITE_CONSTRAINT')).toBe('AG_ERR_STORE_CONFLICT');
      expect(classifySqliteCode('SQLITE_IOERR_WRITE')).toBe('AG_ERR_STORE_WRITE');
      expect(classifySqliteCode('SQLITE_FULL')).toBe('AG_ERR_DISK_FULL');
    });
  });
});
