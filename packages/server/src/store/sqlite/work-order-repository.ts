/** {@link WorkOrderRepository} on SQLite: work orders and their own event log. */
import type { WorkOrderRepository } from '../repositories.js';
import type {
  ListEventsQuery,
  ListWorkOrdersQuery,
  NewWorkOrder,
  Page,
  StoredWorkOrder,
  StoredWorkOrderEvent,
  WorkOrderStatus,
} from '../types.js';
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
import { workOrderClaimed } from '../run-rules.js';
import type { SqliteDatabase } from './database.js';

function prepare(db: SqliteDatabase) {
  const c = db.connection;
  return {
    insert: c.prepare<[WorkOrderRow]>(
      `INSERT INTO work_orders (id, status, source, spec_json, request_json, created_at, updated_at)
       VALUES (@id, @status, @source, @spec_json, @request_json, @created_at, @updated_at)`,
    ),
    get: c.prepare<[string], WorkOrderRow>('SELECT * FROM work_orders WHERE id = ?'),
    countQueued: c.prepare<[], CountRow>("SELECT COUNT(*) AS total FROM work_orders WHERE status = 'queued'"),
    listQueued: c.prepare<[number, number], WorkOrderRow>(
      "SELECT * FROM work_orders WHERE status = 'queued' ORDER BY updated_at ASC, rowid ASC LIMIT ? OFFSET ?",
    ),
    updateStatus: c.prepare<[string, string, string]>('UPDATE work_orders SET status = ?, updated_at = ? WHERE id = ?'),
    nextEventSeq: c.prepare<[string], SeqRow>('SELECT COALESCE(MAX(seq), 0) + 1 AS seq FROM work_order_events WHERE work_order_id = ?'),
    lastEventSeq: c.prepare<[string], SeqRow>('SELECT COALESCE(MAX(seq), 0) AS seq FROM work_order_events WHERE work_order_id = ?'),
    insertEvent: c.prepare<[WorkOrderEventRow]>(
      `INSERT INTO work_order_events (work_order_id, seq, type, timestamp, data_json)
       VALUES (@work_order_id, @seq, @type, @timestamp, @data_json)`,
    ),
    listEvents: c.prepare<[string, number, number], WorkOrderEventRow>(
      'SELECT * FROM work_order_events WHERE work_order_id = ? AND seq > ? ORDER BY seq ASC LIMIT ?',
    ),
  };
}

export class SqliteWorkOrderRepository implements WorkOrderRepository {
  private readonly stmts: ReturnType<typeof prepare>;

  constructor(private readonly db: SqliteDatabase) {
    this.stmts = prepare(db);
  }

  async create(input: NewWorkOrder): Promise<{ workOrder: StoredWorkOrder; event: StoredWorkOrderEvent }> {
    return this.db.write('workOrders.create', () => this.createInTransaction(input));
  }

  async get(id: string): Promise<StoredWorkOrder | null> {
    return this.db.read('workOrders.get', () => {
      const row = this.stmts.get.get(id);
      return row === undefined ? null : mapWorkOrder(row);
    });
  }

  async list(query: ListWorkOrdersQuery): Promise<Page<StoredWorkOrder>> {
    checkPaging(query.limit, query.offset);
    return this.db.snapshot('workOrders.list', () => {
      const where = query.status === undefined ? '' : 'WHERE status = @status';
      const params: Record<string, string> = query.status === undefined ? {} : { status: query.status };
      const c = this.db.connection;
      const total = c.prepare<[Record<string, string>], CountRow>(`SELECT COUNT(*) AS total FROM work_orders ${where}`).get(params);
      const rows = c
        .prepare<[Record<string, string | number>], WorkOrderRow>(
          `SELECT * FROM work_orders ${where} ORDER BY created_at DESC, id DESC LIMIT @limit OFFSET @offset`,
        )
        .all({ ...params, limit: query.limit, offset: query.offset });
      return { items: rows.map(mapWorkOrder), total: total?.total ?? 0 };
    });
  }

  async listQueued(query: { readonly limit: number; readonly offset: number }): Promise<Page<StoredWorkOrder>> {
    checkPaging(query.limit, query.offset);
    return this.db.snapshot('workOrders.listQueued', () => {
      const total = this.stmts.countQueued.get();
      // rowid is the insertion order of the work order: the stable tiebreak of equal timestamps.
      const rows = this.stmts.listQueued.all(query.limit, query.offset);
      return { items: rows.map(mapWorkOrder), total: total?.total ?? 0 };
    });
  }

  async setStatus(
    id: string,
    status: WorkOrderStatus,
    data: { readonly runId?: string; readonly reason?: string } = {},
    at?: string,
  ): Promise<{ workOrder: StoredWorkOrder; event: StoredWorkOrderEvent }> {
    const timestamp = at ?? this.db.now();
    const payload = toJson({ status, ...data }, 'work_order_updated event data');
    return this.db.write('workOrders.setStatus', () => this.setStatusInTransaction(id, status, payload, timestamp));
  }

  async listEvents(id: string, query: ListEventsQuery = {}): Promise<StoredWorkOrderEvent[]> {
    const { afterSeq, limit } = checkEventsQuery(query);
    return this.db.read('workOrders.listEvents', () => this.stmts.listEvents.all(id, afterSeq, limit).map(mapWorkOrderEvent));
  }

  async lastSeq(id: string): Promise<number> {
    return this.db.read('workOrders.lastSeq', () => this.stmts.lastEventSeq.get(id)?.seq ?? 0);
  }

  /** Inside the caller's write transaction: whether the work order exists. */
  existsInTransaction(id: string): boolean {
    return this.stmts.get.get(id) !== undefined;
  }

  /**
   * Inserts the work order and its `work_order_created` event (`{ status }`) inside the caller's write
   * transaction (`runs.create` creates a work order together with its first run).
   * @throws AG_ERR_STORE_CONFLICT when the id exists
   */
  createInTransaction(input: NewWorkOrder): { workOrder: StoredWorkOrder; event: StoredWorkOrderEvent } {
    const at = input.createdAt ?? this.db.now();
    const status = input.status ?? 'queued';
    this.stmts.insert.run({
      id: input.id,
      status,
      source: input.source,
      spec_json: toJson(input.spec, 'spec'),
      request_json: input.request === undefined || input.request === null ? null : toJson(input.request, 'request'),
      created_at: at,
      updated_at: at,
    });
    const event = this.insertEvent(input.id, 'work_order_created', toJson({ status }, 'work_order_created event data'), at);
    return { workOrder: this.require(input.id), event };
  }

  /**
   * The claim of `runs.create({ claim: true })`, inside the caller's write transaction: the work order
   * must be `queued`; it becomes `running` with `work_order_updated {status: 'running', runId}`.
   * @throws AG_ERR_WORK_ORDER_NOT_FOUND, AG_ERR_WORK_ORDER_CLAIMED
   */
  claimInTransaction(id: string, runId: string): StoredWorkOrderEvent {
    const current = this.stmts.get.get(id);
    if (current === undefined) throw workOrderNotFound(id);
    if (current.status !== 'queued') throw workOrderClaimed(id, current.status, runId);
    const payload = toJson({ status: 'running', runId }, 'work_order_updated event data');
    return this.setStatusInTransaction(id, 'running', payload, this.db.now()).event;
  }

  private setStatusInTransaction(id: string, status: WorkOrderStatus, payload: string, timestamp: string) {
    if (this.stmts.updateStatus.run(status, timestamp, id).changes === 0) throw workOrderNotFound(id);
    const event = this.insertEvent(id, 'work_order_updated', payload, timestamp);
    return { workOrder: this.require(id), event };
  }

  /** Must run inside a write transaction: the seq read and the insert share the write lock. */
  private insertEvent(workOrderId: string, type: string, dataJson: string, timestamp: string): StoredWorkOrderEvent {
    const seq = this.stmts.nextEventSeq.get(workOrderId)?.seq ?? 1;
    const row: WorkOrderEventRow = { work_order_id: workOrderId, seq, type, timestamp, data_json: dataJson };
    this.stmts.insertEvent.run(row);
    return mapWorkOrderEvent(row);
  }

  private require(id: string): StoredWorkOrder {
    const row = this.stmts.get.get(id);
    if (row === undefined) throw workOrderNotFound(id);
    return mapWorkOrder(row);
  }
}
