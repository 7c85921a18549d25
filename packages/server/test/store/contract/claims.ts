/**
 * The queue's primitives of the repository contract: `runs.create({ claim })` (exactly one worker gets a
 * queued work order) and `runs.create({ exclusiveKey })` (at most one unfinished run per repository and
 * branch). Concurrent calls are raced with Promise.all: SQLite serialises them, PostgreSQL runs them on
 * separate connections at once, and the outcome must be the same.
 */
import { describe, expect, it } from 'vitest';
import { AgentGateError } from '../../../src/errors.js';
import type { CreateRunInput, Repositories } from '../../../src/store/repositories.js';
import { HOUR, OWNER, expectCode, newRun, runLeaseKey, seedRun, workOrderInput } from './fixture.js';

const KEY = '/repos/app#main';

function createInput(runId: string, extra: Partial<CreateRunInput> = {}, workOrderId = 'wo-1'): CreateRunInput {
  return { run: newRun(runId, workOrderId), lease: { key: runLeaseKey(runId), owner: OWNER, ttlMs: HOUR, now: new Date() }, ...extra };
}

/** Settles every promise and sorts the outcomes: values, and the codes of the AgentGateErrors. */
async function settle<T>(promises: readonly Promise<T>[]): Promise<{ values: T[]; codes: string[] }> {
  const results = await Promise.allSettled(promises);
  const values: T[] = [];
  const codes: string[] = [];
  for (const result of results) {
    if (result.status === 'fulfilled') values.push(result.value);
    else if (result.reason instanceof AgentGateError) codes.push(result.reason.code);
    else throw result.reason;
  }
  return { values, codes };
}

async function workOrderFootprint(repos: Repositories, id: string) {
  return { workOrder: await repos.workOrders.get(id), events: await repos.workOrders.listEvents(id), runs: await repos.runs.list({ limit: 100, offset: 0, workOrderId: id }) };
}

export function describeClaimsContract(repositories: () => Repositories): void {
  describe('claiming a queued work order (runs.create with claim)', () => {
    it('creates the run and sets the work order running with work_order_updated { status, runId }, in one call', async () => {
      const repos = repositories();
      await repos.workOrders.create(workOrderInput('wo-1', '2025-01-01T00:00:00.000Z'));
      const created = await repos.runs.create(createInput('run-1', { claim: true }));
      expect(created.run).toMatchObject({ id: 'run-1', workOrderId: 'wo-1', state: 'queued', version: 1 });
      expect(created.workOrderEvent).toBeNull();
      expect(created.workOrderEvents).toEqual([
        { seq: 2, workOrderId: 'wo-1', type: 'work_order_updated', timestamp: expect.any(String), data: { status: 'running', runId: 'run-1' } },
      ]);
      expect(await repos.workOrders.get('wo-1')).toMatchObject({ status: 'running', updatedAt: created.workOrderEvents[0]?.timestamp });
      expect(await repos.workOrders.listEvents('wo-1')).toEqual([expect.objectContaining({ seq: 1, type: 'work_order_created' }), created.workOrderEvents[0]]);
      expect(await repos.leases.get(runLeaseKey('run-1'))).toMatchObject({ owner: OWNER, runId: 'run-1' });
    });

    it('creates and claims a new work order together: work_order_created, then work_order_updated', async () => {
      const repos = repositories();
      const created = await repos.runs.create(createInput('run-1', { claim: true, workOrder: workOrderInput('wo-1') }));
      expect(created.workOrderEvent).toMatchObject({ seq: 1, type: 'work_order_created', data: { status: 'queued' } });
      expect(created.workOrderEvents.map((e) => [e.seq, e.type, e.data])).toEqual([
        [1, 'work_order_created', { status: 'queued' }],
        [2, 'work_order_updated', { status: 'running', runId: 'run-1' }],
      ]);
      expect((await repos.workOrders.get('wo-1'))?.status).toBe('running');
      expect(await repos.workOrders.listQueued({ limit: 10, offset: 0 })).toEqual({ items: [], total: 0 });
    });

    it('reports no work-order events for a plain create of a run of an existing work order', async () => {
      const repos = repositories();
      await repos.workOrders.create(workOrderInput('wo-1'));
      expect((await repos.runs.create(createInput('run-1'))).workOrderEvents).toEqual([]);
      expect((await repos.workOrders.get('wo-1'))?.status).toBe('queued');
    });

    for (const status of ['running', 'canceled', 'succeeded'] as const) {
      it(`refuses a work order that is ${status} with AG_ERR_WORK_ORDER_CLAIMED (not retryable), writing nothing`, async () => {
        const repos = repositories();
        await repos.workOrders.create(workOrderInput('wo-1'));
        await repos.workOrders.setStatus('wo-1', status);
        const before = await workOrderFootprint(repos, 'wo-1');
        const error = await expectCode(repos.runs.create(createInput('run-1', { claim: true })), 'AG_ERR_WORK_ORDER_CLAIMED');
        expect(error.retryable).toBe(false);
        expect(error.details).toMatchObject({ workOrderId: 'wo-1', status, runId: 'run-1' });
        expect(await workOrderFootprint(repos, 'wo-1')).toEqual(before);
        expect(await repos.runs.get('run-1')).toBeNull();
        expect(await repos.leases.get(runLeaseKey('run-1'))).toBeNull();
      });
    }

    it('refuses to claim an unknown work order with AG_ERR_WORK_ORDER_NOT_FOUND', async () => {
      const repos = repositories();
      await expectCode(repos.runs.create(createInput('run-1', { claim: true })), 'AG_ERR_WORK_ORDER_NOT_FOUND');
      expect(await repos.leases.get(runLeaseKey('run-1'))).toBeNull();
    });

    it('leaves the work order queued when the run cannot be created after the claim (lease held, duplicate run id)', async () => {
      const repos = repositories();
      await seedRun(repos, 'run-0', { workOrderId: 'wo-0' });
      await repos.workOrders.create(workOrderInput('wo-1'));
      await repos.leases.acquire({ key: runLeaseKey('run-1'), owner: 'owner-b', runId: 'run-1', ttlMs: HOUR, now: new Date() });
      const before = await workOrderFootprint(repos, 'wo-1');
      await expectCode(repos.runs.create(createInput('run-1', { claim: true })), 'AG_ERR_LEASE_HELD');
      await expectCode(repos.runs.create({ ...createInput('run-0', { claim: true }), lease: { key: 'other', owner: OWNER, ttlMs: HOUR } }), 'AG_ERR_STORE_CONFLICT');
      expect(await workOrderFootprint(repos, 'wo-1')).toEqual(before);
      expect(await repos.leases.get('other')).toBeNull();
    });

    it('lets exactly one of two concurrent claims of one work order win; the other gets AG_ERR_WORK_ORDER_CLAIMED', async () => {
      const repos = repositories();
      await repos.workOrders.create(workOrderInput('wo-1'));
      const { values, codes } = await settle([repos.runs.create(createInput('run-a', { claim: true })), repos.runs.create(createInput('run-b', { claim: true }))]);
      expect(values).toHaveLength(1);
      expect(codes).toEqual(['AG_ERR_WORK_ORDER_CLAIMED']);
      const winner = values[0]!.run.id;
      const { runs, events } = await workOrderFootprint(repos, 'wo-1');
      expect(runs.items.map((run) => run.id)).toEqual([winner]);
      expect(events.map((e) => [e.seq, e.type, e.data])).toEqual([
        [1, 'work_order_created', { status: 'queued' }],
        [2, 'work_order_updated', { status: 'running', runId: winner }],
      ]);
      const loser = winner === 'run-a' ? 'run-b' : 'run-a';
      expect(await repos.runs.get(loser)).toBeNull();
      expect(await repos.leases.get(runLeaseKey(loser))).toBeNull();
    });
  });

  describe('exclusive keys (runs.create with exclusiveKey)', () => {
    it('refuses a second unfinished run with the same key with retryable AG_ERR_RUN_EXCLUSIVE_BUSY, writing nothing', async () => {
      const repos = repositories();
      await repos.runs.create(createInput('run-1', { workOrder: workOrderInput('wo-1'), exclusiveKey: KEY }));
      await repos.workOrders.create(workOrderInput('wo-2'));
      const before = await workOrderFootprint(repos, 'wo-2');
      const error = await expectCode(repos.runs.create(createInput('run-2', { claim: true, exclusiveKey: KEY }, 'wo-2')), 'AG_ERR_RUN_EXCLUSIVE_BUSY');
      expect(error.retryable).toBe(true);
      expect(error.details).toMatchObject({ exclusiveKey: KEY, runId: 'run-2' });
      // The claim made in the same call is undone too: the work order is still queued for a later try.
      expect(await workOrderFootprint(repos, 'wo-2')).toEqual(before);
      expect(await repos.runs.get('run-2')).toBeNull();
      expect(await repos.leases.get(runLeaseKey('run-2'))).toBeNull();
      expect((await repos.runs.create(createInput('run-3', { exclusiveKey: '/repos/app#other' }, 'wo-2'))).run.id).toBe('run-3');
      expect((await repos.runs.create(createInput('run-4', {}, 'wo-2'))).run.id).toBe('run-4');
    });

    it('frees the key once its run is terminal, and only then', async () => {
      const repos = repositories();
      await repos.runs.create(createInput('run-1', { workOrder: workOrderInput('wo-1'), exclusiveKey: KEY }));
      await repos.runs.commit('run-1', { event: 'workspace_acquired', fence: null });
      await expectCode(repos.runs.create(createInput('run-2', { exclusiveKey: KEY })), 'AG_ERR_RUN_EXCLUSIVE_BUSY');
      await repos.runs.commit('run-1', { event: 'user_canceled', fence: null, closing: { type: 'run_canceled', data: {} } });
      expect((await repos.runs.create(createInput('run-2', { exclusiveKey: KEY }))).run.id).toBe('run-2');
      await expectCode(repos.runs.create(createInput('run-3', { exclusiveKey: KEY })), 'AG_ERR_RUN_EXCLUSIVE_BUSY');
    });

    it('lets exactly one of concurrent creates with the same key through', async () => {
      const repos = repositories();
      await repos.workOrders.create(workOrderInput('wo-1'));
      const ids = ['run-a', 'run-b', 'run-c', 'run-d', 'run-e'];
      const { values, codes } = await settle(ids.map((id) => repos.runs.create(createInput(id, { exclusiveKey: KEY }))));
      expect(values).toHaveLength(1);
      expect(codes).toEqual(Array.from({ length: ids.length - 1 }, () => 'AG_ERR_RUN_EXCLUSIVE_BUSY'));
      expect((await repos.runs.list({ limit: 10, offset: 0 })).items.map((run) => run.id)).toEqual([values[0]!.run.id]);
    });
  });
}
