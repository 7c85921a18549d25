/**
 * The PostgreSQL backend against a real PostgreSQL server (test/helpers/postgres.ts): the repository
 * contract unchanged, then what only a network store has — migrations raced by several processes, the
 * database clock, error translation, a server that goes away and comes back, and several pools (several
 * processes' worth of connections) sharing one queue.
 */
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { AgentGateError } from '../../src/errors.js';
import { createRun } from '../../src/orchestrator/state-machine.js';
import { silentLogger } from '../../src/observability/logger.js';
import { createRuntime } from '../../src/runtime.js';
import { loadConfig } from '../../src/schemas/config.js';
import { openRepositories } from '../../src/store/open.js';
import {
  POSTGRES_MIGRATIONS,
  classifyPostgresCode,
  openPostgresRepositories,
  type PostgresOpenOptions,
  type PostgresRepositories,
} from '../../src/store/postgres/index.js';
import type { Fence } from '../../src/store/repositories.js';
import { AGENTS, makeRepo, writeAgent } from '../helpers/git-repo.js';
import { postgresAvailable, startPostgres, type TestPostgres } from '../helpers/postgres.js';
import { commandTask } from '../helpers/tasks.js';
import { describeRepositoryContract } from './repository-contract.js';
import { expectCode, rejection, seedRun, workOrderInput } from './contract/fixture.js';
import { manualClock } from './helpers/store-fixture.js';

describe.skipIf(!postgresAvailable && process.env['CI'] !== 'true')('PostgreSQL repositories', () => {
  let server: TestPostgres;
  const opened: PostgresRepositories[] = [];
  const connectionErrors: AgentGateError[] = [];

  beforeAll(async () => {
    server = await startPostgres();
  });
  afterAll(async () => {
    await server?.stop();
  });
  afterEach(async () => {
    for (const repos of opened.splice(0)) await repos.close();
  });

  /** Opens repositories closed after the test; connection errors nobody waited for are collected. */
  async function open(url: string, options: Partial<PostgresOpenOptions> = {}): Promise<PostgresRepositories> {
    const repos = await openPostgresRepositories({ url, onConnectionError: (error) => connectionErrors.push(error), ...options });
    opened.push(repos);
    return repos;
  }

  async function sql<R extends pg.QueryResultRow>(url: string, text: string, values: unknown[] = []): Promise<R[]> {
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    try {
      return (await client.query<R>(text, values)).rows;
    } finally {
      await client.end();
    }
  }

  describeRepositoryContract('PostgreSQL (temp server, real pg)', async () => {
    const repos = await openPostgresRepositories({ url: await server.createDatabase() });
    return { repos, cleanup: () => repos.close() };
  });

  it('is the store openRepositories selects when a database URL is configured', async () => {
    const url = await server.createDatabase();
    const repos = await openRepositories({ home: '/nonexistent/agentgate-home', databaseUrl: url });
    try {
      expect(repos.location).toBe(url);
      await repos.ping();
      await repos.workOrders.create(workOrderInput('wo-1'));
      expect(await sql(url, 'SELECT id FROM work_orders')).toEqual([{ id: 'wo-1' }]);
    } finally {
      await repos.close();
    }
  });

  it('runs a task end to end through createRuntime when AGENTGATE_DATABASE_URL is set', async () => {
    const url = await server.createDatabase();
    const repo = makeRepo();
    const runtime = await createRuntime({
      config: loadConfig({ AGENTGATE_HOME: repo.home, AGENTGATE_DATABASE_URL: url }),
      logger: silentLogger(),
      baseEnv: { ...process.env },
    });
    try {
      expect(runtime.repos.location).toBe(url);
      const outcome = await runtime.engine.run(commandTask(repo.repo, `sh ${writeAgent(repo.root, 'a', AGENTS.correct)}`, { name: 'postgres-e2e' }));
      expect(outcome).toMatchObject({ state: 'succeeded', result: 'passed', iterations: 1 });
      const events = await runtime.repos.runs.listEvents(outcome.runId, { limit: 10_000 });
      expect(events.map((e) => e.seq)).toEqual(events.map((_, i) => i + 1));
      expect(events.at(-1)?.type).toBe('run_completed');
      expect(await sql(url, 'SELECT state FROM runs WHERE id = $1', [outcome.runId])).toEqual([{ state: 'succeeded' }]);
      expect((await runtime.repos.workOrders.get(outcome.workOrderId))?.status).toBe('succeeded');
      expect(await runtime.repos.iterations.list(outcome.runId)).toHaveLength(1);
    } finally {
      await runtime.close();
      repo.cleanup();
    }
  });

  describe('migrations', () => {
    it('applies each migration once when several processes open a new database at once', async () => {
      const url = await server.createDatabase();
      const stores = await Promise.all([open(url), open(url), open(url), open(url)]);
      expect(await sql(url, 'SELECT version, name FROM schema_migrations ORDER BY version')).toEqual(
        POSTGRES_MIGRATIONS.map((m) => ({ version: m.version, name: m.name })),
      );
      await Promise.all(stores.map((repos, i) => repos.workOrders.create(workOrderInput(`wo-${i}`))));
      expect((await stores[0]!.workOrders.list({ limit: 10, offset: 0 })).total).toBe(4);
      // Reopening an up-to-date database changes nothing.
      await open(url);
      expect(await sql(url, 'SELECT count(*)::int AS n FROM schema_migrations')).toEqual([{ n: POSTGRES_MIGRATIONS.length }]);
    });

    it('refuses a database written by a newer build with AG_ERR_STORE_MIGRATION', async () => {
      const url = await server.createDatabase();
      await (await open(url)).close();
      const newer = POSTGRES_MIGRATIONS.length + 5;
      await sql(url, "INSERT INTO schema_migrations (version, name) VALUES ($1, 'from the future')", [newer]);
      const error = await expectCode(openPostgresRepositories({ url }), 'AG_ERR_STORE_MIGRATION');
      expect(error.details).toMatchObject({ version: newer, supported: POSTGRES_MIGRATIONS.length });
    });

    it('rolls a failing migration back completely and names it, keeping the versions before it', async () => {
      const url = await server.createDatabase();
      const broken = { version: POSTGRES_MIGRATIONS.length + 1, name: 'broken', sql: 'CREATE TABLE half_done (a text); SELECT * FROM no_such_table' };
      const error = await expectCode(openPostgresRepositories({ url, migrations: [...POSTGRES_MIGRATIONS, broken] }), 'AG_ERR_STORE_MIGRATION');
      expect(error.details).toMatchObject({ version: broken.version, name: 'broken' });
      expect(error.cause).toMatchObject({ code: 'AG_ERR_STORE_WRITE', details: { pgCode: '42P01' } });
      expect(await sql(url, "SELECT to_regclass('half_done') AS t")).toEqual([{ t: null }]);
      expect(await sql(url, 'SELECT max(version) AS v FROM schema_migrations')).toEqual([{ v: POSTGRES_MIGRATIONS.length }]);
    });
  });

  describe('the store clock', () => {
    it('is the database clock by default: lease times come from the server', async () => {
      const url = await server.createDatabase();
      const repos = await open(url);
      const [{ ms: before }] = (await sql<{ ms: number }>(url, 'SELECT (extract(epoch from clock_timestamp()) * 1000)::float8 AS ms')) as [{ ms: number }];
      expect(await repos.leases.acquire({ key: 'k', owner: 'a', runId: 'run-1', ttlMs: 60_000 })).toBe(true);
      const [{ ms: after }] = (await sql<{ ms: number }>(url, 'SELECT (extract(epoch from clock_timestamp()) * 1000)::float8 AS ms')) as [{ ms: number }];
      const lease = await repos.leases.get('k');
      const heartbeat = Date.parse(lease!.heartbeatAt);
      expect(heartbeat).toBeGreaterThanOrEqual(Math.floor(before));
      expect(heartbeat).toBeLessThanOrEqual(Math.ceil(after));
      expect(Date.parse(lease!.expiresAt) - heartbeat).toBe(60_000);
      expect((await repos.leases.listLive()).map((l) => l.key)).toEqual(['k']);
    });

    it('is the injected clock when one is given: defaults, lease expiry and the fence use it', async () => {
      const clock = manualClock();
      const repos = await open(await server.createDatabase(), { clock: clock.now });
      await repos.runs.create({
        workOrder: workOrderInput('wo-1'),
        run: createRun({ id: 'run-1', workOrderId: 'wo-1', maxIterations: 3, createdAt: '2025-01-01T00:00:00.000Z' }),
        lease: { key: 'run:run-1', owner: 'owner-a', ttlMs: 60_000 },
      });
      const fence = { leaseKey: 'run:run-1', owner: 'owner-a' };
      clock.advance(59_999);
      const [event] = await repos.runs.appendEvents('run-1', [{ type: 'agent_output', data: {} }], fence);
      expect(event?.timestamp).toBe('2025-01-01T00:00:59.999Z');
      expect((await repos.workOrders.setStatus('wo-1', 'running')).event.timestamp).toBe('2025-01-01T00:00:59.999Z');
      clock.advance(1);
      expect((await repos.leases.listExpired()).map((lease) => lease.key)).toEqual(['run:run-1']);
      await expectCode(repos.runs.commit('run-1', { event: 'workspace_acquired', fence }), 'AG_ERR_LEASE_LOST');
      const committed = await repos.runs.commit('run-1', { event: 'workspace_acquired', fence: null });
      expect(committed.run.updatedAt).toBe('2025-01-01T00:01:00.000Z');
    });
  });

  describe('error translation', () => {
    it('reports a duplicate id as AG_ERR_STORE_CONFLICT carrying the pg error as cause', async () => {
      const repos = await open(await server.createDatabase());
      await repos.workOrders.create(workOrderInput('wo-1'));
      const error = await expectCode(repos.workOrders.create(workOrderInput('wo-1')), 'AG_ERR_STORE_CONFLICT');
      expect(error.cause).toBeInstanceOf(pg.DatabaseError);
      expect(error.details).toMatchObject({ pgCode: '23505', constraint: 'work_orders_pkey' });
    });

    it('reports a row lock held beyond the lock timeout as retryable AG_ERR_STORE_BUSY', async () => {
      const url = await server.createDatabase();
      const repos = await open(url, { lockTimeoutMs: 200 });
      await seedRun(repos);
      const holder = new pg.Client({ connectionString: url });
      await holder.connect();
      try {
        await holder.query('BEGIN');
        await holder.query("SELECT 1 FROM runs WHERE id = 'run-1' FOR UPDATE");
        const error = await expectCode(repos.runs.appendEvents('run-1', [{ type: 'agent_output', data: {} }], null), 'AG_ERR_STORE_BUSY');
        expect(error.retryable).toBe(true);
        expect(error.details).toMatchObject({ pgCode: '55P03' });
        await holder.query('ROLLBACK');
      } finally {
        await holder.end();
      }
      expect((await repos.runs.appendEvents('run-1', [{ type: 'agent_output', data: {} }], null))[0]?.seq).toBe(1);
    });

    it('refuses a text PostgreSQL cannot store (NUL) with AG_ERR_SCHEMA_INVALID, and stores an escaped NUL in JSON', async () => {
      const repos = await open(await server.createDatabase());
      await seedRun(repos);
      await expectCode(repos.runs.appendEvents('run-1', [{ type: 'bad\u0000type', data: {} }], null), 'AG_ERR_SCHEMA_INVALID');
      const [event] = await repos.runs.appendEvents('run-1', [{ type: 'agent_output', data: { text: 'a\u0000b' } }], null);
      expect(event).toMatchObject({ seq: 1, data: { text: 'a\u0000b' } });
      expect((await repos.runs.listEvents('run-1'))[0]?.data).toEqual({ text: 'a\u0000b' });
    });

    it('classifies SQLSTATEs by code, not message', () => {
      expect(classifyPostgresCode('23505')).toBe('AG_ERR_STORE_CONFLICT');
      expect(classifyPostgresCode('23503')).toBe('AG_ERR_STORE_CONFLICT');
      expect(classifyPostgresCode('40001')).toBe('AG_ERR_STORE_BUSY');
      expect(classifyPostgresCode('40P01')).toBe('AG_ERR_STORE_BUSY');
      expect(classifyPostgresCode('55P03')).toBe('AG_ERR_STORE_BUSY');
      expect(classifyPostgresCode('57P01')).toBe('AG_ERR_STORE_UNAVAILABLE');
      expect(classifyPostgresCode('08006')).toBe('AG_ERR_STORE_UNAVAILABLE');
      expect(classifyPostgresCode('53300')).toBe('AG_ERR_STORE_UNAVAILABLE');
      expect(classifyPostgresCode('25006')).toBe('AG_ERR_STORE_UNAVAILABLE');
      expect(classifyPostgresCode('53100')).toBe('AG_ERR_DISK_FULL');
      expect(classifyPostgresCode('28P01')).toBe('AG_ERR_STORE_OPEN');
      expect(classifyPostgresCode('3D000')).toBe('AG_ERR_STORE_OPEN');
      expect(classifyPostgresCode('22021')).toBe('AG_ERR_SCHEMA_INVALID');
      expect(classifyPostgresCode('XX000')).toBe('AG_ERR_STORE_WRITE');
    });

    it('refuses a URL that is not postgres:// without echoing it, and a missing database with AG_ERR_STORE_OPEN', async () => {
      const error = await expectCode(openPostgresRepositories({ url: 'mysql://user:s3cret@host/db' }), 'AG_ERR_CONFIG_INVALID');
      expect(error.message).not.toContain('s3cret');
      const missing = await expectCode(openPostgresRepositories({ url: `postgres://postgres:s3cret@127.0.0.1:${server.port}/no_such_db` }), 'AG_ERR_STORE_OPEN');
      expect(missing.details).toMatchObject({ pgCode: '3D000' });
    });

    it('closes idempotently and then refuses calls with AG_ERR_STORE_OPEN', async () => {
      const repos = await openPostgresRepositories({ url: await server.createDatabase() });
      expect(repos.location).toMatch(/^postgres:\/\/postgres@127\.0\.0\.1:\d+\/agentgate_test_\d+$/);
      const first = repos.close();
      expect(repos.close()).toBe(first);
      await first;
      await expectCode(repos.runs.get('run-1'), 'AG_ERR_STORE_OPEN');
      await expectCode(repos.runs.appendEvents('run-1', [], null), 'AG_ERR_STORE_OPEN');
    });
  });

  describe('when the server goes away', () => {
    it('fails calls with retryable AG_ERR_STORE_UNAVAILABLE while it is down, and the same repositories work again once it is back', async () => {
      const repos = await open(await server.createDatabase());
      await seedRun(repos);
      await repos.runs.appendEvents('run-1', [{ type: 'agent_output', data: { n: 1 } }], null);
      const reportedBefore = connectionErrors.length;
      await server.halt();
      try {
        for (const call of [repos.ping(), repos.runs.get('run-1'), repos.runs.appendEvents('run-1', [{ type: 'agent_output', data: { n: 2 } }], null)]) {
          const error = await rejection(call);
          expect(error).toBeInstanceOf(AgentGateError);
          expect(error).toMatchObject({ code: 'AG_ERR_STORE_UNAVAILABLE', retryable: true });
        }
      } finally {
        await server.start();
      }
      await repos.ping();
      const [event] = await repos.runs.appendEvents('run-1', [{ type: 'agent_output', data: { n: 3 } }], null);
      expect(event?.seq).toBe(2);
      // The pooled connection idle during the shutdown was reported (not thrown at nobody) and dropped.
      const reported = connectionErrors.slice(reportedBefore);
      expect(reported.length).toBeGreaterThan(0);
      expect(reported.map((error) => [error.code, error.retryable])).toEqual(reported.map(() => ['AG_ERR_STORE_UNAVAILABLE', true]));

      await server.restart();
      expect((await repos.runs.appendEvents('run-1', [{ type: 'agent_output', data: { n: 4 } }], null))[0]?.seq).toBe(3);
      expect((await repos.runs.get('run-1'))?.state).toBe('queued');
    });
  });

  describe('two processes sharing one queue', () => {
    it('claims each of 50 queued work orders exactly once when two pools race for all of them', async () => {
      const url = await server.createDatabase();
      const [one, two] = [await open(url, { pool: { max: 5 } }), await open(url, { pool: { max: 5 } })];
      const ids = Array.from({ length: 50 }, (_, i) => `wo-${String(i).padStart(2, '0')}`);
      for (const id of ids) await one.workOrders.create(workOrderInput(id));

      /** One worker: lists the queue, then tries to claim every work order in it, four at a time. */
      const worker = async (repos: PostgresRepositories, name: string): Promise<string[]> => {
        const queued = (await repos.workOrders.listQueued({ limit: 100, offset: 0 })).items.map((wo) => wo.id);
        const won: string[] = [];
        const lane = async (): Promise<void> => {
          for (let id = queued.shift(); id !== undefined; id = queued.shift()) {
            const runId = `${name}-${id}`;
            try {
              await repos.runs.create({
                run: createRun({ id: runId, workOrderId: id, maxIterations: 1, createdAt: new Date().toISOString() }),
                lease: { key: `run:${runId}`, owner: name, ttlMs: 60_000 },
                claim: true,
              });
              won.push(id);
            } catch (error) {
              if (!(error instanceof AgentGateError && error.code === 'AG_ERR_WORK_ORDER_CLAIMED')) throw error;
            }
          }
        };
        await Promise.all([lane(), lane(), lane(), lane()]);
        return won;
      };
      const [wonByOne, wonByTwo] = await Promise.all([worker(one, 'one'), worker(two, 'two')]);

      expect([...wonByOne, ...wonByTwo].sort()).toEqual(ids);
      expect((await one.workOrders.listQueued({ limit: 100, offset: 0 })).total).toBe(0);
      expect((await one.runs.list({ limit: 200, offset: 0 })).total).toBe(50);
      for (const id of ids) {
        const winner = wonByOne.includes(id) ? `one-${id}` : `two-${id}`;
        expect((await two.runs.list({ limit: 10, offset: 0, workOrderId: id })).items.map((run) => run.id)).toEqual([winner]);
        expect((await two.workOrders.listEvents(id)).map((e) => [e.seq, e.type, e.data])).toEqual([
          [1, 'work_order_created', { status: 'queued' }],
          [2, 'work_order_updated', { status: 'running', runId: winner }],
        ]);
      }
    });

    it('keeps event seqs gapless when two pools append to one run at once, fenced and unfenced', async () => {
      const url = await server.createDatabase();
      const [one, two] = [await open(url), await open(url)];
      const { fence } = await seedRun(one);
      // Unfenced writes lock no lease row: only the run row's lock orders them.
      const append = (repos: PostgresRepositories, writer: string, f: Fence | null) =>
        Promise.all(Array.from({ length: 60 }, (_, i) => repos.runs.appendEvents('run-1', [{ type: 'agent_output', data: { writer, i } }], f)));
      await Promise.all([append(one, 'one', fence), append(two, 'two', null)]);
      const events = await one.runs.listEvents('run-1', { limit: 1000 });
      expect(events.map((e) => e.seq)).toEqual(Array.from({ length: 120 }, (_, i) => i + 1));
      expect(new Set(events.map((e) => `${String(e.data['writer'])}-${String(e.data['i'])}`)).size).toBe(120);
    });
  });
});
