import { spawn, spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { storableSpec } from '../../src/execution/engine.js';
import { isOwnerGone, parseLeaseOwner, runLeaseKey } from '../../src/execution/reconcile.js';
import { createRun } from '../../src/orchestrator/state-machine.js';
import type { Runtime } from '../../src/runtime.js';
import { ManualClock } from '../../src/util/clock.js';
import { findTaggedProcesses } from '../../src/util/reap.js';
import { RUN_PROCESS_TAG_ENV } from '../../src/util/run-scope.js';
import { REPO_ROOT } from '../helpers/git-repo.js';
import { QUEUE_AGENTS, queueFixture, queueRuntime, queueSpec, submit, waitForWorkOrders, type QueueFixture } from './helpers.js';

const TSX_LOADER = pathToFileURL(join(REPO_ROOT, 'node_modules', 'tsx', 'dist', 'loader.mjs')).href;
const CHILD = join(REPO_ROOT, 'packages', 'server', 'test', 'queue', 'fixtures', 'queue-child.ts');

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn();
});

/** Lets I/O callbacks started by a timer (a process sweep) complete: one turn of the event loop, not a sleep. */
function settle(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** The pid of a process that has exited (and was reaped): provably gone. */
function deadPid(): number {
  const child = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
  return Number(child.stdout);
}

function deadOwner(): string {
  return `${hostname()}:${deadPid()}:${randomUUID()}`;
}

/** A work order with one run in `building`, owned by `owner` with a live lease of `ttlMs`. */
async function seedOrphan(runtime: Runtime, fixture: QueueFixture, owner: string, ttlMs: number, now = Date.now()): Promise<{ workOrderId: string; runId: string }> {
  const workOrderId = randomUUID();
  const runId = randomUUID();
  const at = new Date(now).toISOString();
  const fence = { leaseKey: runLeaseKey(runId), owner };
  const spec = queueSpec(fixture, fixture.agent('pass', QUEUE_AGENTS.pass));
  await runtime.repos.runs.create({
    workOrder: { id: workOrderId, source: 'task_spec', spec: storableSpec(spec), createdAt: at },
    run: createRun({ id: runId, workOrderId, maxIterations: 1, createdAt: at }),
    lease: { key: fence.leaseKey, owner, ttlMs },
  });
  await runtime.repos.workOrders.setStatus(workOrderId, 'running', { runId });
  for (const event of ['workspace_acquired', 'build_started'] as const) await runtime.repos.runs.commit(runId, { event, fence });
  return { workOrderId, runId };
}

describe('crash recovery', () => {
  describe('lease owners', () => {
    it('parses <host>:<pid>:<uuid> owners and calls only a dead pid on this host gone', () => {
      expect(parseLeaseOwner('my:host:42:abc')).toEqual({ host: 'my:host', pid: 42 });
      expect(parseLeaseOwner('dead-process')).toBeNull();
      expect(isOwnerGone(deadOwner())).toBe(true);
      expect(isOwnerGone(`${hostname()}:${process.pid}:x`)).toBe(false);
      expect(isOwnerGone(`${hostname()}:${process.ppid}:x`)).toBe(false);
      expect(isOwnerGone(`another-host-${randomUUID()}:${deadPid()}:x`)).toBe(false);
      expect(isOwnerGone('dead-process')).toBe(false);
    });
  });

  describe('when the runtime restarts', () => {
    it('runs the work orders left queued by the previous runtime', { timeout: 120_000 }, async () => {
      const fixture = queueFixture(cleanups);
      const first = await queueRuntime(fixture, cleanups);
      const spec = queueSpec(fixture, fixture.agent('pass', QUEUE_AGENTS.pass));
      const ids = [(await submit(first, spec)).id, (await submit(first, spec)).id, (await submit(first, spec)).id];
      await first.close();
      const second = await queueRuntime(fixture, cleanups);
      expect((await second.queue.snapshot()).entries.map((e) => e.workOrderId)).toEqual(ids);
      second.queue.start();
      const finished = await waitForWorkOrders(second, ids);
      expect(finished.map((w) => w.status)).toEqual(['succeeded', 'succeeded', 'succeeded']);
    });

    it('re-queues the work order of a dead owner\'s run when configured, at once, and runs it again', { timeout: 120_000 }, async () => {
      const fixture = queueFixture(cleanups);
      const seeding = await queueRuntime(fixture, cleanups, { reconcile: false });
      // A 10-minute lease: only the dead-pid fast path can close this run now.
      const orphan = await seedOrphan(seeding, fixture, deadOwner(), 600_000);
      await seeding.close();
      const runtime = await queueRuntime(fixture, cleanups, { requeueInterrupted: true });
      expect(await runtime.repos.runs.get(orphan.runId)).toMatchObject({ state: 'failed', error: { code: 'AG_ERR_RUN_INTERRUPTED' } });
      expect((await runtime.repos.workOrders.get(orphan.workOrderId))?.status).toBe('queued');
      const last = (await runtime.repos.workOrders.listEvents(orphan.workOrderId)).at(-1);
      expect(last).toMatchObject({ type: 'work_order_updated', data: { status: 'queued', runId: orphan.runId, reason: 'interrupted' } });
      runtime.queue.start();
      await waitForWorkOrders(runtime, [orphan.workOrderId]);
      expect((await runtime.repos.workOrders.get(orphan.workOrderId))?.status).toBe('succeeded');
      const runs = await runtime.repos.runs.list({ workOrderId: orphan.workOrderId, limit: 10, offset: 0 });
      expect(runs.items.map((r) => r.state).sort()).toEqual(['failed', 'succeeded']);
    });
  });

  describe('periodically', () => {
    it('reconciles on a re-armed timer of the runtime clock once a lease expired', async () => {
      const fixture = queueFixture(cleanups);
      const clock = new ManualClock(Date.now());
      const runtime = await queueRuntime(fixture, cleanups, { clock, reconcileEveryMs: 30_000 });
      // Another host's process (no fast path): closed only after its lease expired and the stale period.
      const orphan = await seedOrphan(runtime, fixture, `elsewhere-${randomUUID()}:1:x`, 60_000, clock.now());
      runtime.queue.start();
      expect(clock.pending()).toBe(1);
      await clock.advance(30_000);
      await settle();
      expect((await runtime.repos.runs.get(orphan.runId))?.state).toBe('building');
      expect(clock.pending()).toBe(1);
      const closed = waitForWorkOrders(runtime, [orphan.workOrderId]);
      for (let i = 0; i < 4; i += 1) {
        await clock.advance(30_000);
        await settle();
      }
      await closed;
      await settle();
      expect(await runtime.repos.runs.get(orphan.runId)).toMatchObject({ state: 'failed', error: { code: 'AG_ERR_RUN_INTERRUPTED' } });
      const events = await runtime.repos.runs.listEvents(orphan.runId);
      expect(events.at(-1)).toMatchObject({ type: 'run_failed' });
      expect((await runtime.repos.workOrders.listEvents(orphan.workOrderId)).at(-1)).toMatchObject({ data: { status: 'failed', reason: 'interrupted' } });
      // One timer, re-armed after each tick; none once closed.
      expect(clock.pending()).toBe(1);
      await runtime.queue.close();
      expect(clock.pending()).toBe(0);
    });
  });

  describe('after kill -9 of the process running the queue', () => {
    it('ends the interrupted run terminal at once, runs the queued work orders, and keeps the database intact', { timeout: 180_000 }, async () => {
      const fixture = queueFixture(cleanups);
      const slow = queueSpec(fixture, fixture.agent('slow', 'echo agent-started\nsleep 300'));
      const pass = queueSpec(fixture, fixture.agent('pass', QUEUE_AGENTS.pass));
      const child = spawn(process.execPath, ['--import', TSX_LOADER, CHILD, JSON.stringify({ home: fixture.home, specs: [slow, pass, pass] })], {
        cwd: REPO_ROOT,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      const exited = new Promise<NodeJS.Signals | null>((resolve) => child.once('exit', (_code, signal) => resolve(signal)));
      cleanups.push(() => {
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      });
      let stderr = '';
      child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
      const milestones = new Promise<{ ids: string[]; runId: string }>((resolve, reject) => {
        let out = '';
        let ids: string[] = [];
        child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
          out += chunk;
          for (const line of out.split('\n').slice(0, -1)) {
            const parsed = JSON.parse(line) as { submitted?: string[]; agentStarted?: string };
            if (parsed.submitted !== undefined) ids = parsed.submitted;
            if (parsed.agentStarted !== undefined) resolve({ ids, runId: parsed.agentStarted });
          }
          out = out.slice(out.lastIndexOf('\n') + 1);
        });
        void exited.then(() => reject(new Error(`the child exited early: ${stderr}`)));
      });
      const { ids, runId } = await milestones;
      child.kill('SIGKILL');
      expect(await exited).toBe('SIGKILL');
      // Its agent runs in a process group of its own and outlived it.
      expect((await findTaggedProcesses(runId, RUN_PROCESS_TAG_ENV)).length).toBeGreaterThan(0);

      // Restart: the lease (60 s) is still live, but its owner's pid is gone from this host.
      const runtime = await queueRuntime(fixture, cleanups);
      const run = await runtime.repos.runs.get(runId);
      expect(run).toMatchObject({ state: 'failed', result: 'failed_error', error: { code: 'AG_ERR_RUN_INTERRUPTED' } });
      expect(run?.error?.message).toContain('its process no longer exists');
      expect((await runtime.repos.runs.listEvents(runId)).at(-1)).toMatchObject({ type: 'run_failed' });
      // The dead process's agent (its own process group, outliving the kill) was swept by its run tag.
      expect(await findTaggedProcesses(runId, RUN_PROCESS_TAG_ENV)).toEqual([]);
      const [interrupted, ...queued] = ids;
      expect((await runtime.repos.workOrders.get(interrupted ?? ''))?.status).toBe('failed');
      runtime.queue.start();
      const finished = await waitForWorkOrders(runtime, queued);
      expect(finished.map((w) => w.status)).toEqual(['succeeded', 'succeeded']);
      await runtime.close();

      const db = new Database(join(fixture.home, 'agentgate.db'), { readonly: true, fileMustExist: true });
      try {
        expect(db.pragma('integrity_check', { simple: true })).toBe('ok');
      } finally {
        db.close();
      }
    });
  });
});
