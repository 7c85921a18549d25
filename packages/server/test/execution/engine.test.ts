import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { CONFORMANCE_MARKER_ENV, liveProcessesWithMarker } from '../agents/conformance.js';
import { AgentGateError } from '../../src/errors.js';
import { createAgentDriverRegistry, type AgentDriverRegistry } from '../../src/agents/registry.js';
import { silentLogger } from '../../src/observability/logger.js';
import { createRuntime } from '../../src/runtime.js';
import { loadConfig } from '../../src/schemas/config.js';
import { resolveWorkOrder, type ResolvedTaskSpec } from '../../src/schemas/resolve.js';
import { parseWorkOrderBody } from '../../src/schemas/work-order.js';
import type { TaskSpecInput } from '../../src/schemas/task-spec.js';
import type { ConvergenceStrategy } from '../../src/convergence/types.js';
import { inspectLocalRepository } from '../../src/workspace/local.js';
import { AGENTS, agentOutput, git, makeRepo, userTreeState, writeAgent, type TempRepo } from '../helpers/git-repo.js';
import { passingPath, readRun } from '../helpers/store-checks.js';
import { commandTask, engineSetup, type EngineSetup } from '../helpers/tasks.js';

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn();
});

function setup(files: Record<string, string> = {}): Promise<EngineSetup> {
  return engineSetup(cleanups, files);
}

function spec(repo: TempRepo, agentPath: string, limits: Record<string, unknown> = {}, extra: Partial<TaskSpecInput['spec']> = {}): ResolvedTaskSpec {
  return commandTask(repo.repo, `sh ${agentPath}`, { limits, extra, name: 'engine-test' });
}

describe('ExecutionEngine', () => {
  describe('on the happy path', () => {
    it('reaches succeeded through the SPEC sequence and records everything', async () => {
      const { repo, runtime, events } = await setup();
      const before = userTreeState(repo.repo);
      const outcome = await runtime.engine.run(spec(repo, writeAgent(repo.root, 'a', AGENTS.correct)));
      expect(outcome).toMatchObject({ state: 'succeeded', result: 'passed', iterations: 1, error: null, unverified: false });
      const view = await readRun(repo.home, outcome.runId);
      expect(view.transitions).toEqual(passingPath(1));
      expect(view.run.meta.workspacePath).toBe(join(repo.home, 'worktrees', outcome.runId));
      expect(userTreeState(repo.repo)).toEqual(before);
      expect(git(repo.repo, 'show', `${outcome.branch}:src/math.js`)).toContain('a * b');
      // Listeners saw exactly what was stored, in seq order.
      const mine = events.filter((e) => e.runId === outcome.runId);
      expect(mine.map((e) => e.seq)).toEqual(view.events.map((e) => e.seq));
      expect(mine[0]?.type).toBe('run_started');
      expect(mine.at(-1)?.type).toBe('run_completed');
      expect(mine.map((e) => e.type)).toEqual(expect.arrayContaining(['phase_started', 'phase_completed', 'gate_checked', 'iteration_started', 'iteration_completed', 'agent_output']));
      expect((await runtime.repos.workOrders.get(outcome.workOrderId))?.status).toBe('succeeded');
      const metrics = await runtime.metrics.render();
      expect(metrics).toContain('agentgate_runs_started_total 1');
      expect(metrics).toContain('agentgate_runs_completed_total{result="passed"} 1');
      expect(metrics).toContain('agentgate_iterations_total 1');
      expect(metrics).toContain('agentgate_active_runs 0');
      expect(metrics).toMatch(/agentgate_phase_duration_seconds_count\{phase="snapshot"\} 1/);
      expect(runtime.engine.activeCount()).toBe(0);
    });
  });

  it('starts from the workspace source the caller resolved (exec shows that commit’s gate plan), without resolving it again', async () => {
    const { repo, runtime } = await setup();
    const resolved = spec(repo, writeAgent(repo.root, 'a', AGENTS.correct));
    const shown = git(repo.repo, 'rev-parse', 'HEAD');
    const workspaceSource = await inspectLocalRepository({ path: repo.repo }, new AbortController().signal);
    // HEAD moves after the caller resolved the source: the run still starts from the commit it was given.
    writeFileSync(join(repo.repo, 'later.txt'), 'committed after the plan was shown\n');
    git(repo.repo, 'add', 'later.txt');
    git(repo.repo, 'commit', '-q', '-m', 'later');
    const outcome = await runtime.engine.run(resolved, { workspaceSource });
    expect(outcome).toMatchObject({ state: 'succeeded', result: 'passed' });
    expect(git(repo.repo, 'rev-parse', `${outcome.branch}~1`)).toBe(shown);
    expect(git(repo.repo, 'ls-tree', '--name-only', outcome.branch)).not.toContain('later.txt');
  });

  it('passes agent.env to the agent but never writes its values to the store', async () => {
    const { repo, runtime } = await setup();
    const secret = 'sk-ant-sentinel-in-agent-env-0123456789';
    // The agent proves it got the key by committing its hash (never the key) in its workspace.
    const resolved = spec(repo, writeAgent(repo.root, 'a', `printf '%s' "$ANTHROPIC_API_KEY" | sha256sum | cut -d' ' -f1 > key.sha256\n${AGENTS.correct}`));
    const outcome = await runtime.engine.run({ ...resolved, agent: { ...resolved.agent, env: { ANTHROPIC_API_KEY: secret } } });
    expect(outcome.state).toBe('succeeded');
    expect(git(repo.repo, 'show', `${outcome.branch}:key.sha256`).trim()).toBe(createHash('sha256').update(secret).digest('hex'));
    const stored = JSON.stringify([(await runtime.repos.workOrders.get(outcome.workOrderId)), await runtime.repos.runs.listEvents(outcome.runId, { limit: 10_000 }), (await runtime.repos.iterations.list(outcome.runId))]);
    expect(stored).not.toContain(secret);
    expect((await runtime.repos.workOrders.get(outcome.workOrderId))?.spec).toMatchObject({ agent: { env: { ANTHROPIC_API_KEY: '[REDACTED]' } } });
  });

  it('runs a legacy WorkOrder through the same resolver and engine path', async () => {
    const { repo, runtime } = await setup();
    const body = parseWorkOrderBody({
      taskPrompt: 'Implement add and multiply',
      workspaceSource: { type: 'local', path: repo.repo },
      agentType: 'command',
      agentCommand: `sh ${writeAgent(repo.root, 'a', AGENTS.failThenPass)}`,
      maxIterations: 2,
      legacyField: 'ignored',
    });
    const outcome = await runtime.engine.run(resolveWorkOrder(body), { request: body });
    expect(outcome).toMatchObject({ state: 'succeeded', iterations: 2 });
    const workOrder = (await runtime.repos.workOrders.get(outcome.workOrderId));
    expect(workOrder).toMatchObject({ source: 'work_order', status: 'succeeded' });
    expect(workOrder?.request).toMatchObject({ taskPrompt: 'Implement add and multiply' });
    expect((await readRun(repo.home, outcome.runId)).transitions).toEqual(passingPath(2));
  });

  it('persists every event before listeners see it', async () => {
    const { repo, runtime } = await setup();
    const checks: Array<Promise<boolean>> = [];
    runtime.hub.on((e) => checks.push(runtime.repos.runs.listEvents(e.runId, { afterSeq: e.seq - 1, limit: 1 }).then((stored) => stored[0]?.type === e.type)));
    await runtime.engine.run(spec(repo, writeAgent(repo.root, 'a', AGENTS.correct)));
    const checked = await Promise.all(checks);
    expect(checked.length).toBeGreaterThan(10);
    expect(checked.every(Boolean)).toBe(true);
  });

  it('isolates a throwing listener: the run still succeeds', async () => {
    const { repo, runtime } = await setup();
    runtime.hub.on(() => {
      throw new Error('listener bug');
    });
    const outcome = await runtime.engine.run(spec(repo, writeAgent(repo.root, 'a', AGENTS.correct)));
    expect(outcome.state).toBe('succeeded');
    expect(runtime.hub.listenerErrors).toBeGreaterThan(10);
  });

  it('fails then passes, giving iteration 2 the feedback of iteration 1', async () => {
    const { repo, runtime, events } = await setup();
    const outcome = await runtime.engine.run(spec(repo, writeAgent(repo.root, 'a', AGENTS.failThenPass)));
    expect(outcome).toMatchObject({ state: 'succeeded', iterations: 2 });
    const iterations = (await runtime.repos.iterations.list(outcome.runId));
    const feedback = iterations[0]?.record.feedback;
    if (feedback === undefined) throw new Error('iteration 1 has no feedback');
    expect(feedback.text).toContain('multiply multiplies two numbers');
    const decision = events.find((e) => e.runId === outcome.runId && e.type === 'convergence_decision');
    expect(decision?.data).toMatchObject({ iteration: 1, strategy: 'fixed', decision: 'continue' });
    expect(readFileSync(join(repo.home, 'runs', outcome.runId, 'iteration-2-feedback.md'), 'utf8')).toBe(feedback.text);
  });

  it('stops at maxIterations with failed_verification and no further build', async () => {
    const { repo, runtime } = await setup();
    const outcome = await runtime.engine.run(spec(repo, writeAgent(repo.root, 'a', AGENTS.alwaysWrong), { maxIterations: 2 }));
    expect(outcome).toMatchObject({ state: 'failed', result: 'failed_verification', iterations: 2, error: { code: 'AG_ERR_VERIFY_FAILED' } });
    expect(agentOutput((await readRun(repo.home, outcome.runId)).events).match(/attempt \d/g)).toEqual(['attempt 1', 'attempt 2']);
  });

  it('fails the run when the strategy throws (never swallowed)', async () => {
    const repo = makeRepo();
    cleanups.push(repo.cleanup);
    const exploding: ConvergenceStrategy = {
      name: 'fixed',
      decide: () => {
        throw new Error('strategy bug');
      },
    };
    const runtime = await createRuntime({ config: loadConfig({ AGENTGATE_HOME: repo.home }), logger: silentLogger(), strategies: { fixed: () => exploding } });
    cleanups.push(() => runtime.close());
    const outcome = await runtime.engine.run(spec(repo, writeAgent(repo.root, 'a', AGENTS.failThenPass)));
    expect(outcome).toMatchObject({ state: 'failed', result: 'failed_error', error: { code: 'AG_ERR_CONVERGENCE_STRATEGY' } });
  });

  describe('failures are classified', () => {
    it('an agent exiting non-zero fails the build', async () => {
      const { repo, runtime } = await setup();
      const outcome = await runtime.engine.run(spec(repo, writeAgent(repo.root, 'a', 'echo "no idea" >&2\nexit 4')));
      expect(outcome).toMatchObject({ state: 'failed', result: 'failed_build', iterations: 1, error: { code: 'AG_ERR_PHASE_BUILD_AGENT_TASK_FAILURE', phase: 'build' } });
      expect((await readRun(repo.home, outcome.runId)).transitions).toEqual(['queued→leased', 'leased→building', 'building→failed']);
    });

    it('a snapshot git cannot make is failed_error with the snapshot code', async () => {
      const { repo, runtime } = await setup();
      // Fault injection: a stale lock on AgentGate's own index for the run, placed by an unsandboxed agent
      // that also changed a file (an iteration with nothing to stage never writes the index).
      const resolved = spec(repo, writeAgent(repo.root, 'a', 'touch "$PWD/../../runs/$AGENTGATE_RUN_ID/git/index.lock"\necho changed > changed.txt'));
      const outcome = await runtime.engine.run({ ...resolved, sandbox: { ...resolved.sandbox, mode: 'none' } });
      expect(outcome).toMatchObject({ state: 'failed', result: 'failed_error', error: { code: 'AG_ERR_PHASE_SNAPSHOT', phase: 'snapshot' } });
      expect((await readRun(repo.home, outcome.runId)).transitions.at(-1)).toBe('snapshotting→failed');
    });

    it('the wall clock ends a run as failed_timeout and stops the agent', async () => {
      const { repo, runtime } = await setup();
      const marker = `engine-wallclock-${Date.now()}`;
      const resolved = spec(repo, writeAgent(repo.root, 'a', 'echo working\nsleep 600'), { maxWallClock: '1s' });
      const outcome = await runtime.engine.run({ ...resolved, agent: { ...resolved.agent, env: { [CONFORMANCE_MARKER_ENV]: marker } } });
      expect(outcome).toMatchObject({ state: 'failed', result: 'failed_timeout', error: { code: 'AG_ERR_RUN_TIMEOUT' } });
      expect(await liveProcessesWithMarker(marker)).toEqual([]);
      expect((await readRun(repo.home, outcome.runId)).transitions.at(-1)).toBe('building→failed');
    });
  });

  describe('budgets from agent-reported usage', () => {
    /** A driver (test double) that makes a wrong edit and reports usage, as claude-code would. */
    function usageReportingAgents(usage: { inputTokens: number; outputTokens: number; costUsd: number }): AgentDriverRegistry {
      const registry = createAgentDriverRegistry({ builtins: false });
      registry.register('command', () => ({
        name: 'command',
        async run(request) {
          writeFileSync(join(request.workspacePath, 'src/math.js'), 'export const add = (a, b) => a - b;\nexport const multiply = () => 0;\n');
          return { ok: true, exitCode: 0, durationMs: 1, toolCalls: 1, turns: 2, output: 'edited', usage };
        },
      }));
      return registry;
    }

    it.each([
      ['maxTokens', { maxTokens: 1000 }, { inputTokens: 900, outputTokens: 200, costUsd: 0.01 }],
      ['maxCostUsd', { maxCostUsd: 0.5 }, { inputTokens: 10, outputTokens: 10, costUsd: 0.75 }],
    ])('stops after the iteration that used up %s: failed_verification with AG_ERR_RUN_BUDGET_EXCEEDED', async (_name, limits, usage) => {
      const repo = makeRepo();
      cleanups.push(repo.cleanup);
      const runtime = await createRuntime({ config: loadConfig({ AGENTGATE_HOME: repo.home }), logger: silentLogger(), agents: usageReportingAgents(usage) });
      cleanups.push(() => runtime.close());
      const outcome = await runtime.engine.run(spec(repo, 'unused', { maxIterations: 5, ...limits }));
      expect(outcome).toMatchObject({ state: 'failed', result: 'failed_verification', iterations: 1, error: { code: 'AG_ERR_RUN_BUDGET_EXCEEDED' } });
      expect(outcome.usage).toEqual(usage);
      expect((await runtime.repos.runs.get(outcome.runId))?.meta.usage).toEqual(usage);
      const agent = (await runtime.repos.iterations.list(outcome.runId))[0]?.record.agent;
      expect(agent?.turns).toBe(2);
    });
  });

  it('flags a run without any gate as unverified', async () => {
    const repo = makeRepo({ 'hello.txt': 'hi\n' }, { example: false });
    cleanups.push(repo.cleanup);
    const runtime = await createRuntime({ config: loadConfig({ AGENTGATE_HOME: repo.home }), logger: silentLogger() });
    cleanups.push(() => runtime.close());
    const outcome = await runtime.engine.run(spec(repo, writeAgent(repo.root, 'a', 'echo changed > hello.txt')));
    expect(outcome).toMatchObject({ state: 'succeeded', unverified: true });
    expect((await runtime.repos.runs.get(outcome.runId))?.meta.unverified).toBe(true);
  });

  it('rejects an unknown agent command before storing anything', async () => {
    const { repo, runtime } = await setup();
    const resolved = spec(repo, 'unused');
    await expect(runtime.engine.start({ ...resolved, agent: { ...resolved.agent, command: undefined } } as ResolvedTaskSpec)).rejects.toThrow(AgentGateError);
    expect((await runtime.repos.runs.list({ limit: 10, offset: 0 })).total).toBe(0);
  });

  it('fails with failed_error when the workspace is not a git repository', async () => {
    const { repo, runtime } = await setup();
    const resolved = spec(repo, writeAgent(repo.root, 'a', AGENTS.correct));
    const outcome = await runtime.engine.run({ ...resolved, workspace: { source: 'local', path: repo.root } } as ResolvedTaskSpec);
    expect(outcome).toMatchObject({ state: 'failed', result: 'failed_error', error: { code: 'AG_ERR_WORKSPACE_NOT_A_REPO' } });
    expect((await readRun(repo.home, outcome.runId)).transitions).toEqual(['queued→failed']);
  });

  describe('cancel', () => {
    it('reaches canceled within 5 s from a long agent and leaves no process', async () => {
      const { repo, runtime, events } = await setup();
      const marker = `engine-cancel-${Date.now()}`;
      const resolved = spec(repo, writeAgent(repo.root, 'a', 'echo running\nsleep 600 & sleep 600'));
      const started = await runtime.engine.start({ ...resolved, agent: { ...resolved.agent, env: { [CONFORMANCE_MARKER_ENV]: marker } } });
      let canceledAt = 0;
      let accepted: boolean | undefined;
      runtime.hub.on((e) => {
        if (e.runId === started.runId && e.type === 'agent_output' && canceledAt === 0) {
          canceledAt = Date.now();
          accepted = runtime.engine.cancel(started.runId, 'test cancel');
        }
      });
      const outcome = await started.done;
      expect(accepted).toBe(true);
      expect(Date.now() - canceledAt).toBeLessThan(5000);
      expect(outcome).toMatchObject({ state: 'canceled', result: 'canceled', error: { code: 'AG_ERR_RUN_CANCELED', message: 'test cancel' } });
      expect(await liveProcessesWithMarker(marker)).toEqual([]);
      expect(events.filter((e) => e.runId === started.runId).at(-1)?.type).toBe('run_canceled');
      expect(runtime.engine.cancel(started.runId)).toBe(false);
    });

    it('an external AbortSignal cancels too', async () => {
      const { repo, runtime } = await setup();
      const controller = new AbortController();
      controller.abort();
      const outcome = await runtime.engine.run(spec(repo, writeAgent(repo.root, 'a', AGENTS.correct)), { signal: controller.signal });
      expect(outcome.state).toBe('canceled');
      expect((await readRun(repo.home, outcome.runId)).transitions).toEqual(['queued→canceled']);
    });
  });
});
