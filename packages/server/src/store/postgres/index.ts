/**
 * The network backend of the repository contract (`store/repositories.ts`): PostgreSQL through a
 * node-postgres pool (SPEC sections 13 and 16). Several processes — on one host or many — share one
 * database: every rule the contract states (terminal is final, fencing, gap-free seqs, version-checked
 * commits, the claim and the exclusive key) is enforced inside the database's transactions, so it holds
 * across processes, not only within one.
 */
import type { Repositories } from '../repositories.js';
import { PostgresDatabase, type PostgresConnectOptions } from './database.js';
import { translatePostgresError } from './errors.js';
import { PostgresIterationRepository } from './iteration-repository.js';
import { PostgresLeaseRepository } from './lease-repository.js';
import { migratePostgres, type PostgresMigration } from './migrations.js';
import { PostgresRunRepository } from './run-repository.js';
import { PostgresWorkOrderRepository } from './work-order-repository.js';

export { DEFAULT_LOCK_TIMEOUT_MS, describePostgresUrl } from './database.js';
export type { PostgresConnectOptions, PostgresPoolOptions } from './database.js';
export { classifyPostgresCode, translatePostgresError } from './errors.js';
export { MIGRATION_LOCK_KEY, POSTGRES_MIGRATIONS, POSTGRES_SCHEMA_VERSION, migratePostgres } from './migrations.js';
export type { PostgresMigrateResult, PostgresMigration } from './migrations.js';

export interface PostgresOpenOptions extends PostgresConnectOptions {
  /** The migration list; tests pass their own. Defaults to {@link POSTGRES_MIGRATIONS}. */
  readonly migrations?: readonly PostgresMigration[];
}

export interface PostgresRepositories extends Repositories {
  /** The database without credentials: `postgres://user@host:port/db`. */
  readonly location: string;
  /** Readiness: resolves when the database answers a query. @throws AG_ERR_STORE_UNAVAILABLE, AG_ERR_STORE_OPEN */
  ping(): Promise<void>;
}

/**
 * Connects, brings the schema up to date (safe when several processes start at once) and returns the
 * repositories. The pool reconnects by itself: after the server restarts, calls that failed with the
 * retryable `AG_ERR_STORE_UNAVAILABLE` succeed again once it is back.
 * @throws AG_ERR_CONFIG_INVALID (not a postgres:// URL, bad option), AG_ERR_STORE_UNAVAILABLE (server
 *   unreachable), AG_ERR_STORE_OPEN (database missing, credentials refused), AG_ERR_STORE_MIGRATION.
 */
export async function openPostgresRepositories(options: PostgresOpenOptions): Promise<PostgresRepositories> {
  const db = new PostgresDatabase(options);
  try {
    await migratePostgres(db, options.migrations);
  } catch (err) {
    await closeAfterFailedOpen(db);
    throw err;
  }
  const leases = new PostgresLeaseRepository(db);
  const workOrders = new PostgresWorkOrderRepository(db);
  const runs = new PostgresRunRepository(db, workOrders, leases);
  const iterations = new PostgresIterationRepository(db, runs);
  return {
    location: db.location,
    workOrders,
    runs,
    iterations,
    leases,
    ping: () => db.ping(),
    close: () => db.close(),
  };
}

/** The open's own error is what the caller needs; a failure to end the pool as well is reported aside. */
async function closeAfterFailedOpen(db: PostgresDatabase): Promise<void> {
  try {
    await db.close();
  } catch (closeError) {
    db.reportConnectionError(translatePostgresError(closeError, 'close'));
  }
}
