/**
 * A scaled-out deployment as real processes (issue 14): one PostgreSQL started by the test, two
 * `agentgate serve --no-worker` API nodes and three `agentgate worker` processes, each with its own
 * `$AGENTGATE_HOME` (as on separate machines), all on one local repository they can reach.
 *
 * What the issue asks to show: every work order submitted through either API node runs exactly once and
 * no worker exceeds its capacity; a `kill -9`ed worker's run is reconciled by the others and its queued
 * work still runs; a SIGSTOPped worker resumed after its lease expired writes nothing; a WebSocket client
 * on node A follows, gap-free, a run executed by a worker attached to node B, across a reconnect to B;
 * and a PostgreSQL restart mid-run loses no transition.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { openPostgresRepositories } from '../../src/store/postgres/index.js';
import type { Repositories } from '../../src/store/repositories.js';
import type { StoredEvent, StoredRun } from '../../src/store/types.js';
import { AGENTS, git, makeRepo, writeAgent, type TempRepo } from '../helpers/git-repo.js';
import { api, startAgentGate, type AgentGateProcess } from '../helpers/agentgate-process.js';
import { commandTaskDocument } from '../helpers/tasks.js';
import { postgresAvailable, startPostgres, type TestPostgres } from '../helpers/postgres.js';
import { passingPath } from '../helpers/store-checks.js';

const CLOSING = new Set(['run_completed', 'run_failed', 'run_canceled']);
/** Short lease and reconcile period so a dead worker is noticed in seconds, not a minute. */
const LEASE_TTL_MS = 4_000;
const RECONCILE_MS = 1_000;
const POLL = '100ms';
const WORKER_CAPACITY = 2;

interface Proc extends AgentGateProcess {
  readonly home: string;
}

const procs: Proc[] = [];

/** Starts `agentgate <args>` with a home of its own and resolves once its stderr matches `ready`. */
async function start(name: string, args: string[], env: Record<string, string>, ready: RegExp): Promise<Proc> {
  const home = mkdtempSync(join(tmpdir(), `agentgate-${name}-`));
  const proc = await startAgentGate(
    name,
    args,
    {
      AGENTGATE_HOME: home,
      AGENTGATE_LEASE_TTL_MS: String(LEASE_TTL_MS),
      AGENTGATE_RECONCILE_INTERVAL_MS: String(RECONCILE_MS),
      AGENTGATE_LOG_LEVEL: 'warn',
      WORKER_NAME: name,
      ...env,
    },
    ready,
  );
  const started: Proc = { ...proc, home };
  procs.push(started);
  return started;
}

const apiNode = (name: string, databaseUrl: string): Promise<Proc> =>
  start(name, ['serve', '--no-worker', '--port', '0', '--poll-interval', POLL], { AGENTGATE_DATABASE_URL: databaseUrl }, /listening on (http:\/\/127\.0\.0\.1:\d+)/);
const worker = (name: string, databaseUrl: string, capacity = WORKER_CAPACITY): Promise<Proc> =>
  start(name, ['worker', '--max-concurrent', String(capacity), '--poll-interval', POLL, '--drain-timeout', '0'], { AGENTGATE_DATABASE_URL: databaseUrl }, /AgentGate worker \S+: up to/);

async function stopAll(): Promise<void> {
  for (const proc of procs.splice(0)) {
    if (proc.child.exitCode === null && proc.child.signalCode === null) {
      proc.child.kill('SIGCONT');
      proc.child.kill('SIGKILL');
      await proc.exited;
    }
    rmSync(proc.home, { recursive: true, force: true });
  }
}

async function submit(node: Proc, repo: TempRepo, command: string, name: string): Promise<string> {
  const reply = await api(node, 'POST', '/api/v1/tasks', commandTaskDocument(repo.repo, command, { limits: { maxIterations: 1 }, name }));
  expect(reply.status, JSON.stringify(reply.data)).toBe(201);
  return String(reply.data['id']);
}

/** Polls the store until `done` holds (generous limit; the condition is what is tested). */
async function until<T>(what: string, read: () => Promise<T>, done: (value: T) => boolean, limitMs = 300_000): Promise<T> {
  const deadline = Date.now() + limitMs;
  for (;;) {
    const value = await read();
    if (done(value)) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(value).slice(0, 2000)}`);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

async function runsOf(repos: Repositories, workOrderId: string): Promise<StoredRun[]> {
  return (await repos.runs.list({ workOrderId, limit: 100, offset: 0 })).items;
}

async function eventsOf(repos: Repositories, runId: string): Promise<StoredEvent[]> {
  return repos.runs.listEvents(runId, { limit: 100_000 });
}

/** The worker that executed a run, from its agent's `worker=<name>` line. */
function executedBy(events: readonly StoredEvent[]): string | undefined {
  for (const event of events) {
    if (event.type !== 'agent_output') continue;
    const match = /worker=(\S+)/.exec(String(event.data['text']));
    if (match?.[1] !== undefined) return match[1];
  }
  return undefined;
}

/** The largest number of intervals open at one instant. */
function maxOverlap(intervals: ReadonlyArray<readonly [number, number]>): number {
  const edges = intervals.flatMap(([from, to]) => [[from, 1] as const, [to, -1] as const]).sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  let open = 0;
  let max = 0;
  for (const [, delta] of edges) {
    open += delta;
    max = Math.max(max, open);
  }
  return max;
}

describe.skipIf(!postgresAvailable && process.env['CI'] !== 'true')('scale-out: PostgreSQL, two API nodes, three workers as processes', () => {
  let pg: TestPostgres;
  let repo: TempRepo;

  beforeAll(async () => {
    pg = await startPostgres();
    // A trivial gate: what is under test is the distribution of runs, not the calculator's test suite.
    repo = makeRepo({ 'verify.yaml': 'version: "1"\ntests:\n  - { name: ok, command: "true" }\n' });
  }, 120_000);

  afterEach(() => stopAll(), 60_000);

  afterAll(async () => {
    await stopAll();
    await pg?.stop();
    repo?.cleanup();
  }, 60_000);

  it('runs 100 work orders submitted through two API nodes exactly once each, and no worker exceeds its capacity', async () => {
    const url = await pg.createDatabase();
    const [a, b] = await Promise.all([apiNode('api-a', url), apiNode('api-b', url)]);
    await Promise.all([worker('w1', url), worker('w2', url), worker('w3', url)]);
    const agent = writeAgent(repo.root, 'tagged', `echo "worker=$WORKER_NAME"\n${AGENTS.correct}`);
    const ids: string[] = [];
    for (let i = 0; i < 100; i += 1) ids.push(await submit(i % 2 === 0 ? a : b, repo, `sh ${agent}`, `wo-${i}`));

    const repos = await openPostgresRepositories({ url });
    try {
      await until(
        '100 work orders to finish',
        async () => (await Promise.all(ids.map((id) => repos.workOrders.get(id)))).map((wo) => wo?.status),
        (statuses) => statuses.every((status) => status === 'succeeded' || status === 'failed' || status === 'canceled'),
      );
      const perWorker = new Map<string, Array<readonly [number, number]>>();
      const branches = new Set<string>();
      for (const id of ids) {
        expect((await repos.workOrders.get(id))?.status).toBe('succeeded');
        const runs = await runsOf(repos, id);
        expect(runs, `work order ${id}`).toHaveLength(1);
        const run = runs[0]!;
        expect(run.state).toBe('succeeded');
        const events = await eventsOf(repos, run.id);
        expect(events.map((e) => e.seq)).toEqual(events.map((_, i) => i + 1));
        expect(events.filter((e) => CLOSING.has(e.type))).toHaveLength(1);
        expect(CLOSING.has(events.at(-1)?.type ?? '')).toBe(true);
        const who = executedBy(events);
        expect(who, `the worker of run ${run.id}`).toMatch(/^w[123]$/);
        const leased = events.find((e) => e.type === 'run_state_changed' && e.data['to'] === 'leased');
        const closed = events.at(-1);
        const interval = [Date.parse(leased?.timestamp ?? ''), Date.parse(closed?.timestamp ?? '')] as const;
        perWorker.set(who ?? '?', [...(perWorker.get(who ?? '?') ?? []), interval]);
        branches.add(run.branch ?? '');
      }
      expect(branches.size).toBe(100);
      const inRepo = git(repo.repo, 'for-each-ref', '--format=%(refname:short)', 'refs/heads/agentgate/').split('\n').filter((b) => b !== '');
      expect(new Set(inRepo)).toEqual(branches);
      for (const [name, intervals] of perWorker) {
        expect(maxOverlap(intervals), `runs at once in ${name}`).toBeLessThanOrEqual(WORKER_CAPACITY);
      }
      console.log(`scale-out: runs per worker ${[...perWorker].map(([name, runs]) => `${name}=${runs.length}`).join(', ')}`);
      expect(perWorker.size).toBeGreaterThan(1);
    } finally {
      await repos.close();
    }
  }, 600_000);

  it('a kill -9ed worker’s run is reconciled by the others and its queued work still runs; a SIGSTOPped worker resumed after expiry writes nothing', async () => {
    const url = await pg.createDatabase();
    const node = await apiNode('api', url);
    const victim = await worker('victim', url, 1);
    const sleeper = writeAgent(repo.root, 'sleeper', `echo "worker=$WORKER_NAME"\nsleep 600`);
    const first = await submit(node, repo, `sh ${sleeper}`, 'long');
    const repos = await openPostgresRepositories({ url });
    try {
      const [run] = await until('the victim to start the long run', () => runsOf(repos, first), (runs) => runs.length === 1 && runs[0]?.state === 'building');
      const agent = writeAgent(repo.root, 'quick', `echo "worker=$WORKER_NAME"\n${AGENTS.correct}`);
      const queued = await submit(node, repo, `sh ${agent}`, 'queued-behind');
      victim.child.kill('SIGKILL');
      await victim.exited;
      const rescuer = await worker('rescuer', url);
      const killed = await until('the killed worker’s run to be reconciled', () => repos.runs.get(run!.id), (r) => r?.state === 'failed');
      expect(killed?.error?.code).toBe('AG_ERR_RUN_INTERRUPTED');
      await until('the queued work order to run', async () => (await repos.workOrders.get(queued))?.status, (status) => status === 'succeeded');
      const [queuedRun] = await runsOf(repos, queued);
      expect(executedBy(await eventsOf(repos, queuedRun!.id))).toBe('rescuer');

      // SIGSTOP: the stopped worker's lease expires, another node fails its run; resumed, it writes nothing.
      const paused = await worker('paused', url, 1);
      rescuer.child.kill('SIGTERM');
      await rescuer.exited;
      const second = await submit(node, repo, `sh ${sleeper}`, 'paused-run');
      const [pausedRun] = await until('the paused worker to start its run', () => runsOf(repos, second), (runs) => runs.length === 1 && runs[0]?.state === 'building');
      paused.child.kill('SIGSTOP');
      const watcher = await worker('watcher', url);
      const taken = await until('the stopped worker’s run to be reconciled', () => repos.runs.get(pausedRun!.id), (r) => r?.state === 'failed');
      const before = await eventsOf(repos, pausedRun!.id);
      paused.child.kill('SIGCONT');
      // Give the resumed worker several heartbeats and poll periods to try to write.
      await new Promise((resolve) => setTimeout(resolve, LEASE_TTL_MS));
      const after = await eventsOf(repos, pausedRun!.id);
      expect(after).toEqual(before);
      expect((await repos.runs.get(pausedRun!.id))?.version).toBe(taken?.version);
      expect(watcher.child.exitCode).toBeNull();
    } finally {
      await repos.close();
    }
  }, 600_000);

  it('a WebSocket client on API node A follows a run executed by a worker attached to node B, gap-free, across a reconnect to node B', async () => {
    const url = await pg.createDatabase();
    const [a, b] = await Promise.all([apiNode('api-a', url), apiNode('api-b', url)]);
    await worker('w', url);
    const chatty = writeAgent(repo.root, 'chatty', `echo "worker=$WORKER_NAME"\nfor i in $(seq 1 40); do echo "line $i"; sleep 0.05; done\n${AGENTS.correct}`);
    const workOrderId = await submit(b, repo, `sh ${chatty}`, 'followed');
    const repos = await openPostgresRepositories({ url });
    try {
      const [run] = await until('the run to start', () => runsOf(repos, workOrderId), (runs) => runs.length === 1);
      const seqs: number[] = [];
      const follow = (node: Proc, afterSeq: number, stopAfter?: number): Promise<'ended' | 'stopped'> =>
        new Promise((resolve, reject) => {
          const socket = new WebSocket(`${node.url.replace(/^http/, 'ws')}/ws`);
          // After the client hangs up, frames already in flight are not its events any more.
          let done = false;
          const finish = (how: 'ended' | 'stopped'): void => {
            done = true;
            socket.close();
            resolve(how);
          };
          socket.on('error', reject);
          socket.on('open', () => socket.send(JSON.stringify({ type: 'subscribe', runId: run!.id, afterSeq })));
          socket.on('message', (raw) => {
            if (done) return;
            const message = JSON.parse(String(raw)) as Record<string, unknown>;
            if (message['kind'] === 'event') {
              seqs.push(Number(message['seq']));
              if (stopAfter !== undefined && seqs.length >= stopAfter) finish('stopped');
            } else if (message['type'] === 'subscription_ended') {
              finish('ended');
            }
          });
        });
      expect(await follow(a, 0, 12)).toBe('stopped');
      expect(await follow(b, seqs.at(-1) ?? 0)).toBe('ended');
      const stored = await eventsOf(repos, run!.id);
      expect(seqs).toEqual(stored.map((e) => e.seq));
      expect(executedBy(stored)).toBe('w');
    } finally {
      await repos.close();
    }
  }, 600_000);

  it('a PostgreSQL restart mid-run loses no transition: the run and the API nodes carry on', async () => {
    const url = await pg.createDatabase();
    const node = await apiNode('api', url);
    await worker('w', url);
    const slow = writeAgent(repo.root, 'slow', `echo "worker=$WORKER_NAME"\nsleep 3\n${AGENTS.correct}`);
    const workOrderId = await submit(node, repo, `sh ${slow}`, 'restart');
    const repos = await openPostgresRepositories({ url });
    try {
      await until('the run to build', () => runsOf(repos, workOrderId), (runs) => runs[0]?.state === 'building');
      await pg.restart();
      const status = await until('the work order to finish', async () => (await repos.workOrders.get(workOrderId).catch(() => null))?.status, (s) => s === 'succeeded' || s === 'failed');
      const [run] = await runsOf(repos, workOrderId);
      const events = await eventsOf(repos, run!.id);
      expect(status, `run ${JSON.stringify(run?.error)}; events ${events.map((e) => e.type).join(', ')}`).toBe('succeeded');
      const path = events.filter((e) => e.type === 'run_state_changed').map((e) => `${String(e.data['from'])}→${String(e.data['to'])}`);
      expect(path).toEqual(passingPath(1));
      expect(events.map((e) => e.seq)).toEqual(events.map((_, i) => i + 1));
      const listed = await api(node, 'GET', `/api/v1/runs/${run!.id}`);
      expect(listed.status).toBe(200);
      expect(listed.data['state']).toBe('succeeded');
    } finally {
      await repos.close();
    }
  }, 600_000);
});
