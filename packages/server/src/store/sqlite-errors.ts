/**
 * Translation of better-sqlite3 errors into the error catalogue, at the store boundary.
 *
 * Classification uses the structured `code` of better-sqlite3's `SqliteError` (SQLite's extended
 * result code, e.g. `SQLITE_CONSTRAINT_PRIMARYKEY`), never its message text. See
 * https://www.sqlite.org/rescode.html for the codes.
 */
import Database from 'better-sqlite3';
import { AgentGateError, type ErrorCode } from '../errors.js';

/**
 * `SQLITE_BUSY*` / `SQLITE_LOCKED*`: another writer held the lock beyond the busy timeout (retryable).
 * `SQLITE_CONSTRAINT*`: duplicate key, foreign key, CHECK or trigger abort (the write conflicts).
 * `SQLITE_FULL`: the disk is full (its own class, AG_ERR_DISK_FULL).
 * Anything else (I/O error, corrupt file …): a failed write that was rolled back.
 */
export function classifySqliteCode(code: string): ErrorCode {
  const primary = primaryResultCode(code);
  if (primary === 'SQLITE_BUSY' || primary === 'SQLITE_LOCKED') return 'AG_ERR_STORE_BUSY';
  if (primary === 'SQLITE_CONSTRAINT') return 'AG_ERR_STORE_CONFLICT';
  if (primary === 'SQLITE_FULL') return 'AG_ERR_DISK_FULL';
  return 'AG_ERR_STORE_WRITE';
}

/** `SQLITE_CONSTRAINT_PRIMARYKEY` → `SQLITE_CONSTRAINT`: extended codes extend the primary one. */
function primaryResultCode(code: string): string {
  const parts = code.split('_');
  return parts.length >= 2 ? `${parts[0] ?? ''}_${parts[1] ?? ''}` : code;
}

export function isSqliteError(err: unknown): err is InstanceType<typeof Database.SqliteError> {
  return err instanceof Database.SqliteError;
}

/**
 * Returns an {@link AgentGateError} for a `SqliteError` (keeping it as `cause` and its code in
 * `details.sqliteCode`); any other value, including an AgentGateError, is returned unchanged.
 */
export function translateSqliteError(err: unknown, operation: string): unknown {
  if (!isSqliteError(err)) return err;
  const code = classifySqliteCode(err.code);
  return new AgentGateError(code, `Store ${operation} failed (${err.code}): ${err.message}`, {
    cause: err,
    details: { operation, sqliteCode: err.code },
  });
}
