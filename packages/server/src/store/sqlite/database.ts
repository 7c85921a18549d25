/**
 * One better-sqlite3 connection with the store's pragmas, migrations and error translation, and the
 * transaction helpers every SQLite repository writes through.
 *
 * Every write runs in a `BEGIN IMMEDIATE` transaction. IMMEDIATE takes the write lock up front, so the
 * reads a write depends on (the run's state, the last event seq, the lease that fences the write) happen
 * under the lock: two connections — in this process or another one — can never both read seq 41 and
 * both write 42, and a lease cannot be taken over between its fencing check and the write it guards. A
 * contended writer waits in SQLite's busy handler (up to `busy_timeout`) instead of failing with
 * `SQLITE_BUSY` on a read-to-write lock upgrade, which the busy handler cannot resolve.
 *
 * The work inside a transaction is synchronous on purpose: better-sqlite3 cannot keep a transaction
 * open across an `await`, and a synchronous body means no other JavaScript of this process runs between
 * a read and the write that depends on it. The repositories wrap each call in a promise only at their
 * public surface.
 */
import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import Database from 'better-sqlite3';
import { AgentGateError } from '../../errors.js';
import { migrate } from '../migrations.js';
import { translateSqliteError } from '../sqlite-errors.js';

/** File name of the store inside `$AGENTGATE_HOME`. */
export const STORE_FILE_NAME = 'agentgate.db';

/**
 * How long a writer waits for the lock before `AG_ERR_STORE_BUSY`. Writes are short (one row or a few),
 * so 5 s of waiting means something is wrong, not merely busy.
 */
export const DEFAULT_BUSY_TIMEOUT_MS = 5000;

export interface SqliteOpenOptions {
  /** `$AGENTGATE_HOME`: the database is `<home>/agentgate.db`. Ignored when `path` is given. */
  readonly home?: string;
  /** The database file, or `:memory:` (one private database per connection). */
  readonly path?: string;
  /** The store's clock: default timestamps and lease expiry (fencing compares against it). */
  readonly clock?: () => Date;
  readonly busyTimeoutMs?: number;
}

type TransactionWrapper = (fn: () => unknown) => unknown;

export class SqliteDatabase {
  /** The database file (or `:memory:`). */
  readonly path: string;
  readonly connection: Database.Database;
  readonly clock: () => Date;
  private closed = false;
  /** Cached wrappers: `db.transaction()` builds new functions on every call, measurable on the event hot path. */
  private readonly immediate: TransactionWrapper;
  private readonly deferred: TransactionWrapper;

  private constructor(connection: Database.Database, path: string, clock: () => Date) {
    this.connection = connection;
    this.path = path;
    this.clock = clock;
    const wrapper = connection.transaction((fn: () => unknown): unknown => fn());
    this.immediate = wrapper.immediate;
    this.deferred = wrapper.deferred;
  }

  /**
   * Opens (creating if needed) the database, applies the connection pragmas and runs pending
   * migrations. Pragmas: `journal_mode=WAL` (readers never block the writer, and the event stream can be
   * read while a run writes), `synchronous=NORMAL` (durable across process crashes; with WAL only an OS
   * crash or power loss can lose the last commits, never corrupt the file — see
   * https://www.sqlite.org/pragma.html#pragma_synchronous), `foreign_keys=ON`, `busy_timeout`.
   * @throws AG_ERR_CONFIG_INVALID (neither home nor path, bad busy timeout), AG_ERR_STORE_OPEN,
   *   AG_ERR_STORE_MIGRATION.
   */
  static open(options: SqliteOpenOptions): SqliteDatabase {
    const path = resolvePath(options);
    const clock = options.clock ?? (() => new Date());
    const busyTimeoutMs = options.busyTimeoutMs ?? DEFAULT_BUSY_TIMEOUT_MS;
    if (!Number.isInteger(busyTimeoutMs) || busyTimeoutMs < 0) {
      throw new AgentGateError('AG_ERR_CONFIG_INVALID', `busyTimeoutMs: must be a non-negative integer, got ${String(busyTimeoutMs)}`);
    }
    const inMemory = path === ':memory:';

    let connection: Database.Database;
    try {
      if (!inMemory) mkdirSync(dirname(path), { recursive: true });
      connection = new Database(path, { timeout: busyTimeoutMs });
    } catch (err) {
      throw new AgentGateError('AG_ERR_STORE_OPEN', `Could not open the store at ${path}`, { cause: err, details: { path } });
    }

    try {
      connection.pragma(`busy_timeout = ${busyTimeoutMs}`);
      const mode: unknown = connection.pragma('journal_mode = WAL', { simple: true });
      if (mode !== 'wal' && !(inMemory && mode === 'memory')) {
        throw new AgentGateError('AG_ERR_STORE_OPEN', `The store at ${path} cannot use WAL journaling (got ${String(mode)})`, {
          details: { path, journalMode: String(mode) },
        });
      }
      connection.pragma('synchronous = NORMAL');
      connection.pragma('foreign_keys = ON');
      migrate(connection, { clock });
      return new SqliteDatabase(connection, path, clock);
    } catch (err) {
      connection.close();
      if (err instanceof AgentGateError) throw err;
      throw new AgentGateError('AG_ERR_STORE_OPEN', `Could not configure the store at ${path}`, { cause: err, details: { path } });
    }
  }

  /** The store clock as an ISO timestamp. */
  now(): string {
    return this.clock().toISOString();
  }

  /** A single read statement (SQLite makes one statement its own snapshot). */
  read<T>(operation: string, fn: () => T): T {
    this.ensureOpen();
    try {
      return fn();
    } catch (err) {
      throw translateSqliteError(err, operation);
    }
  }

  /**
   * A write: one `BEGIN IMMEDIATE` transaction (see the module comment), or a savepoint when nested.
   * Whatever `fn` throws rolls everything back and is rethrown (a `SqliteError` translated).
   */
  write<T>(operation: string, fn: () => T): T {
    return this.inTransaction(this.immediate, operation, fn);
  }

  /** Several reads that must agree (a page and its total): one read transaction, i.e. one WAL snapshot. */
  snapshot<T>(operation: string, fn: () => T): T {
    return this.inTransaction(this.deferred, operation, fn);
  }

  /** Closes the connection. Idempotent; any later call fails with AG_ERR_STORE_OPEN. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.connection.close();
  }

  private ensureOpen(): void {
    if (this.closed) throw new AgentGateError('AG_ERR_STORE_OPEN', `The store at ${this.path} is closed`, { details: { path: this.path } });
  }

  private inTransaction<T>(wrapper: TransactionWrapper, operation: string, fn: () => T): T {
    this.ensureOpen();
    try {
      let outcome: { value: T } | undefined;
      wrapper(() => {
        outcome = { value: fn() };
        // Returned so better-sqlite3 sees a promise from an async callback, rejects it and rolls back.
        return outcome.value;
      });
      if (outcome === undefined) throw new AgentGateError('AG_ERR_INTERNAL', `Store ${operation} committed without running`);
      return outcome.value;
    } catch (err) {
      throw translateSqliteError(err, operation);
    }
  }
}

function resolvePath(options: SqliteOpenOptions): string {
  if (options.path !== undefined) return options.path;
  if (options.home !== undefined) return join(options.home, STORE_FILE_NAME);
  throw new AgentGateError('AG_ERR_CONFIG_INVALID', 'The SQLite store needs either `home` or `path`');
}
