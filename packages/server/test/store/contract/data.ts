/** The data part of the repository contract: work orders, runs, run events and iterations. */
import { describe, expect, it } from 'vitest';
import type { Repositories } from '../../../src/store/repositories.js';
import {
  HOUR,
  OWNER,
  expectCode,
  expectGapless,
  fullIterationRecord,
  newRun,
  runLeaseKey,
  seedRun,
  workOrderInput,
  type RepositoryContractOptions,
} from './fixture.js';

const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

export function describeDataContract(repositories: () => Repositories, options: RepositoryContractOptions): void {
  describe('work orders', () => {
    it('creates a work order with its work_order_created event and reads it back', async () => {
      const repos = repositories();
      const { workOrder, event } = await repos.workOrders.create({ ...workOrderInput('wo-1'), createdAt: '2025-01-01T00:00:00.000Z' });
      expect(workOrder).toEqual({
        id: 'wo-1',
        status: 'queued',
        source: 'task_spec',
        spec: { prompt: 'fix the failing test', maxIterations: 3 },
        request: { taskPrompt: 'fix the failing test' },
        createdAt: '2025-01-01T00:00:00.000Z',
        updatedAt: '2025-01-01T00:00:00.000Z',
      });
      expect(event).toEqual({ seq: 1, workOrderId: 'wo-1', type: 'work_order_created', timestamp: '2025-01-01T00:00:00.000Z', data: { status: 'queued' } });
      expect(await repos.workOrders.get('wo-1')).toEqual(workOrder);
      expect(await repos.workOrders.listEvents('wo-1')).toEqual([event]);
      expect(await repos.workOrders.get('missing')).toBeNull();
    });

    it('refuses a duplicate id with AG_ERR_STORE_CONFLICT and keeps one creation event', async () => {
      const repos = repositories();
      await repos.workOrders.create(workOrderInput('wo-1'));
      await expectCode(repos.workOrders.create(workOrderInput('wo-1')), 'AG_ERR_STORE_CONFLICT');
      expect(await repos.workOrders.lastSeq('wo-1')).toBe(1);
    });

    it('lists newest first with total, limit, offset and a status filter', async () => {
      const repos = repositories();
      for (let i = 1; i <= 5; i += 1) await repos.workOrders.create(workOrderInput(`wo-${i}`, `2025-01-01T00:00:0${i}.000Z`));
      await repos.workOrders.setStatus('wo-2', 'running');
      await repos.workOrders.setStatus('wo-4', 'running');

      const page = await repos.workOrders.list({ limit: 2, offset: 1 });
      expect(page.total).toBe(5);
      expect(page.items.map((w) => w.id)).toEqual(['wo-4', 'wo-3']);
      expect(await repos.workOrders.list({ limit: 10, offset: 0, status: 'running' })).toMatchObject({
        total: 2,
        items: [{ id: 'wo-4', status: 'running' }, { id: 'wo-2', status: 'running' }],
      });
      expect((await repos.workOrders.list({ limit: 0, offset: 0 })).items).toEqual([]);
      await expectCode(repos.workOrders.list({ limit: -1, offset: 0 }), 'AG_ERR_SCHEMA_INVALID');
    });

    it('sets the status and appends work_order_updated { status, ...data } with gapless seqs', async () => {
      const repos = repositories();
      await repos.workOrders.create(workOrderInput('wo-1', '2025-01-01T00:00:00.000Z'));
      const running = await repos.workOrders.setStatus('wo-1', 'running', { runId: 'run-1' }, '2025-01-01T00:00:05.000Z');
      expect(running.workOrder).toMatchObject({ status: 'running', createdAt: '2025-01-01T00:00:00.000Z', updatedAt: '2025-01-01T00:00:05.000Z' });
      expect(running.event).toEqual({
        seq: 2,
        workOrderId: 'wo-1',
        type: 'work_order_updated',
        timestamp: '2025-01-01T00:00:05.000Z',
        data: { status: 'running', runId: 'run-1' },
      });
      const failed = await repos.workOrders.setStatus('wo-1', 'failed', { runId: 'run-1', reason: 'gates failed' });
      expect(failed.event).toMatchObject({ seq: 3, data: { status: 'failed', runId: 'run-1', reason: 'gates failed' } });
      expect(failed.event.timestamp).toMatch(ISO);
      expect((await repos.workOrders.get('wo-1'))?.status).toBe('failed');
      expect((await repos.workOrders.listEvents('wo-1', { afterSeq: 1, limit: 1 })).map((e) => e.seq)).toEqual([2]);
      expect(await repos.workOrders.lastSeq('wo-1')).toBe(3);
    });

    it('lists queued work orders next first: by the time they were queued, ties in creation order', async () => {
      const repos = repositories();
      const t0 = '2025-01-01T00:00:00.000Z';
      for (const id of ['wo-c', 'wo-a', 'wo-d', 'wo-b']) await repos.workOrders.create(workOrderInput(id, t0));
      // wo-c ran and was queued again later: it goes behind the others.
      await repos.workOrders.setStatus('wo-c', 'running', {}, '2025-01-01T00:00:01.000Z');
      await repos.workOrders.setStatus('wo-c', 'queued', { reason: 'run_again' }, '2025-01-01T00:00:02.000Z');
      await repos.workOrders.setStatus('wo-d', 'canceled', {}, '2025-01-01T00:00:01.000Z');

      const all = await repos.workOrders.listQueued({ limit: 10, offset: 0 });
      expect(all.total).toBe(3);
      expect(all.items.map((w) => w.id)).toEqual(['wo-a', 'wo-b', 'wo-c']);
      expect(all.items.every((w) => w.status === 'queued')).toBe(true);
      const page = await repos.workOrders.listQueued({ limit: 1, offset: 1 });
      expect(page).toMatchObject({ total: 3, items: [{ id: 'wo-b' }] });
      await expectCode(repos.workOrders.listQueued({ limit: -1, offset: 0 }), 'AG_ERR_SCHEMA_INVALID');
    });

    it('reports an unknown work order as AG_ERR_WORK_ORDER_NOT_FOUND, with an empty log', async () => {
      const repos = repositories();
      await expectCode(repos.workOrders.setStatus('nope', 'failed'), 'AG_ERR_WORK_ORDER_NOT_FOUND');
      expect(await repos.workOrders.listEvents('nope')).toEqual([]);
      expect(await repos.workOrders.lastSeq('nope')).toBe(0);
    });
  });

  describe('runs', () => {
    it('creates work order, its event, run and lease together and returns the run at version 1', async () => {
      const repos = repositories();
      const run = newRun('run-1');
      const created = await repos.runs.create({
        workOrder: workOrderInput('wo-1'),
        run,
        meta: { branch: 'agentgate/run-1', data: { workspacePath: '/tmp/w' } },
        lease: { key: runLeaseKey('run-1'), owner: OWNER, ttlMs: HOUR },
      });
      expect(created.run).toEqual({ ...run, branch: 'agentgate/run-1', meta: { workspacePath: '/tmp/w' }, version: 1 });
      expect(created.workOrderEvent).toMatchObject({ seq: 1, workOrderId: 'wo-1', type: 'work_order_created', data: { status: 'queued' } });
      expect(await repos.runs.get('run-1')).toEqual(created.run);
      expect(await repos.workOrders.get('wo-1')).toMatchObject({ id: 'wo-1', status: 'queued' });
      expect(await repos.leases.get(runLeaseKey('run-1'))).toMatchObject({ owner: OWNER, runId: 'run-1' });
      expect(await repos.runs.get('missing')).toBeNull();
    });

    it('adds a run to an existing work order without a second creation event', async () => {
      const repos = repositories();
      await seedRun(repos, 'run-1');
      const again = await repos.runs.create({ workOrder: workOrderInput('wo-1'), run: newRun('run-2'), lease: { key: runLeaseKey('run-2'), owner: OWNER, ttlMs: HOUR } });
      expect(again.workOrderEvent).toBeNull();
      expect(again.run).toMatchObject({ id: 'run-2', branch: null, meta: {} });
      const bare = await repos.runs.create({ run: newRun('run-3'), lease: { key: runLeaseKey('run-3'), owner: OWNER, ttlMs: HOUR } });
      expect(bare.workOrderEvent).toBeNull();
      expect(await repos.workOrders.lastSeq('wo-1')).toBe(1);
    });

    it('refuses a run of an unknown work order, and a duplicate run id, writing nothing', async () => {
      const repos = repositories();
      await expectCode(
        repos.runs.create({ run: newRun('run-1', 'nope'), lease: { key: runLeaseKey('run-1'), owner: OWNER, ttlMs: HOUR } }),
        'AG_ERR_WORK_ORDER_NOT_FOUND',
      );
      expect(await repos.leases.get(runLeaseKey('run-1'))).toBeNull();
      await seedRun(repos, 'run-1');
      await expectCode(
        repos.runs.create({ run: newRun('run-1'), lease: { key: 'other-key', owner: OWNER, ttlMs: HOUR } }),
        'AG_ERR_STORE_CONFLICT',
      );
      expect(await repos.leases.get('other-key')).toBeNull();
    });

    it('lists by work order and by state, newest first, with totals; non-terminal runs oldest first', async () => {
      const repos = repositories();
      await seedRun(repos, 'run-a', { workOrderId: 'wo-1', createdAt: '2025-01-01T00:00:01.000Z' });
      await seedRun(repos, 'run-b', { workOrderId: 'wo-1', createdAt: '2025-01-01T00:00:02.000Z' });
      await seedRun(repos, 'run-c', { workOrderId: 'wo-2', createdAt: '2025-01-01T00:00:03.000Z' });
      await seedRun(repos, 'run-d', { workOrderId: 'wo-2', createdAt: '2025-01-01T00:00:04.000Z' });
      await repos.runs.commit('run-b', { event: 'workspace_acquired', fence: null });
      await repos.runs.commit('run-d', { event: 'user_canceled', fence: null, closing: { type: 'run_canceled', data: {} } });

      const all = await repos.runs.list({ limit: 10, offset: 0 });
      expect(all.items.map((r) => r.id)).toEqual(['run-d', 'run-c', 'run-b', 'run-a']);
      expect(await repos.runs.list({ limit: 10, offset: 0, workOrderId: 'wo-1' })).toMatchObject({ total: 2, items: [{ id: 'run-b' }, { id: 'run-a' }] });
      expect((await repos.runs.list({ limit: 10, offset: 0, state: 'queued' })).items.map((r) => r.id)).toEqual(['run-c', 'run-a']);
      expect(await repos.runs.list({ limit: 1, offset: 0, workOrderId: 'wo-1', state: 'leased' })).toMatchObject({ total: 1, items: [{ id: 'run-b' }] });
      expect(await repos.runs.list({ limit: 1, offset: 1 })).toMatchObject({ total: 4, items: [{ id: 'run-c' }] });
      expect((await repos.runs.listNonTerminal()).map((r) => [r.id, r.state])).toEqual([
        ['run-a', 'queued'],
        ['run-b', 'leased'],
        ['run-c', 'queued'],
      ]);
    });

    it('merges metadata patches, drops keys set to undefined, and bumps the version', async () => {
      const repos = repositories();
      const { fence } = await seedRun(repos);
      await repos.runs.updateMeta('run-1', { prUrl: 'https://example.test/pr/1', warnings: ['dirty tree'] }, fence);
      const updated = await repos.runs.updateMeta('run-1', { unverified: true, warnings: undefined }, null);
      expect(updated.meta).toEqual({ prUrl: 'https://example.test/pr/1', unverified: true });
      expect(updated.version).toBe(3);
      await expectCode(repos.runs.updateMeta('missing', {}, null), 'AG_ERR_RUN_NOT_FOUND');
    });
  });

  describe('run events', () => {
    it('numbers events 1, 2, 3 per run with the run envelope', async () => {
      const repos = repositories();
      const { fence } = await seedRun(repos, 'run-1');
      await seedRun(repos, 'run-2');
      const [first] = await repos.runs.appendEvents('run-1', [{ type: 'run_started', data: { iteration: 1 } }], fence);
      expect(first).toMatchObject({ seq: 1, runId: 'run-1', workOrderId: 'wo-1', type: 'run_started', data: { iteration: 1 } });
      expect(first?.timestamp).toMatch(ISO);
      expect((await repos.runs.appendEvents('run-2', [{ type: 'run_started', data: {} }], null))[0]?.seq).toBe(1);
      const batch = await repos.runs.appendEvents(
        'run-1',
        [
          { type: 'agent_output', data: { text: 'a' }, timestamp: '2030-01-01T00:00:00.000Z' },
          { type: 'agent_output', data: { text: 'b' } },
        ],
        fence,
      );
      expect(batch.map((e) => e.seq)).toEqual([2, 3]);
      expect(batch[0]?.timestamp).toBe('2030-01-01T00:00:00.000Z');
      expect(await repos.runs.appendEvents('run-1', [], fence)).toEqual([]);
      expect(await repos.runs.lastSeq('run-1')).toBe(3);
      expect(await repos.runs.lastSeq('run-2')).toBe(1);
      expect(await repos.runs.lastSeq('missing')).toBe(0);
      expect(await repos.runs.listEvents('run-1')).toEqual([first, ...batch]);
    });

    it('pages with afterSeq and limit, in seq order', async () => {
      const repos = repositories();
      const { fence } = await seedRun(repos);
      await repos.runs.appendEvents('run-1', Array.from({ length: 10 }, (_, i) => ({ type: 'agent_output', data: { i } })), fence);
      expect((await repos.runs.listEvents('run-1', { afterSeq: 3, limit: 4 })).map((e) => e.seq)).toEqual([4, 5, 6, 7]);
      expect(await repos.runs.listEvents('run-1', { afterSeq: 10 })).toEqual([]);
      expect((await repos.runs.listEvents('run-1')).length).toBe(10);
      await expectCode(repos.runs.listEvents('run-1', { afterSeq: -1 }), 'AG_ERR_SCHEMA_INVALID');
    });

    it('keeps seqs gapless and unique under appends raced with Promise.all', async () => {
      const repos = repositories();
      const { fence } = await seedRun(repos, 'run-1');
      await seedRun(repos, 'run-2');
      const n = options.concurrentAppends ?? 40;
      await Promise.all(
        Array.from({ length: n }, (_, i) =>
          i % 4 === 3
            ? repos.runs.appendEvents('run-2', [{ type: 'agent_output', data: { i } }], null)
            : repos.runs.appendEvents('run-1', [{ type: 'agent_output', data: { i, part: 0 } }, { type: 'agent_output', data: { i, part: 1 } }], fence),
        ),
      );
      const run1 = await repos.runs.listEvents('run-1', { limit: 10 * n });
      const run2 = await repos.runs.listEvents('run-2', { limit: 10 * n });
      expectGapless(run1);
      expectGapless(run2);
      expect(run2.length).toBe(Math.floor(n / 4));
      expect(run1.length).toBe(2 * (n - Math.floor(n / 4)));
      // A batch is one transaction: its two events are adjacent.
      for (let k = 0; k < run1.length; k += 2) expect(run1[k + 1]?.data).toEqual({ ...run1[k]?.data, part: 1 });
    });

    it('refuses events of an unknown run, payloads that are not JSON objects, and commit-only types, writing nothing', async () => {
      const repos = repositories();
      const { fence } = await seedRun(repos);
      await expectCode(repos.runs.appendEvents('missing', [{ type: 'agent_output', data: {} }], null), 'AG_ERR_RUN_NOT_FOUND');
      const cyclic: Record<string, unknown> = {};
      cyclic['self'] = cyclic;
      const good = { type: 'agent_output', data: {} };
      await expectCode(repos.runs.appendEvents('run-1', [good, { type: 'agent_output', data: cyclic }], fence), 'AG_ERR_SCHEMA_INVALID');
      await expectCode(repos.runs.appendEvents('run-1', [good, { type: 'agent_output', data: ['not', 'an', 'object'] }], fence), 'AG_ERR_SCHEMA_INVALID');
      for (const type of ['run_state_changed', 'run_completed', 'run_failed', 'run_canceled']) {
        await expectCode(repos.runs.appendEvents('run-1', [good, { type, data: {} }], fence), 'AG_ERR_INTERNAL');
      }
      expect(await repos.runs.lastSeq('run-1')).toBe(0);
    });
  });

  describe('iterations', () => {
    it('round-trips a typed record with every part, upserts by iteration and lists in order', async () => {
      const repos = repositories();
      const { fence } = await seedRun(repos);
      const record = fullIterationRecord();
      await repos.iterations.save({ runId: 'run-1', iteration: 2, record: { agent: record.agent }, startedAt: '2025-01-01T00:01:00.000Z', completedAt: null }, fence);
      const first = await repos.iterations.save({ runId: 'run-1', iteration: 1, record, startedAt: '2025-01-01T00:00:00.000Z', completedAt: '2025-01-01T00:00:30.000Z' }, fence);
      expect(first).toEqual({ runId: 'run-1', iteration: 1, record, startedAt: '2025-01-01T00:00:00.000Z', completedAt: '2025-01-01T00:00:30.000Z' });
      const replaced = await repos.iterations.save(
        { runId: 'run-1', iteration: 2, record: { ...record, snapshot: { ...record.snapshot!, iteration: 2 } }, startedAt: '2025-01-01T00:01:00.000Z', completedAt: '2025-01-01T00:01:30.000Z' },
        null,
      );
      expect(replaced.completedAt).toBe('2025-01-01T00:01:30.000Z');
      const listed = await repos.iterations.list('run-1');
      expect(listed.map((i) => [i.iteration, i.record.snapshot?.iteration, i.completedAt])).toEqual([
        [1, 1, '2025-01-01T00:00:30.000Z'],
        [2, 2, '2025-01-01T00:01:30.000Z'],
      ]);
      expect(listed[0]).toEqual(first);
      expect(listed[1]?.record.verification?.gates[0]?.diagnostics[0]?.tool).toBe('vitest');
      expect(await repos.iterations.list('missing')).toEqual([]);
    });

    it('refuses an unknown run and an iteration below 1', async () => {
      const repos = repositories();
      const { fence } = await seedRun(repos);
      await expectCode(repos.iterations.save({ runId: 'missing', iteration: 1, record: {}, startedAt: '2025-01-01T00:00:00.000Z', completedAt: null }, null), 'AG_ERR_RUN_NOT_FOUND');
      await expectCode(repos.iterations.save({ runId: 'run-1', iteration: 0, record: {}, startedAt: '2025-01-01T00:00:00.000Z', completedAt: null }, fence), 'AG_ERR_SCHEMA_INVALID');
      expect(await repos.iterations.list('run-1')).toEqual([]);
    });
  });
}
