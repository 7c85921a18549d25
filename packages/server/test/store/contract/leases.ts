/**
 * The lease part of the repository contract: what LeaseKeeper, runs.create and the fencing check rely
 * on. Separate so a lease-only double (test/workspace/in-memory-lease-store.ts) runs it too. Every call
 * passes `now`, so the backend's clock does not matter.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { LeaseRepository } from '../../../src/store/repositories.js';
import { expectCode } from './fixture.js';

export type MakeLeaseRepository = () => Promise<{ leases: LeaseRepository; cleanup(): Promise<void> }>;

const T0 = Date.UTC(2025, 0, 1);
const at = (ms: number): Date => new Date(T0 + ms);
const iso = (ms: number): string => at(ms).toISOString();
const KEY = '/repos/app#agentgate/run-1';
const TTL = 30_000;

export function describeLeaseRepositoryContract(name: string, make: MakeLeaseRepository): void {
  describe(`LeaseRepository contract: ${name}`, () => {
    let leases: LeaseRepository;
    let cleanup: (() => Promise<void>) | undefined;
    beforeEach(async () => {
      const made = await make();
      leases = made.leases;
      cleanup = made.cleanup;
    });
    afterEach(async () => {
      await cleanup?.();
      cleanup = undefined;
    });

    const acquire = (owner: string, runId: string, now: number, ttlMs = TTL, key = KEY) => leases.acquire({ key, owner, runId, ttlMs, now: at(now) });
    const renew = (owner: string, now: number, key = KEY) => leases.renew({ key, owner, ttlMs: TTL, now: at(now) });

    it('grants a free key and refuses it to another owner while it is live', async () => {
      expect(await acquire('a', 'run-1', 0)).toBe(true);
      expect(await acquire('b', 'run-2', TTL - 1)).toBe(false);
      expect(await leases.get(KEY)).toEqual({ key: KEY, owner: 'a', runId: 'run-1', expiresAt: iso(TTL), heartbeatAt: iso(0) });
    });

    it('lets the holder acquire again, extending the expiry', async () => {
      await acquire('a', 'run-1', 0);
      expect(await acquire('a', 'run-1', 10_000)).toBe(true);
      expect((await leases.get(KEY))?.expiresAt).toBe(iso(10_000 + TTL));
    });

    it('hands an expired lease to the next owner, after which the old owner can no longer renew it', async () => {
      await acquire('a', 'run-1', 0);
      expect(await acquire('b', 'run-2', TTL)).toBe(true);
      expect(await renew('a', TTL + 1)).toBe(false);
      expect(await leases.get(KEY)).toMatchObject({ owner: 'b', runId: 'run-2' });
    });

    it('renews a live lease from the heartbeat time, for its holder only', async () => {
      await acquire('a', 'run-1', 0);
      expect(await renew('a', 20_000)).toBe(true);
      expect(await leases.get(KEY)).toMatchObject({ heartbeatAt: iso(20_000), expiresAt: iso(20_000 + TTL) });
      expect(await renew('b', 20_000)).toBe(false);
      expect(await acquire('b', 'run-2', TTL + 1)).toBe(false);
    });

    it('treats an expired lease as lost on renewal even if nobody took it, and an unknown key as lost', async () => {
      await acquire('a', 'run-1', 0);
      expect(await renew('a', TTL)).toBe(false);
      expect(await renew('a', 1, 'unknown')).toBe(false);
    });

    it('releases only for its holder, after which the key is free', async () => {
      await acquire('a', 'run-1', 0);
      expect(await leases.release({ key: KEY, owner: 'b' })).toBe(false);
      expect(await leases.release({ key: KEY, owner: 'a' })).toBe(true);
      expect(await leases.release({ key: KEY, owner: 'a' })).toBe(false);
      expect(await leases.get(KEY)).toBeNull();
      expect(await acquire('b', 'run-2', 1)).toBe(true);
    });

    it('lists expired and live leases at a given time, soonest expiry first', async () => {
      await acquire('a', 'run-1', 0, 60_000, 'k-long');
      await acquire('a', 'run-2', 0, 10_000, 'k-short');
      await acquire('b', 'run-3', 0, 30_000, 'k-mid');

      expect(await leases.listExpired(at(9_999))).toEqual([]);
      expect((await leases.listExpired(at(30_000))).map((lease) => [lease.key, lease.owner, lease.runId])).toEqual([
        ['k-short', 'a', 'run-2'],
        ['k-mid', 'b', 'run-3'],
      ]);
      expect((await leases.listLive(at(30_000))).map((lease) => lease.key)).toEqual(['k-long']);
      expect((await leases.listExpired(at(60_000))).map((lease) => lease.runId)).toEqual(['run-2', 'run-3', 'run-1']);
      expect(await leases.listLive(at(60_000))).toEqual([]);
    });

    it('rejects a non-positive or fractional ttl with AG_ERR_SCHEMA_INVALID', async () => {
      await expectCode(acquire('a', 'run-1', 0, 0), 'AG_ERR_SCHEMA_INVALID');
      await expectCode(acquire('a', 'run-1', 0, 1.5), 'AG_ERR_SCHEMA_INVALID');
      expect(await leases.get(KEY)).toBeNull();
    });
  });
}
