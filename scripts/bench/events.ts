/**
 * Benchmark (SPEC 15): EventHub → SQLite store → WebSocket (`/ws` of `eventRoutes`) → 50 loopback
 * subscribers, plus one stalled subscriber (socket paused, never reads). One writer appends `events`
 * agent_output events in batches of `batch` through `EventHub.append`; each subscriber receives every
 * one over its own WebSocket. Reports sustained events/s (until the last subscriber got the last event),
 * p99 delivery latency (start of `append` → a subscriber parsed the frame), and what the server holds
 * for the stalled subscriber (socket buffer, hub queue, lag close) and the process heap.
 *
 * Server and clients share one thread here, so latency includes the clients' own parsing.
 *
 *   tsx scripts/bench/events.ts [events=50000] [subscribers=50] [batch=10]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { createRequire } from 'node:module';
import type FastifyModule from 'fastify';
import type WebSocketModule from 'ws';
import { EventHub } from '../../packages/server/src/observability/event-hub.js';
import type { NewRunEvent } from '../../packages/server/src/observability/events.js';
import { createRun } from '../../packages/server/src/orchestrator/state-machine.js';
import { createServerAuth } from '../../packages/server/src/server/auth.js';
import { eventRoutes } from '../../packages/server/src/server/routes/events.js';
import { WsConnections } from '../../packages/server/src/server/ws-connection.js';
import { openSqliteRepositories } from '../../packages/server/src/store/sqlite/index.js';

// fastify and ws are dependencies of the server package, not of the workspace root this script runs from.
const requireFromServer = createRequire(new URL('../../packages/server/package.json', import.meta.url));
const Fastify = requireFromServer('fastify') as typeof FastifyModule;
const WebSocket = requireFromServer('ws') as typeof WebSocketModule;
type WebSocket = WebSocketModule;

const events = Number(process.argv[2] ?? 50_000);
const subscriberCount = Number(process.argv[3] ?? 50);
const batch = Number(process.argv[4] ?? 10);

function percentile(sorted: Float64Array, p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ?? Number.NaN;
}

async function main(): Promise<void> {
  const root = mkdtempSync(join(tmpdir(), 'agentgate-bench-events-'));
  const repos = openSqliteRepositories({ path: join(root, 'agentgate.db') });
  const hub = new EventHub({ runs: repos.runs, workOrders: repos.workOrders });
  const connections = new WsConnections();
  const app = Fastify();
  await app.register(eventRoutes, { hub, repos, auth: createServerAuth({}), authenticate: 'self', connections });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const address = app.server.address();
  if (typeof address !== 'object' || address === null) throw new Error('no address');
  const url = `ws://127.0.0.1:${address.port}/ws`;
  const runId = 'bench-run';
  const fence = { leaseKey: `run:${runId}`, owner: 'bench' };
  await repos.runs.create({
    workOrder: { id: `wo-${runId}`, source: 'task_spec', spec: { prompt: 'bench' } },
    run: createRun({ id: runId, workOrderId: `wo-${runId}`, maxIterations: 1 }),
    lease: { key: fence.leaseKey, owner: fence.owner, ttlMs: 3_600_000 },
  });

  const sentAt = new Float64Array(events + 1);
  const latencies = new Float64Array(events * subscriberCount);
  let latencyCount = 0;
  let finished = 0;
  let allDone: () => void = () => undefined;
  const done = new Promise<void>((resolve) => {
    allDone = resolve;
  });
  const open = (): Promise<WebSocket> =>
    new Promise((resolve, reject) => {
      const socket = new WebSocket(url);
      socket.once('open', () => resolve(socket));
      socket.once('error', reject);
    });
  const subscribed: Array<Promise<void>> = [];
  const sockets: WebSocket[] = [];
  for (let i = 0; i < subscriberCount; i += 1) {
    const socket = await open();
    sockets.push(socket);
    subscribed.push(
      new Promise((resolve) => {
        socket.on('message', (data) => {
          const message = JSON.parse(String(data)) as { kind?: string; type: string; seq?: number; coalesced?: unknown };
          if (message.type === 'subscription_confirmed') resolve();
          if (message.kind !== 'event' || message.seq === undefined) return;
          latencies[latencyCount++] = performance.now() - (sentAt[message.seq] ?? 0);
          if (message.seq === events && (finished += 1) === subscriberCount) allDone();
        });
      }),
    );
    socket.send(JSON.stringify({ type: 'subscribe', runId, afterSeq: 0 }));
  }
  const stalled = await open();
  stalled.send(JSON.stringify({ type: 'subscribe', runId, afterSeq: 0 }));
  stalled.pause();
  const stalledClosed = new Promise<number>((resolve) => stalled.on('close', (code) => resolve(code)));
  await Promise.all(subscribed);

  const heapBefore = process.memoryUsage().heapUsed;
  const started = performance.now();
  for (let written = 0; written < events; written += batch) {
    const size = Math.min(batch, events - written);
    const now = performance.now();
    for (let k = 1; k <= size; k += 1) sentAt[written + k] = now;
    const page: NewRunEvent[] = Array.from({ length: size }, (_, k) => ({ type: 'agent_output', data: { iteration: 1, stream: 'stdout', text: `output line ${written + k} of the agent, about eighty characters long……` } }));
    await hub.append(runId, page, fence);
    // Let the sockets and readers run between appends, as a real run's event-loop turns would.
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
  await done;
  const seconds = (performance.now() - started) / 1000;
  const stats = connections.stats;
  const heapAfter = process.memoryUsage().heapUsed;
  const sorted = latencies.slice(0, latencyCount).sort();
  stalled.resume();
  // A short run fits in the kernel's socket buffers: then the stalled subscriber never lags.
  const stalledCode = stats.laggedCloses > 0 ? await stalledClosed : 'not closed (everything fit in the kernel buffers)';

  const mb = (bytes: number): string => `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
  console.log(`events ${events}, subscribers ${subscriberCount} (+1 stalled), batch ${batch}`);
  console.log(`sustained: ${Math.round(events / seconds)} events/s appended and delivered to every subscriber (${Math.round((events * subscriberCount) / seconds)} frames/s)`);
  console.log(`latency append → subscriber: p50 ${percentile(sorted, 0.5).toFixed(1)} ms, p99 ${percentile(sorted, 0.99).toFixed(1)} ms, max ${percentile(sorted, 1).toFixed(1)} ms`);
  console.log(`stalled subscriber: closed ${stalledCode} (4008 = lagged); lagged closes ${stats.laggedCloses}; peak hub queue ${stats.peakQueuedEvents} events; peak socket buffer ${mb(stats.peakBufferedBytes)}`);
  console.log(`coalesced events: ${stats.eventsCoalesced}; heap before ${mb(heapBefore)}, after ${mb(heapAfter)}; hub now holds ${hub.stats.queued} events`);
  for (const socket of sockets) socket.terminate();
  await app.close();
  hub.close();
  await repos.close();
  rmSync(root, { recursive: true, force: true });
}

void main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
