/**
 * The scale-out suite (issue 14): API nodes and workers as separate runtimes sharing one store. Written
 * against {@link MakeSharedStore} only, so every backend runs it unchanged: SQLite (one file, several
 * connections) in `sqlite-scale.test.ts`, PostgreSQL in `postgres-scale.test.ts`.
 *
 * Nothing here waits for a time: outcomes are awaited through the nodes' own events (every status change
 * is made by one of the nodes) and subscriptions; the poll period only decides how soon they come.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { cancelRequestKey, REMOTE_CANCEL_REASON } from '../../src/execution/cancel-requests.js';
import { DurableWorkOrderQueue } from '../../src/execution/work-order-queue.js';
import { HANDED_BACK_REASON } from '../../src/execution/work-order-service.js';
import { silentLogger } from '../../src/observability/logger.js';
import type { RunEventEnvelope } from '../../src/observability/events.js';
import type { Runtime } from '../../src/runtime.js';
import { isClosingEventType } from '../../src/store/repositories.js';
import { systemClock } from '../../src/util/clock.js';
import { QUEUE_AGENTS, queueFixture, queueSpec, type QueueFixture } from '../queue/helpers.js';
import { agentStarted, startNode, startWorker, TEST_POLL_MS, waitForWorkOrders, type MakeSharedStore, type SharedStore } from './helpers.js';

const TIMEOUT = 180_000;

export function describeScaleOut(name: string, makeStore: MakeSharedStore): void {
  describe(`Scale-out on one shared store: ${name}`, () => {
    const cleanups: Array<() => unknown> = [];
    afterEach(async () => {
      for (const fn of cleanups.splice(0).reverse()) await fn();
    });

    async function setUp(): Promise<{ fixture: QueueFixture; store: SharedStore }> {
      const fixture = queueFixture(cleanups);
      const root = mkdtempSync(join(tmpdir(), 'agentgate-scale-'));
      cleanups.push(() => rmSync(root, { recursive: true, force: true }));
      const store = await makeStore(root);
      cleanups.push(() => store.cleanup());
      return { fixture, store };
    }

    function submit(node: Runtime, fixture: QueueFixture, agent: string): Promise<{ id: string }> {
      return node.queue.submit({ spec: queueSpec(fixture, agent), source: 'task_spec', request: null });
    }

    describe('when two workers claim the work orders submitted through an API node', () => {
      it('runs each exactly once to its terminal state, never above a worker\'s capacity', { timeout: TIMEOUT }, async () => {
        const { fixture, store } = await setUp();
        const api = await startNode(store, 'api', { role: 'api' }, cleanups);
        const workers = [
          await startNode(store, 'w1', { role: 'worker', maxConcurrent: 2 }, cleanups),
          await startNode(store, 'w2', { role: 'worker', maxConcurrent: 2 }, cleanups),
        ];
        const started = new Map<string, number>();
        const peak = workers.map(() => 0);
        workers.forEach((worker, index) => {
          const sample = (): void => {
            peak[index] = Math.max(peak[index] ?? 0, worker.engine.activeCount(), worker.queue.running);
          };
          worker.hub.on((event) => {
            sample();
            if (event.type === 'run_started') started.set(event.workOrderId, (started.get(event.workOrderId) ?? 0) + 1);
          });
          worker.hub.onWorkOrder(sample);
        });
        const pass = fixture.agent('pass', QUEUE_AGENTS.pass);
        const fail = fixture.agent('fail', QUEUE_AGENTS.fail);
        const ids: string[] = [];
        for (let i = 0; i < 12; i += 1) ids.push((await submit(api, fixture, i % 4 === 3 ? fail : pass)).id);

        const finished = await waitForWorkOrders([api, ...workers], ids);
        expect(finished.map((w) => w.status)).toEqual(ids.map((_, i) => (i % 4 === 3 ? 'failed' : 'succeeded')));
        for (const id of ids) {
          expect(started.get(id)).toBe(1);
          const runs = await api.repos.runs.list({ workOrderId: id, limit: 10, offset: 0 });
          expect(runs.total).toBe(1);
          // queued → running (the claim, written once) → final.
          const statuses = (await api.repos.workOrders.listEvents(id)).map((e) => e.data['status']);
          expect(statuses).toEqual(['queued', 'running', runs.items[0]?.state]);
        }
        expect(Math.max(...peak)).toBeLessThanOrEqual(2);
        expect(api.engine.activeCount()).toBe(0);
        expect(await api.repos.runs.listNonTerminal()).toEqual([]);
      });
    });

    describe('when a subscriber on the API node follows a run a worker executes', () => {
      it('receives every event in order, with no gap and no duplicate, and replays after afterSeq', { timeout: TIMEOUT }, async () => {
        const { fixture, store } = await setUp();
        const api = await startNode(store, 'api', { role: 'api' }, cleanups);
        await startNode(store, 'w1', { role: 'worker' }, cleanups);
        const agent = fixture.agent('chatty', 'for i in 1 2 3 4 5 6; do echo "line $i"; done\necho x > out.txt');
        const workOrder = await submit(api, fixture, agent);

        // The work order's log is written by both nodes: created here, claimed and finished by the worker.
        let runId: string | undefined;
        for await (const event of api.hub.subscribe({ workOrderId: workOrder.id })) {
          if (event.type === 'work_order_updated' && event.data.status === 'running') {
            runId = event.data.runId;
            break;
          }
        }
        if (runId === undefined) throw new Error('the work order never named its run');

        const subscription = api.hub.subscribe({ runId });
        const seen: RunEventEnvelope[] = [];
        for await (const event of subscription) {
          seen.push(event);
          if (isClosingEventType(event.type)) break;
        }
        const stored = await api.repos.runs.listEvents(runId, { limit: 100_000 });
        expect(seen.map((e) => e.seq)).toEqual(stored.map((_, i) => i + 1));
        expect(seen.map((e) => e.type)).toEqual(stored.map((e) => e.type));
        expect(seen.at(-1)?.type).toBe('run_completed');
        // Delivered by following the store, not in-process: the API node never executed the run.
        expect(subscription.stats.storePolls).toBeGreaterThan(0);
        expect(api.engine.isActive(runId)).toBe(false);

        const replay: RunEventEnvelope[] = [];
        for await (const event of api.hub.subscribe({ runId, afterSeq: 3 })) {
          replay.push(event);
          if (isClosingEventType(event.type)) break;
        }
        expect(replay.map((e) => e.seq)).toEqual(stored.slice(3).map((e) => e.seq));
      });
    });

    describe('when the API node cancels a work order whose run a worker executes', () => {
      it('records the request, and the worker ends the run canceled within its poll period', { timeout: TIMEOUT }, async () => {
        const { fixture, store } = await setUp();
        const api = await startNode(store, 'api', { role: 'api' }, cleanups);
        const worker = await startNode(store, 'w1', { role: 'worker' }, cleanups);
        const agentRunning = agentStarted(worker);
        const workOrder = await submit(api, fixture, fixture.agent('slow', 'echo agent-started\nsleep 300'));
        const runId = await agentRunning;

        const answered = await api.queue.cancel(workOrder.id, 'canceled via the API');
        expect(answered.status).toBe('running');
        const [final] = await waitForWorkOrders([api, worker], [workOrder.id]);
        expect(final?.status).toBe('canceled');
        const run = await api.repos.runs.get(runId);
        expect(run).toMatchObject({ state: 'canceled', result: 'canceled' });
        const closing = (await api.repos.runs.listEvents(runId, { limit: 100_000 })).at(-1);
        expect(closing).toMatchObject({ type: 'run_canceled', data: { reason: REMOTE_CANCEL_REASON } });
        // The request was acted on and removed.
        expect(await api.repos.leases.get(cancelRequestKey(runId))).toBeNull();
      });
    });

    describe('when a worker drains past its deadline', () => {
      it('hands its run back to the queue, and another worker runs the work order', { timeout: TIMEOUT }, async () => {
        const { fixture, store } = await setUp();
        const api = await startNode(store, 'api', { role: 'api' }, cleanups);
        const first = await startNode(store, 'w1', { role: 'worker' }, cleanups);
        const marker = join(fixture.root, 'first-attempt');
        // The first attempt blocks (and is handed back); the second finishes.
        const agent = fixture.agent('once', `if [ -e ${marker} ]; then echo done > out.txt; else touch ${marker}; echo agent-started; sleep 300; fi`);
        const agentRunning = agentStarted(first);
        const workOrder = await submit(api, fixture, agent);
        const firstRun = await agentRunning;
        // A second worker joins once the first one holds the work order.
        const second = await startNode(store, 'w2', { role: 'worker', start: false }, cleanups);
        startWorker(second);

        await first.queue.close({ drainMs: TEST_POLL_MS, cancelReason: 'worker draining (SIGTERM)', handBack: true });
        const [final] = await waitForWorkOrders([api, first, second], [workOrder.id]);
        expect(final?.status).toBe('succeeded');
        const events = (await api.repos.workOrders.listEvents(workOrder.id)).map((e) => [e.data['status'], e.data['reason']]);
        expect(events).toEqual([
          ['queued', undefined],
          ['running', undefined],
          ['queued', HANDED_BACK_REASON],
          ['running', undefined],
          ['succeeded', undefined],
        ]);
        const runs = (await api.repos.runs.list({ workOrderId: workOrder.id, limit: 10, offset: 0 })).items;
        expect(runs.map((run) => [run.id === firstRun, run.state])).toEqual([
          [false, 'succeeded'],
          [true, 'canceled'],
        ]);
      });
    });

    describe('when work orders share an exclusive key (one repository and branch)', () => {
      it('runs them one at a time across workers, each exactly once', { timeout: TIMEOUT }, async () => {
        const { fixture, store } = await setUp();
        const api = await startNode(store, 'api', { role: 'api' }, cleanups);
        const workers = [
          await startNode(store, 'w1', { role: 'worker', start: false }, cleanups),
          await startNode(store, 'w2', { role: 'worker', start: false }, cleanups),
        ];
        let peakOpen = 0;
        for (const worker of workers) {
          const queue = new DurableWorkOrderQueue(
            { repos: worker.repos, engine: worker.engine, workOrders: worker.workOrders, clock: systemClock, logger: silentLogger(), reconcile: worker.reconcile },
            { maxConcurrent: 2, reconcileEveryMs: 0, exclusiveKey: async () => 'local:/the/repository#main' },
          );
          queue.start({ pollEveryMs: TEST_POLL_MS });
          cleanups.push(() => queue.close());
          worker.hub.on((event) => {
            if (event.type !== 'run_started') return;
            void worker.repos.runs.listNonTerminal().then((open) => (peakOpen = Math.max(peakOpen, open.length)));
          });
        }
        const pass = fixture.agent('pass', QUEUE_AGENTS.pass);
        const ids: string[] = [];
        for (let i = 0; i < 4; i += 1) ids.push((await submit(api, fixture, pass)).id);

        const finished = await waitForWorkOrders([api, ...workers], ids);
        expect(finished.map((w) => w.status)).toEqual(['succeeded', 'succeeded', 'succeeded', 'succeeded']);
        expect(peakOpen).toBe(1);
        for (const id of ids) expect((await api.repos.runs.list({ workOrderId: id, limit: 10, offset: 0 })).total).toBe(1);
      });
    });
  });
}
