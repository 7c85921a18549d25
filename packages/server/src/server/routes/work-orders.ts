/**
 * The WorkOrder routes of the original API (SPEC 10): submit (queued, runs automatically), list, detail
 * with queue position and runs, cancel, and run again. A legacy body is validated by the WorkOrder
 * schema (`schemas/work-order.ts`, lenient where the old API was) and translated by
 * `workOrderToTaskSpec()`, so it runs on the same path as a TaskSpec.
 */
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import type { z } from 'zod';
import { AgentGateError } from '../../errors.js';
import { resolveTaskSpec, workOrderToTaskSpec } from '../../schemas/resolve.js';
import { WorkOrderBodySchema } from '../../schemas/work-order.js';
import type { StoredWorkOrder } from '../../store/types.js';
import type { RouteDeps, ServerRuntime } from '../app.js';
import { rawBodyOf, rememberRawBody } from '../app.js';
import { ok, responses } from '../envelope.js';
import { IdParamsSchema, ListWorkOrdersQuerySchema, WorkOrderDetailSchema, WorkOrderViewSchema, pageSchema } from '../schemas.js';
import { toRunView } from './runs.js';

export type WorkOrderView = z.output<typeof WorkOrderViewSchema>;

/** Runs listed with a work order's detail (newest first). */
const RUNS_IN_DETAIL = 100;

function text(value: unknown): string | null {
  return typeof value === 'string' ? value : null;
}

export function toWorkOrderView(workOrder: StoredWorkOrder, queuePosition: number | null): WorkOrderView {
  return {
    id: workOrder.id,
    status: workOrder.status,
    source: workOrder.source,
    name: text(workOrder.spec['name']),
    taskPrompt: text(workOrder.spec['prompt']),
    queuePosition,
    createdAt: workOrder.createdAt,
    updatedAt: workOrder.updatedAt,
    spec: { ...workOrder.spec },
    request: workOrder.request === null ? null : { ...workOrder.request },
  };
}

/** The work order's queue position while it is queued (null otherwise, without asking the queue). */
export async function positionOf(runtime: ServerRuntime, workOrder: StoredWorkOrder): Promise<number | null> {
  return workOrder.status === 'queued' ? runtime.queue.position(workOrder.id) : null;
}

async function getWorkOrder(runtime: ServerRuntime, id: string): Promise<StoredWorkOrder> {
  const workOrder = await runtime.repos.workOrders.get(id);
  if (workOrder === null) throw new AgentGateError('AG_ERR_WORK_ORDER_NOT_FOUND', `No work order with id ${id}`);
  return workOrder;
}

export const workOrderRoutes: FastifyPluginAsyncZod<RouteDeps> = async (app, { runtime }) => {
  app.post(
    '/api/v1/work-orders',
    {
      schema: {
        tags: ['work-orders'],
        summary: 'Submit a work order (queued; runs automatically)',
        body: WorkOrderBodySchema,
        response: responses(201, WorkOrderViewSchema),
      },
      preValidation: rememberRawBody,
    },
    async (request, reply) => {
      const spec = resolveTaskSpec(workOrderToTaskSpec(request.body), {
        source: 'work_order',
        ...(runtime.config.sandbox !== undefined && { sandboxMode: runtime.config.sandbox }),
      });
      const workOrder = await runtime.queue.submit({ spec, source: 'work_order', request: rawBodyOf(request) });
      return reply.status(201).send(ok(toWorkOrderView(workOrder, await positionOf(runtime, workOrder))));
    },
  );

  app.get(
    '/api/v1/work-orders',
    {
      schema: {
        tags: ['work-orders'],
        summary: 'List work orders, newest first',
        querystring: ListWorkOrdersQuerySchema,
        response: responses(200, pageSchema(WorkOrderViewSchema)),
      },
    },
    async (request) => {
      const { limit, offset, status } = request.query;
      const page = await runtime.repos.workOrders.list({ limit, offset, ...(status !== undefined && { status }) });
      const items = await Promise.all(page.items.map(async (workOrder) => toWorkOrderView(workOrder, await positionOf(runtime, workOrder))));
      return ok({ items, total: page.total, limit, offset, hasMore: offset + page.items.length < page.total });
    },
  );

  app.get(
    '/api/v1/work-orders/:id',
    {
      schema: {
        tags: ['work-orders'],
        summary: 'A work order with its queue position and runs',
        params: IdParamsSchema,
        response: responses(200, WorkOrderDetailSchema),
      },
    },
    async (request) => {
      const workOrder = await getWorkOrder(runtime, request.params.id);
      const runs = await runtime.repos.runs.list({ workOrderId: workOrder.id, limit: RUNS_IN_DETAIL, offset: 0 });
      return ok({ ...toWorkOrderView(workOrder, await positionOf(runtime, workOrder)), runs: runs.items.map(toRunView) });
    },
  );

  app.delete(
    '/api/v1/work-orders/:id',
    {
      schema: {
        tags: ['work-orders'],
        summary: 'Cancel a queued or running work order',
        description: '409 when the work order has already finished.',
        params: IdParamsSchema,
        response: responses(200, WorkOrderViewSchema),
      },
    },
    async (request) => {
      await getWorkOrder(runtime, request.params.id);
      const workOrder = await runtime.queue.cancel(request.params.id, 'canceled via the API');
      return ok(toWorkOrderView(workOrder, await positionOf(runtime, workOrder)));
    },
  );

  app.post(
    '/api/v1/work-orders/:id/runs',
    {
      schema: {
        tags: ['work-orders'],
        summary: 'Run a finished work order again (queued)',
        description: '409 while the work order is queued or running.',
        params: IdParamsSchema,
        response: responses(202, WorkOrderViewSchema),
      },
    },
    async (request, reply) => {
      await getWorkOrder(runtime, request.params.id);
      const workOrder = await runtime.queue.runAgain(request.params.id);
      return reply.status(202).send(ok(toWorkOrderView(workOrder, await positionOf(runtime, workOrder))));
    },
  );
};
