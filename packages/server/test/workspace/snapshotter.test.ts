import { chmod, mkdir, readFile, realpath, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AgentGateError } from '../../src/errors.js';
import { WorkspaceManager } from '../../src/workspace/manager.js';
import { Snapshotter, parseNumstat, type SnapshotOutcome } from '../../src/workspace/snapshotter.js';
import type { SnapshotResult, Workspace } from '../../src/workspace/types.js';
import { TempDirs, git, initRepo, liveSignal } from './helpers.js';

const temp = new TempDirs();

function expectOk(outcome: SnapshotOutcome): SnapshotResult {
  if (!outcome.ok) throw new Error(`expected a snapshot, got ${outcome.error.code}: ${outcome.error.message}`);
  return outcome.snapshot;
}

function expectFailure(outcome: SnapshotOutcome): AgentGateError {
  if (outcome.ok) throw new Error('expected the snapshot to fail');
  expect(outcome.error).toBeInstanceOf(AgentGateError);
  return outcome.error;
}

describe('Snapshotter', () => {
  let repo: string;
  let artifacts: string;
  let ws: Workspace;
  const snapshotter = new Snapshotter();
  const snap = (iteration: number, extra: { previousSha?: string; signal?: AbortSignal } = {}): Promise<SnapshotOutcome> =>
    snapshotter.snapshot({ workspace: ws, iteration, artifactsDir: artifacts, signal: extra.signal ?? liveSignal(), ...(extra.previousSha ? { previousSha: extra.previousSha } : {}) });

  beforeEach(async () => {
    const root = await realpath(await temp.make());
    const home = path.join(root, 'home');
    repo = await initRepo(path.join(root, 'repo'));
    artifacts = path.join(home, 'runs', 'run-1');
    ws = await new WorkspaceManager({ home }).acquire({ source: 'local', path: repo }, { runId: 'run-1', signal: liveSignal() });
  });

  afterEach(() => temp.cleanup());

  describe('when the agent changed files', () => {
    let snapshot: SnapshotResult;

    beforeEach(async () => {
      await writeFile(path.join(ws.path, 'src', 'app.txt'), 'one\n2\nthree\nfour\n');
      await writeFile(path.join(ws.path, 'src', 'new.txt'), 'hello\n');
      await rm(path.join(ws.path, 'README.md'));
      snapshot = expectOk(await snap(1));
    });

    it('commits everything on the run branch as `agentgate: iteration <n>` by AgentGate, and the user’s repository has it', () => {
      expect(git(repo, 'log', '-1', '--format=%s|%an <%ae>|%cn <%ce>', 'agentgate/run-1')).toBe(
        'agentgate: iteration 1|AgentGate <agentgate@localhost>|AgentGate <agentgate@localhost>',
      );
      expect(git(repo, 'rev-parse', 'agentgate/run-1')).toBe(snapshot.sha);
      expect(git(repo, 'rev-parse', 'agentgate/run-1~1')).toBe(ws.baseSha);
      expect(git(ws.gitDir, 'rev-parse', 'refs/heads/agentgate/run-1')).toBe(snapshot.sha);
    });

    it('reports the sha and tree sha git reports', () => {
      expect(snapshot.treeSha).toBe(git(repo, 'rev-parse', `${snapshot.sha}^{tree}`));
      expect(snapshot.uncaptured).toEqual([]);
    });

    it('leaves the agent’s own repository alone: its HEAD, branch and index are the agent’s', () => {
      expect(git(ws.path, 'rev-parse', 'HEAD')).toBe(ws.baseSha);
      expect(git(ws.path, 'status', '--porcelain').split('\n').sort()).toEqual([' D README.md', ' M src/app.txt', '?? src/new.txt']);
    });

    it('counts files, insertions and deletions of the iteration', () => {
      expect(snapshot).toMatchObject({ iteration: 1, noChange: false, filesChanged: 3, insertions: 3, deletions: 2 });
      expect(git(repo, 'diff', '--shortstat', ws.baseSha, snapshot.sha)).toBe(' 3 files changed, 3 insertions(+), 2 deletions(-)');
    });

    it('lists the files changed since the base commit', () => {
      expect([...snapshot.changedFiles].sort()).toEqual(['README.md', 'src/app.txt', 'src/new.txt']);
    });

    it('writes the patch against the base commit to iteration-<n>.patch, and it applies', async () => {
      expect(snapshot.patchPath).toBe(path.join(artifacts, 'iteration-1.patch'));
      const patch = await readFile(snapshot.patchPath, 'utf8');
      expect(patch).toContain('diff --git a/src/new.txt b/src/new.txt');
      expect(patch).toContain('+hello');
      expect(patch).toContain('deleted file mode');
      const check = await initRepo(path.join(path.dirname(repo), 'check'));
      git(check, 'apply', '--index', snapshot.patchPath);
      expect(git(check, 'write-tree')).toBe(snapshot.treeSha);
    });

    it('keeps the patch byte-exact for files that are not UTF-8', async () => {
      const latin1 = Buffer.from([0x63, 0x61, 0x66, 0xe9, 0x0a]);
      await writeFile(path.join(ws.path, 'latin1.txt'), latin1);
      const second = expectOk(await snap(2));
      const check = await initRepo(path.join(path.dirname(repo), 'check-bytes'));
      git(check, 'apply', '--index', second.patchPath);
      expect(await readFile(path.join(check, 'latin1.txt'))).toEqual(latin1);
    });

    it('measures the next iteration on its own and the patch cumulatively', async () => {
      await writeFile(path.join(ws.path, 'src', 'new.txt'), 'hello\nworld\n');
      const second = expectOk(await snap(2));
      expect(second).toMatchObject({ iteration: 2, noChange: false, filesChanged: 1, insertions: 1, deletions: 0 });
      expect([...second.changedFiles].sort()).toEqual(['README.md', 'src/app.txt', 'src/new.txt']);
      const patch = await readFile(path.join(artifacts, 'iteration-2.patch'), 'utf8');
      expect(patch).toContain('+world');
      expect(patch).toContain('diff --git a/README.md b/README.md');
      expect(git(repo, 'log', '--format=%s', '-2', 'agentgate/run-1')).toBe('agentgate: iteration 2\nagentgate: iteration 1');
    });
  });

  describe('when the agent changed nothing', () => {
    it('records no commit, flags noChange, and the repository gets no branch', async () => {
      const snapshot = expectOk(await snap(1));
      expect(snapshot).toMatchObject({ noChange: true, committed: false, sha: ws.baseSha, filesChanged: 0, insertions: 0, deletions: 0, changedFiles: [] });
      expect(git(repo, 'for-each-ref', 'refs/heads/agentgate/')).toBe('');
      expect(snapshot.treeSha).toBe(git(repo, 'rev-parse', `${ws.baseSha}^{tree}`));
      expect(await readFile(snapshot.patchPath, 'utf8')).toBe('');
    });

    it("with emptyIterations: 'commit', records an empty commit flagged noChange", async () => {
      const outcome = await new Snapshotter({ emptyIterations: 'commit' }).snapshot({ workspace: ws, iteration: 1, artifactsDir: artifacts, signal: liveSignal() });
      const snapshot = expectOk(outcome);
      expect(snapshot).toMatchObject({ noChange: true, committed: true, filesChanged: 0 });
      expect(snapshot.sha).not.toBe(ws.baseSha);
      expect(git(repo, 'log', '-1', '--format=%s', 'agentgate/run-1')).toBe('agentgate: iteration 1');
    });

    it('flags a later iteration that repeats the previous tree, with the cumulative changes kept', async () => {
      await writeFile(path.join(ws.path, 'added.txt'), 'x\n');
      const first = expectOk(await snap(1));
      const second = expectOk(await snap(2, { previousSha: first.sha }));
      expect(second).toMatchObject({ noChange: true, filesChanged: 0, changedFiles: ['added.txt'], treeSha: first.treeSha });
    });
  });

  describe('when the agent committed its work itself or switched branches', () => {
    it('measures against the previous snapshot, so the work still counts', async () => {
      await writeFile(path.join(ws.path, 'first.txt'), 'first iteration\n');
      const first = expectOk(await snap(1));
      await writeFile(path.join(ws.path, 'agent.txt'), 'committed by the agent\n');
      git(ws.path, 'add', 'agent.txt');
      git(ws.path, 'commit', '--quiet', '-m', 'agent commit');

      const second = expectOk(await snap(2, { previousSha: first.sha }));
      expect(second).toMatchObject({ noChange: false, filesChanged: 1, insertions: 1, changedFiles: ['agent.txt', 'first.txt'] });
      expect(git(repo, 'log', '--format=%s', 'agentgate/run-1', `^${ws.baseSha}`)).toBe('agentgate: iteration 2\nagentgate: iteration 1');
    });

    it('records the files whatever branch the agent’s repository is on', async () => {
      git(ws.path, 'checkout', '--quiet', '-b', 'elsewhere');
      await writeFile(path.join(ws.path, 'x.txt'), 'x\n');
      const snapshot = expectOk(await snap(1));
      expect(git(repo, 'rev-parse', 'agentgate/run-1')).toBe(snapshot.sha);
      expect(git(repo, 'show', 'agentgate/run-1:x.txt')).toBe('x');
      expect(git(repo, 'branch', '--list', 'elsewhere')).toBe('');
    });

    it('does not depend on the agent’s .git at all', async () => {
      await rm(path.join(ws.path, '.git'), { recursive: true });
      await writeFile(path.join(ws.path, '.git'), 'not a gitdir line\n');
      await writeFile(path.join(ws.path, 'x.txt'), 'x\n');
      expect(expectOk(await snap(1)).changedFiles).toEqual(['x.txt']);
    });
  });

  it('is not blocked by a pre-commit hook or the user’s signing configuration', async () => {
    const hook = path.join(repo, '.git', 'hooks', 'pre-commit');
    await mkdir(path.dirname(hook), { recursive: true });
    await writeFile(hook, '#!/bin/sh\necho blocked >&2\nexit 1\n');
    await chmod(hook, 0o755);
    git(repo, 'config', 'commit.gpgSign', 'true');
    git(repo, 'config', 'gpg.program', '/bin/false');
    await writeFile(path.join(ws.path, 'x.txt'), 'x\n');
    expectOk(await snap(1));
  });

  it('uses the AgentGate identity even when GIT_AUTHOR_* is set in the environment', async () => {
    const saved = { name: process.env['GIT_AUTHOR_NAME'], email: process.env['GIT_COMMITTER_EMAIL'] };
    process.env['GIT_AUTHOR_NAME'] = 'Somebody Else';
    process.env['GIT_COMMITTER_EMAIL'] = 'else@example.com';
    try {
      await writeFile(path.join(ws.path, 'x.txt'), 'x\n');
      expectOk(await snap(1));
    } finally {
      if (saved.name === undefined) delete process.env['GIT_AUTHOR_NAME'];
      else process.env['GIT_AUTHOR_NAME'] = saved.name;
      if (saved.email === undefined) delete process.env['GIT_COMMITTER_EMAIL'];
      else process.env['GIT_COMMITTER_EMAIL'] = saved.email;
    }
    expect(git(repo, 'log', '-1', '--format=%an|%ce', 'agentgate/run-1')).toBe('AgentGate|agentgate@localhost');
  });

  describe('failures', () => {
    it('returns AG_ERR_PHASE_SNAPSHOT when git cannot take the index lock', async () => {
      await writeFile(`${ws.indexFile}.lock`, '');
      await writeFile(path.join(ws.path, 'x.txt'), 'x\n');

      const error = expectFailure(await snap(1));
      expect(error.code).toBe('AG_ERR_PHASE_SNAPSHOT');
      expect(error.cause).toBeInstanceOf(Error);
      expect(error.message).toMatch(/index\.lock/);
      expect(git(repo, 'for-each-ref', 'refs/heads/agentgate/')).toBe('');
    });

    it('returns AG_ERR_PHASE_SNAPSHOT when AgentGate’s git directory is gone', async () => {
      await rm(ws.gitDir, { recursive: true });
      expect(expectFailure(await snap(1)).code).toBe('AG_ERR_PHASE_SNAPSHOT');
    });

    it('returns AG_ERR_PHASE_SNAPSHOT when the patch cannot be written', async () => {
      artifacts = path.join(path.dirname(repo), 'not-a-directory');
      await writeFile(artifacts, 'a file where the artifacts directory should be');
      expect(expectFailure(await snap(1)).code).toBe('AG_ERR_PHASE_SNAPSHOT');
    });

    it('reports cancellation, not a snapshot failure, when the run was canceled', async () => {
      const controller = new AbortController();
      controller.abort(new AgentGateError('AG_ERR_RUN_CANCELED', 'user canceled'));
      const error = expectFailure(await snap(1, { signal: controller.signal }));
      expect(error.code).toBe('AG_ERR_RUN_CANCELED');
      expect(git(repo, 'for-each-ref', 'refs/heads/agentgate/')).toBe('');
    });

    it('rejects an invalid iteration number', async () => {
      expect(expectFailure(await snap(0)).code).toBe('AG_ERR_PHASE_SNAPSHOT');
    });
  });
});

describe('parseNumstat', () => {
  it('sums text changes and counts binary files without line counts', () => {
    expect(parseNumstat('3\t1\ta.txt\x000\t2\tb.txt\x00-\t-\timage.png\x00')).toEqual({ filesChanged: 3, insertions: 3, deletions: 3, paths: ['a.txt', 'b.txt', 'image.png'] });
    expect(parseNumstat('')).toEqual({ filesChanged: 0, insertions: 0, deletions: 0, paths: [] });
  });
});
