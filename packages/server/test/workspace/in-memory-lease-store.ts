/**
 * A recording in-memory LeaseStore with the semantics of the SQLite store, for LeaseKeeper tests. It can
 * be told to fail renewals and lets a test play "another process" that steals a lease.
 */
import type { ExpiredLease, LeaseAcquireRequest, LeaseReleaseRequest, LeaseRenewRequest, LeaseStore } from '../../src/workspace/lease.js';

interface Held {
  owner: string;
  runId: string;
  expiresAt: number;
}

export class InMemoryLeaseStore implements LeaseStore {
  readonly leases = new Map<string, Held>();
  readonly calls: string[] = [];
  /** Number of upcoming renewLease calls that throw (a store outage). */
  failRenewals = 0;

  acquireLease(request: LeaseAcquireRequest): boolean {
    this.calls.push(`acquire ${request.key} ${request.owner}`);
    const now = request.now.getTime();
    const held = this.leases.get(request.key);
    if (held !== undefined && held.owner !== request.owner && held.expiresAt > now) return false;
    this.leases.set(request.key, { owner: request.owner, runId: request.runId, expiresAt: now + request.ttlMs });
    return true;
  }

  renewLease(request: LeaseRenewRequest): boolean {
    this.calls.push(`renew ${request.key} ${request.owner}`);
    if (this.failRenewals > 0) {
      this.failRenewals -= 1;
      throw new Error('database is locked');
    }
    const now = request.now.getTime();
    const held = this.leases.get(request.key);
    if (held === undefined || held.owner !== request.owner || held.expiresAt <= now) return false;
    held.expiresAt = now + request.ttlMs;
    return true;
  }

  releaseLease(request: LeaseReleaseRequest): boolean {
    this.calls.push(`release ${request.key} ${request.owner}`);
    const held = this.leases.get(request.key);
    if (held === undefined || held.owner !== request.owner) return false;
    this.leases.delete(request.key);
    return true;
  }

  listExpiredLeases(now: Date): ExpiredLease[] {
    return [...this.leases.entries()]
      .filter(([, held]) => held.expiresAt <= now.getTime())
      .map(([key, held]) => ({ key, owner: held.owner, runId: held.runId, expiresAt: new Date(held.expiresAt).toISOString() }));
  }

  /** Another process takes the lease over (as after an expiry it did not notice in time). */
  steal(key: string, owner: string, now: number, ttlMs = 60_000): void {
    const runId = this.leases.get(key)?.runId ?? 'stolen';
    this.leases.set(key, { owner, runId, expiresAt: now + ttlMs });
  }

  count(prefix: string): number {
    return this.calls.filter((call) => call.startsWith(prefix)).length;
  }
}
