/**
 * The run actor under injected failures: each test replaces one phase handler (or drives a real agent
 * and gate) and checks the exact transitions, events and iteration records the store ends up with.
 * Time is a ManualClock: the wall clock runs out when the test says so, not after a real-time budget.
 */
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { AgentGateError } from '../../src/errors.js';
import { defaultPhaseHandlers, type PhaseHandlers } from '../../src/execution/phase-orchestrator.js';
import type { PhaseContext, PhaseResult, SnapshotOutput } from '../../src/execution/context.js';
import { silentLogger } from '../../src/observability/logger.js';
import type { RunEventEnvelope } from '../../src/observability/events.js';
import { createRuntime, type Runtime } from '../../src/runtime.js';
import { loadConfig } from '../../src/schemas/config.js';
import type { ResolvedTaskSpec } from '../../src/schemas/resolve.js';
import { abortError } from '../../src/util/abort.js';
import { ManualClock } from '../../src/util/clock.js';
import { AGENTS, git, makeRepo, writeAgent, type TempRepo } from '../helpers/git-repo.js';
import { readRun, type StoredRunView } from '../helpers/store-checks.js';
import { commandTask } from '../helpers/tasks.js';

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn();
});

interface Setup {
  repo: TempRepo;
  runtime: Runtime;
  clock: ManualClock;
  events: RunEventEnvelope[];
}

async function setup(handlers: Partial<PhaseHandlers> = {}, files: Record<string, string> = {}): Promise<Setup> {
  const repo = makeRepo(files);
  cleanups.push(repo.cleanup);
  const clock = new ManualClock();
  const runtime = await createRuntime({
    config: loadConfig({ AGENTGATE_HOME: repo.home }),
    logger: silentLogger(),
    clock,
    handlers: { ...defaultPhaseHandlers(), ...handlers },
  });
  cleanups.push(() => runtime.close());
  const events: RunEventEnvelope[] = [];
  runtime.hub.on((event) => events.push(event));
  return { repo, runtime, clock, events };
}

function spec(repo: TempRepo, agentBody: string, limits: Record<string, unknown> = {}): ResolvedTaskSpec {
  return commandTask(repo.repo, `sh ${writeAgent(repo.root, 'agent', agentBody)}`, { limits, name: 'actor-test' });
}

/** Resolves once the hub delivered an event matching `match`. */
function waitFor(runtime: Runtime, match: (event: RunEventEnvelope) => boolean): Promise<RunEventEnvelope> {
  return new Promise((resolve) => {
    const off = runtime.hub.on((event) => {
      if (!match(event)) return;
      off();
      resolve(event);
    });
  });
}

/** Nothing stored for the run — events, records, the run row — calls it canceled. */
function expectNothingSaysCanceled(view: StoredRunView): void {
  const stored = JSON.stringify([view.run, view.events, view.records]);
  expect(stored).not.toContain('AG_ERR_RUN_CANCELED');
  expect(stored).not.toMatch(/"canceled"/);
  expect(view.events.some((e) => e.type === 'run_canceled')).toBe(false);
}

/** A handler whose phase never finishes on its own: it ends only when the run's signal fires. */
function hangingSnapshot(): PhaseHandlers['snapshot'] {
  return {
    name: 'snapshot',
    execute: (ctx: PhaseContext): Promise<PhaseResult<SnapshotOutput>> =>
      new Promise((resolve) => {
        ctx.signal.addEventListener('abort', () => resolve({ ok: false, error: abortError(ctx.signal, 'snapshot'), cancelled: true }), { once: true });
      }),
  };
}

describe('RunActor', () => {
  describe('when the gates cannot run', () => {
    it('fails as failed_error from verifying, with the phase error in the event and the record', async () => {
      const { repo, runtime } = await setup({
        verify: { name: 'verify', execute: () => Promise.resolve({ ok: false, error: new AgentGateError('AG_ERR_PHASE_VERIFY', 'gate runner unavailable'), cancelled: false }) },
      });
      const outcome = await runtime.engine.run(spec(repo, AGENTS.correct));
      expect(outcome).toMatchObject({ state: 'failed', result: 'failed_error', iterations: 1, error: { code: 'AG_ERR_PHASE_VERIFY', phase: 'verify', iteration: 1 } });
      const view = await readRun(repo.home, outcome.runId);
      expect(view.transitions).toEqual(['queued→leased', 'leased→building', 'building→snapshotting', 'snapshotting→verifying', 'verifying→failed']);
      const tail = view.events.slice(-4).map((e) => e.type);
      expect(tail).toEqual(['phase_completed', 'iteration_completed', 'run_state_changed', 'run_failed']);
      expect(view.events.at(-4)?.data).toMatchObject({ phase: 'verify', ok: false, error: { code: 'AG_ERR_PHASE_VERIFY' } });
      expect(view.events.at(-3)?.data).toMatchObject({ iteration: 1, passed: false });
      expect(view.records).toHaveLength(1);
      expect(view.records[0]?.record).toMatchObject({ error: { code: 'AG_ERR_PHASE_VERIFY', phase: 'verify' } });
      expect(view.records[0]?.record.snapshot?.sha).toMatch(/^[0-9a-f]{40}$/);
      expect((await runtime.repos.workOrders.get(outcome.workOrderId))?.status).toBe('failed');
    });
  });

  describe('when feedback cannot be generated', () => {
    it('fails from the feedback state after the retry decision, keeping the decision in the record', async () => {
      const { repo, runtime } = await setup({
        feedback: {
          name: 'feedback',
          execute: () => {
            throw new Error('feedback generator bug');
          },
        },
      });
      const outcome = await runtime.engine.run(spec(repo, AGENTS.failThenPass));
      expect(outcome).toMatchObject({ state: 'failed', result: 'failed_error', error: { code: 'AG_ERR_PHASE_FEEDBACK', phase: 'feedback' } });
      const view = await readRun(repo.home, outcome.runId);
      expect(view.transitions).toEqual(['queued→leased', 'leased→building', 'building→snapshotting', 'snapshotting→verifying', 'verifying→feedback', 'feedback→failed']);
      expect(view.records[0]?.record).toMatchObject({ decision: { action: 'continue' }, error: { code: 'AG_ERR_PHASE_FEEDBACK', phase: 'feedback' } });
      expect(view.records[0]?.record.verification?.passed).toBe(false);
      const types = view.events.map((e) => e.type);
      // iteration_completed once, before the decision; nothing after the closing event.
      expect(types.filter((t) => t === 'iteration_completed')).toHaveLength(1);
      expect(types.indexOf('iteration_completed')).toBeLessThan(types.indexOf('convergence_decision'));
      expect(types.at(-1)).toBe('run_failed');
    });
  });

  describe('when the workspace lease is lost mid-build', () => {
    it('stops the agent and fails the run with AG_ERR_LEASE_LOST', async () => {
      const { repo, runtime, clock } = await setup();
      const resolved = spec(repo, `echo working\nsleep 600`);
      const started = await runtime.engine.start(resolved);
      await waitFor(runtime, (e) => e.runId === started.runId && e.type === 'agent_output');
      // Another process takes the repository branch over once the lease has expired…
      const lease = (await runtime.repos.leases.listLive(new Date(clock.now()))).find((l) => l.runId === started.runId && !l.key.startsWith('run:'));
      if (lease === undefined) throw new Error('the run holds no workspace lease');
      await runtime.repos.leases.acquire({ key: lease.key, owner: 'intruder', runId: 'other-run', ttlMs: 600_000, now: new Date(Date.parse(lease.expiresAt) + 1) });
      // …and the next heartbeat (fake time) finds it gone. The run lease itself renews fine.
      await clock.advance(20_000);
      const outcome = await started.done;
      expect(outcome).toMatchObject({ state: 'failed', result: 'failed_error', error: { code: 'AG_ERR_LEASE_LOST' } });
      const view = await readRun(repo.home, outcome.runId);
      expect(view.transitions).toEqual(['queued→leased', 'leased→building', 'building→failed']);
      expect(view.events.find((e) => e.type === 'phase_completed' && e.data['phase'] === 'build')?.data).toMatchObject({ ok: false, error: { code: 'AG_ERR_LEASE_LOST' } });
      expect(view.records[0]?.record.error?.code).toBe('AG_ERR_LEASE_LOST');
    });
  });

  describe('when the wall clock runs out', () => {
    it('during the build: every event and record says timeout, none says canceled', async () => {
      const { repo, runtime, clock } = await setup();
      const started = await runtime.engine.start(spec(repo, 'echo working\nsleep 600', { maxWallClock: '10m' }));
      await waitFor(runtime, (e) => e.runId === started.runId && e.type === 'agent_output');
      await clock.advance(10 * 60_000);
      const outcome = await started.done;
      expect(outcome).toMatchObject({ state: 'failed', result: 'failed_timeout', error: { code: 'AG_ERR_RUN_TIMEOUT' } });
      const view = await readRun(repo.home, outcome.runId);
      expect(view.transitions.at(-1)).toBe('building→failed');
      expect(view.events.find((e) => e.type === 'phase_completed' && e.data['phase'] === 'build')?.data).toMatchObject({ ok: false, error: { code: 'AG_ERR_RUN_TIMEOUT' } });
      expect(view.records[0]?.record.error?.code).toBe('AG_ERR_RUN_TIMEOUT');
      expectNothingSaysCanceled(view);
    });

    it('during the snapshot: the snapshot phase and the record say timeout', async () => {
      const { repo, runtime, clock } = await setup({ snapshot: hangingSnapshot() });
      const started = await runtime.engine.start(spec(repo, AGENTS.correct, { maxWallClock: '10m' }));
      await waitFor(runtime, (e) => e.runId === started.runId && e.type === 'phase_started' && e.data.phase === 'snapshot');
      await clock.advance(10 * 60_000);
      const outcome = await started.done;
      expect(outcome).toMatchObject({ state: 'failed', result: 'failed_timeout', error: { code: 'AG_ERR_RUN_TIMEOUT' } });
      const view = await readRun(repo.home, outcome.runId);
      expect(view.transitions.at(-1)).toBe('snapshotting→failed');
      expect(view.events.find((e) => e.type === 'phase_completed' && e.data['phase'] === 'snapshot')?.data).toMatchObject({ ok: false, error: { code: 'AG_ERR_RUN_TIMEOUT' } });
      expect(view.records[0]?.record.error?.code).toBe('AG_ERR_RUN_TIMEOUT');
      expectNothingSaysCanceled(view);
    });

    it('during a real gate: the gate is killed and everything says timeout', async () => {
      const started = join('gate-started');
      const { repo, runtime, clock } = await setup({}, {
        'verify.yaml': `version: 1\ntests:\n  - name: slow\n    command: "touch ${started} && sleep 600"\n    timeout: 1h\n`,
      });
      const run = await runtime.engine.start(spec(repo, 'echo edited > notes.txt', { maxWallClock: '10m' }));
      await waitFor(runtime, (e) => e.runId === run.runId && e.type === 'phase_started' && e.data.phase === 'verify');
      // The gate really runs before the clock runs out.
      const worktree = join(repo.home, 'worktrees', run.runId);
      while (!existsSync(join(worktree, started))) await new Promise((resolve) => setTimeout(resolve, 20));
      await clock.advance(10 * 60_000);
      const outcome = await run.done;
      expect(outcome).toMatchObject({ state: 'failed', result: 'failed_timeout', error: { code: 'AG_ERR_RUN_TIMEOUT' } });
      const view = await readRun(repo.home, outcome.runId);
      expect(view.transitions.at(-1)).toBe('verifying→failed');
      expect(view.events.find((e) => e.type === 'phase_completed' && e.data['phase'] === 'verify')?.data).toMatchObject({ ok: false, error: { code: 'AG_ERR_RUN_TIMEOUT' } });
      expect(view.records[0]?.record.error?.code).toBe('AG_ERR_RUN_TIMEOUT');
      expectNothingSaysCanceled(view);
    });
  });

  describe('cleanup', () => {
    it('has its own time limit: a release that never finishes does not hold the run open', async () => {
      const { repo, runtime, clock } = await setup();
      // The engine's workspace manager, reached the way a test double would be: its release never settles.
      const workspaces = runtime.engine['services'].workspaces;
      const release = workspaces.release.bind(workspaces);
      let releaseCalls = 0;
      // The real release still runs (the worktree must go); the run just never hears back from it. The
      // test waits for it before the runtime closes its store.
      const realReleases: Array<Promise<void>> = [];
      cleanups.push(() => Promise.allSettled(realReleases));
      workspaces.release = (...args) => {
        releaseCalls += 1;
        realReleases.push(release(...args));
        return new Promise<void>(() => undefined);
      };
      const started = await runtime.engine.start(spec(repo, AGENTS.correct));
      await waitFor(runtime, (e) => e.runId === started.runId && e.type === 'run_completed');
      while (releaseCalls === 0) await new Promise((resolve) => setTimeout(resolve, 10));
      await clock.advance(60_000);
      const outcome = await started.done;
      expect(outcome.state).toBe('succeeded');
      expect(runtime.engine.activeCount()).toBe(0);
    });
  });

  describe('event subscriptions during a real run', () => {
    it('a subscriber joining mid-run with afterSeq gets every later event exactly once, in order; a stalled one is dropped', async () => {
      const { repo, runtime } = await setup();
      const started = await runtime.engine.start(spec(repo, AGENTS.failThenPass));
      // A subscriber that never reads, with a small queue: it must not hold the run back.
      const stalled = runtime.hub.subscribe({ runId: started.runId, maxQueued: 5 });
      const joined = await waitFor(runtime, (e) => e.runId === started.runId && e.type === 'iteration_started');
      const afterSeq = joined.seq - 2;
      const seen: RunEventEnvelope[] = [];
      for await (const event of runtime.hub.subscribe({ runId: started.runId, afterSeq })) {
        seen.push(event);
        if (event.type === 'run_completed') break;
      }
      const outcome = await started.done;
      expect(outcome).toMatchObject({ state: 'succeeded', iterations: 2 });
      const stored = (await readRun(repo.home, started.runId)).events.filter((e) => e.seq > afterSeq);
      expect(seen.map((e) => e.seq)).toEqual(stored.map((e) => e.seq));
      expect(seen.map((e) => e.type)).toEqual(stored.map((e) => e.type));
      expect(await stalled.ended).toMatchObject({ reason: 'lagged' });
      expect(stalled.stats.peakQueued).toBeLessThanOrEqual(5);
      expect(runtime.hub.stats.queued).toBe(0);
    });

    it('work-order events reach a work-order subscriber through the same hub, on their own sequence', async () => {
      const { repo, runtime } = await setup();
      const outcome = await runtime.engine.run(spec(repo, AGENTS.correct));
      const events: Array<{ seq: number; type: string; status: string }> = [];
      for await (const event of runtime.hub.subscribe({ workOrderId: outcome.workOrderId })) {
        events.push({ seq: event.seq, type: event.type, status: event.data.status });
        if (event.data.status === 'succeeded') break;
      }
      expect(events).toEqual([
        { seq: 1, type: 'work_order_created', status: 'queued' },
        { seq: 2, type: 'work_order_updated', status: 'running' },
        { seq: 3, type: 'work_order_updated', status: 'succeeded' },
      ]);
    });
  });

  describe('delivery', () => {
    it('pushes the passing snapshot to the named remote and says so in the events', async () => {
      const { repo, runtime, events } = await setup();
      const remote = join(repo.root, 'remote.git');
      git(repo.root, 'init', '-q', '--bare', remote);
      git(repo.repo, 'remote', 'add', 'origin', remote);
      const resolved = spec(repo, AGENTS.correct);
      const outcome = await runtime.engine.run({ ...resolved, delivery: { ...resolved.delivery, push: true, remote: 'origin' } });
      expect(outcome).toMatchObject({ state: 'succeeded', result: 'passed' });
      const view = await readRun(repo.home, outcome.runId);
      const snapshotSha = view.records.at(-1)?.record.snapshot?.sha;
      expect(git(remote, 'rev-parse', `refs/heads/${outcome.branch}`).trim()).toBe(snapshotSha);
      const mine = events.filter((e) => e.runId === outcome.runId);
      expect(mine.find((e) => e.type === 'delivery_completed')?.data).toMatchObject({ kind: 'local', ok: true, branch: outcome.branch });
      expect(view.transitions.at(-1)).toBe('verifying→succeeded');
    });

    it('fails the run with the delivery classification when the push is refused, keeping the branch', async () => {
      const { repo, runtime } = await setup();
      const remote = join(repo.root, 'remote.git');
      git(repo.root, 'init', '-q', '--bare', remote);
      git(repo.repo, 'remote', 'add', 'origin', remote);
      // The remote refuses every push.
      writeFileSync(join(remote, 'hooks', 'pre-receive'), '#!/bin/sh\necho "push refused by policy" >&2\nexit 1\n', { mode: 0o755 });
      const resolved = spec(repo, AGENTS.correct);
      const outcome = await runtime.engine.run({ ...resolved, delivery: { ...resolved.delivery, push: true, remote: 'origin' } });
      expect(outcome).toMatchObject({ state: 'failed', result: 'failed_error', error: { code: 'AG_ERR_DELIVERY_PUSH', phase: 'delivery' } });
      expect((await readRun(repo.home, outcome.runId)).transitions.at(-1)).toBe('verifying→failed');
      expect(git(repo.repo, 'rev-parse', '--verify', `refs/heads/${outcome.branch}`).trim()).toMatch(/^[0-9a-f]{40}$/);
    });
  });

  it('rejects a spec asking for a delivery this build cannot do, before storing anything', async () => {
    const { repo, runtime } = await setup();
    const resolved = spec(repo, AGENTS.correct);
    for (const delivery of [
      { ...resolved.delivery, ci: { ...resolved.delivery.ci, wait: true } },
      { ...resolved.delivery, push: true },
      { ...resolved.delivery, pr: { ...resolved.delivery.pr, create: true } },
    ]) {
      await expect(runtime.engine.start({ ...resolved, delivery })).rejects.toMatchObject({ code: 'AG_ERR_DELIVERY_UNSUPPORTED' });
    }
    expect((await runtime.repos.runs.list({ limit: 10, offset: 0 })).total).toBe(0);
  });
});
