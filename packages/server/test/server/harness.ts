/**
 * A real AgentGate server on 127.0.0.1 for the server tests: a runtime on a temp `AGENTGATE_HOME`, a temp
 * git repository (the calculator example), `buildServer()` listening on an ephemeral port, and a small
 * fetch client that returns status, headers and the parsed envelope.
 */
import { afterEach } from 'vitest';
import type { FastifyInstance } from 'fastify';
import { silentLogger } from '../../src/observability/logger.js';
import { createRuntime, type Runtime } from '../../src/runtime.js';
import { loadConfig } from '../../src/schemas/config.js';
import { buildServer, type ServerOptions } from '../../src/server/app.js';
import type { StoredWorkOrder, WorkOrderStatus } from '../../src/store/types.js';
import { makeRepo, writeAgent, type TempRepo } from '../helpers/git-repo.js';

export interface Reply {
  status: number;
  headers: Headers;
  text: string;
  /** The parsed body when it is JSON, else undefined. */
  json: Envelope | undefined;
}

export interface Envelope {
  success: boolean;
  data?: unknown;
  error?: { code: string; message: string; details?: Record<string, unknown> };
}

export interface RequestOptions {
  /** Sent as JSON unless `raw` is given. */
  body?: unknown;
  /** Sent as is (with `contentType`). */
  raw?: string | Uint8Array;
  contentType?: string;
  headers?: Record<string, string>;
}

export interface TestServer {
  repo: TempRepo;
  runtime: Runtime;
  app: FastifyInstance;
  url: string;
  request(method: string, path: string, options?: RequestOptions): Promise<Reply>;
  /** Resolves once the work order has one of `statuses` (checked against the store, then its events). */
  waitForStatus(workOrderId: string, statuses: readonly WorkOrderStatus[]): Promise<StoredWorkOrder>;
  /** A shell command running an agent script written outside the repository. */
  agent(name: string, body: string): string;
  close(): Promise<void>;
}

export interface TestServerOptions {
  apiKey?: string;
  maxConcurrent?: number;
  /** Start the queue (default true). Fuzzing leaves it stopped so valid submissions stay queued. */
  startQueue?: boolean;
  server?: Partial<Omit<ServerOptions, 'runtime'>>;
}

function parse(text: string): Envelope | undefined {
  try {
    const value: unknown = JSON.parse(text);
    return typeof value === 'object' && value !== null && 'success' in value ? (value as Envelope) : undefined;
  } catch {
    return undefined;
  }
}

export async function startServer(options: TestServerOptions = {}): Promise<TestServer> {
  const repo = makeRepo();
  const runtime = await createRuntime({
    config: loadConfig({ AGENTGATE_HOME: repo.home }),
    logger: silentLogger(),
    baseEnv: { ...process.env },
    maxConcurrent: options.maxConcurrent ?? 2,
  });
  const app = await buildServer({ runtime, logger: silentLogger(), ...(options.apiKey !== undefined && { apiKey: options.apiKey }), ...options.server });
  if (options.startQueue !== false) runtime.queue.start();
  await app.listen({ port: 0, host: '127.0.0.1' });
  const address = app.server.address();
  if (typeof address !== 'object' || address === null) throw new Error('server has no address');
  const url = `http://127.0.0.1:${address.port}`;

  const request = async (method: string, path: string, req: RequestOptions = {}): Promise<Reply> => {
    const headers: Record<string, string> = { ...req.headers };
    let body: string | Uint8Array | undefined;
    if (req.raw !== undefined) {
      body = req.raw;
      if (req.contentType !== undefined) headers['content-type'] = req.contentType;
    } else if (req.body !== undefined) {
      body = JSON.stringify(req.body);
      headers['content-type'] = req.contentType ?? 'application/json';
    }
    const response = await fetch(`${url}${path}`, { method, headers, ...(body !== undefined && { body }) });
    const text = await response.text();
    return { status: response.status, headers: response.headers, text, json: parse(text) };
  };

  const waitForStatus = (workOrderId: string, statuses: readonly WorkOrderStatus[]): Promise<StoredWorkOrder> =>
    new Promise((resolve, reject) => {
      const check = (): void => {
        runtime.repos.workOrders.get(workOrderId).then((workOrder) => {
          if (workOrder !== null && statuses.includes(workOrder.status)) {
            off();
            resolve(workOrder);
          }
        }, reject);
      };
      const off = runtime.hub.onWorkOrder((event) => {
        if (event.workOrderId === workOrderId) check();
      });
      check();
    });

  return {
    repo,
    runtime,
    app,
    url,
    request,
    waitForStatus,
    agent: (name, body) => `sh ${writeAgent(repo.root, name, body)}`,
    async close() {
      await runtime.queue.close({ drainMs: 0, cancelReason: 'test over' });
      await app.close();
      await runtime.close();
      repo.cleanup();
    },
  };
}

/**
 * The `server()` of a test file: it starts a server with {@link startServer} and closes every server it
 * started after each test.
 */
export function serversClosedAfterEach(): (options?: TestServerOptions) => Promise<TestServer> {
  const servers: TestServer[] = [];
  afterEach(async () => {
    for (const server of servers.splice(0)) await server.close();
  });
  return async (options = {}) => {
    const started = await startServer(options);
    servers.push(started);
    return started;
  };
}
