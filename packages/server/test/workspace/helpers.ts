/**
 * Real-git fixtures for the workspace tests: unique temp directories, repositories with commits made
 * under a test identity (the CI machine has no global git identity), and a snapshot of everything that
 * must stay untouched in a user's repository.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Snapshotter } from '../../src/workspace/snapshotter.js';
import type { Workspace } from '../../src/workspace/types.js';

const TEST_IDENTITY = {
  GIT_AUTHOR_NAME: 'Test User',
  GIT_AUTHOR_EMAIL: 'test@example.com',
  GIT_COMMITTER_NAME: 'Test User',
  GIT_COMMITTER_EMAIL: 'test@example.com',
};

/** Runs git synchronously in `cwd` and returns stdout without the trailing newline. */
export function git(cwd: string, ...args: string[]): string {
  return execFileSync('git', args, {
    cwd,
    env: { ...process.env, ...TEST_IDENTITY },
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  }).replace(/\n$/, '');
}

/** Collects temp directories and removes them all (call from afterEach). */
export class TempDirs {
  private readonly dirs: string[] = [];

  async make(prefix = 'agentgate-ws-'): Promise<string> {
    const dir = await mkdtemp(path.join(tmpdir(), prefix));
    this.dirs.push(dir);
    return dir;
  }

  async cleanup(): Promise<void> {
    await Promise.all(this.dirs.splice(0).map((dir) => rm(dir, { recursive: true, force: true })));
  }
}

/** A repository on branch `main` with one commit holding README.md and src/app.txt. */
export async function initRepo(dir: string): Promise<string> {
  await mkdir(dir, { recursive: true });
  git(dir, 'init', '--quiet', '--initial-branch=main');
  await writeFile(path.join(dir, 'README.md'), '# fixture\n');
  await mkdir(path.join(dir, 'src'), { recursive: true });
  await writeFile(path.join(dir, 'src', 'app.txt'), 'one\ntwo\nthree\n');
  git(dir, 'add', '--all');
  git(dir, 'commit', '--quiet', '-m', 'initial');
  return dir;
}

/** Writes a file and commits it; returns the new HEAD sha. */
export async function commitFile(dir: string, file: string, content: string, message = `change ${file}`): Promise<string> {
  await mkdir(path.dirname(path.join(dir, file)), { recursive: true });
  await writeFile(path.join(dir, file), content);
  git(dir, 'add', '--', file);
  git(dir, 'commit', '--quiet', '-m', message);
  return git(dir, 'rev-parse', 'HEAD');
}

export interface RepoState {
  indexSha256: string;
  head: string;
  branch: string;
  status: string;
  staged: string;
  worktreeFile: string;
}

/**
 * Everything AgentGate must not change in a user's repository. The index is hashed first, before any
 * git command of ours could refresh it.
 */
export async function captureRepoState(dir: string, file = 'src/app.txt'): Promise<RepoState> {
  const indexSha256 = createHash('sha256')
    .update(await readFile(path.join(dir, '.git', 'index')))
    .digest('hex');
  return {
    indexSha256,
    head: git(dir, 'rev-parse', 'HEAD'),
    branch: git(dir, 'symbolic-ref', 'HEAD'),
    status: git(dir, '--no-optional-locks', 'status', '--porcelain'),
    staged: git(dir, '--no-optional-locks', 'diff', '--cached', '--name-only'),
    worktreeFile: await readFile(path.join(dir, file), 'utf8'),
  };
}

/** A signal that is never aborted. */
export function liveSignal(): AbortSignal {
  return new AbortController().signal;
}

/**
 * Records what is in the workspace as AgentGate does after an iteration (a snapshot on the run branch,
 * fetched into the workspace's repository) and returns the snapshot commit.
 */
export async function snapshotOf(workspace: Workspace, iteration = 1): Promise<string> {
  const artifactsDir = path.join(path.dirname(path.dirname(workspace.gitDir)), workspace.runId);
  const outcome = await new Snapshotter().snapshot({ workspace, iteration, artifactsDir, signal: liveSignal() });
  if (!outcome.ok) throw outcome.error;
  return outcome.snapshot.sha;
}
