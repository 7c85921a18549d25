import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, expectTypeOf, it } from 'vitest';
import { AgentGateError } from '../../src/errors.js';
import { RUN_EVENT_TYPES, WORK_ORDER_EVENT_TYPES, toRunEventEnvelope, toWorkOrderEventEnvelope } from '../../src/observability/event-envelope.js';
import { EventHub, type Subscription } from '../../src/observability/event-hub.js';
import { PROGRESS_EVENT_TYPES, type NewRunEvent, type ProgressEnvelope, type RunEventEnvelope, type WorkOrderEventEnvelope } from '../../src/observability/events.js';
import { Metrics } from '../../src/observability/metrics.js';
import { createRun } from '../../src/orchestrator/state-machine.js';
import type { Fence } from '../../src/store/repositories.js';
import { openSqliteRepositories, type SqliteRepositories } from '../../src/store/sqlite/index.js';
import type { StoredEvent } from '../../src/store/types.js';

const HOUR = 3_600_000;

function output(iteration: number, text = `line ${iteration}`): NewRunEvent {
  return { type: 'agent_output', data: { iteration, stream: 'stdout', text } };
}

function gate(iteration: number, name: string): NewRunEvent {
  return { type: 'gate_checked', data: { iteration, gate: name, level: 'L1', passed: true, durationMs: 1 } };
}

/** Reads `count` events from a subscription without closing it. */
async function take<E>(subscription: Subscription<E>, count: number): Promise<E[]> {
  const iterator = subscription[Symbol.asyncIterator]();
  const events: E[] = [];
  while (events.length < count) {
    const next = await iterator.next();
    if (next.done === true) break;
    events.push(next.value);
  }
  return events;
}

/** Reads until the event with `lastSeq`, then closes. */
async function readThrough<E extends { seq: number }>(subscription: Subscription<E>, lastSeq: number): Promise<E[]> {
  const events: E[] = [];
  for await (const event of subscription) {
    events.push(event);
    if (event.seq >= lastSeq) break;
  }
  return events;
}

function range(from: number, to: number): number[] {
  return Array.from({ length: to - from + 1 }, (_, index) => from + index);
}

describe('EventHub', () => {
  let dir: string;
  let repos: SqliteRepositories;
  let hub: EventHub;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'agentgate-hub-'));
    repos = openSqliteRepositories({ path: join(dir, 'agentgate.db') });
    hub = new EventHub({ runs: repos.runs, workOrders: repos.workOrders });
  });

  afterEach(async () => {
    hub.close();
    await repos.close();
    await rm(dir, { recursive: true, force: true });
  });

  async function seedRun(runId: string, workOrderId = `wo-${runId}`): Promise<Fence> {
    const owner = 'owner-a';
    const key = `run:${runId}`;
    await repos.runs.create({
      workOrder: { id: workOrderId, source: 'task_spec', spec: { prompt: 'p' } },
      run: createRun({ id: runId, workOrderId, maxIterations: 3 }),
      lease: { key, owner, ttlMs: HOUR },
    });
    return { leaseKey: key, owner };
  }

  describe('when a subscriber connects mid-stream with afterSeq', () => {
    it('receives every later event exactly once, in order, while the writer keeps appending', async () => {
      const fence = await seedRun('r1');
      const other = await seedRun('r2');
      const hubSmallPages = new EventHub({ runs: repos.runs, workOrders: repos.workOrders, pageSize: 7, maxQueued: 100_000 });
      const batches = 600;
      let reading: Promise<RunEventEnvelope[]> | undefined;
      let subscription: Subscription<RunEventEnvelope> | undefined;
      let total = 0;
      for (let i = 0; i < batches; i += 1) {
        const size = (i % 3) + 1;
        const written = await hubSmallPages.append('r1', range(1, size).map((n) => output(i, `b${i}-${n}`)), fence);
        await hubSmallPages.append('r2', [output(i)], other);
        total = written.at(-1)?.seq ?? total;
        if (i === 200) {
          subscription = hubSmallPages.subscribe({ runId: 'r1', afterSeq: 150 });
          const expectedLast = batches * 2; // 600 batches of 1, 2, 3 events: 1200 events
          reading = readThrough(subscription, expectedLast);
        }
      }
      expect(total).toBe(1200);
      const received = (await reading) ?? [];
      expect(received.map((event) => event.seq)).toEqual(range(151, 1200));
      expect(received.every((event) => event.runId === 'r1')).toBe(true);
      const stored = await repos.runs.listEvents('r1', { afterSeq: 150, limit: 10_000 });
      expect(received.map((event) => event.data)).toEqual(stored.map((event) => event.data));
      expect(subscription?.end).toEqual({ reason: 'closed', lastSeq: 1200 });
      hubSmallPages.close();
    });

    it('replays the whole log without afterSeq and then goes live', async () => {
      const fence = await seedRun('r1');
      await hub.append('r1', [output(1), output(1)], fence);
      const subscription = hub.subscribe({ runId: 'r1' });
      const first = await take(subscription, 2);
      await hub.append('r1', [output(2)], fence);
      const live = await take(subscription, 1);
      expect([...first, ...live].map((event) => event.seq)).toEqual([1, 2, 3]);
      expect(subscription.stats.gapReads).toBe(0);
    });
  });

  describe('when a subscriber never reads', () => {
    it('does not hold the writer back: it is dropped as lagged and its memory released', async () => {
      const fence = await seedRun('r1');
      const stalled = hub.subscribe({ runId: 'r1', maxQueued: 50 });
      const reader = hub.subscribe({ runId: 'r1', maxQueued: 5000 });
      for (let i = 0; i < 1000; i += 1) await hub.append('r1', [output(i)], fence);
      expect(stalled.end).toEqual({ reason: 'lagged', lastSeq: 0 });
      expect(stalled.stats.peakQueued).toBeLessThanOrEqual(50);
      expect(stalled.stats.queued).toBe(0);
      expect(await stalled.ended).toEqual({ reason: 'lagged', lastSeq: 0 });
      expect(hub.stats).toMatchObject({ subscriptions: 1, lagged: 1 });
      expect((await take(reader, 1000)).map((event) => event.seq)).toEqual(range(1, 1000));
    });

    it('reports the last seq it delivered, and a resubscription with it continues without gap or duplicate', async () => {
      const fence = await seedRun('r1');
      const subscription = hub.subscribe({ runId: 'r1', maxQueued: 20 });
      await hub.append('r1', [output(1), output(1), output(1)], fence);
      const firstThree = await take(subscription, 3);
      expect(firstThree.map((event) => event.seq)).toEqual([1, 2, 3]);
      await hub.append('r1', range(1, 10).map((i) => output(i)), fence);
      const twoMore = await take(subscription, 2);
      for (let i = 0; i < 30; i += 1) await hub.append('r1', [output(i)], fence);
      expect(subscription.end).toEqual({ reason: 'lagged', lastSeq: 5 });
      expect([...firstThree, ...twoMore].map((event) => event.seq)).toEqual([1, 2, 3, 4, 5]);
      // A closed subscription's iterator just ends.
      expect(await take(subscription, 1)).toEqual([]);

      const resumed = hub.subscribe({ runId: 'r1', afterSeq: 5, maxQueued: 20 });
      expect((await readThrough(resumed, 43)).map((event) => event.seq)).toEqual(range(6, 43));
    });
  });

  describe('when events reach the log without being published', () => {
    it('reads the skipped range from the store before delivering the next live event', async () => {
      const fence = await seedRun('r1');
      await hub.append('r1', [output(1)], fence);
      const subscription = hub.subscribe({ runId: 'r1' });
      expect((await take(subscription, 1)).map((event) => event.seq)).toEqual([1]);
      // Written by another process: the store has them, the hub never saw them.
      await repos.runs.appendEvents('r1', [output(2), output(2), output(2)], fence);
      await hub.append('r1', [gate(2, 'unit')], fence);
      const events = await take(subscription, 4);
      expect(events.map((event) => event.seq)).toEqual([2, 3, 4, 5]);
      expect(events.map((event) => event.type)).toEqual(['agent_output', 'agent_output', 'agent_output', 'gate_checked']);
      expect(subscription.stats.gapReads).toBe(1);
    });

    it('skips an event published twice', async () => {
      const fence = await seedRun('r1');
      const subscription = hub.subscribe({ runId: 'r1' });
      const stored = await repos.runs.appendEvents('r1', [output(1), output(1)], fence);
      hub.publish(stored);
      hub.publish(stored);
      await hub.append('r1', [output(2)], fence);
      expect((await take(subscription, 3)).map((event) => event.seq)).toEqual([1, 2, 3]);
      expect(subscription.stats.duplicatesSkipped).toBeGreaterThanOrEqual(2);
    });

    it('delivers events published out of order in seq order', async () => {
      const fence = await seedRun('r1');
      await hub.append('r1', [output(1)], fence);
      const subscription = hub.subscribe({ runId: 'r1' });
      expect((await take(subscription, 1)).map((event) => event.seq)).toEqual([1]);
      const stored = await repos.runs.appendEvents('r1', [output(2), output(2), output(2)], fence);
      hub.publish([...stored].reverse());
      expect((await take(subscription, 3)).map((event) => event.seq)).toEqual([2, 3, 4]);
    });

    it('ends with an error when the store lacks events below one already published', async () => {
      await seedRun('r1');
      const subscription = hub.subscribe({ runId: 'r1' });
      const phantom: StoredEvent = { seq: 4, runId: 'r1', workOrderId: 'wo-r1', type: 'iteration_started', timestamp: 't', data: { iteration: 1 } };
      hub.publish([phantom]);
      expect(await take(subscription, 1)).toEqual([]);
      expect(subscription.end).toMatchObject({ reason: 'error', lastSeq: 0, error: { code: 'AG_ERR_INTERNAL', details: { lastSeq: 0, seq: 4 } } });
    });
  });

  describe('work-order subscriptions', () => {
    it('replay and stream the work order’s own sequence, typed by event type', async () => {
      const created = await repos.workOrders.create({ id: 'wo-1', source: 'task_spec', spec: { prompt: 'p' } });
      hub.publishWorkOrder(created.event);
      const subscription = hub.subscribe({ workOrderId: 'wo-1' });
      const first = await take(subscription, 1);
      const updated = await repos.workOrders.setStatus('wo-1', 'running', { runId: 'r1' });
      hub.publishWorkOrder(updated.event);
      const finished = await repos.workOrders.setStatus('wo-1', 'succeeded', { runId: 'r1' });
      hub.publishWorkOrder(finished.event);
      const events = [...first, ...(await take(subscription, 2))];
      expect(events.map((event) => [event.seq, event.type])).toEqual([
        [1, 'work_order_created'],
        [2, 'work_order_updated'],
        [3, 'work_order_updated'],
      ]);
      const runIds = events.map((event) => (event.type === 'work_order_updated' ? event.data.runId : null));
      expect(runIds).toEqual([null, 'r1', 'r1']);
      expectTypeOf(subscription).toEqualTypeOf<Subscription<WorkOrderEventEnvelope>>();
    });

    it('is not fed by run events', async () => {
      const fence = await seedRun('r1', 'wo-1');
      const subscription = hub.subscribe({ workOrderId: 'wo-1', afterSeq: 1 });
      await hub.append('r1', [output(1)], fence);
      const updated = await repos.workOrders.setStatus('wo-1', 'running', { runId: 'r1' });
      hub.publishWorkOrder(updated.event);
      expect((await take(subscription, 1)).map((event) => event.seq)).toEqual([2]);
    });
  });

  describe('filters', () => {
    it('queue only the listed types while tracking every seq (gaps are still filled)', async () => {
      const fence = await seedRun('r1');
      const subscription = hub.subscribe({ runId: 'r1', filter: ['gate_checked'] });
      await hub.append('r1', [output(1), gate(1, 'unit'), output(1)], fence);
      const first = await take(subscription, 1);
      expect(subscription.stats).toMatchObject({ lastSeq: 3, queued: 0 });
      await repos.runs.appendEvents('r1', [gate(1, 'lint'), output(1)], fence);
      await hub.append('r1', [output(2)], fence);
      await hub.append('r1', [gate(2, 'e2e')], fence);
      const rest = await take(subscription, 2);
      expect([...first, ...rest].map((event) => [event.seq, event.type === 'gate_checked' ? event.data.gate : event.type])).toEqual([
        [2, 'unit'],
        [4, 'lint'],
        [7, 'e2e'],
      ]);
    });

    it('accept a predicate over the typed envelope', async () => {
      const fence = await seedRun('r1');
      const subscription = hub.subscribe({ runId: 'r1', filter: (event) => event.type === 'agent_output' && event.data.text.startsWith('keep') });
      await hub.append('r1', [output(1, 'keep 1'), output(1, 'drop'), output(1, 'keep 2')], fence);
      expect((await take(subscription, 2)).map((event) => event.seq)).toEqual([1, 3]);
    });

    it('refuse an unknown type up front', () => {
      const filter = ['gate_checked', 'work_order_created'];
      // @ts-expect-error: a list from an untrusted client (the WebSocket API) is checked at run time too
      expect(() => hub.subscribe({ runId: 'r1', filter })).toThrow(expect.objectContaining({ code: 'AG_ERR_CONFIG_INVALID' }));
    });

    it('end the subscription, not the writer, when a predicate throws', async () => {
      const fence = await seedRun('r1');
      const subscription = hub.subscribe({
        runId: 'r1',
        filter: (event) => {
          if (event.type === 'gate_checked') throw new Error('bad filter');
          return true;
        },
      });
      await hub.append('r1', [output(1)], fence);
      expect(await take(subscription, 1)).toHaveLength(1);
      await expect(hub.append('r1', [gate(1, 'unit')], fence)).resolves.toHaveLength(1);
      expect(subscription.end).toMatchObject({ reason: 'error', lastSeq: 1, error: { code: 'AG_ERR_INTERNAL', message: 'bad filter' } });
      expect(await take(subscription, 1)).toEqual([]);
    });
  });

  describe('close()', () => {
    it('ends a pending iteration and releases the subscription', async () => {
      await seedRun('r1');
      const subscription = hub.subscribe({ runId: 'r1' });
      const pending = take(subscription, 1);
      expect(hub.stats.subscriptions).toBe(1);
      subscription.close();
      subscription.close();
      expect(await pending).toEqual([]);
      expect(await subscription.ended).toEqual({ reason: 'closed', lastSeq: 0 });
      expect(hub.stats.subscriptions).toBe(0);
    });

    it('is what `break` in a for-await loop does', async () => {
      const fence = await seedRun('r1');
      await hub.append('r1', [output(1), output(1)], fence);
      const subscription = hub.subscribe({ runId: 'r1' });
      for await (const event of subscription) if (event.seq === 1) break;
      expect(subscription.end).toEqual({ reason: 'closed', lastSeq: 1 });
    });

    it('of the hub ends every subscription and refuses new ones', async () => {
      const a = hub.subscribe({ runId: 'r1' });
      const b = hub.subscribe({ workOrderId: 'wo-1' });
      hub.close();
      expect([a.end?.reason, b.end?.reason]).toEqual(['closed', 'closed']);
      expect(() => hub.subscribe({ runId: 'r1' })).toThrow(AgentGateError);
    });
  });

  describe('trusted listeners (on)', () => {
    it('see each event after it is stored, and a throwing one is isolated and counted', async () => {
      const fence = await seedRun('r1');
      const seen: Array<[number, number]> = [];
      hub.on(() => {
        throw new Error('boom');
      });
      hub.on((event) => {
        seen.push([event.seq, -1]);
      });
      const gates: string[] = [];
      const off = hub.onType('gate_checked', (event) => gates.push(event.data.gate));
      const subscription = hub.subscribe({ runId: 'r1' });
      await hub.append('r1', [gate(1, 'unit'), output(1)], fence);
      off();
      await hub.append('r1', [gate(2, 'lint')], fence);
      expect(seen.map(([seq]) => seq)).toEqual([1, 2, 3]);
      expect(gates).toEqual(['unit']);
      expect(hub.listenerErrors).toBe(3);
      expect((await take(subscription, 3)).map((event) => event.seq)).toEqual([1, 2, 3]);
    });

    it('deliver nothing when the store refuses the write', async () => {
      const fence = await seedRun('r1');
      let delivered = 0;
      hub.on(() => (delivered += 1));
      await expect(hub.append('r1', [output(1)], { ...fence, owner: 'someone-else' })).rejects.toMatchObject({ code: 'AG_ERR_LEASE_LOST' });
      expect(delivered).toBe(0);
    });

    it('deliver concurrent appends of one run in seq order', async () => {
      const fence = await seedRun('r1');
      const seqs: number[] = [];
      hub.on((event) => seqs.push(event.seq));
      await Promise.all(range(1, 20).map((i) => hub.append('r1', [output(i), output(i)], fence)));
      expect(seqs).toEqual(range(1, 40));
    });

    it('feed the Prometheus metrics', async () => {
      const fence = await seedRun('r1');
      const metrics = new Metrics();
      hub.on((event) => metrics.observe(event));
      await hub.append('r1', [{ type: 'run_started', data: { maxIterations: 3, strategy: 'fixed', agent: 'noop', workspace: '/w', branch: 'b', warnings: [] } }], fence);
      expect(await metrics.registry.getSingleMetricAsString('agentgate_runs_started_total')).toMatch(/agentgate_runs_started_total 1/);
    });
  });

  describe('when the store cannot be read', () => {
    it('ends the subscription with a classified error', async () => {
      const failing = new EventHub({
        runs: {
          appendEvents: () => Promise.reject(new Error('unused')),
          listEvents: () => Promise.reject(new Error('disk I/O error')),
        },
        workOrders: repos.workOrders,
      });
      const subscription = failing.subscribe({ runId: 'r1' });
      expect(await take(subscription, 1)).toEqual([]);
      expect(subscription.end).toMatchObject({ reason: 'error', lastSeq: 0, error: { code: 'AG_ERR_INTERNAL', message: 'disk I/O error' } });
      failing.close();
    });
  });
});

describe('stored events as typed envelopes', () => {
  const row = (type: string, data: Record<string, unknown>): StoredEvent => ({ seq: 7, runId: 'r', workOrderId: 'w', type, timestamp: 't', data });

  it('split the event types into run and work-order types, together all of them', () => {
    expect([...RUN_EVENT_TYPES, ...WORK_ORDER_EVENT_TYPES].sort()).toEqual([...PROGRESS_EVENT_TYPES].sort());
  });

  it('narrow on type without casts', () => {
    const event = toRunEventEnvelope(row('phase_started', { iteration: 2, phase: 'verify' }));
    if (event.type !== 'phase_started') throw new Error('expected phase_started');
    expectTypeOf(event.data.phase).toEqualTypeOf<'workspace' | 'build' | 'snapshot' | 'verify' | 'feedback' | 'delivery'>();
    expect(event).toEqual({ seq: 7, runId: 'r', workOrderId: 'w', type: 'phase_started', timestamp: 't', data: { iteration: 2, phase: 'verify' } });
    expectTypeOf<RunEventEnvelope>().toMatchTypeOf<ProgressEnvelope>();
  });

  it('refuse an unknown type, a work-order type in a run log, and a payload missing a field', () => {
    for (const bad of [row('run_exploded', {}), row('work_order_created', { status: 'queued' }), row('gate_checked', { iteration: 1 })]) {
      expect(() => toRunEventEnvelope(bad)).toThrow(expect.objectContaining({ code: 'AG_ERR_INTERNAL', details: expect.objectContaining({ seq: 7, type: bad.type }) }));
    }
    expect(() => toWorkOrderEventEnvelope({ seq: 1, workOrderId: 'w', type: 'gate_checked', timestamp: 't', data: {} })).toThrow(AgentGateError);
  });

  it('type append input so type and data must match', () => {
    // @ts-expect-error: gate_checked needs a gate name, not agent output
    const wrong: NewRunEvent = { type: 'gate_checked', data: { iteration: 1, stream: 'stdout', text: 'x' } };
    expect(wrong.type).toBe('gate_checked');
  });
});
