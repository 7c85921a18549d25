/** {@link WorkOrderRepository} on PostgreSQL: work orders, their own event log, and the queue's claim. */
import { AgentGateError } from '../../errors.js';
import {
  checkEventsQuery,
  checkPaging,
  mapWorkOrder,
  mapWorkOrderEvent,
  toJson,
  workOrderNotFound,
  type CountRow,
  type SeqRow,
  type WorkOrderEventRow,
  type WorkOrderRow,
} from '../codec.js';
import type { WorkOrderRepository } from '../repositories.js';
import { workOrderClaimed } from '../run-rules.js';
import type {
  ListEventsQuery,
  ListWorkOrdersQuery,
  NewWorkOrder,
  Page,
  StoredWorkOrder,
  StoredWorkOrderEvent,
  WorkOrderStatus,
} from '../types.js';
import { DB_NOW_ISO, type PgTx, type PostgresDatabase, type SqlValue } from './database.js';

const COLUMNS = 'id, status, source, spec_json, request_json, created_at, updated_at';
const EVENT_COLUMNS = 'work_order_id, seq, type, timestamp, data_json';

/** `$n` when the caller or an injected clock gave the time, else the database clock. */
const isoOr = (param: string): string => `COALESCE(${param}::text, ${DB_NOW_ISO})`;

/** Insert of a work order; `created_at = updated_at`, one clock reading. Returns no row when the id exists. */
const insertSql = (onConflict: string): string => `
  INSERT INTO work_orders (id, status, source, spec_json, request_json, created_at, updated_at)
  SELECT $1, $2, $3, $4, $5, t.at, t.at FROM (SELECT ${isoOr('$6')} AS at) t
  ${onConflict}
  RETURNING ${COLUMNS}`;

/**
 * The next seq is `max(seq) + 1`, read by this statement — which runs after the work-order row was
 * locked (updated or inserted) in the same transaction, so no other writer can read the same max.
 */
const INSERT_EVENT = `
  INSERT INTO work_order_events (work_order_id, seq, type, timestamp, data_json)
  SELECT $1, COALESCE(MAX(seq), 0) + 1, $2, $3, $4 FROM work_order_events WHERE work_order_id = $1
  RETURNING ${EVENT_COLUMNS}`;

export class PostgresWorkOrderRepository implements WorkOrderRepository {
  constructor(private readonly db: PostgresDatabase) {}

  async create(input: NewWorkOrder): Promise<{ workOrder: StoredWorkOrder; event: StoredWorkOrderEvent }> {
    const params = this.insertParams(input);
    return this.db.write('workOrders.create', async (tx) => {
      // A duplicate id fails the insert with a unique violation: AG_ERR_STORE_CONFLICT.
      const row = await tx.first<WorkOrderRow>(insertSql(''), params);
      return this.created(tx, row, input);
    });
  }

  async get(id: string): Promise<StoredWorkOrder | null> {
    const [row] = await this.db.query<WorkOrderRow>('workOrders.get', `SELECT ${COLUMNS} FROM work_orders WHERE id = $1`, [id]);
    return row === undefined ? null : mapWorkOrder(row);
  }

  async list(query: ListWorkOrdersQuery): Promise<Page<StoredWorkOrder>> {
    checkPaging(query.limit, query.offset);
    const where = query.status === undefined ? '' : 'WHERE status = $1';
    const filter: SqlValue[] = query.status === undefined ? [] : [query.status];
    const n = filter.length;
    return this.db.snapshot('workOrders.list', async (tx) => {
      const total = await tx.first<CountRow>(`SELECT COUNT(*)::int AS total FROM work_orders ${where}`, filter);
      const rows = await tx.rows<WorkOrderRow>(
        `SELECT ${COLUMNS} FROM work_orders ${where} ORDER BY created_at DESC, id DESC LIMIT $${n + 1} OFFSET $${n + 2}`,
        [...filter, query.limit, query.offset],
      );
      return { items: rows.map(mapWorkOrder), total: total?.total ?? 0 };
    });
  }

  async listQueued(query: { readonly limit: number; readonly offset: number }): Promise<Page<StoredWorkOrder>> {
    checkPaging(query.limit, query.offset);
    return this.db.snapshot('workOrders.listQueued', async (tx) => {
      const total = await tx.first<CountRow>("SELECT COUNT(*)::int AS total FROM work_orders WHERE status = 'queued'");
      // insert_order is the insertion order of the work order: the stable tiebreak of equal timestamps.
      const rows = await tx.rows<WorkOrderRow>(
        `SELECT ${COLUMNS} FROM work_orders WHERE status = 'queued' ORDER BY updated_at ASC, insert_order ASC LIMIT $1 OFFSET $2`,
        [query.limit, query.offset],
      );
      return { items: rows.map(mapWorkOrder), total: total?.total ?? 0 };
    });
  }

  async setStatus(
    id: string,
    status: WorkOrderStatus,
    data: { readonly runId?: string; readonly reason?: string } = {},
    at?: string,
  ): Promise<{ workOrder: StoredWorkOrder; event: StoredWorkOrderEvent }> {
    const payload = toJson({ status, ...data }, 'work_order_updated event data');
    return this.db.write('workOrders.setStatus', (tx) => this.setStatusInTransaction(tx, id, status, payload, at ?? this.db.injectedNowIso()));
  }

  async listEvents(id: string, query: ListEventsQuery = {}): Promise<StoredWorkOrderEvent[]> {
    const { afterSeq, limit } = checkEventsQuery(query);
    const rows = await this.db.query<WorkOrderEventRow>(
      'workOrders.listEvents',
      `SELECT ${EVENT_COLUMNS} FROM work_order_events WHERE work_order_id = $1 AND seq > $2 ORDER BY seq ASC LIMIT $3`,
      [id, afterSeq, limit],
    );
    return rows.map(mapWorkOrderEvent);
  }

  async lastSeq(id: string): Promise<number> {
    const [row] = await this.db.query<SeqRow>('workOrders.lastSeq', 'SELECT COALESCE(MAX(seq), 0)::int AS seq FROM work_order_events WHERE work_order_id = $1', [id]);
    return row?.seq ?? 0;
  }

  /** Inside the caller's transaction: whether the work order exists. */
  async existsInTransaction(tx: PgTx, id: string): Promise<boolean> {
    return (await tx.first('SELECT 1 FROM work_orders WHERE id = $1', [id])) !== undefined;
  }

  /**
   * Inserts the work order and its `work_order_created` event inside the caller's transaction, unless it
   * exists (a concurrent creator's insert is waited for, then skipped): null then. `runs.create` creates
   * a work order together with its first run.
   */
  async createIfAbsentInTransaction(tx: PgTx, input: NewWorkOrder): Promise<StoredWorkOrderEvent | null> {
    const row = await tx.first<WorkOrderRow>(insertSql('ON CONFLICT (id) DO NOTHING'), this.insertParams(input));
    return row === undefined ? null : (await this.created(tx, row, input)).event;
  }

  /**
   * The claim of `runs.create({ claim: true })`, inside the caller's transaction: locks the work-order
   * row, so concurrent claims queue here and each sees the status the previous one committed; exactly one
   * finds it `queued`. `FOR NO KEY UPDATE` is the lock an UPDATE of non-key columns takes: it excludes
   * other claims and status changes but not the foreign-key checks of rows referencing the work order.
   * @throws AG_ERR_WORK_ORDER_NOT_FOUND, AG_ERR_WORK_ORDER_CLAIMED
   */
  async claimInTransaction(tx: PgTx, id: string, runId: string): Promise<StoredWorkOrderEvent> {
    const current = await tx.first<{ status: string }>('SELECT status FROM work_orders WHERE id = $1 FOR NO KEY UPDATE', [id]);
    if (current === undefined) throw workOrderNotFound(id);
    if (current.status !== 'queued') throw workOrderClaimed(id, current.status, runId);
    const payload = toJson({ status: 'running', runId }, 'work_order_updated event data');
    return (await this.setStatusInTransaction(tx, id, 'running', payload, this.db.injectedNowIso())).event;
  }

  private async setStatusInTransaction(tx: PgTx, id: string, status: WorkOrderStatus, payload: string, at: string | null) {
    // The UPDATE locks the row until commit: the event seq below is read under that lock.
    const row = await tx.first<WorkOrderRow>(`UPDATE work_orders SET status = $2, updated_at = ${isoOr('$3')} WHERE id = $1 RETURNING ${COLUMNS}`, [id, status, at]);
    if (row === undefined) throw workOrderNotFound(id);
    const event = await this.insertEvent(tx, id, 'work_order_updated', payload, row.updated_at);
    return { workOrder: mapWorkOrder(row), event };
  }

  private async created(tx: PgTx, row: WorkOrderRow | undefined, input: NewWorkOrder) {
    if (row === undefined) throw new AgentGateError('AG_ERR_INTERNAL', `The insert of work order ${input.id} returned no row`);
    const event = await this.insertEvent(tx, input.id, 'work_order_created', toJson({ status: row.status }, 'work_order_created event data'), row.created_at);
    return { workOrder: mapWorkOrder(row), event };
  }

  private async insertEvent(tx: PgTx, workOrderId: string, type: string, dataJson: string, timestamp: string): Promise<StoredWorkOrderEvent> {
    const row = await tx.first<WorkOrderEventRow>(INSERT_EVENT, [workOrderId, type, timestamp, dataJson]);
    if (row === undefined) throw new AgentGateError('AG_ERR_INTERNAL', `The insert of a ${type} event of work order ${workOrderId} returned no row`);
    return mapWorkOrderEvent(row);
  }

  private insertParams(input: NewWorkOrder): SqlValue[] {
    return [
      input.id,
      input.status ?? 'queued',
      input.source,
      toJson(input.spec, 'spec'),
      input.request === undefined || input.request === null ? null : toJson(input.request, 'request'),
      input.createdAt ?? this.db.injectedNowIso(),
    ];
  }
}
