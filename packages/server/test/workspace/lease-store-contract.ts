/**
 * The behaviour LeaseKeeper relies on from any LeaseStore. Run it against every implementation
 * (the in-memory test store here; `SqliteRunStore` can call the same function with its factory).
 */
import { describe, expect, it } from 'vitest';
import type { LeaseStore } from '../../src/workspace/lease.js';

const at = (ms: number): Date => new Date(Date.UTC(2025, 0, 1) + ms);
const TTL = 60_000;

export function describeLeaseStoreContract(name: string, makeStore: () => LeaseStore | Promise<LeaseStore>): void {
  describe(`LeaseStore contract: ${name}`, () => {
    it('grants a free lease and refuses it to another owner while it is live', async () => {
      const store = await makeStore();
      expect(await store.acquireLease({ key: 'repo#b', owner: 'a', runId: 'r1', ttlMs: TTL, now: at(0) })).toBe(true);
      expect(await store.acquireLease({ key: 'repo#b', owner: 'b', runId: 'r2', ttlMs: TTL, now: at(TTL - 1) })).toBe(false);
    });

    it('lets the holder acquire again', async () => {
      const store = await makeStore();
      await store.acquireLease({ key: 'repo#b', owner: 'a', runId: 'r1', ttlMs: TTL, now: at(0) });
      expect(await store.acquireLease({ key: 'repo#b', owner: 'a', runId: 'r1', ttlMs: TTL, now: at(10) })).toBe(true);
    });

    it('hands an expired lease to the next owner', async () => {
      const store = await makeStore();
      await store.acquireLease({ key: 'repo#b', owner: 'a', runId: 'r1', ttlMs: TTL, now: at(0) });
      expect(await store.acquireLease({ key: 'repo#b', owner: 'b', runId: 'r2', ttlMs: TTL, now: at(TTL) })).toBe(true);
      expect(await store.renewLease({ key: 'repo#b', owner: 'a', ttlMs: TTL, now: at(TTL + 1) })).toBe(false);
    });

    it('extends a live lease on renewal by its holder only', async () => {
      const store = await makeStore();
      await store.acquireLease({ key: 'repo#b', owner: 'a', runId: 'r1', ttlMs: TTL, now: at(0) });
      expect(await store.renewLease({ key: 'repo#b', owner: 'a', ttlMs: TTL, now: at(TTL / 2) })).toBe(true);
      expect(await store.renewLease({ key: 'repo#b', owner: 'b', ttlMs: TTL, now: at(TTL / 2) })).toBe(false);
      expect(await store.acquireLease({ key: 'repo#b', owner: 'b', runId: 'r2', ttlMs: TTL, now: at(TTL + 1) })).toBe(false);
    });

    it('refuses to renew a lease that already expired', async () => {
      const store = await makeStore();
      await store.acquireLease({ key: 'repo#b', owner: 'a', runId: 'r1', ttlMs: TTL, now: at(0) });
      expect(await store.renewLease({ key: 'repo#b', owner: 'a', ttlMs: TTL, now: at(TTL + 1) })).toBe(false);
    });

    it('releases only for the holder', async () => {
      const store = await makeStore();
      await store.acquireLease({ key: 'repo#b', owner: 'a', runId: 'r1', ttlMs: TTL, now: at(0) });
      expect(await store.releaseLease({ key: 'repo#b', owner: 'b' })).toBe(false);
      expect(await store.releaseLease({ key: 'repo#b', owner: 'a' })).toBe(true);
      expect(await store.releaseLease({ key: 'repo#b', owner: 'a' })).toBe(false);
      expect(await store.acquireLease({ key: 'repo#b', owner: 'b', runId: 'r2', ttlMs: TTL, now: at(1) })).toBe(true);
    });

    it('lists leases whose expiry has passed', async () => {
      const store = await makeStore();
      await store.acquireLease({ key: 'repo#old', owner: 'a', runId: 'r1', ttlMs: TTL, now: at(0) });
      await store.acquireLease({ key: 'repo#new', owner: 'a', runId: 'r2', ttlMs: TTL, now: at(TTL) });
      const expired = await store.listExpiredLeases(at(TTL + 1));
      expect(expired.map((lease) => [lease.key, lease.owner, lease.runId])).toEqual([['repo#old', 'a', 'r1']]);
    });
  });
}
