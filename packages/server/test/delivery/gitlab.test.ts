import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createGitLabDeliveryManager } from '../../src/delivery/gitlab.js';
import { resolveTaskSpec, type ResolvedTaskSpec } from '../../src/schemas/resolve.js';
import type { TaskSpecInput } from '../../src/schemas/task-spec.js';
import { systemClock } from '../../src/util/clock.js';
import { WorkspaceManager } from '../../src/workspace/manager.js';
import { forgeEngine, type ForgeEngine } from '../fixtures/forge/forge-engine.js';
import { GitLabEmulator, gitlabTrace, type GitLabCi } from '../fixtures/forge/gitlab-emulator.js';
import { AGENTS, makeRepo, writeAgent, type TempRepo } from '../helpers/git-repo.js';
import { describeDeliveryConformance } from './conformance.js';

const TOKEN = 'glpat-emulatorToken0123456789abcdef';
const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn();
});

function git(cwd: string, ...args: string[]): string {
  return execFileSync('git', args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
}

async function scenario(ci: GitLabCi[]): Promise<{ repo: TempRepo; bare: string; emulator: GitLabEmulator; forge: ForgeEngine }> {
  const repo = makeRepo();
  cleanups.push(() => repo.cleanup());
  const bare = join(repo.root, 'origin.git');
  git(repo.root, 'clone', '--quiet', '--bare', repo.repo, bare);
  const emulator = await GitLabEmulator.start({ project: 'acme/calc', bareRepo: bare, token: TOKEN, ci });
  cleanups.push(() => emulator.close());
  const forge = await forgeEngine(repo.home, { AGENTGATE_GITLAB_TOKEN: TOKEN, AGENTGATE_GITLAB_URL: emulator.url });
  cleanups.push(() => forge.close());
  return { repo, bare, emulator, forge };
}

function agent(repo: TempRepo): string {
  return writeAgent(repo.root, 'agent', `${AGENTS.correct}\necho "$AGENTGATE_ITERATION" > iteration.txt\nprintf '%s' "$AGENTGATE_FEEDBACK" > "${repo.root}/feedback-$AGENTGATE_ITERATION.txt"`);
}

function gitlabTask(agentPath: string, delivery: NonNullable<TaskSpecInput['spec']['delivery']>): ResolvedTaskSpec {
  return resolveTaskSpec({
    apiVersion: 'agentgate.io/v1',
    kind: 'TaskSpec',
    metadata: { name: 'gitlab delivery' },
    spec: {
      goal: { prompt: 'Implement add and multiply' },
      convergence: { strategy: 'fixed', limits: { maxIterations: 3 } },
      execution: { workspace: { source: 'gitlab', project: 'acme/calc' }, agent: { driver: 'command', command: agentPath }, sandbox: { mode: 'none' } },
      delivery,
    },
  });
}

const WAIT = { pr: { create: true }, ci: { wait: true, pollInterval: '20ms', timeout: '20s' } } as const;

describe('GitLab delivery through the engine', () => {
  it('opens a Draft MR, drops Draft once the pipeline passed, and succeeds with the MR URL', async () => {
    const { repo, bare, emulator, forge } = await scenario([{ kind: 'pass' }]);
    const outcome = await forge.engine.run(gitlabTask(agent(repo), WAIT));
    expect(outcome).toMatchObject({ state: 'succeeded', result: 'passed', prUrl: 'https://gitlab.example/acme/calc/-/merge_requests/1' });
    expect(emulator.mergeRequests).toHaveLength(1);
    expect(emulator.mergeRequests[0]).toMatchObject({ title: 'Implement add and multiply', source_branch: outcome.branch, target_branch: 'main' });
    expect(git(bare, 'rev-parse', `refs/heads/${outcome.branch}`)).toMatch(/^[0-9a-f]{40}$/);
    expect(JSON.stringify(forge.events) + readFileSync(join(bare, 'config'), 'utf8')).not.toContain(TOKEN);
  });

  it('feeds the failed job’s trace back, pushes iteration 2 to the same branch and reuses the MR', async () => {
    const trace = gitlabTrace(['FAIL test/math.test.js', 'AssertionError [ERR_ASSERTION]: 6 == 7']);
    const { repo, bare, emulator, forge } = await scenario([{ kind: 'fail', job: 'unit', stage: 'test', trace }, { kind: 'pass' }]);
    const outcome = await forge.engine.run(gitlabTask(agent(repo), WAIT));
    expect(outcome).toMatchObject({ state: 'succeeded', iterations: 2 });
    const feedback = readFileSync(join(repo.root, 'feedback-2.txt'), 'utf8');
    expect(feedback).toContain('CI failed');
    expect(feedback).toContain('Failing step: step_script');
    expect(feedback).toContain('AssertionError [ERR_ASSERTION]: 6 == 7');
    expect(feedback).not.toContain(String.fromCharCode(27));
    expect(emulator.mergeRequests).toHaveLength(1);
    expect(emulator.count('POST', '/merge_requests')).toBe(1);
    expect(emulator.mergeRequests[0]?.title.startsWith('Draft: ')).toBe(false);
    expect(git(bare, 'rev-list', '--count', `main..refs/heads/${outcome.branch}`)).toBe('2');
  });

  it('fails as failed_verification saying CI failed when the pipeline fails with retry off (Bug #65)', async () => {
    const trace = gitlabTrace(['Error: boom']);
    const { repo, forge, emulator } = await scenario([{ kind: 'fail', job: 'unit', stage: 'test', trace }]);
    const outcome = await forge.engine.run(gitlabTask(agent(repo), { ...WAIT, ci: { ...WAIT.ci, retryOnFailure: false } }));
    expect(outcome).toMatchObject({ state: 'failed', result: 'failed_verification' });
    expect(outcome.error?.message).toContain('CI failed');
    expect(emulator.mergeRequests[0]?.title.startsWith('Draft: ')).toBe(true);
  });

  it('waits out 429 and 502 answers and succeeds', async () => {
    const { repo, forge, emulator } = await scenario([{ kind: 'pass' }]);
    emulator.faults = { tooMany: 3, badGateway: 3 };
    const outcome = await forge.engine.run(gitlabTask(agent(repo), WAIT));
    expect(outcome).toMatchObject({ state: 'succeeded' });
    expect(emulator.requests.length).toBeLessThan(40);
  });
});

describeDeliveryConformance('gitlab', async () => {
  const emulator = await GitLabEmulator.start({ project: 'acme/calc', bareRepo: '/nonexistent', token: TOKEN });
  const manager = createGitLabDeliveryManager({ token: TOKEN, url: emulator.url, retry: { maxAttempts: 2, baseDelayMs: 1 } });
  return {
    manager,
    setup: (env) => {
      git(env.sourceRepo, 'push', '--quiet', env.bareRemote, 'main:main');
      git(env.bareRemote, 'symbolic-ref', 'HEAD', 'refs/heads/main');
      emulator.setBareRepo(env.bareRemote);
      const workspaces = new WorkspaceManager({ home: env.home, gitlab: { token: TOKEN, baseUrl: emulator.url, cloneUrl: (project, signal) => manager.cloneUrl(project, signal, systemClock) } });
      return Promise.resolve({
        pushingSpec: gitlabTask('/bin/true', { pr: { create: true } }),
        acquire: (spec: ResolvedTaskSpec, runId: string) => {
          if (spec.workspace.source !== 'gitlab') throw new Error('gitlab conformance uses gitlab workspaces');
          return workspaces.acquire(spec.workspace, { runId, signal: new AbortController().signal });
        },
      });
    },
    dispose: () => emulator.close(),
  };
});
