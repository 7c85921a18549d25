/**
 * {@link LeaseRepository} on PostgreSQL, and the fencing check every fenced write of the other
 * repositories runs inside its own transaction. Each lease call is one statement, atomic by itself; the
 * time is the request's `now`, else the injected clock, else the database's clock (`DB_NOW_MS`), so
 * every process compares expiries against one clock.
 */
import { checkTtl, mapLease, type LeaseRow } from '../codec.js';
import type { Fence, LeaseRepository } from '../repositories.js';
import { assertFenceHolds } from '../run-rules.js';
import type { AcquireLeaseRequest, Lease, ReleaseLeaseRequest, RenewLeaseRequest } from '../types.js';
import { DB_NOW_MS, type PgTx, type PostgresDatabase } from './database.js';

const LEASE_COLUMNS = 'key, owner, run_id, expires_at::float8 AS expires_at, heartbeat_at::float8 AS heartbeat_at';

/** `$n` when the caller or an injected clock gave the time, else the database clock. */
const nowOr = (param: string): string => `COALESCE(${param}::bigint, ${DB_NOW_MS})`;

/**
 * Inserts the lease, or takes over the row when its owner asks again or it has expired — one statement,
 * so the decision and the write see the same row version (ON CONFLICT locks it). Returns a row iff taken.
 */
const ACQUIRE = `
  WITH t AS (SELECT ${nowOr('$4')} AS now)
  INSERT INTO leases (key, owner, run_id, expires_at, heartbeat_at)
  SELECT $1, $2, $3, t.now + $5::bigint, t.now FROM t
  ON CONFLICT (key) DO UPDATE SET
    owner = excluded.owner, run_id = excluded.run_id, expires_at = excluded.expires_at, heartbeat_at = excluded.heartbeat_at
  WHERE leases.owner = excluded.owner OR leases.expires_at <= excluded.heartbeat_at
  RETURNING key`;

const RENEW = `
  UPDATE leases SET expires_at = t.now + $4::bigint, heartbeat_at = t.now
  FROM (SELECT ${nowOr('$3')} AS now) t
  WHERE key = $1 AND owner = $2 AND expires_at > t.now
  RETURNING key`;

/** The lease row fencing a write, locked until the write commits, with the clock read after the lock. */
const FENCE = `SELECT owner, expires_at::float8 AS expires_at, ${nowOr('$2')}::float8 AS now_ms FROM leases WHERE key = $1 FOR UPDATE`;

export class PostgresLeaseRepository implements LeaseRepository {
  constructor(private readonly db: PostgresDatabase) {}

  async acquire(request: AcquireLeaseRequest): Promise<boolean> {
    checkTtl(request.ttlMs);
    return (await this.db.query('leases.acquire', ACQUIRE, this.acquireParams(request))).length === 1;
  }

  /**
   * Extends a lease still held by `owner`. An expired lease counts as lost even if nobody took it yet:
   * reconciliation may already be failing its run, so the holder must stop, not carry on.
   */
  async renew(request: RenewLeaseRequest): Promise<boolean> {
    checkTtl(request.ttlMs);
    const rows = await this.db.query('leases.renew', RENEW, [request.key, request.owner, this.nowParam(request.now), request.ttlMs]);
    return rows.length === 1;
  }

  async release(request: ReleaseLeaseRequest): Promise<boolean> {
    const rows = await this.db.query('leases.release', 'DELETE FROM leases WHERE key = $1 AND owner = $2 RETURNING key', [request.key, request.owner]);
    return rows.length === 1;
  }

  async get(key: string): Promise<Lease | null> {
    const [row] = await this.db.query<LeaseRow>('leases.get', `SELECT ${LEASE_COLUMNS} FROM leases WHERE key = $1`, [key]);
    return row === undefined ? null : mapLease(row);
  }

  async listExpired(now?: Date): Promise<Lease[]> {
    const sql = `SELECT ${LEASE_COLUMNS} FROM leases WHERE expires_at <= ${nowOr('$1')} ORDER BY expires_at ASC, key ASC`;
    return (await this.db.query<LeaseRow>('leases.listExpired', sql, [this.nowParam(now)])).map(mapLease);
  }

  async listLive(now?: Date): Promise<Lease[]> {
    const sql = `SELECT ${LEASE_COLUMNS} FROM leases WHERE expires_at > ${nowOr('$1')} ORDER BY expires_at ASC, key ASC`;
    return (await this.db.query<LeaseRow>('leases.listLive', sql, [this.nowParam(now)])).map(mapLease);
  }

  /** Takes the lease unless another owner holds it unexpired, inside the caller's transaction (`runs.create`). */
  async acquireInTransaction(tx: PgTx, request: AcquireLeaseRequest): Promise<boolean> {
    checkTtl(request.ttlMs);
    return (await tx.rows(ACQUIRE, this.acquireParams(request))).length === 1;
  }

  /**
   * The fencing check (see `repositories.ts`) inside the caller's write transaction: `fence.owner` must
   * hold `fence.leaseKey` and the lease must not have expired at the store's clock. The lease row stays
   * locked until the caller commits, so it cannot be taken over between this check and the write.
   * `null` is an unfenced administrative write and passes. @throws AG_ERR_LEASE_LOST
   */
  async assertFence(tx: PgTx, fence: Fence | null, operation: string): Promise<void> {
    if (fence === null) return;
    const row = await tx.first<{ owner: string; expires_at: number; now_ms: number }>(FENCE, [fence.leaseKey, this.db.injectedNowMs()]);
    if (row !== undefined) tx.rememberDbNow(row.now_ms);
    assertFenceHolds(fence, row, row?.now_ms ?? 0, operation);
  }

  private acquireParams(request: AcquireLeaseRequest): (string | number | null)[] {
    return [request.key, request.owner, request.runId, this.nowParam(request.now), request.ttlMs];
  }

  /** An explicit `now` wins over the injected clock; null means the database clock. */
  private nowParam(now: Date | undefined): number | null {
    return now?.getTime() ?? this.db.injectedNowMs();
  }
}
