/**
 * Versioned schema migrations of the SQLite store.
 *
 * Migrations are an ordered, append-only list: a released migration is never edited, a schema change
 * is a new entry. {@link migrate} applies the pending ones, each in its own `BEGIN IMMEDIATE`
 * transaction that also records it in `schema_migrations` and sets `PRAGMA user_version` (both are
 * transactional in SQLite). A failing migration therefore rolls back completely and leaves the
 * database at the previous version; the next start retries it. Two processes starting at once are
 * safe: the second waits for the first's transaction and then sees the migration as applied.
 */
import type Database from 'better-sqlite3';
import { AgentGateError } from '../errors.js';

export interface Migration {
  /** 1, 2, 3 … contiguous. Also written to `PRAGMA user_version`. */
  readonly version: number;
  readonly name: string;
  /** Runs inside the migration's transaction; must be synchronous. */
  readonly up: (db: Database.Database) => void;
}

/** Migration 1: the core schema. */
const coreSchema: Migration = {
  version: 1,
  name: 'core_schema',
  up(db) {
    db.exec(`
      CREATE TABLE work_orders (
        id           TEXT PRIMARY KEY,
        status       TEXT NOT NULL,
        source       TEXT NOT NULL CHECK (source IN ('task_spec', 'work_order')),
        spec_json    TEXT NOT NULL,
        request_json TEXT,
        created_at   TEXT NOT NULL,
        updated_at   TEXT NOT NULL
      );
      CREATE INDEX work_orders_created_idx ON work_orders (created_at);
      CREATE INDEX work_orders_status_idx ON work_orders (status, created_at);

      CREATE TABLE runs (
        id             TEXT PRIMARY KEY,
        work_order_id  TEXT NOT NULL REFERENCES work_orders (id),
        state          TEXT NOT NULL,
        iteration      INTEGER NOT NULL CHECK (iteration >= 1),
        max_iterations INTEGER NOT NULL CHECK (max_iterations >= 1),
        result         TEXT,
        error_json     TEXT,
        branch         TEXT,
        data_json      TEXT NOT NULL DEFAULT '{}',
        version        INTEGER NOT NULL DEFAULT 1,
        created_at     TEXT NOT NULL,
        updated_at     TEXT NOT NULL,
        completed_at   TEXT
      );
      CREATE INDEX runs_work_order_idx ON runs (work_order_id, created_at);
      CREATE INDEX runs_state_idx ON runs (state, created_at);
      CREATE INDEX runs_created_idx ON runs (created_at);

      CREATE TABLE iterations (
        run_id       TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        iteration    INTEGER NOT NULL CHECK (iteration >= 1),
        data_json    TEXT NOT NULL,
        started_at   TEXT NOT NULL,
        completed_at TEXT,
        PRIMARY KEY (run_id, iteration)
      ) WITHOUT ROWID;

      CREATE TABLE events (
        run_id        TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        seq           INTEGER NOT NULL CHECK (seq >= 1),
        work_order_id TEXT NOT NULL,
        type          TEXT NOT NULL,
        timestamp     TEXT NOT NULL,
        data_json     TEXT NOT NULL,
        PRIMARY KEY (run_id, seq)
      ) WITHOUT ROWID;
      CREATE INDEX events_work_order_idx ON events (work_order_id, timestamp);

      CREATE TABLE work_order_events (
        work_order_id TEXT NOT NULL REFERENCES work_orders (id) ON DELETE CASCADE,
        seq           INTEGER NOT NULL CHECK (seq >= 1),
        type          TEXT NOT NULL,
        timestamp     TEXT NOT NULL,
        data_json     TEXT NOT NULL,
        PRIMARY KEY (work_order_id, seq)
      ) WITHOUT ROWID;
    `);
  },
};

/**
 * Migration 2: leases (SPEC sections 8 and 14). Times are epoch milliseconds so expiry is a numeric
 * comparison; `run_id` has no foreign key so a lease can be taken before its run row is written.
 */
const leases: Migration = {
  version: 2,
  name: 'leases',
  up(db) {
    db.exec(`
      CREATE TABLE leases (
        key          TEXT PRIMARY KEY,
        owner        TEXT NOT NULL,
        run_id       TEXT NOT NULL,
        expires_at   INTEGER NOT NULL,
        heartbeat_at INTEGER NOT NULL
      );
      CREATE INDEX leases_expires_idx ON leases (expires_at);
      CREATE INDEX leases_run_idx ON leases (run_id);
    `);
  },
};

/**
 * Migration 3: the exclusive key of `runs.create({ exclusiveKey })` (a repository + branch). The partial
 * unique index holds only runs that are not terminal, so a second live run with the same key cannot be
 * inserted (`AG_ERR_RUN_EXCLUSIVE_BUSY`), and the key is free again the moment its run becomes terminal —
 * the index, not application code, keeps the rule for every connection and process.
 */
const runExclusiveKey: Migration = {
  version: 3,
  name: 'run_exclusive_key',
  up(db) {
    db.exec(`
      ALTER TABLE runs ADD COLUMN exclusive_key TEXT;
      CREATE UNIQUE INDEX runs_exclusive_key_idx ON runs (exclusive_key)
        WHERE exclusive_key IS NOT NULL AND state NOT IN ('succeeded', 'failed', 'canceled');
    `);
  },
};

/** Every migration, in order. Append only. */
export const MIGRATIONS: readonly Migration[] = [coreSchema, leases, runExclusiveKey];

/** The schema version this build writes. */
export const LATEST_SCHEMA_VERSION: number = MIGRATIONS.length;

export interface MigrateOptions {
  /** The migration list; tests pass their own. Defaults to {@link MIGRATIONS}. */
  readonly migrations?: readonly Migration[];
  /** Stop after this version (tests build older databases with it). Defaults to the last migration. */
  readonly targetVersion?: number;
  /** Clock for `schema_migrations.applied_at`. */
  readonly clock?: () => Date;
}

export interface MigrateResult {
  readonly from: number;
  readonly to: number;
  readonly applied: readonly number[];
}

/** The database's schema version (`PRAGMA user_version`; 0 for a new file). */
export function getSchemaVersion(db: Database.Database): number {
  const value: unknown = db.pragma('user_version', { simple: true });
  if (typeof value !== 'number') {
    throw new AgentGateError('AG_ERR_STORE_MIGRATION', 'PRAGMA user_version did not return a number');
  }
  return value;
}

function checkOrder(migrations: readonly Migration[]): void {
  migrations.forEach((migration, index) => {
    if (migration.version !== index + 1) {
      throw new AgentGateError(
        'AG_ERR_INTERNAL',
        `Migrations must be numbered 1, 2, 3 … in order; position ${index + 1} has version ${migration.version}`,
      );
    }
  });
}

/**
 * Brings the schema up to date. Each pending migration runs in its own `BEGIN IMMEDIATE`
 * transaction, together with its `schema_migrations` row and the `user_version` bump.
 * @throws AgentGateError `AG_ERR_STORE_MIGRATION` naming the version that failed (the database keeps
 * the previous version), or when the database is newer than this build.
 */
export function migrate(db: Database.Database, options: MigrateOptions = {}): MigrateResult {
  const migrations = options.migrations ?? MIGRATIONS;
  checkOrder(migrations);
  const target = options.targetVersion ?? migrations.length;
  const clock = options.clock ?? (() => new Date());

  const from = getSchemaVersion(db);
  if (from > migrations.length) {
    throw new AgentGateError(
      'AG_ERR_STORE_MIGRATION',
      `Database schema version ${from} is newer than this build supports (${migrations.length}); upgrade AgentGate`,
      { details: { version: from, supported: migrations.length } },
    );
  }

  db.exec(`CREATE TABLE IF NOT EXISTS schema_migrations (
    version    INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    applied_at TEXT NOT NULL
  )`);
  const record = db.prepare<[number, string, string]>('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)');

  const applied: number[] = [];
  for (const migration of migrations) {
    if (migration.version > target) break;
    const apply = db.transaction((): boolean => {
      // Re-read inside the write lock: another process may have applied it while we waited.
      if (getSchemaVersion(db) >= migration.version) return false;
      migration.up(db);
      record.run(migration.version, migration.name, clock().toISOString());
      db.pragma(`user_version = ${migration.version}`);
      return true;
    });
    try {
      if (apply.immediate()) applied.push(migration.version);
    } catch (err) {
      throw new AgentGateError(
        'AG_ERR_STORE_MIGRATION',
        `Migration ${migration.version} (${migration.name}) failed and was rolled back`,
        { cause: err, details: { version: migration.version, name: migration.name } },
      );
    }
  }
  return { from, to: getSchemaVersion(db), applied };
}
