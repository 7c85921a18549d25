/**
 * The embedded, durable {@link RunStore}: one SQLite file in WAL mode (SPEC section 13).
 *
 * Every write runs in a `BEGIN IMMEDIATE` transaction. IMMEDIATE takes the write lock up front, so
 * the read that a write depends on (the run's current state, the last event seq, a lease holder)
 * happens under the lock: two connections — in this process or another one — can never both read
 * seq 41 and both write 42. It also means a contended writer waits in SQLite's busy handler (up to
 * `busy_timeout`) instead of failing with `SQLITE_BUSY` on a read-to-write lock upgrade, which the
 * busy handler cannot resolve.
 */
import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import Database from 'better-sqlite3';
import { AgentGateError } from '../errors.js';
import {
  ALL_RESULTS,
  ALL_STATES,
  TERMINAL_STATES,
  applyTransition,
  type Run,
  type RunErrorInfo,
  type RunEvent,
  type RunResult,
  type RunState,
} from '../orchestrator/state-machine.js';
import { migrate } from './migrations.js';
import { translateSqliteError } from './sqlite-errors.js';
import {
  ALL_WORK_ORDER_SOURCES,
  ALL_WORK_ORDER_STATUSES,
  type AcquireLeaseRequest,
  type JsonObject,
  type Lease,
  type ListEventsQuery,
  type ListRunsQuery,
  type ListWorkOrdersQuery,
  type NewEvent,
  type NewRunMeta,
  type NewWorkOrder,
  type Page,
  type ReleaseLeaseRequest,
  type RenewLeaseRequest,
  type RunMeta,
  type RunStateChangedData,
  type RunStore,
  type StoredEvent,
  type StoredIteration,
  type StoredRun,
  type StoredWorkOrder,
  type StoredWorkOrderEvent,
  type StoreTransitionDetail,
  type TransitionOutcome,
  type WorkOrderStatus,
} from './types.js';

/** File name of the store inside `$AGENTGATE_HOME`. */
export const STORE_FILE_NAME = 'agentgate.db';

/**
 * How long a writer waits for the lock before `AG_ERR_STORE_BUSY`. Writes are short (one row or a few),
 * so 5 s of waiting means something is wrong, not merely busy.
 */
export const DEFAULT_BUSY_TIMEOUT_MS = 5000;

/** Default page size of `listEvents`, matching the API's `GET /runs/:id/events` default. */
export const DEFAULT_EVENTS_LIMIT = 1000;

interface CommonOpenOptions {
  /** Source of "now" for defaults (timestamps, lease expiry). Defaults to the real clock. */
  readonly clock?: () => Date;
  readonly busyTimeoutMs?: number;
}

/** `{ path }` names the database file (or `:memory:`); `{ home }` means `<home>/agentgate.db`. */
export type SqliteRunStoreOptions = CommonOpenOptions & ({ readonly path: string } | { readonly home: string });

interface WorkOrderRow {
  id: string;
  status: string;
  source: string;
  spec_json: string;
  request_json: string | null;
  created_at: string;
  updated_at: string;
}

interface RunRow {
  id: string;
  work_order_id: string;
  state: string;
  iteration: number;
  max_iterations: number;
  result: string | null;
  error_json: string | null;
  branch: string | null;
  data_json: string;
  version: number;
  created_at: string;
  updated_at: string;
  completed_at: string | null;
}

interface IterationRow {
  run_id: string;
  iteration: number;
  data_json: string;
  started_at: string;
  completed_at: string | null;
}

interface EventRow {
  run_id: string;
  seq: number;
  work_order_id: string;
  type: string;
  timestamp: string;
  data_json: string;
}

interface WorkOrderEventRow {
  work_order_id: string;
  seq: number;
  type: string;
  timestamp: string;
  data_json: string;
}

interface LeaseRow {
  key: string;
  owner: string;
  run_id: string;
  expires_at: number;
  heartbeat_at: number;
}

interface CountRow {
  total: number;
}

interface SeqRow {
  seq: number;
}

interface WorkOrderIdRow {
  work_order_id: string;
}

interface RunWriteParams {
  id: string;
  work_order_id: string;
  state: string;
  iteration: number;
  max_iterations: number;
  result: string | null;
  error_json: string | null;
  branch: string | null;
  data_json: string;
  created_at: string;
  updated_at: string;
  completed_at: string | null;
}

const RUN_COLUMNS =
  'id, work_order_id, state, iteration, max_iterations, result, error_json, branch, data_json, version, created_at, updated_at, completed_at';

function prepareStatements(db: Database.Database) {
  return {
    insertWorkOrder: db.prepare<[WorkOrderRow]>(
      `INSERT INTO work_orders (id, status, source, spec_json, request_json, created_at, updated_at)
       VALUES (@id, @status, @source, @spec_json, @request_json, @created_at, @updated_at)`,
    ),
    getWorkOrder: db.prepare<[string], WorkOrderRow>('SELECT * FROM work_orders WHERE id = ?'),
    updateWorkOrderStatus: db.prepare<[string, string, string]>('UPDATE work_orders SET status = ?, updated_at = ? WHERE id = ?'),
    insertRun: db.prepare<[RunWriteParams]>(
      `INSERT INTO runs (id, work_order_id, state, iteration, max_iterations, result, error_json, branch, data_json, version, created_at, updated_at, completed_at)
       VALUES (@id, @work_order_id, @state, @iteration, @max_iterations, @result, @error_json, @branch, @data_json, 1, @created_at, @updated_at, @completed_at)`,
    ),
    getRun: db.prepare<[string], RunRow>(`SELECT ${RUN_COLUMNS} FROM runs WHERE id = ?`),
    getRunWorkOrderId: db.prepare<[string], WorkOrderIdRow>('SELECT work_order_id FROM runs WHERE id = ?'),
    nonTerminalRuns: db.prepare<[], RunRow>(
      `SELECT ${RUN_COLUMNS} FROM runs WHERE state NOT IN (${TERMINAL_STATES.map((s) => `'${s}'`).join(', ')})
       ORDER BY created_at ASC, id ASC`,
    ),
    updateRunState: db.prepare<[{ id: string; version: number; state: string; iteration: number; result: string | null; error_json: string | null; updated_at: string; completed_at: string | null }]>(
      `UPDATE runs SET state = @state, iteration = @iteration, result = @result, error_json = @error_json,
         updated_at = @updated_at, completed_at = @completed_at, version = version + 1
       WHERE id = @id AND version = @version`,
    ),
    updateRunData: db.prepare<[string, string]>('UPDATE runs SET data_json = ?, version = version + 1 WHERE id = ?'),
    updateRunBranch: db.prepare<[string | null, string]>('UPDATE runs SET branch = ?, version = version + 1 WHERE id = ?'),
    nextEventSeq: db.prepare<[string], SeqRow>('SELECT COALESCE(MAX(seq), 0) + 1 AS seq FROM events WHERE run_id = ?'),
    lastEventSeq: db.prepare<[string], SeqRow>('SELECT COALESCE(MAX(seq), 0) AS seq FROM events WHERE run_id = ?'),
    insertEvent: db.prepare<[EventRow]>(
      `INSERT INTO events (run_id, seq, work_order_id, type, timestamp, data_json)
       VALUES (@run_id, @seq, @work_order_id, @type, @timestamp, @data_json)`,
    ),
    listEvents: db.prepare<[string, number, number], EventRow>(
      'SELECT * FROM events WHERE run_id = ? AND seq > ? ORDER BY seq ASC LIMIT ?',
    ),
    nextWorkOrderEventSeq: db.prepare<[string], SeqRow>(
      'SELECT COALESCE(MAX(seq), 0) + 1 AS seq FROM work_order_events WHERE work_order_id = ?',
    ),
    insertWorkOrderEvent: db.prepare<[WorkOrderEventRow]>(
      `INSERT INTO work_order_events (work_order_id, seq, type, timestamp, data_json)
       VALUES (@work_order_id, @seq, @type, @timestamp, @data_json)`,
    ),
    listWorkOrderEvents: db.prepare<[string, number, number], WorkOrderEventRow>(
      'SELECT * FROM work_order_events WHERE work_order_id = ? AND seq > ? ORDER BY seq ASC LIMIT ?',
    ),
    upsertIteration: db.prepare<[IterationRow]>(
      `INSERT INTO iterations (run_id, iteration, data_json, started_at, completed_at)
       VALUES (@run_id, @iteration, @data_json, @started_at, @completed_at)
       ON CONFLICT (run_id, iteration) DO UPDATE SET
         data_json = excluded.data_json, started_at = excluded.started_at, completed_at = excluded.completed_at`,
    ),
    getIteration: db.prepare<[string, number], IterationRow>('SELECT * FROM iterations WHERE run_id = ? AND iteration = ?'),
    listIterations: db.prepare<[string], IterationRow>('SELECT * FROM iterations WHERE run_id = ? ORDER BY iteration ASC'),
    getLease: db.prepare<[string], LeaseRow>('SELECT * FROM leases WHERE key = ?'),
    upsertLease: db.prepare<[LeaseRow]>(
      `INSERT INTO leases (key, owner, run_id, expires_at, heartbeat_at)
       VALUES (@key, @owner, @run_id, @expires_at, @heartbeat_at)
       ON CONFLICT (key) DO UPDATE SET
         owner = excluded.owner, run_id = excluded.run_id, expires_at = excluded.expires_at, heartbeat_at = excluded.heartbeat_at`,
    ),
    renewLease: db.prepare<[{ key: string; owner: string; expires_at: number; now: number }]>(
      'UPDATE leases SET expires_at = @expires_at, heartbeat_at = @now WHERE key = @key AND owner = @owner AND expires_at > @now',
    ),
    releaseLease: db.prepare<[string, string]>('DELETE FROM leases WHERE key = ? AND owner = ?'),
    expiredLeases: db.prepare<[number], LeaseRow>('SELECT * FROM leases WHERE expires_at <= ? ORDER BY expires_at ASC, key ASC'),
    liveLeases: db.prepare<[number], LeaseRow>('SELECT * FROM leases WHERE expires_at > ? ORDER BY expires_at ASC, key ASC'),
  };
}

type Statements = ReturnType<typeof prepareStatements>;

/**
 * {@link RunStore} on SQLite via better-sqlite3. Open it with {@link SqliteRunStore.open}; several
 * instances (in one process or many) may share one file.
 */
export class SqliteRunStore implements RunStore {
  /** The database file (or `:memory:`). */
  readonly path: string;
  private readonly db: Database.Database;
  private readonly clock: () => Date;
  private readonly stmts: Statements;
  private closed = false;
  /** Cached transaction wrappers: `db.transaction()` builds new functions on every call, measurable on the event hot path. */
  private readonly immediate: (fn: () => unknown) => unknown;
  private readonly deferred: (fn: () => unknown) => unknown;

  private constructor(db: Database.Database, path: string, clock: () => Date) {
    this.db = db;
    this.path = path;
    this.clock = clock;
    this.stmts = prepareStatements(db);
    const wrapper = db.transaction((fn: () => unknown): unknown => fn());
    this.immediate = wrapper.immediate;
    this.deferred = wrapper.deferred;
  }

  /**
   * Opens (creating if needed) the store, applies the connection pragmas and runs pending
   * migrations. Pragmas: `journal_mode=WAL` (readers never block the writer, and the event stream can
   * be read while a run writes), `synchronous=NORMAL` (durable across process crashes; with WAL only
   * an OS crash/power loss can lose the last commits, never corrupt the file — see
   * https://www.sqlite.org/pragma.html#pragma_synchronous), `foreign_keys=ON`, `busy_timeout`.
   * @throws AG_ERR_STORE_OPEN when the file cannot be opened or configured; AG_ERR_STORE_MIGRATION.
   */
  static open(options: SqliteRunStoreOptions): SqliteRunStore {
    const path = 'path' in options ? options.path : join(options.home, STORE_FILE_NAME);
    const clock = options.clock ?? (() => new Date());
    const busyTimeoutMs = options.busyTimeoutMs ?? DEFAULT_BUSY_TIMEOUT_MS;
    if (!Number.isInteger(busyTimeoutMs) || busyTimeoutMs < 0) {
      throw new AgentGateError('AG_ERR_CONFIG_INVALID', `busyTimeoutMs: must be a non-negative integer, got ${String(busyTimeoutMs)}`);
    }
    const inMemory = path === ':memory:';

    let db: Database.Database;
    try {
      if (!inMemory) mkdirSync(dirname(path), { recursive: true });
      db = new Database(path, { timeout: busyTimeoutMs });
    } catch (err) {
      throw new AgentGateError('AG_ERR_STORE_OPEN', `Could not open the store at ${path}`, { cause: err, details: { path } });
    }

    try {
      db.pragma(`busy_timeout = ${busyTimeoutMs}`);
      const mode: unknown = db.pragma('journal_mode = WAL', { simple: true });
      if (mode !== 'wal' && !(inMemory && mode === 'memory')) {
        throw new AgentGateError('AG_ERR_STORE_OPEN', `The store at ${path} cannot use WAL journaling (got ${String(mode)})`, {
          details: { path, journalMode: String(mode) },
        });
      }
      db.pragma('synchronous = NORMAL');
      db.pragma('foreign_keys = ON');
      migrate(db, { clock });
      return new SqliteRunStore(db, path, clock);
    } catch (err) {
      db.close();
      if (err instanceof AgentGateError) throw err;
      throw new AgentGateError('AG_ERR_STORE_OPEN', `Could not configure the store at ${path}`, { cause: err, details: { path } });
    }
  }

  // ---------------------------------------------------------------- work orders

  createWorkOrder(input: NewWorkOrder): StoredWorkOrder {
    const at = input.createdAt ?? this.now();
    const row: WorkOrderRow = {
      id: input.id,
      status: input.status ?? 'queued',
      source: input.source,
      spec_json: toJson(input.spec, 'spec'),
      request_json: input.request === undefined || input.request === null ? null : toJson(input.request, 'request'),
      created_at: at,
      updated_at: at,
    };
    return this.write('createWorkOrder', () => {
      this.stmts.insertWorkOrder.run(row);
      return this.requireWorkOrder(input.id);
    });
  }

  getWorkOrder(id: string): StoredWorkOrder | null {
    return this.read('getWorkOrder', () => {
      const row = this.stmts.getWorkOrder.get(id);
      return row === undefined ? null : mapWorkOrder(row);
    });
  }

  listWorkOrders(query: ListWorkOrdersQuery): Page<StoredWorkOrder> {
    checkPaging(query.limit, query.offset);
    return this.snapshot('listWorkOrders', () => {
      const where = query.status === undefined ? '' : 'WHERE status = @status';
      const params: Record<string, string> = query.status === undefined ? {} : { status: query.status };
      const total = this.db.prepare<[Record<string, string>], CountRow>(`SELECT COUNT(*) AS total FROM work_orders ${where}`).get(params);
      const rows = this.db
        .prepare<[Record<string, string | number>], WorkOrderRow>(
          `SELECT * FROM work_orders ${where} ORDER BY created_at DESC, id DESC LIMIT @limit OFFSET @offset`,
        )
        .all({ ...params, limit: query.limit, offset: query.offset });
      return { items: rows.map(mapWorkOrder), total: total?.total ?? 0 };
    });
  }

  updateWorkOrderStatus(id: string, status: WorkOrderStatus, at?: string): StoredWorkOrder {
    const updatedAt = at ?? this.now();
    return this.write('updateWorkOrderStatus', () => {
      const result = this.stmts.updateWorkOrderStatus.run(status, updatedAt, id);
      if (result.changes === 0) throw workOrderNotFound(id);
      return this.requireWorkOrder(id);
    });
  }

  // ---------------------------------------------------------------- runs

  insertRun(run: Run, meta: NewRunMeta = {}): StoredRun {
    const params: RunWriteParams = {
      id: run.id,
      work_order_id: run.workOrderId,
      state: run.state,
      iteration: run.iteration,
      max_iterations: run.maxIterations,
      result: run.result,
      error_json: run.error === null ? null : toJson(run.error, 'run error'),
      branch: meta.branch ?? null,
      data_json: toJson(meta.data ?? {}, 'run metadata'),
      created_at: run.createdAt,
      updated_at: run.updatedAt,
      completed_at: run.completedAt,
    };
    return this.write('insertRun', () => {
      if (this.stmts.getWorkOrder.get(run.workOrderId) === undefined) throw workOrderNotFound(run.workOrderId);
      this.stmts.insertRun.run(params);
      return this.requireRun(run.id);
    });
  }

  getRun(id: string): StoredRun | null {
    return this.read('getRun', () => {
      const row = this.stmts.getRun.get(id);
      return row === undefined ? null : mapRun(row);
    });
  }

  listRuns(query: ListRunsQuery): Page<StoredRun> {
    checkPaging(query.limit, query.offset);
    return this.snapshot('listRuns', () => {
      const conditions: string[] = [];
      const params: Record<string, string> = {};
      if (query.workOrderId !== undefined) {
        conditions.push('work_order_id = @workOrderId');
        params['workOrderId'] = query.workOrderId;
      }
      if (query.state !== undefined) {
        conditions.push('state = @state');
        params['state'] = query.state;
      }
      const where = conditions.length === 0 ? '' : `WHERE ${conditions.join(' AND ')}`;
      const total = this.db.prepare<[Record<string, string>], CountRow>(`SELECT COUNT(*) AS total FROM runs ${where}`).get(params);
      const rows = this.db
        .prepare<[Record<string, string | number>], RunRow>(
          `SELECT ${RUN_COLUMNS} FROM runs ${where} ORDER BY created_at DESC, id DESC LIMIT @limit OFFSET @offset`,
        )
        .all({ ...params, limit: query.limit, offset: query.offset });
      return { items: rows.map(mapRun), total: total?.total ?? 0 };
    });
  }

  listNonTerminalRuns(): StoredRun[] {
    return this.read('listNonTerminalRuns', () => this.stmts.nonTerminalRuns.all().map(mapRun));
  }

  updateRunMeta(runId: string, patch: Partial<RunMeta>): StoredRun {
    return this.write('updateRunMeta', () => {
      const current = this.requireRun(runId);
      this.stmts.updateRunData.run(toJson({ ...current.meta, ...patch }, 'run metadata'), runId);
      return this.requireRun(runId);
    });
  }

  setRunBranch(runId: string, branch: string | null): StoredRun {
    return this.write('setRunBranch', () => {
      if (this.stmts.updateRunBranch.run(branch, runId).changes === 0) throw runNotFound(runId);
      return this.requireRun(runId);
    });
  }

  /**
   * The one way a run's state changes. In one IMMEDIATE transaction: read the run, apply the state
   * machine, write the run (bumping `version`), append `run_state_changed`. Either both rows are
   * committed or neither is, so the event log never disagrees with the run (SPEC section 13).
   * @throws InvalidTransitionError unchanged when the event is not allowed (nothing is written);
   * AG_ERR_RUN_NOT_FOUND; AG_ERR_STORE_CONFLICT when `expectedVersion` is stale.
   */
  transition(runId: string, event: RunEvent, detail: StoreTransitionDetail = {}): TransitionOutcome {
    return this.write('transition', () => {
      const current = this.requireRun(runId);
      if (detail.expectedVersion !== undefined && detail.expectedVersion !== current.version) {
        throw new AgentGateError(
          'AG_ERR_STORE_CONFLICT',
          `Run ${runId} is at version ${current.version}, expected ${detail.expectedVersion}`,
          { details: { runId, version: current.version, expectedVersion: detail.expectedVersion } },
        );
      }
      const at = detail.at ?? this.now();
      const next = applyTransition(current, event, detail.error === undefined ? { at } : { at, error: detail.error });
      const written = this.stmts.updateRunState.run({
        id: runId,
        version: current.version,
        state: next.state,
        iteration: next.iteration,
        result: next.result,
        error_json: next.error === null ? null : toJson(next.error, 'run error'),
        updated_at: next.updatedAt,
        completed_at: next.completedAt,
      });
      if (written.changes !== 1) {
        // Unreachable under the IMMEDIATE lock; kept so a future non-locking store cannot lose a write silently.
        throw new AgentGateError('AG_ERR_STORE_CONFLICT', `Run ${runId} changed during its transition`, { details: { runId } });
      }
      const data: RunStateChangedData = {
        from: current.state,
        event,
        to: next.state,
        iteration: next.iteration,
        ...(next.result === null ? {} : { result: next.result }),
        ...(detail.error === undefined ? {} : { error: detail.error }),
      };
      const stored = this.insertEvent(runId, current.workOrderId, { type: 'run_state_changed', data, timestamp: at });
      return { run: this.requireRun(runId), event: stored };
    });
  }

  // ---------------------------------------------------------------- events

  /**
   * Appends one event; its seq is `max(seq) + 1` for the run, computed under the write lock, so
   * concurrent writers (any connection, any process) get consecutive seqs with no gap or duplicate.
   * @throws AG_ERR_RUN_NOT_FOUND
   */
  appendEvent(runId: string, type: string, data: object, timestamp?: string): StoredEvent {
    const event: NewEvent = timestamp === undefined ? { type, data } : { type, data, timestamp };
    return this.write('appendEvent', () => this.insertEvent(runId, this.requireRunWorkOrderId(runId), event));
  }

  appendEvents(runId: string, events: readonly NewEvent[]): StoredEvent[] {
    return this.write('appendEvents', () => {
      const workOrderId = this.requireRunWorkOrderId(runId);
      return events.map((event) => this.insertEvent(runId, workOrderId, event));
    });
  }

  listEvents(runId: string, query: ListEventsQuery = {}): StoredEvent[] {
    const { afterSeq, limit } = checkEventsQuery(query);
    return this.read('listEvents', () => this.stmts.listEvents.all(runId, afterSeq, limit).map(mapEvent));
  }

  lastSeq(runId: string): number {
    return this.read('lastSeq', () => this.stmts.lastEventSeq.get(runId)?.seq ?? 0);
  }

  /** @throws AG_ERR_WORK_ORDER_NOT_FOUND */
  appendWorkOrderEvent(workOrderId: string, type: string, data: object, timestamp?: string): StoredWorkOrderEvent {
    const row: Omit<WorkOrderEventRow, 'seq'> = {
      work_order_id: workOrderId,
      type,
      timestamp: timestamp ?? this.now(),
      data_json: toJson(data, `${type} event data`),
    };
    return this.write('appendWorkOrderEvent', () => {
      if (this.stmts.getWorkOrder.get(workOrderId) === undefined) throw workOrderNotFound(workOrderId);
      const seq = this.stmts.nextWorkOrderEventSeq.get(workOrderId)?.seq ?? 1;
      const full: WorkOrderEventRow = { ...row, seq };
      this.stmts.insertWorkOrderEvent.run(full);
      return mapWorkOrderEvent(full);
    });
  }

  listWorkOrderEvents(workOrderId: string, query: ListEventsQuery = {}): StoredWorkOrderEvent[] {
    const { afterSeq, limit } = checkEventsQuery(query);
    return this.read('listWorkOrderEvents', () =>
      this.stmts.listWorkOrderEvents.all(workOrderId, afterSeq, limit).map(mapWorkOrderEvent),
    );
  }

  // ---------------------------------------------------------------- iterations

  /** @throws AG_ERR_RUN_NOT_FOUND */
  saveIteration(runId: string, iteration: number, data: object, startedAt: string, completedAt: string | null = null): StoredIteration {
    if (!Number.isInteger(iteration) || iteration < 1) {
      throw new AgentGateError('AG_ERR_SCHEMA_INVALID', `iteration: must be a positive integer, got ${String(iteration)}`);
    }
    const row: IterationRow = {
      run_id: runId,
      iteration,
      data_json: toJson(data, 'iteration data'),
      started_at: startedAt,
      completed_at: completedAt,
    };
    return this.write('saveIteration', () => {
      this.requireRunWorkOrderId(runId);
      this.stmts.upsertIteration.run(row);
      const stored = this.stmts.getIteration.get(runId, iteration);
      if (stored === undefined) throw new AgentGateError('AG_ERR_INTERNAL', `Iteration ${iteration} of run ${runId} vanished after its write`);
      return mapIteration(stored);
    });
  }

  listIterations(runId: string): StoredIteration[] {
    return this.read('listIterations', () => this.stmts.listIterations.all(runId).map(mapIteration));
  }

  // ---------------------------------------------------------------- leases

  acquireLease(request: AcquireLeaseRequest): boolean {
    checkTtl(request.ttlMs);
    const now = (request.now ?? this.clock()).getTime();
    return this.write('acquireLease', () => {
      const held = this.stmts.getLease.get(request.key);
      if (held !== undefined && held.owner !== request.owner && held.expires_at > now) return false;
      this.stmts.upsertLease.run({
        key: request.key,
        owner: request.owner,
        run_id: request.runId,
        expires_at: now + request.ttlMs,
        heartbeat_at: now,
      });
      return true;
    });
  }

  /**
   * Extends a lease still held by `owner`. An expired lease counts as lost even if nobody took it
   * yet: reconciliation may already be failing its run, so the holder must stop, not carry on.
   */
  renewLease(request: RenewLeaseRequest): boolean {
    checkTtl(request.ttlMs);
    const now = (request.now ?? this.clock()).getTime();
    return this.write('renewLease', () => {
      const result = this.stmts.renewLease.run({ key: request.key, owner: request.owner, expires_at: now + request.ttlMs, now });
      return result.changes === 1;
    });
  }

  releaseLease(request: ReleaseLeaseRequest): boolean {
    return this.write('releaseLease', () => this.stmts.releaseLease.run(request.key, request.owner).changes === 1);
  }

  getLease(key: string): Lease | null {
    return this.read('getLease', () => {
      const row = this.stmts.getLease.get(key);
      return row === undefined ? null : mapLease(row);
    });
  }

  listExpiredLeases(now?: Date): Lease[] {
    const at = (now ?? this.clock()).getTime();
    return this.read('listExpiredLeases', () => this.stmts.expiredLeases.all(at).map(mapLease));
  }

  listLiveLeases(now?: Date): Lease[] {
    const at = (now ?? this.clock()).getTime();
    return this.read('listLiveLeases', () => this.stmts.liveLeases.all(at).map(mapLease));
  }

  // ---------------------------------------------------------------- transactions and lifecycle

  /**
   * Runs `fn` in one `BEGIN IMMEDIATE` transaction (a savepoint when already inside one). Store
   * methods called from `fn` join it, so e.g. a transition plus a metadata update commit together.
   * `fn` must be synchronous: better-sqlite3 rejects a returned promise (and rolls back), because a
   * transaction cannot stay open across an `await`.
   */
  runInTransaction<T>(fn: () => T): T {
    return this.write('transaction', fn);
  }

  /** Closes the connection. Idempotent; any later call fails with AG_ERR_STORE_OPEN. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.db.close();
  }

  // ---------------------------------------------------------------- internals

  private now(): string {
    return this.clock().toISOString();
  }

  private ensureOpen(): void {
    if (this.closed) throw new AgentGateError('AG_ERR_STORE_OPEN', `The store at ${this.path} is closed`, { details: { path: this.path } });
  }

  private read<T>(operation: string, fn: () => T): T {
    this.ensureOpen();
    try {
      return fn();
    } catch (err) {
      throw translateSqliteError(err, operation);
    }
  }

  /** A write: one `BEGIN IMMEDIATE` transaction (see the module comment), or a savepoint when nested. */
  private write<T>(operation: string, fn: () => T): T {
    return this.inTransaction(this.immediate, operation, fn);
  }

  /** Several reads that must agree (a page and its total): one read transaction, i.e. one WAL snapshot. */
  private snapshot<T>(operation: string, fn: () => T): T {
    return this.inTransaction(this.deferred, operation, fn);
  }

  private inTransaction<T>(wrapper: (fn: () => unknown) => unknown, operation: string, fn: () => T): T {
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

  /** Must run inside a write transaction: the seq read and the insert share the write lock. */
  private insertEvent(runId: string, workOrderId: string, event: NewEvent): StoredEvent {
    const seq = this.stmts.nextEventSeq.get(runId)?.seq ?? 1;
    const row: EventRow = {
      run_id: runId,
      seq,
      work_order_id: workOrderId,
      type: event.type,
      timestamp: event.timestamp ?? this.now(),
      data_json: toJson(event.data, `${event.type} event data`),
    };
    this.stmts.insertEvent.run(row);
    return mapEvent(row);
  }

  private requireRun(runId: string): StoredRun {
    const row = this.stmts.getRun.get(runId);
    if (row === undefined) throw runNotFound(runId);
    return mapRun(row);
  }

  private requireRunWorkOrderId(runId: string): string {
    const row = this.stmts.getRunWorkOrderId.get(runId);
    if (row === undefined) throw runNotFound(runId);
    return row.work_order_id;
  }

  private requireWorkOrder(id: string): StoredWorkOrder {
    const row = this.stmts.getWorkOrder.get(id);
    if (row === undefined) throw workOrderNotFound(id);
    return mapWorkOrder(row);
  }
}

// ---------------------------------------------------------------- helpers

function runNotFound(runId: string): AgentGateError {
  return new AgentGateError('AG_ERR_RUN_NOT_FOUND', `Run ${runId} not found`, { details: { runId } });
}

function workOrderNotFound(workOrderId: string): AgentGateError {
  return new AgentGateError('AG_ERR_WORK_ORDER_NOT_FOUND', `Work order ${workOrderId} not found`, { details: { workOrderId } });
}

function corrupt(what: string, cause?: unknown): AgentGateError {
  return new AgentGateError('AG_ERR_INTERNAL', `Stored ${what} is corrupt`, cause === undefined ? {} : { cause });
}

function checkPaging(limit: number, offset: number): void {
  if (!Number.isInteger(limit) || limit < 0) {
    throw new AgentGateError('AG_ERR_SCHEMA_INVALID', `limit: must be a non-negative integer, got ${String(limit)}`);
  }
  if (!Number.isInteger(offset) || offset < 0) {
    throw new AgentGateError('AG_ERR_SCHEMA_INVALID', `offset: must be a non-negative integer, got ${String(offset)}`);
  }
}

function checkEventsQuery(query: ListEventsQuery): { afterSeq: number; limit: number } {
  const afterSeq = query.afterSeq ?? 0;
  const limit = query.limit ?? DEFAULT_EVENTS_LIMIT;
  if (!Number.isInteger(afterSeq) || afterSeq < 0) {
    throw new AgentGateError('AG_ERR_SCHEMA_INVALID', `afterSeq: must be a non-negative integer, got ${String(afterSeq)}`);
  }
  if (!Number.isInteger(limit) || limit < 0) {
    throw new AgentGateError('AG_ERR_SCHEMA_INVALID', `limit: must be a non-negative integer, got ${String(limit)}`);
  }
  return { afterSeq, limit };
}

function checkTtl(ttlMs: number): void {
  if (!Number.isInteger(ttlMs) || ttlMs <= 0) {
    throw new AgentGateError('AG_ERR_SCHEMA_INVALID', `ttlMs: must be a positive integer, got ${String(ttlMs)}`);
  }
}

function isJsonObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Serialises a payload; only JSON objects are stored so every reader gets an object back. */
function toJson(value: object, what: string): string {
  if (!isJsonObject(value)) {
    throw new AgentGateError('AG_ERR_SCHEMA_INVALID', `${what}: must be a JSON object`);
  }
  try {
    return JSON.stringify(value);
  } catch (err) {
    throw new AgentGateError('AG_ERR_SCHEMA_INVALID', `${what}: is not JSON-serialisable`, { cause: err });
  }
}

function parseJsonObject(text: string, what: string): JsonObject {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw corrupt(what, err);
  }
  if (!isJsonObject(value)) throw corrupt(what);
  return value;
}

function oneOf<T extends string>(values: readonly T[], value: string, what: string): T {
  const found = values.find((candidate) => candidate === value);
  if (found === undefined) throw corrupt(`${what} "${value}"`);
  return found;
}

function parseRunError(text: string | null): RunErrorInfo | null {
  if (text === null) return null;
  const value = parseJsonObject(text, 'run error');
  const { code, message, phase, iteration } = value;
  if (typeof code !== 'string' || typeof message !== 'string') throw corrupt('run error');
  return {
    code,
    message,
    ...(typeof phase === 'string' ? { phase } : {}),
    ...(typeof iteration === 'number' ? { iteration } : {}),
  };
}

function mapWorkOrder(row: WorkOrderRow): StoredWorkOrder {
  return {
    id: row.id,
    status: oneOf(ALL_WORK_ORDER_STATUSES, row.status, 'work order status'),
    source: oneOf(ALL_WORK_ORDER_SOURCES, row.source, 'work order source'),
    spec: parseJsonObject(row.spec_json, 'work order spec'),
    request: row.request_json === null ? null : parseJsonObject(row.request_json, 'work order request'),
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

function mapRun(row: RunRow): StoredRun {
  const result: RunResult | null = row.result === null ? null : oneOf(ALL_RESULTS, row.result, 'run result');
  const state: RunState = oneOf(ALL_STATES, row.state, 'run state');
  return {
    id: row.id,
    workOrderId: row.work_order_id,
    state,
    iteration: row.iteration,
    maxIterations: row.max_iterations,
    result,
    error: parseRunError(row.error_json),
    createdAt: row.created_at,
    updatedAt: row.updated_at,
    completedAt: row.completed_at,
    branch: row.branch,
    meta: parseJsonObject(row.data_json, 'run metadata'),
    version: row.version,
  };
}

function mapEvent(row: EventRow): StoredEvent {
  return {
    seq: row.seq,
    runId: row.run_id,
    workOrderId: row.work_order_id,
    type: row.type,
    timestamp: row.timestamp,
    data: parseJsonObject(row.data_json, 'event data'),
  };
}

function mapWorkOrderEvent(row: WorkOrderEventRow): StoredWorkOrderEvent {
  return {
    seq: row.seq,
    workOrderId: row.work_order_id,
    type: row.type,
    timestamp: row.timestamp,
    data: parseJsonObject(row.data_json, 'work order event data'),
  };
}

function mapIteration(row: IterationRow): StoredIteration {
  return {
    runId: row.run_id,
    iteration: row.iteration,
    data: parseJsonObject(row.data_json, 'iteration data'),
    startedAt: row.started_at,
    completedAt: row.completed_at,
  };
}

function mapLease(row: LeaseRow): Lease {
  return {
    key: row.key,
    owner: row.owner,
    runId: row.run_id,
    expiresAt: new Date(row.expires_at).toISOString(),
    heartbeatAt: new Date(row.heartbeat_at).toISOString(),
  };
}
