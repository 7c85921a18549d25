/**
 * Versioned schema migrations of the PostgreSQL store, separate from SQLite's (store/migrations.ts): the
 * two schemas hold the same tables and columns but are written in each database's own SQL.
 *
 * Migrations are an ordered, append-only list: a released migration is never edited. The applied ones
 * are rows of `schema_migrations`; the schema version is the highest. Each pending migration runs in its
 * own transaction together with its row, holding the transaction-scoped advisory lock
 * {@link MIGRATION_LOCK_KEY}: several processes starting at once queue on the lock, and each re-reads
 * the version once it holds it, so every migration is applied exactly once. A failing migration rolls
 * back completely (PostgreSQL's DDL is transactional) and fails start-up with `AG_ERR_STORE_MIGRATION`
 * naming it; a database written by a newer build is refused.
 *
 * Column choices, for every table: ids and timestamps are `text COLLATE "C"`, so they sort byte-wise as
 * in SQLite whatever the database's locale (a locale collation ignores punctuation such as `-`), and
 * timestamps come back exactly as written — ISO strings, compared by the contract as strings. JSON is
 * `text` holding `JSON.stringify` output, not `jsonb`: it round-trips byte for byte (jsonb rewrites
 * numbers and key order, and refuses the escaped NUL `\u0000` agent output may contain), and the store
 * never queries inside it. Lease times are epoch milliseconds in `bigint`, compared with the database
 * clock.
 */
import { AgentGateError } from '../../errors.js';
import type { PgTx, PostgresDatabase } from './database.js';

export interface PostgresMigration {
  /** 1, 2, 3 … contiguous. */
  readonly version: number;
  readonly name: string;
  /** Statements run in the migration's transaction (no parameters). */
  readonly sql: string;
}

/** Key of `pg_advisory_xact_lock` serialising migrations ("AGMI"); any constant shared by every build works. */
export const MIGRATION_LOCK_KEY = 0x41474d49;

/** Migration 1: the whole schema of SQLite's migrations 1–3 (core tables, leases, the run exclusive key). */
const coreSchema: PostgresMigration = {
  version: 1,
  name: 'core_schema',
  sql: `
    CREATE TABLE work_orders (
      id           text COLLATE "C" PRIMARY KEY,
      insert_order bigint GENERATED ALWAYS AS IDENTITY,
      status       text NOT NULL,
      source       text NOT NULL CHECK (source IN ('task_spec', 'work_order')),
      spec_json    text NOT NULL,
      request_json text,
      created_at   text COLLATE "C" NOT NULL,
      updated_at   text COLLATE "C" NOT NULL
    );
    CREATE INDEX work_orders_created_idx ON work_orders (created_at, id);
    CREATE INDEX work_orders_status_idx ON work_orders (status, created_at);
    CREATE INDEX work_orders_queued_idx ON work_orders (updated_at, insert_order) WHERE status = 'queued';

    CREATE TABLE runs (
      id             text COLLATE "C" PRIMARY KEY,
      work_order_id  text COLLATE "C" NOT NULL REFERENCES work_orders (id),
      state          text NOT NULL,
      iteration      integer NOT NULL CHECK (iteration >= 1),
      max_iterations integer NOT NULL CHECK (max_iterations >= 1),
      result         text,
      error_json     text,
      branch         text,
      data_json      text NOT NULL DEFAULT '{}',
      version        integer NOT NULL DEFAULT 1,
      exclusive_key  text,
      created_at     text COLLATE "C" NOT NULL,
      updated_at     text COLLATE "C" NOT NULL,
      completed_at   text COLLATE "C"
    );
    CREATE INDEX runs_work_order_idx ON runs (work_order_id, created_at);
    CREATE INDEX runs_state_idx ON runs (state, created_at);
    CREATE INDEX runs_created_idx ON runs (created_at, id);
    CREATE UNIQUE INDEX runs_exclusive_key_idx ON runs (exclusive_key)
      WHERE exclusive_key IS NOT NULL AND state NOT IN ('succeeded', 'failed', 'canceled');

    CREATE TABLE iterations (
      run_id       text COLLATE "C" NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
      iteration    integer NOT NULL CHECK (iteration >= 1),
      data_json    text NOT NULL,
      started_at   text NOT NULL,
      completed_at text,
      PRIMARY KEY (run_id, iteration)
    );

    CREATE TABLE events (
      run_id        text COLLATE "C" NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
      seq           integer NOT NULL CHECK (seq >= 1),
      work_order_id text COLLATE "C" NOT NULL,
      type          text NOT NULL,
      timestamp     text COLLATE "C" NOT NULL,
      data_json     text NOT NULL,
      PRIMARY KEY (run_id, seq)
    );
    CREATE INDEX events_work_order_idx ON events (work_order_id, timestamp);

    CREATE TABLE work_order_events (
      work_order_id text COLLATE "C" NOT NULL REFERENCES work_orders (id) ON DELETE CASCADE,
      seq           integer NOT NULL CHECK (seq >= 1),
      type          text NOT NULL,
      timestamp     text NOT NULL,
      data_json     text NOT NULL,
      PRIMARY KEY (work_order_id, seq)
    );

    CREATE TABLE leases (
      key          text COLLATE "C" PRIMARY KEY,
      owner        text NOT NULL,
      run_id       text NOT NULL,
      expires_at   bigint NOT NULL,
      heartbeat_at bigint NOT NULL
    );
    CREATE INDEX leases_expires_idx ON leases (expires_at, key);
    CREATE INDEX leases_run_idx ON leases (run_id);
  `,
};

/** Every migration, in order. Append only. */
export const POSTGRES_MIGRATIONS: readonly PostgresMigration[] = [coreSchema];

/** The schema version this build writes. */
export const POSTGRES_SCHEMA_VERSION: number = POSTGRES_MIGRATIONS.length;

export interface PostgresMigrateResult {
  readonly from: number;
  readonly to: number;
  readonly applied: readonly number[];
}

function checkOrder(migrations: readonly PostgresMigration[]): void {
  migrations.forEach((migration, index) => {
    if (migration.version !== index + 1) {
      throw new AgentGateError(
        'AG_ERR_INTERNAL',
        `Migrations must be numbered 1, 2, 3 … in order; position ${index + 1} has version ${migration.version}`,
      );
    }
  });
}

/** Under the migration lock: creates the bookkeeping table if needed and returns the schema version. */
async function lockedVersion(tx: PgTx, supported: number): Promise<number> {
  await tx.rows('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK_KEY]);
  await tx.rows(`CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
  )`);
  const row = await tx.first<{ version: number }>('SELECT COALESCE(MAX(version), 0)::int AS version FROM schema_migrations');
  const version = row?.version ?? 0;
  if (version > supported) {
    throw new AgentGateError(
      'AG_ERR_STORE_MIGRATION',
      `Database schema version ${version} is newer than this build supports (${supported}); upgrade AgentGate`,
      { details: { version, supported } },
    );
  }
  return version;
}

/**
 * Brings the schema up to date (see the module comment).
 * @throws AG_ERR_STORE_MIGRATION naming the version that failed, or when the database is newer than
 *   this build; AG_ERR_STORE_UNAVAILABLE / AG_ERR_STORE_OPEN when the database cannot be reached.
 */
export async function migratePostgres(db: PostgresDatabase, migrations: readonly PostgresMigration[] = POSTGRES_MIGRATIONS): Promise<PostgresMigrateResult> {
  checkOrder(migrations);
  const from = await db.write('migrate', (tx) => lockedVersion(tx, migrations.length));
  const applied: number[] = [];
  for (const migration of migrations) {
    if (migration.version <= from) continue;
    const didApply = await db.write(`migration ${migration.version}`, async (tx) => {
      // Re-read under the lock: another process may have applied it while this one waited.
      if ((await lockedVersion(tx, migrations.length)) >= migration.version) return false;
      try {
        await tx.rows(migration.sql);
      } catch (err) {
        if (err instanceof AgentGateError && err.code === 'AG_ERR_STORE_UNAVAILABLE') throw err;
        throw new AgentGateError('AG_ERR_STORE_MIGRATION', `Migration ${migration.version} (${migration.name}) failed and was rolled back`, {
          cause: err,
          details: { version: migration.version, name: migration.name },
        });
      }
      await tx.rows('INSERT INTO schema_migrations (version, name) VALUES ($1, $2)', [migration.version, migration.name]);
      return true;
    });
    if (didApply) applied.push(migration.version);
  }
  // Every migration up to the last is applied now, by this process or another one.
  return { from, to: migrations.length, applied };
}
