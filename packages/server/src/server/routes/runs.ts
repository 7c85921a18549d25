/**
 * `GET /api/v1/runs` (filtered, paginated) and `GET /api/v1/runs/:id` (with its iteration records).
 * The event log and the SSE stream of a run are served by the event routes (`routes/events.ts`).
 */
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { AgentGateError } from '../../errors.js';
import type { StoredIterationRecord } from '../../store/repositories.js';
import type { StoredRun } from '../../store/types.js';
import type { RouteDeps } from '../app.js';
import { ok, responses } from '../envelope.js';
import type { IterationViewSchema} from '../schemas.js';
import { IdParamsSchema, ListRunsQuerySchema, RunDetailSchema, RunViewSchema, pageSchema } from '../schemas.js';
import type { z } from 'zod';

export type RunView = z.output<typeof RunViewSchema>;
export type IterationView = z.output<typeof IterationViewSchema>;

export function toRunView(run: StoredRun): RunView {
  return {
    id: run.id,
    workOrderId: run.workOrderId,
    state: run.state,
    iteration: run.iteration,
    maxIterations: run.maxIterations,
    result: run.result,
    error: run.error === null ? null : { ...run.error },
    branch: run.branch,
    meta: { ...run.meta },
    createdAt: run.createdAt,
    updatedAt: run.updatedAt,
    completedAt: run.completedAt,
  };
}

function toIterationView(stored: StoredIterationRecord): IterationView {
  return { iteration: stored.iteration, startedAt: stored.startedAt, completedAt: stored.completedAt, record: { ...stored.record } };
}

export const runRoutes: FastifyPluginAsyncZod<RouteDeps> = async (app, { runtime }) => {
  app.get(
    '/api/v1/runs',
    {
      schema: {
        tags: ['runs'],
        summary: 'List runs, newest first',
        querystring: ListRunsQuerySchema,
        response: responses(200, pageSchema(RunViewSchema)),
      },
    },
    async (request) => {
      const { limit, offset, workOrderId, state } = request.query;
      const page = await runtime.repos.runs.list({ limit, offset, ...(workOrderId !== undefined && { workOrderId }), ...(state !== undefined && { state }) });
      return ok({ items: page.items.map(toRunView), total: page.total, limit, offset, hasMore: offset + page.items.length < page.total });
    },
  );

  app.get(
    '/api/v1/runs/:id',
    {
      schema: {
        tags: ['runs'],
        summary: 'A run with its iteration records',
        params: IdParamsSchema,
        response: responses(200, RunDetailSchema),
      },
    },
    async (request) => {
      const run = await runtime.repos.runs.get(request.params.id);
      if (run === null) throw new AgentGateError('AG_ERR_RUN_NOT_FOUND', `No run with id ${request.params.id}`);
      const iterations = await runtime.repos.iterations.list(run.id);
      return ok({ ...toRunView(run), iterations: iterations.map(toIterationView) });
    },
  );
};
