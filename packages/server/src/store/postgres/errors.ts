/**
 * Translation of node-postgres errors into the error catalogue, at the store boundary.
 *
 * Two kinds of failure come out of `pg`:
 * - a `DatabaseError`: the server answered with an error, classified by its SQLSTATE (`code`, see
 *   https://www.postgresql.org/docs/15/errcodes-appendix.html), never by its message;
 * - anything else raised by a pool or client call: the connection could not be made or was lost (a
 *   Node.js socket error such as ECONNREFUSED, or pg's own "Connection terminated" when the socket ends).
 *   The store only hands `pg` strings, numbers and null, so nothing else can fail inside a `pg` call:
 *   these are all `AG_ERR_STORE_UNAVAILABLE`, retryable.
 * Only errors raised by `pg` calls go through here; the store's own errors pass unchanged.
 */
import pg from 'pg';
import { AgentGateError, type ErrorCode } from '../../errors.js';

/**
 * SQLSTATE → code. Class 23 (integrity constraint) is a conflict with the stored state; class 40
 * (serialization failure, deadlock), 55P03 (lock_timeout) and 57014 (statement timeout) mean "busy,
 * try again"; class 08, 57P01–57P05 (server shutting down or restarting), 53300 (too many connections)
 * and 25006 (a read-only standby after a fail-over) mean the server is not usable right now; 53100 is a
 * full disk; class 28 (credentials) and 3D000 (no such database) are configuration, not retryable; class
 * 22 (data exception, e.g. a NUL character in text) is a value PostgreSQL cannot store.
 */
export function classifyPostgresCode(sqlstate: string): ErrorCode {
  const sqlClass = sqlstate.slice(0, 2);
  if (sqlClass === '23') return 'AG_ERR_STORE_CONFLICT';
  if (sqlClass === '40' || sqlstate === '55P03' || sqlstate === '57014') return 'AG_ERR_STORE_BUSY';
  if (sqlClass === '08' || /^57P0[1-5]$/.test(sqlstate) || sqlstate === '53300' || sqlstate === '25006') return 'AG_ERR_STORE_UNAVAILABLE';
  if (sqlstate === '53100') return 'AG_ERR_DISK_FULL';
  if (sqlClass === '28' || sqlstate === '3D000') return 'AG_ERR_STORE_OPEN';
  if (sqlClass === '22') return 'AG_ERR_SCHEMA_INVALID';
  return 'AG_ERR_STORE_WRITE';
}

export function isPostgresError(err: unknown): err is pg.DatabaseError {
  return err instanceof pg.DatabaseError;
}

/** The Node.js error code of a socket failure (ECONNREFUSED, ECONNRESET …), when there is one. */
function systemCode(err: unknown): string | undefined {
  if (typeof err !== 'object' || err === null || !('code' in err)) return undefined;
  return typeof err.code === 'string' ? err.code : undefined;
}

/**
 * Returns the {@link AgentGateError} for an error thrown by a `pg` call made for `operation` (keeping
 * it as `cause`, its SQLSTATE in `details.pgCode`). An AgentGateError is returned unchanged.
 */
export function translatePostgresError(err: unknown, operation: string): AgentGateError {
  if (err instanceof AgentGateError) return err;
  if (isPostgresError(err)) {
    const sqlstate = err.code ?? 'XX000';
    const code = classifyPostgresCode(sqlstate);
    return new AgentGateError(code, `Store ${operation} failed (PostgreSQL ${sqlstate}): ${err.message}`, {
      cause: err,
      details: { operation, pgCode: sqlstate, ...(err.constraint === undefined ? {} : { constraint: err.constraint }) },
    });
  }
  const socketCode = systemCode(err);
  const message = err instanceof Error ? err.message : String(err);
  return new AgentGateError('AG_ERR_STORE_UNAVAILABLE', `Store ${operation} failed: the PostgreSQL connection failed (${socketCode ?? message})`, {
    cause: err,
    details: { operation, ...(socketCode === undefined ? {} : { systemCode: socketCode }) },
  });
}
