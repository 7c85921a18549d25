import { existsSync } from 'node:fs';
import { readdir, readFile, realpath, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AgentGateError } from '../../src/errors.js';
import { githubCloneBaseFromApiUrl } from '../../src/workspace/git-remote.js';
import { WorkspaceManager } from '../../src/workspace/manager.js';
import { repoCachePath } from '../../src/workspace/paths.js';
import { TempDirs, commitFile, git, initRepo, liveSignal, snapshotOf } from './helpers.js';

const temp = new TempDirs();

async function rejection(promise: Promise<unknown>): Promise<AgentGateError> {
  const error = await promise.then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(error).toBeInstanceOf(AgentGateError);
  return error as AgentGateError;
}

/** Every file below `dir`, as text (the caches are small). */
async function readTree(dir: string): Promise<string> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  const files = entries.filter((entry) => entry.isFile()).map((entry) => path.join(entry.parentPath, entry.name));
  const contents = await Promise.all(files.map((file) => readFile(file, 'latin1')));
  return contents.join('\n');
}

describe('WorkspaceManager with a git remote', () => {
  let root: string;
  let home: string;
  let remote: string;
  let upstream: string;
  let manager: WorkspaceManager;

  /** A bare "remote" fed by a working clone, like a developer pushing to a server. */
  beforeEach(async () => {
    root = await realpath(await temp.make());
    home = path.join(root, 'home');
    upstream = await initRepo(path.join(root, 'upstream'));
    remote = path.join(root, 'remote.git');
    git(root, 'clone', '--quiet', '--bare', upstream, remote);
    git(upstream, 'remote', 'add', 'origin', remote);
    manager = new WorkspaceManager({ home });
  });

  afterEach(() => temp.cleanup());

  it('clones the remote into the cache on the first run and works in a repository borrowing its objects', async () => {
    const ws = await manager.acquire({ source: 'git', url: remote }, { runId: 'run-1', signal: liveSignal() });

    const cache = repoCachePath(home, remote);
    expect(ws).toMatchObject({ kind: 'git', repoPath: cache, source: remote, branch: 'agentgate/run-1', baseSha: git(upstream, 'rev-parse', 'HEAD') });
    expect(git(cache, 'rev-parse', '--is-bare-repository')).toBe('true');
    expect(path.basename(cache)).toMatch(/^[0-9a-f]{64}\.git$/);
    expect(await readFile(path.join(ws.path, 'README.md'), 'utf8')).toBe('# fixture\n');
    expect(git(ws.path, 'symbolic-ref', 'HEAD')).toBe('refs/heads/agentgate/run-1');
    // The agent's repository is its own: no remote, no config of the cache's.
    expect(git(ws.path, 'remote')).toBe('');
    expect(await readFile(path.join(ws.path, '.git', 'objects', 'info', 'alternates'), 'utf8')).toBe(`${path.join(cache, 'objects')}\n`);
    expect(await readdir(path.join(home, 'repos'))).toEqual([path.basename(cache)]);
  });

  it('fetches commits pushed to the remote between two runs', async () => {
    const first = await manager.acquire({ source: 'git', url: remote }, { runId: 'run-1', signal: liveSignal() });
    const pushed = await commitFile(upstream, 'src/new.txt', 'pushed later\n');
    git(upstream, 'push', '--quiet', 'origin', 'main');

    const second = await manager.acquire({ source: 'git', url: remote }, { runId: 'run-2', signal: liveSignal() });

    expect(second.repoPath).toBe(first.repoPath);
    expect(second.baseSha).toBe(pushed);
    expect(await readFile(path.join(second.path, 'src', 'new.txt'), 'utf8')).toBe('pushed later\n');
    expect(git(first.path, 'rev-parse', 'HEAD')).toBe(first.baseSha);
  });

  it('caches a SHA-256 remote as a SHA-256 repository, keeps that format across fetches, and runs on it', async () => {
    const upstream256 = path.join(root, 'upstream-256');
    git(root, 'init', '--quiet', '--object-format=sha256', '--initial-branch=main', upstream256);
    await commitFile(upstream256, 'README.md', '# sha-256\n');
    const remote256 = path.join(root, 'remote-256.git');
    git(root, 'clone', '--quiet', '--bare', upstream256, remote256);
    const first = await manager.acquire({ source: 'git', url: remote256 }, { runId: 'run-1', signal: liveSignal() });
    expect(first.baseSha).toMatch(/^[0-9a-f]{64}$/);
    expect(git(first.repoPath, 'rev-parse', '--show-object-format')).toBe('sha256');

    const pushed = await commitFile(upstream256, 'src/new.txt', 'pushed later\n');
    git(upstream256, 'push', '--quiet', remote256, 'main');
    const second = await manager.acquire({ source: 'git', url: remote256 }, { runId: 'run-2', signal: liveSignal() });
    expect(second.baseSha).toBe(pushed);
    expect(git(second.repoPath, 'rev-parse', '--show-object-format')).toBe('sha256');
    await writeFile(path.join(second.path, 'README.md'), 'changed\n');
    const sha = await snapshotOf(second);
    expect(git(second.repoPath, 'rev-parse', 'refs/heads/agentgate/run-2')).toBe(sha);
    expect(git(second.repoPath, 'fsck', '--strict', '--no-dangling')).toBe('');
  });

  describe('the object format of the cache', () => {
    /** A bare SHA-256 remote, empty or holding one commit on main. */
    const sha256Remote = async (name: string, withCommit: boolean): Promise<{ remote: string; upstream: string }> => {
      const upstream256 = path.join(root, `${name}-upstream`);
      git(root, 'init', '--quiet', '--object-format=sha256', '--initial-branch=main', upstream256);
      const bare = path.join(root, `${name}.git`);
      git(root, 'init', '--quiet', '--bare', '--object-format=sha256', '--initial-branch=main', bare);
      if (withCommit) {
        await commitFile(upstream256, 'README.md', '# sha-256\n');
        git(upstream256, 'push', '--quiet', bare, 'main');
      }
      return { remote: bare, upstream: upstream256 };
    };

    it('a cache whose config lost its format line, or names one outside [extensions], is set right by the remote', async () => {
      const { remote: remote256 } = await sha256Remote('damaged', true);
      const first = await manager.acquire({ source: 'git', url: remote256 }, { runId: 'run-1', signal: liveSignal() });
      await writeFile(path.join(first.repoPath, 'config'), '');
      const second = await manager.acquire({ source: 'git', url: remote256 }, { runId: 'run-2', signal: liveSignal() });
      expect(second.baseSha).toBe(first.baseSha);
      expect(git(second.repoPath, 'rev-parse', '--show-object-format')).toBe('sha256');

      // The other way round on a SHA-1 cache: a key in another section changes nothing.
      const sha1 = await manager.acquire({ source: 'git', url: remote }, { runId: 'run-3', signal: liveSignal() });
      await writeFile(path.join(sha1.repoPath, 'config'), `${await readFile(path.join(sha1.repoPath, 'config'), 'utf8')}[x]\n\tobjectformat = sha256\n`);
      const again = await manager.acquire({ source: 'git', url: remote }, { runId: 'run-4', signal: liveSignal() });
      expect(again.baseSha).toBe(git(upstream, 'rev-parse', 'HEAD'));
      expect(git(again.repoPath, 'rev-parse', '--show-object-format')).toBe('sha1');
      expect(await readFile(path.join(again.repoPath, 'config'), 'utf8')).not.toContain('[x]');
    });

    it('a cache made while a SHA-256 remote was empty is made again once the remote has commits', async () => {
      const { remote: remote256, upstream: upstream256 } = await sha256Remote('empty', false);
      const refused = await rejection(manager.acquire({ source: 'git', url: remote256, ref: 'main' }, { runId: 'run-1', signal: liveSignal() }));
      expect(refused.code).toBe('AG_ERR_WORKSPACE_REF_NOT_FOUND');
      const pushed = await commitFile(upstream256, 'README.md', '# now with a commit\n');
      git(upstream256, 'push', '--quiet', remote256, 'main');
      const ws = await manager.acquire({ source: 'git', url: remote256, ref: 'main' }, { runId: 'run-2', signal: liveSignal() });
      expect(ws.baseSha).toBe(pushed);
      expect(git(ws.repoPath, 'rev-parse', '--show-object-format')).toBe('sha256');
    });

    it('a SHA-1 cache whose remote was made again as SHA-256 fails naming the cache to remove', async () => {
      const first = await manager.acquire({ source: 'git', url: remote }, { runId: 'run-1', signal: liveSignal() });
      await rm(remote, { recursive: true, force: true });
      const { remote: replaced } = await sha256Remote('replacement', true);
      await rename(replaced, remote);
      const error = await rejection(manager.acquire({ source: 'git', url: remote }, { runId: 'run-2', signal: liveSignal() }));
      expect(error.code).toBe('AG_ERR_WORKSPACE_SETUP');
      expect(error.message).toContain(first.repoPath);
      expect(error.message).toMatch(/serves sha256 objects/);
      // The cache and what borrows it are untouched.
      expect(git(first.path, 'rev-parse', 'HEAD')).toBe(first.baseSha);
    });
  });

  it('drops what an agent wrote into the shared cache config before the next fetch', async () => {
    const first = await manager.acquire({ source: 'git', url: remote }, { runId: 'run-1', signal: liveSignal() });
    const marker = path.join(root, 'ext-ran');
    // An agent writing a url rewrite to an `ext::` command (which would run at the next fetch, with the
    // forge token in its environment) writes it into its own repository, never the cache's.
    git(first.path, 'config', 'protocol.ext.allow', 'always');
    git(first.path, 'config', `url.ext::sh -c touch% ${marker}.insteadOf`, remote);
    const pushed = await commitFile(upstream, 'src/new.txt', 'pushed later\n');
    git(upstream, 'push', '--quiet', 'origin', 'main');

    const second = await manager.acquire({ source: 'git', url: remote }, { runId: 'run-2', signal: liveSignal() });

    expect(second.baseSha).toBe(pushed);
    expect(existsSync(marker)).toBe(false);
    expect(await readFile(path.join(second.repoPath, 'config'), 'utf8')).not.toMatch(/insteadOf|protocol/);
  });

  it('resolves `ref` against the remote’s branches and tags', async () => {
    const base = git(upstream, 'rev-parse', 'HEAD');
    git(upstream, 'tag', 'v1');
    const feature = await commitFile(upstream, 'feature.txt', 'f\n');
    git(upstream, 'branch', 'feature');
    git(upstream, 'reset', '--quiet', '--hard', base);
    git(upstream, 'push', '--quiet', 'origin', 'feature', 'v1');

    const onBranch = await manager.acquire({ source: 'git', url: remote, ref: 'feature' }, { runId: 'run-b', signal: liveSignal() });
    const onTag = await manager.acquire({ source: 'git', url: remote, ref: 'v1' }, { runId: 'run-t', signal: liveSignal() });

    expect(onBranch.baseSha).toBe(feature);
    expect(onTag.baseSha).toBe(base);
  });

  it('fails with AG_ERR_WORKSPACE_REF_NOT_FOUND for a ref the remote does not have', async () => {
    const error = await rejection(manager.acquire({ source: 'git', url: remote, ref: 'nope' }, { runId: 'run-1', signal: liveSignal() }));
    expect(error.code).toBe('AG_ERR_WORKSPACE_REF_NOT_FOUND');
  });

  it('fails with AG_ERR_WORKSPACE_SETUP when the remote cannot be fetched, leaving no cache behind', async () => {
    const error = await rejection(manager.acquire({ source: 'git', url: path.join(root, 'missing.git') }, { runId: 'run-1', signal: liveSignal() }));
    expect(error.code).toBe('AG_ERR_WORKSPACE_SETUP');
    expect(error.retryable).toBe(true);
    expect(existsSync(path.join(home, 'worktrees', 'run-1'))).toBe(false);
    expect(await readdir(path.join(home, 'repos'))).toEqual([]);
  });

  it('serves concurrent runs on the same remote from one intact cache', async () => {
    const runs = await Promise.all(
      ['run-a', 'run-b', 'run-c'].map((runId) => manager.acquire({ source: 'git', url: remote }, { runId, signal: liveSignal() })),
    );
    expect(new Set(runs.map((ws) => ws.repoPath)).size).toBe(1);
    expect(new Set(runs.map((ws) => ws.path)).size).toBe(3);
    expect(await readdir(path.join(home, 'repos'))).toHaveLength(1);
    const cache = runs[0]!.repoPath;
    expect(git(cache, 'fsck', '--no-progress')).toBe('');
    // Run branches reach the cache with their first snapshot commit; none yet.
    expect(git(cache, 'for-each-ref', '--format=%(refname)', 'refs/heads/')).toBe('');
    expect(runs.map((ws) => git(ws.gitDir, 'symbolic-ref', 'HEAD'))).toEqual(['refs/heads/agentgate/run-a', 'refs/heads/agentgate/run-b', 'refs/heads/agentgate/run-c']);
  });

  it('keeps running branches intact when a later fetch prunes and a run branch was pushed', async () => {
    const first = await manager.acquire({ source: 'git', url: remote }, { runId: 'run-1', signal: liveSignal() });
    await writeFile(path.join(first.path, 'work.txt'), 'agent\n');
    const work = await snapshotOf(first);
    // Delivery pushes the run branch; the next run's fetch must neither refuse nor prune it.
    git(first.repoPath, 'push', '--quiet', remote, 'agentgate/run-1');
    git(remote, 'branch', '-D', 'agentgate/run-1');

    await manager.acquire({ source: 'git', url: remote }, { runId: 'run-2', signal: liveSignal() });

    expect(git(first.repoPath, 'rev-parse', 'refs/heads/agentgate/run-1')).toBe(work);
    expect(git(first.path, 'status', '--porcelain')).toBe('?? work.txt');
  });

  it('releases the workspace and keeps the run branch, fetched after each snapshot, in the cache', async () => {
    const ws = await manager.acquire({ source: 'git', url: remote }, { runId: 'run-1', signal: liveSignal() });
    await writeFile(path.join(ws.path, 'work.txt'), 'agent\n');
    const work = await snapshotOf(ws);
    await manager.release(ws, { signal: liveSignal() });
    expect(existsSync(ws.path)).toBe(false);
    expect(git(ws.repoPath, 'rev-parse', 'refs/heads/agentgate/run-1')).toBe(work);
  });

  describe('on GitHub and GitLab', () => {
    const TOKEN = `ghp_${'S3cr3tT0k3n'.repeat(3)}abc`;
    let forge: string;

    beforeEach(async () => {
      forge = path.join(root, 'forge');
      git(root, 'clone', '--quiet', '--bare', upstream, path.join(forge, 'acme', 'widgets.git'));
      git(root, 'clone', '--quiet', '--bare', upstream, path.join(forge, 'group', 'sub', 'tool.git'));
    });

    it('are unsupported without a configured token or base URL', async () => {
      const github = await rejection(manager.acquire({ source: 'github', repo: 'acme/widgets' }, { runId: 'run-1', signal: liveSignal() }));
      const gitlab = await rejection(manager.acquire({ source: 'gitlab', project: 'group/sub/tool' }, { runId: 'run-2', signal: liveSignal() }));
      expect(github.code).toBe('AG_ERR_WORKSPACE_UNSUPPORTED');
      expect(gitlab.code).toBe('AG_ERR_WORKSPACE_UNSUPPORTED');
    });

    it('clone from the configured base URL without the token reaching any stored file, remote or source', async () => {
      const base = pathToFileURL(forge).href;
      const configured = new WorkspaceManager({ home, github: { token: TOKEN, baseUrl: base }, gitlab: { token: TOKEN, baseUrl: base } });

      const gh = await configured.acquire({ source: 'github', repo: 'acme/widgets' }, { runId: 'run-gh', signal: liveSignal() });
      const gl = await configured.acquire({ source: 'gitlab', project: 'group/sub/tool' }, { runId: 'run-gl', signal: liveSignal() });

      expect(gh).toMatchObject({ kind: 'github', source: `${base}/acme/widgets.git`, baseSha: git(upstream, 'rev-parse', 'HEAD') });
      expect(gl).toMatchObject({ kind: 'gitlab', source: `${base}/group/sub/tool.git` });
      const basic = Buffer.from(`x-access-token:${TOKEN}`).toString('base64');
      for (const ws of [gh, gl]) {
        expect(JSON.stringify(ws)).not.toContain(TOKEN);
        expect(git(ws.path, 'remote', '-v')).not.toContain(TOKEN);
        const stored = await readTree(ws.repoPath);
        expect(stored).not.toContain(TOKEN);
        expect(stored).not.toContain(basic);
      }
    });

    it('keep the token out of error messages and causes', async () => {
      const configured = new WorkspaceManager({ home, github: { token: TOKEN, baseUrl: pathToFileURL(forge).href } });
      const error = await rejection(configured.acquire({ source: 'github', repo: 'acme/missing' }, { runId: 'run-1', signal: liveSignal() }));
      expect(error.code).toBe('AG_ERR_WORKSPACE_SETUP');
      const everything = `${error.message} ${JSON.stringify(error.toJSON())} ${error.cause instanceof Error ? error.cause.message : ''}`;
      expect(everything).not.toContain(TOKEN);
      expect(everything).toContain('acme/missing');
    });

    it('reject malformed repository names', async () => {
      const configured = new WorkspaceManager({ home, github: { token: TOKEN } });
      for (const repo of ['acme', '../etc/passwd', 'acme/widgets/extra', 'acme/..']) {
        const error = await rejection(configured.acquire({ source: 'github', repo }, { runId: 'run-1', signal: liveSignal() }));
        expect(error.code).toBe('AG_ERR_SCHEMA_INVALID');
      }
    });

    it('derive the clone base from the GitHub API URL', () => {
      expect(githubCloneBaseFromApiUrl('https://api.github.com')).toBe('https://github.com');
      expect(githubCloneBaseFromApiUrl('https://ghe.example.com/api/v3')).toBe('https://ghe.example.com');
    });
  });
});
