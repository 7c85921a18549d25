/**
 * {@link LeaseRepository} on SQLite, and the fencing check every fenced write of the other
 * repositories runs inside its own transaction.
 */
import type { Fence, LeaseRepository } from '../repositories.js';
import type { AcquireLeaseRequest, Lease, ReleaseLeaseRequest, RenewLeaseRequest } from '../types.js';
import { checkTtl, mapLease, type LeaseRow } from '../codec.js';
import { assertFenceHolds } from '../run-rules.js';
import type { SqliteDatabase } from './database.js';

function prepare(db: SqliteDatabase) {
  const c = db.connection;
  return {
    get: c.prepare<[string], LeaseRow>('SELECT * FROM leases WHERE key = ?'),
    upsert: c.prepare<[LeaseRow]>(
      `INSERT INTO leases (key, owner, run_id, expires_at, heartbeat_at)
       VALUES (@key, @owner, @run_id, @expires_at, @heartbeat_at)
       ON CONFLICT (key) DO UPDATE SET
         owner = excluded.owner, run_id = excluded.run_id, expires_at = excluded.expires_at, heartbeat_at = excluded.heartbeat_at`,
    ),
    renew: c.prepare<[{ key: string; owner: string; expires_at: number; now: number }]>(
      'UPDATE leases SET expires_at = @expires_at, heartbeat_at = @now WHERE key = @key AND owner = @owner AND expires_at > @now',
    ),
    release: c.prepare<[string, string]>('DELETE FROM leases WHERE key = ? AND owner = ?'),
    expired: c.prepare<[number], LeaseRow>('SELECT * FROM leases WHERE expires_at <= ? ORDER BY expires_at ASC, key ASC'),
    live: c.prepare<[number], LeaseRow>('SELECT * FROM leases WHERE expires_at > ? ORDER BY expires_at ASC, key ASC'),
  };
}

export class SqliteLeaseRepository implements LeaseRepository {
  private readonly stmts: ReturnType<typeof prepare>;

  constructor(private readonly db: SqliteDatabase) {
    this.stmts = prepare(db);
  }

  async acquire(request: AcquireLeaseRequest): Promise<boolean> {
    return this.db.write('leases.acquire', () => this.acquireInTransaction(request));
  }

  /**
   * Extends a lease still held by `owner`. An expired lease counts as lost even if nobody took it yet:
   * reconciliation may already be failing its run, so the holder must stop, not carry on.
   */
  async renew(request: RenewLeaseRequest): Promise<boolean> {
    checkTtl(request.ttlMs);
    const now = (request.now ?? this.db.clock()).getTime();
    return this.db.write('leases.renew', () => {
      const result = this.stmts.renew.run({ key: request.key, owner: request.owner, expires_at: now + request.ttlMs, now });
      return result.changes === 1;
    });
  }

  async release(request: ReleaseLeaseRequest): Promise<boolean> {
    return this.db.write('leases.release', () => this.stmts.release.run(request.key, request.owner).changes === 1);
  }

  async get(key: string): Promise<Lease | null> {
    return this.db.read('leases.get', () => {
      const row = this.stmts.get.get(key);
      return row === undefined ? null : mapLease(row);
    });
  }

  async listExpired(now?: Date): Promise<Lease[]> {
    const at = (now ?? this.db.clock()).getTime();
    return this.db.read('leases.listExpired', () => this.stmts.expired.all(at).map(mapLease));
  }

  async listLive(now?: Date): Promise<Lease[]> {
    const at = (now ?? this.db.clock()).getTime();
    return this.db.read('leases.listLive', () => this.stmts.live.all(at).map(mapLease));
  }

  /**
   * Takes the lease unless another owner holds it unexpired. Runs inside the caller's write
   * transaction (`runs.create` takes the run's lease together with the run).
   */
  acquireInTransaction(request: AcquireLeaseRequest): boolean {
    checkTtl(request.ttlMs);
    const now = (request.now ?? this.db.clock()).getTime();
    const held = this.stmts.get.get(request.key);
    if (held !== undefined && held.owner !== request.owner && held.expires_at > now) return false;
    this.stmts.upsert.run({ key: request.key, owner: request.owner, run_id: request.runId, expires_at: now + request.ttlMs, heartbeat_at: now });
    return true;
  }

  /**
   * The fencing check (see `repositories.ts`): inside the caller's write transaction, `fence.owner`
   * must hold `fence.leaseKey` and the lease must not have expired at the store's clock. `null` is an
   * unfenced administrative write (API, tests) and passes.
   * @throws AG_ERR_LEASE_LOST
   */
  assertFence(fence: Fence | null, operation: string): void {
    if (fence === null) return;
    assertFenceHolds(fence, this.stmts.get.get(fence.leaseKey), this.db.clock().getTime(), operation);
  }
}
