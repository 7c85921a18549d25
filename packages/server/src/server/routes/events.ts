/**
 * The event routes (SPEC 10–11, docs/events.md): the WebSocket `GET /ws`, the SSE stream
 * `GET /api/v1/runs/:id/stream` and the stored log `GET /api/v1/runs/:id/events`. All three read the
 * {@link EventHub}: stored events after `afterSeq`, then live ones, each exactly once, in seq order.
 *
 * Authentication is the app's root `onRequest` hook (`server/app.ts`): `Authorization: Bearer <key>`, or
 * for a WebSocket upgrade a single-use ticket offered as the subprotocol `agentgate.ticket.<t>`, which
 * that hook redeems. With `authenticate: 'self'` (an app without that hook: the benchmark) this plugin
 * installs the same check for its own routes. Either way a request without a key and without a ticket
 * is refused here too, so mounting the plugin without the app's hook never leaves it open.
 *
 * `@fastify/websocket` is registered inside this plugin's encapsulated context unless the app already
 * registered it (then the app's options apply). Register it at most once per server: two registrations
 * would each handle every upgrade.
 */
import websocket from '@fastify/websocket';
import type { FastifyBaseLogger, FastifyReply, FastifyRequest } from 'fastify';
import { serializerCompiler, validatorCompiler, type FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { AgentGateError } from '../../errors.js';
import type { EventHub } from '../../observability/event-hub.js';
import { toRunEventEnvelope } from '../../observability/event-envelope.js';
import type { Metrics } from '../../observability/metrics.js';
import { isTerminalState } from '../../orchestrator/state-machine.js';
import type { Repositories } from '../../store/repositories.js';
import { systemClock, type TimerClock } from '../../util/clock.js';
import { ticketFromProtocols } from '../auth.js';
import type { ServerAuth } from '../contracts.js';
import { streamRunEvents } from '../sse-stream.js';
import { DEFAULT_WS_FLOW, WsConnection, WsConnections, type WsFlowOptions } from '../ws-connection.js';
import { MAX_MESSAGE_BYTES, WS_PROTOCOL } from '../ws-protocol.js';

export interface EventRoutesOptions {
  readonly hub: EventHub;
  readonly repos: Pick<Repositories, 'runs' | 'workOrders'>;
  readonly auth: ServerAuth;
  /** WebSocket ping / SSE comment interval; default 30 s. */
  readonly heartbeatMs?: number;
  /** Events held per subscription for a slow client before it is dropped as lagged; default 1000. */
  readonly maxBufferedEvents?: number;
  /** Socket-buffer thresholds and the lag close grace (defaults: {@link DEFAULT_WS_FLOW}). */
  readonly flow?: Partial<Omit<WsFlowOptions, 'heartbeatMs' | 'maxBufferedEvents'>>;
  /** `'upstream'` (default): the app's root hook authenticates (redeems tickets); `'self'`: this plugin does. */
  readonly authenticate?: 'upstream' | 'self';
  /** The server's open sockets; pass one to read its stats (tests, benchmark). */
  readonly connections?: WsConnections;
  /** Feeds `agentgate_ws_connections`. */
  readonly metrics?: Pick<Metrics, 'wsConnections'>;
  readonly clock?: TimerClock;
  readonly logger?: FastifyBaseLogger;
}

/** Largest page of `GET /api/v1/runs/:id/events`. */
export const MAX_EVENTS_PAGE = 1000;
export const DEFAULT_EVENTS_PAGE = 100;

const RunIdParams = z.object({
  id: z
    .string()
    .min(1)
    .max(128)
    .regex(/^[A-Za-z0-9._:-]+$/, { error: 'expected an id (letters, digits, . _ : -)' }),
});

/** A non-negative decimal integer (no signs, exponents or blanks), bounded. */
function decimal(min: number, max: number): z.ZodPipe<z.ZodString, z.ZodTransform<number, string>> {
  return z
    .string()
    .regex(/^\d{1,15}$/, { error: `expected an integer between ${min} and ${max}` })
    .transform((raw, ctx) => {
      const value = Number(raw);
      if (value < min || value > max) {
        ctx.addIssue({ code: 'custom', message: `expected an integer between ${min} and ${max}, got ${raw}` });
        return z.NEVER;
      }
      return value;
    });
}

const EventsQuery = z.object({
  afterSeq: decimal(0, Number.MAX_SAFE_INTEGER).optional().describe('Only events with a higher seq (default 0: from the start)'),
  limit: decimal(1, MAX_EVENTS_PAGE).optional().describe(`Page size, 1-${MAX_EVENTS_PAGE} (default ${DEFAULT_EVENTS_PAGE})`),
});

const StreamQuery = z.object({
  afterSeq: decimal(0, Number.MAX_SAFE_INTEGER).optional().describe('Start after this seq when no Last-Event-ID header is sent'),
});

const LastEventIdHeaders = z.object({
  'last-event-id': decimal(0, Number.MAX_SAFE_INTEGER).optional().describe('The last seq received (EventSource sends it on reconnect)'),
});

const EnvelopeSchema = z
  .object({
    seq: z.number().int(),
    runId: z.string(),
    workOrderId: z.string(),
    type: z.string(),
    timestamp: z.string(),
    data: z.record(z.string(), z.unknown()),
  })
  .meta({ id: 'EventEnvelope' });

const EventsPageSchema = z.object({
  success: z.literal(true),
  data: z.object({ items: z.array(EnvelopeSchema), nextAfterSeq: z.number().int(), hasMore: z.boolean() }),
});

function isWebSocketUpgrade(request: FastifyRequest): boolean {
  return request.headers.upgrade?.toLowerCase() === 'websocket';
}

function refuse(reply: FastifyReply): FastifyReply {
  return reply
    .header('www-authenticate', 'Bearer realm="agentgate"')
    .status(401)
    .send({ success: false, error: { code: 'AG_ERR_API_UNAUTHORIZED', message: 'The API key is missing or wrong' } });
}

export const eventRoutes: FastifyPluginAsyncZod<EventRoutesOptions> = async (app, options) => {
  const { hub, repos, auth } = options;
  const clock = options.clock ?? systemClock;
  const logger = options.logger ?? app.log;
  const flow: WsFlowOptions = {
    ...DEFAULT_WS_FLOW,
    ...options.flow,
    ...(options.heartbeatMs !== undefined && { heartbeatMs: options.heartbeatMs }),
    ...(options.maxBufferedEvents !== undefined && { maxBufferedEvents: options.maxBufferedEvents }),
  };
  for (const [name, value] of Object.entries(flow)) {
    if (!Number.isInteger(value) || value < 1) throw new AgentGateError('AG_ERR_CONFIG_INVALID', `eventRoutes: ${name} must be a positive integer`, { details: { [name]: value } });
  }
  const authenticate = options.authenticate ?? 'upstream';
  const connections = options.connections ?? new WsConnections((count) => options.metrics?.wsConnections.set(count));

  // Mounted outside `buildServer` (which sets AgentGate's zod compilers at the root): validate with zod.
  if (app.validatorCompiler === undefined) {
    app.setValidatorCompiler(validatorCompiler);
    app.setSerializerCompiler(serializerCompiler);
  }
  if (!app.hasDecorator('websocketServer')) {
    await app.register(websocket, {
      options: {
        maxPayload: MAX_MESSAGE_BYTES,
        // A browser offers ['agentgate.v1', 'agentgate.ticket.<t>'] and must get one of them back:
        // select the non-secret one so the ticket is not echoed.
        handleProtocols: (protocols) => (protocols.has(WS_PROTOCOL) ? WS_PROTOCOL : (protocols.values().next().value ?? false)),
      },
    });
  }

  // Runs after the app's root hook. Header checks are idempotent; a ticket is redeemed only here in
  // 'self' mode (in 'upstream' mode the app's hook has redeemed it, and a second redeem would fail).
  app.addHook('onRequest', async (request, reply) => {
    if (!auth.required || auth.authorize(request)) return;
    if (isWebSocketUpgrade(request)) {
      const ticket = ticketFromProtocols(request.headers['sec-websocket-protocol']);
      if (ticket !== null && (authenticate === 'upstream' || auth.redeemTicket(ticket))) return;
    }
    return refuse(reply);
  });

  app.addHook('onClose', async () => {
    connections.closeAll();
  });

  app.get('/ws', { websocket: true, schema: { hide: true } }, (socket) => {
    new WsConnection(socket, { hub, repos, clock, logger, registry: connections, flow });
  });

  app.get(
    '/api/v1/runs/:id/events',
    {
      schema: {
        tags: ['events'],
        summary: "A page of a run's stored event log, in seq order",
        params: RunIdParams,
        querystring: EventsQuery,
        response: { 200: EventsPageSchema },
      },
    },
    async (request) => {
      const { id } = request.params;
      const afterSeq = request.query.afterSeq ?? 0;
      const limit = request.query.limit ?? DEFAULT_EVENTS_PAGE;
      if ((await repos.runs.get(id)) === null) throw new AgentGateError('AG_ERR_RUN_NOT_FOUND', `No run with id ${id}`);
      const stored = await repos.runs.listEvents(id, { afterSeq, limit: limit + 1 });
      const items = stored.slice(0, limit).map(toRunEventEnvelope);
      return { success: true as const, data: { items, nextAfterSeq: items.at(-1)?.seq ?? afterSeq, hasMore: stored.length > limit } };
    },
  );

  app.get(
    '/api/v1/runs/:id/stream',
    {
      schema: {
        tags: ['events'],
        summary: "The run's events as Server-Sent Events (resume with Last-Event-ID)",
        params: RunIdParams,
        querystring: StreamQuery,
        headers: LastEventIdHeaders,
      },
    },
    async (request, reply) => {
      const { id } = request.params;
      const afterSeq = request.headers['last-event-id'] ?? request.query.afterSeq ?? 0;
      const run = await repos.runs.get(id);
      if (run === null) throw new AgentGateError('AG_ERR_RUN_NOT_FOUND', `No run with id ${id}`);
      // The client already has the whole log of a finished run: 204 tells EventSource not to reconnect.
      if (isTerminalState(run.state) && afterSeq >= (await repos.runs.lastSeq(id))) {
        return reply.status(204).send();
      }
      const abort = new AbortController();
      reply.hijack();
      const res = reply.raw;
      res.writeHead(200, {
        'content-type': 'text/event-stream; charset=utf-8',
        'cache-control': 'no-cache, no-transform',
        connection: 'keep-alive',
        'x-accel-buffering': 'no',
        'x-request-id': request.id,
      });
      res.on('close', () => abort.abort());
      const stop = (): void => abort.abort();
      app.server.once('close', stop);
      try {
        await streamRunEvents(res, { hub, runId: id, afterSeq, heartbeatMs: flow.heartbeatMs, maxBufferedEvents: flow.maxBufferedEvents, clock, logger, signal: abort.signal });
      } catch (error) {
        logger.error({ err: error, runId: id }, 'sse stream failed');
        if (!res.writableEnded) res.end();
      } finally {
        app.server.off('close', stop);
      }
    },
  );
};
