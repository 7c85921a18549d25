/**
 * The event routes against a real server on 127.0.0.1 (`buildServer`, real runs of command agents on temp
 * git repositories): WebSocket and SSE resume without gap or duplicate, the stored-log pages, bad and
 * fuzzed WebSocket messages, and authentication by key and by single-use ticket.
 */
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import type { RunEventEnvelope } from '../../src/observability/events.js';
import { resolveTaskSpec, type ResolvedTaskSpec } from '../../src/schemas/resolve.js';
import type { TaskSpecInput } from '../../src/schemas/task-spec.js';
import { AGENTS } from '../helpers/git-repo.js';
import Fastify from 'fastify';
import { listRoutes } from '../../src/server/app.js';
import { createServerAuth } from '../../src/server/auth.js';
import { toHttpFailure } from '../../src/server/errors.js';
import { eventRoutes } from '../../src/server/routes/events.js';
import { startServer, type TestServer } from './harness.js';

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn();
});

async function server(options: { apiKey?: string } = {}): Promise<TestServer> {
  const started = await startServer({ ...options, startQueue: false });
  cleanups.push(() => started.close());
  if (listRoutes(started.app).some((route) => route.url === '/ws')) return started;
  // buildServer does not mount the event routes yet: the same runtime behind a minimal app with them.
  const app = Fastify();
  app.setErrorHandler((error, _request, reply) => {
    const failure = toHttpFailure(error);
    return reply.status(failure.status).send(failure.body);
  });
  const auth = createServerAuth({ apiKey: options.apiKey });
  await app.register(eventRoutes, { hub: started.runtime.hub, repos: started.runtime.repos, auth, authenticate: 'self' });
  app.post('/api/v1/auth/ticket', async (request, reply) => (auth.authorize(request) ? reply.status(201).send({ success: true, data: auth.issueTicket() }) : reply.status(401).send({})));
  await app.listen({ host: '127.0.0.1', port: 0 });
  cleanups.push(() => app.close());
  const address = app.server.address();
  if (typeof address !== 'object' || address === null) throw new Error('no address');
  const url = `http://127.0.0.1:${address.port}`;
  const request: TestServer['request'] = async (method, path, req = {}) => {
    const response = await fetch(`${url}${path}`, { method, headers: { ...req.headers } });
    const text = await response.text();
    let json: ReturnType<typeof JSON.parse> = undefined;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    return { status: response.status, headers: response.headers, text, json };
  };
  return { ...started, app, url, request };
}

/** An agent that keeps printing for about two seconds, so a client can drop out mid-run. */
const SLOW_AGENT = `for i in $(seq 1 20); do echo "progress $i"; sleep 0.1; done\n${AGENTS.correct}`;

function spec(s: TestServer, body = SLOW_AGENT): ResolvedTaskSpec {
  return resolveTaskSpec({
    apiVersion: 'agentgate.io/v1',
    kind: 'TaskSpec',
    metadata: { name: 'events-test' },
    spec: {
      goal: { prompt: 'Implement add and multiply' },
      convergence: { limits: { maxIterations: 1 } },
      execution: { workspace: { source: 'local', path: s.repo.repo }, agent: { driver: 'command', command: s.agent('slow', body) } },
    },
  } as TaskSpecInput);
}

async function storedLog(s: TestServer, runId: string): Promise<RunEventEnvelope[]> {
  const page = await s.request('GET', `/api/v1/runs/${runId}/events?limit=1000`);
  expect(page.status).toBe(200);
  return (page.json?.data as { items: RunEventEnvelope[] }).items;
}

type Message = Record<string, unknown> & { type: string };

/** A WebSocket test client: every message kept in order; waits are event-driven. */
class WsClient {
  readonly messages: Message[] = [];
  private readonly waiters = new Set<() => void>();
  readonly closed: Promise<{ code: number; reason: string }>;

  private constructor(readonly socket: WebSocket) {
    socket.on('message', (data) => {
      this.messages.push(JSON.parse(String(data)) as Message);
      for (const wake of [...this.waiters]) wake();
    });
    this.closed = new Promise((resolve) => socket.on('close', (code, reason) => resolve({ code, reason: reason.toString() })));
    void this.closed.then(() => {
      for (const wake of [...this.waiters]) wake();
    });
  }

  static open(url: string, options: { headers?: Record<string, string>; protocols?: string[]; autoPong?: boolean } = {}): Promise<WsClient> {
    return new Promise((resolve, reject) => {
      const socket = new WebSocket(`${url.replace(/^http/, 'ws')}/ws`, options.protocols ?? [], {
        ...(options.headers !== undefined && { headers: options.headers }),
        ...(options.autoPong !== undefined && { autoPong: options.autoPong }),
      });
      const client = new WsClient(socket);
      socket.once('open', () => resolve(client));
      socket.once('unexpected-response', (request, response) => {
        request.destroy();
        reject(new Error(`HTTP ${response.statusCode}`));
      });
      socket.once('error', reject);
    });
  }

  send(message: unknown): void {
    this.socket.send(typeof message === 'string' ? message : JSON.stringify(message));
  }

  /** The first message at or after `from` that matches; its index. */
  async waitFor(predicate: (message: Message) => boolean, from = 0): Promise<number> {
    for (;;) {
      const index = this.messages.findIndex((message, i) => i >= from && predicate(message));
      if (index >= 0) return index;
      if (this.socket.readyState === WebSocket.CLOSED) throw new Error(`socket closed while waiting; got ${JSON.stringify(this.messages.slice(from))}`);
      await new Promise<void>((resolve) => {
        const wake = (): void => {
          this.waiters.delete(wake);
          resolve();
        };
        this.waiters.add(wake);
      });
    }
  }

  events(runId: string): RunEventEnvelope[] {
    return this.messages.filter((m) => m['kind'] === 'event' && m['runId'] === runId).map(({ kind: _kind, ...envelope }) => envelope as unknown as RunEventEnvelope);
  }

  /** Sends a ping and resolves with every message received up to its pong. */
  async roundTrip(message: unknown): Promise<Message[]> {
    const from = this.messages.length;
    this.send(message);
    this.send({ type: 'ping' });
    const pong = await this.waitFor((m) => m.type === 'pong', from);
    return this.messages.slice(from, pong);
  }
}

async function ws(s: TestServer, options: Parameters<typeof WsClient.open>[1] = {}): Promise<WsClient> {
  const client = await WsClient.open(s.url, options);
  cleanups.push(() => client.socket.terminate());
  return client;
}

interface SseEvent {
  id: string | undefined;
  event: string | undefined;
  data: string;
}

/** Reads an SSE response until it ends or `stop` says so (then the request is aborted). */
async function readSse(url: string, headers: Record<string, string>, stop: (event: SseEvent) => boolean = () => false): Promise<{ status: number; events: SseEvent[] }> {
  const abort = new AbortController();
  const response = await fetch(url, { headers, signal: abort.signal });
  const events: SseEvent[] = [];
  if (response.body === null) return { status: response.status, events };
  const decoder = new TextDecoder();
  let buffer = '';
  try {
    for await (const chunk of response.body) {
      buffer += decoder.decode(chunk as Uint8Array, { stream: true });
      for (let end = buffer.indexOf('\n\n'); end >= 0; end = buffer.indexOf('\n\n')) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const event: SseEvent = { id: undefined, event: undefined, data: '' };
        for (const line of block.split('\n')) {
          if (line.startsWith('id: ')) event.id = line.slice(4);
          else if (line.startsWith('event: ')) event.event = line.slice(7);
          else if (line.startsWith('data: ')) event.data += line.slice(6);
        }
        if (event.event === undefined) continue;
        events.push(event);
        if (stop(event)) {
          abort.abort();
          return { status: response.status, events };
        }
      }
    }
  } catch (error) {
    if (!abort.signal.aborted) throw error;
  }
  return { status: response.status, events };
}

describe('event routes', () => {
  describe('over WebSocket', () => {
    it('resumes after a dropped connection with every event exactly once, in order, equal to the stored log', async () => {
      const s = await server();
      const started = await s.runtime.engine.start(spec(s));
      const first = await ws(s);
      first.send({ type: 'subscribe', runId: started.runId });
      await first.waitFor((m) => m.type === 'subscription_confirmed');
      // Drop out (no close handshake) once the agent is talking: the run is still going.
      await first.waitFor((m) => m['kind'] === 'event' && m.type === 'agent_output');
      first.socket.terminate();
      const before = first.events(started.runId);
      const lastSeq = before.at(-1)?.seq ?? 0;
      expect(lastSeq).toBeGreaterThan(0);

      const second = await ws(s);
      second.send({ type: 'subscribe', runId: started.runId, afterSeq: lastSeq });
      const ended = await second.waitFor((m) => m.type === 'subscription_ended');
      expect(second.messages[ended]).toMatchObject({ reason: 'run_ended', runId: started.runId });
      const outcome = await started.done;
      expect(outcome.state).toBe('succeeded');

      const received = [...before, ...second.events(started.runId)];
      const stored = await storedLog(s, started.runId);
      expect(received.map((e) => e.seq)).toEqual(stored.map((_, i) => i + 1));
      expect(received).toEqual(stored);
      expect(received.at(-1)?.type).toBe('run_completed');
    });

    it('filters by type, still ends with the run, and serves several subscriptions on one socket', async () => {
      const s = await server();
      const a = await s.runtime.engine.start(spec(s, AGENTS.correct));
      await a.done;
      const b = await s.runtime.engine.start(spec(s, AGENTS.correct));
      await b.done;
      const client = await ws(s);
      client.send({ type: 'subscribe', runId: a.runId, filters: ['gate_checked', 'iteration_completed'] });
      client.send({ type: 'subscribe', runId: b.runId, afterSeq: 3 });
      client.send({ type: 'subscribe', workOrderId: a.workOrderId });
      await client.waitFor((m) => m.type === 'subscription_ended' && m['runId'] === a.runId);
      await client.waitFor((m) => m.type === 'subscription_ended' && m['runId'] === b.runId);
      await client.waitFor((m) => m['kind'] === 'event' && m.type === 'work_order_updated' && m['data'] !== undefined && (m['data'] as { status: string }).status === 'succeeded');
      expect(new Set(client.events(a.runId).map((e) => e.type))).toEqual(new Set(['gate_checked', 'iteration_completed']));
      expect(client.events(b.runId)).toEqual((await storedLog(s, b.runId)).filter((e) => e.seq > 3));
      // A finished run whose log the client has already seen ends at once.
      const from = client.messages.length;
      const lastOfB = client.events(b.runId).at(-1)?.seq;
      client.send({ type: 'subscribe', runId: b.runId, afterSeq: lastOfB });
      await client.waitFor((m) => m.type === 'subscription_ended' && m['runId'] === b.runId, from);
      expect(client.messages.slice(from).filter((m) => m['kind'] === 'event')).toEqual([]);
    });

    it('answers bad messages with error and keeps the socket usable', async () => {
      const s = await server();
      const client = await ws(s);
      const cases: Array<[unknown, string, string?]> = [
        ['not json', 'AG_ERR_API_BAD_REQUEST'],
        [{ type: 'dance' }, 'AG_ERR_API_BAD_REQUEST', 'type'],
        [{ type: 'subscribe' }, 'AG_ERR_API_BAD_REQUEST', 'runId'],
        [{ type: 'subscribe', runId: 'a', workOrderId: 'b' }, 'AG_ERR_API_BAD_REQUEST', 'runId'],
        [{ type: 'subscribe', runId: 'r', afterSeq: -1 }, 'AG_ERR_API_BAD_REQUEST', 'afterSeq'],
        [{ type: 'subscribe', runId: 'r', afterSeq: 1.5 }, 'AG_ERR_API_BAD_REQUEST', 'afterSeq'],
        [{ type: 'subscribe', runId: 'r', filters: ['nope'] }, 'AG_ERR_API_BAD_REQUEST', 'filters.0'],
        [{ type: 'subscribe', workOrderId: 'w', filters: ['run_started'] }, 'AG_ERR_API_BAD_REQUEST', 'filters.0'],
        [{ type: 'subscribe', runId: 'no-such-run' }, 'AG_ERR_RUN_NOT_FOUND'],
        [{ type: 'subscribe', workOrderId: 'no-such-work-order' }, 'AG_ERR_WORK_ORDER_NOT_FOUND'],
        [{ type: 'unsubscribe', runId: 'never-subscribed' }, 'AG_ERR_API_CONFLICT'],
        [[1, 2, 3], 'AG_ERR_API_BAD_REQUEST'],
        [null, 'AG_ERR_API_BAD_REQUEST'],
      ];
      for (const [message, code, path] of cases) {
        const replies = await client.roundTrip(typeof message === 'string' ? message : JSON.stringify(message));
        expect(replies, JSON.stringify(message)).toHaveLength(1);
        expect(replies[0]).toMatchObject({ type: 'error', code });
        if (path !== undefined) expect((replies[0]?.['details'] as { issues: Array<{ path: string }> }).issues.map((i) => i.path)).toContain(path);
      }
      client.socket.send(Buffer.from([1, 2, 3]), { binary: true });
      expect(await client.roundTrip({ type: 'ping' })).toMatchObject([{ type: 'error', code: 'AG_ERR_API_BAD_REQUEST' }]);
      expect(await client.roundTrip({ type: 'ping' })).toEqual([]);
      expect(client.socket.readyState).toBe(WebSocket.OPEN);
    });

    it('survives fuzzed messages: never an internal error, never a closed socket', async () => {
      const s = await server();
      const run = await s.runtime.engine.start(spec(s, AGENTS.correct));
      await run.done;
      const client = await ws(s);
      const near = fc.record(
        {
          type: fc.constantFrom('subscribe', 'unsubscribe', 'ping', 'SUBSCRIBE', ''),
          runId: fc.oneof(fc.constant(run.runId), fc.string(), fc.integer(), fc.constant(null)),
          workOrderId: fc.oneof(fc.constant(run.workOrderId), fc.string({ maxLength: 300 })),
          afterSeq: fc.oneof(fc.integer(), fc.double(), fc.string(), fc.constant(Number.MAX_SAFE_INTEGER)),
          filters: fc.oneof(fc.array(fc.constantFrom('run_started', 'agent_output', 'work_order_created', 'x')), fc.string(), fc.constant(null)),
        },
        { requiredKeys: ['type'] },
      );
      const message = fc.oneof(near.map((m) => JSON.stringify(m)), fc.json(), fc.string({ maxLength: 200 }), fc.jsonValue().map((v) => JSON.stringify({ type: 'subscribe', runId: v })));
      await fc.assert(
        fc.asyncProperty(message, async (text) => {
          const replies = await client.roundTrip(text);
          for (const reply of replies) {
            if (reply.type === 'error') expect(reply['code']).not.toBe('AG_ERR_INTERNAL');
          }
          // Whatever it subscribed to, leave the socket clean for the next case.
          for (const reply of replies.filter((r) => r.type === 'subscription_confirmed')) {
            await client.roundTrip({ type: 'unsubscribe', ...('runId' in reply ? { runId: reply['runId'] } : { workOrderId: reply['workOrderId'] }) });
          }
          expect(client.socket.readyState).toBe(WebSocket.OPEN);
        }),
        { numRuns: 300 },
      );
    });
  });

  describe('over SSE', () => {
    it('resumes with Last-Event-ID: every event exactly once, in order, and the stream ends with the run', async () => {
      const s = await server();
      const started = await s.runtime.engine.start(spec(s));
      const url = `${s.url}/api/v1/runs/${started.runId}/stream`;
      const first = await readSse(url, {}, (event) => event.event === 'agent_output');
      expect(first.status).toBe(200);
      const lastId = first.events.at(-1)?.id ?? '0';
      const second = await readSse(url, { 'last-event-id': lastId });
      expect((await started.done).state).toBe('succeeded');

      const received = [...first.events, ...second.events].map((event) => {
        const envelope = JSON.parse(event.data) as RunEventEnvelope;
        expect(event.id).toBe(String(envelope.seq));
        expect(event.event).toBe(envelope.type);
        return envelope;
      });
      expect(received).toEqual(await storedLog(s, started.runId));
      expect(received.at(-1)?.type).toBe('run_completed');
      // Nothing after the closing event: 204 tells EventSource to stop reconnecting.
      const again = await fetch(url, { headers: { 'last-event-id': String(received.at(-1)?.seq) } });
      expect(again.status).toBe(204);
    });

    it('is 404 with the envelope for an unknown run and 400 naming a bad Last-Event-ID', async () => {
      const s = await server();
      const missing = await s.request('GET', '/api/v1/runs/no-such-run/stream');
      expect(missing.status).toBe(404);
      expect(missing.json).toMatchObject({ success: false, error: { code: 'AG_ERR_RUN_NOT_FOUND' } });
      const bad = await s.request('GET', '/api/v1/runs/no-such-run/stream', { headers: { 'last-event-id': 'abc' } });
      expect(bad.status).toBe(400);
      expect(bad.json?.error?.message).toContain('last-event-id');
    });
  });

  describe('GET /api/v1/runs/:id/events', () => {
    it('pages the stored log in seq order', async () => {
      const s = await server();
      const run = await s.runtime.engine.start(spec(s, AGENTS.correct));
      await run.done;
      const all = await s.runtime.repos.runs.listEvents(run.runId, { limit: 10_000 });
      const pages: RunEventEnvelope[] = [];
      let afterSeq = 0;
      for (;;) {
        const page = await s.request('GET', `/api/v1/runs/${run.runId}/events?afterSeq=${afterSeq}&limit=7`);
        expect(page.status).toBe(200);
        const data = page.json?.data as { items: RunEventEnvelope[]; nextAfterSeq: number; hasMore: boolean };
        pages.push(...data.items);
        afterSeq = data.nextAfterSeq;
        if (!data.hasMore) break;
      }
      expect(pages.map((e) => e.seq)).toEqual(all.map((e) => e.seq));
      expect(pages.at(-1)?.type).toBe('run_completed');
    });

    it('refuses bad queries with 400 naming the field and unknown runs with 404', async () => {
      const s = await server();
      for (const [query, path] of [
        ['limit=0', 'query.limit'],
        ['limit=1001', 'query.limit'],
        ['afterSeq=-1', 'query.afterSeq'],
        ['afterSeq=1e3', 'query.afterSeq'],
      ] as const) {
        const reply = await s.request('GET', `/api/v1/runs/r1/events?${query}`);
        expect(reply.status, query).toBe(400);
        // buildServer words it `query.limit`; a bare app with the plugin `querystring/limit`.
        expect(reply.json?.error?.message, query).toMatch(new RegExp(path.replace('query.', 'query(?:string)?[./]')));
      }
      const missing = await s.request('GET', '/api/v1/runs/no-such-run/events');
      expect(missing.status).toBe(404);
      expect(missing.json?.error?.code).toBe('AG_ERR_RUN_NOT_FOUND');
    });
  });

  describe('with an API key', () => {
    it('refuses the WebSocket without key or ticket, accepts the header, and a ticket exactly once', async () => {
      const s = await server({ apiKey: 'secret-key' });
      await expect(WsClient.open(s.url)).rejects.toThrow('HTTP 401');
      await expect(WsClient.open(s.url, { headers: { authorization: 'Bearer wrong' } })).rejects.toThrow('HTTP 401');
      await expect(WsClient.open(s.url, { protocols: ['agentgate.v1', 'agentgate.ticket.made-up'] })).rejects.toThrow('HTTP 401');

      const withKey = await ws(s, { headers: { authorization: 'Bearer secret-key' } });
      expect(await withKey.roundTrip({ type: 'ping' })).toEqual([]);

      const issued = await s.request('POST', '/api/v1/auth/ticket', { headers: { authorization: 'Bearer secret-key' } });
      expect(issued.status).toBe(201);
      const { ticket } = issued.json?.data as { ticket: string };
      const protocols = ['agentgate.v1', `agentgate.ticket.${ticket}`];
      const withTicket = await ws(s, { protocols });
      // The server selects the non-secret protocol: the ticket is not echoed.
      expect(withTicket.socket.protocol).toBe('agentgate.v1');
      expect(await withTicket.roundTrip({ type: 'ping' })).toEqual([]);
      await expect(WsClient.open(s.url, { protocols })).rejects.toThrow('HTTP 401');
    });

    it('refuses SSE and the event log without the key', async () => {
      const s = await server({ apiKey: 'secret-key' });
      const run = await s.runtime.engine.start(spec(s, AGENTS.correct));
      await run.done;
      for (const path of [`/api/v1/runs/${run.runId}/stream`, `/api/v1/runs/${run.runId}/events`]) {
        const refused = await s.request('GET', path);
        expect(refused.status, path).toBe(401);
        expect(refused.json?.error?.code).toBe('AG_ERR_API_UNAUTHORIZED');
      }
      const page = await s.request('GET', `/api/v1/runs/${run.runId}/events`, { headers: { authorization: 'Bearer secret-key' } });
      expect(page.status).toBe(200);
      const stream = await readSse(`${s.url}/api/v1/runs/${run.runId}/stream`, { authorization: 'Bearer secret-key' });
      expect(stream.status).toBe(200);
      expect(stream.events.at(-1)?.event).toBe('run_completed');
    });
  });
});
