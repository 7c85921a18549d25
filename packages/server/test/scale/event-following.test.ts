/**
 * Following the store (observability/event-subscription.ts): a hub whose process does not write a log
 * still delivers its new events live, by reading the store on a poll period of its clock. Two SQLite
 * connections to one file stand for two processes; a ManualClock decides when a poll is due.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { EventHub, type Subscription } from '../../src/observability/event-hub.js';
import type { NewRunEvent } from '../../src/observability/events.js';
import { createRun } from '../../src/orchestrator/state-machine.js';
import type { Fence } from '../../src/store/repositories.js';
import { openSqliteRepositories, type SqliteRepositories } from '../../src/store/sqlite/index.js';
import { ManualClock } from '../../src/util/clock.js';

const HOUR = 3_600_000;
const POLL_MS = 1000;

function output(text: string): NewRunEvent {
  return { type: 'agent_output', data: { iteration: 1, stream: 'stdout', text } };
}

/** The next event, or the string `pending` when none came while the microtasks ran. */
async function nextOrPending<E>(next: Promise<IteratorResult<E, undefined>>): Promise<E | 'pending' | 'done'> {
  const pending = Symbol('pending');
  const raced = await Promise.race([next, new Promise<typeof pending>((resolve) => setImmediate(() => resolve(pending)))]);
  if (raced === pending) return 'pending';
  return raced.done === true ? 'done' : raced.value;
}

describe('EventHub following the store', () => {
  let dir: string;
  let writer: SqliteRepositories;
  let reader: SqliteRepositories;
  let writerHub: EventHub;
  let hub: EventHub;
  let clock: ManualClock;
  const local = new Set<string>();

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'agentgate-follow-'));
    writer = openSqliteRepositories({ path: join(dir, 'agentgate.db') });
    reader = openSqliteRepositories({ path: join(dir, 'agentgate.db') });
    clock = new ManualClock();
    writerHub = new EventHub({ runs: writer.runs, workOrders: writer.workOrders });
    hub = new EventHub({ runs: reader.runs, workOrders: reader.workOrders, followStore: { clock, pollEveryMs: POLL_MS, isLocalRun: (runId) => local.has(runId) } });
    local.clear();
  });

  afterEach(async () => {
    hub.close();
    writerHub.close();
    await reader.close();
    await writer.close();
    await rm(dir, { recursive: true, force: true });
  });

  async function seedRun(runId: string): Promise<Fence> {
    const fence = { leaseKey: `run:${runId}`, owner: 'worker-b' };
    await writer.runs.create({
      workOrder: { id: `wo-${runId}`, source: 'task_spec', spec: { prompt: 'p' } },
      run: createRun({ id: runId, workOrderId: `wo-${runId}`, maxIterations: 3 }),
      lease: { key: fence.leaseKey, owner: fence.owner, ttlMs: HOUR },
    });
    return fence;
  }

  async function cancelRun(runId: string, fence: Fence): Promise<void> {
    await writer.runs.commit(runId, {
      event: 'user_canceled',
      fence,
      closing: { type: 'run_canceled', data: { iterations: 0, branch: '', durationMs: 0, reason: 'stop' } },
    });
  }

  describe('for a run another process writes', () => {
    it('delivers its new events after a poll period, in order, and stops polling after the closing event', async () => {
      const fence = await seedRun('r1');
      await writerHub.append('r1', [output('a')], fence);
      const subscription = hub.subscribe({ runId: 'r1' });
      const iterator = subscription[Symbol.asyncIterator]();
      expect(await iterator.next()).toMatchObject({ value: { seq: 1 } });

      let next = iterator.next();
      await writerHub.append('r1', [output('b'), output('c')], fence);
      // Written elsewhere: nothing arrives until a poll is due.
      expect(await nextOrPending(next)).toBe('pending');
      await clock.advance(POLL_MS);
      expect(await next).toMatchObject({ value: { seq: 2, data: { text: 'b' } } });
      expect(await iterator.next()).toMatchObject({ value: { seq: 3, data: { text: 'c' } } });

      await cancelRun('r1', fence);
      next = iterator.next();
      expect(await nextOrPending(next)).toBe('pending');
      await clock.advance(POLL_MS);
      expect(await next).toMatchObject({ value: { seq: 4, type: 'run_state_changed' } });
      expect(await iterator.next()).toMatchObject({ value: { seq: 5, type: 'run_canceled' } });
      expect(subscription.stats.storePolls).toBe(2);
      expect(subscription.stats.gapReads).toBe(0);

      // The log is complete: the waiting consumer arms no poll.
      next = iterator.next();
      expect(await nextOrPending(next)).toBe('pending');
      expect(clock.pending()).toBe(0);
      subscription.close();
      expect(await next).toEqual({ value: undefined, done: true });
    });

    it('takes an event pushed in-process and the same event read by a poll only once', async () => {
      const fence = await seedRun('r1');
      const subscription: Subscription<{ seq: number }> = hub.subscribe({ runId: 'r1' });
      const iterator = subscription[Symbol.asyncIterator]();
      const next = iterator.next();
      await writerHub.append('r1', [output('a'), output('b')], fence);
      expect(await nextOrPending(next)).toBe('pending');
      await clock.advance(POLL_MS);
      expect(await next).toMatchObject({ value: { seq: 1 } });
      // The same stored events also reach this hub directly (as they would from a local writer).
      hub.publish(await reader.runs.listEvents('r1'));
      expect(await iterator.next()).toMatchObject({ value: { seq: 2 } });
      expect(await nextOrPending(iterator.next())).toBe('pending');
      expect(subscription.stats.duplicatesSkipped).toBe(2);
      subscription.close();
    });
  });

  describe('for a run this process executes', () => {
    it('never polls: its events arrive through the hub', async () => {
      const fence = await seedRun('r1');
      local.add('r1');
      const subscription = hub.subscribe({ runId: 'r1' });
      const iterator = subscription[Symbol.asyncIterator]();
      const next = iterator.next();
      expect(await nextOrPending(next)).toBe('pending');
      await clock.advance(POLL_MS * 5);
      expect(await nextOrPending(next)).toBe('pending');
      const written = await writer.runs.appendEvents('r1', [output('a')], fence);
      hub.publish(written);
      expect(await next).toMatchObject({ value: { seq: 1 } });
      expect(subscription.stats.storePolls).toBe(0);
      subscription.close();
    });

    it('is polled again once it is no longer local (taken over by another process)', async () => {
      const fence = await seedRun('r1');
      local.add('r1');
      const subscription = hub.subscribe({ runId: 'r1' });
      const iterator = subscription[Symbol.asyncIterator]();
      const next = iterator.next();
      expect(await nextOrPending(next)).toBe('pending');
      await clock.advance(POLL_MS);
      local.delete('r1');
      await writerHub.append('r1', [output('a')], fence);
      await clock.advance(POLL_MS);
      expect(await next).toMatchObject({ value: { seq: 1 } });
      subscription.close();
    });
  });

  describe('for a work order', () => {
    it('delivers status changes any process writes', async () => {
      await writer.workOrders.create({ id: 'wo-1', source: 'task_spec', spec: { prompt: 'p' } });
      const subscription = hub.subscribe({ workOrderId: 'wo-1' });
      const iterator = subscription[Symbol.asyncIterator]();
      expect(await iterator.next()).toMatchObject({ value: { seq: 1, type: 'work_order_created' } });
      const next = iterator.next();
      await writer.workOrders.setStatus('wo-1', 'running', { runId: 'r9' });
      expect(await nextOrPending(next)).toBe('pending');
      await clock.advance(POLL_MS);
      expect(await next).toMatchObject({ value: { seq: 2, type: 'work_order_updated', data: { status: 'running', runId: 'r9' } } });
      subscription.close();
    });
  });

  describe('without followStore', () => {
    it('sets no timer and reads nothing while live (one process per store)', async () => {
      const fence = await seedRun('r1');
      const plain = new EventHub({ runs: reader.runs, workOrders: reader.workOrders });
      const subscription = plain.subscribe({ runId: 'r1' });
      const next = subscription[Symbol.asyncIterator]().next();
      await writerHub.append('r1', [output('a')], fence);
      expect(await nextOrPending(next)).toBe('pending');
      expect(clock.pending()).toBe(0);
      subscription.close();
      plain.close();
    });
  });
});
