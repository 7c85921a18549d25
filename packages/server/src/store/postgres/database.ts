/**
 * One node-postgres pool with the store's connection settings, migrations and error translation, and the
 * transaction helpers every PostgreSQL repository writes through.
 *
 * Every write is one transaction at READ COMMITTED with explicit row locks, the PostgreSQL form of what
 * SQLite's `BEGIN IMMEDIATE` gives: a write first locks the row it depends on (`SELECT … FOR NO KEY
 * UPDATE` on the run or work order, `FOR UPDATE` on the lease that fences it), and only then reads what it
 * decides on — the run's state, the last event seq, the lease's owner and expiry. Two writers of one run,
 * in this process or another one, therefore queue on the row lock: they can never both read seq 41 and
 * both write 42, and a lease cannot change hands between its fencing check and the write it guards.
 * READ COMMITTED takes a new snapshot per statement, so a statement run after the lock was granted sees
 * everything the previous holder committed. Writers of different runs do not wait for each other.
 *
 * Unlike better-sqlite3, a transaction here spans `await`s, but never a caller's: each repository method
 * is one transaction from BEGIN to COMMIT on its own pooled connection, so other JavaScript of this
 * process may run in between without seeing or changing its rows.
 */
import pg from 'pg';
import { AgentGateError } from '../../errors.js';
import { translatePostgresError } from './errors.js';

/**
 * The database clock in epoch milliseconds: one clock for every process sharing the database, used for
 * lease expiry and fencing unless a clock was injected (tests). `clock_timestamp()`, not `now()`: the
 * time when the statement runs, not when its transaction began (a write may have waited for a lock).
 */
export const DB_NOW_MS = 'floor(extract(epoch from clock_timestamp()) * 1000)::bigint';

/** The database clock as the ISO string JavaScript's `toISOString()` gives (UTC, milliseconds, `Z`). */
export const DB_NOW_ISO = `to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')`;

/** A query parameter: the store passes only these, already serialised (JSON is text). */
export type SqlValue = string | number | boolean | null | readonly (string | null)[];

/** How long a writer waits for a row lock before the retryable `AG_ERR_STORE_BUSY` (SQLite's busy timeout). */
export const DEFAULT_LOCK_TIMEOUT_MS = 5000;

export interface PostgresPoolOptions {
  /** Connections at most (default 10). */
  readonly max?: number;
  /**
   * How long a call waits for a connection — a new one, or a free one when all `max` are in use — before
   * `AG_ERR_STORE_UNAVAILABLE` (default 5000 ms).
   */
  readonly connectionTimeoutMs?: number;
  /** An idle connection is closed after this long (default 30000 ms). */
  readonly idleTimeoutMs?: number;
}

export interface PostgresConnectOptions {
  /** `postgres://user:password@host:port/database` (libpq-style parameters such as `?sslmode=` allowed). */
  readonly url: string;
  /**
   * The store's clock for default timestamps, lease expiry and fencing. Default: the database's clock
   * (one clock for all processes). Inject one only in tests.
   */
  readonly clock?: () => Date;
  readonly pool?: PostgresPoolOptions;
  /** Default {@link DEFAULT_LOCK_TIMEOUT_MS}. */
  readonly lockTimeoutMs?: number;
  /**
   * Receives connection errors no call was waiting for: an idle pooled connection the server closed
   * (restart, fail-over). The pool drops that connection and opens a new one when needed. Default: a
   * process warning.
   */
  readonly onConnectionError?: (error: AgentGateError) => void;
}

/** The URL without password or parameters, for messages and logs: `postgres://user@host:port/db`. */
export function describePostgresUrl(url: string): string {
  const parsed = URL.canParse(url) ? new URL(url) : undefined;
  if (parsed === undefined || (parsed.protocol !== 'postgres:' && parsed.protocol !== 'postgresql:')) {
    // The value is not echoed: it may hold a password.
    throw new AgentGateError('AG_ERR_CONFIG_INVALID', 'The PostgreSQL store needs a postgres:// or postgresql:// URL');
  }
  const user = parsed.username === '' ? '' : `${decodeURIComponent(parsed.username)}@`;
  return `postgres://${user}${parsed.host}${parsed.pathname}`;
}

function integerOption(value: number | undefined, name: string, min: number): void {
  if (value !== undefined && (!Number.isInteger(value) || value < min)) {
    throw new AgentGateError('AG_ERR_CONFIG_INVALID', `${name}: must be an integer >= ${min}, got ${String(value)}`);
  }
}

/** One transaction's connection: queries with error translation, and the store clock for this transaction. */
export class PgTx {
  private dbNowMs: number | undefined;

  constructor(
    private readonly client: pg.PoolClient,
    private readonly db: PostgresDatabase,
    readonly operation: string,
  ) {}

  async rows<R extends pg.QueryResultRow>(text: string, values: readonly SqlValue[] = []): Promise<R[]> {
    try {
      return (await this.client.query<R>(text, [...values])).rows;
    } catch (err) {
      throw translatePostgresError(err, this.operation);
    }
  }

  async first<R extends pg.QueryResultRow>(text: string, values: readonly SqlValue[] = []): Promise<R | undefined> {
    return (await this.rows<R>(text, values))[0];
  }

  /** The store clock in epoch ms: the injected clock, else the database's, read once per transaction. */
  async nowMs(): Promise<number> {
    const injected = this.db.injectedNowMs();
    if (injected !== null) return injected;
    if (this.dbNowMs === undefined) {
      const row = await this.first<{ ms: number }>(`SELECT ${DB_NOW_MS}::float8 AS ms`);
      if (row === undefined) throw new AgentGateError('AG_ERR_INTERNAL', 'SELECT of the database clock returned no row');
      this.dbNowMs = row.ms;
    }
    return this.dbNowMs;
  }

  async nowIso(): Promise<string> {
    return new Date(await this.nowMs()).toISOString();
  }

  /** Keeps a database-clock reading a statement returned anyway (the fencing check), saving a round trip. */
  rememberDbNow(ms: number): void {
    if (this.db.injectedNowMs() === null) this.dbNowMs ??= ms;
  }
}

export class PostgresDatabase {
  /** The database without credentials, `postgres://user@host:port/db`. */
  readonly location: string;
  private readonly pool: pg.Pool;
  private readonly clock: (() => Date) | undefined;
  private closing: Promise<void> | undefined;
  /** Where connection errors no call was waiting for go (see {@link PostgresConnectOptions.onConnectionError}). */
  readonly reportConnectionError: (error: AgentGateError) => void;

  /** Creates the pool; no connection is made until the first call (see `openPostgresRepositories`). */
  constructor(options: PostgresConnectOptions) {
    this.location = describePostgresUrl(options.url);
    const lockTimeoutMs = options.lockTimeoutMs ?? DEFAULT_LOCK_TIMEOUT_MS;
    integerOption(lockTimeoutMs, 'lockTimeoutMs', 0);
    integerOption(options.pool?.max, 'pool.max', 1);
    integerOption(options.pool?.connectionTimeoutMs, 'pool.connectionTimeoutMs', 0);
    integerOption(options.pool?.idleTimeoutMs, 'pool.idleTimeoutMs', 0);
    this.clock = options.clock;
    this.pool = new pg.Pool({
      connectionString: options.url,
      max: options.pool?.max ?? 10,
      connectionTimeoutMillis: options.pool?.connectionTimeoutMs ?? 5000,
      idleTimeoutMillis: options.pool?.idleTimeoutMs ?? 30_000,
      application_name: 'agentgate',
      // TCP keep-alive notices a server that vanished (network partition) instead of waiting forever.
      keepAlive: true,
      lock_timeout: lockTimeoutMs,
      // Every statement touches a few rows by key; one running this long is stuck (AG_ERR_STORE_BUSY).
      statement_timeout: 30_000,
      // A transaction is one repository call; one left open this long means its process hung or died.
      idle_in_transaction_session_timeout: 60_000,
    });
    this.reportConnectionError = options.onConnectionError ?? ((error: AgentGateError) => process.emitWarning(error.message, { code: error.code }));
    // Without a listener an idle connection's error (the server restarted) would crash the process.
    this.pool.on('error', (err) => this.reportConnectionError(translatePostgresError(err, 'idle connection')));
  }

  /** The injected clock's time, or null when the database's clock is the store's clock. */
  injectedNowMs(): number | null {
    return this.clock === undefined ? null : this.clock().getTime();
  }

  injectedNowIso(): string | null {
    return this.clock === undefined ? null : this.clock().toISOString();
  }

  /** One statement on any pooled connection, in its own transaction (one statement is its own snapshot). */
  async query<R extends pg.QueryResultRow>(operation: string, text: string, values: readonly SqlValue[] = []): Promise<R[]> {
    this.ensureOpen();
    try {
      return (await this.pool.query<R>(text, [...values])).rows;
    } catch (err) {
      throw translatePostgresError(err, operation);
    }
  }

  /** A write: one READ COMMITTED transaction with explicit row locks (see the module comment). */
  async write<T>(operation: string, fn: (tx: PgTx) => Promise<T>): Promise<T> {
    return this.transaction(operation, 'BEGIN', fn);
  }

  /** Several reads that must agree (a page and its total): one REPEATABLE READ snapshot. */
  async snapshot<T>(operation: string, fn: (tx: PgTx) => Promise<T>): Promise<T> {
    return this.transaction(operation, 'BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY', fn);
  }

  async ping(): Promise<void> {
    await this.query('ping', 'SELECT 1');
  }

  /** Ends the pool (idempotent); any later call fails with AG_ERR_STORE_OPEN. */
  close(): Promise<void> {
    this.closing ??= this.pool.end().catch((err: unknown) => {
      throw translatePostgresError(err, 'close');
    });
    return this.closing;
  }

  private ensureOpen(): void {
    if (this.closing !== undefined) {
      throw new AgentGateError('AG_ERR_STORE_OPEN', `The store at ${this.location} is closed`, { details: { location: this.location } });
    }
  }

  /**
   * BEGIN, `fn`, COMMIT on one connection; whatever fails rolls back and is rethrown. A connection that
   * failed (or whose ROLLBACK failed) is destroyed, not returned to the pool.
   */
  private async transaction<T>(operation: string, begin: string, fn: (tx: PgTx) => Promise<T>): Promise<T> {
    this.ensureOpen();
    let client: pg.PoolClient;
    try {
      client = await this.pool.connect();
    } catch (err) {
      throw translatePostgresError(err, operation);
    }
    let broken = false;
    // While checked out the pool does not listen: the socket's error is also the failing query's error.
    const onError = (): void => {
      broken = true;
    };
    client.on('error', onError);
    const tx = new PgTx(client, this, operation);
    try {
      await tx.rows(begin);
      const value = await fn(tx);
      await tx.rows('COMMIT');
      return value;
    } catch (err) {
      if (err instanceof AgentGateError && err.code === 'AG_ERR_STORE_UNAVAILABLE') broken = true;
      if (!broken) {
        try {
          await client.query('ROLLBACK');
        } catch {
          // The connection cannot roll back: destroying it makes the server roll the transaction back.
          broken = true;
        }
      }
      throw err;
    } finally {
      client.off('error', onError);
      client.release(broken);
    }
  }
}
