/** `GET /api/v1/queue`: depth, running count, capacity and the waiting work orders in order. */
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import type { RouteDeps } from '../app.js';
import { ok, responses } from '../envelope.js';
import { QueueViewSchema } from '../schemas.js';

export const queueRoutes: FastifyPluginAsyncZod<RouteDeps> = async (app, { runtime }) => {
  app.get(
    '/api/v1/queue',
    { schema: { tags: ['queue'], summary: 'Queue depth, running runs and positions', response: responses(200, QueueViewSchema) } },
    async () => {
      const snapshot = await runtime.queue.snapshot();
      return ok({
        depth: snapshot.depth,
        running: snapshot.running,
        maxConcurrent: snapshot.maxConcurrent,
        entries: snapshot.entries.map((entry) => ({ workOrderId: entry.workOrderId, position: entry.position, queuedAt: entry.queuedAt })),
      });
    },
  );
};
