/**
 * The local topology on one SQLite store, as real processes (docs/deployment.md: a SQLite store can be
 * shared by several processes on one machine): `agentgate serve --no-worker` and `agentgate worker` on
 * the same `$AGENTGATE_HOME`, no `AGENTGATE_DATABASE_URL`.
 *
 * The worker must stay up until it is told to stop. Nothing it waits on holds Node's event loop (its
 * timers are unref'd, signal listeners are no handles, SQLite opens no socket); it once exited 0 about
 * half a second after "worker started". Here a TaskSpec is submitted to the API node only seconds after
 * the worker is ready, and the worker must run it; on SIGTERM during a second run it must drain, hand
 * that work order back to the queue and exit 0.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { api, startAgentGate, type AgentGateProcess } from '../helpers/agentgate-process.js';
import { commandTaskDocument } from '../helpers/tasks.js';
import { AGENTS, makeRepo, writeAgent } from '../helpers/git-repo.js';

const POLL = '100ms';
/** Well past the ~0.5 s after "worker started" at which the worker used to exit on SQLite. */
const IDLE_MS = 3_000;

type Proc = AgentGateProcess;

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn();
});

/** Starts `agentgate <args>` on `home` (SQLite: no database URL) and resolves once stderr matches `ready`. */
async function start(name: string, args: string[], home: string, ready: RegExp): Promise<Proc> {
  const proc = await startAgentGate(name, args, { AGENTGATE_HOME: home, AGENTGATE_DATABASE_URL: undefined, AGENTGATE_LOG_LEVEL: 'warn', WORKER_NAME: name }, ready, 60_000);
  cleanups.push(async () => {
    if (proc.child.exitCode === null && proc.child.signalCode === null) {
      proc.child.kill('SIGKILL');
      await proc.exited;
    }
  });
  return proc;
}

/** Resolves after `ms`, or rejects as soon as one of `procs` exits (none was told to). */
function stayUp(procs: readonly Proc[], ms: number): Promise<void> {
  const since = Date.now();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    for (const proc of procs) {
      void proc.exited.then((code) => {
        clearTimeout(timer);
        reject(new Error(`${proc.name} exited with ${String(code)} ${Date.now() - since} ms after it was ready, without being told to stop:\n${proc.stderr()}`));
      });
    }
  });
}

/** Polls until `done` holds, failing at once if the worker exits meanwhile (the condition is what is tested). */
async function until<T>(what: string, worker: Proc, read: () => Promise<T>, done: (value: T) => boolean): Promise<T> {
  let exited: number | string | null | undefined;
  void worker.exited.then((code) => {
    exited = code;
  });
  for (;;) {
    const value = await read();
    if (done(value)) return value;
    if (exited !== undefined) throw new Error(`worker exited with ${String(exited)} while waiting for ${what}:\n${worker.stderr()}\nlast: ${JSON.stringify(value).slice(0, 2000)}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

async function submit(node: Proc, spec: Record<string, unknown>): Promise<string> {
  const reply = await api(node, 'POST', '/api/v1/tasks', spec);
  expect(reply.status, JSON.stringify(reply.data)).toBe(201);
  return String(reply.data['id']);
}

interface Detail {
  status: string;
  runs: Array<{ id: string; state: string }>;
}

const detailOf = async (node: Proc, id: string): Promise<Detail> => (await api(node, 'GET', `/api/v1/work-orders/${id}`)).data as unknown as Detail;
const eventsText = async (node: Proc, runId: string | undefined): Promise<string> =>
  runId === undefined ? '' : JSON.stringify((await api(node, 'GET', `/api/v1/runs/${runId}/events`)).data);

describe('SQLite: agentgate serve --no-worker and agentgate worker on one $AGENTGATE_HOME', () => {
  it('the worker stays up until SIGTERM, runs a TaskSpec submitted to the API node, then drains, hands back and exits 0', { timeout: 180_000 }, async () => {
    const repo = makeRepo({ 'verify.yaml': 'version: "1"\ntests:\n  - { name: ok, command: "true" }\n' });
    cleanups.push(repo.cleanup);
    const home = mkdtempSync(join(tmpdir(), 'agentgate-sqlite-home-'));
    cleanups.push(() => rmSync(home, { recursive: true, force: true }));
    const tagged = writeAgent(repo.root, 'tagged', `echo "worker=$WORKER_NAME"\n${AGENTS.correct}`);
    const slow = writeAgent(repo.root, 'slow', 'echo agent-started\nsleep 300');

    const node = await start('api', ['serve', '--no-worker', '--port', '0', '--poll-interval', POLL], home, /listening on (http:\/\/127\.0\.0\.1:\d+)/);
    const worker = await start('worker', ['worker', '--max-concurrent', '1', '--poll-interval', POLL, '--drain-timeout', '1s'], home, /AgentGate worker \S+: up to 1 runs/);
    expect(worker.stderr()).toContain(`sqlite:${join(home, 'agentgate.db')}`);

    // Both idle: nothing holds the worker's event loop but the worker itself.
    await stayUp([node, worker], IDLE_MS);

    // The API node never executes; the worker (still up) claims and runs the work order.
    const done = await submit(node, commandTaskDocument(repo.repo, `sh ${tagged}`, { limits: { maxIterations: 1 }, name: 'sqlite-worker' }));
    const finished = await until('the work order to finish', worker, () => detailOf(node, done), (d) => ['succeeded', 'failed', 'canceled'].includes(d.status));
    expect(finished.status, JSON.stringify(finished).slice(0, 2000)).toBe('succeeded');
    expect(finished.runs).toHaveLength(1);
    const output = await eventsText(node, finished.runs[0]?.id);
    expect(output).toContain('worker=worker');
    expect(output).not.toContain('worker=api');

    // SIGTERM while a run is in flight: the worker drains (1 s), hands the work order back and exits 0.
    const held = await submit(node, commandTaskDocument(repo.repo, `sh ${slow}`, { limits: { maxIterations: 1 }, name: 'sqlite-drain' }));
    await until('the slow agent to start', worker, async () => eventsText(node, (await detailOf(node, held)).runs[0]?.id), (text) => text.includes('agent-started'));
    worker.child.kill('SIGTERM');
    expect(await worker.exited).toBe(0);
    expect(worker.stderr()).toContain('SIGTERM: draining (no new work; running runs get 1s to finish, then are handed back to the queue)');
    expect(worker.stderr()).toMatch(/stopped\n$/);
    const handedBack = await detailOf(node, held);
    expect(handedBack.status).toBe('queued');
    expect(handedBack.runs.map((run) => run.state)).toEqual(['canceled']);

    node.child.kill('SIGTERM');
    expect(await node.exited).toBe(0);
    expect(node.stderr()).toMatch(/stopped\n$/);
  });
});
