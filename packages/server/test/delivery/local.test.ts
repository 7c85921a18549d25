import { execFileSync } from 'node:child_process';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LOCAL_DELIVERY_CAPABILITIES, LocalDeliveryManager, createLocalDeliveryManager } from '../../src/delivery/local.js';
import type { DeliveryManager, PreparedDeliveryContext } from '../../src/delivery/manager.js';
import { createDeliveryRegistry } from '../../src/delivery/registry.js';
import { resolveTaskSpec, type ResolvedTaskSpec } from '../../src/schemas/resolve.js';
import type { TaskSpecInput } from '../../src/schemas/task-spec.js';
import { WorkspaceManager } from '../../src/workspace/manager.js';
import type { Workspace } from '../../src/workspace/types.js';
import { thrownAgentGateError } from '../helpers/errors.js';
import {
  branchSha,
  commitIteration,
  deliveryContext,
  describeDeliveryConformance,
  expectFailure,
  expectOk,
  iterationContext,
  makeDeliveryEnv,
  type DeliveryConformanceEnv,
} from './conformance.js';

type Delivery = NonNullable<TaskSpecInput['spec']['delivery']>;
type WorkspaceInput = TaskSpecInput['spec']['execution']['workspace'];

function task(workspace: WorkspaceInput, delivery: Delivery = {}): ResolvedTaskSpec {
  return resolveTaskSpec({
    apiVersion: 'agentgate.io/v1',
    kind: 'TaskSpec',
    metadata: { name: 'delivery test' },
    spec: { goal: { prompt: 'Do the thing' }, execution: { workspace }, delivery },
  });
}

function git(cwd: string, ...args: string[]): string {
  return execFileSync('git', args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
}

const REMOTE = 'delivery';

async function acquire(env: DeliveryConformanceEnv, spec: ResolvedTaskSpec, runId: string): Promise<Workspace> {
  if (spec.workspace.source !== 'local') throw new Error('local delivery tests use local workspaces');
  return new WorkspaceManager({ home: env.home }).acquire(spec.workspace, { runId, signal: new AbortController().signal });
}

describeDeliveryConformance('local', () => ({
  manager: createLocalDeliveryManager(),
  setup: (env) => {
    git(env.sourceRepo, 'remote', 'add', REMOTE, env.bareRemote);
    return Promise.resolve({
      pushingSpec: task({ source: 'local', path: env.sourceRepo }, { git: { push: true, remote: REMOTE } }),
      nonPushingSpec: task({ source: 'local', path: env.sourceRepo }),
      acquire: (spec, runId) => acquire(env, spec, runId),
    });
  },
}));

const LOCAL = { source: 'local', path: '/srv/repo' } as const;
const GIT = { source: 'git', url: 'https://example.com/repo.git' } as const;
const GITHUB = { source: 'github', repo: 'owner/name' } as const;
const GITLAB = { source: 'gitlab', project: 'group/name' } as const;

describe('DeliveryRegistry', () => {
  describe('with the built-in managers', () => {
    const registry = createDeliveryRegistry();

    it('provides local delivery only when no forge is configured', () => {
      expect(registry.kinds()).toEqual(['local']);
      expect(registry.get('local')).toBeInstanceOf(LocalDeliveryManager);
      const error = thrownAgentGateError(() => registry.get('github'));
      expect(error.code).toBe('AG_ERR_DELIVERY_UNSUPPORTED');
      expect(error.message).toBe('github delivery is not available: not configured (set AGENTGATE_GITHUB_TOKEN); available: local.');
    });

    it('refuses a second manager for a kind', () => {
      expect(thrownAgentGateError(() => registry.register(createLocalDeliveryManager())).code).toBe('AG_ERR_CONFIG_INVALID');
    });

    describe('accepts', () => {
      it.each([
        ['a local workspace without a push', task(LOCAL)],
        ['a local workspace pushing to a named remote', task(LOCAL, { git: { push: true, remote: 'origin' } })],
        ['a git workspace without a push (the branch stays in the cache)', task(GIT)],
        ['a github workspace without a pull request or push', task(GITHUB, { git: { push: false } })],
        ['a gitlab workspace without a merge request or push', task(GITLAB)],
      ])('%s', (_name, spec) => {
        expect(() => registry.validate(spec)).not.toThrow();
      });
    });

    describe('rejects, naming the field', () => {
      it.each([
        [
          'a pull request on GitHub',
          task(GITHUB, { pr: { create: true } }),
          'spec.delivery.pr.create: opening a pull request on GitHub needs github delivery, which is not configured (set AGENTGATE_GITHUB_TOKEN) (available: local).',
        ],
        [
          'a merge request on GitLab',
          task(GITLAB, { pr: { create: true } }),
          'spec.delivery.pr.create: opening a merge request on GitLab needs gitlab delivery, which is not configured (set AGENTGATE_GITLAB_TOKEN) (available: local).',
        ],
        [
          'a CI wait on a local workspace',
          task(LOCAL, { ci: { wait: true } }),
          'spec.delivery.ci.wait: waiting for CI needs a forge delivery (github or gitlab), which is not configured (set AGENTGATE_GITHUB_TOKEN or AGENTGATE_GITLAB_TOKEN).',
        ],
        [
          'a push without a remote name',
          task(LOCAL, { git: { push: true } }),
          'spec.delivery.git.remote: pushing with local delivery needs the name of a remote of the repository; set spec.delivery.git.remote.',
        ],
        [
          'a remote that would never be pushed to',
          task(LOCAL, { git: { remote: 'origin' } }),
          'spec.delivery.git.remote: names remote "origin" but spec.delivery.git.push is false, so nothing would be pushed there.',
        ],
        [
          'a push from a git workspace',
          task(GIT, { git: { push: true, remote: 'origin' } }),
          'spec.delivery.git.push: local delivery cannot push the run branch of a git workspace: a git workspace is a cached clone of the URL without remotes of yours, so there is no remote to push to; the run branch stays in the cache.',
        ],
        [
          'a push to GitHub without a pull request',
          task(GITHUB, { git: { push: true } }),
          'spec.delivery.git.push: pushing to GitHub needs github delivery, which is not configured (set AGENTGATE_GITHUB_TOKEN).',
        ],
        ['a pull request title without a pull request', task(LOCAL, { pr: { title: 'Fix it' } }), 'spec.delivery.pr.title: has no effect because spec.delivery.pr.create is false.'],
        ['draft without a pull request', task(LOCAL, { pr: { draft: true } }), 'spec.delivery.pr.draft: has no effect because spec.delivery.pr.create is false.'],
        ['labels without a pull request', task(LOCAL, { pr: { labels: ['bot'] } }), 'spec.delivery.pr.labels: has no effect because spec.delivery.pr.create is false.'],
        ['reviewers without a pull request', task(LOCAL, { pr: { reviewers: ['octocat'] } }), 'spec.delivery.pr.reviewers: has no effect because spec.delivery.pr.create is false.'],
      ])('%s', (_name, spec, message) => {
        const error = thrownAgentGateError(() => registry.validate(spec));
        expect(error.code).toBe('AG_ERR_DELIVERY_UNSUPPORTED');
        expect(error.message).toBe(message);
        expect(error.details?.['issues']).toEqual([{ path: message.slice(0, message.indexOf(':')), message: message.slice(message.indexOf(': ') + 2, -1) }]);
      });

      it('a pull request asked of local delivery by a spec built in code', () => {
        const spec = task(LOCAL);
        spec.delivery.pr.create = true;
        expect(thrownAgentGateError(() => registry.validate(spec)).message).toBe(
          'spec.delivery.pr.create: opening a pull or merge request needs a forge delivery (github or gitlab), which is not configured (set AGENTGATE_GITHUB_TOKEN or AGENTGATE_GITLAB_TOKEN).',
        );
      });

      it('every problem at once', () => {
        const error = thrownAgentGateError(() => registry.validate(task(GITHUB, { pr: { create: true }, ci: { wait: true } })));
        expect(error.message).toBe(
          'The task asks for delivery this build cannot do: ' +
            'spec.delivery.pr.create: opening a pull request on GitHub needs github delivery, which is not configured (set AGENTGATE_GITHUB_TOKEN) (available: local); ' +
            'spec.delivery.ci.wait: waiting for CI needs a forge delivery (github or gitlab), which is not configured (set AGENTGATE_GITHUB_TOKEN or AGENTGATE_GITLAB_TOKEN).',
        );
        expect(error.details?.['issues']).toHaveLength(2);
      });

      it('legacy push_only work orders on a local workspace (no remote name to push to)', () => {
        const spec = task(LOCAL, { git: { push: true } });
        expect(thrownAgentGateError(() => registry.validate(spec)).details?.['issues']).toEqual([expect.objectContaining({ path: 'spec.delivery.git.remote' })]);
      });
    });
  });

  describe('once a forge manager that waits for CI is registered', () => {
    const forge: DeliveryManager = {
      name: 'github',
      capabilities: { workspaces: ['github'], pushFrom: ['github'], pushTarget: 'forge', changeRequests: true, ciWait: true },
      canHandle: () => ({ ok: true }),
      prepare: () => Promise.reject(new Error('not used')),
      pushIteration: () => Promise.reject(new Error('not used')),
      openChange: () => Promise.reject(new Error('not used')),
      waitForCI: () => Promise.reject(new Error('not used')),
      finalize: () => Promise.reject(new Error('not used')),
    };
    const registry = createDeliveryRegistry();
    registry.register(forge);

    it('accepts a pull request with a CI wait on GitHub', () => {
      expect(() => registry.validate(task(GITHUB, { pr: { create: true }, ci: { wait: true } }))).not.toThrow();
    });

    it('tells a local task that waits for CI what it needs instead', () => {
      expect(thrownAgentGateError(() => registry.validate(task(LOCAL, { ci: { wait: true } }))).message).toBe(
        'spec.delivery.ci.wait: local delivery does not wait for CI; waiting for CI needs a pull or merge request on a github or gitlab workspace (spec.delivery.pr.create).',
      );
    });

    it('still rejects GitLab', () => {
      expect(thrownAgentGateError(() => registry.validate(task(GITLAB, { pr: { create: true } }))).message).toContain('available: github, local');
    });
  });
});

describe('LocalDeliveryManager', () => {
  const manager: DeliveryManager = createLocalDeliveryManager();
  let env: DeliveryConformanceEnv;
  let runs = 0;

  beforeEach(async () => {
    env = await makeDeliveryEnv();
    git(env.sourceRepo, 'remote', 'add', REMOTE, env.bareRemote);
  });

  afterEach(() => rm(env.root, { recursive: true, force: true }));

  async function prepare(spec: ResolvedTaskSpec): Promise<PreparedDeliveryContext> {
    runs += 1;
    const workspace = await acquire(env, spec, `local-${runs}`);
    const ctx = deliveryContext(spec, workspace);
    return { ...ctx, target: expectOk(await manager.prepare(ctx)) };
  }

  const pushing = (): ResolvedTaskSpec => task({ source: 'local', path: env.sourceRepo }, { git: { push: true, remote: REMOTE } });

  it('declares what the docs promise', () => {
    expect(manager.capabilities).toEqual(LOCAL_DELIVERY_CAPABILITIES);
    expect(manager.capabilities).toEqual({ workspaces: ['local', 'git', 'github', 'gitlab'], pushFrom: ['local'], pushTarget: 'named_remote', changeRequests: false, ciWait: false });
  });

  describe('prepare', () => {
    it('records the remote’s URL without credentials', async () => {
      git(env.sourceRepo, 'remote', 'set-url', '--push', REMOTE, 'https://bot:s3cret-token@127.0.0.1:1/repo.git');
      const ctx = await prepare(pushing());
      expect(ctx.target).toMatchObject({ kind: 'local', repoPath: env.sourceRepo, push: { remote: REMOTE, url: 'https://127.0.0.1:1/repo.git' } });
      expect(JSON.stringify(ctx.target)).not.toContain('s3cret');
    });

    it('fails before any build when the repository has no such remote', async () => {
      git(env.sourceRepo, 'remote', 'remove', REMOTE);
      const workspace = await acquire(env, pushing(), 'no-remote');
      const failure = expectFailure(await manager.prepare(deliveryContext(pushing(), workspace)));
      expect(failure.cancelled).toBe(false);
      expect(failure.error.code).toBe('AG_ERR_DELIVERY_UNSUPPORTED');
      expect(failure.error.message).toBe(`spec.delivery.git.remote: the repository ${env.sourceRepo} has no remote named "${REMOTE}"`);
    });

    it('rejects a push from a git workspace even when submission did not validate', async () => {
      const spec = task(GIT, { git: { push: true, remote: 'origin' } });
      const workspace: Workspace = {
        runId: 'git-run',
        kind: 'git',
        path: path.join(env.root, 'wt'),
        branch: 'agentgate/git-run',
        baseSha: 'a'.repeat(40),
        repoPath: env.bareRemote,
        gitDir: path.join(env.root, 'git-run.git'),
        indexFile: path.join(env.root, 'git-run.git', 'index'),
        source: GIT.url,
        warnings: [],
      };
      const failure = expectFailure(await manager.prepare(deliveryContext(spec, workspace)));
      expect(failure.error.code).toBe('AG_ERR_DELIVERY_UNSUPPORTED');
      expect(failure.error.message).toMatch(/^spec\.delivery\.git\.push: /);
    });
  });

  describe('pushIteration', () => {
    it('leaves the user’s checkout, index and current branch alone', async () => {
      const ctx = await prepare(pushing());
      const before = { head: git(env.sourceRepo, 'rev-parse', 'HEAD'), branch: git(env.sourceRepo, 'branch', '--show-current'), status: git(env.sourceRepo, 'status', '--porcelain') };
      const sha = await commitIteration(ctx.workspace, 1);
      expectOk(await manager.pushIteration(iterationContext(ctx, 1, sha)));
      expect({ head: git(env.sourceRepo, 'rev-parse', 'HEAD'), branch: git(env.sourceRepo, 'branch', '--show-current'), status: git(env.sourceRepo, 'status', '--porcelain') }).toEqual(before);
    });

    it('never forces: a remote branch someone else moved is a failure with git’s reason, without hints', async () => {
      const ctx = await prepare(pushing());
      const first = await commitIteration(ctx.workspace, 1);
      expectOk(await manager.pushIteration(iterationContext(ctx, 1, first)));
      // Someone else moves the run branch of the remote to a commit that is not an ancestor of ours.
      const theirs = execFileSync('git', ['-c', 'user.name=Other', '-c', 'user.email=other@example.com', 'commit-tree', 'main^{tree}', '-p', 'main', '-m', 'theirs'], {
        cwd: env.sourceRepo,
        encoding: 'utf8',
      }).trim();
      git(env.sourceRepo, 'push', '--quiet', '--force', REMOTE, `${theirs}:refs/heads/${ctx.branch}`);
      const second = await commitIteration(ctx.workspace, 2);
      const failure = expectFailure(await manager.pushIteration(iterationContext(ctx, 2, second)));
      expect(failure.error.code).toBe('AG_ERR_DELIVERY_PUSH');
      expect(failure.error.message).toMatch(new RegExp(`^Could not push ${second.slice(0, 12)} to delivery \\(${env.bareRemote}\\) as refs/heads/${ctx.branch}: `));
      expect(failure.error.message).toContain('rejected');
      expect(failure.error.message).not.toContain('hint:');
      expect(branchSha(env.bareRemote, ctx.branch)).toBe(theirs);
    });

    it('keeps credentials of the remote URL out of the error', async () => {
      git(env.sourceRepo, 'remote', 'set-url', REMOTE, 'http://bot:s3cret-token@127.0.0.1:1/repo.git');
      const ctx = await prepare(pushing());
      const sha = await commitIteration(ctx.workspace, 1);
      const failure = expectFailure(await manager.pushIteration(iterationContext(ctx, 1, sha)));
      expect(failure.error.code).toBe('AG_ERR_DELIVERY_PUSH');
      expect(failure.error.retryable).toBe(true);
      expect(`${failure.error.message} ${String((failure.error.cause as Error).message)}`).not.toContain('s3cret-token');
    });

    describe('when the push configuration changed after prepare (the agent shares the repository config)', () => {
      it.each([
        ['the remote URL', (elsewhere: string) => git(env.sourceRepo, 'remote', 'set-url', REMOTE, elsewhere)],
        ['a url rewrite', (elsewhere: string) => git(env.sourceRepo, 'config', `url.${elsewhere}.pushInsteadOf`, env.bareRemote)],
        ['the receive-pack command', () => git(env.sourceRepo, 'config', `remote.${REMOTE}.receivepack`, 'touch /tmp/agentgate-pwned; git-receive-pack')],
        ['the ssh command', () => git(env.sourceRepo, 'config', 'core.sshCommand', 'ssh -o ProxyCommand=evil')],
      ])('refuses to push after a change of %s', async (_what, tamper) => {
        const ctx = await prepare(pushing());
        const sha = await commitIteration(ctx.workspace, 1);
        const elsewhere = path.join(env.root, 'elsewhere.git');
        git(env.root, 'init', '--quiet', '--bare', elsewhere);
        tamper(elsewhere);
        const failure = expectFailure(await manager.pushIteration(iterationContext(ctx, 1, sha)));
        expect(failure.error.code).toBe('AG_ERR_DELIVERY_PUSH');
        expect(failure.error.retryable).toBe(false);
        expect(failure.error.message).toContain('changed during the run');
        expect(git(env.bareRemote, 'for-each-ref')).toBe('');
        expect(git(elsewhere, 'for-each-ref')).toBe('');
      });

      it('still pushes after changes that cannot steer a push', async () => {
        const ctx = await prepare(pushing());
        git(env.sourceRepo, 'config', 'user.name', 'Someone Else');
        const sha = await commitIteration(ctx.workspace, 1);
        expectOk(await manager.pushIteration(iterationContext(ctx, 1, sha)));
        expect(branchSha(env.bareRemote, ctx.branch)).toBe(sha);
      });
    });
  });

  describe('openChange, waitForCI and finalize', () => {
    it('do nothing on the remote and report none / unchanged', async () => {
      const ctx = await prepare(task({ source: 'local', path: env.sourceRepo }));
      const sha = await commitIteration(ctx.workspace, 1);
      const iteration = iterationContext(ctx, 1, sha);
      expect(expectOk(await manager.openChange(iteration))).toEqual({ status: 'none' });
      expect(expectOk(await manager.waitForCI(iteration, new AbortController().signal))).toEqual({ status: 'none' });
      expect(expectOk(await manager.finalize(ctx, { result: 'passed', lastIteration: { iteration: 1, snapshotSha: sha } }))).toEqual({ status: 'unchanged' });
      expect(git(env.bareRemote, 'for-each-ref')).toBe('');
    });
  });
});

describe('LocalDeliveryManager and the secret scan', () => {
  let env: DeliveryConformanceEnv;
  beforeEach(async () => {
    env = await makeDeliveryEnv();
  });
  afterEach(async () => {
    await rm(env.root, { recursive: true, force: true });
  });

  it('refuses to push a branch that adds a private key, naming the file, and pushes nothing', async () => {
    git(env.sourceRepo, 'remote', 'add', REMOTE, env.bareRemote);
    const spec = task({ source: 'local', path: env.sourceRepo }, { git: { push: true, remote: REMOTE } });
    const workspace = await acquire(env, spec, 'secret-1');
    const manager = createLocalDeliveryManager();
    const ctx = deliveryContext(spec, workspace);
    const target = expectOk(await manager.prepare(ctx));
    const { writeFile } = await import('node:fs/promises');
    await writeFile(path.join(workspace.path, 'id_ed25519'), '-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n');
    const sha = await commitIteration(workspace, 1);
    const failure = expectFailure(await manager.pushIteration(iterationContext({ ...ctx, target }, 1, sha)));
    expect(failure.error.code).toBe('AG_ERR_DELIVERY_SECRET_DETECTED');
    expect(failure.error.message).toContain('id_ed25519');
    expect(branchSha(env.bareRemote, workspace.branch)).toBeUndefined();
  });
});
