import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { AgentGateError } from '../../src/errors.js';
import { git } from '../helpers/git-repo.js';
import { CLOSING_TYPES, nextRunEvent, QUEUE_AGENTS, queueFixture, queueRuntime, queueSpec, submit, waitForWorkOrders } from './helpers.js';

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn();
});

async function expectCode(promise: Promise<unknown>, code: string): Promise<void> {
  await expect(promise).rejects.toSatisfy((error: unknown) => error instanceof AgentGateError && error.code === code);
}

describe('DurableWorkOrderQueue', () => {
  describe('when 100 work orders are submitted at once with concurrency 4', () => {
    it('runs every one to its correct terminal state and never more than 4 at a time', { timeout: 300_000 }, async () => {
      const fixture = queueFixture(cleanups);
      const runtime = await queueRuntime(fixture, cleanups, { maxConcurrent: 4 });
      const pass = queueSpec(fixture, fixture.agent('pass', QUEUE_AGENTS.pass));
      const fail = queueSpec(fixture, fixture.agent('fail', QUEUE_AGENTS.fail));
      let running = 0;
      let maxRunning = 0;
      let maxSnapshotRunning = 0;
      runtime.hub.on((event) => {
        if (event.type === 'run_started') running += 1;
        else if (CLOSING_TYPES.includes(event.type)) running -= 1;
        maxRunning = Math.max(maxRunning, running);
        if (event.type === 'run_started') void runtime.queue.snapshot().then((s) => (maxSnapshotRunning = Math.max(maxSnapshotRunning, s.running)));
      });
      runtime.queue.start();
      const submitted = await Promise.all(Array.from({ length: 100 }, (_, i) => submit(runtime, i % 3 === 2 ? fail : pass)));
      expect(submitted.every((w) => w.status === 'queued')).toBe(true);
      const finished = await waitForWorkOrders(
        runtime,
        submitted.map((w) => w.id),
      );
      const expected = submitted.map((_, i) => (i % 3 === 2 ? 'failed' : 'succeeded'));
      expect(finished.map((w) => w.status)).toEqual(expected);
      expect(maxRunning).toBeLessThanOrEqual(4);
      expect(maxRunning).toBeGreaterThanOrEqual(2);
      expect(maxSnapshotRunning).toBeLessThanOrEqual(4);
      // One run per work order, each closed; the work order went queued → running → final.
      const runs = await runtime.repos.runs.list({ limit: 200, offset: 0 });
      expect(runs.total).toBe(100);
      for (const workOrder of finished.slice(0, 5)) {
        const statuses = (await runtime.repos.workOrders.listEvents(workOrder.id)).map((e) => e.data['status']);
        expect(statuses).toEqual(['queued', 'running', workOrder.status]);
      }
      expect(await runtime.queue.snapshot()).toEqual({ depth: 0, running: 0, maxConcurrent: 4, entries: [] });
    });
  });

  describe('ordering and positions', () => {
    it('starts queued work orders oldest first, and reports positions while they wait', { timeout: 120_000 }, async () => {
      const fixture = queueFixture(cleanups);
      const runtime = await queueRuntime(fixture, cleanups, { maxConcurrent: 1 });
      const spec = queueSpec(fixture, fixture.agent('pass', QUEUE_AGENTS.pass));
      // Submitted before start(): nothing runs yet, so positions are stable.
      const ids: string[] = [];
      for (let i = 0; i < 5; i += 1) ids.push((await submit(runtime, spec)).id);
      expect(await Promise.all(ids.map((id) => runtime.queue.position(id)))).toEqual([1, 2, 3, 4, 5]);
      const snapshot = await runtime.queue.snapshot();
      expect(snapshot).toMatchObject({ depth: 5, running: 0, maxConcurrent: 1 });
      expect(snapshot.entries.map((e) => [e.workOrderId, e.position])).toEqual(ids.map((id, i) => [id, i + 1]));
      // Canceling the second closes the gap.
      await runtime.queue.cancel(ids[1] ?? '');
      expect(await Promise.all(ids.map((id) => runtime.queue.position(id)))).toEqual([1, null, 2, 3, 4]);

      const startedOrder: string[] = [];
      runtime.hub.on((event) => {
        if (event.type === 'run_started') startedOrder.push(event.workOrderId);
      });
      runtime.queue.start();
      const remaining = ids.filter((_, i) => i !== 1);
      await waitForWorkOrders(runtime, remaining);
      expect(startedOrder).toEqual(remaining);
      expect(await runtime.queue.position(ids[0] ?? '')).toBeNull();
    });
  });

  describe('submit', () => {
    it('refuses what the engine would refuse, before storing anything', async () => {
      const fixture = queueFixture(cleanups);
      const runtime = await queueRuntime(fixture, cleanups, { baseEnv: { ...process.env, AGENTGATE_BWRAP: '/nonexistent/bwrap' } });
      const spec = queueSpec(fixture, fixture.agent('pass', QUEUE_AGENTS.pass));
      // A push without a remote: the delivery refuses it.
      await expectCode(submit(runtime, { ...spec, delivery: { ...spec.delivery, push: true } }), 'AG_ERR_DELIVERY_UNSUPPORTED');
      // bubblewrap required but unusable on this host.
      await expectCode(submit(runtime, { ...spec, sandbox: { mode: 'bwrap', network: true } }), 'AG_ERR_CONFIG_INVALID');
      // The command agent without a command.
      await expectCode(submit(runtime, { ...spec, agent: { ...spec.agent, command: '  ' } }), 'AG_ERR_CONFIG_INVALID');
      expect((await runtime.repos.workOrders.list({ limit: 10, offset: 0 })).total).toBe(0);
    });

    it('runs with agent.env values it kept in memory; a run from the store has none', { timeout: 120_000 }, async () => {
      const fixture = queueFixture(cleanups);
      const runtime = await queueRuntime(fixture, cleanups);
      const secret = 'sk-queue-sentinel-0123456789';
      const agent = fixture.agent('env', `printf '%s' "\${QUEUE_SECRET:-absent}" | sha256sum | cut -d' ' -f1 > key.sha256`);
      const base = queueSpec(fixture, agent);
      runtime.queue.start();
      const workOrder = await submit(runtime, { ...base, agent: { ...base.agent, env: { QUEUE_SECRET: secret } } });
      await waitForWorkOrders(runtime, [workOrder.id]);
      const hash = (value: string): string => createHash('sha256').update(value).digest('hex');
      const firstRun = (await runtime.repos.runs.list({ workOrderId: workOrder.id, limit: 1, offset: 0 })).items[0];
      expect(firstRun?.state).toBe('succeeded');
      expect(git(fixture.repo, 'show', `${firstRun?.branch ?? ''}:key.sha256`)).toBe(hash(secret));
      expect(JSON.stringify(await runtime.repos.workOrders.get(workOrder.id))).not.toContain(secret);

      await runtime.queue.runAgain(workOrder.id);
      await waitForWorkOrders(runtime, [workOrder.id]);
      const secondRun = (await runtime.repos.runs.list({ workOrderId: workOrder.id, limit: 1, offset: 0 })).items[0];
      expect(secondRun?.id).not.toBe(firstRun?.id);
      // Neither the secret nor the "[REDACTED]" placeholder reaches the agent.
      expect(git(fixture.repo, 'show', `${secondRun?.branch ?? ''}:key.sha256`)).toBe(hash('absent'));
    });
  });

  describe('cancel', () => {
    it('cancels a queued work order without a run', async () => {
      const fixture = queueFixture(cleanups);
      const runtime = await queueRuntime(fixture, cleanups);
      const workOrder = await submit(runtime, queueSpec(fixture, fixture.agent('pass', QUEUE_AGENTS.pass)));
      const canceled = await runtime.queue.cancel(workOrder.id, 'not needed');
      expect(canceled.status).toBe('canceled');
      expect((await runtime.repos.workOrders.listEvents(workOrder.id)).map((e) => [e.type, e.data])).toEqual([
        ['work_order_created', { status: 'queued' }],
        ['work_order_updated', { status: 'canceled', reason: 'not needed' }],
      ]);
      runtime.queue.start();
      expect((await runtime.repos.runs.list({ workOrderId: workOrder.id, limit: 10, offset: 0 })).total).toBe(0);
      expect(await runtime.queue.snapshot()).toMatchObject({ depth: 0, running: 0 });
    });

    it('cancels a running work order through its run, and refuses a finished one with 409', { timeout: 120_000 }, async () => {
      const fixture = queueFixture(cleanups);
      const runtime = await queueRuntime(fixture, cleanups);
      const workOrder = await submit(runtime, queueSpec(fixture, fixture.agent('slow', 'echo agent-started\nsleep 300')));
      const started = nextRunEvent(runtime, (e) => e.workOrderId === workOrder.id && e.type === 'agent_output' && JSON.stringify(e.data).includes('agent-started'));
      runtime.queue.start();
      await started;
      expect(await runtime.queue.snapshot()).toMatchObject({ running: 1, depth: 0 });
      const canceled = await runtime.queue.cancel(workOrder.id, 'changed my mind');
      expect(canceled.status).toBe('canceled');
      const run = (await runtime.repos.runs.list({ workOrderId: workOrder.id, limit: 1, offset: 0 })).items[0];
      expect(run).toMatchObject({ state: 'canceled', result: 'canceled' });
      expect(run?.error?.message).toContain('changed my mind');
      await expectCode(runtime.queue.cancel(workOrder.id), 'AG_ERR_API_CONFLICT');
      await expectCode(runtime.queue.cancel('no-such-work-order'), 'AG_ERR_WORK_ORDER_NOT_FOUND');
    });
  });

  describe('run again', () => {
    it('queues another run of a finished work order, and refuses while it is queued or running', { timeout: 120_000 }, async () => {
      const fixture = queueFixture(cleanups);
      const runtime = await queueRuntime(fixture, cleanups);
      const workOrder = await submit(runtime, queueSpec(fixture, fixture.agent('pass', QUEUE_AGENTS.pass)));
      await expectCode(runtime.queue.runAgain(workOrder.id), 'AG_ERR_API_CONFLICT');
      runtime.queue.start();
      await waitForWorkOrders(runtime, [workOrder.id]);
      const again = await runtime.queue.runAgain(workOrder.id);
      expect(again.status).toBe('queued');
      await waitForWorkOrders(runtime, [workOrder.id]);
      expect((await runtime.repos.workOrders.get(workOrder.id))?.status).toBe('succeeded');
      const runs = await runtime.repos.runs.list({ workOrderId: workOrder.id, limit: 10, offset: 0 });
      expect(runs.items.map((r) => r.state)).toEqual(['succeeded', 'succeeded']);
      const statuses = (await runtime.repos.workOrders.listEvents(workOrder.id)).map((e) => [e.data['status'], e.data['reason']]);
      expect(statuses).toEqual([
        ['queued', undefined],
        ['running', undefined],
        ['succeeded', undefined],
        ['queued', 'run_again'],
        ['running', undefined],
        ['succeeded', undefined],
      ]);
      await expectCode(runtime.queue.runAgain('no-such-work-order'), 'AG_ERR_WORK_ORDER_NOT_FOUND');
    });
  });

  describe('graceful shutdown', () => {
    it('lets running runs finish within the drain deadline, leaving queued ones queued', { timeout: 120_000 }, async () => {
      const fixture = queueFixture(cleanups);
      const runtime = await queueRuntime(fixture, cleanups, { maxConcurrent: 1 });
      const gate = `${fixture.root}/go`;
      const first = await submit(runtime, queueSpec(fixture, fixture.agent('wait', `echo agent-started\nwhile [ ! -e ${gate} ]; do sleep 0.05; done\necho x > out.txt`)));
      const second = await submit(runtime, queueSpec(fixture, fixture.agent('pass', QUEUE_AGENTS.pass)));
      const started = nextRunEvent(runtime, (e) => e.type === 'agent_output' && JSON.stringify(e.data).includes('agent-started'));
      runtime.queue.start();
      await started;
      const closing = runtime.queue.close({ drainMs: 600_000 });
      writeFileSync(gate, 'go');
      await closing;
      expect((await runtime.repos.workOrders.get(first.id))?.status).toBe('succeeded');
      expect((await runtime.repos.workOrders.get(second.id))?.status).toBe('queued');
      // Closed: nothing more starts, even when asked.
      await runtime.queue.runAgain(first.id);
      expect((await runtime.repos.workOrders.get(first.id))?.status).toBe('queued');
      expect((await runtime.repos.runs.list({ limit: 10, offset: 0 })).total).toBe(1);
    });

    it('cancels the runs still running at the deadline with the reason, and waits for them', { timeout: 120_000 }, async () => {
      const fixture = queueFixture(cleanups);
      const runtime = await queueRuntime(fixture, cleanups, { maxConcurrent: 2 });
      const slow = queueSpec(fixture, fixture.agent('slow', 'echo agent-started\nsleep 300'));
      const a = await submit(runtime, slow);
      const b = await submit(runtime, slow);
      const c = await submit(runtime, slow);
      let agents = 0;
      const bothStarted = new Promise<void>((resolve) => {
        runtime.hub.on((e) => {
          if (e.type === 'agent_output' && JSON.stringify(e.data).includes('agent-started') && ++agents === 2) resolve();
        });
      });
      runtime.queue.start();
      await bothStarted;
      await runtime.queue.close({ drainMs: 50, cancelReason: 'server shutting down' });
      for (const id of [a.id, b.id]) {
        const run = (await runtime.repos.runs.list({ workOrderId: id, limit: 1, offset: 0 })).items[0];
        expect(run).toMatchObject({ state: 'canceled' });
        expect(run?.error?.message).toContain('server shutting down');
      }
      expect((await runtime.repos.workOrders.get(c.id))?.status).toBe('queued');
      expect(runtime.engine.activeCount()).toBe(0);
      // close() is idempotent.
      await runtime.queue.close();
    });
  });

  describe('validation of its options', () => {
    it('refuses a concurrency below 1', async () => {
      const fixture = queueFixture(cleanups);
      await expect(queueRuntime(fixture, cleanups, { maxConcurrent: 0 })).rejects.toSatisfy((e: unknown) => e instanceof AgentGateError && e.code === 'AG_ERR_CONFIG_INVALID');
    });
  });
});
