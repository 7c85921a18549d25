import { describe, expect, it } from 'vitest';
import { HARNESS_PROFILE_LABEL, WORK_ORDER_SOURCE_LABEL, resolveTaskSpec, resolveWorkOrder, workOrderToTaskSpec } from '../../src/schemas/resolve.js';
import { parseWorkOrderBody } from '../../src/schemas/work-order.js';
import { thrownAgentGateError } from '../helpers/errors.js';

describe('WorkOrder body', () => {
  it('applies the legacy defaults and strips unknown top-level keys', () => {
    const body = parseWorkOrderBody({
      taskPrompt: 'Add tests',
      workspaceSource: { type: 'local', path: '/repos/app' },
      gatePlanSource: 'auto',
      policies: { networkAllowed: false },
    });
    expect(body).toEqual({
      taskPrompt: 'Add tests',
      workspaceSource: { type: 'local', path: '/repos/app' },
      agentType: 'claude-code',
      maxIterations: 3,
      waitForCI: false,
    });
  });

  it.each([
    ['claude-code-subscription', 'claude-code'],
    ['claude-code-api', 'claude-code'],
    ['codex', 'codex'],
  ])('maps agentType %s to the %s driver', (agentType, driver) => {
    const body = parseWorkOrderBody({ taskPrompt: 'x', workspaceSource: { type: 'local', path: '/r' }, agentType });
    expect(body.agentType).toBe(driver);
  });

  it('normalises the workspace source spellings', () => {
    const parse = (workspaceSource: unknown) => parseWorkOrderBody({ taskPrompt: 'x', workspaceSource }).workspaceSource;
    expect(parse({ type: 'git', url: 'https://example.com/a.git', branch: 'dev' })).toEqual({ type: 'git', url: 'https://example.com/a.git', ref: 'dev' });
    expect(parse({ type: 'github', repo: 'acme/api' })).toEqual({ type: 'github', repo: 'acme/api' });
    expect(parse({ type: 'github', owner: 'acme', repo: 'api', ref: 'main' })).toEqual({ type: 'github', repo: 'acme/api', ref: 'main' });
    expect(parse({ type: 'gitlab', project: 42, branch: 'main' })).toEqual({ type: 'gitlab', project: '42', ref: 'main' });
  });

  describe('when invalid', () => {
    it('names each bad field', () => {
      const error = thrownAgentGateError(() =>
        parseWorkOrderBody({ taskPrompt: '', workspaceSource: { type: 'svn' }, agentType: 'gpt', maxIterations: 500, maxTime: -1 }),
      );
      expect(error.code).toBe('AG_ERR_SCHEMA_INVALID');
      expect(error.status).toBe(400);
      expect(error.details?.issues).toEqual([
        { path: 'taskPrompt', message: 'must not be empty' },
        { path: 'workspaceSource.type', message: 'expected one of "local", "git", "github", "gitlab", got "svn"' },
        {
          path: 'agentType',
          message: 'expected one of "command", "claude-code", "codex", "claude-code-subscription", "claude-code-api", got "gpt"',
        },
        { path: 'maxIterations', message: 'must be <= 100' },
        { path: 'maxTime', message: 'must be > 0' },
      ]);
    });

    it('requires agentCommand for the command agent', () => {
      const error = thrownAgentGateError(() => parseWorkOrderBody({ taskPrompt: 'x', workspaceSource: { type: 'local', path: '/r' }, agentType: 'command' }));
      expect(error.message).toBe('agentCommand: required when agentType is "command"');
    });

    it('rejects a GitHub repo that is not owner/name', () => {
      const error = thrownAgentGateError(() => parseWorkOrderBody({ taskPrompt: 'x', workspaceSource: { type: 'github', repo: 'api' } }));
      expect(error.message).toBe('workspaceSource.repo: expected "owner/name" (or set owner and repo separately), got "api"');
    });

    it('rejects a branch that contradicts ref', () => {
      const error = thrownAgentGateError(() => parseWorkOrderBody({ taskPrompt: 'x', workspaceSource: { type: 'git', url: 'u', ref: 'a', branch: 'b' } }));
      expect(error.message).toBe('workspaceSource.branch: conflicts with ref "a"; set only one');
    });

    it('rejects github_pr on a workspace that is not on GitHub', () => {
      const error = thrownAgentGateError(() =>
        parseWorkOrderBody({ taskPrompt: 'x', workspaceSource: { type: 'local', path: '/r' }, harness: { gitOps: { mode: 'github_pr' } } }),
      );
      expect(error.message).toBe('harness.gitOps.mode: github_pr needs a github workspaceSource, got local');
    });

    it('rejects a bad value inside a known harness key but tolerates unknown harness keys', () => {
      const base = { taskPrompt: 'x', workspaceSource: { type: 'local', path: '/r' } };
      expect(thrownAgentGateError(() => parseWorkOrderBody({ ...base, harness: { loopStrategy: { mode: 'forever' } } })).message).toBe(
        'harness.loopStrategy.mode: expected one of "fixed", "hybrid", "ralph", "manual", got "forever"',
      );
      expect(parseWorkOrderBody({ ...base, harness: { agentMode: 'auto', loopStrategy: { mode: 'fixed', completionDetection: [] } } }).harness).toEqual({
        agentMode: 'auto',
        loopStrategy: { mode: 'fixed', completionDetection: [] },
      });
    });
  });
});

describe('workOrderToTaskSpec', () => {
  it('maps a minimal work order onto the same defaults as a TaskSpec', () => {
    const resolved = resolveWorkOrder(parseWorkOrderBody({ taskPrompt: 'Add tests\nfor the parser', workspaceSource: { type: 'local', path: '/repos/app' } }));
    expect(resolved).toEqual({
      source: 'work_order',
      name: 'Add tests',
      prompt: 'Add tests\nfor the parser',
      workspace: { source: 'local', path: '/repos/app' },
      agent: { driver: 'claude-code', env: {}, idleTimeoutMs: 600_000 },
      sandbox: { mode: 'auto', network: true },
      convergence: { strategy: 'fixed', config: { iterations: 3 }, limits: { maxIterations: 3, maxWallClockMs: 3_600_000 } },
      delivery: {
        kind: 'local',
        branchPrefix: 'agentgate/',
        push: false,
        pr: { create: false, draft: false, labels: [], reviewers: [] },
        ci: { wait: false, timeoutMs: 1_800_000, pollIntervalMs: 30_000, retryOnFailure: true },
      },
      labels: { [WORK_ORDER_SOURCE_LABEL]: 'work-order' },
    });
  });

  it('maps a legacy work order with a harness', () => {
    const body = parseWorkOrderBody({
      taskPrompt: 'Fix the flaky test',
      workspaceSource: { type: 'github', owner: 'acme', repo: 'api', branch: 'develop' },
      agentType: 'claude-code-subscription',
      maxIterations: 4,
      maxTime: 1800,
      waitForCI: true,
      harness: {
        profile: 'ci-focused',
        loopStrategy: { mode: 'hybrid', maxIterations: 6, baseIterations: 2, maxBonusIterations: 3, progressThreshold: 0.2 },
        gitOps: { mode: 'github_pr' },
        executionLimits: { maxWallClockSeconds: 2700 },
        verification: { skipLevels: ['L2'] },
      },
    });
    const spec = workOrderToTaskSpec(body);
    expect(spec.apiVersion).toBe('agentgate.io/v1');
    expect(spec.spec.execution.workspace).toEqual({ source: 'github', repo: 'acme/api', ref: 'develop' });

    const resolved = resolveTaskSpec(spec, { source: 'work_order' });
    expect(resolved).toMatchObject({
      source: 'work_order',
      prompt: 'Fix the flaky test',
      workspace: { source: 'github', repo: 'acme/api', owner: 'acme', name: 'api', ref: 'develop' },
      agent: { driver: 'claude-code' },
      convergence: {
        strategy: 'hybrid',
        config: { baseIterations: 2, bonusIterations: 3, progressThreshold: 0.2 },
        // The harness is more specific than the top-level maxIterations/maxTime.
        limits: { maxIterations: 6, maxWallClockMs: 2_700_000 },
      },
      delivery: { kind: 'github', push: true, pr: { create: true }, ci: { wait: true } },
      labels: { [WORK_ORDER_SOURCE_LABEL]: 'work-order', [HARNESS_PROFILE_LABEL]: 'ci-focused' },
    });
  });

  it('maps the command agent, maxTime, push_only and a ralph loop', () => {
    const resolved = resolveWorkOrder(
      parseWorkOrderBody({
        taskPrompt: 'Run the script',
        workspaceSource: { type: 'git', url: 'https://example.com/app.git' },
        agentType: 'command',
        agentCommand: './agent.sh',
        maxIterations: 5,
        maxTime: 90,
        harness: { loopStrategy: { mode: 'ralph', windowSize: 4 }, gitOps: { mode: 'push_only' } },
      }),
    );
    expect(resolved).toMatchObject({
      agent: { driver: 'command', command: './agent.sh' },
      convergence: { strategy: 'ralph', config: { windowSize: 4, similarityThreshold: 0.95, minIterations: 1 }, limits: { maxIterations: 5, maxWallClockMs: 90_000 } },
      delivery: { kind: 'local', push: true, pr: { create: false } },
    });
  });

  it('maps gitlab_mr onto gitlab delivery and reads waitForCI from harness.verification', () => {
    const resolved = resolveWorkOrder(
      parseWorkOrderBody({
        taskPrompt: 'x',
        workspaceSource: { type: 'gitlab', project: 'group/app' },
        harness: { gitOps: { mode: 'gitlab_mr' }, verification: { waitForCI: true }, loopStrategy: { mode: 'fixed', iterations: 2 } },
      }),
    );
    expect(resolved.delivery).toMatchObject({ kind: 'gitlab', push: true, pr: { create: true }, ci: { wait: true } });
    expect(resolved.convergence).toEqual({ strategy: 'fixed', config: { iterations: 2 }, limits: { maxIterations: 3, maxWallClockMs: 3_600_000 } });
  });
});
