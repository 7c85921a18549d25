/**
 * Admission of `local` workspaces (issue 14, "Workspaces across machines"): a path the admitting node
 * cannot reach is refused before anything is stored, and a deployment whose workers run elsewhere
 * (`AGENTGATE_LOCAL_WORKSPACES=deny`) refuses every local path with an error naming the alternative.
 */
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/observability/logger.js';
import { createRuntime } from '../../src/runtime.js';
import { loadConfig } from '../../src/schemas/config.js';
import { thrownAgentGateError } from '../helpers/errors.js';
import { AGENTS, makeRepo, writeAgent, type TempRepo } from '../helpers/git-repo.js';
import { commandTask } from '../helpers/tasks.js';

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn();
});

async function runtimeFor(repo: TempRepo, env: Record<string, string> = {}) {
  const runtime = await createRuntime({ config: loadConfig({ AGENTGATE_HOME: repo.home, ...env }), logger: silentLogger(), baseEnv: { ...process.env } });
  cleanups.push(() => runtime.close());
  return runtime;
}

describe('local workspaces at admission', () => {
  it('refuses a path that is not a directory on this node, naming it, and stores nothing', async () => {
    const repo = makeRepo();
    cleanups.push(() => repo.cleanup());
    const runtime = await runtimeFor(repo);
    const missing = join(repo.root, 'not-here');
    const error = thrownAgentGateError(() => runtime.engine.admit(commandTask(missing, 'true')));
    expect(error.code).toBe('AG_ERR_WORKSPACE_NOT_A_REPO');
    expect(error.status).toBe(400);
    expect(error.message).toContain(missing);
    await expect(runtime.queue.submit({ spec: commandTask(missing, 'true'), source: 'task_spec' } as Parameters<typeof runtime.queue.submit>[0])).rejects.toMatchObject({ code: 'AG_ERR_WORKSPACE_NOT_A_REPO' });
    expect((await runtime.repos.workOrders.list({ limit: 10, offset: 0 })).total).toBe(0);
  });

  it('with AGENTGATE_LOCAL_WORKSPACES=deny, refuses every local path and points at remote sources; remote specs are unaffected', async () => {
    const repo = makeRepo();
    cleanups.push(() => repo.cleanup());
    const runtime = await runtimeFor(repo, { AGENTGATE_LOCAL_WORKSPACES: 'deny' });
    const error = thrownAgentGateError(() => runtime.engine.admit(commandTask(repo.repo, `sh ${writeAgent(repo.root, 'a', AGENTS.correct)}`)));
    expect(error.code).toBe('AG_ERR_WORKSPACE_LOCAL_REFUSED');
    expect(error.message).toMatch(/use a git, github or gitlab source/);
    expect(() => runtime.engine.admit({ ...commandTask(repo.repo, 'true'), workspace: { source: 'git', url: `file://${repo.repo}` } } as ReturnType<typeof commandTask>)).not.toThrow();
  });

  it('rejects an unknown AGENTGATE_LOCAL_WORKSPACES value with the variable named', () => {
    expect(() => loadConfig({ AGENTGATE_HOME: '/tmp/x', AGENTGATE_LOCAL_WORKSPACES: 'sometimes' })).toThrow(/AGENTGATE_LOCAL_WORKSPACES: expected allow or deny/);
  });
});
