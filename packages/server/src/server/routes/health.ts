/**
 * `GET /health`, `/health/live` (the process answers) and `/health/ready` (the store answers a query:
 * `repos.ping()`, a round trip to the database on PostgreSQL — an API node that lost its database is
 * taken out of the load balancer's rotation). These routes never require the API key: load balancers and
 * orchestrators probe them unauthenticated.
 */
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { toAgentGateError } from '../../errors.js';
import type { RouteDeps } from '../app.js';
import { ErrorEnvelopeSchema, ok, okEnvelope } from '../envelope.js';
import { HealthViewSchema } from '../schemas.js';

export const healthRoutes: FastifyPluginAsyncZod<RouteDeps> = async (app, { runtime, version, startedAt }) => {
  const view = (status: 'ok' | 'ready' | 'live') => ok({ status, version, uptimeSeconds: Math.round((Date.now() - startedAt) / 1000) });
  const response = { 200: okEnvelope(HealthViewSchema), '4xx': ErrorEnvelopeSchema, '5xx': ErrorEnvelopeSchema };

  app.get('/health', { schema: { tags: ['health'], summary: 'Liveness and version', response } }, async () => view('ok'));
  app.get('/health/live', { schema: { tags: ['health'], summary: 'The process is serving requests', response } }, async () => view('live'));
  app.get(
    '/health/ready',
    { schema: { tags: ['health'], summary: 'The store is reachable (503 when not)', response } },
    async (request, reply) => {
      try {
        await runtime.repos.ping();
      } catch (error) {
        const failure = toAgentGateError(error, 'AG_ERR_STORE_OPEN');
        request.log.warn({ code: failure.code }, 'store not ready');
        return reply.status(503).send({ success: false, error: { code: failure.code, message: 'The store is not reachable' } });
      }
      return view('ready');
    },
  );
};
