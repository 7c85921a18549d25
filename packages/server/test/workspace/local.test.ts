import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { mkdir, readFile, realpath, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AgentGateError } from '../../src/errors.js';
import { leaseKey } from '../../src/workspace/lease.js';
import { WorkspaceManager } from '../../src/workspace/manager.js';
import { InMemoryLeaseStore } from './in-memory-lease-store.js';
import { TempDirs, captureRepoState, commitFile, git, initRepo, liveSignal, snapshotOf } from './helpers.js';

const temp = new TempDirs();

async function rejection(promise: Promise<unknown>): Promise<AgentGateError> {
  const error = await promise.then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(error).toBeInstanceOf(AgentGateError);
  return error as AgentGateError;
}

describe('WorkspaceManager with a local repository', () => {
  let home: string;
  let repo: string;
  let manager: WorkspaceManager;

  beforeEach(async () => {
    const root = await realpath(await temp.make());
    home = path.join(root, 'home');
    repo = await initRepo(path.join(root, 'user-repo'));
    manager = new WorkspaceManager({ home });
  });

  afterEach(() => temp.cleanup());

  describe('acquire', () => {
    it('creates a workspace under the home on branch agentgate/<runId> from HEAD, without the branch in the repository yet', async () => {
      const head = git(repo, 'rev-parse', 'HEAD');
      const ws = await manager.acquire({ source: 'local', path: repo }, { runId: 'run-1', signal: liveSignal() });

      expect(ws).toEqual({
        runId: 'run-1',
        kind: 'local',
        path: path.join(home, 'worktrees', 'run-1'),
        branch: 'agentgate/run-1',
        baseSha: head,
        baseTree: git(repo, 'rev-parse', 'HEAD^{tree}'),
        repoPath: repo,
        gitDir: path.join(home, 'runs', 'run-1', 'git'),
        indexFile: path.join(home, 'runs', 'run-1', 'git', 'index'),
        objectsDir: path.join(repo, '.git', 'objects'),
        source: repo,
        warnings: [],
      });
      expect(await readFile(path.join(ws.path, 'src', 'app.txt'), 'utf8')).toBe('one\ntwo\nthree\n');
      expect(git(ws.path, 'symbolic-ref', 'HEAD')).toBe('refs/heads/agentgate/run-1');
      expect(git(ws.path, 'rev-parse', 'HEAD')).toBe(head);
      // The repository gets the branch with the first snapshot commit (snapshotter.test.ts).
      expect(git(repo, 'for-each-ref', 'refs/heads/agentgate/')).toBe('');
      expect(git(ws.gitDir, 'rev-parse', 'refs/heads/agentgate/run-1')).toBe(head);
    });

    it('gives the agent a repository of its own: nothing of the user’s .git, no worktree entry, a clean status', async () => {
      git(repo, 'config', 'user.signingkey', 'users-key');
      await writeFile(path.join(repo, '.git', 'info', 'exclude'), 'secret-pattern\n');
      const ws = await manager.acquire({ source: 'local', path: repo }, { runId: 'run-1', signal: liveSignal() });
      expect(git(ws.path, 'rev-parse', '--absolute-git-dir')).toBe(path.join(ws.path, '.git'));
      expect(git(ws.path, 'status', '--porcelain')).toBe('');
      expect(git(ws.path, 'for-each-ref', '--format=%(refname)')).toBe('refs/heads/agentgate/run-1');
      expect(await readFile(path.join(ws.path, '.git', 'config'), 'utf8')).not.toContain('users-key');
      expect(existsSync(path.join(ws.path, '.git', 'info', 'exclude'))).toBe(false);
      expect(existsSync(path.join(ws.path, '.git', 'hooks'))).toBe(false);
      expect(git(repo, 'worktree', 'list', '--porcelain')).not.toContain(ws.path);
      expect(existsSync(path.join(repo, '.git', 'worktrees'))).toBe(false);
    });

    it('leaves the user’s working tree, index, HEAD and branch exactly as they were', async () => {
      git(repo, 'status', '--porcelain');
      const before = await captureRepoState(repo);
      await manager.acquire({ source: 'local', path: repo }, { runId: 'run-1', signal: liveSignal() });
      expect(await captureRepoState(repo)).toEqual(before);
      expect(before.status).toBe('');
    });

    describe('when the user’s tree is dirty', () => {
      beforeEach(async () => {
        await writeFile(path.join(repo, 'src', 'app.txt'), 'one\nTWO (unsaved work)\nthree\n');
        await writeFile(path.join(repo, 'README.md'), '# staged edit\n');
        git(repo, 'add', 'README.md');
        await writeFile(path.join(repo, 'notes.txt'), 'untracked\n');
        git(repo, 'status', '--porcelain');
      });

      it('records a warning and starts from the committed HEAD', async () => {
        const ws = await manager.acquire({ source: 'local', path: repo }, { runId: 'run-1', signal: liveSignal() });
        expect(ws.warnings).toHaveLength(1);
        expect(ws.warnings[0]).toMatch(/uncommitted changes \(3 paths\)/);
        expect(await readFile(path.join(ws.path, 'src', 'app.txt'), 'utf8')).toBe('one\ntwo\nthree\n');
        expect(existsSync(path.join(ws.path, 'notes.txt'))).toBe(false);
        expect(git(ws.path, 'status', '--porcelain')).toBe('');
      });

      it('does not touch the staged changes, the unsaved edits or the untracked file', async () => {
        const before = await captureRepoState(repo);
        await manager.acquire({ source: 'local', path: repo }, { runId: 'run-1', signal: liveSignal() });
        const after = await captureRepoState(repo);
        expect(after).toEqual(before);
        expect(after.staged).toBe('README.md');
        expect(after.status.split('\n').sort()).toEqual([' M src/app.txt', '?? notes.txt', 'M  README.md']);
      });
    });

    it('starts from `ref` when one is given', async () => {
      const first = git(repo, 'rev-parse', 'HEAD');
      git(repo, 'tag', 'v1');
      await commitFile(repo, 'src/app.txt', 'changed\n');
      git(repo, 'branch', 'feature', first);

      const fromTag = await manager.acquire({ source: 'local', path: repo, ref: 'v1' }, { runId: 'run-tag', signal: liveSignal() });
      const fromBranch = await manager.acquire({ source: 'local', path: repo, ref: 'feature' }, { runId: 'run-branch', signal: liveSignal() });
      const fromSha = await manager.acquire({ source: 'local', path: repo, ref: first.slice(0, 10) }, { runId: 'run-sha', signal: liveSignal() });

      for (const ws of [fromTag, fromBranch, fromSha]) {
        expect(ws.baseSha).toBe(first);
        expect(git(ws.path, 'rev-parse', 'HEAD')).toBe(first);
      }
      expect(git(repo, 'symbolic-ref', 'HEAD')).toBe('refs/heads/main');
    });

    it('accepts a path inside the repository and uses its top level', async () => {
      const ws = await manager.acquire({ source: 'local', path: path.join(repo, 'src') }, { runId: 'run-1', signal: liveSignal() });
      expect(ws.repoPath).toBe(repo);
    });

    it('uses the given branch prefix', async () => {
      const ws = await manager.acquire({ source: 'local', path: repo }, { runId: 'run-1', branchPrefix: 'bots/', signal: liveSignal() });
      expect(ws.branch).toBe('bots/run-1');
      expect(git(ws.path, 'symbolic-ref', '--short', 'HEAD')).toBe('bots/run-1');
    });

    it('fails with AG_ERR_WORKSPACE_NOT_A_REPO for a directory that is not a git repository', async () => {
      const plain = await temp.make('agentgate-plain-');
      const error = await rejection(manager.acquire({ source: 'local', path: plain }, { runId: 'run-1', signal: liveSignal() }));
      expect(error.code).toBe('AG_ERR_WORKSPACE_NOT_A_REPO');
      expect(existsSync(path.join(home, 'worktrees', 'run-1'))).toBe(false);
    });

    it('fails with AG_ERR_WORKSPACE_NOT_A_REPO for a path that does not exist', async () => {
      const error = await rejection(manager.acquire({ source: 'local', path: path.join(repo, 'missing') }, { runId: 'run-1', signal: liveSignal() }));
      expect(error.code).toBe('AG_ERR_WORKSPACE_NOT_A_REPO');
    });

    it.each([['no-such-branch'], ['--output=/tmp/x'], ['main with space']])('fails with AG_ERR_WORKSPACE_REF_NOT_FOUND for ref %j', async (ref) => {
      const error = await rejection(manager.acquire({ source: 'local', path: repo, ref }, { runId: 'run-1', signal: liveSignal() }));
      expect(error.code).toBe('AG_ERR_WORKSPACE_REF_NOT_FOUND');
      expect(git(repo, 'branch', '--list', 'agentgate/*')).toBe('');
    });

    it('fails with AG_ERR_WORKSPACE_REF_NOT_FOUND for a repository without commits', async () => {
      const empty = path.join(await temp.make(), 'empty');
      await mkdir(empty);
      git(empty, 'init', '--quiet');
      const error = await rejection(manager.acquire({ source: 'local', path: empty }, { runId: 'run-1', signal: liveSignal() }));
      expect(error.code).toBe('AG_ERR_WORKSPACE_REF_NOT_FOUND');
    });

    it('rejects a run id that would escape the worktrees directory', async () => {
      const error = await rejection(manager.acquire({ source: 'local', path: repo }, { runId: '../escape', signal: liveSignal() }));
      expect(error.code).toBe('AG_ERR_WORKSPACE_PATH_ESCAPE');
    });

    it('refuses a base commit with a submodule whose name is not valid UTF-8, and removes what it checked out', async () => {
      // Git keeps the name's bytes; read back as UTF-8 they hold U+FFFD, and no pathspec names the directory.
      execFileSync('git', ['update-index', '--add', '-z', '--index-info'], {
        cwd: repo,
        input: Buffer.concat([Buffer.from(`160000 ${git(repo, 'rev-parse', 'HEAD')}\tvendor/m`), Buffer.from([0xff]), Buffer.from('\0')]),
      });
      git(repo, 'commit', '--quiet', '-m', 'a submodule with a name that is not UTF-8');
      const error = await rejection(manager.acquire({ source: 'local', path: repo }, { runId: 'run-1', signal: liveSignal() }));
      expect(error.code).toBe('AG_ERR_WORKSPACE_UNSUPPORTED');
      expect(error.message).toContain('vendor/m\uFFFD');
      expect(leftOfRun1()).toEqual([]);
      // A submodule whose name really holds U+FFFD is an ordinary one.
      git(repo, 'rm', '--quiet', '--cached', '-r', 'vendor');
      git(repo, 'update-index', '--add', '--cacheinfo', `160000,${git(repo, 'rev-parse', 'HEAD')},vendor/m\uFFFD`);
      git(repo, 'commit', '--quiet', '-m', 'a submodule named with U+FFFD');
      const ws = await manager.acquire({ source: 'local', path: repo }, { runId: 'run-2', signal: liveSignal() });
      expect(existsSync(path.join(ws.path, 'vendor', 'm\uFFFD'))).toBe(true);
    });

    /** What a failed acquisition of run-1 may leave below the home: nothing of the run, pooled or not. */
    function leftOfRun1(): string[] {
      const poolRoot = path.join(home, 'worktrees', '.pool');
      const pooled = existsSync(poolRoot) ? readdirSync(poolRoot).flatMap((key) => readdirSync(path.join(poolRoot, key)).map((name) => `.pool/${key}/${name}`)) : [];
      const runDirs = [path.join(home, 'worktrees', 'run-1'), path.join(home, 'runs', 'run-1', 'git')].filter((dir) => existsSync(dir));
      return [...runDirs, ...pooled.filter((entry) => entry.includes('run-1'))];
    }

    // The branch check runs while the workspace is checked out (local.ts createWhileChecking): its failure is
    // reported exactly as when it ran first, and the checkout made meanwhile is removed, pooled or not.
    it.each([
      ['with the worktree pool', {}],
      ['without it', { pool: false as const }],
    ])('fails with AG_ERR_WORKSPACE_SETUP when the run branch already exists, leaving that branch alone (%s)', async (_name, options) => {
      manager = new WorkspaceManager({ home, ...options });
      await commitFile(repo, 'other.txt', 'x\n');
      git(repo, 'branch', 'agentgate/run-1', 'HEAD~1');
      const existing = git(repo, 'rev-parse', 'agentgate/run-1');
      const error = await rejection(manager.acquire({ source: 'local', path: repo }, { runId: 'run-1', signal: liveSignal() }));
      expect(error.code).toBe('AG_ERR_WORKSPACE_SETUP');
      expect(error.message).toBe(`The branch agentgate/run-1 already exists in ${repo}; a run never takes over a branch`);
      expect(git(repo, 'rev-parse', 'agentgate/run-1')).toBe(existing);
      expect(leftOfRun1()).toEqual([]);
      // Nothing is left to get in the way of a run with another id.
      const next = await manager.acquire({ source: 'local', path: repo }, { runId: 'run-2', signal: liveSignal() });
      expect(git(next.path, 'rev-parse', 'HEAD')).toBe(git(repo, 'rev-parse', 'HEAD'));
    });

    // The status is read while the workspace is created (deferredWarnings): a failure to read it still
    // fails the acquisition, classified as before, and the workspace created meanwhile is removed.
    it.each([
      ['with the worktree pool', {}],
      ['without it', { pool: false as const }],
    ])('fails with AG_ERR_WORKSPACE_SETUP when the status of the user’s tree cannot be read, and removes what it created (%s)', async (_name, options) => {
      manager = new WorkspaceManager({ home, ...options });
      // A corrupt index: HEAD still resolves, `git status` fails.
      await writeFile(path.join(repo, '.git', 'index'), 'garbage\n');
      const error = await rejection(manager.acquire({ source: 'local', path: repo }, { runId: 'run-1', signal: liveSignal() }));
      expect(error.code).toBe('AG_ERR_WORKSPACE_SETUP');
      expect(error.message).toMatch(new RegExp(`^Could not read the status of ${repo}: .*index`));
      expect(leftOfRun1()).toEqual([]);
    });

    it('gives two concurrent runs on the same repository distinct worktrees and branches', async () => {
      const [a, b] = await Promise.all([
        manager.acquire({ source: 'local', path: repo }, { runId: 'run-a', signal: liveSignal() }),
        manager.acquire({ source: 'local', path: repo }, { runId: 'run-b', signal: liveSignal() }),
      ]);
      expect(a.path).not.toBe(b.path);
      expect(git(a.path, 'symbolic-ref', '--short', 'HEAD')).toBe('agentgate/run-a');
      expect(git(b.path, 'symbolic-ref', '--short', 'HEAD')).toBe('agentgate/run-b');
      expect(git(a.gitDir, 'for-each-ref', '--format=%(refname)', 'refs/heads/agentgate/')).toBe('refs/heads/agentgate/run-a');
      expect(git(b.gitDir, 'for-each-ref', '--format=%(refname)', 'refs/heads/agentgate/')).toBe('refs/heads/agentgate/run-b');
    });

    it('reports cancellation, not a failure, when the run is canceled', async () => {
      const controller = new AbortController();
      controller.abort(new AgentGateError('AG_ERR_RUN_CANCELED', 'user canceled'));
      const error = await rejection(manager.acquire({ source: 'local', path: repo }, { runId: 'run-1', signal: controller.signal }));
      expect(error.code).toBe('AG_ERR_RUN_CANCELED');
      expect(existsSync(path.join(home, 'worktrees', 'run-1'))).toBe(false);
    });
  });

  describe('release', () => {
    it('removes the workspace and AgentGate’s git directory but keeps the branch with its commits', async () => {
      const ws = await manager.acquire({ source: 'local', path: repo }, { runId: 'run-1', signal: liveSignal() });
      await writeFile(path.join(ws.path, 'feature.txt'), 'agent work\n');
      const work = await snapshotOf(ws);

      await manager.release(ws, { signal: liveSignal() });

      expect(existsSync(ws.path)).toBe(false);
      expect(existsSync(ws.gitDir)).toBe(false);
      expect(git(repo, 'rev-parse', 'refs/heads/agentgate/run-1')).toBe(work);
      expect(git(repo, 'show', 'agentgate/run-1:feature.txt')).toBe('agent work');
      expect(git(repo, 'worktree', 'list', '--porcelain')).not.toContain(ws.path);
    });

    it('removes a worktree with uncommitted and untracked files', async () => {
      const ws = await manager.acquire({ source: 'local', path: repo }, { runId: 'run-1', signal: liveSignal() });
      await writeFile(path.join(ws.path, 'README.md'), 'dirty\n');
      await writeFile(path.join(ws.path, 'scratch.txt'), 'untracked\n');
      await manager.release(ws, { signal: liveSignal() });
      expect(existsSync(ws.path)).toBe(false);
    });

    it('is idempotent', async () => {
      const ws = await manager.acquire({ source: 'local', path: repo }, { runId: 'run-1', signal: liveSignal() });
      await manager.release(ws, { signal: liveSignal() });
      await manager.release(ws, { signal: liveSignal() });
      expect(existsSync(ws.path)).toBe(false);
    });

    it('still removes a workspace whose .git the agent replaced', async () => {
      const ws = await manager.acquire({ source: 'local', path: repo }, { runId: 'run-1', signal: liveSignal() });
      await rm(path.join(ws.path, '.git'), { recursive: true });
      await writeFile(path.join(ws.path, '.git'), 'garbage\n');
      await manager.release(ws, { signal: liveSignal() });
      expect(existsSync(ws.path)).toBe(false);
      expect(git(repo, 'worktree', 'list', '--porcelain')).not.toContain(ws.path);
      expect(existsSync(ws.gitDir)).toBe(false);
    });

    it('refuses to delete a directory outside the worktrees root', async () => {
      const ws = await manager.acquire({ source: 'local', path: repo }, { runId: 'run-1', signal: liveSignal() });
      const error = await rejection(manager.release({ ...ws, path: repo }, { signal: liveSignal() }));
      expect(error.code).toBe('AG_ERR_WORKSPACE_PATH_ESCAPE');
      expect(existsSync(path.join(repo, 'README.md'))).toBe(true);
    });
  });

  describe('reapStale', () => {
    it('removes worktrees of runs that are no longer live and keeps the others', async () => {
      const dead = await manager.acquire({ source: 'local', path: repo }, { runId: 'run-dead', signal: liveSignal() });
      // A new manager: the process that acquired the worktree is gone.
      const restarted = new WorkspaceManager({ home });
      const live = await restarted.acquire({ source: 'local', path: repo }, { runId: 'run-live', signal: liveSignal() });

      const reaped = await restarted.reapStale({ isLive: (runId) => runId === 'run-live', signal: liveSignal() });

      expect(reaped).toEqual(['run-dead']);
      expect(existsSync(dead.path)).toBe(false);
      expect(existsSync(dead.gitDir)).toBe(false);
      expect(existsSync(live.path)).toBe(true);
      expect(existsSync(live.gitDir)).toBe(true);
      expect(git(repo, 'worktree', 'list', '--porcelain')).not.toContain(dead.path);
      expect(git(repo, 'for-each-ref', 'refs/heads/agentgate/')).toBe('');
    });
  });

  describe('with a lease store', () => {
    let leases: InMemoryLeaseStore;

    beforeEach(() => {
      leases = new InMemoryLeaseStore();
      manager = new WorkspaceManager({ home, leases, leaseOwner: 'me' });
    });

    it('holds the lease on <repo>#<branch> while the workspace exists', async () => {
      const ws = await manager.acquire({ source: 'local', path: repo }, { runId: 'run-1', signal: liveSignal() });
      const key = leaseKey(repo, 'agentgate/run-1');
      expect(leases.leases.get(key)).toMatchObject({ owner: 'me', runId: 'run-1' });
      expect(manager.leaseLost('run-1')?.aborted).toBe(false);

      await manager.release(ws, { signal: liveSignal() });
      expect(leases.leases.has(key)).toBe(false);
      expect(manager.leaseLost('run-1')).toBeUndefined();
    });

    it('fails with AG_ERR_LEASE_HELD and creates nothing when another live owner holds the branch', async () => {
      leases.steal(leaseKey(repo, 'agentgate/run-1'), 'someone-else', Date.now());
      const error = await rejection(manager.acquire({ source: 'local', path: repo }, { runId: 'run-1', signal: liveSignal() }));
      expect(error.code).toBe('AG_ERR_LEASE_HELD');
      expect(existsSync(path.join(home, 'worktrees', 'run-1'))).toBe(false);
      expect(git(repo, 'branch', '--list', 'agentgate/*')).toBe('');
    });

    it('releases the lease when the worktree cannot be created', async () => {
      git(repo, 'branch', 'agentgate/run-1');
      const error = await rejection(manager.acquire({ source: 'local', path: repo }, { runId: 'run-1', signal: liveSignal() }));
      expect(error.code).toBe('AG_ERR_WORKSPACE_SETUP');
      expect(leases.leases.size).toBe(0);
    });

    it('releases the lease when the status of the user’s tree cannot be read', async () => {
      await writeFile(path.join(repo, '.git', 'index'), 'garbage\n');
      const error = await rejection(manager.acquire({ source: 'local', path: repo }, { runId: 'run-1', signal: liveSignal() }));
      expect(error.code).toBe('AG_ERR_WORKSPACE_SETUP');
      expect(leases.leases.size).toBe(0);
      expect(existsSync(path.join(home, 'worktrees', 'run-1'))).toBe(false);
    });
  });
});
