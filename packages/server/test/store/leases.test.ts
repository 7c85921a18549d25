import { afterEach, describe, expect, it } from 'vitest';
import { TempStores, manualClock } from './helpers/store-fixture.js';

const temp = new TempStores();
afterEach(() => temp.cleanup());

const KEY = '/repos/app#agentgate/run-1';
const TTL = 30_000;

async function setup() {
  const clock = manualClock();
  const store = temp.open(await temp.dbPath(), clock);
  return { clock, store };
}

describe('SqliteRunStore leases', () => {
  it('grants a free key and refuses it to another owner while it is live', async () => {
    const { clock, store } = await setup();
    expect(store.acquireLease({ key: KEY, owner: 'a', runId: 'run-1', ttlMs: TTL })).toBe(true);
    clock.advance(TTL - 1);
    expect(store.acquireLease({ key: KEY, owner: 'b', runId: 'run-2', ttlMs: TTL })).toBe(false);
    expect(store.getLease(KEY)).toMatchObject({ owner: 'a', runId: 'run-1' });
  });

  it('lets the same owner re-acquire, extending the expiry', async () => {
    const { clock, store } = await setup();
    store.acquireLease({ key: KEY, owner: 'a', runId: 'run-1', ttlMs: TTL });
    clock.advance(10_000);
    expect(store.acquireLease({ key: KEY, owner: 'a', runId: 'run-1', ttlMs: TTL })).toBe(true);
    expect(store.getLease(KEY)?.expiresAt).toBe('2025-01-01T00:00:40.000Z');
  });

  it('hands an expired lease to the next owner, and the old owner can no longer renew it', async () => {
    const { clock, store } = await setup();
    store.acquireLease({ key: KEY, owner: 'a', runId: 'run-1', ttlMs: TTL });
    clock.advance(TTL);
    expect(store.acquireLease({ key: KEY, owner: 'b', runId: 'run-2', ttlMs: TTL })).toBe(true);
    expect(store.renewLease({ key: KEY, owner: 'a', ttlMs: TTL })).toBe(false);
    expect(store.getLease(KEY)).toMatchObject({ owner: 'b', runId: 'run-2' });
  });

  it('renews a live lease from the heartbeat time, but treats an expired one as lost', async () => {
    const { clock, store } = await setup();
    store.acquireLease({ key: KEY, owner: 'a', runId: 'run-1', ttlMs: TTL });
    clock.advance(20_000);
    expect(store.renewLease({ key: KEY, owner: 'a', ttlMs: TTL })).toBe(true);
    expect(store.getLease(KEY)).toMatchObject({ heartbeatAt: '2025-01-01T00:00:20.000Z', expiresAt: '2025-01-01T00:00:50.000Z' });
    clock.advance(TTL);
    expect(store.renewLease({ key: KEY, owner: 'a', ttlMs: TTL })).toBe(false);
    expect(store.renewLease({ key: 'unknown', owner: 'a', ttlMs: TTL })).toBe(false);
  });

  it('uses the explicit now over the store clock', async () => {
    const { store } = await setup();
    const now = new Date('2030-06-01T00:00:00.000Z');
    store.acquireLease({ key: KEY, owner: 'a', runId: 'run-1', ttlMs: TTL, now });
    expect(store.getLease(KEY)?.expiresAt).toBe('2030-06-01T00:00:30.000Z');
    expect(store.renewLease({ key: KEY, owner: 'a', ttlMs: TTL, now: new Date('2030-06-01T00:00:29.999Z') })).toBe(true);
  });

  it('releases only for its owner', async () => {
    const { store } = await setup();
    store.acquireLease({ key: KEY, owner: 'a', runId: 'run-1', ttlMs: TTL });
    expect(store.releaseLease({ key: KEY, owner: 'b' })).toBe(false);
    expect(store.releaseLease({ key: KEY, owner: 'a' })).toBe(true);
    expect(store.getLease(KEY)).toBeNull();
    expect(store.acquireLease({ key: KEY, owner: 'b', runId: 'run-2', ttlMs: TTL })).toBe(true);
  });

  it('lists the leases expired at a given time, soonest first', async () => {
    const { clock, store } = await setup();
    store.acquireLease({ key: 'k-long', owner: 'a', runId: 'run-1', ttlMs: 60_000 });
    store.acquireLease({ key: 'k-short', owner: 'a', runId: 'run-2', ttlMs: 10_000 });
    store.acquireLease({ key: 'k-mid', owner: 'b', runId: 'run-3', ttlMs: 30_000 });

    expect(store.listExpiredLeases()).toEqual([]);
    expect(store.listExpiredLeases(new Date('2025-01-01T00:00:30.000Z')).map((l) => l.key)).toEqual(['k-short', 'k-mid']);
    clock.advance(60_000);
    expect(store.listExpiredLeases().map((l) => l.runId)).toEqual(['run-2', 'run-3', 'run-1']);
  });

  it('rejects a non-positive ttl', async () => {
    const { store } = await setup();
    expect(() => store.acquireLease({ key: KEY, owner: 'a', runId: 'run-1', ttlMs: 0 })).toThrow(
      expect.objectContaining({ code: 'AG_ERR_SCHEMA_INVALID' }),
    );
  });

  it('is exclusive across two connections to the same file', async () => {
    const path = await temp.dbPath();
    const clock = manualClock();
    const one = temp.open(path, clock);
    const two = temp.open(path, clock);
    expect(one.acquireLease({ key: KEY, owner: 'a', runId: 'run-1', ttlMs: TTL })).toBe(true);
    expect(two.acquireLease({ key: KEY, owner: 'b', runId: 'run-2', ttlMs: TTL })).toBe(false);
    clock.advance(TTL);
    expect(two.acquireLease({ key: KEY, owner: 'b', runId: 'run-2', ttlMs: TTL })).toBe(true);
    expect(one.renewLease({ key: KEY, owner: 'a', ttlMs: TTL })).toBe(false);
  });
});
