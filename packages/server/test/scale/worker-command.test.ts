/**
 * `agentgate worker` in-process (cli/worker-command.ts, with its signal seams): flag validation, claiming
 * work another process submitted, and the drain on stop.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { workerCommand, type WorkerFlags } from '../../src/cli/worker-command.js';
import type { CliIo } from '../../src/cli/run-command.js';
import { HANDED_BACK_REASON } from '../../src/execution/work-order-service.js';
import type { Runtime } from '../../src/runtime.js';
import { QUEUE_AGENTS, queueFixture, queueSpec } from '../queue/helpers.js';
import { agentStarted, sqliteSharedStore, startNode, waitForWorkOrders } from './helpers.js';

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn();
});

function io(home: string): CliIo & { err: () => string } {
  let err = '';
  return {
    stdout: { write: () => true },
    stderr: {
      write: (chunk: string) => {
        err += chunk;
        return true;
      },
    },
    env: { ...process.env, AGENTGATE_HOME: home, AGENTGATE_LOG_LEVEL: 'silent' },
    cwd: process.cwd(),
    err: () => err,
  };
}

/** Runs the worker until `stop` is resolved; `ready` resolves with its runtime. */
function startWorkerCommand(flags: WorkerFlags, cliIo: CliIo): { ready: Promise<Runtime>; stop: () => void; exit: Promise<number> } {
  let stop: (signal: string) => void = () => undefined;
  const stopped = new Promise<string>((resolve) => {
    stop = resolve;
  });
  let ready: (runtime: Runtime) => void = () => undefined;
  const isReady = new Promise<Runtime>((resolve) => {
    ready = resolve;
  });
  const exit = workerCommand(flags, cliIo, { stop: stopped, force: () => new Promise<never>(() => undefined), onReady: ready });
  return { ready: isReady, stop: () => stop('SIGTERM'), exit };
}

describe('agentgate worker', () => {
  it('exits 2 naming a bad flag, before opening the store', async () => {
    const root = mkdtempSync(join(tmpdir(), 'agentgate-worker-'));
    cleanups.push(() => rmSync(root, { recursive: true, force: true }));
    for (const [flags, named] of [
      [{ drainTimeout: 'soon' }, '--drain-timeout'],
      [{ pollInterval: '1ms' }, '--poll-interval: must be at least'],
      [{ onDrainTimeout: 'keep' }, '--on-drain-timeout'],
      [{ maxConcurrent: 'two' }, '--max-concurrent'],
    ] as const) {
      const cliIo = io(join(root, 'home'));
      expect(await workerCommand(flags, cliIo, { stop: new Promise<string>(() => undefined) })).toBe(2);
      expect(cliIo.err()).toContain(named);
    }
  });

  it('runs work orders submitted through another process, then drains and hands back on stop', { timeout: 180_000 }, async () => {
    const fixture = queueFixture(cleanups);
    const root = mkdtempSync(join(tmpdir(), 'agentgate-worker-'));
    cleanups.push(() => rmSync(root, { recursive: true, force: true }));
    const store = await sqliteSharedStore(root);
    const api = await startNode(store, 'api', { role: 'api' }, cleanups);
    const cliIo = io(store.node('worker').home);
    const worker = startWorkerCommand({ pollInterval: '50ms', drainTimeout: '0s', maxConcurrent: '1' }, cliIo);
    const runtime = await worker.ready;
    expect(cliIo.err()).toContain('up to 1 runs at once');

    const done = await api.queue.submit({ spec: queueSpec(fixture, fixture.agent('pass', QUEUE_AGENTS.pass)), source: 'task_spec', request: null });
    expect((await waitForWorkOrders([api, runtime], [done.id]))[0]?.status).toBe('succeeded');

    const agentRunning = agentStarted(runtime);
    const slow = await api.queue.submit({ spec: queueSpec(fixture, fixture.agent('slow', 'echo agent-started\nsleep 300')), source: 'task_spec', request: null });
    await agentRunning;
    const handedBack = waitForWorkOrders([api, runtime], [slow.id], ['queued']);
    worker.stop();
    expect(await worker.exit).toBe(0);
    expect(cliIo.err()).toContain('SIGTERM: draining');
    expect(cliIo.err()).toContain('stopped');
    await handedBack;
    const last = (await api.repos.workOrders.listEvents(slow.id)).at(-1);
    expect(last?.data).toMatchObject({ status: 'queued', reason: HANDED_BACK_REASON });
  });
});
