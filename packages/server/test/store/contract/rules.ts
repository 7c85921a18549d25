/**
 * The rules the store enforces itself (repositories.ts): the commit point, terminal finality, fencing,
 * and atomic run creation.
 */
import { describe, expect, it } from 'vitest';
import { InvalidTransitionError, type RunEvent } from '../../../src/orchestrator/state-machine.js';
import type { Fence, Repositories } from '../../../src/store/repositories.js';
import { HOUR, OWNER, expectCode, fenceOf, newRun, rejection, runFootprint, runLeaseKey, seedRun, workOrderInput } from './fixture.js';

const AT = '2025-02-02T00:00:00.000Z';

/** One write of each kind a run's owner makes, with the given fence. */
function writesOfEveryKind(repos: Repositories, fence: Fence | null): Array<[string, () => Promise<unknown>]> {
  return [
    ['commit', () => repos.runs.commit('run-1', { event: 'system_error', fence, closing: { type: 'run_failed', data: {} } })],
    ['appendEvents', () => repos.runs.appendEvents('run-1', [{ type: 'agent_output', data: { text: 'late' } }], fence)],
    ['updateMeta', () => repos.runs.updateMeta('run-1', { prUrl: 'https://example.test/late' }, fence)],
    ['iterations.save', () => repos.iterations.save({ runId: 'run-1', iteration: 1, record: {}, startedAt: AT, completedAt: null }, fence)],
  ];
}

export function describeRulesContract(repositories: () => Repositories): void {
  describe('commit', () => {
    it('writes the new run state and its run_state_changed event together, bumping the version', async () => {
      const repos = repositories();
      const { fence } = await seedRun(repos);
      const { run, events } = await repos.runs.commit('run-1', { event: 'workspace_acquired', fence, at: '2025-01-01T00:00:01.500Z' });
      expect(run).toMatchObject({ state: 'leased', iteration: 1, version: 2, updatedAt: '2025-01-01T00:00:01.500Z', completedAt: null });
      expect(events).toEqual([
        {
          seq: 1,
          runId: 'run-1',
          workOrderId: 'wo-1',
          type: 'run_state_changed',
          timestamp: '2025-01-01T00:00:01.500Z',
          data: { from: 'queued', event: 'workspace_acquired', to: 'leased', iteration: 1 },
        },
      ]);
      expect(await repos.runs.get('run-1')).toEqual(run);
      expect(await repos.runs.listEvents('run-1')).toEqual(events);
    });

    it('advances the iteration on feedback_generated', async () => {
      const repos = repositories();
      const { fence } = await seedRun(repos);
      const steps: RunEvent[] = ['workspace_acquired', 'build_started', 'build_completed', 'snapshot_completed', 'verify_failed_retryable'];
      for (const event of steps) await repos.runs.commit('run-1', { event, fence });
      const { run, events } = await repos.runs.commit('run-1', { event: 'feedback_generated', fence });
      expect(run).toMatchObject({ state: 'building', iteration: 2, version: 7 });
      expect(events[0]?.data).toMatchObject({ from: 'feedback', to: 'building', iteration: 2 });
    });

    it('throws InvalidTransitionError for an event the table does not allow, writing nothing', async () => {
      const repos = repositories();
      const { fence } = await seedRun(repos);
      await repos.runs.commit('run-1', { event: 'workspace_acquired', fence });
      const before = await runFootprint(repos, 'run-1');
      const error = await rejection(repos.runs.commit('run-1', { event: 'ci_passed', fence }));
      expect(error).toBeInstanceOf(InvalidTransitionError);
      expect(error).toMatchObject({ code: 'AG_ERR_RUN_INVALID_TRANSITION', from: 'leased', event: 'ci_passed' });
      expect(await runFootprint(repos, 'run-1')).toEqual(before);
    });

    it('fails a stale expectedVersion with AG_ERR_STORE_CONFLICT, writing nothing', async () => {
      const repos = repositories();
      const { run: read, fence } = await seedRun(repos);
      await repos.runs.updateMeta('run-1', { workspacePath: '/tmp/w' }, fence);
      const before = await runFootprint(repos, 'run-1');
      await expectCode(repos.runs.commit('run-1', { event: 'workspace_acquired', fence, expectedVersion: read.version }), 'AG_ERR_STORE_CONFLICT');
      expect(await runFootprint(repos, 'run-1')).toEqual(before);
      expect((await repos.runs.commit('run-1', { event: 'workspace_acquired', fence, expectedVersion: 2 })).run.version).toBe(3);
    });

    it('reports an unknown run as AG_ERR_RUN_NOT_FOUND', async () => {
      const repos = repositories();
      await expectCode(repos.runs.commit('missing', { event: 'workspace_acquired', fence: null }), 'AG_ERR_RUN_NOT_FOUND');
    });
  });

  describe('terminal is final', () => {
    it('writes run row, run_state_changed and the closing event in one commit', async () => {
      const repos = repositories();
      const { fence } = await seedRun(repos);
      await repos.runs.commit('run-1', { event: 'workspace_acquired', fence });
      await repos.runs.commit('run-1', { event: 'build_started', fence });
      const error = { code: 'AG_ERR_PHASE_BUILD_AGENT_CRASH', message: 'agent exited 1', phase: 'build', iteration: 1 };
      const { run, events } = await repos.runs.commit('run-1', {
        event: 'build_failed',
        fence,
        error,
        at: AT,
        closing: { type: 'run_failed', data: { result: 'failed_build', error } },
      });
      expect(run).toMatchObject({ state: 'failed', result: 'failed_build', error, completedAt: AT, version: 4 });
      expect(events.map((e) => [e.seq, e.type, e.timestamp])).toEqual([
        [3, 'run_state_changed', AT],
        [4, 'run_failed', AT],
      ]);
      expect(events[0]?.data).toEqual({ from: 'building', event: 'build_failed', to: 'failed', iteration: 1, result: 'failed_build', error });
      expect(events[1]?.data).toEqual({ result: 'failed_build', error });
      const stored = await repos.runs.listEvents('run-1');
      expect(stored.at(-1)).toEqual(events[1]);
    });

    it('refuses a commit into a terminal state without its closing event, or with the wrong one, writing nothing', async () => {
      const repos = repositories();
      const { fence } = await seedRun(repos);
      const before = await runFootprint(repos, 'run-1');
      await expectCode(repos.runs.commit('run-1', { event: 'user_canceled', fence }), 'AG_ERR_INTERNAL');
      await expectCode(repos.runs.commit('run-1', { event: 'user_canceled', fence, closing: { type: 'run_failed', data: {} } }), 'AG_ERR_INTERNAL');
      expect(await runFootprint(repos, 'run-1')).toEqual(before);
      const { events } = await repos.runs.commit('run-1', { event: 'user_canceled', fence, closing: { type: 'run_canceled', data: { reason: 'user' } } });
      expect(events.map((e) => e.type)).toEqual(['run_state_changed', 'run_canceled']);
    });

    it('refuses a closing event on a commit that does not end the run, writing nothing', async () => {
      const repos = repositories();
      const { fence } = await seedRun(repos);
      const before = await runFootprint(repos, 'run-1');
      await expectCode(repos.runs.commit('run-1', { event: 'workspace_acquired', fence, closing: { type: 'run_completed', data: {} } }), 'AG_ERR_INTERNAL');
      expect(await runFootprint(repos, 'run-1')).toEqual(before);
    });

    it('refuses every kind of write once the run is terminal, fenced or not, writing nothing', async () => {
      const repos = repositories();
      const { fence } = await seedRun(repos);
      await repos.runs.commit('run-1', { event: 'user_canceled', fence, closing: { type: 'run_canceled', data: {} } });
      const before = await runFootprint(repos, 'run-1');
      for (const f of [fence, null]) {
        for (const [, write] of writesOfEveryKind(repos, f)) await expectCode(write(), 'AG_ERR_RUN_ALREADY_TERMINAL');
      }
      expect(await runFootprint(repos, 'run-1')).toEqual(before);
      expect(before.events.at(-1)?.type).toBe('run_canceled');
    });
  });

  describe('fencing', () => {
    it('accepts every kind of write from the owner holding the live lease', async () => {
      const repos = repositories();
      const { fence } = await seedRun(repos);
      const writes = writesOfEveryKind(repos, fence);
      // The commit ends the run, so it goes last.
      for (const [, write] of [...writes.slice(1), writes[0]!]) await write();
      expect(await repos.runs.get('run-1')).toMatchObject({ state: 'failed', meta: { prUrl: 'https://example.test/late' } });
    });

    it('accepts unfenced administrative writes (fence: null)', async () => {
      const repos = repositories();
      await seedRun(repos);
      for (const [, write] of writesOfEveryKind(repos, null).reverse()) await write();
      expect((await repos.runs.get('run-1'))?.state).toBe('failed');
    });

    const refusals: Array<[string, (repos: Repositories) => Promise<Fence>]> = [
      ['a fence naming another owner', async () => fenceOf('run-1', 'owner-b')],
      ['a fence on a key nobody holds', async () => ({ leaseKey: 'run:unknown', owner: OWNER })],
      [
        'an expired lease nobody took over',
        async (repos) => {
          expect(await repos.leases.acquire({ key: runLeaseKey('run-1'), owner: OWNER, runId: 'run-1', ttlMs: HOUR, now: new Date(Date.now() - 2 * HOUR) })).toBe(true);
          return fenceOf('run-1');
        },
      ],
      [
        'a lease another owner took over after it expired',
        async (repos) => {
          await repos.leases.acquire({ key: runLeaseKey('run-1'), owner: OWNER, runId: 'run-1', ttlMs: HOUR, now: new Date(Date.now() - 2 * HOUR) });
          expect(await repos.leases.acquire({ key: runLeaseKey('run-1'), owner: 'owner-b', runId: 'run-1', ttlMs: HOUR, now: new Date() })).toBe(true);
          return fenceOf('run-1');
        },
      ],
      [
        'a released lease',
        async (repos) => {
          expect(await repos.leases.release({ key: runLeaseKey('run-1'), owner: OWNER })).toBe(true);
          return fenceOf('run-1');
        },
      ],
    ];

    for (const [situation, arrange] of refusals) {
      it(`refuses every kind of write with AG_ERR_LEASE_LOST for ${situation}, writing nothing`, async () => {
        const repos = repositories();
        await seedRun(repos);
        const fence = await arrange(repos);
        const before = await runFootprint(repos, 'run-1');
        for (const [, write] of writesOfEveryKind(repos, fence)) await expectCode(write(), 'AG_ERR_LEASE_LOST');
        expect(await runFootprint(repos, 'run-1')).toEqual(before);
      });
    }

    it('lets the owner that took the lease over write', async () => {
      const repos = repositories();
      await seedRun(repos);
      await repos.leases.acquire({ key: runLeaseKey('run-1'), owner: OWNER, runId: 'run-1', ttlMs: HOUR, now: new Date(Date.now() - 2 * HOUR) });
      await repos.leases.acquire({ key: runLeaseKey('run-1'), owner: 'owner-b', runId: 'run-1', ttlMs: HOUR, now: new Date() });
      const { run } = await repos.runs.commit('run-1', { event: 'workspace_acquired', fence: fenceOf('run-1', 'owner-b') });
      expect(run.state).toBe('leased');
    });
  });

  describe('run creation is atomic', () => {
    it('writes nothing — no work order, no event, no run — when another live owner holds the lease', async () => {
      const repos = repositories();
      await repos.leases.acquire({ key: runLeaseKey('run-1'), owner: 'owner-b', runId: 'run-0', ttlMs: HOUR, now: new Date() });
      const error = await expectCode(
        repos.runs.create({ workOrder: workOrderInput('wo-1'), run: newRun('run-1'), lease: { key: runLeaseKey('run-1'), owner: OWNER, ttlMs: HOUR } }),
        'AG_ERR_LEASE_HELD',
      );
      expect(error.retryable).toBe(true);
      expect(await repos.workOrders.get('wo-1')).toBeNull();
      expect(await repos.workOrders.lastSeq('wo-1')).toBe(0);
      expect(await repos.runs.get('run-1')).toBeNull();
      expect(await repos.leases.get(runLeaseKey('run-1'))).toMatchObject({ owner: 'owner-b', runId: 'run-0' });
    });

    it('takes over an expired lease, or one its owner already holds', async () => {
      const repos = repositories();
      await repos.leases.acquire({ key: runLeaseKey('run-1'), owner: 'owner-b', runId: 'run-0', ttlMs: HOUR, now: new Date(Date.now() - 2 * HOUR) });
      await seedRun(repos, 'run-1');
      expect(await repos.leases.get(runLeaseKey('run-1'))).toMatchObject({ owner: OWNER, runId: 'run-1' });
      await repos.leases.acquire({ key: runLeaseKey('run-2'), owner: OWNER, runId: 'run-2', ttlMs: HOUR, now: new Date() });
      await seedRun(repos, 'run-2');
      expect((await repos.runs.list({ limit: 10, offset: 0 })).total).toBe(2);
    });
  });
}
