import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { AgentGateError } from '../../src/errors.js';
import { DEFAULT_LEASE_TTL_MS, LeaseKeeper, leaseKey } from '../../src/workspace/lease.js';
import { systemClock, type TimerClock } from '../../src/util/clock.js';
import { describeLeaseRepositoryContract } from '../store/repository-contract.js';
import { InMemoryLeaseStore } from './in-memory-lease-store.js';

// The double runs the lease part of the repository contract, so it cannot drift from the real backends.
describeLeaseRepositoryContract('InMemoryLeaseStore (test double)', async () => ({ leases: new InMemoryLeaseStore(), cleanup: async () => {} }));

const KEY = leaseKey('/repos/app', 'agentgate/run-1');
const TTL = 60_000;

describe('LeaseKeeper', () => {
  let store: InMemoryLeaseStore;
  // The system clock's time and timers are the ones vitest's fake timers replace.
  const clock: TimerClock = systemClock;

  const keeper = (owner = 'owner-a', ttlMs = TTL): LeaseKeeper => new LeaseKeeper({ store, key: KEY, owner, runId: `run-of-${owner}`, ttlMs, clock });
  const signal = (): AbortSignal => new AbortController().signal;
  const rejection = async (promise: Promise<unknown>): Promise<AgentGateError> => {
    const error = await promise.then(
      () => undefined,
      (caught: unknown) => caught,
    );
    expect(error).toBeInstanceOf(AgentGateError);
    return error as AgentGateError;
  };

  beforeEach(() => {
    vi.useFakeTimers({ now: 0 });
    store = new InMemoryLeaseStore();
  });

  afterEach(() => {
    vi.useRealTimers();
  });

  it('keys a lease by repository path and branch', () => {
    expect(KEY).toBe('/repos/app#agentgate/run-1');
  });

  it('defaults to a 60 s TTL with a heartbeat every 20 s', () => {
    const defaults = new LeaseKeeper({ store, key: KEY, owner: 'a', runId: 'r', clock });
    expect(defaults.ttlMs).toBe(DEFAULT_LEASE_TTL_MS);
    expect(defaults.ttlMs).toBe(60_000);
    expect(defaults.heartbeatMs).toBe(20_000);
  });

  describe('when the lease is free', () => {
    it('acquires it for its owner and run', async () => {
      const a = keeper();
      await a.acquire(signal());
      expect(a.state).toBe('held');
      expect(store.leases.get(KEY)).toEqual({ owner: 'owner-a', runId: 'run-of-owner-a', expiresAt: TTL, heartbeatAt: 0 });
    });
  });

  describe('when another live owner holds the lease', () => {
    it('fails with AG_ERR_LEASE_HELD, a retryable error', async () => {
      await keeper('owner-a').acquire(signal());
      const error = await rejection(keeper('owner-b').acquire(signal()));
      expect(error.code).toBe('AG_ERR_LEASE_HELD');
      expect(error.retryable).toBe(true);
      expect(store.leases.get(KEY)?.owner).toBe('owner-a');
    });
  });

  describe('when the holder died and its lease expired', () => {
    it('lets the next owner take the lease over', async () => {
      // A dead process: it acquired the lease once and never renewed it.
      await store.acquire({ key: KEY, owner: 'dead-owner', runId: 'old-run', ttlMs: TTL, now: new Date(0) });
      await vi.advanceTimersByTimeAsync(TTL - 1);
      expect((await rejection(keeper('owner-b').acquire(signal()))).code).toBe('AG_ERR_LEASE_HELD');

      await vi.advanceTimersByTimeAsync(1);
      const b = keeper('owner-b');
      await b.acquire(signal());
      expect(b.state).toBe('held');
      expect(store.leases.get(KEY)?.owner).toBe('owner-b');
    });
  });

  describe('while the lease is held', () => {
    it('renews it every ttl/3 with one re-armed timer, so it never expires', async () => {
      const a = keeper();
      await a.acquire(signal());
      expect(vi.getTimerCount()).toBe(1);

      await vi.advanceTimersByTimeAsync(19_999);
      expect(store.count('renew')).toBe(0);
      await vi.advanceTimersByTimeAsync(1);
      expect(store.count('renew')).toBe(1);
      expect(store.leases.get(KEY)?.expiresAt).toBe(20_000 + TTL);
      expect(vi.getTimerCount()).toBe(1);

      await vi.advanceTimersByTimeAsync(5 * 60_000);
      expect(store.count('renew')).toBe(16);
      expect(vi.getTimerCount()).toBe(1);
      expect((await rejection(keeper('owner-b').acquire(signal()))).code).toBe('AG_ERR_LEASE_HELD');
      expect(a.lost.aborted).toBe(false);
    });

    it('fires `lost` with AG_ERR_LEASE_LOST when a renewal is refused, and stops renewing', async () => {
      const a = keeper();
      await a.acquire(signal());
      const onLost = vi.fn();
      a.lost.addEventListener('abort', onLost);
      store.steal(KEY, 'owner-b', Date.now());

      await vi.advanceTimersByTimeAsync(20_000);
      expect(onLost).toHaveBeenCalledTimes(1);
      expect(a.state).toBe('lost');
      const reason: unknown = a.lost.reason;
      expect(reason).toBeInstanceOf(AgentGateError);
      expect((reason as AgentGateError).code).toBe('AG_ERR_LEASE_LOST');
      expect(vi.getTimerCount()).toBe(0);

      await vi.advanceTimersByTimeAsync(60_000);
      expect(store.count('renew')).toBe(1);
    });

    it('rides out a renewal that throws while the lease is still valid', async () => {
      const a = keeper();
      await a.acquire(signal());
      store.failRenewals = 1;

      await vi.advanceTimersByTimeAsync(20_000);
      expect(a.lost.aborted).toBe(false);
      await vi.advanceTimersByTimeAsync(20_000);
      expect(a.lost.aborted).toBe(false);
      expect(store.leases.get(KEY)?.expiresAt).toBe(40_000 + TTL);
    });

    it('fires `lost` when renewals keep failing until the next beat would come after the expiry', async () => {
      const a = keeper();
      await a.acquire(signal());
      store.failRenewals = Number.POSITIVE_INFINITY;

      await vi.advanceTimersByTimeAsync(20_000);
      expect(a.lost.aborted).toBe(false);
      await vi.advanceTimersByTimeAsync(20_000);
      expect(a.lost.aborted).toBe(true);
      const reason = a.lost.reason as AgentGateError;
      expect(reason.code).toBe('AG_ERR_LEASE_LOST');
      expect(reason.cause).toBeInstanceOf(Error);
      expect(vi.getTimerCount()).toBe(0);
    });
  });

  describe('release', () => {
    it('frees the lease, stops the heartbeat and is idempotent', async () => {
      const a = keeper();
      await a.acquire(signal());
      const first = a.release();
      const second = a.release();
      expect(second).toBe(first);
      await first;
      await a.release();

      expect(store.count('release')).toBe(1);
      expect(store.leases.has(KEY)).toBe(false);
      expect(a.state).toBe('released');
      expect(vi.getTimerCount()).toBe(0);
      expect(a.lost.aborted).toBe(false);
      await keeper('owner-b').acquire(signal());
    });

    it('does not touch the store when nothing was acquired', async () => {
      await keeper().release();
      expect(store.calls).toEqual([]);
    });

    it('is harmless after the lease was lost', async () => {
      const a = keeper();
      await a.acquire(signal());
      store.steal(KEY, 'owner-b', Date.now());
      await vi.advanceTimersByTimeAsync(20_000);
      await a.release();
      expect(store.leases.get(KEY)?.owner).toBe('owner-b');
    });
  });

  describe('acquire', () => {
    it('refuses to start when the run is already canceled', async () => {
      const controller = new AbortController();
      controller.abort(new AgentGateError('AG_ERR_RUN_CANCELED', 'user canceled'));
      const error = await rejection(keeper().acquire(controller.signal));
      expect(error.code).toBe('AG_ERR_RUN_CANCELED');
      expect(store.calls).toEqual([]);
    });

    it('is single-use', async () => {
      const a = keeper();
      await a.acquire(signal());
      expect((await rejection(a.acquire(signal()))).code).toBe('AG_ERR_INTERNAL');
    });

    it('rejects a TTL too small to heartbeat', () => {
      expect(() => keeper('a', 2)).toThrow(AgentGateError);
    });
  });
});
