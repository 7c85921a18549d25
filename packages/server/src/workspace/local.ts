/**
 * Local repositories (SPEC section 8, `local { path, ref? }`) and the workspace operations shared by
 * every workspace kind.
 *
 * The user's repository is never modified in place: AgentGate only reads it (`rev-parse`, a status
 * that takes no optional locks, so not even the index's stat cache is rewritten) and fetches the snapshot
 * commits onto the run branch, which the first snapshot that changed something creates. The workspace is a repository of its
 * own (see `isolated-git.ts`), not a linked worktree: the user's `.git` gains no worktree entry and is
 * never shared with the agent. The user's working tree, index, HEAD and current branch stay exactly as
 * they were; the run's result is the branch `agentgate/<runId>` in their repository.
 */
import { copyFile, realpath, stat, readFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { AgentGateError } from '../errors.js';
import { canceledError, runGit, runGitTrimmed, withCleanupFailure } from './git.js';
import { createRunRepositories, recordBaseGitlinks, removeTree, shareIndexWithAgent, type IsolatedGit } from './isolated-git.js';
import { readIndexListing } from './index-file.js';
import { isInside } from './paths.js';

/** What a source resolves to before the run's worktree is created. */
export interface PreparedSource {
  /** The repository that will hold the run branch (top level of a work tree, or a bare repository). */
  repoPath: string;
  /** The commit the run starts from. */
  baseSha: string;
  /** The repository's object directory (absolute); the run's repositories borrow it read-only. */
  objectsDir: string;
  /** Human-readable, credential-free description of the source. */
  source: string;
  /** Warnings known once the source is resolved. */
  warnings: string[];
  /**
   * More warnings from a check that only reads the source (a local work tree's status), left to the
   * acquisition to run while it creates the workspace instead of before. Its failure fails the
   * acquisition as it would have failed the resolution. Absent when there is nothing more to check.
   */
  deferredWarnings?: (signal: AbortSignal) => Promise<string[]>;
}

export interface LocalSourceSpec {
  path: string;
  ref?: string;
}

/**
 * Inspects the user's repository without changing it: finds its top level and resolves `ref` (or HEAD) to
 * a commit. Uncommitted changes of a work tree become a warning (the run starts from the commit, so those
 * changes are not part of it — a warning, not an error) through `deferredWarnings`: reading the status
 * takes a git process that the acquisition runs alongside the workspace's creation.
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
    const [repoPath, objectsDir] = await Promise.all([realpath(quick.top), realpath(path.join(quick.commonDir, 'objects'))]);
    return withUncommittedChangesCheck({ repoPath, baseSha: quick.head, objectsDir, source: repoPath, warnings: [] }, undefined);
  }
  const [bareFlag = '', commonDir = ''] = (await runGitTrimmed({ ...probe, args: ['rev-parse', '--is-bare-repository', '--path-format=absolute', '--git-common-dir'] })).split('\n');
  const bare = bareFlag === 'true';
  const top = await runGitTrimmed({ ...probe, args: ['rev-parse', bare ? '--absolute-git-dir' : '--show-toplevel'] });
  const [repoPath, objectsDir] = await Promise.all([realpath(top), realpath(path.join(commonDir, 'objects'))]);
  const baseSha = await resolveCommit(repoPath, spec.ref === undefined ? ['HEAD'] : refCandidates(spec.ref), spec.ref ?? 'HEAD', signal);
  const source: PreparedSource = { repoPath, baseSha, objectsDir, source: repoPath, warnings: [] };
  // A bare repository has no work tree, so no uncommitted changes.
  return bare ? source : withUncommittedChangesCheck(source, spec.ref);
}

function withUncommittedChangesCheck(source: PreparedSource, ref: string | undefined): PreparedSource {
  return { ...source, deferredWarnings: (signal) => uncommittedChangesWarning(source.repoPath, source.baseSha, ref, signal) };
}

/**
 * The work tree's top level and HEAD's commit in one `rev-parse`; undefined when that does not apply
 * (a bare repository, no commit yet, not a repository) — the caller then takes the step-by-step path,
 * which produces the precise error.
 */
async function workTreeAndHead(dir: string, signal: AbortSignal): Promise<{ top: string; commonDir: string; head: string } | undefined> {
  try {
    const args = ['rev-parse', '--show-toplevel', '--path-format=absolute', '--git-common-dir', 'HEAD^{commit}'];
    const [top, commonDir, head] = (await runGitTrimmed({ cwd: dir, args, signal, failAs: 'AG_ERR_WORKSPACE_NOT_A_REPO', what: `open ${dir} as a git repository` })).split('\n');
    return top !== undefined && commonDir !== undefined && head !== undefined && /^[0-9a-f]{40,64}$/.test(head) ? { top, commonDir, head } : undefined;
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

/** AgentGate's git state of a run just checked out, and the base commit's tree when the checkout named it. */
export interface RunGit extends IsolatedGit {
  readonly baseTree?: string;
}

export interface CreateWorkspaceRequest {
  /** The repository that receives the run branch. */
  repoPath: string;
  /** Its object directory, borrowed read-only. */
  objectsDir: string;
  /** `$AGENTGATE_HOME/worktrees/<runId>`. */
  worktreePath: string;
  /** `$AGENTGATE_HOME/runs/<runId>/git`. */
  gitDir: string;
  branch: string;
  baseSha: string;
  signal: AbortSignal;
}

/**
 * Creates the run's workspace: AgentGate's git directory and the agent's repository (both borrowing
 * `objectsDir`), and the checked-out files — written by AgentGate's own `read-tree -u`, so no attribute,
 * filter or hook of anyone runs, and the files are the base commit's bytes. The run branch is refused when
 * `repoPath` already has it, but not created there: it reaches the repository with the first snapshot that
 * changed something (`snapshotter.ts`), so a run that ended earlier leaves no branch behind. The branch
 * check runs while the workspace is checked out (see {@link createWhileChecking}). A failed or canceled
 * creation is rolled back (directories removed).
 *
 * @throws AG_ERR_WORKSPACE_SETUP.
 */
export async function createRunWorkspace(request: CreateWorkspaceRequest): Promise<RunGit> {
  assertRunDirectoriesFree(request);
  const [, checkout] = await createWhileChecking(assertRunBranchFree(request), checkoutRunWorkspace(request), () => removeRunDirectories(request));
  return checkout.git;
}

/**
 * Runs `check` and `create` at once, with the outcome of running `check` first: when `check` fails, its
 * error is thrown and what `create` made is undone; otherwise `create`'s result or error. For a check that
 * only reads the source repository (a git process there) while `create` writes only below the home:
 * neither can see the other, and the check's process no longer delays the workspace.
 */
export async function createWhileChecking<C, T>(check: Promise<C>, create: Promise<T>, undo: (created: T) => Promise<void>): Promise<[C, T]> {
  const [checked, created] = await Promise.allSettled([check, create]);
  if (checked.status === 'rejected') {
    const failure: unknown = checked.reason;
    const undoFailure = created.status === 'fulfilled' ? await undo(created.value).then(() => undefined, (error: unknown) => error) : undefined;
    throw withCleanupFailure(failure, undoFailure, 'removing the workspace created meanwhile');
  }
  if (created.status === 'rejected') {
    const failure: unknown = created.reason;
    throw failure;
  }
  return [checked.value, created.value];
}

/**
 * Refuses a run whose workspace or git directory already exists. Checked before anything is created: a
 * rollback must only ever remove what this run made.
 *
 * @throws AG_ERR_WORKSPACE_SETUP.
 */
export function assertRunDirectoriesFree({ worktreePath, gitDir }: CreateWorkspaceRequest): void {
  for (const existing of [worktreePath, gitDir]) {
    if (existsSync(existing)) {
      throw new AgentGateError('AG_ERR_WORKSPACE_SETUP', `The run directory ${existing} already exists`, { retryable: false, details: { path: existing } });
    }
  }
}

/**
 * Refuses a run whose branch exists in `repoPath`: a run never takes over a branch (a user's, or a run's);
 * the first snapshot that changed something creates it there (snapshotter.ts).
 *
 * @throws AG_ERR_WORKSPACE_SETUP.
 */
export async function assertRunBranchFree(request: CreateWorkspaceRequest): Promise<void> {
  const { repoPath, branch, signal } = request;
  const existing = await runGitTrimmed({
    cwd: repoPath,
    args: ['for-each-ref', '--format=%(refname)', `refs/heads/${branch}`],
    signal,
    failAs: 'AG_ERR_WORKSPACE_SETUP',
    what: `check that the run branch ${branch} does not exist`,
    hardened: true,
  });
  if (existing !== '') {
    throw new AgentGateError('AG_ERR_WORKSPACE_SETUP', `The branch ${branch} already exists in ${repoPath}; a run never takes over a branch`, { retryable: false, details: { branch } });
  }
}

/** A pooled worktree to check the base out over (see `worktree-pool.ts`). */
export interface WorkspaceReuse {
  /** Creates `worktreePath` holding only files the pool verified as unchanged since AgentGate's last checkout. */
  populate(): Promise<void>;
  /** AgentGate's index of that checkout: its stat data lets `read-tree` skip the files that are already right. */
  indexFile: string;
}

/**
 * The checkout part of {@link createRunWorkspace} (directories checked to be free): the two repositories, then
 * `read-tree --reset -u <base>`. With `reuse`, the work tree starts from a pooled worktree and AgentGate's
 * previous index of it, so git writes only the files that differ from the new base (or that the pool could
 * not vouch for and removed). Returns the git state (with the base commit's tree when the new index names
 * it) and `ls-files -z --stage` of the new index.
 *
 * @throws AG_ERR_WORKSPACE_SETUP (rolled back: both directories removed).
 */
export async function checkoutRunWorkspace(request: CreateWorkspaceRequest, reuse?: WorkspaceReuse): Promise<{ git: RunGit; lsFilesStage: string }> {
  const { worktreePath, branch, baseSha, signal } = request;
  try {
    if (reuse !== undefined) await reuse.populate();
    const git = await createRunRepositories({ gitDir: request.gitDir, workTree: worktreePath, objectsDir: request.objectsDir, branch, baseSha });
    if (reuse !== undefined) await copyFile(reuse.indexFile, git.indexFile);
    const setup = { cwd: worktreePath, signal, failAs: 'AG_ERR_WORKSPACE_SETUP', isolated: git } as const;
    // ctime and inode checks pinned on: they are what makes the previous index's stat data trustworthy.
    await runGit({ ...setup, args: ['-c', 'core.trustctime=true', '-c', 'core.checkStat=default', 'read-tree', '--reset', '-u', baseSha], what: 'check out the base commit' });
    // The files of the base commit and its tree, read from the index read-tree just wrote (no process);
    // git's own listing for an index layout the reader does not handle.
    const [listing] = await Promise.all([readFile(git.indexFile).then((index) => readIndexListing(index, baseSha.length === 64 ? 32 : 20)), shareIndexWithAgent(git)]);
    const lsFilesStage = listing?.lsFilesStage ?? (await runGit({ ...setup, args: ['ls-files', '-z', '--stage'], what: 'list the files of the base commit' }));
    await recordBaseGitlinks(git, lsFilesStage);
    return { git: { ...git, ...(listing?.rootTree !== undefined && { baseTree: listing.rootTree }) }, lsFilesStage };
  } catch (error) {
    const rollbackFailure = await removeRunDirectories(request).then(
      () => undefined,
      (rollbackError: unknown) => rollbackError,
    );
    throw withCleanupFailure(error, rollbackFailure, 'rolling back the workspace');
  }
}

/** Removes what {@link checkoutRunWorkspace} creates: the workspace and AgentGate's git directory of the run. */
export async function removeRunDirectories({ worktreePath, gitDir }: Pick<CreateWorkspaceRequest, 'worktreePath' | 'gitDir'>): Promise<void> {
  // Runs outside the run's (possibly aborted) scope: a half-created workspace must not survive.
  await Promise.all([removeTree(worktreePath), removeTree(gitDir)]);
}

export interface RemoveWorkspaceRequest {
  /**
   * The repository of a linked worktree made by an earlier AgentGate version (undefined otherwise or
   * when unknown): its worktree entry is removed as well.
   */
  legacyRepoPath?: string | undefined;
  worktreePath: string;
  /** The directory all run workspaces live in; nothing outside it is ever deleted. */
  worktreesRoot: string;
  /** AgentGate's git directory of the run, removed too (the branch already reached the repository). */
  gitDir?: string | undefined;
  signal: AbortSignal;
}

/**
 * Removes a run's workspace and AgentGate's git directory of the run; the run branch and its commits stay
 * in the repository. Works whatever the agent did to the workspace: a deleted or corrupted `.git`, a
 * `git worktree lock`, files and directories made read-only. Idempotent.
 *
 * @throws AG_ERR_WORKSPACE_PATH_ESCAPE for a path outside `worktreesRoot`; AG_ERR_WORKSPACE_CLEANUP.
 */
export async function removeRunWorkspace(request: RemoveWorkspaceRequest): Promise<void> {
  const { legacyRepoPath, worktreePath, worktreesRoot, gitDir, signal } = request;
  if (!isInside(worktreesRoot, worktreePath) || path.resolve(worktreesRoot) === path.resolve(worktreePath)) {
    throw new AgentGateError('AG_ERR_WORKSPACE_PATH_ESCAPE', `Refusing to remove ${worktreePath}: it is not a run workspace below ${worktreesRoot}`);
  }
  if (signal.aborted) throw canceledError(signal, `remove the workspace ${worktreePath}`);
  const legacy = legacyRepoPath !== undefined && existsSync(legacyRepoPath) ? legacyRepoPath : undefined;
  let legacyRemoved = false;
  if (legacy !== undefined && existsSync(worktreePath)) {
    // A linked worktree of the user's repository (earlier versions). `--force` twice also removes a
    // worktree the agent locked; when git cannot (a corrupted .git file), the directory is deleted below
    // and the registration pruned.
    const what = `remove the worktree ${worktreePath}`;
    legacyRemoved = await runGit({ cwd: legacy, args: ['worktree', 'remove', '--force', '--force', worktreePath], signal, failAs: 'AG_ERR_WORKSPACE_CLEANUP', what, hardened: true }).then(
      () => true,
      () => {
        // The failure itself is not the result: the directory is deleted and the entry pruned below.
        if (signal.aborted) throw canceledError(signal, what);
        return false;
      },
    );
  }
  const remove = (dir: string): Promise<void> =>
    removeTree(dir).catch((error: unknown) => {
      throw new AgentGateError('AG_ERR_WORKSPACE_CLEANUP', `Could not delete ${dir}`, { cause: error, details: { path: dir } });
    });
  await Promise.all([remove(worktreePath), gitDir === undefined ? Promise.resolve() : remove(gitDir)]);
  if (legacy !== undefined && !legacyRemoved) {
    await runGit({ cwd: legacy, args: ['worktree', 'prune'], signal, failAs: 'AG_ERR_WORKSPACE_CLEANUP', what: 'prune worktrees', hardened: true });
  }
}

/**
 * The repository a linked worktree of an earlier AgentGate version belongs to, read from its `.git` file
 * (`gitdir: <repo>/.git/worktrees/<name>` or `<bare>/worktrees/<name>`); undefined for today's
 * workspaces (`.git` is a directory) and when unreadable.
 */
export async function legacyOwningRepository(worktreeDir: string, root: string): Promise<string | undefined> {
  const content = await readFile(path.join(worktreeDir, '.git'), 'utf8').catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT' || error.code === 'EISDIR' || error.code === 'ENOTDIR') return undefined;
    throw new AgentGateError('AG_ERR_WORKSPACE_CLEANUP', `Cannot read ${worktreeDir}/.git`, { cause: error });
  });
  const match = content === undefined ? null : /^gitdir:\s*(.+)$/m.exec(content);
  if (match?.[1] === undefined) return undefined;
  const adminDir = path.resolve(worktreeDir, match[1].trim());
  const commonDir = path.dirname(path.dirname(adminDir));
  const repo = path.basename(commonDir) === '.git' ? path.dirname(commonDir) : commonDir;
  // Never treat something inside our own worktrees as the owning repository.
  return isInside(root, repo) ? undefined : repo;
}
