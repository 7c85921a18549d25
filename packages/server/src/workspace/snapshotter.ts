/**
 * The snapshot step of every iteration (SPEC section 4): stage everything the agent left in the
 * worktree, commit it on the run branch as `agentgate: iteration <n>`, and record what changed.
 *
 * An iteration in which the agent changed nothing still gets a commit (`--allow-empty`), so every
 * iteration has a sha, and is flagged `noChange` — strategies use that to detect no-progress loops. The
 * commit is made as the fixed AgentGate identity with hooks and signing disabled (see `git.ts`), so
 * neither the machine's git configuration nor the project's hooks can block or alter a snapshot.
 *
 * `snapshot` never throws: it returns `{ ok: false, error }` with AG_ERR_PHASE_SNAPSHOT (git failed) or
 * the cancellation reason (the run was canceled), as phase handlers require.
 */
import { mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { AgentGateError } from '../errors.js';
import { canceledError, runGit, runGitTrimmed, type GitCall } from './git.js';
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
   * it, which stays right even when the agent made commits of its own. Default: the base commit for
   * iteration 1, otherwise the branch head before this snapshot.
   */
  previousSha?: string;
  signal: AbortSignal;
}

export type SnapshotOutcome = { ok: true; snapshot: SnapshotResult } | { ok: false; error: AgentGateError };

/** The commit message of an iteration snapshot; fixed, so tools can find snapshots in the log. */
export function snapshotMessage(iteration: number): string {
  return `agentgate: iteration ${iteration}`;
}

/**
 * What the worktree's HEAD points at, read the way git resolves it (`<worktree>/.git` names the
 * worktree's git directory, whose `HEAD` file holds `ref: <ref>` or a detached sha) without starting a
 * git process: `refs/heads/<branch>`, or `HEAD` when detached.
 * @throws AG_ERR_PHASE_SNAPSHOT when the files cannot be read or hold something else.
 */
export async function readHeadRef(worktreePath: string): Promise<string> {
  const fail = (reason: string, cause?: unknown): AgentGateError =>
    new AgentGateError('AG_ERR_PHASE_SNAPSHOT', `Cannot read the HEAD of the worktree ${worktreePath}: ${reason}`, cause === undefined ? {} : { cause });
  const read = (file: string): Promise<string> =>
    readFile(file, 'utf8').then(
      (text) => text.trim(),
      (error: NodeJS.ErrnoException) => {
        throw fail(`${file}: ${error.code ?? error.message}`, error);
      },
    );
  const dotGit = await read(path.join(worktreePath, '.git'));
  if (!dotGit.startsWith('gitdir: ')) throw fail('.git is not a linked-worktree file');
  const head = await read(path.join(path.resolve(worktreePath, dotGit.slice('gitdir: '.length)), 'HEAD'));
  if (head.startsWith('ref: ')) return head.slice('ref: '.length);
  if (/^[0-9a-f]{40,64}$/.test(head)) return 'HEAD';
  throw fail('HEAD holds neither a ref nor a commit id');
}

export class Snapshotter {
  /** Commits the worktree and reports the iteration's changes; never throws. */
  async snapshot(request: SnapshotRequest): Promise<SnapshotOutcome> {
    try {
      return { ok: true, snapshot: await this.commit(request) };
    } catch (error) {
      // A canceled snapshot reports the cancellation, never a git failure.
      if (request.signal.aborted) return { ok: false, error: canceledError(request.signal, `snapshot iteration ${request.iteration}`) };
      if (error instanceof AgentGateError && error.code === 'AG_ERR_PHASE_SNAPSHOT') return { ok: false, error };
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
    const git = (args: readonly string[], what: string): GitCall => ({
      cwd: workspace.path,
      args,
      signal,
      failAs: 'AG_ERR_PHASE_SNAPSHOT',
      what,
    });

    // The agent may have switched branches or detached HEAD; committing there would lose the work
    // from the run branch, so that is a snapshot failure, not something to paper over.
    const headRef = await readHeadRef(workspace.path);
    if (headRef !== `refs/heads/${workspace.branch}`) {
      throw new AgentGateError(
        'AG_ERR_PHASE_SNAPSHOT',
        `The worktree is not on the run branch ${workspace.branch} (HEAD is ${headRef === 'HEAD' ? 'detached' : headRef || 'unknown'})`,
        { details: { branch: workspace.branch, head: headRef } },
      );
    }
    const since = request.previousSha ?? (iteration === 1 ? workspace.baseSha : await runGitTrimmed(git(['rev-parse', 'HEAD'], 'read the worktree HEAD')));

    await runGit(git(['add', '--all'], 'stage the changes'));
    await runGit(git(['commit', '--allow-empty', '--no-verify', '--quiet', '-m', snapshotMessage(iteration)], 'commit the snapshot'));
    const [sha = '', treeSha = '', sinceTree = ''] = (
      await runGitTrimmed(git(['rev-parse', 'HEAD', 'HEAD^{tree}', `${since}^{tree}`], 'read the snapshot commit'))
    ).split('\n');

    const diffOptions = ['--no-ext-diff', '--no-textconv', '--no-color', '--no-renames'];
    await mkdir(request.artifactsDir, { recursive: true });
    // Measured from the base (the first iteration, or an agent that reset to it), the iteration's
    // numstat already names every changed file: one git process fewer.
    const fromBase = since === workspace.baseSha;
    const [numstat, names] = await Promise.all([
      runGit(git(['diff', ...diffOptions, '--numstat', '-z', since, sha], 'compute the iteration stats')),
      fromBase ? Promise.resolve(undefined) : runGit(git(['diff', ...diffOptions, '--name-only', '-z', workspace.baseSha, sha], 'list the changed files')),
      // git writes the patch itself: bytes stay exact (any file encoding) and nothing is buffered here.
      runGit(git(['diff', ...diffOptions, '--binary', '--full-index', `--output=${patchPath}`, workspace.baseSha, sha], 'write the patch')),
    ]);
    const stats = parseNumstat(numstat);

    return {
      iteration,
      sha,
      treeSha,
      noChange: treeSha === sinceTree,
      filesChanged: stats.filesChanged,
      insertions: stats.insertions,
      deletions: stats.deletions,
      changedFiles: names === undefined ? stats.paths : names.split('\0').filter((name) => name.length > 0),
      patchPath,
    };
  }
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
