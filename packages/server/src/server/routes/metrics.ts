/** `GET /metrics`: the Prometheus text exposition of `runtime.metrics` (SPEC 11). */
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { RouteDeps } from '../app.js';
import { ErrorEnvelopeSchema } from '../envelope.js';

/** The content type of the Prometheus text format, version 0.0.4. */
export const PROMETHEUS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

export const metricsRoutes: FastifyPluginAsyncZod<RouteDeps> = async (app, { runtime }) => {
  app.get(
    '/metrics',
    {
      schema: {
        tags: ['observability'],
        summary: 'Prometheus metrics (text exposition format)',
        produces: ['text/plain'],
        response: { 200: z.string().describe('Prometheus text format 0.0.4'), '4xx': ErrorEnvelopeSchema, '5xx': ErrorEnvelopeSchema },
      },
    },
    async (_request, reply) => {
      const text = await runtime.metrics.render();
      // A string with a non-JSON content type is sent as is, not through the JSON serializer.
      return reply.type(PROMETHEUS_CONTENT_TYPE).send(text);
    },
  );
};
