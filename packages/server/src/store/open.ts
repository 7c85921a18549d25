/**
 * Which backend a process uses: PostgreSQL when a database URL is configured (`AGENTGATE_DATABASE_URL`),
 * else the embedded SQLite file in `$AGENTGATE_HOME`. The runtime and the CLI commands that read the
 * store open it here, so they always agree on where the data is.
 *
 * Each backend's module is imported only when it is chosen: a process on SQLite never loads `pg` and
 * the PostgreSQL backend (~55–80 ms of start-up for every CLI run, docs/performance.md), and one on
 * PostgreSQL never loads better-sqlite3.
 */
import type { AgentGateError } from '../errors.js';
import type { Repositories } from './repositories.js';

/** The repositories of either backend, with what a process needs around them. */
export interface OpenedRepositories extends Repositories {
  /** Which store this is, without credentials: `sqlite:<path>` or `postgres://user@host:port/db`. */
  readonly location: string;
  /** Readiness: resolves when the store answers a query. */
  ping(): Promise<void>;
}

export interface OpenRepositoriesOptions {
  /** `$AGENTGATE_HOME`: the SQLite file is `<home>/agentgate.db`. */
  readonly home: string;
  /** A `postgres://` URL selects PostgreSQL. */
  readonly databaseUrl?: string;
  /**
   * The store's clock. SQLite uses it always; PostgreSQL only when given — otherwise the database's clock,
   * the one clock every process sharing the database agrees on.
   */
  readonly clock?: () => Date;
  /** PostgreSQL: where connection errors no call was waiting for go (an idle connection the server closed). */
  readonly onConnectionError?: (error: AgentGateError) => void;
}

export async function openRepositories(options: OpenRepositoriesOptions): Promise<OpenedRepositories> {
  if (options.databaseUrl !== undefined) {
    const { openPostgresRepositories } = await import('./postgres/index.js');
    return openPostgresRepositories({
      url: options.databaseUrl,
      ...(options.clock === undefined ? {} : { clock: options.clock }),
      ...(options.onConnectionError === undefined ? {} : { onConnectionError: options.onConnectionError }),
    });
  }
  const { openSqliteRepositories } = await import('./sqlite/index.js');
  return openSqliteRepositories({ home: options.home, ...(options.clock === undefined ? {} : { clock: options.clock }) });
}
