import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createRun, type RunEvent } from '../../src/orchestrator/state-machine.js';
import { runLeaseKey } from '../../src/execution/reconcile.js';
import { silentLogger } from '../../src/observability/logger.js';
import { createRuntime } from '../../src/runtime.js';
import { loadConfig } from '../../src/schemas/config.js';
import { resolveTaskSpec } from '../../src/schemas/resolve.js';
import type { TaskSpecInput } from '../../src/schemas/task-spec.js';
import type { Repositories } from '../../src/store/repositories.js';
import { openSqliteRepositories } from '../../src/store/sqlite/index.js';
import { ManualClock } from '../../src/util/clock.js';
import { AGENTS, makeRepo, writeAgent } from '../helpers/git-repo.js';
import { readRun } from '../helpers/store-checks.js';

const T0 = Date.parse('2026-01-01T00:00:00.000Z');
const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn();
});

function tempHome(): string {
  const home = mkdtempSync(join(tmpdir(), 'agentgate-reconcile-'));
  cleanups.push(() => rmSync(home, { recursive: true, force: true }));
  return home;
}

/** A run created by `owner` with a run lease of `ttlMs`, moved through `events`. */
async function seedRun(repos: Repositories, id: string, owner: string, ttlMs: number, events: RunEvent[]): Promise<void> {
  const at = new Date(T0).toISOString();
  const fence = { leaseKey: runLeaseKey(id), owner };
  await repos.runs.create({
    workOrder: { id: 'wo', source: 'task_spec', spec: {}, createdAt: at },
    run: createRun({ id, workOrderId: 'wo', maxIterations: 3, createdAt: at }),
    lease: { key: fence.leaseKey, owner, ttlMs, now: new Date(T0) },
  });
  for (const event of events) await repos.runs.commit(id, { event, fence, at });
}

async function seed(home: string): Promise<void> {
  const repos = openSqliteRepositories({ home, clock: () => new Date(T0) });
  // Died while building: its 60 s lease expired long ago.
  await seedRun(repos, 'dead', 'dead-process', 60_000, ['workspace_acquired', 'build_started']);
  // Died while still queued.
  await seedRun(repos, 'queued-dead', 'dead-process', 60_000, []);
  // Alive elsewhere (slow clone, long build): its lease is live.
  await seedRun(repos, 'alive', 'other-process', 600_000, ['workspace_acquired', 'build_started']);
  await repos.close();
}

describe('reconciliation', () => {
  it('fails runs whose owner died through the commit point, and leaves live and fresh runs alone', async () => {
    const home = tempHome();
    await seed(home);
    // 3 minutes later: 'dead' and 'queued-dead' are stale and unleased; 'alive' has a live lease.
    const runtime = await createRuntime({ config: loadConfig({ AGENTGATE_HOME: home }), logger: silentLogger(), clock: new ManualClock(T0 + 180_000) });
    cleanups.push(() => runtime.close());
    const dead = await runtime.repos.runs.get('dead');
    expect(dead).toMatchObject({ state: 'failed', result: 'failed_error', error: { code: 'AG_ERR_RUN_INTERRUPTED' } });
    expect(dead?.error?.message).toContain('while it was building');
    expect((await runtime.repos.runs.get('queued-dead'))?.state).toBe('failed');
    expect((await runtime.repos.runs.get('alive'))?.state).toBe('building');
    const view = await readRun(home, 'dead');
    const [changed, failed] = view.events.slice(-2);
    expect(changed).toMatchObject({ type: 'run_state_changed', data: { from: 'building', event: 'system_error', to: 'failed' } });
    // Followers waiting for the run's last event get one, written with the terminal transition.
    expect(failed).toMatchObject({ type: 'run_failed', data: { result: 'failed_error', error: { code: 'AG_ERR_RUN_INTERRUPTED' } } });
    const workOrderEvents = await runtime.repos.workOrders.listEvents('wo');
    expect(workOrderEvents.at(-1)).toMatchObject({ type: 'work_order_updated', data: { status: 'failed', reason: 'interrupted' } });
    // The reconciler released the leases it took to close the runs.
    expect(await runtime.repos.leases.get(runLeaseKey('dead'))).toBeNull();
  });

  it('does not touch a run updated within the grace period', async () => {
    const home = tempHome();
    await seed(home);
    const runtime = await createRuntime({ config: loadConfig({ AGENTGATE_HOME: home }), logger: silentLogger(), clock: new ManualClock(T0 + 5_000) });
    cleanups.push(() => runtime.close());
    expect((await runtime.repos.runs.get('dead'))?.state).toBe('building');
    expect((await runtime.repos.runs.get('queued-dead'))?.state).toBe('queued');
  });

  it('a process paused past its lease writes nothing more once another process reconciled its run', async () => {
    const repo = makeRepo();
    cleanups.push(repo.cleanup);
    // The agent starts, then waits for the test to let it finish: the owner is "paused" meanwhile. Both
    // signals are files in its workspace (the only place a sandboxed agent can write).
    const agent = writeAgent(repo.root, 'a', `touch started\nwhile [ ! -f go ]; do sleep 0.05; done\necho after-resume\n${AGENTS.correct}`);
    const spec = resolveTaskSpec({
      apiVersion: 'agentgate.io/v1',
      kind: 'TaskSpec',
      metadata: { name: 'paused' },
      spec: {
        goal: { prompt: 'Implement add and multiply' },
        execution: { workspace: { source: 'local', path: repo.repo }, agent: { driver: 'command', command: `sh ${agent}` } },
      },
    } as TaskSpecInput);

    // Process A: its clock stands still while it is paused, so its heartbeat never renews the lease.
    const pausedClock = new ManualClock(T0);
    const owner = await createRuntime({ config: loadConfig({ AGENTGATE_HOME: repo.home }), logger: silentLogger(), clock: pausedClock });
    cleanups.push(() => owner.close());
    const run = await owner.engine.start(spec);
    const workspace = join(repo.home, 'worktrees', run.runId);
    while (!existsSync(join(workspace, 'started'))) await new Promise((resolve) => setTimeout(resolve, 20));

    // Process B starts 3 minutes later: A's 60 s lease has expired, so B takes the run over and fails it.
    const other = await createRuntime({ config: loadConfig({ AGENTGATE_HOME: repo.home }), logger: silentLogger(), clock: new ManualClock(T0 + 180_000) });
    cleanups.push(() => other.close());
    expect((await other.repos.runs.get(run.runId))).toMatchObject({ state: 'failed', error: { code: 'AG_ERR_RUN_INTERRUPTED' } });
    const closedAt = await other.repos.runs.lastSeq(run.runId);

    // A resumes: its agent finishes and its engine tries to go on.
    writeFileSync(join(workspace, 'go'), '');
    const outcome = await run.done;
    expect(outcome.error).toMatchObject({ code: 'AG_ERR_LEASE_LOST' });
    const view = await readRun(repo.home, run.runId);
    expect(view.run).toMatchObject({ state: 'failed', error: { code: 'AG_ERR_RUN_INTERRUPTED' } });
    // Not one event after the reconciler's terminal event: A's agent output and transitions were refused.
    expect(view.events).toHaveLength(closedAt);
    expect(view.events.at(-1)?.type).toBe('run_failed');
    expect(view.events.some((e) => e.type === 'agent_output' && JSON.stringify(e.data).includes('after-resume'))).toBe(false);
    expect(view.records.every((r) => r.record.snapshot === undefined)).toBe(true);
  });
});
