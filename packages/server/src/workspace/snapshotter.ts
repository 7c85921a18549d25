/**
 * The snapshot step of every iteration (SPEC section 4): stage everything the agent left in the
 * workspace, commit it on the run branch as `agentgate: iteration <n>`, record what changed, and publish
 * the branch into the repository the run belongs to (`publish-branch.ts`).
 *
 * Every git call runs against AgentGate's own git directory and index of the run (`isolated-git.ts`),
 * with the workspace only as the work tree: the agent's `.git` (its config, attributes, hooks, index,
 * HEAD and branches) is never read, so an agent that switches branches, commits, or defines filters and
 * diff drivers changes nothing about what is recorded — the snapshot is the bytes of its files. Neither
 * does a `.gitmodules` it writes: submodules are staged with `update-index` (which reads only the commit a
 * submodule's HEAD names) and every diff reports a submodule whose commit moved (`DIFF_OPTIONS`), whatever
 * `submodule.<name>.ignore` says; no git command ever runs inside a submodule's directory.
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
 * Cost (each git call forks the whole Node process): one `git status` of AgentGate's index says whether
 * anything changed; the commits and trees the iteration is measured against are what the run's previous
 * snapshot left (remembered per workspace) or, before the first one, the base commit and the tree the
 * checkout read from its index (`Workspace.baseTree`), else one `rev-parse` run beside the status. An
 * iteration with nothing to stage costs nothing more: no `add`, no commit. Otherwise `add` stages and
 * `commit` commits (one `commit --all` when only tracked files changed), and the commit's id and tree are
 * read from the ref and the commit object it wrote (`readLooseCommitTree`, hash-checked). No diff runs
 * between equal trees — they have no differences by definition: an iteration that changed nothing runs no
 * diff at all, and a tree equal to the base commit's gets an empty patch file without git. The
 * first iteration's one diff against the base gives both its stats and its changes since the base
 * (`--raw --numstat`), which tamper detection reuses instead of diffing the trees again; a later one's
 * changes since the base are the previous snapshot's combined with its own diff (`composeFromBase`). A base commit with
 * submodules costs two more processes per snapshot: listing which of them the index holds, and staging them
 * (a third, only when a directory holding one was replaced by a symlink, drops those from the index).
 *
 * `snapshot` never throws: it returns `{ ok: false, error }` with AG_ERR_PHASE_SNAPSHOT (git failed) or
 * the cancellation reason (the run was canceled), as phase handlers require. With `background` it returns
 * once the commit and its changes are known and leaves the patch file and the publication running; their
 * outcome is `settled` (the engine verifies meanwhile), and the workspace's next snapshot waits for them.
 *
 * Kept in one file (over 400 lines) on purpose: one `Snapshotter` whose status reading, staging, commit,
 * diffs and the memory of the last snapshot depend on each other's invariants (what is remembered is only
 * valid for the commit this class itself made); the parsers and the composition already live in
 * `diff-output.ts` and the publication in `publish-branch.ts`.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { AgentGateError, isDiskFull, toAgentGateError } from '../errors.js';
import { canceledError, runGit, runGitTrimmed, type GitCall } from './git.js';
import { changesSinceBase, parseDiffOutput, parseStatus, type RawChange } from './diff-output.js';
import { DIFF_OPTIONS, readBaseGitlinks, unnamablePaths, type IsolatedGit } from './isolated-git.js';
import { safeJoin } from './paths.js';
import { publishRunBranch, readLooseCommitTree } from './publish-branch.js';
import { behindSymlinks, populatedDirectories } from './tree-walk.js';
import type { SnapshotResult, TreeChange, Workspace } from './types.js';

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
  /**
   * Return as soon as the commit and what changed are known, leaving the patch file and the publication
   * of the run branch running: the outcome's `settled` says when they end and how. The engine verifies
   * meanwhile and awaits `settled` before the iteration is recorded (`execution/steps/verify.ts`).
   * Default false: `snapshot` returns when everything is done, and a failure of either is its failure.
   */
  background?: boolean;
}

/**
 * `changesFromBase`: every path whose entry differs between the base commit's tree and the snapshot's, with
 * its kind (renames as a deletion and an addition) — the same list `git diff-tree -r --name-status
 * --no-renames <base> <snapshot>` gives, so tamper detection can use it (`SnapshotRef` of contracts.ts).
 */
export type SnapshotOutcome =
  | {
      ok: true;
      snapshot: SnapshotResult;
      changesFromBase: TreeChange[];
      /**
       * Resolves when the patch file is written and the run branch published (at once unless `background`),
       * to undefined or the error that failed them (classified as `snapshot` classifies); never rejects.
       */
      settled: Promise<AgentGateError | undefined>;
    }
  | { ok: false; error: AgentGateError };

/** The commit message of an iteration snapshot; fixed, so tools can find snapshots in the log. */
export function snapshotMessage(iteration: number): string {
  return `agentgate: iteration ${iteration}`;
}

export interface SnapshotterOptions {
  /** What an iteration that changed nothing leaves on the run branch: nothing (default), or an empty commit. */
  emptyIterations?: 'commit' | 'skip';
}

export class Snapshotter {
  /**
   * What HEAD of each workspace's run branch is after its last successful snapshot, the base commit's
   * tree, and every entry that differs between the two: the next iteration is measured against them
   * without a `rev-parse`, and its changes since the base are those plus its own, without a diff against
   * the base. Forgotten when a snapshot starts and set again only when it succeeds, so a failed or
   * interrupted one leaves git to answer.
   */
  private readonly last = new WeakMap<Workspace, Remembered>();
  /** Each workspace's patch and publication still running (`background`): the next snapshot waits for them. */
  private readonly pending = new WeakMap<Workspace, Promise<AgentGateError | undefined>>();

  constructor(private readonly options: SnapshotterOptions = {}) {}

  /** Commits the worktree and reports the iteration's changes; never throws. */
  async snapshot(request: SnapshotRequest): Promise<SnapshotOutcome> {
    const { workspace } = request;
    // The previous snapshot's publication moves the run branch first (an `update-ref` each, in order).
    const before = this.pending.get(workspace);
    if (before !== undefined) await before;
    try {
      const { rest, ...taken } = await this.commit(request);
      const settled = rest.then((failure) => {
        if (failure === undefined) return undefined;
        // Like a failed snapshot, a failed publication leaves git to answer for the next one.
        this.last.delete(workspace);
        return classifySnapshotError(request, failure.error);
      });
      if (request.background !== true) {
        const failed = await settled;
        return failed === undefined ? { ok: true, ...taken, settled } : { ok: false, error: failed };
      }
      this.pending.set(workspace, settled);
      void settled.then(() => {
        if (this.pending.get(workspace) === settled) this.pending.delete(workspace);
      });
      return { ok: true, ...taken, settled };
    } catch (error) {
      return { ok: false, error: classifySnapshotError(request, error) };
    }
  }

  private async commit(request: SnapshotRequest): Promise<{ snapshot: SnapshotResult; changesFromBase: TreeChange[]; rest: Promise<{ error: unknown } | undefined> }> {
    const { workspace, iteration, signal } = request;
    if (!Number.isSafeInteger(iteration) || iteration < 1) {
      throw new AgentGateError('AG_ERR_PHASE_SNAPSHOT', `Invalid iteration number ${iteration}`);
    }
    const patchPath = safeJoin(request.artifactsDir, `iteration-${iteration}.patch`);
    const own: IsolatedGit = { gitDir: workspace.gitDir, indexFile: workspace.indexFile, workTree: workspace.path };
    const git = (args: readonly string[], what: string): GitCall => ({ cwd: workspace.path, args, signal, failAs: 'AG_ERR_PHASE_SNAPSHOT', what, isolated: own });

    // What changed since the last snapshot, from one `git status` of AgentGate's index (the same stat
    // comparison and ignore rules `git add` applies; `--ignore-submodules=all` because status, like add,
    // would otherwise run inside a submodule — submodules are read by `readGitlinks` instead). The names the
    // iteration is measured against (`rev-parse`) are read at the same time: nothing moves the run branch
    // before the commit below.
    // Nested repositories (a directory with its own .git) are listed by status as `path/`; git would
    // record them as gitlinks of commits that exist nowhere (or refuse to add them at all), so they are
    // left out and reported. Submodule paths of the base commit whose directory now holds files are
    // reported too: their content is not part of any snapshot.
    const skipEmpty = (this.options.emptyIterations ?? 'skip') === 'skip';
    // Before a run's first snapshot, the base commit and its tree as the checkout read them.
    const known = this.last.get(workspace) ?? (workspace.baseTree === undefined ? undefined : { head: workspace.baseSha, headTree: workspace.baseTree, baseTree: workspace.baseTree, fromBase: new Map() });
    this.last.delete(workspace);
    // Only when the caller names the remembered snapshot as the previous one, or none (then the parent on
    // the branch is meant: HEAD), and AgentGate's HEAD still is that snapshot: an agent without a sandbox
    // can move the branch, and then git, not the memory, says what the iteration is measured against.
    const remembered = known !== undefined && (request.previousSha ?? known.head) === known.head && (await branchStillAt(workspace, known.head));
    const [status, { gitlinks, staged }, names] = await Promise.all([
      runGit(git(['status', '--porcelain', '-z', '--untracked-files=all', '--ignore-submodules=all', '--no-renames'], 'list the changes')),
      readGitlinks(workspace.gitDir, git),
      !skipEmpty ? Promise.resolve(undefined) : remembered ? Promise.resolve<SnapshotNames>({ ...known, sinceSha: known.head, sinceTree: known.headTree }) : readSnapshotNames(request, git),
    ]);
    const changes = parseStatus(status);
    const nested = changes.untracked.filter((entry) => entry.endsWith('/')).map((entry) => entry.slice(0, -1));
    await refuseUnnamableRepositories(workspace.path, nested);
    const [populated, unlinked] = await Promise.all([populatedDirectories(workspace.path, gitlinks), behindSymlinks(workspace.path, staged)]);
    const uncaptured = [...new Set([...nested, ...populated])].sort();
    // Nothing to stage — no tracked file changed, no file is new, and no submodule (whose commit status
    // does not look at) — is an iteration that changed nothing: no `add`, no commit.
    const unchanged = names !== undefined && changes.entries === 0 && gitlinks.length === 0;
    // Only tracked files changed — no file is new and there is no submodule: `commit --all` stages them
    // itself (what `git add --all` would stage when nothing is untracked), one process instead of two.
    const trackedOnly = names !== undefined && !unchanged && gitlinks.length === 0 && changes.untracked.length === 0;
    if (!unchanged && !trackedOnly) await this.stage(git, nested, staged, unlinked);
    const { sha, treeSha, sinceSha, sinceTree, baseTree, committed } = await this.commitIfChanged(
      request,
      git,
      names,
      unchanged ? 'nothing' : gitlinks.length > 0 ? 'with submodules' : trackedOnly ? 'tracked files, by the commit' : 'changes',
    );

    const diffOptions = [...DIFF_OPTIONS, '--no-color', '--no-renames'];
    const fromBase = sinceSha === workspace.baseSha;
    // The entries that differ between the base and the commit this iteration is measured against: none
    // when that is the base, the remembered ones when it is the remembered snapshot (names from memory).
    const previousFromBase = fromBase ? new Map<string, RawChange>() : skipEmpty && remembered ? known.fromBase : undefined;
    const sinceBase = (): Promise<string> => runGit(git(['diff', ...diffOptions, '--raw', '--no-abbrev', '-z', workspace.baseSha, sha], 'list the changed files'));
    await mkdir(request.artifactsDir, { recursive: true });
    // Equal trees have no differences: a diff between them is empty by definition and is not run. One diff
    // of the iteration gives its stats (`--numstat`) and its entries (`--raw`), and those added to what
    // the iteration is measured against (from the base: nothing) are every change since the base; a diff
    // against the base runs only when that is unknown.
    const rest = Promise.all([
      // git writes the patch itself: bytes stay exact (any file encoding) and nothing is buffered here. The
      // base's own tree has no patch: the file is written empty, as git would have written it.
      baseTree === treeSha ? writeFile(patchPath, '') : runGit(git(['diff', ...diffOptions, '--binary', '--full-index', `--output=${patchPath}`, workspace.baseSha, sha], 'write the patch')),
      // The run branch reaches the repository with the commit's new objects (`publish-branch.ts`); without
      // a new commit there is nothing new to publish (and before the first one, no branch to create).
      committed ? publishRunBranch(workspace, sha, signal) : Promise.resolve(),
    ]).then(
      () => undefined,
      (error: unknown) => ({ error }),
    );
    // Whatever happens below, `rest` (which never rejects) is awaited — by the caller, or here when
    // something fails: nothing of a snapshot is still writing once `snapshot` has reported a failure.
    const changed = async (): Promise<{ stats: ReturnType<typeof parseDiffOutput>; fromBase: ReadonlyMap<string, RawChange> | undefined; changes: TreeChange[] }> => {
      const [iterationOut, sinceBaseOut] = await Promise.all([
        sinceTree === treeSha ? Promise.resolve('') : runGit(git(['diff', ...diffOptions, ...(previousFromBase === undefined ? [] : ['--raw', '--no-abbrev']), '--numstat', '-z', sinceSha, sha], 'compute the iteration stats')),
        previousFromBase !== undefined || baseTree === treeSha ? Promise.resolve(undefined) : sinceBase(),
      ]);
      const stats = parseDiffOutput(iterationOut);
      return { stats, ...(await changesSinceBase(baseTree === treeSha, fromBase ? stats : undefined, previousFromBase, stats.raw, sinceBaseOut, sinceBase)) };
    };
    const { stats, fromBase: entriesFromBase, changes: changesFromBase } = await changed().catch(async (error: unknown) => {
      await rest;
      throw error;
    });
    if (skipEmpty) this.last.set(workspace, { head: sha, headTree: treeSha, baseTree, fromBase: entriesFromBase });

    return {
      snapshot: {
        iteration,
        sha,
        treeSha,
        noChange: treeSha === sinceTree,
        committed,
        filesChanged: stats.filesChanged,
        insertions: stats.insertions,
        deletions: stats.deletions,
        changedFiles: changesFromBase.map((change) => change.path),
        patchPath,
        uncaptured,
      },
      changesFromBase,
      rest,
    };
  }

  /**
   * Stages the work tree in AgentGate's index: everything but nested repositories and submodules with
   * `git add --all`, submodules with `update-index`.
   */
  private async stage(git: (args: readonly string[], what: string) => GitCall, nested: readonly string[], staged: readonly string[], unlinked: readonly string[]): Promise<void> {
    // Submodules are staged by `update-index`, never by `git add`: since git 2.54 `add` skips a submodule
    // whose `.gitmodules` entry (the agent's file) says `ignore = all`, and `add` (2.39 and 2.55 alike) runs
    // `git status` inside a submodule whose commit did not move — in a repository the agent made, with its
    // config and clean filters. `update-index` only reads which commit the submodule's HEAD names (or
    // records the path's deletion, or the file or symlink that replaced it), whatever `.gitmodules` says.
    // A submodule path with a symlink among its parents (`test` replaced by a link, the submodule at
    // `test/suite`) is no submodule any more, and git refuses it in a pathspec and in `update-index
    // --remove` ("beyond a symbolic link"): it is dropped from the index first (`--force-remove`, which
    // looks at no file), so `add` records the symlink and what lies behind it under its own path.
    if (unlinked.length > 0) await runGit(git(['update-index', '--force-remove', '--', ...unlinked], 'drop the submodules behind a symlink'));
    const submodules = staged.filter((dir) => !unlinked.includes(dir));
    const exclusions = [...nested, ...submodules].map((dir) => `:(top,exclude,literal)${dir}`);
    await runGit(git(['add', '--all', ...(exclusions.length === 0 ? [] : ['--', ':(top)', ...exclusions])], 'stage the changes'));
    if (submodules.length > 0) await runGit(git(['update-index', '--remove', '--', ...submodules], 'stage the submodules'));
  }

  /**
   * Commits the staged tree on AgentGate's run branch (unless it is the last snapshot's tree and empty
   * iterations are skipped) and names every commit and tree the iteration is measured against: the new
   * snapshot, the one it is compared with (`previousSha`, else its parent) and the base commit's tree.
   * Skipping (`names` known beforehand): an iteration with nothing `staged` needs no git at all here. Without
   * submodules, one whose status showed changes is committed at once, `--all` staging the tracked files
   * when nothing else changed (`git commit` makes no commit of the last snapshot's tree; that exit is
   * confirmed by one `diff-index`); with submodules, `write-tree` first says whether the tree is new. The
   * new commit's id is read from the branch it moved, its tree from the commit object. Recording empty
   * iterations (`names` undefined): the commit, then one `rev-parse`.
   */
  private async commitIfChanged(
    request: SnapshotRequest,
    git: (args: readonly string[], what: string) => GitCall,
    names: SnapshotNames | undefined,
    staged: 'nothing' | 'with submodules' | 'changes' | 'tracked files, by the commit',
  ): Promise<CommitNames> {
    const { workspace, iteration, previousSha } = request;
    const message = snapshotMessage(iteration);
    const commit = (): Promise<string> => runGit(git(['commit', '--allow-empty', '--no-verify', '--quiet', '-m', message], 'commit the snapshot'));
    if (names === undefined) {
      await commit();
      // AgentGate's branch only ever holds snapshots, so HEAD^ is the previous snapshot (or the base).
      const since = previousSha ?? 'HEAD^';
      const [sha = '', treeSha = '', sinceSha = '', sinceTree = '', baseTree = ''] = (
        await runGitTrimmed(git(['rev-parse', 'HEAD', 'HEAD^{tree}', since, `${since}^{tree}`, `${workspace.baseSha}^{tree}`], 'read the snapshot commit'))
      ).split('\n');
      return { sha, treeSha, sinceSha, sinceTree, baseTree, committed: true };
    }
    const { head, headTree, baseTree, sinceSha, sinceTree } = names;
    // HEAD is the last snapshot (or the base commit): the parent of a new commit, else the snapshot itself.
    const same = { sha: head, treeSha: headTree, sinceSha, sinceTree, baseTree, committed: false };
    if (staged === 'nothing') return same;
    if (staged === 'with submodules') {
      // A base commit with submodules: `write-tree` says whether the staged tree is new before anything is
      // committed, and the commit that follows (`--allow-empty`, of a tree known to differ) never reaches
      // git's "nothing to commit" path — which prints a full `git status`, and that status runs inside every
      // submodule directory: a repository the agent made, with its config and clean filters.
      const indexTree = await runGitTrimmed(git(['write-tree'], 'read the staged tree'));
      if (indexTree === headTree) return same;
      await commit();
    } else {
      // No submodule anywhere in the index: the base has none, and nested repositories are left out of
      // `git add` (only one renamed into place between status and add, by a process alive during the
      // snapshot — which the sandbox rules out — could slip in). That is what keeps the status git prints on
      // its "nothing to commit" path out of any repository the agent made; `status.showUntrackedFiles=no`
      // only spares it the untracked files. Without `--allow-empty` git commits only a staged tree
      // that is not HEAD's; the exit code 1 it gives otherwise is confirmed by `diff-index` against the last
      // snapshot before it counts as "nothing changed". With `--all` git stages the tracked files into a
      // new index that replaces AgentGate's only when the commit is made.
      const all = staged === 'tracked files, by the commit' ? ['--all'] : [];
      try {
        await runGit(git(['-c', 'status.showUntrackedFiles=no', 'commit', ...all, '--no-verify', '--quiet', '-m', message], 'commit the snapshot'));
      } catch (error) {
        if (!(error instanceof AgentGateError && error.details?.['exitCode'] === 1) || !(await nothingStaged(git, head))) throw error;
        return same;
      }
    }
    // The new commit's id from the branch it moved, and its tree from the commit object it wrote.
    const tip = await readRunBranch(workspace);
    const moved = tip === head ? undefined : tip;
    const tree = moved === undefined ? undefined : await readLooseCommitTree(path.join(workspace.gitDir, 'objects'), moved);
    if (moved !== undefined && tree !== undefined) return { sha: moved, treeSha: tree, sinceSha, sinceTree, baseTree, committed: true };
    const [sha = '', treeSha = ''] = (await runGitTrimmed(git(['rev-parse', 'HEAD', 'HEAD^{tree}'], 'read the snapshot commit'))).split('\n');
    return { sha, treeSha, sinceSha, sinceTree, baseTree, committed: true };
  }
}

/** A failure of a snapshot, or of its patch and publication: the cancellation, or AG_ERR_PHASE_SNAPSHOT / AG_ERR_DISK_FULL. */
function classifySnapshotError(request: SnapshotRequest, error: unknown): AgentGateError {
  // A canceled snapshot reports the cancellation, never a git failure.
  if (request.signal.aborted) return canceledError(request.signal, `snapshot iteration ${request.iteration}`);
  if (error instanceof AgentGateError && (error.code === 'AG_ERR_PHASE_SNAPSHOT' || error.code === 'AG_ERR_DISK_FULL')) return error;
  if (isDiskFull(error)) return toAgentGateError(error);
  const message = error instanceof Error ? error.message : String(error);
  return new AgentGateError('AG_ERR_PHASE_SNAPSHOT', `Snapshot of iteration ${request.iteration} failed: ${message}`, { cause: error });
}

/**
 * Refuses nested repositories whose names are not valid UTF-8. Git's output is read as UTF-8, so such a name
 * comes back with U+FFFD in place of its bytes: a pathspec made from it names nothing, and `git add` would
 * record the repository as a gitlink of a commit that exists nowhere instead of leaving it out. A name that
 * holds U+FFFD and still exists under that name is a real one and is left out as usual (one that cannot be
 * looked at is not confirmed, and refused).
 *
 * @throws AG_ERR_PHASE_SNAPSHOT naming the repository as git showed it.
 */
async function refuseUnnamableRepositories(workTree: string, nested: readonly string[]): Promise<void> {
  const unnamable = await unnamablePaths(workTree, nested);
  if (unnamable.length === 0) return;
  throw new AgentGateError(
    'AG_ERR_PHASE_SNAPSHOT',
    `The workspace holds a nested repository whose name is not valid UTF-8 (${unnamable.map((dir) => JSON.stringify(dir)).join(', ')}); AgentGate cannot leave it out of the snapshot. Rename it or remove its .git.`,
    { retryable: false, details: { paths: unnamable } },
  );
}

/**
 * Whether AgentGate's index holds the tree of `head`, the last snapshot, exactly (`diff-index --cached
 * --quiet` exits 0; 1 when not). Compared with that commit, not with HEAD: a branch moved behind
 * AgentGate's back fails the snapshot instead of passing for "nothing changed".
 */
async function nothingStaged(git: (args: readonly string[], what: string) => GitCall, head: string): Promise<boolean> {
  try {
    await runGit(git(['diff-index', '--cached', '--quiet', '--ignore-submodules=none', head, '--'], 'compare the staged tree with the last snapshot'));
    return true;
  } catch (error) {
    if (error instanceof AgentGateError && error.details?.['exitCode'] === 1) return false;
    throw error;
  }
}

/** What a workspace's last snapshot left (see `Snapshotter.last`). */
type Remembered = Omit<SnapshotNames, 'sinceSha' | 'sinceTree'> & { fromBase: ReadonlyMap<string, RawChange> | undefined };

/** The last snapshot (HEAD of AgentGate's run branch, or the base commit), and what the iteration is measured against. */
interface SnapshotNames {
  head: string;
  headTree: string;
  baseTree: string;
  sinceSha: string;
  sinceTree: string;
}

/** One `rev-parse`: HEAD and its tree, the base commit's tree, and `previousSha` with its tree (default: HEAD). */
async function readSnapshotNames(request: SnapshotRequest, git: (args: readonly string[], what: string) => GitCall): Promise<SnapshotNames> {
  const { workspace, previousSha } = request;
  const since = previousSha === undefined ? [] : [previousSha, `${previousSha}^{tree}`];
  const names = await runGitTrimmed(git(['rev-parse', 'HEAD', 'HEAD^{tree}', `${workspace.baseSha}^{tree}`, ...since], 'read the last snapshot'));
  const [head = '', headTree = '', baseTree = '', sinceSha = head, sinceTree = headTree] = names.split('\n');
  return { head, headTree, baseTree, sinceSha, sinceTree };
}

/** The commits and trees of one snapshot (see `commitIfChanged`). */
interface CommitNames {
  sha: string;
  treeSha: string;
  sinceSha: string;
  sinceTree: string;
  baseTree: string;
  committed: boolean;
}

/**
 * The commit the run branch of AgentGate's git directory points at, from its loose ref file: `git commit`
 * writes it there (the directory is created with git's files ref backend, `createRunRepositories`, and
 * nothing packs its refs: automatic gc and maintenance are off). Undefined — the caller asks git — when the
 * file cannot be read or does not hold a commit id.
 */
async function readRunBranch(workspace: Workspace): Promise<string | undefined> {
  const file = path.join(workspace.gitDir, 'refs', 'heads', ...workspace.branch.split('/'));
  const sha = (await readFile(file, 'utf8').catch(() => undefined))?.trim();
  return sha !== undefined && /^(?:[0-9a-f]{40}|[0-9a-f]{64})$/.test(sha) ? sha : undefined;
}

/** Whether AgentGate's HEAD of the run still names the run branch, and the branch `sha` (both read from their files). */
async function branchStillAt(workspace: Workspace, sha: string): Promise<boolean> {
  const [head, tip] = await Promise.all([readFile(path.join(workspace.gitDir, 'HEAD'), 'utf8').catch(() => ''), readRunBranch(workspace)]);
  return head.trim() === `ref: refs/heads/${workspace.branch}` && tip === sha;
}

/**
 * The gitlink (submodule) paths of the base commit, and those of them AgentGate's index still holds as
 * gitlinks (`staged`; one that an earlier snapshot recorded as deleted or replaced by a file is not one any
 * more). No git process runs for a base commit without submodules.
 */
async function readGitlinks(gitDir: string, git: (args: readonly string[], what: string) => GitCall): Promise<{ gitlinks: string[]; staged: string[] }> {
  const gitlinks = (await readBaseGitlinks(gitDir)) ?? [];
  if (gitlinks.length === 0) return { gitlinks, staged: [] };
  const listed = await runGit(git(['ls-files', '-z', '--stage', '--', ...gitlinks.map((entry) => `:(top,literal)${entry}`)], 'list the submodules'));
  const wanted = new Set(gitlinks);
  // `<mode> <object> <stage>\t<path>` per entry; a literal pathspec also matches files below the path.
  const staged = listed
    .split('\0')
    .filter((entry) => entry.startsWith('160000 '))
    .map((entry) => entry.slice(entry.indexOf('\t') + 1))
    .filter((entry) => wanted.has(entry));
  return { gitlinks, staged };
}
