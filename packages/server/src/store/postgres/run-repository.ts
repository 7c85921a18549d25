/**
 * {@link RunRepository} on PostgreSQL: runs, their event log and the run's one commit point. Every write
 * is one transaction that first locks the run row (`FOR NO KEY UPDATE`), then checks the rules of
 * `repositories.ts` (terminal is final, fencing against the locked lease row) and writes.
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
import type { ListEventsQuery, ListRunsQuery, NewEvent, Page, RunMeta, StoredEvent, StoredRun, StoredWorkOrderEvent } from '../types.js';
import { DB_NOW_ISO, type PgTx, type PostgresDatabase, type SqlValue } from './database.js';
import type { PostgresLeaseRepository } from './lease-repository.js';
import type { PostgresWorkOrderRepository } from './work-order-repository.js';

const RUN_COLUMNS =
  'id, work_order_id, state, iteration, max_iterations, result, error_json, branch, data_json, version, created_at, updated_at, completed_at';
const EVENT_COLUMNS = 'run_id, seq, work_order_id, type, timestamp, data_json';

/** The partial unique index over non-terminal runs' `exclusive_key` (postgres/migrations.ts). */
const EXCLUSIVE_KEY_INDEX = 'runs_exclusive_key_idx';

const INSERT_RUN = `
  INSERT INTO runs (id, work_order_id, state, iteration, max_iterations, result, error_json, branch, data_json, created_at, updated_at, completed_at, exclusive_key)
  VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
  RETURNING ${RUN_COLUMNS}`;

/**
 * Appends a batch with consecutive seqs after the run's highest. The `max(seq)` is read by this statement,
 * which runs after the caller locked the run row: a concurrent appender of the same run waits for that
 * lock and, at READ COMMITTED, then reads the max including this batch — no gap, no duplicate, and no
 * sequence object (which would leave gaps on rollback). A missing timestamp is the database clock's.
 */
const INSERT_EVENTS = `
  INSERT INTO events (run_id, seq, work_order_id, type, timestamp, data_json)
  SELECT $1, (b.last + e.ord)::int, $2, e.type, COALESCE(e.ts, ${DB_NOW_ISO}), e.data
  FROM (SELECT COALESCE(MAX(seq), 0) AS last FROM events WHERE run_id = $1) b,
       unnest($3::text[], $4::text[], $5::text[]) WITH ORDINALITY AS e(type, ts, data, ord)
  RETURNING ${EVENT_COLUMNS}`;

const UPDATE_STATE = `
  UPDATE runs SET state = $3, iteration = $4, result = $5, error_json = $6, updated_at = $7, completed_at = $8, version = version + 1
  WHERE id = $1 AND version = $2
  RETURNING ${RUN_COLUMNS}`;

const NON_TERMINAL = `state NOT IN (${TERMINAL_STATES.map((state) => `'${state}'`).join(', ')})`;

function errorJson(run: Run): string | null {
  return run.error === null ? null : toJson(run.error, 'run error');
}

export class PostgresRunRepository implements RunRepository {
  constructor(
    private readonly db: PostgresDatabase,
    private readonly workOrders: PostgresWorkOrderRepository,
    private readonly leases: PostgresLeaseRepository,
  ) {}

  async create(input: CreateRunInput): Promise<CreateRunResult> {
    const { run, meta = {}, lease } = input;
    const exclusiveKey = input.exclusiveKey ?? null;
    const values: SqlValue[] = [
      run.id, run.workOrderId, run.state, run.iteration, run.maxIterations, run.result, errorJson(run), meta.branch ?? null,
      toJson(meta.data ?? {}, 'run metadata'), run.createdAt, run.updatedAt, run.completedAt, exclusiveKey,
    ];
    if (input.workOrder !== undefined) assertSameWorkOrder(run, input.workOrder.id);
    return this.db.write('runs.create', async (tx) => {
      const workOrderEvents: StoredWorkOrderEvent[] = [];
      let workOrderEvent: StoredWorkOrderEvent | null = null;
      if (input.workOrder !== undefined) {
        workOrderEvent = await this.workOrders.createIfAbsentInTransaction(tx, input.workOrder);
        if (workOrderEvent !== null) workOrderEvents.push(workOrderEvent);
      } else if (!(await this.workOrders.existsInTransaction(tx, run.workOrderId))) {
        throw workOrderNotFound(run.workOrderId);
      }
      if (input.claim === true) workOrderEvents.push(await this.workOrders.claimInTransaction(tx, run.workOrderId, run.id));
      const leaseRequest = { key: lease.key, owner: lease.owner, runId: run.id, ttlMs: lease.ttlMs, ...(lease.now === undefined ? {} : { now: lease.now }) };
      if (!(await this.leases.acquireInTransaction(tx, leaseRequest))) throw leaseHeld(lease.key, run.id);
      let row: RunRow | undefined;
      try {
        row = await tx.first<RunRow>(INSERT_RUN, values);
      } catch (err) {
        // A concurrent create holding the key made the insert wait for its commit, then fail here.
        if (exclusiveKey !== null && err instanceof AgentGateError && err.details?.['constraint'] === EXCLUSIVE_KEY_INDEX) throw exclusiveBusy(exclusiveKey, run.id, err);
        throw err;
      }
      return { run: this.mapped(row, run.id), workOrderEvent, workOrderEvents };
    });
  }

  async get(id: string): Promise<StoredRun | null> {
    const [row] = await this.db.query<RunRow>('runs.get', `SELECT ${RUN_COLUMNS} FROM runs WHERE id = $1`, [id]);
    return row === undefined ? null : mapRun(row);
  }

  async list(query: ListRunsQuery): Promise<Page<StoredRun>> {
    checkPaging(query.limit, query.offset);
    const conditions: string[] = [];
    const filter: SqlValue[] = [];
    if (query.workOrderId !== undefined) {
      filter.push(query.workOrderId);
      conditions.push(`work_order_id = $${filter.length}`);
    }
    if (query.state !== undefined) {
      filter.push(query.state);
      conditions.push(`state = $${filter.length}`);
    }
    const where = conditions.length === 0 ? '' : `WHERE ${conditions.join(' AND ')}`;
    return this.db.snapshot('runs.list', async (tx) => {
      const total = await tx.first<CountRow>(`SELECT COUNT(*)::int AS total FROM runs ${where}`, filter);
      const rows = await tx.rows<RunRow>(
        `SELECT ${RUN_COLUMNS} FROM runs ${where} ORDER BY created_at DESC, id DESC LIMIT $${filter.length + 1} OFFSET $${filter.length + 2}`,
        [...filter, query.limit, query.offset],
      );
      return { items: rows.map(mapRun), total: total?.total ?? 0 };
    });
  }

  async listNonTerminal(): Promise<StoredRun[]> {
    const rows = await this.db.query<RunRow>('runs.listNonTerminal', `SELECT ${RUN_COLUMNS} FROM runs WHERE ${NON_TERMINAL} ORDER BY created_at ASC, id ASC`);
    return rows.map(mapRun);
  }

  /** A key set to `undefined` in `patch` is removed (JSON has no `undefined`). */
  async updateMeta(runId: string, patch: Partial<RunMeta>, fence: Fence | null): Promise<StoredRun> {
    return this.db.write('runs.updateMeta', async (tx) => {
      const current = await this.requireWritable(tx, runId, fence, 'runs.updateMeta');
      const dataJson = toJson({ ...current.meta, ...patch }, 'run metadata');
      const row = await tx.first<RunRow>(`UPDATE runs SET data_json = $2, version = version + 1 WHERE id = $1 RETURNING ${RUN_COLUMNS}`, [runId, dataJson]);
      return this.mapped(row, runId);
    });
  }

  /**
   * In one transaction, holding the run row's lock: refuse a terminal run, check the fence and the
   * expected version, apply the state machine, write the run (bumping `version`), append
   * `run_state_changed` and, into a terminal state, the closing event. Any failure writes nothing.
   */
  async commit(runId: string, request: CommitRequest): Promise<CommitOutcome> {
    return this.db.write('runs.commit', async (tx) => {
      const current = await this.requireWritable(tx, runId, request.fence, 'runs.commit');
      assertExpectedVersion(runId, current.version, request.expectedVersion);
      const at = request.at ?? (await tx.nowIso());
      const next = applyTransition(current, request.event, request.error === undefined ? { at } : { at, error: request.error });
      const toWrite = commitEvents(current, request, next, at);
      const row = await tx.first<RunRow>(UPDATE_STATE, [runId, current.version, next.state, next.iteration, next.result, errorJson(next), next.updatedAt, next.completedAt]);
      if (row === undefined) {
        // Unreachable while the row lock is held; kept so a future non-locking change cannot lose a write silently.
        throw new AgentGateError('AG_ERR_STORE_CONFLICT', `Run ${runId} changed during its commit`, { details: { runId } });
      }
      const events = await this.insertEvents(tx, runId, current.workOrderId, toWrite);
      return { run: mapRun(row), events };
    });
  }

  async appendEvents(runId: string, events: readonly NewEvent[], fence: Fence | null): Promise<StoredEvent[]> {
    assertAppendable(runId, events);
    return this.db.write('runs.appendEvents', async (tx) => {
      const run = await this.requireWritable(tx, runId, fence, 'runs.appendEvents');
      return this.insertEvents(tx, runId, run.workOrderId, events);
    });
  }

  async listEvents(runId: string, query: ListEventsQuery = {}): Promise<StoredEvent[]> {
    const { afterSeq, limit } = checkEventsQuery(query);
    const rows = await this.db.query<EventRow>(
      'runs.listEvents',
      `SELECT ${EVENT_COLUMNS} FROM events WHERE run_id = $1 AND seq > $2 ORDER BY seq ASC LIMIT $3`,
      [runId, afterSeq, limit],
    );
    return rows.map(mapEvent);
  }

  async lastSeq(runId: string): Promise<number> {
    const [row] = await this.db.query<SeqRow>('runs.lastSeq', 'SELECT COALESCE(MAX(seq), 0)::int AS seq FROM events WHERE run_id = $1', [runId]);
    return row?.seq ?? 0;
  }

  /**
   * The guard of every write on behalf of a run, inside the caller's transaction: locks the run row, then
   * checks that the run exists (AG_ERR_RUN_NOT_FOUND), is not terminal (AG_ERR_RUN_ALREADY_TERMINAL) and
   * that the fence holds (AG_ERR_LEASE_LOST, the lease row locked too). Both locks last until commit.
   */
  async requireWritable(tx: PgTx, runId: string, fence: Fence | null, operation: string): Promise<StoredRun> {
    const row = await tx.first<RunRow>(`SELECT ${RUN_COLUMNS} FROM runs WHERE id = $1 FOR NO KEY UPDATE`, [runId]);
    if (row === undefined) throw runNotFound(runId);
    const run = mapRun(row);
    assertNotTerminal(runId, run.state, operation);
    await this.leases.assertFence(tx, fence, operation);
    return run;
  }

  /** Must run after {@link requireWritable} in the same transaction (see {@link INSERT_EVENTS}). */
  private async insertEvents(tx: PgTx, runId: string, workOrderId: string, events: readonly NewEvent[]): Promise<StoredEvent[]> {
    if (events.length === 0) return [];
    const injected = this.db.injectedNowIso();
    const types = events.map((event) => event.type);
    const timestamps = events.map((event) => event.timestamp ?? injected);
    const data = events.map((event) => toJson(event.data, `${event.type} event data`));
    const rows = await tx.rows<EventRow>(INSERT_EVENTS, [runId, workOrderId, types, timestamps, data]);
    return rows.map(mapEvent).sort((a, b) => a.seq - b.seq);
  }

  private mapped(row: RunRow | undefined, runId: string): StoredRun {
    if (row === undefined) throw runNotFound(runId);
    return mapRun(row);
  }
}
