/**
 * {@link RunRepository} on SQLite: runs, their event log and the run's one commit point. Every method is
 * one transaction; the rules of `repositories.ts` (terminal is final, fencing) are checked inside it.
 */
import { AgentGateError } from '../../errors.js';
import { TERMINAL_STATES, applyTransition, isTerminalState, type Run } from '../../orchestrator/state-machine.js';
import {
  CLOSING_EVENT_TYPES,
  type CommitOutcome,
  type CommitRequest,
  type CreateRunInput,
  type Fence,
  type RunRepository,
} from '../repositories.js';
import type {
  ListEventsQuery,
  ListRunsQuery,
  NewEvent,
  Page,
  RunMeta,
  RunStateChangedData,
  StoredEvent,
  StoredRun,
  StoredWorkOrderEvent,
} from '../types.js';
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
} from './codec.js';
import type { SqliteDatabase } from './database.js';
import type { SqliteLeaseRepository } from './lease-repository.js';
import type { SqliteWorkOrderRepository } from './work-order-repository.js';

const RUN_COLUMNS =
  'id, work_order_id, state, iteration, max_iterations, result, error_json, branch, data_json, version, created_at, updated_at, completed_at';

/** Event types only {@link SqliteRunRepository.commit} may write. */
const COMMIT_ONLY_TYPES: ReadonlySet<string> = new Set(['run_state_changed', ...Object.values(CLOSING_EVENT_TYPES)]);

type RunInsertParams = Omit<RunRow, 'version'>;

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
      `INSERT INTO runs (${RUN_COLUMNS})
       VALUES (@id, @work_order_id, @state, @iteration, @max_iterations, @result, @error_json, @branch, @data_json, 1, @created_at, @updated_at, @completed_at)`,
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

  async create(input: CreateRunInput): Promise<{ run: StoredRun; workOrderEvent: StoredWorkOrderEvent | null }> {
    const { run, meta = {}, lease } = input;
    const params = runInsertParams(run, meta.branch ?? null, toJson(meta.data ?? {}, 'run metadata'));
    return this.db.write('runs.create', () => {
      let workOrderEvent: StoredWorkOrderEvent | null = null;
      if (input.workOrder !== undefined) {
        if (input.workOrder.id !== run.workOrderId) {
          throw new AgentGateError('AG_ERR_INTERNAL', `Run ${run.id} belongs to work order ${run.workOrderId}, not ${input.workOrder.id}`);
        }
        if (!this.workOrders.existsInTransaction(run.workOrderId)) workOrderEvent = this.workOrders.createInTransaction(input.workOrder).event;
      } else if (!this.workOrders.existsInTransaction(run.workOrderId)) {
        throw workOrderNotFound(run.workOrderId);
      }
      const acquired = this.leases.acquireInTransaction({ key: lease.key, owner: lease.owner, runId: run.id, ttlMs: lease.ttlMs, ...(lease.now === undefined ? {} : { now: lease.now }) });
      if (!acquired) {
        throw new AgentGateError('AG_ERR_LEASE_HELD', `Another live owner holds the lease ${lease.key}; run ${run.id} was not created`, {
          details: { key: lease.key, runId: run.id },
        });
      }
      this.stmts.insert.run(params);
      return { run: this.require(run.id), workOrderEvent };
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
      if (request.expectedVersion !== undefined && request.expectedVersion !== current.version) {
        throw new AgentGateError('AG_ERR_STORE_CONFLICT', `Run ${runId} is at version ${current.version}, expected ${request.expectedVersion}`, {
          details: { runId, version: current.version, expectedVersion: request.expectedVersion },
        });
      }
      const at = request.at ?? this.db.now();
      const next = applyTransition(current, request.event, request.error === undefined ? { at } : { at, error: request.error });
      const closing = checkClosing(runId, next, request.closing);
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
      const data: RunStateChangedData = {
        from: current.state,
        event: request.event,
        to: next.state,
        iteration: next.iteration,
        ...(next.result === null ? {} : { result: next.result }),
        ...(request.error === undefined ? {} : { error: request.error }),
      };
      const events = [this.insertEvent(runId, current.workOrderId, { type: 'run_state_changed', data, timestamp: at })];
      if (closing !== undefined) {
        events.push(this.insertEvent(runId, current.workOrderId, { ...closing, timestamp: closing.timestamp ?? at }));
      }
      return { run: this.require(runId), events };
    });
  }

  /**
   * Each seq is `max(seq) + 1` for the run, computed under the write lock, so concurrent writers (any
   * connection, any process) get consecutive seqs with no gap or duplicate.
   */
  async appendEvents(runId: string, events: readonly NewEvent[], fence: Fence | null): Promise<StoredEvent[]> {
    for (const event of events) {
      if (COMMIT_ONLY_TYPES.has(event.type)) {
        throw new AgentGateError('AG_ERR_INTERNAL', `${event.type} is written by runs.commit only, not appended`, { details: { runId, type: event.type } });
      }
    }
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
    if (isTerminalState(run.state)) {
      throw new AgentGateError('AG_ERR_RUN_ALREADY_TERMINAL', `Refused ${operation}: run ${runId} is already ${run.state}`, {
        details: { runId, state: run.state, operation },
      });
    }
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

/** A commit into a terminal state carries exactly its closing event; any other commit carries none. */
function checkClosing(runId: string, next: Run, closing: NewEvent | undefined): NewEvent | undefined {
  if (!isTerminalState(next.state)) {
    if (closing !== undefined) {
      throw new AgentGateError('AG_ERR_INTERNAL', `Run ${runId}: a closing event (${closing.type}) on a commit into ${next.state}`, {
        details: { runId, to: next.state, closing: closing.type },
      });
    }
    return undefined;
  }
  const expected = CLOSING_EVENT_TYPES[next.state];
  if (closing === undefined || closing.type !== expected) {
    throw new AgentGateError('AG_ERR_INTERNAL', `Run ${runId}: a commit into ${next.state} must carry its ${expected} event`, {
      details: { runId, to: next.state, expected, ...(closing === undefined ? {} : { closing: closing.type }) },
    });
  }
  return closing;
}

function runInsertParams(run: Run, branch: string | null, dataJson: string): RunInsertParams {
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
  };
}
