/**
 * Local repositories (SPEC section 8, `local { path, ref? }`) and the worktree operations shared by
 * every workspace kind.
 *
 * The user's repository is never modified in place: AgentGate only reads it (`rev-parse`, a status
 * that takes no optional locks, so not even the index's stat cache is rewritten) and then adds a
 * *linked worktree* on a new branch. The user's working tree, index, HEAD and current branch stay
 * exactly as they were; the run's result is the branch `agentgate/<runId>` in their repository.
 */
import { realpath, rm, stat, mkdir } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { AgentGateError } from '../errors.js';
import { canceledError, neverAborted, runGit, runGitTrimmed, withCleanupFailure } from './git.js';
import { isInside } from './paths.js';

/** What a source resolves to before the run's worktree is created. */
export interface PreparedSource {
  /** The repository that will hold the run branch (top level of a work tree, or a bare repository). */
  repoPath: string;
  /** The commit the run starts from. */
  baseSha: string;
  /** Human-readable, credential-free description of the source. */
  source: string;
  warnings: string[];
}

export interface LocalSourceSpec {
  path: string;
  ref?: string;
}

/**
 * Inspects the user's repository without changing it: finds its top level, resolves `ref` (or HEAD) to
 * a commit and records uncommitted changes as a warning (the run starts from the commit, so those
 * changes are not part of it — a warning, not an error).
 *
 * @throws AG_ERR_WORKSPACE_NOT_A_REPO, AG_ERR_WORKSPACE_REF_NOT_FOUND.
 */
export async function inspectLocalRepository(spec: LocalSourceSpec, signal: AbortSignal): Promise<PreparedSource> {
  const requested = path.resolve(spec.path);
  const isDirectory = await stat(requested).then(
    (info) => info.isDirectory(),
    (error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT' || error.code === 'ENOTDIR') return false;
      throw new AgentGateError('AG_ERR_WORKSPACE_NOT_A_REPO', `Cannot read workspace path ${requested}: ${error.code ?? error.message}`, {
        cause: error,
      });
    },
  );
  if (!isDirectory) {
    throw new AgentGateError('AG_ERR_WORKSPACE_NOT_A_REPO', `Workspace path ${requested} does not exist or is not a directory`, {
      details: { path: requested },
    });
  }
  const probe = { cwd: requested, signal, failAs: 'AG_ERR_WORKSPACE_NOT_A_REPO', what: `open ${requested} as a git repository` } as const;
  const quick = spec.ref === undefined ? await workTreeAndHead(requested, signal) : undefined;
  if (quick !== undefined) {
    // The common case in one git call: a work tree whose HEAD is a commit.
    const repoPath = await realpath(quick.top);
    return { repoPath, baseSha: quick.head, source: repoPath, warnings: await uncommittedChangesWarning(repoPath, quick.head, undefined, signal) };
  }
  const bare = (await runGitTrimmed({ ...probe, args: ['rev-parse', '--is-bare-repository'] })) === 'true';
  const top = await runGitTrimmed({ ...probe, args: ['rev-parse', bare ? '--absolute-git-dir' : '--show-toplevel'] });
  const repoPath = await realpath(top);
  const baseSha = await resolveCommit(repoPath, spec.ref === undefined ? ['HEAD'] : refCandidates(spec.ref), spec.ref ?? 'HEAD', signal);
  const warnings = bare ? [] : await uncommittedChangesWarning(repoPath, baseSha, spec.ref, signal);
  return { repoPath, baseSha, source: repoPath, warnings };
}

/**
 * The work tree's top level and HEAD's commit in one `rev-parse`; undefined when that does not apply
 * (a bare repository, no commit yet, not a repository) — the caller then takes the step-by-step path,
 * which produces the precise error.
 */
async function workTreeAndHead(dir: string, signal: AbortSignal): Promise<{ top: string; head: string } | undefined> {
  try {
    const [top, head] = (await runGitTrimmed({ cwd: dir, args: ['rev-parse', '--show-toplevel', 'HEAD^{commit}'], signal, failAs: 'AG_ERR_WORKSPACE_NOT_A_REPO', what: `open ${dir} as a git repository` })).split('\n');
    return top !== undefined && head !== undefined && /^[0-9a-f]{40,64}$/.test(head) ? { top, head } : undefined;
  } catch (error) {
    if (signal.aborted || !(error instanceof AgentGateError)) throw error;
    return undefined;
  }
}

/**
 * Validates a user-supplied ref before it reaches git's argv: not empty, not an option, no control
 * characters or whitespace.
 *
 * @throws AG_ERR_WORKSPACE_REF_NOT_FOUND for a ref that cannot name anything.
 */
export function validateRef(ref: string): string {
  // eslint-disable-next-line no-control-regex
  if (ref.length === 0 || ref.length > 1024 || ref.startsWith('-') || /[\u0000-\u0020\u007f]/.test(ref)) {
    throw new AgentGateError('AG_ERR_WORKSPACE_REF_NOT_FOUND', `Invalid ref ${JSON.stringify(ref)}`, { details: { ref } });
  }
  return ref;
}

function refCandidates(ref: string): string[] {
  return [validateRef(ref)];
}

/**
 * Resolves the first candidate that names a commit. Candidates let a cached clone prefer the remote's
 * branch over a same-named tag or local ref.
 *
 * @throws AG_ERR_WORKSPACE_REF_NOT_FOUND when none does.
 */
export async function resolveCommit(repoPath: string, candidates: readonly string[], shown: string, signal: AbortSignal): Promise<string> {
  let lastError: AgentGateError | undefined;
  for (const candidate of candidates) {
    try {
      return await runGitTrimmed({
        cwd: repoPath,
        args: ['rev-parse', '--verify', '--quiet', `${candidate}^{commit}`],
        signal,
        failAs: 'AG_ERR_WORKSPACE_REF_NOT_FOUND',
        what: `resolve ${candidate}`,
      });
    } catch (error) {
      if (signal.aborted || !(error instanceof AgentGateError) || error.code !== 'AG_ERR_WORKSPACE_REF_NOT_FOUND') throw error;
      lastError = error;
    }
  }
  throw new AgentGateError('AG_ERR_WORKSPACE_REF_NOT_FOUND', `Ref "${shown}" does not name a commit in ${repoPath}`, {
    cause: lastError,
    details: { ref: shown },
  });
}

async function uncommittedChangesWarning(repoPath: string, baseSha: string, ref: string | undefined, signal: AbortSignal): Promise<string[]> {
  // --no-optional-locks: a plain `git status` refreshes and rewrites the user's index; this one only reads.
  const status = await runGit({
    cwd: repoPath,
    args: ['--no-optional-locks', 'status', '--porcelain', '--untracked-files=normal'],
    signal,
    failAs: 'AG_ERR_WORKSPACE_SETUP',
    what: `read the status of ${repoPath}`,
  });
  const paths = status.split('\n').filter((line) => line.length > 0).length;
  if (paths === 0) return [];
  return [
    `The repository ${repoPath} has uncommitted changes (${paths} path${paths === 1 ? '' : 's'}); ` +
      `they are not part of the run, which starts from ${baseSha.slice(0, 12)} (${ref ?? 'HEAD'}).`,
  ];
}

export interface CreateWorktreeRequest {
  repoPath: string;
  worktreePath: string;
  branch: string;
  baseSha: string;
  signal: AbortSignal;
}

/**
 * `git worktree add -b <branch> <worktreePath> <baseSha>` in `repoPath`. Only adds a branch and the
 * worktree's administrative files to the repository; the repository's own checkout is not touched. A
 * failed or canceled add is rolled back (directory removed, branch deleted if it still points at the
 * base commit) so a retry starts clean.
 *
 * @throws AG_ERR_WORKSPACE_SETUP.
 */
export async function createRunWorktree(request: CreateWorktreeRequest): Promise<void> {
  const { repoPath, worktreePath, branch, baseSha, signal } = request;
  if (existsSync(worktreePath)) {
    throw new AgentGateError('AG_ERR_WORKSPACE_SETUP', `The run worktree ${worktreePath} already exists`, {
      retryable: false,
      details: { path: worktreePath },
    });
  }
  await mkdir(path.dirname(worktreePath), { recursive: true });
  try {
    await runGit({
      cwd: repoPath,
      args: ['worktree', 'add', '--quiet', '-b', branch, worktreePath, baseSha],
      signal,
      failAs: 'AG_ERR_WORKSPACE_SETUP',
      what: `create the run worktree on branch ${branch}`,
    });
  } catch (error) {
    const rollbackFailure = await rollbackWorktree(request).then(
      () => undefined,
      (rollbackError: unknown) => rollbackError,
    );
    throw withCleanupFailure(error, rollbackFailure, 'rolling back the worktree');
  }
}

async function rollbackWorktree({ repoPath, worktreePath, branch, baseSha }: CreateWorktreeRequest): Promise<void> {
  // Runs outside the run's (possibly aborted) scope: a half-created worktree must not survive.
  const cleanup = neverAborted();
  const what = `roll back the worktree ${worktreePath}`;
  await rm(worktreePath, { recursive: true, force: true });
  await runGit({ cwd: repoPath, args: ['worktree', 'prune'], signal: cleanup, failAs: 'AG_ERR_WORKSPACE_CLEANUP', what });
  const current = await runGitTrimmed({
    cwd: repoPath,
    args: ['for-each-ref', '--format=%(objectname)', `refs/heads/${branch}`],
    signal: cleanup,
    failAs: 'AG_ERR_WORKSPACE_CLEANUP',
    what,
  });
  // Only a branch that still points at the base commit is ours and holds no work; compare-and-delete.
  if (current === baseSha) {
    await runGit({ cwd: repoPath, args: ['update-ref', '-d', `refs/heads/${branch}`, baseSha], signal: cleanup, failAs: 'AG_ERR_WORKSPACE_CLEANUP', what });
  }
}

export interface RemoveWorktreeRequest {
  /** The repository the worktree belongs to; undefined when unknown (the directory is simply deleted). */
  repoPath: string | undefined;
  worktreePath: string;
  /** The directory all run worktrees live in; a fallback `rm -rf` never goes outside it. */
  worktreesRoot: string;
  signal: AbortSignal;
}

/**
 * Removes a run worktree (`git worktree remove --force`; `git worktree prune` when that fails); the branch and its
 * commits stay in the repository. When git cannot remove it — the agent deleted or corrupted the
 * worktree's `.git` file, for example — the directory is deleted directly (only below
 * `worktreesRoot`) and the stale registration is pruned, so cleanup cannot be skipped. Idempotent.
 *
 * @throws AG_ERR_WORKSPACE_CLEANUP.
 */
export async function removeRunWorktree(request: RemoveWorktreeRequest): Promise<void> {
  const { repoPath, worktreePath, worktreesRoot, signal } = request;
  if (!isInside(worktreesRoot, worktreePath) || path.resolve(worktreesRoot) === path.resolve(worktreePath)) {
    throw new AgentGateError('AG_ERR_WORKSPACE_PATH_ESCAPE', `Refusing to remove ${worktreePath}: it is not a run worktree below ${worktreesRoot}`);
  }
  const repoExists = repoPath !== undefined && existsSync(repoPath);
  // `worktree remove` deregisters what it removes; a prune is only needed when it could not run.
  let needPrune = true;
  if (existsSync(worktreePath)) {
    let gitFailure: unknown;
    if (repoPath !== undefined && repoExists) {
      gitFailure = await runGit({
        cwd: repoPath,
        args: ['worktree', 'remove', '--force', worktreePath],
        signal,
        failAs: 'AG_ERR_WORKSPACE_CLEANUP',
        what: `remove the worktree ${worktreePath}`,
      }).then(
        () => undefined,
        (error: unknown) => error,
      );
      if (signal.aborted) throw canceledError(signal, `remove the worktree ${worktreePath}`);
      needPrune = gitFailure !== undefined;
    }
    if (!repoExists || gitFailure !== undefined) {
      await rm(worktreePath, { recursive: true, force: true }).catch((error: unknown) => {
        throw new AgentGateError('AG_ERR_WORKSPACE_CLEANUP', `Could not delete the worktree directory ${worktreePath}`, {
          cause: gitFailure ?? error,
          details: { path: worktreePath },
        });
      });
    }
  }
  if (repoPath !== undefined && repoExists && needPrune) {
    await runGit({ cwd: repoPath, args: ['worktree', 'prune'], signal, failAs: 'AG_ERR_WORKSPACE_CLEANUP', what: 'prune worktrees' });
  }
}
