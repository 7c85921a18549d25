/**
 * The embedded backend of the repository contract (`store/repositories.ts`): one SQLite file in WAL mode
 * (SPEC section 13). Several instances, in one process or many, may share one file.
 */
import type { Repositories } from '../repositories.js';
import { SqliteDatabase, type SqliteOpenOptions } from './database.js';
import { SqliteIterationRepository } from './iteration-repository.js';
import { SqliteLeaseRepository } from './lease-repository.js';
import { SqliteRunRepository } from './run-repository.js';
import { SqliteWorkOrderRepository } from './work-order-repository.js';

export { DEFAULT_BUSY_TIMEOUT_MS, STORE_FILE_NAME, SqliteDatabase } from './database.js';
export type { SqliteOpenOptions } from './database.js';
export { DEFAULT_EVENTS_LIMIT } from '../codec.js';
export { SqliteIterationRepository } from './iteration-repository.js';
export { SqliteLeaseRepository } from './lease-repository.js';
export { SqliteRunRepository } from './run-repository.js';
export { SqliteWorkOrderRepository } from './work-order-repository.js';

export interface SqliteRepositories extends Repositories {
  /** The database file (or `:memory:`). */
  readonly path: string;
  /** `sqlite:<path>`: which store this is, for logs and readiness. */
  readonly location: string;
  /** Readiness: resolves when the database answers a query. @throws AG_ERR_STORE_OPEN once closed */
  ping(): Promise<void>;
}

/**
 * Opens (creating and migrating if needed) the store and returns its repositories. Opening is
 * synchronous so start-up fails fast on a bad path or a failed migration; every repository method
 * returns a promise but runs its better-sqlite3 work synchronously inside one transaction.
 * `{ path }` names the file (or `:memory:`); `{ home }` means `<home>/agentgate.db`.
 * @throws AG_ERR_STORE_OPEN, AG_ERR_STORE_MIGRATION, AG_ERR_CONFIG_INVALID
 */
export function openSqliteRepositories(options: SqliteOpenOptions): SqliteRepositories {
  const db = SqliteDatabase.open(options);
  const leases = new SqliteLeaseRepository(db);
  const workOrders = new SqliteWorkOrderRepository(db);
  const runs = new SqliteRunRepository(db, workOrders, leases);
  const iterations = new SqliteIterationRepository(db, runs);
  let closing: Promise<void> | undefined;
  return {
    path: db.path,
    location: `sqlite:${db.path}`,
    async ping() {
      db.read('ping', () => db.connection.prepare('SELECT 1').get());
    },
    workOrders,
    runs,
    iterations,
    leases,
    close() {
      // Closed synchronously so no call made after close() starts can reach the connection.
      closing ??= new Promise<void>((resolve) => {
        db.close();
        resolve();
      });
      return closing;
    },
  };
}
