/**
 * Benchmark (SPEC 15): EventHub → SQLite store → subscribers. One writer appends `events` run events
 * in batches of `batch` through `EventHub.append` (real SQLite file, WAL), `subscribers` live
 * subscribers read every one of them, and one more subscriber never reads (it must end `lagged`
 * without slowing anyone). Reports sustained events/s (appended and delivered to every reader), p99
 * delivery latency (from the start of the `append` call to a subscriber receiving the event), the
 * floor of the same appends straight to the repository, and what the hub still holds at the end.
 *
 * Everything runs on one thread, as the server does: latency includes waiting for the event loop.
 *
 *   tsx scripts/bench/event-hub.ts [events=100000] [subscribers=50] [batch=10] [yieldEvery=1]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { EventHub } from '../../packages/server/src/observability/event-hub.js';
import type { NewRunEvent, RunEventEnvelope } from '../../packages/server/src/observability/events.js';
import { createRun } from '../../packages/server/src/orchestrator/state-machine.js';
import type { Fence, Repositories } from '../../packages/server/src/store/repositories.js';
import { openSqliteRepositories } from '../../packages/server/src/store/sqlite/index.js';

const events = Number(process.argv[2] ?? 100_000);
const subscriberCount = Number(process.argv[3] ?? 50);
const batch = Number(process.argv[4] ?? 10);
/** Let the event loop turn after every `yieldEvery` appends (0: never). */
const yieldEvery = Number(process.argv[5] ?? 1);

async function seed(repos: Repositories, runId: string): Promise<Fence> {
  const fence = { leaseKey: `run:${runId}`, owner: 'bench' };
  await repos.runs.create({
    workOrder: { id: `wo-${runId}`, source: 'task_spec', spec: { prompt: 'bench' } },
    run: createRun({ id: runId, workOrderId: `wo-${runId}`, maxIterations: 1 }),
    lease: { key: fence.leaseKey, owner: fence.owner, ttlMs: 3_600_000 },
  });
  return fence;
}

function line(i: number): NewRunEvent {
  return { type: 'agent_output', data: { iteration: 1, stream: 'stdout', text: `output line ${i} of the agent, about eighty characters long……` } };
}

function percentile(sorted: Float64Array, p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ?? Number.NaN;
}

async function storeFloor(repos: Repositories): Promise<number> {
  const fence = await seed(repos, 'floor');
  const started = performance.now();
  for (let written = 0; written < events; written += batch) {
    await repos.runs.appendEvents('floor', Array.from({ length: Math.min(batch, events - written) }, (_, k) => line(written + k)), fence);
  }
  return events / ((performance.now() - started) / 1000);
}

async function main(): Promise<void> {
  const root = mkdtempSync(join(tmpdir(), 'agentgate-bench-hub-'));
  const repos = openSqliteRepositories({ path: join(root, 'agentgate.db') });
  try {
    const floor = await storeFloor(repos);
    const hub = new EventHub({ runs: repos.runs, workOrders: repos.workOrders });
    const fence = await seed(repos, 'run');
    // Start time of the append that carries each seq (seq 1 is the first event of the run).
    const appendedAt = new Float64Array(events + 1);
    const latencies = new Float64Array(events * subscriberCount);
    let measured = 0;
    const stalled = hub.subscribe({ runId: 'run' });
    const readers = Array.from({ length: subscriberCount }, async () => {
      const subscription = hub.subscribe({ runId: 'run' });
      let received = 0;
      for await (const event of subscription) {
        latencies[measured] = performance.now() - (appendedAt[event.seq] ?? 0);
        measured += 1;
        received += 1;
        if (event.seq === events) break;
      }
      return { received, end: subscription.end };
    });

    const started = performance.now();
    let last: RunEventEnvelope | undefined;
    for (let written = 0; written < events; written += batch) {
      const size = Math.min(batch, events - written);
      const now = performance.now();
      for (let k = 1; k <= size; k += 1) appendedAt[written + k] = now;
      const appended = await hub.append('run', Array.from({ length: size }, (_, k) => line(written + k)), fence);
      last = appended.at(-1);
      // The engine's events come from I/O (agent output, gate processes): between two appends the event
      // loop turns. Without this, SQLite being synchronous, a writer would hold the thread for the whole run.
      if (yieldEvery > 0 && (written / batch) % yieldEvery === 0) await new Promise((resolve) => setImmediate(resolve));
    }
    const writerDone = performance.now();
    const results = await Promise.all(readers);
    const allDelivered = performance.now();

    const sorted = latencies.subarray(0, measured).sort();
    const lagged = results.filter((r) => r.end?.reason !== 'closed').length;
    const incomplete = results.filter((r) => r.received !== events).length;
    const report = {
      events,
      subscribers: subscriberCount,
      batch,
      yieldEvery,
      lastSeq: last?.seq,
      storeFloorEventsPerSecond: Math.round(floor),
      appendedEventsPerSecond: Math.round(events / ((writerDone - started) / 1000)),
      deliveredEventsPerSecond: Math.round(events / ((allDelivered - started) / 1000)),
      deliveriesPerSecond: Math.round(measured / ((allDelivered - started) / 1000)),
      latencyMs: {
        p50: +percentile(sorted, 0.5).toFixed(2),
        p99: +percentile(sorted, 0.99).toFixed(2),
        max: +percentile(sorted, 1).toFixed(2),
      },
      stalledSubscriber: { end: stalled.end, queuedNow: stalled.stats.queued, peakQueued: stalled.stats.peakQueued },
      readersNotClosedNormally: lagged,
      readersMissingEvents: incomplete,
      hubAfter: hub.stats,
      heapUsedMb: Math.round(process.memoryUsage().heapUsed / 1e6),
    };
    process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
    hub.close();
  } finally {
    await repos.close();
    rmSync(root, { recursive: true, force: true });
  }
}

await main();
