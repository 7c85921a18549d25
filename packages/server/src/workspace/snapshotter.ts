/**
 * The snapshot step of every iteration (SPEC section 4): stage everything the agent left in the
 * workspace, commit it on the run branch as `agentgate: iteration <n>`, record what changed, and fetch
 * the branch into the repository the run belongs to.
 *
 * Every git call runs against AgentGate's own git directory and index of the run (`isolated-git.ts`),
 * with the workspace only as the work tree: the agent's `.git` (its config, attributes, hooks, index,
 * HEAD and branches) is never read, so an agent that switches branches, commits, or defines filters and
 * diff drivers changes nothing about what is recorded — the snapshot is the bytes of its files.
 *
 * An iteration in which the agent changed nothing is flagged `noChange` — strategies use that to detect
 * no-progress loops, and the feedback tells the agent. By default (`emptyIterations: 'skip'`) it gets no
 * commit: the run branch holds only iterations that changed something, and the snapshot's sha is the
 * previous snapshot's (or the base commit); `'commit'` records an empty commit (`--allow-empty`) instead.
 * The commit is made as the fixed AgentGate identity with hooks and signing disabled (see `git.ts`).
 *
 * The run branch reaches the repository only with a commit: the first snapshot that changed something
 * creates it there, so a run in which the agent never changed anything leaves no branch.
 *
 * `snapshot` never throws: it returns `{ ok: false, error }` with AG_ERR_PHASE_SNAPSHOT (git failed) or
 * the cancellation reason (the run was canceled), as phase handlers require.
 */
import { mkdir, readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { AgentGateError, isDiskFull, toAgentGateError } from '../errors.js';
import { canceledError, runGit, runGitTrimmed, type GitCall } from './git.js';
import { BASE_GITLINKS_FILE, type IsolatedGit } from './isolated-git.js';
import { safeJoin } from './paths.js';
import type { SnapshotResult, Workspace } from './types.js';

export interface SnapshotRequest {
  workspace: Workspace;
  /** 1-based iteration number; part of the commit message and the patch file name. */
  iteration: number;
  /** Where `iteration-<n>.patch` is written (`$AGENTGATE_HOME/runs/<runId>`). */
  artifactsDir: string;
  /**
   * The previous iteration's snapshot sha. This iteration's stats and `noChange` are measured against
   * it. Default: the parent of the new snapshot on AgentGate's run branch (the previous snapshot, or the
   * base commit for iteration 1).
   */
  previousSha?: string;
  signal: AbortSignal;
}

export type SnapshotOutcome = { ok: true; snapshot: SnapshotResult } | { ok: false; error: AgentGateError };

/** The commit message of an iteration snapshot; fixed, so tools can find snapshots in the log. */
export function snapshotMessage(iteration: number): string {
  return `agentgate: iteration ${iteration}`;
}

export interface SnapshotterOptions {
  /** What an iteration that changed nothing leaves on the run branch: nothing (default), or an empty commit. */
  emptyIterations?: 'commit' | 'skip';
}

export class Snapshotter {
  constructor(private readonly options: SnapshotterOptions = {}) {}

  /** Commits the worktree and reports the iteration's changes; never throws. */
  async snapshot(request: SnapshotRequest): Promise<SnapshotOutcome> {
    try {
      return { ok: true, snapshot: await this.commit(request) };
    } catch (error) {
      // A canceled snapshot reports the cancellation, never a git failure.
      if (request.signal.aborted) return { ok: false, error: canceledError(request.signal, `snapshot iteration ${request.iteration}`) };
      if (error instanceof AgentGateError && (error.code === 'AG_ERR_PHASE_SNAPSHOT' || error.code === 'AG_ERR_DISK_FULL')) return { ok: false, error };
      if (isDiskFull(error)) return { ok: false, error: toAgentGateError(error) };
      const message = error instanceof Error ? error.message : String(error);
      return {
        ok: false,
        error: new AgentGateError('AG_ERR_PHASE_SNAPSHOT', `Snapshot of iteration ${request.iteration} failed: ${message}`, { cause: error }),
      };
    }
  }

  private async commit(request: SnapshotRequest): Promise<SnapshotResult> {
    const { workspace, iteration, signal } = request;
    if (!Number.isSafeInteger(iteration) || iteration < 1) {
      throw new AgentGateError('AG_ERR_PHASE_SNAPSHOT', `Invalid iteration number ${iteration}`);
    }
    const patchPath = safeJoin(request.artifactsDir, `iteration-${iteration}.patch`);
    const own: IsolatedGit = { gitDir: workspace.gitDir, indexFile: workspace.indexFile, workTree: workspace.path };
    const git = (args: readonly string[], what: string): GitCall => ({ cwd: workspace.path, args, signal, failAs: 'AG_ERR_PHASE_SNAPSHOT', what, isolated: own });

    // Nested repositories (a directory with its own .git) are listed by ls-files as `path/`; git would
    // record them as gitlinks of commits that exist nowhere (or refuse to add them at all), so they are
    // left out and reported. Submodule paths of the base commit whose directory now holds files are
    // reported too: their content is not part of any snapshot.
    const [untracked, gitlinks] = await Promise.all([
      runGit(git(['ls-files', '-z', '--others', '--exclude-standard'], 'list the new files')),
      readBaseGitlinks(workspace.gitDir),
    ]);
    const nested = untracked
      .split('\0')
      .filter((entry) => entry.endsWith('/'))
      .map((entry) => entry.slice(0, -1));
    const uncaptured = [...nested, ...(await populatedDirectories(workspace.path, gitlinks))].sort();
    const exclusions = nested.map((dir) => `:(top,exclude,literal)${dir}`);

    await runGit(git(['add', '--all', ...(exclusions.length === 0 ? [] : ['--', ':(top)', ...exclusions])], 'stage the changes'));
    let committed = true;
    if ((this.options.emptyIterations ?? 'skip') === 'skip') {
      const [indexTree, headTree] = await Promise.all([
        runGitTrimmed(git(['write-tree'], 'read the staged tree')),
        runGitTrimmed(git(['rev-parse', 'HEAD^{tree}'], 'read the last snapshot tree')),
      ]);
      committed = indexTree !== headTree;
    }
    if (committed) await runGit(git(['commit', '--allow-empty', '--no-verify', '--quiet', '-m', snapshotMessage(iteration)], 'commit the snapshot'));
    // AgentGate's branch only ever holds snapshots, so HEAD^ is the previous snapshot (or the base); without
    // a new commit, HEAD is the previous snapshot itself.
    const since = request.previousSha ?? (committed ? 'HEAD^' : 'HEAD');
    const [sha = '', treeSha = '', sinceSha = '', sinceTree = ''] = (
      await runGitTrimmed(git(['rev-parse', 'HEAD', 'HEAD^{tree}', since, `${since}^{tree}`], 'read the snapshot commit'))
    ).split('\n');

    const diffOptions = ['--no-ext-diff', '--no-textconv', '--no-color', '--no-renames'];
    await mkdir(request.artifactsDir, { recursive: true });
    // Measured from the base (the first iteration), the iteration's numstat already names every changed
    // file: one git process fewer.
    const fromBase = sinceSha === workspace.baseSha;
    const [numstat, names] = await Promise.all([
      runGit(git(['diff', ...diffOptions, '--numstat', '-z', sinceSha, sha], 'compute the iteration stats')),
      fromBase ? Promise.resolve(undefined) : runGit(git(['diff', ...diffOptions, '--name-only', '-z', workspace.baseSha, sha], 'list the changed files')),
      // git writes the patch itself: bytes stay exact (any file encoding) and nothing is buffered here.
      runGit(git(['diff', ...diffOptions, '--binary', '--full-index', `--output=${patchPath}`, workspace.baseSha, sha], 'write the patch')),
      // The run branch reaches the repository by the repository fetching it from AgentGate's git directory;
      // without a new commit there is nothing new to fetch (and before the first one, no branch to create).
      committed ? fetchRunBranch(workspace, signal) : Promise.resolve(),
    ]);
    const stats = parseNumstat(numstat);

    return {
      iteration,
      sha,
      treeSha,
      noChange: treeSha === sinceTree,
      committed,
      filesChanged: stats.filesChanged,
      insertions: stats.insertions,
      deletions: stats.deletions,
      changedFiles: names === undefined ? stats.paths : names.split('\0').filter((name) => name.length > 0),
      patchPath,
      uncaptured,
    };
  }
}

/**
 * Brings the run branch from AgentGate's git directory into the repository (`workspace.repoPath`): a
 * `git fetch` run there, with hooks off and no inherited git environment, that writes exactly one ref,
 * `refs/heads/<branch>` (no FETCH_HEAD, no tags, no submodules, no automatic maintenance). The objects
 * arrive through git's own transfer, which checks them.
 *
 * @throws AG_ERR_PHASE_SNAPSHOT.
 */
export async function fetchRunBranch(workspace: Workspace, signal: AbortSignal): Promise<void> {
  const ref = `refs/heads/${workspace.branch}`;
  await runGit({
    cwd: workspace.repoPath,
    args: ['fetch', '--quiet', '--no-tags', '--no-write-fetch-head', '--no-recurse-submodules', '--no-auto-maintenance', '--no-show-forced-updates', workspace.gitDir, `+${ref}:${ref}`],
    signal,
    failAs: 'AG_ERR_PHASE_SNAPSHOT',
    what: `fetch the run branch ${workspace.branch} into ${workspace.repoPath}`,
    hardened: true,
  });
}

/** Gitlink (submodule) paths of the base commit, recorded by {@link recordBaseGitlinks} at creation. */
async function readBaseGitlinks(gitDir: string): Promise<string[]> {
  const text = await readFile(path.join(gitDir, BASE_GITLINKS_FILE), 'utf8').catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return '';
    throw error;
  });
  return text.split('\0').filter((entry) => entry.length > 0);
}

/** Which of `dirs` (relative to `root`) are directories with at least one entry. */
async function populatedDirectories(root: string, dirs: readonly string[]): Promise<string[]> {
  const found = await Promise.all(
    dirs.map((dir) =>
      readdir(path.join(root, dir)).then(
        (entries) => (entries.length > 0 ? dir : undefined),
        (error: NodeJS.ErrnoException) => {
          if (error.code === 'ENOENT' || error.code === 'ENOTDIR') return undefined;
          throw error;
        },
      ),
    ),
  );
  return found.filter((dir): dir is string => dir !== undefined);
}

/**
 * Parses `git diff --numstat -z` (`<added>\t<deleted>\t<path>\0` per file; `-` for binary files, which
 * count as changed with no line counts).
 */
export function parseNumstat(output: string): { filesChanged: number; insertions: number; deletions: number; paths: string[] } {
  let insertions = 0;
  let deletions = 0;
  const paths: string[] = [];
  for (const record of output.split('\0')) {
    const match = /^(\d+|-)\t(\d+|-)\t/.exec(record);
    if (match === null) continue;
    paths.push(record.slice(match[0].length));
    insertions += match[1] === '-' || match[1] === undefined ? 0 : Number(match[1]);
    deletions += match[2] === '-' || match[2] === undefined ? 0 : Number(match[2]);
  }
  return { filesChanged: paths.length, insertions, deletions, paths };
}
