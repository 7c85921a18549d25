/**
 * WebSocket flow control with small buffers: a stalled client (its socket paused, never reading) does not
 * hold up a real run, the server's memory for it stays bounded, and it is closed with 4008 naming the seq
 * to resume from; a client that stops answering heartbeats is dropped.
 */
import Fastify, { type FastifyInstance } from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { silentLogger } from '../../src/observability/logger.js';
import type { RunEventEnvelope } from '../../src/observability/events.js';
import { createRun } from '../../src/orchestrator/state-machine.js';
import { createRuntime, type Runtime } from '../../src/runtime.js';
import { loadConfig } from '../../src/schemas/config.js';
import { resolveTaskSpec } from '../../src/schemas/resolve.js';
import type { TaskSpecInput } from '../../src/schemas/task-spec.js';
import { createServerAuth } from '../../src/server/auth.js';
import { eventRoutes } from '../../src/server/routes/events.js';
import { WsConnections } from '../../src/server/ws-connection.js';
import { WS_CLOSE } from '../../src/server/ws-protocol.js';
import { AGENTS, makeRepo, writeAgent, type TempRepo } from '../helpers/git-repo.js';

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn();
});

const FLOW = { maxBufferedEvents: 20, highWaterBytes: 64 * 1024, coalesceBytes: 16 * 1024, closeGraceMs: 120_000 };

async function setup(options: { heartbeatMs?: number } = {}): Promise<{ repo: TempRepo; runtime: Runtime; app: FastifyInstance; url: string; connections: WsConnections }> {
  const repo = makeRepo();
  cleanups.push(repo.cleanup);
  const runtime = await createRuntime({ config: loadConfig({ AGENTGATE_HOME: repo.home }), logger: silentLogger(), baseEnv: { ...process.env } });
  cleanups.push(() => runtime.close());
  const connections = new WsConnections();
  const app = Fastify();
  await app.register(eventRoutes, {
    hub: runtime.hub,
    repos: runtime.repos,
    auth: createServerAuth({}),
    authenticate: 'self',
    connections,
    maxBufferedEvents: FLOW.maxBufferedEvents,
    heartbeatMs: options.heartbeatMs ?? 30_000,
    flow: { highWaterBytes: FLOW.highWaterBytes, coalesceBytes: FLOW.coalesceBytes, closeGraceMs: FLOW.closeGraceMs },
  });
  await app.listen({ host: '127.0.0.1', port: 0 });
  cleanups.push(() => app.close());
  const address = app.server.address();
  if (typeof address !== 'object' || address === null) throw new Error('no address');
  return { repo, runtime, app, url: `ws://127.0.0.1:${address.port}/ws`, connections };
}

/** A finished run with `count` stored agent_output events of ~1 KiB: a long replay to fill a socket. */
async function fillerRun(runtime: Runtime, count: number): Promise<string> {
  const runId = 'filler-run';
  const fence = { leaseKey: `run:${runId}`, owner: 'test' };
  await runtime.repos.runs.create({
    workOrder: { id: `wo-${runId}`, source: 'task_spec', spec: { prompt: 'filler' } },
    run: createRun({ id: runId, workOrderId: `wo-${runId}`, maxIterations: 1 }),
    lease: { key: fence.leaseKey, owner: fence.owner, ttlMs: 3_600_000 },
  });
  const text = 'x'.repeat(1024);
  for (let written = 0; written < count; written += 500) {
    await runtime.repos.runs.appendEvents(runId, Array.from({ length: 500 }, () => ({ type: 'agent_output' as const, data: { iteration: 1, stream: 'stdout' as const, text } })), fence);
  }
  return runId;
}

function open(url: string, options: WebSocket.ClientOptions = {}): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(url, options);
    socket.once('open', () => resolve(socket));
    socket.once('error', reject);
  });
}

describe('WebSocket flow control', () => {
  it('closes a stalled client with 4008 while the run completes, holding bounded memory, and the client resumes', async () => {
    const { repo, runtime, url, connections } = await setup();
    const filler = await fillerRun(runtime, 6_000);
    const spec = resolveTaskSpec({
      apiVersion: 'agentgate.io/v1',
      kind: 'TaskSpec',
      metadata: { name: 'stall' },
      spec: {
        goal: { prompt: 'Implement add and multiply' },
        convergence: { limits: { maxIterations: 1 } },
        execution: { workspace: { source: 'local', path: repo.repo }, agent: { driver: 'command', command: `sh ${writeAgent(repo.root, 'a', `for i in $(seq 1 30); do echo "line $i"; sleep 0.05; done\n${AGENTS.correct}`)}` } },
      },
    } as TaskSpecInput);
    const runId = '11111111-2222-4333-8444-555555555555';
    const stalled = await open(url);
    const messages: Array<Record<string, unknown>> = [];
    stalled.on('message', (data) => messages.push(JSON.parse(String(data)) as Record<string, unknown>));
    const closed = new Promise<{ code: number; reason: string }>((resolve) => stalled.on('close', (code, reason) => resolve({ code, reason: reason.toString() })));
    stalled.send(JSON.stringify({ type: 'subscribe', runId: filler }));
    // Stop reading: the replay fills the kernel buffers, then the server's socket buffer.
    stalled.pause();
    const started = await runtime.engine.start(spec, { runId });
    stalled.send(JSON.stringify({ type: 'subscribe', runId }));

    const outcome = await started.done;
    expect(outcome.state).toBe('succeeded');
    const stats = connections.stats;
    expect(stats.laggedCloses).toBe(1);
    expect(stats.peakQueuedEvents).toBeLessThanOrEqual(2 * (FLOW.maxBufferedEvents + 1));
    // Below the hard cut (4 × high water); the frames are ~1 KiB each.
    expect(stats.peakBufferedBytes).toBeLessThanOrEqual(4 * FLOW.highWaterBytes + 8 * 1024);
    expect(stats.subscriptions).toBe(0);
    expect(runtime.hub.stats.subscriptions).toBe(0);
    expect(runtime.hub.stats.queued).toBe(0);

    stalled.resume();
    const { code, reason } = await closed;
    expect(code).toBe(WS_CLOSE.lagged);
    const resume = /runId=(\S+) afterSeq=(\d+)/.exec(reason);
    // The run's subscription is the one that fell behind (the filler replay waits at the reader's pace).
    expect(resume?.[1]).toBe(runId);
    const ended = messages.filter((m) => m['type'] === 'subscription_ended');
    expect(ended.map((m) => m['reason'])).toEqual(['lagged', 'lagged']);
    const runEnd = ended.find((m) => m['runId'] === runId);
    expect(String(runEnd?.['lastSeq'])).toBe(resume?.[2]);
    const before = messages.filter((m) => m['kind'] === 'event' && m['runId'] === runId).map(({ kind: _kind, ...e }) => e);
    expect(before.at(-1)?.['seq'] ?? 0).toBe(runEnd?.['lastSeq']);

    // Resuming with the seq it was told gives the rest of the run, exactly once.
    const again = await open(url);
    const rest: Array<Record<string, unknown>> = [];
    const done = new Promise<void>((resolve) =>
      again.on('message', (data) => {
        const message = JSON.parse(String(data)) as Record<string, unknown>;
        if (message['kind'] === 'event') rest.push(message);
        if (message['type'] === 'subscription_ended') resolve();
      }),
    );
    again.send(JSON.stringify({ type: 'subscribe', runId, afterSeq: runEnd?.['lastSeq'] }));
    await done;
    again.terminate();
    const stored = (await runtime.repos.runs.listEvents(runId, { limit: 10_000 })) as unknown as RunEventEnvelope[];
    const received = [...before, ...rest.map(({ kind: _kind, ...e }) => e)];
    expect(received.map((e) => e['seq'])).toEqual(stored.map((e) => e.seq));
  });

  it('coalesces queued agent output into fewer frames without losing text', async () => {
    const { runtime, url, connections } = await setup();
    const filler = await fillerRun(runtime, 6_000);
    const socket = await open(url);
    const frames: Array<Record<string, unknown>> = [];
    const all = new Promise<void>((resolve) =>
      socket.on('message', (data) => {
        const message = JSON.parse(String(data)) as Record<string, unknown>;
        if (message['kind'] === 'event') frames.push(message);
        if (message['seq'] === 6_000) resolve();
      }),
    );
    socket.pause();
    socket.send(JSON.stringify({ type: 'subscribe', runId: filler }));
    // Let the server's buffer fill past the coalescing threshold, then read everything.
    await new Promise<void>((resolve) => {
      const check = (): void => {
        if (connections.stats.bufferedBytes >= FLOW.coalesceBytes) resolve();
        else setImmediate(check);
      };
      check();
    });
    socket.resume();
    await all;
    const seqs: number[] = [];
    let lines = 0;
    for (const frame of frames) {
      const coalesced = frame['coalesced'] as { fromSeq: number; count: number } | undefined;
      const from = coalesced?.fromSeq ?? (frame['seq'] as number);
      for (let seq = from; seq <= (frame['seq'] as number); seq += 1) seqs.push(seq);
      lines += String((frame['data'] as { text: string }).text).split('\n').length;
    }
    expect(seqs).toEqual(Array.from({ length: 6_000 }, (_, i) => i + 1));
    expect(lines).toBe(6_000);
    expect(connections.stats.eventsCoalesced).toBeGreaterThan(0);
    expect(frames.length).toBeLessThan(6_000);
    socket.terminate();
  });

  it('terminates a socket that stops answering heartbeats', async () => {
    const { url, connections } = await setup({ heartbeatMs: 50 });
    const socket = await open(url, { autoPong: false });
    const closed = new Promise<number>((resolve) => socket.on('close', (code) => resolve(code)));
    expect(await closed).toBe(1006);
    expect(connections.stats.heartbeatTimeouts).toBe(1);
    expect(connections.stats.connections).toBe(0);
  });
});
