/**
 * The HTTP server (SPEC 10): a Fastify app with the zod type provider, built on a runtime
 * (`createRuntime()` + its queue). Every route declares zod schemas for what it reads and returns; the
 * same schemas validate requests, serialize responses and generate the OpenAPI document at `/docs`.
 *
 * Request lifecycle, in order:
 * 1. `X-Request-ID`: a sane incoming id is echoed, anything else is replaced by a UUID; it is the
 *    request's log id and is set on every response (errors and 404s included).
 * 2. Authentication (`onRequest`, at the root so plugins' routes — `/ws`, SSE — are covered too): when a
 *    key is configured every route except `/health*` needs `Authorization: Bearer <key>`; a WebSocket
 *    upgrade may instead offer a ticket as the subprotocol `agentgate.ticket.<t>`, redeemed here.
 * 3. Validation: zod, with AgentGate's wording; a failure is a 400 naming `<part>.<field path>`
 *    (`query.limit`, `params.id`; body fields as in the document: `workspaceSource.type`).
 * 4. Errors become the `{ success: false, error }` envelope (`server/errors.ts`); nothing a client sends
 *    produces a 5xx.
 */
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import fastifySwagger from '@fastify/swagger';
import fastifySwaggerUi from '@fastify/swagger-ui';
import Fastify, { type FastifyBaseLogger, type FastifyError, type FastifyReply, type FastifyInstance, type FastifyRequest, type FastifySchemaCompiler } from 'fastify';
import { jsonSchemaTransform, jsonSchemaTransformObject, serializerCompiler, type ZodTypeProvider } from 'fastify-type-provider-zod';
import type { Logger } from 'pino';
import type { z } from 'zod';
import { AgentGateError } from '../errors.js';
import type { Runtime } from '../runtime.js';
import { schemaErrorMap, toSchemaIssues } from '../schemas/errors.js';
import { createServerAuth, ticketFromProtocols } from './auth.js';
import type { ServerAuth, WorkOrderQueue } from './contracts.js';
import { toHttpFailure, unauthorized } from './errors.js';
import { eventRoutes } from './routes/events.js';
import { authRoutes } from './routes/auth.js';
import { healthRoutes } from './routes/health.js';
import { metricsRoutes } from './routes/metrics.js';
import { queueRoutes } from './routes/queue.js';
import { runRoutes } from './routes/runs.js';
import { taskRoutes } from './routes/tasks.js';
import { workOrderRoutes } from './routes/work-orders.js';

/** What the server needs of a runtime: `createRuntime()`'s result, with its queue. */
export type ServerRuntime = Pick<Runtime, 'repos' | 'hub' | 'engine' | 'metrics' | 'logger' | 'config' | 'workOrders'> & {
  readonly queue: WorkOrderQueue;
};

export interface ServerOptions {
  readonly runtime: ServerRuntime;
  /** Overrides `runtime.config.apiKey`; empty means no key (everything open). */
  readonly apiKey?: string;
  /** Request logs; defaults to the runtime's logger (which redacts credentials). */
  readonly logger?: Logger;
  /** Largest request body in bytes (default {@link DEFAULT_BODY_LIMIT}); larger is 413. */
  readonly bodyLimit?: number;
  /** Replaces the API-key authentication built from `apiKey` (tests inject tickets with a fake clock). */
  readonly auth?: ServerAuth;
  /** Where the OpenAPI UI is served (default `/docs`; the document at `<prefix>/json`). */
  readonly docsPrefix?: string;
  /**
   * The dashboard's built files, served at `/` and `/assets/*` (default {@link DEFAULT_DASHBOARD_DIR});
   * `null` serves no dashboard. When the directory has no `index.html`, `/` says how to build it.
   */
  readonly dashboardDir?: string | null;
}

/** What every route plugin receives. */
export interface RouteDeps {
  readonly runtime: ServerRuntime;
  readonly auth: ServerAuth;
  readonly version: string;
  /** Epoch ms at which the server was built. */
  readonly startedAt: number;
}

/** 1 MiB: a TaskSpec with inline gates is a few KiB; prompts are capped at 32,768 characters. */
export const DEFAULT_BODY_LIMIT = 1024 * 1024;
export const DEFAULT_DOCS_PREFIX = '/docs';

/** Incoming `X-Request-ID` values echoed as they are; anything else gets a fresh UUID. */
const SANE_REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

const VERSION = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

/**
 * Where `pnpm -r build` puts the dashboard (`packages/dashboard/dist`): the same relative path from
 * `src/server/app.ts` and from the built `dist/server/app.js`.
 */
export const DEFAULT_DASHBOARD_DIR = fileURLToPath(new URL('../../../dashboard/dist/', import.meta.url));

/**
 * Routes open without the API key: probes of load balancers and orchestrators, and the dashboard's
 * static files (`/`, `/assets/*`), which hold no data — the page asks for the key and sends it itself.
 */
export function isPublicRoute(url: string): boolean {
  return url === '/health' || url.startsWith('/health/') || url === '/' || url === '/assets/*';
}

const DASHBOARD_TYPES: Record<string, string> = {
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.woff2': 'font/woff2',
};

/** Asset names as Vite writes them (`index-<hash>.js`): no separators, so no path can escape the dir. */
const ASSET_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$/;

function isMissingFile(error: unknown): boolean {
  return typeof error === 'object' && error !== null && 'code' in error && (error.code === 'ENOENT' || error.code === 'EISDIR' || error.code === 'ENOTDIR');
}

/** `GET /` and `GET /assets/*`: the built dashboard, or a plain answer saying how to build it. */
function dashboardRoutes(app: FastifyInstance, dir: string): void {
  app.get('/', { schema: { hide: true } }, async (_request, reply) => {
    try {
      const html = await readFile(join(dir, 'index.html'));
      return reply.type('text/html; charset=utf-8').header('cache-control', 'no-cache').send(html);
    } catch (error) {
      if (!isMissingFile(error)) throw error;
      // An answer like any other missing resource (the error envelope): nothing a client asks for is a 5xx.
      return reply.status(404).send({
        success: false,
        error: {
          code: 'AG_ERR_API_NOT_FOUND',
          message: `The AgentGate dashboard is not built (no index.html in ${dir}). Run \`pnpm build\` in the repository, then reload. The API is at /api/v1 and its documentation at /docs.`,
        },
      });
    }
  });
  app.get('/assets/*', { schema: { hide: true } }, async (request, reply) => {
    const params = request.params as { '*'?: string };
    const name = params['*'] ?? '';
    const type = DASHBOARD_TYPES[extname(name)];
    if (!ASSET_NAME.test(name) || type === undefined) return reply.callNotFound();
    try {
      const body = await readFile(join(dir, 'assets', name));
      return reply.type(type).header('cache-control', 'public, max-age=31536000, immutable').send(body);
    } catch (error) {
      if (!isMissingFile(error)) throw error;
      return reply.callNotFound();
    }
  });
}

/** The request bodies as clients sent them (before the schema's defaults and transforms). */
const rawBodies = new WeakMap<FastifyRequest, unknown>();

/** A `preValidation` hook keeping the body as sent, for {@link rawBodyOf}. */
export async function rememberRawBody(request: FastifyRequest): Promise<void> {
  rawBodies.set(request, request.body);
}

/** Keys whose values are credentials wherever they appear in a stored request. */
const SECRET_KEYS = /^(?:env|apiKey|api_key|token|password|secret|authorization)$/i;

function redact(value: unknown, depth: number): unknown {
  if (depth > 32) return '[TRUNCATED]';
  if (Array.isArray(value)) return value.map((item) => redact(item, depth + 1));
  if (typeof value !== 'object' || value === null) return value;
  const out: Record<string, unknown> = {};
  for (const [key, child] of Object.entries(value)) {
    if (!SECRET_KEYS.test(key)) out[key] = redact(child, depth + 1);
    else if (typeof child === 'object' && child !== null && !Array.isArray(child)) out[key] = Object.fromEntries(Object.keys(child).map((k) => [k, '[REDACTED]']));
    else out[key] = '[REDACTED]';
  }
  return out;
}

/**
 * The body as the client sent it, with credential values (`agent.env`, tokens) replaced by
 * `[REDACTED]`: it is stored with the work order and shown by the API.
 */
export function rawBodyOf(request: FastifyRequest): object | null {
  const body = rawBodies.get(request);
  const redacted = redact(body, 0);
  return typeof redacted === 'object' && redacted !== null && !Array.isArray(redacted) ? redacted : null;
}

/**
 * zod validation with AgentGateError's wording. Bodies are documents: their errors are the document
 * codes (`AG_ERR_SCHEMA_INVALID`) with paths as in the document; query strings and path parameters are
 * `AG_ERR_API_BAD_REQUEST` with the part in the path (`query.limit`).
 */
const validatorCompiler: FastifySchemaCompiler<z.ZodType> =
  ({ schema, httpPart }) =>
  (data: unknown) => {
    let result: z.ZodSafeParseResult<unknown>;
    try {
      result = schema.safeParse(data, { error: schemaErrorMap });
    } catch {
      return { error: new AgentGateError('AG_ERR_API_BAD_REQUEST', `The ${httpPart ?? 'request'} could not be validated`) };
    }
    if (result.success) return { value: result.data };
    const part = httpPart === 'querystring' ? 'query' : (httpPart ?? 'request');
    const issues = toSchemaIssues(result.error).map((issue) => (part === 'body' ? issue : { ...issue, path: issue.path === '(root)' ? part : `${part}.${issue.path}` }));
    const message = issues.slice(0, 10).map((issue) => `${issue.path}: ${issue.message}`).join('; ');
    return { error: new AgentGateError(part === 'body' ? 'AG_ERR_SCHEMA_INVALID' : 'AG_ERR_API_BAD_REQUEST', message, { details: { issues } }) };
  };

function isWebSocketUpgrade(request: FastifyRequest): boolean {
  return request.headers.upgrade?.toLowerCase() === 'websocket';
}

export interface RegisteredRoute {
  readonly method: string;
  readonly url: string;
  /** Left out of the OpenAPI document (`schema.hide`: the docs UI's own routes, the WebSocket). */
  readonly hidden: boolean;
}

/** Every route registered on an app built by {@link buildServer}, plugins' routes included. */
const registeredRoutes = new WeakMap<FastifyInstance, RegisteredRoute[]>();

/** The routes of an app built by {@link buildServer} (tests iterate them so no route escapes auth). */
export function listRoutes(app: FastifyInstance): readonly RegisteredRoute[] {
  return registeredRoutes.get(app) ?? [];
}

export async function buildServer(options: ServerOptions): Promise<FastifyInstance> {
  const { runtime } = options;
  const bodyLimit = options.bodyLimit ?? DEFAULT_BODY_LIMIT;
  if (!Number.isInteger(bodyLimit) || bodyLimit <= 0) throw new AgentGateError('AG_ERR_CONFIG_INVALID', `bodyLimit: expected a positive integer, got ${String(bodyLimit)}`);
  const docsPrefix = options.docsPrefix ?? DEFAULT_DOCS_PREFIX;
  const auth = options.auth ?? createServerAuth({ apiKey: options.apiKey ?? runtime.config.apiKey });
  const logger = options.logger ?? runtime.logger;

  const loggerInstance: FastifyBaseLogger = logger;
  const base = Fastify({
    loggerInstance,
    bodyLimit,
    requestIdHeader: false,
    genReqId: (req) => {
      const incoming = req.headers['x-request-id'];
      return typeof incoming === 'string' && SANE_REQUEST_ID.test(incoming) ? incoming : randomUUID();
    },
    // Errors raised before routing (a URL that does not decode) still get the envelope and the id.
    frameworkErrors: (error: FastifyError, request: FastifyRequest, reply: FastifyReply) => {
      const failure = toHttpFailure(error);
      void reply.header('x-request-id', request.id).status(failure.status).send(failure.body);
    },
  });
  const app = base.withTypeProvider<ZodTypeProvider>();

  const routes: RegisteredRoute[] = [];
  registeredRoutes.set(base, routes);
  base.addHook('onRoute', (route) => {
    const hidden = typeof route.schema === 'object' && route.schema !== null && 'hide' in route.schema && route.schema.hide === true;
    for (const method of Array.isArray(route.method) ? route.method : [route.method]) routes.push({ method, url: route.url, hidden });
  });

  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);

  app.addHook('onRequest', async (request, reply) => {
    void reply.header('x-request-id', request.id);
    if (!auth.required) return;
    const url = request.routeOptions.url;
    if (url !== undefined && isPublicRoute(url)) return;
    if (auth.authorize(request)) return;
    if (isWebSocketUpgrade(request)) {
      const ticket = ticketFromProtocols(request.headers['sec-websocket-protocol']);
      if (ticket !== null && auth.redeemTicket(ticket)) return;
    }
    void reply.header('www-authenticate', 'Bearer realm="agentgate"');
    throw unauthorized();
  });

  // A refused WebSocket upgrade (401, 404) is answered on a socket that no HTTP parser owns any more
  // (an upgraded request never returns to keep-alive): close it once the answer is sent, or it stays
  // open and holds `app.close()`. An accepted upgrade is hijacked and never reaches onResponse.
  app.addHook('onResponse', async (request) => {
    if (isWebSocketUpgrade(request)) request.raw.socket.destroy();
  });

  base.setErrorHandler((error, request, reply) => {
    const failure = toHttpFailure(error);
    if (failure.fault) request.log.error({ err: error, code: failure.body.error.code }, 'request failed');
    else request.log.info({ code: failure.body.error.code, statusCode: failure.status }, 'request rejected');
    return reply.status(failure.status).send(failure.body);
  });

  base.setNotFoundHandler((request, reply) => {
    const path = request.url.split('?')[0] ?? '';
    const shown = path.length > 200 ? `${path.slice(0, 200)}…` : path;
    return reply.status(404).send({ success: false, error: { code: 'AG_ERR_API_NOT_FOUND', message: `No route ${request.method} ${shown}` } });
  });

  await app.register(fastifySwagger, {
    openapi: {
      info: { title: 'AgentGate API', version: VERSION, description: 'Run coding agents against git repositories until the gates pass. See docs/api.md.' },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
      security: [{ bearer: [] }],
    },
    transform: jsonSchemaTransform,
    transformObject: jsonSchemaTransformObject,
  });
  await app.register(fastifySwaggerUi, { routePrefix: docsPrefix });

  const deps: RouteDeps = { runtime, auth, version: VERSION, startedAt: Date.now() };
  await app.register(healthRoutes, deps);
  await app.register(workOrderRoutes, deps);
  await app.register(taskRoutes, deps);
  await app.register(runRoutes, deps);
  await app.register(queueRoutes, deps);
  await app.register(metricsRoutes, deps);
  await app.register(authRoutes, deps);
  // Event routes (issue 9 item 4–5): `/ws`, SSE `GET /api/v1/runs/:id/stream`, `GET /api/v1/runs/:id/events`.
  await app.register(eventRoutes, { hub: runtime.hub, repos: runtime.repos, auth });
  const dashboardDir = options.dashboardDir === undefined ? DEFAULT_DASHBOARD_DIR : options.dashboardDir;
  if (dashboardDir !== null) dashboardRoutes(base, dashboardDir);

  await app.ready();
  return base;
}
