/**
 * `POST /api/v1/auth/ticket`: a single-use ticket for a browser's WebSocket (see `server/auth.ts`). The
 * route itself requires the API key like every other non-health route, so only an authenticated client
 * can hand a ticket to its browser.
 */
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import type { RouteDeps } from '../app.js';
import { TICKET_PROTOCOL_PREFIX } from '../auth.js';
import { ok, responses } from '../envelope.js';
import { TicketViewSchema } from '../schemas.js';

export const authRoutes: FastifyPluginAsyncZod<RouteDeps> = async (app, { auth }) => {
  app.post(
    '/api/v1/auth/ticket',
    {
      schema: {
        tags: ['auth'],
        summary: 'A single-use WebSocket ticket, valid 30 s',
        description: `Open the WebSocket with the subprotocol \`${TICKET_PROTOCOL_PREFIX}<ticket>\`; never put the ticket or the key in a URL.`,
        response: responses(201, TicketViewSchema),
      },
    },
    async (_request, reply) => {
      const { ticket, expiresAt } = auth.issueTicket();
      reply.header('cache-control', 'no-store');
      return reply.status(201).send(ok({ ticket, expiresAt, protocol: `${TICKET_PROTOCOL_PREFIX}${ticket}` }));
    },
  );
};
