import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createGitHubDeliveryManager } from '../../src/delivery/github.js';
import { resolveTaskSpec, type ResolvedTaskSpec } from '../../src/schemas/resolve.js';
import type { TaskSpecInput } from '../../src/schemas/task-spec.js';
import { systemClock } from '../../src/util/clock.js';
import { WorkspaceManager } from '../../src/workspace/manager.js';
import { githubCloneBaseFromApiUrl } from '../../src/workspace/git-remote.js';
import { actionsLog, GitHubEmulator, type CiScript } from '../fixtures/forge/github-emulator.js';
import { forgeEngine, type ForgeEngine } from '../fixtures/forge/forge-engine.js';
import { AGENTS, makeRepo, writeAgent, type TempRepo } from '../helpers/git-repo.js';
import { describeDeliveryConformance } from './conformance.js';

const TOKEN = 'ghp_emulatorToken0123456789abcdefghijklmnop';
const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn();
});

function git(cwd: string, ...args: string[]): string {
  return execFileSync('git', args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
}

interface Scenario {
  repo: TempRepo;
  bare: string;
  emulator: GitHubEmulator;
  forge: ForgeEngine;
}

async function scenario(ci: CiScript[], files: Record<string, string> = {}): Promise<Scenario> {
  const repo = makeRepo(files);
  cleanups.push(() => repo.cleanup());
  const bare = join(repo.root, 'origin.git');
  git(repo.root, 'clone', '--quiet', '--bare', repo.repo, bare);
  const emulator = await GitHubEmulator.start({ owner: 'acme', repo: 'calc', bareRepo: bare, token: TOKEN, ci });
  cleanups.push(() => emulator.close());
  const forge = await forgeEngine(repo.home, { AGENTGATE_GITHUB_TOKEN: TOKEN, AGENTGATE_GITHUB_API_URL: emulator.url });
  cleanups.push(() => forge.close());
  return { repo, bare, emulator, forge };
}

/** The correct implementation, plus a file that changes every iteration and the feedback the agent got. */
function agent(repo: TempRepo, extra = ''): string {
  return writeAgent(
    repo.root,
    'agent',
    `${AGENTS.correct}\necho "$AGENTGATE_ITERATION" > iteration.txt\nprintf '%s' "$AGENTGATE_FEEDBACK" > "${repo.root}/feedback-$AGENTGATE_ITERATION.txt"\n${extra}`,
  );
}

function githubTask(agentPath: string, delivery: NonNullable<TaskSpecInput['spec']['delivery']>, limits: Record<string, unknown> = {}): ResolvedTaskSpec {
  return resolveTaskSpec({
    apiVersion: 'agentgate.io/v1',
    kind: 'TaskSpec',
    metadata: { name: 'github delivery' },
    spec: {
      goal: { prompt: 'Implement add and multiply\n\nin src/math.js' },
      convergence: { strategy: 'fixed', limits: { maxIterations: 3, ...limits } },
      execution: { workspace: { source: 'github', repo: 'acme/calc' }, agent: { driver: 'command', command: agentPath }, sandbox: { mode: 'none' } },
      delivery,
    },
  });
}

const WAIT = { pr: { create: true }, ci: { wait: true, pollInterval: '20ms', timeout: '20s' } } as const;

describe('GitHub delivery through the engine', () => {
  describe('when CI passes', () => {
    it('opens a draft PR, marks it ready once CI passed, and succeeds with the PR URL in the run record', async () => {
      const { repo, bare, emulator, forge } = await scenario([{ kind: 'pass' }]);
      const outcome = await forge.engine.run(githubTask(agent(repo), WAIT));
      expect(outcome).toMatchObject({ state: 'succeeded', result: 'passed', iterations: 1, prUrl: 'https://github.example/acme/calc/pull/1' });
      expect(emulator.pulls).toHaveLength(1);
      const pull = emulator.pulls[0];
      expect(pull).toMatchObject({ head: outcome.branch, base: 'main', draft: false, title: 'Implement add and multiply' });
      expect(pull?.body).toContain('| `unit-tests` | passed |');
      expect(pull?.body).toContain('Iterations: 1');
      // The branch really landed in the repository behind clone_url.
      expect(git(bare, 'rev-parse', `refs/heads/${outcome.branch}`)).toMatch(/^[0-9a-f]{40}$/);
      expect(emulator.count('POST', '/pulls')).toBe(1);
      expect(emulator.schemaErrors).toEqual([]);
      const run = await forge.runtime.repos.runs.get(outcome.runId);
      expect(run?.meta['prUrl']).toBe(outcome.prUrl);
      expect(run?.meta['delivery']).toMatchObject({ kind: 'github', branch: outcome.branch, pushedTo: `file://${bare}` });
      // The token is in no stored event, no stored remote, no PR body.
      const stored = JSON.stringify(forge.events) + JSON.stringify(run) + readFileSync(join(bare, 'config'), 'utf8') + JSON.stringify(emulator.pulls);
      expect(stored).not.toContain(TOKEN);
      expect(forge.events.some((e) => e.type === 'ci_status' && (e.data as { status: string }).status === 'passed')).toBe(true);
    });
  });

  describe('when CI fails once, then passes', () => {
    it('feeds the failing job’s error lines back, pushes iteration 2 to the same branch and reuses the PR', async () => {
      const log = actionsLog('npm test', ['FAIL test/math.test.js > multiply', 'AssertionError: expected 6 to equal 7']);
      const { repo, bare, emulator, forge } = await scenario([{ kind: 'fail', job: 'unit', step: 'npm test', log }, { kind: 'pass' }]);
      const outcome = await forge.engine.run(githubTask(agent(repo), WAIT));
      expect(outcome).toMatchObject({ state: 'succeeded', result: 'passed', iterations: 2 });
      const feedback = readFileSync(join(repo.root, 'feedback-2.txt'), 'utf8');
      expect(feedback).toContain('CI failed');
      expect(feedback).toContain('Failing step: npm test');
      expect(feedback).toContain('AssertionError: expected 6 to equal 7');
      expect(emulator.pulls).toHaveLength(1);
      expect(emulator.count('POST', '/pulls')).toBe(1);
      expect(emulator.pulls[0]?.draft).toBe(false);
      expect(git(bare, 'rev-list', '--count', `main..refs/heads/${outcome.branch}`)).toBe('2');
      expect(emulator.schemaErrors).toEqual([]);
    });
  });

  describe('the seed’s Bug #65: CI fails and the run may not retry', () => {
    it('fails as failed_verification saying CI failed when retryOnFailure is off', async () => {
      const log = actionsLog('npm test', ['Error: boom']);
      const { repo, forge, emulator } = await scenario([{ kind: 'fail', job: 'unit', step: 'npm test', log }]);
      const outcome = await forge.engine.run(githubTask(agent(repo), { ...WAIT, ci: { ...WAIT.ci, retryOnFailure: false } }));
      expect(outcome).toMatchObject({ state: 'failed', result: 'failed_verification', iterations: 1 });
      expect(outcome.error?.code).toBe('AG_ERR_VERIFY_FAILED');
      expect(outcome.error?.message).toContain('CI failed');
      expect(emulator.pulls[0]?.draft).toBe(true);
    });

    it('fails as failed_verification saying CI failed when the iterations are used up', async () => {
      const log = actionsLog('npm test', ['Error: boom']);
      const { repo, forge } = await scenario([{ kind: 'fail', job: 'unit', step: 'npm test', log }]);
      const outcome = await forge.engine.run(githubTask(agent(repo), WAIT, { maxIterations: 2 }));
      expect(outcome).toMatchObject({ state: 'failed', result: 'failed_verification', iterations: 2 });
      expect(outcome.error?.message).toContain('CI failed');
    });
  });

  describe('when CI never finishes or does not exist', () => {
    it('fails as failed_timeout when CI is still running at ci.timeout', async () => {
      const { repo, forge } = await scenario([{ kind: 'pending' }]);
      const outcome = await forge.engine.run(githubTask(agent(repo), { ...WAIT, ci: { ...WAIT.ci, timeout: '300ms' } }));
      expect(outcome).toMatchObject({ state: 'failed', result: 'failed_timeout' });
      expect(outcome.error?.code).toBe('AG_ERR_DELIVERY_CI_TIMEOUT');
      expect(outcome.error?.message).toContain(outcome.branch);
    });

    it('succeeds when the repository has no CI (none, not failure)', async () => {
      const { repo, forge, emulator } = await scenario([{ kind: 'none' }]);
      const outcome = await forge.engine.run(githubTask(agent(repo), WAIT));
      expect(outcome).toMatchObject({ state: 'succeeded', result: 'passed' });
      expect(emulator.count('GET', '/check-runs')).toBeLessThanOrEqual(5);
    });

    it('feeds a failed commit status back like a failed check run', async () => {
      const { repo, forge } = await scenario([{ kind: 'status_fail', context: 'ci/jenkins', description: 'Build #12 failed: lint errors' }, { kind: 'pass' }]);
      const outcome = await forge.engine.run(githubTask(agent(repo), WAIT));
      expect(outcome).toMatchObject({ state: 'succeeded', iterations: 2 });
      expect(readFileSync(join(repo.root, 'feedback-2.txt'), 'utf8')).toContain('Build #12 failed: lint errors');
    });
  });

  describe('when the API answers 403 rate-limited and 502 for a while', () => {
    it('waits as the headers say, then succeeds with a bounded number of requests', async () => {
      const { repo, forge, emulator } = await scenario([{ kind: 'pass' }]);
      emulator.faults = { rateLimited: 2, badGateway: 4 };
      const outcome = await forge.engine.run(githubTask(agent(repo), WAIT));
      expect(outcome).toMatchObject({ state: 'succeeded', result: 'passed' });
      expect(emulator.requests.filter((r) => r.status === 403)).toHaveLength(2);
      expect(emulator.requests.filter((r) => r.status === 502)).toHaveLength(4);
      expect(emulator.requests.length).toBeLessThan(40);
    });
  });

  describe('when the diff contains a private key', () => {
    it('blocks delivery naming the file, pushes nothing and opens no PR', async () => {
      const { repo, bare, forge, emulator } = await scenario([{ kind: 'pass' }]);
      const key = ['-----BEGIN RSA PRIVATE KEY-----', 'MIIEowIBAAKCAQEAx', '-----END RSA PRIVATE KEY-----'].join('\\n');
      const outcome = await forge.engine.run(githubTask(agent(repo, `mkdir -p deploy && printf '%b\\n' '${key}' > deploy/id.txt`), WAIT));
      expect(outcome).toMatchObject({ state: 'failed', result: 'failed_error' });
      expect(outcome.error?.code).toBe('AG_ERR_DELIVERY_SECRET_DETECTED');
      expect(outcome.error?.message).toContain('a private key in deploy/id.txt');
      expect(outcome.error?.message).toContain(outcome.branch);
      expect(git(bare, 'for-each-ref', 'refs/heads/agentgate/')).toBe('');
      expect(emulator.pulls).toEqual([]);
      const run = await forge.runtime.repos.runs.get(outcome.runId);
      expect(run?.meta['delivery']).toMatchObject({ branch: outcome.branch, failed: { code: 'AG_ERR_DELIVERY_SECRET_DETECTED' } });
    });
  });

  describe('when the run times out before delivery', () => {
    it('still pushes its last snapshot as a work-in-progress branch and says so in the run record', async () => {
      const { repo, bare, forge, emulator } = await scenario([{ kind: 'pass' }]);
      // Iteration 1 fails its gates (nothing implemented), iteration 2 hangs until the wall clock ends the run.
      const slow = writeAgent(repo.root, 'slow', `echo "$AGENTGATE_ITERATION" > iteration.txt\nif [ "$AGENTGATE_ITERATION" = 2 ]; then sleep 30; fi`);
      const outcome = await forge.engine.run(githubTask(slow, WAIT, { maxWallClock: '4s' }));
      expect(outcome).toMatchObject({ state: 'failed', result: 'failed_timeout' });
      const pushed = git(bare, 'rev-parse', `refs/heads/${outcome.branch}`);
      expect(pushed).toMatch(/^[0-9a-f]{40}$/);
      const run = await forge.runtime.repos.runs.get(outcome.runId);
      expect(run?.meta['delivery']).toMatchObject({ branch: outcome.branch, workInProgress: { pushed: true, result: 'failed_timeout', sha: pushed } });
      expect(emulator.pulls).toEqual([]);
    }, 20_000);
  });
});

describe('GitHub delivery at submission', () => {
  it('is rejected naming the token when GitHub is not configured', async () => {
    const repo = makeRepo();
    cleanups.push(() => repo.cleanup());
    const forge = await forgeEngine(repo.home, {});
    cleanups.push(() => forge.close());
    expect(() => forge.delivery.validate(githubTask('/bin/true', WAIT))).toThrow(/spec\.delivery\.pr\.create: .*AGENTGATE_GITHUB_TOKEN/);
  });
});

describeDeliveryConformance('github', async () => {
  const emulator = await GitHubEmulator.start({ owner: 'acme', repo: 'calc', bareRepo: '/nonexistent', token: TOKEN });
  const manager = createGitHubDeliveryManager({ token: TOKEN, apiUrl: emulator.url, retry: { maxAttempts: 2, baseDelayMs: 1 }, clientRetryBaseMs: 1 });
  return {
    manager,
    setup: (env) => {
      // The forge repository is the suite's bare remote, seeded with the source's main branch.
      git(env.sourceRepo, 'push', '--quiet', env.bareRemote, 'main:main');
      git(env.bareRemote, 'symbolic-ref', 'HEAD', 'refs/heads/main');
      emulator.setBareRepo(env.bareRemote);
      const workspaces = new WorkspaceManager({
        home: env.home,
        github: { token: TOKEN, baseUrl: githubCloneBaseFromApiUrl(emulator.url), cloneUrl: (repo, signal) => manager.cloneUrl(repo, signal, systemClock) },
      });
      return Promise.resolve({
        pushingSpec: githubTask('/bin/true', { pr: { create: true } }),
        acquire: (spec: ResolvedTaskSpec, runId: string) => {
          if (spec.workspace.source !== 'github') throw new Error('github conformance uses github workspaces');
          return workspaces.acquire(spec.workspace, { runId, signal: new AbortController().signal });
        },
      });
    },
    dispose: () => emulator.close(),
  };
});
