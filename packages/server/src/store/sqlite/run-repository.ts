/**
 * {@link RunRepository} on SQLite: runs, their event log and the run's one commit point. Every method is
 * one transaction; the rules of `repositories.ts` (terminal is final, fencing) are checked inside it.
 */
import { AgentGateError } from '../../errors.js';
import { TERMINAL_STATES, applyTransition, type Run } from '../../orchestrator/state-machine.js';
import {
  checkEventsQuery,
  checkPaging,
  mapEvent,
  mapRun,
  runNotFound,
  toJson,
  workOrderNotFound,
  type CountRow,
  type EventRow,
  type RunRow,
  type SeqRow,
} from '../codec.js';
import type { CommitOutcome, CommitRequest, CreateRunInput, CreateRunResult, Fence, RunRepository } from '../repositories.js';
import {
  assertAppendable,
  assertExpectedVersion,
  assertNotTerminal,
  assertSameWorkOrder,
  commitEvents,
  exclusiveBusy,
  leaseHeld,
} from '../run-rules.js';
import { isSqliteError } from '../sqlite-errors.js';
import type { ListEventsQuery, ListRunsQuery, NewEvent, Page, RunMeta, StoredEvent, StoredRun, StoredWorkOrderEvent } from '../types.js';
import type { SqliteDatabase } from './database.js';
import type { SqliteLeaseRepository } from './lease-repository.js';
import type { SqliteWorkOrderRepository } from './work-order-repository.js';

const RUN_COLUMNS =
  'id, work_order_id, state, iteration, max_iterations, result, error_json, branch, data_json, version, created_at, updated_at, completed_at';

type RunInsertParams = Omit<RunRow, 'version'> & { exclusive_key: string | null };

interface RunStateParams {
  id: string;
  version: number;
  state: string;
  iteration: number;
  result: string | null;
  error_json: string | null;
  updated_at: string;
  completed_at: string | null;
}

function prepare(db: SqliteDatabase) {
  const c = db.connection;
  return {
    insert: c.prepare<[RunInsertParams]>(
      `INSERT INTO runs (${RUN_COLUMNS}, exclusive_key)
       VALUES (@id, @work_order_id, @state, @iteration, @max_iterations, @result, @error_json, @branch, @data_json, 1, @created_at, @updated_at, @completed_at, @exclusive_key)`,
    ),
    get: c.prepare<[string], RunRow>(`SELECT ${RUN_COLUMNS} FROM runs WHERE id = ?`),
    nonTerminal: c.prepare<[], RunRow>(
      `SELECT ${RUN_COLUMNS} FROM runs WHERE state NOT IN (${TERMINAL_STATES.map((s) => `'${s}'`).join(', ')})
       ORDER BY created_at ASC, id ASC`,
    ),
    updateState: c.prepare<[RunStateParams]>(
      `UPDATE runs SET state = @state, iteration = @iteration, result = @result, error_json = @error_json,
         updated_at = @updated_at, completed_at = @completed_at, version = version + 1
       WHERE id = @id AND version = @version`,
    ),
    updateData: c.prepare<[string, string]>('UPDATE runs SET data_json = ?, version = version + 1 WHERE id = ?'),
    nextEventSeq: c.prepare<[string], SeqRow>('SELECT COALESCE(MAX(seq), 0) + 1 AS seq FROM events WHERE run_id = ?'),
    lastEventSeq: c.prepare<[string], SeqRow>('SELECT COALESCE(MAX(seq), 0) AS seq FROM events WHERE run_id = ?'),
    insertEvent: c.prepare<[EventRow]>(
      `INSERT INTO events (run_id, seq, work_order_id, type, timestamp, data_json)
       VALUES (@run_id, @seq, @work_order_id, @type, @timestamp, @data_json)`,
    ),
    listEvents: c.prepare<[string, number, number], EventRow>('SELECT * FROM events WHERE run_id = ? AND seq > ? ORDER BY seq ASC LIMIT ?'),
  };
}

export class SqliteRunRepository implements RunRepository {
  private readonly stmts: ReturnType<typeof prepare>;

  constructor(
    private readonly db: SqliteDatabase,
    private readonly workOrders: SqliteWorkOrderRepository,
    private readonly leases: SqliteLeaseRepository,
  ) {
    this.stmts = prepare(db);
  }

  async create(input: CreateRunInput): Promise<CreateRunResult> {
    const { run, meta = {}, lease } = input;
    const params = runInsertParams(run, meta.branch ?? null, toJson(meta.data ?? {}, 'run metadata'), input.exclusiveKey ?? null);
    if (input.workOrder !== undefined) assertSameWorkOrder(run, input.workOrder.id);
    return this.db.write('runs.create', () => {
      const workOrderEvents: StoredWorkOrderEvent[] = [];
      let workOrderEvent: StoredWorkOrderEvent | null = null;
      if (!this.workOrders.existsInTransaction(run.workOrderId)) {
        if (input.workOrder === undefined) throw workOrderNotFound(run.workOrderId);
        workOrderEvent = this.workOrders.createInTransaction(input.workOrder).event;
        workOrderEvents.push(workOrderEvent);
      }
      if (input.claim === true) workOrderEvents.push(this.workOrders.claimInTransaction(run.workOrderId, run.id));
      const acquired = this.leases.acquireInTransaction({ key: lease.key, owner: lease.owner, runId: run.id, ttlMs: lease.ttlMs, ...(lease.now === undefined ? {} : { now: lease.now }) });
      if (!acquired) throw leaseHeld(lease.key, run.id);
      try {
        this.stmts.insert.run(params);
      } catch (err) {
        // The runs table's only UNIQUE index besides its primary key is the exclusive key's (migration 3).
        if (params.exclusive_key !== null && isSqliteError(err) && err.code === 'SQLITE_CONSTRAINT_UNIQUE') throw exclusiveBusy(params.exclusive_key, run.id, err);
        throw err;
      }
      return { run: this.require(run.id), workOrderEvent, workOrderEvents };
    });
  }

  async get(id: string): Promise<StoredRun | null> {
    return this.db.read('runs.get', () => {
      const row = this.stmts.get.get(id);
      return row === undefined ? null : mapRun(row);
    });
  }

  async list(query: ListRunsQuery): Promise<Page<StoredRun>> {
    checkPaging(query.limit, query.offset);
    return this.db.snapshot('runs.list', () => {
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
      const c = this.db.connection;
      const total = c.prepare<[Record<string, string>], CountRow>(`SELECT COUNT(*) AS total FROM runs ${where}`).get(params);
      const rows = c
        .prepare<[Record<string, string | number>], RunRow>(
          `SELECT ${RUN_COLUMNS} FROM runs ${where} ORDER BY created_at DESC, id DESC LIMIT @limit OFFSET @offset`,
        )
        .all({ ...params, limit: query.limit, offset: query.offset });
      return { items: rows.map(mapRun), total: total?.total ?? 0 };
    });
  }

  async listNonTerminal(): Promise<StoredRun[]> {
    return this.db.read('runs.listNonTerminal', () => this.stmts.nonTerminal.all().map(mapRun));
  }

  /** A key set to `undefined` in `patch` is removed (JSON has no `undefined`). */
  async updateMeta(runId: string, patch: Partial<RunMeta>, fence: Fence | null): Promise<StoredRun> {
    return this.db.write('runs.updateMeta', () => {
      const current = this.requireWritable(runId, fence, 'runs.updateMeta');
      this.stmts.updateData.run(toJson({ ...current.meta, ...patch }, 'run metadata'), runId);
      return this.require(runId);
    });
  }

  /**
   * In one IMMEDIATE transaction: read the run, refuse a terminal run, check the fence and the expected
   * version, apply the state machine, write the run (bumping `version`), append `run_state_changed` and,
   * into a terminal state, the closing event. Any failure writes nothing.
   */
  async commit(runId: string, request: CommitRequest): Promise<CommitOutcome> {
    return this.db.write('runs.commit', () => {
      const current = this.requireWritable(runId, request.fence, 'runs.commit');
      assertExpectedVersion(runId, current.version, request.expectedVersion);
      const at = request.at ?? this.db.now();
      const next = applyTransition(current, request.event, request.error === undefined ? { at } : { at, error: request.error });
      const toWrite = commitEvents(current, request, next, at);
      const written = this.stmts.updateState.run({
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
        // Unreachable under the IMMEDIATE lock; kept so a future non-locking change cannot lose a write silently.
        throw new AgentGateError('AG_ERR_STORE_CONFLICT', `Run ${runId} changed during its commit`, { details: { runId } });
      }
      const events = toWrite.map((event) => this.insertEvent(runId, current.workOrderId, event));
      return { run: this.require(runId), events };
    });
  }

  /**
   * Each seq is `max(seq) + 1` for the run, computed under the write lock, so concurrent writers (any
   * connection, any process) get consecutive seqs with no gap or duplicate.
   */
  async appendEvents(runId: string, events: readonly NewEvent[], fence: Fence | null): Promise<StoredEvent[]> {
    assertAppendable(runId, events);
    return this.db.write('runs.appendEvents', () => {
      const run = this.requireWritable(runId, fence, 'runs.appendEvents');
      return events.map((event) => this.insertEvent(runId, run.workOrderId, event));
    });
  }

  async listEvents(runId: string, query: ListEventsQuery = {}): Promise<StoredEvent[]> {
    const { afterSeq, limit } = checkEventsQuery(query);
    return this.db.read('runs.listEvents', () => this.stmts.listEvents.all(runId, afterSeq, limit).map(mapEvent));
  }

  async lastSeq(runId: string): Promise<number> {
    return this.db.read('runs.lastSeq', () => this.stmts.lastEventSeq.get(runId)?.seq ?? 0);
  }

  /**
   * The guard of every write on behalf of a run, inside the caller's write transaction: the run exists
   * (AG_ERR_RUN_NOT_FOUND), is not terminal (AG_ERR_RUN_ALREADY_TERMINAL) and the fence holds
   * (AG_ERR_LEASE_LOST).
   */
  requireWritable(runId: string, fence: Fence | null, operation: string): StoredRun {
    const run = this.require(runId);
    assertNotTerminal(runId, run.state, operation);
    this.leases.assertFence(fence, operation);
    return run;
  }

  /** Must run inside a write transaction: the seq read and the insert share the write lock. */
  private insertEvent(runId: string, workOrderId: string, event: NewEvent): StoredEvent {
    const seq = this.stmts.nextEventSeq.get(runId)?.seq ?? 1;
    const row: EventRow = {
      run_id: runId,
      seq,
      work_order_id: workOrderId,
      type: event.type,
      timestamp: event.timestamp ?? this.db.now(),
      data_json: toJson(event.data, `${event.type} event data`),
    };
    this.stmts.insertEvent.run(row);
    return mapEvent(row);
  }

  private require(runId: string): StoredRun {
    const row = this.stmts.get.get(runId);
    if (row === undefined) throw runNotFound(runId);
    return mapRun(row);
  }
}

function runInsertParams(run: Run, branch: string | null, dataJson: string, exclusiveKey: string | null): RunInsertParams {
  return {
    id: run.id,
    work_order_id: run.workOrderId,
    state: run.state,
    iteration: run.iteration,
    max_iterations: run.maxIterations,
    result: run.result,
    error_json: run.error === null ? null : toJson(run.error, 'run error'),
    branch,
    data_json: dataJson,
    created_at: run.createdAt,
    updated_at: run.updatedAt,
    completed_at: run.completedAt,
    exclusive_key: exclusiveKey,
  };
}
