import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { resolveTaskSpec } from '../../src/schemas/resolve.js';
import type { ResolvedTaskSpec } from '../../src/schemas/resolve.js';
import { MAX_PROMPT_CHARS, TaskSpecSchema, parseTaskSpec, parseTaskSpecYaml } from '../../src/schemas/task-spec.js';
import { VerifyConfigSchema } from '../../src/schemas/verify-config.js';
import { WorkOrderBodySchema } from '../../src/schemas/work-order.js';
import type { TaskSpecInput } from '../../src/schemas/task-spec.js';
import { thrownAgentGateError } from '../helpers/errors.js';

const MINIMAL_YAML = `apiVersion: agentgate.io/v1
kind: TaskSpec
metadata:
  name: fix-login
spec:
  goal:
    prompt: Fix the login bug
  execution:
    workspace:
      source: local
      path: /repos/app
`;

function minimal(): TaskSpecInput {
  return {
    apiVersion: 'agentgate.io/v1',
    kind: 'TaskSpec',
    metadata: { name: 'fix-login' },
    spec: { goal: { prompt: 'Fix the login bug' }, execution: { workspace: { source: 'local', path: '/repos/app' } } },
  };
}

describe('TaskSpec', () => {
  describe('when only the required fields are given', () => {
    it('resolves every default', () => {
      const resolved = resolveTaskSpec(parseTaskSpecYaml(MINIMAL_YAML, 'task.yaml'));
      const expected: ResolvedTaskSpec = {
        source: 'task_spec',
        name: 'fix-login',
        prompt: 'Fix the login bug',
        workspace: { source: 'local', path: '/repos/app' },
        agent: { driver: 'claude-code', env: {}, idleTimeoutMs: 600_000 },
        sandbox: { mode: 'auto', network: true },
        convergence: {
          strategy: 'fixed',
          config: { iterations: 3 },
          limits: { maxIterations: 3, maxWallClockMs: 3_600_000 },
        },
        delivery: {
          kind: 'local',
          branchPrefix: 'agentgate/',
          push: false,
          pr: { create: false, draft: false, labels: [], reviewers: [] },
          ci: { wait: false, timeoutMs: 1_800_000, pollIntervalMs: 30_000, retryOnFailure: true },
        },
        labels: {},
      };
      expect(resolved).toEqual(expected);
    });
  });

  describe('when every section is written out', () => {
    const FULL_YAML = `apiVersion: agentgate.io/v1
kind: TaskSpec
metadata:
  name: add-endpoint
  labels: { team: core, priority: 1 }
spec:
  goal:
    prompt: |
      Add a /health endpoint.
    context: The server uses Fastify.
  convergence:
    strategy: hybrid
    config:
      bonusIterations: 4
    limits:
      maxIterations: 8
      maxWallClock: 1h30m
      maxTokens: 200000
      maxCostUsd: 2.5
      idleTimeout: 5m
  execution:
    workspace:
      source: github
      repo: acme/api
      ref: main
    agent:
      driver: claude-code
      model: claude-sonnet-4
      maxTurns: 40
      allowedTools: [Read, Edit, Bash]
      env: { NODE_ENV: test, RETRIES: 2 }
      baseUrl: https://llm.internal.example
  delivery:
    git: { branchPrefix: bots/ }
    pr: { create: true, draft: true, title: Add health endpoint, labels: [bot], reviewers: [alice] }
    ci: { wait: true, timeout: 45m, pollInterval: 1m, retryOnFailure: false }
  verify:
    version: "1"
    tests:
      - { name: test, command: npm test }
`;

    it('keeps every value and converts durations to milliseconds', () => {
      const resolved = resolveTaskSpec(parseTaskSpecYaml(FULL_YAML, 'full.yaml'));
      expect(resolved).toMatchObject({
        name: 'add-endpoint',
        prompt: 'Add a /health endpoint.',
        context: 'The server uses Fastify.',
        labels: { team: 'core', priority: '1' },
        workspace: { source: 'github', repo: 'acme/api', owner: 'acme', name: 'api', ref: 'main' },
        agent: {
          driver: 'claude-code',
          model: 'claude-sonnet-4',
          maxTurns: 40,
          allowedTools: ['Read', 'Edit', 'Bash'],
          env: { NODE_ENV: 'test', RETRIES: '2' },
          baseUrl: 'https://llm.internal.example',
          idleTimeoutMs: 300_000,
        },
        convergence: {
          strategy: 'hybrid',
          config: { baseIterations: 3, bonusIterations: 4, progressThreshold: 0.1 },
          limits: { maxIterations: 8, maxWallClockMs: 5_400_000, maxTokens: 200_000, maxCostUsd: 2.5 },
        },
        delivery: {
          kind: 'github',
          branchPrefix: 'bots/',
          push: true,
          pr: { create: true, draft: true, title: 'Add health endpoint', labels: ['bot'], reviewers: ['alice'] },
          ci: { wait: true, timeoutMs: 2_700_000, pollIntervalMs: 60_000, retryOnFailure: false },
        },
      });
      expect(resolved.verify?.tests).toEqual([{ name: 'test', command: 'npm test', timeout: 300, expectedExit: 0 }]);
    });
  });

  it('resolves ralph defaults and an explicit fixed iteration count', () => {
    const ralph = minimal();
    ralph.spec.convergence = { strategy: 'ralph' };
    expect(resolveTaskSpec(ralph).convergence).toMatchObject({ strategy: 'ralph', config: { windowSize: 3, similarityThreshold: 0.95, minIterations: 1 } });

    const fixed = minimal();
    fixed.spec.convergence = { config: { iterations: 2 }, limits: { maxIterations: 5 } };
    expect(resolveTaskSpec(fixed).convergence).toEqual({
      strategy: 'fixed',
      config: { iterations: 2 },
      limits: { maxIterations: 5, maxWallClockMs: 3_600_000 },
    });

    const manual = minimal();
    manual.spec.convergence = { strategy: 'manual' };
    expect(resolveTaskSpec(manual).convergence).toMatchObject({ strategy: 'manual', config: {} });
  });

  it('derives gitlab delivery from a gitlab workspace with a merge request', () => {
    const spec = minimal();
    spec.spec.execution.workspace = { source: 'gitlab', project: 'group/sub/app' };
    spec.spec.delivery = { pr: { create: true } };
    expect(resolveTaskSpec(spec).delivery).toMatchObject({ kind: 'gitlab', push: true });
  });

  it('keeps local delivery for a github workspace without a PR, pushing only when asked', () => {
    const spec = minimal();
    spec.spec.execution.workspace = { source: 'github', repo: 'acme/api' };
    spec.spec.delivery = { git: { push: true, remote: 'origin' } };
    expect(resolveTaskSpec(spec).delivery).toMatchObject({ kind: 'local', push: true, remote: 'origin' });
  });

  it('is idempotent: resolving a parsed spec equals resolving its input', () => {
    const input = minimal();
    expect(resolveTaskSpec(parseTaskSpec(input))).toEqual(resolveTaskSpec(input));
  });

  describe('when invalid', () => {
    it('names the path, file and line of an invalid duration', () => {
      const text = MINIMAL_YAML.replace('spec:\n', 'spec:\n  convergence:\n    limits:\n      maxWallClock: abc\n');
      const error = thrownAgentGateError(() => parseTaskSpecYaml(text, 'task.yaml'));
      expect(error.code).toBe('AG_ERR_SCHEMA_INVALID');
      expect(error.message).toBe(
        'task.yaml:8: spec.convergence.limits.maxWallClock: invalid duration "abc" (use e.g. 30m, 1h, 90s, 1h30m, 500ms or a number of seconds)',
      );
      expect(error.details?.issues).toEqual([
        { path: 'spec.convergence.limits.maxWallClock', message: expect.stringContaining('invalid duration "abc"') as string, line: 8 },
      ]);
    });

    it('reports a missing prompt at the goal key', () => {
      const text = MINIMAL_YAML.replace('    prompt: Fix the login bug\n', '    context: nothing else\n');
      const error = thrownAgentGateError(() => parseTaskSpecYaml(text, 'task.yaml'));
      expect(error.message).toBe('task.yaml:6: spec.goal.prompt: required');
    });

    it('rejects an empty prompt', () => {
      const spec = minimal();
      spec.spec.goal.prompt = '   ';
      expect(thrownAgentGateError(() => parseTaskSpec(spec)).message).toBe('spec.goal.prompt: must not be empty');
    });

    it('requires a command for the command driver, pointing at the agent block', () => {
      const text = `${MINIMAL_YAML}    agent:\n      driver: command\n`;
      const error = thrownAgentGateError(() => parseTaskSpecYaml(text, 'task.yaml'));
      expect(error.message).toBe('task.yaml:12: spec.execution.agent.command: required when driver is "command" (the shell command that runs the agent)');
    });

    it('names the line of a YAML syntax error', () => {
      const text = MINIMAL_YAML.replace('    prompt: Fix the login bug\n', '    prompt: Fix: the login bug\n');
      const error = thrownAgentGateError(() => parseTaskSpecYaml(text, 'task.yaml'));
      expect(error.code).toBe('AG_ERR_YAML_PARSE');
      expect(error.message).toMatch(/^task\.yaml:7:\d+: invalid YAML: /);
    });

    it('rejects an unknown strategy and lists the valid ones', () => {
      const spec = minimal();
      spec.spec.convergence = { strategy: 'greedy' as 'fixed' };
      expect(thrownAgentGateError(() => parseTaskSpec(spec)).message).toBe('spec.convergence.strategy: expected one of "fixed", "hybrid", "ralph", "manual", got "greedy"');
    });

    it('rejects parameters of another strategy', () => {
      const text = MINIMAL_YAML.replace('spec:\n', 'spec:\n  convergence:\n    strategy: fixed\n    config:\n      windowSize: 3\n');
      const error = thrownAgentGateError(() => parseTaskSpecYaml(text, 'task.yaml'));
      expect(error.message).toBe('task.yaml:9: spec.convergence.config.windowSize: unknown key (allowed: iterations)');
    });

    it('rejects a typo in a key instead of ignoring it', () => {
      const spec = { ...minimal(), spec: { ...minimal().spec, delivery: { ci: { wiat: true } } } };
      expect(thrownAgentGateError(() => parseTaskSpec(spec)).message).toBe('spec.delivery.ci.wiat: unknown key (allowed: pollInterval, retryOnFailure, timeout, wait)');
    });

    it('rejects a wrong apiVersion, kind and a missing workspace together', () => {
      const error = thrownAgentGateError(() => parseTaskSpec({ apiVersion: 'v2', kind: 'Task', metadata: { name: 'x' }, spec: { goal: { prompt: 'p' }, execution: {} } }));
      expect(error.details?.issues).toEqual([
        { path: 'apiVersion', message: 'expected "agentgate.io/v1", got "v2"' },
        { path: 'kind', message: 'expected "TaskSpec", got "Task"' },
        { path: 'spec.execution.workspace', message: 'required' },
      ]);
    });

    it('rejects a workspace with an unknown source', () => {
      const spec = minimal();
      spec.spec.execution.workspace = { source: 'svn', path: 'x' } as unknown as TaskSpecInput['spec']['execution']['workspace'];
      expect(thrownAgentGateError(() => parseTaskSpec(spec)).message).toBe('spec.execution.workspace.source: expected one of "local", "git", "github", "gitlab", got "svn"');
    });

    it('rejects a malformed GitHub repo and a ref that git could read as an option', () => {
      const spec = minimal();
      spec.spec.execution.workspace = { source: 'github', repo: 'acme', ref: '--upload-pack=evil' };
      const error = thrownAgentGateError(() => parseTaskSpec(spec));
      expect(error.message).toContain('spec.execution.workspace.repo: expected "owner/name", got "acme"');
      expect(error.message).toContain('spec.execution.workspace.ref: not a valid git ref: "--upload-pack=evil"');
    });

    it('refuses a pull request on a local workspace rather than silently skipping it', () => {
      const spec = minimal();
      spec.spec.delivery = { pr: { create: true } };
      expect(thrownAgentGateError(() => parseTaskSpec(spec)).message).toBe(
        'spec.delivery.pr.create: opening a pull/merge request needs a github or gitlab workspace, got local',
      );
    });

    it('rejects out-of-range limits and thresholds', () => {
      const spec = minimal();
      spec.spec.convergence = { strategy: 'ralph', config: { similarityThreshold: 1.5 }, limits: { maxIterations: 0, maxCostUsd: -1 } };
      expect(thrownAgentGateError(() => parseTaskSpec(spec)).details?.issues).toEqual([
        { path: 'spec.convergence.config.similarityThreshold', message: 'must be <= 1' },
        { path: 'spec.convergence.limits.maxIterations', message: 'must be >= 1' },
        { path: 'spec.convergence.limits.maxCostUsd', message: 'must be > 0' },
      ]);
    });

    it('rejects agent env names that cannot be environment variables', () => {
      const spec = minimal();
      spec.spec.execution.agent = { driver: 'codex', env: { 'BAD-NAME': 'x' } };
      expect(thrownAgentGateError(() => parseTaskSpec(spec)).message).toContain('spec.execution.agent.env.BAD-NAME: not a valid environment variable name');
    });

    it('validates the inline verify config with the verify.yaml rules', () => {
      const text = `${MINIMAL_YAML}  verify:\n    blackbox:\n      - name: cli\n        command: ./cli\n        assertions:\n          - matches: "(unclosed"\n`;
      const error = thrownAgentGateError(() => parseTaskSpecYaml(text, 'task.yaml'));
      expect(error.code).toBe('AG_ERR_SCHEMA_INVALID');
      expect(error.message).toMatch(/^task\.yaml:17: spec\.verify\.blackbox\[0\]\.assertions\[0\]\.matches: invalid regular expression "\(unclosed"/);
    });
  });

  it('can be described as JSON Schema for the OpenAPI docs (request side)', () => {
    for (const schema of [TaskSpecSchema, WorkOrderBodySchema, VerifyConfigSchema]) {
      expect(z.toJSONSchema(schema, { io: 'input' })).toHaveProperty('type', 'object');
    }
  });
});

describe('prompt size', () => {
  it('rejects a prompt longer than agents can receive as one argument', () => {
    const doc = (prompt: string) => ({
      apiVersion: 'agentgate.io/v1',
      kind: 'TaskSpec',
      metadata: { name: 'big' },
      spec: { goal: { prompt }, execution: { workspace: { source: 'local', path: '/tmp/x' }, agent: { driver: 'claude-code' } } },
    });
    expect(parseTaskSpec(doc('x'.repeat(MAX_PROMPT_CHARS))).spec.goal.prompt).toHaveLength(MAX_PROMPT_CHARS);
    expect(() => parseTaskSpec(doc('x'.repeat(MAX_PROMPT_CHARS + 1)))).toThrow(/spec\.goal\.prompt: must be at most 32768 characters/);
  });
});
