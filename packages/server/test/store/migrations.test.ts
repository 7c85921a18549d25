import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { LATEST_SCHEMA_VERSION, MIGRATIONS, getSchemaVersion, migrate, type Migration } from '../../src/store/migrations.js';
import { openSqliteRepositories } from '../../src/store/sqlite/index.js';
import { thrownAgentGateError } from '../helpers/errors.js';
import { TempStores } from './helpers/store-fixture.js';

const temp = new TempStores();
afterEach(() => temp.cleanup());

interface MigrationRow {
  version: number;
  name: string;
}

interface NameRow {
  name: string;
}

function tables(db: Database.Database): string[] {
  return db
    .prepare<[], NameRow>("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
    .all()
    .map((row) => row.name);
}

function appliedMigrations(db: Database.Database): MigrationRow[] {
  return db.prepare<[], MigrationRow>('SELECT version, name FROM schema_migrations ORDER BY version').all();
}

/** A plain better-sqlite3 connection, without the store's pragmas; the caller closes it. */
function raw(path: string): Database.Database {
  return new Database(path);
}

describe('migrate', () => {
  it('brings a new database to the latest version and records every migration', async () => {
    const store = temp.open(await temp.dbPath());
    await store.close();
    const db = raw(store.path);
    try {
      expect(getSchemaVersion(db)).toBe(LATEST_SCHEMA_VERSION);
      expect(LATEST_SCHEMA_VERSION).toBeGreaterThanOrEqual(2);
      expect(appliedMigrations(db)).toEqual(MIGRATIONS.map((m) => ({ version: m.version, name: m.name })));
      expect(tables(db)).toEqual(
        expect.arrayContaining(['work_orders', 'runs', 'iterations', 'events', 'work_order_events', 'leases', 'schema_migrations']),
      );
    } finally {
      db.close();
    }
  });

  it('is a no-op on an up-to-date database', async () => {
    const db = raw(await temp.dbPath());
    try {
      expect(migrate(db).applied).toEqual(MIGRATIONS.map((m) => m.version));
      expect(migrate(db)).toEqual({ from: LATEST_SCHEMA_VERSION, to: LATEST_SCHEMA_VERSION, applied: [] });
    } finally {
      db.close();
    }
  });

  it('upgrades a version-1 database when the store opens, keeping its rows', async () => {
    const path = await temp.dbPath();
    const old = raw(path);
    try {
      expect(migrate(old, { targetVersion: 1 })).toEqual({ from: 0, to: 1, applied: [1] });
      expect(tables(old)).not.toContain('leases');
      old.exec(`
        INSERT INTO work_orders (id, status, source, spec_json, request_json, created_at, updated_at)
          VALUES ('wo-old', 'running', 'work_order', '{"prompt":"old"}', NULL, '2024-01-01T00:00:00.000Z', '2024-01-01T00:00:00.000Z');
        INSERT INTO runs (id, work_order_id, state, iteration, max_iterations, created_at, updated_at)
          VALUES ('run-old', 'wo-old', 'building', 2, 3, '2024-01-01T00:00:00.000Z', '2024-01-01T00:05:00.000Z');
        INSERT INTO events (run_id, seq, work_order_id, type, timestamp, data_json)
          VALUES ('run-old', 1, 'wo-old', 'run_started', '2024-01-01T00:00:00.000Z', '{}');
      `);
    } finally {
      old.close();
    }

    const store = temp.open(path);
    expect(await store.workOrders.get('wo-old')).toMatchObject({ status: 'running', source: 'work_order', spec: { prompt: 'old' }, request: null });
    expect(await store.runs.get('run-old')).toMatchObject({ state: 'building', iteration: 2, meta: {}, version: 1, branch: null });
    expect((await store.runs.listNonTerminal()).map((r) => r.id)).toEqual(['run-old']);
    expect((await store.runs.appendEvents('run-old', [{ type: 'phase_started', data: {} }], null))[0]?.seq).toBe(2);
    expect(await store.leases.acquire({ key: 'k', owner: 'a', runId: 'run-old', ttlMs: 1000 })).toBe(true);
    await store.close();

    const check = raw(path);
    try {
      expect(getSchemaVersion(check)).toBe(LATEST_SCHEMA_VERSION);
      expect(appliedMigrations(check).map((m) => m.version)).toEqual(MIGRATIONS.map((m) => m.version));
    } finally {
      check.close();
    }
  });

  it('rolls a failing migration back completely and names its version', async () => {
    const db = raw(await temp.dbPath());
    try {
      migrate(db);
      const cause = new Error('boom');
      const broken: Migration = {
        version: LATEST_SCHEMA_VERSION + 1,
        name: 'broken',
        up(conn) {
          conn.exec('CREATE TABLE half_done (a TEXT)');
          throw cause;
        },
      };

      const err = thrownAgentGateError(() => migrate(db, { migrations: [...MIGRATIONS, broken] }));

      expect(err.code).toBe('AG_ERR_STORE_MIGRATION');
      expect(err.message).toContain(`Migration ${LATEST_SCHEMA_VERSION + 1} (broken)`);
      expect(err.details).toMatchObject({ version: LATEST_SCHEMA_VERSION + 1 });
      expect(err.cause).toBe(cause);
      expect(getSchemaVersion(db)).toBe(LATEST_SCHEMA_VERSION);
      expect(tables(db)).not.toContain('half_done');
      expect(appliedMigrations(db).map((m) => m.version)).not.toContain(LATEST_SCHEMA_VERSION + 1);
    } finally {
      db.close();
    }
  });

  it('keeps the migrations before a failing one, each having its own transaction', async () => {
    const db = raw(await temp.dbPath());
    try {
      const first = MIGRATIONS[0]!;
      const badSql: Migration = { version: 2, name: 'bad_sql', up: (conn) => conn.exec('CREATE TABLE runs (id TEXT)') };

      const err = thrownAgentGateError(() => migrate(db, { migrations: [first, badSql] }));

      expect(err).toMatchObject({ code: 'AG_ERR_STORE_MIGRATION', details: { version: 2, name: 'bad_sql' } });
      expect(err.cause).toBeInstanceOf(Database.SqliteError);
      expect(getSchemaVersion(db)).toBe(1);
      expect(appliedMigrations(db).map((m) => m.version)).toEqual([1]);
    } finally {
      db.close();
    }
  });

  it('refuses a database written by a newer build', async () => {
    const path = await temp.dbPath();
    const db = raw(path);
    try {
      db.pragma(`user_version = ${LATEST_SCHEMA_VERSION + 5}`);
    } finally {
      db.close();
    }
    const err = thrownAgentGateError(() => openSqliteRepositories({ path }));
    expect(err.code).toBe('AG_ERR_STORE_MIGRATION');
    expect(err.details).toMatchObject({ version: LATEST_SCHEMA_VERSION + 5 });
  });

  it('refuses a migration list that is not numbered 1, 2, 3 …', async () => {
    const db = raw(await temp.dbPath());
    try {
      const second = MIGRATIONS[1]!;
      expect(thrownAgentGateError(() => migrate(db, { migrations: [second] })).code).toBe('AG_ERR_INTERNAL');
      expect(getSchemaVersion(db)).toBe(0);
    } finally {
      db.close();
    }
  });
});
