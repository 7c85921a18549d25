/**
 * A recording in-memory {@link LeaseRepository} with the semantics of the SQLite one, for LeaseKeeper
 * and WorkspaceManager tests. It can be told to fail renewals and lets a test play "another process"
 * that steals a lease. It runs the lease tests of the repository contract (lease.test.ts), so it
 * cannot drift from the real backends.
 */
import { AgentGateError } from '../../src/errors.js';
import type { LeaseRepository } from '../../src/store/repositories.js';
import type { AcquireLeaseRequest, Lease, ReleaseLeaseRequest, RenewLeaseRequest } from '../../src/store/types.js';

interface Held {
  owner: string;
  runId: string;
  expiresAt: number;
  heartbeatAt: number;
}

export class InMemoryLeaseStore implements LeaseRepository {
  readonly leases = new Map<string, Held>();
  readonly calls: string[] = [];
  /** Number of upcoming renew calls that throw (a store outage). */
  failRenewals = 0;

  /** `clock` stands for the store's clock, used when a request carries no `now`. */
  constructor(private readonly clock: () => Date = () => new Date()) {}

  async acquire(request: AcquireLeaseRequest): Promise<boolean> {
    this.calls.push(`acquire ${request.key} ${request.owner}`);
    checkTtl(request.ttlMs);
    const now = (request.now ?? this.clock()).getTime();
    const held = this.leases.get(request.key);
    if (held !== undefined && held.owner !== request.owner && held.expiresAt > now) return false;
    this.leases.set(request.key, { owner: request.owner, runId: request.runId, expiresAt: now + request.ttlMs, heartbeatAt: now });
    return true;
  }

  async renew(request: RenewLeaseRequest): Promise<boolean> {
    this.calls.push(`renew ${request.key} ${request.owner}`);
    if (this.failRenewals > 0) {
      this.failRenewals -= 1;
      throw new Error('database is locked');
    }
    checkTtl(request.ttlMs);
    const now = (request.now ?? this.clock()).getTime();
    const held = this.leases.get(request.key);
    if (held === undefined || held.owner !== request.owner || held.expiresAt <= now) return false;
    held.expiresAt = now + request.ttlMs;
    held.heartbeatAt = now;
    return true;
  }

  async release(request: ReleaseLeaseRequest): Promise<boolean> {
    this.calls.push(`release ${request.key} ${request.owner}`);
    const held = this.leases.get(request.key);
    if (held === undefined || held.owner !== request.owner) return false;
    this.leases.delete(request.key);
    return true;
  }

  async get(key: string): Promise<Lease | null> {
    const held = this.leases.get(key);
    return held === undefined ? null : toLease(key, held);
  }

  async listExpired(now?: Date): Promise<Lease[]> {
    const at = (now ?? this.clock()).getTime();
    return this.sorted().filter(([, held]) => held.expiresAt <= at).map(([key, held]) => toLease(key, held));
  }

  async listLive(now?: Date): Promise<Lease[]> {
    const at = (now ?? this.clock()).getTime();
    return this.sorted().filter(([, held]) => held.expiresAt > at).map(([key, held]) => toLease(key, held));
  }

  /** Another process takes the lease over (as after an expiry it did not notice in time). */
  steal(key: string, owner: string, now: number, ttlMs = 60_000): void {
    const runId = this.leases.get(key)?.runId ?? 'stolen';
    this.leases.set(key, { owner, runId, expiresAt: now + ttlMs, heartbeatAt: now });
  }

  count(prefix: string): number {
    return this.calls.filter((call) => call.startsWith(prefix)).length;
  }

  /** Soonest expiry first, then by key: the order of the SQLite store. */
  private sorted(): [string, Held][] {
    return [...this.leases.entries()].sort(([ka, a], [kb, b]) => a.expiresAt - b.expiresAt || (ka < kb ? -1 : ka > kb ? 1 : 0));
  }
}

function checkTtl(ttlMs: number): void {
  if (!Number.isInteger(ttlMs) || ttlMs <= 0) {
    throw new AgentGateError('AG_ERR_SCHEMA_INVALID', `ttlMs: must be a positive integer, got ${String(ttlMs)}`);
  }
}

function toLease(key: string, held: Held): Lease {
  return {
    key,
    owner: held.owner,
    runId: held.runId,
    expiresAt: new Date(held.expiresAt).toISOString(),
    heartbeatAt: new Date(held.heartbeatAt).toISOString(),
  };
}
