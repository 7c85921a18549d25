/**
 * What the agent changed relative to the base commit, as the contract gates (`contracts.ts`) judge it:
 * every path modified, added (tracked or untracked) or deleted — from the snapshot's tree diff when there
 * is a snapshot, else from the work tree through an index — plus what git cannot see (files below
 * submodule paths and nested repositories: `hidden-files.ts`) and symlinks through which protected files
 * could be reached (`symlinks.ts`), each path judged once with its kind of change. Every query runs in
 * AgentGate's own git state of the run (`withIsolatedGit`), never through the agent's `.git`; the module
 * comment of `contracts.ts` explains the trust and cost rules.
 */
import { lstat, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { AgentGateError } from '../errors.js';
import { createScratchGitDir, DIFF_OPTIONS, findRunGit, type IsolatedGit } from '../workspace/isolated-git.js';
import { gitQuery, splitNul } from './git.js';
import type { GitQueryOptions } from './git.js';
import { hiddenFiles, nestedRepositoryPathspecs, reachTest } from './hidden-files.js';
import { agentSymlinks, reachPathspecs, symlinkedAncestors, type LinkCandidate } from './symlinks.js';

/**
 * A commit holding the work tree as the snapshot phase captured it (`git add --all` into AgentGate's own
 * index, then a commit: `workspace/snapshotter.ts`). Files ignored by the work tree's `.gitignore` and
 * nested repositories are not in it; the checks that need them still look at the work tree.
 */
export interface SnapshotRef {
  /**
   * The snapshot commit: a sha, or a revision resolved in the git directory of {@link git} (the verify
   * phase passes `HEAD`: the tip of the run branch, which only ever holds snapshots).
   */
  commit: string;
  /**
   * AgentGate's git state the snapshot was taken in; its index lists the snapshot's files. Default: the
   * run's state found from the worktree path, else a scratch git directory with `commit` read into its index.
   */
  git?: IsolatedGit;
  /**
   * Every path that differs between the base commit's tree and `commit`'s, as the snapshot phase computed
   * it when it took the snapshot (`git diff --raw`/`--name-status -z --no-renames <base> <commit>` in
   * AgentGate's git directory of the run: the same tree-to-tree comparison, so the same list). Given, the
   * trees are not compared again. Only for the commit it was computed for.
   */
  changesFromBase?: readonly ChangedFile[];
}

export type ChangeKind = 'modified' | 'added' | 'deleted';

export interface ChangedFile {
  path: string;
  change: ChangeKind;
  /**
   * The protected pattern this entry is reported for when its path cannot match one: a submodule directory
   * or nested repository too large or deep to list, below which the pattern could match (`hidden-files.ts`),
   * or a symlink through which it could match (`symlink` set: `symlinks.ts`).
   */
  protectedBy?: string;
  /** With `protectedBy`: the entry is a symlink the agent added or changed (`yes`), or may be one (`maybe`). */
  symlink?: 'yes' | 'maybe';
}

/** Resolves a repository-relative path inside the worktree, refusing anything that would leave it. */
export function resolveInside(root: string, relative: string): string {
  const resolved = path.resolve(root, relative);
  const back = path.relative(root, resolved);
  if (path.isAbsolute(relative) || back === '' || back.startsWith('..') || path.isAbsolute(back)) {
    throw new AgentGateError('AG_ERR_WORKSPACE_PATH_ESCAPE', `path ${JSON.stringify(relative)} must stay inside the worktree`, { details: { path: relative } });
  }
  return resolved;
}

export async function exists(file: string): Promise<boolean> {
  try {
    await lstat(file);
    return true;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return false;
    throw new AgentGateError('AG_ERR_PHASE_VERIFY', `cannot inspect ${file}: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
  }
}

/**
 * Runs `fn` with query options bound to AgentGate's own git state for `options.cwd`: the one given, the
 * run's (`findRunGit`), or — for a directory that is not a run workspace — a scratch git directory
 * borrowing that repository's objects, with `indexCommit` (the base commit, or the snapshot being checked)
 * read into its index, removed afterwards. That index has no stat data: a query comparing it with the
 * work tree reads every file.
 */
export async function withIsolatedGit<T>(options: GitQueryOptions, indexCommit: string, fn: (git: GitQueryOptions) => Promise<T>): Promise<T> {
  if (options.isolated !== undefined) return fn(options);
  const run = await findRunGit(options.cwd);
  if (run !== undefined) return fn({ ...options, isolated: run });
  const [commonDir = '', format = ''] = (await gitQuery(['rev-parse', '--path-format=absolute', '--git-common-dir', '--show-object-format'], options)).split('\n');
  if (format !== 'sha1' && format !== 'sha256') {
    throw new AgentGateError('AG_ERR_PHASE_VERIFY', `${options.cwd}: unsupported object format ${JSON.stringify(format)}`);
  }
  const scratch = await mkdtemp(path.join(tmpdir(), 'agentgate-git-'));
  try {
    const isolated = await createScratchGitDir(path.join(scratch, 'git'), path.resolve(options.cwd), path.join(commonDir, 'objects'), format);
    const own: GitQueryOptions = { ...options, isolated };
    await gitQuery(['read-tree', indexCommit], own);
    return await fn(own);
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

/** Tracked and untracked, non-ignored files of the worktree, as AgentGate's own index sees them. */
export async function listWorktreeFiles(git: GitQueryOptions, baseSha?: string): Promise<string[]> {
  const list = (own: GitQueryOptions): Promise<string[]> => gitQuery(['ls-files', '-z', '--cached', '--others', '--exclude-standard'], own).then(splitNul);
  if (git.isolated !== undefined) return list(git);
  if (baseSha === undefined) {
    const run = await findRunGit(git.cwd);
    if (run === undefined) throw new AgentGateError('AG_ERR_PHASE_VERIFY', `${git.cwd} is not a run workspace; pass the base commit`);
    return list({ ...git, isolated: run });
  }
  return withIsolatedGit(git, baseSha, list);
}

/**
 * Files that differ between `baseSha` and the working tree, plus files that are not in the base commit.
 * Renames are reported as a deletion and an addition so both paths are checked.
 *
 * Nothing the agent can write is trusted: the comparison runs on AgentGate's own git directory and index
 * ({@link withIsolatedGit}), so the agent's index (`update-index --skip-worktree` / `--assume-unchanged`),
 * its `info/exclude`, replace refs, config and filters play no part; the work tree's attributes are reset
 * (see `workspace/isolated-git.ts`); and files under protected patterns are listed without any ignore
 * rules but the base commit's (so a `.gitignore` the agent wrote hides nothing there).
 *
 * With `snapshotCommit` (a commit of the work tree made by AgentGate, see {@link SnapshotRef}) the answer
 * is: the files that differ between the base and the snapshot (tree to tree, no file read), plus, below
 * the protected patterns only, files edited or deleted since the snapshot and files the snapshot does not
 * hold (ignored by the work tree's rules but not by the base's, nested repositories). Files outside the
 * protected patterns that the snapshot left out are not listed: nothing checks them. Either way, files a
 * protected pattern matches below a submodule path or a nested repository, where git lists nothing, are
 * found without git (`hidden-files.ts`), and symlinks the agent added or changed where a pattern could
 * match below them are listed with `protectedBy` and `symlink` (`symlinks.ts`; the work tree is looked at
 * below each pattern's literal directory for them, as it is for protected files).
 */
export async function listChangedFiles(
  baseSha: string,
  git: GitQueryOptions,
  protectedPatterns: readonly string[] = [],
  snapshotCommit?: string,
  changesFromBase?: readonly ChangedFile[],
): Promise<ChangedFile[]> {
  // A pattern that points outside the worktree protects nothing here (the black-box gate rejects such a
  // fixture path as an escape); git would refuse the whole query for it.
  const patterns = protectedPatterns.filter((pattern) => !path.posix.isAbsolute(pattern) && !pattern.split('/').includes('..'));
  const pathspecs = patterns.map((pattern) => `:(glob)${pattern}`);
  // Where git lists the nested repositories a pattern could reach into (as `dir/`); their files are listed below.
  const untrackedSpecs = pathspecs.length === 0 ? [] : [...pathspecs, ...nestedRepositoryPathspecs(patterns)];
  const reach = reachTest(patterns);
  return withIsolatedGit(git, snapshotCommit ?? baseSha, async (own) => {
    const workTree = own.isolated?.workTree ?? own.cwd;
    // Where a symlink the snapshot does not show could lead to protected files (`symlinks.ts`).
    const reachSpecs = [...reachPathspecs(patterns), ...(await symlinkedAncestors(workTree, patterns)).map((dir) => `:(literal)${dir}`)];
    const found = snapshotCommit === undefined ? await changesInWorkTree(baseSha, untrackedSpecs, reachSpecs, own) : await changesInSnapshot(baseSha, snapshotCommit, pathspecs, untrackedSpecs, reachSpecs, own, changesFromBase);
    // Untracked entries listed only because a symlink there would matter are looked at for that alone.
    const candidates = found.untracked.filter((entry) => entry.endsWith('/') || reach.matches(entry));
    const listedForLinks = found.untracked.filter((entry) => !entry.endsWith('/') && !reach.matches(entry));
    const nested = [...found.changed.filter((file) => file.change === 'added').map((file) => file.path), ...candidates].filter((entry) => entry.endsWith('/'));
    const hidden = await hiddenFiles(baseSha, patterns, nested, own);
    const nestedUnlisted = hidden.unlisted.filter((dir) => dir.change === 'added');
    const links = await agentSymlinks(workTree, reach, [
      ...found.changed.map((file): LinkCandidate => ({ ...file, changedAfterSnapshot: found.changedAfter.has(file.path) })),
      ...[...listedForLinks, ...hidden.reachable].map((entry): LinkCandidate => ({ path: entry, change: 'added', untracked: true })),
    ]);
    // Untracked files count unless the base commit's ignore rules ignore them: those git listed, those found
    // below submodule directories and nested repositories, a nested repository too large to list, symlinks.
    const untrackedLinks = links.filter((link) => link.untracked).map((link) => link.path);
    const ignored = await ignoredByBaseRules(baseSha, [...candidates, ...hidden.files, ...nestedUnlisted.map((dir) => dir.path), ...untrackedLinks], own);
    const counted = (file: string): boolean => !ignored.has(file);
    const out = new Map<string, ChangedFile>();
    const entries: ChangedFile[] = [
      ...found.changed,
      ...[...candidates, ...hidden.files].filter(counted).map((file): ChangedFile => ({ path: file, change: 'added' })),
      ...hidden.submodules,
      ...hidden.unlisted.filter((dir) => dir.change !== 'added' || counted(dir.path)),
      ...links.filter((link) => !link.untracked || counted(link.path)).map(({ untracked: _, ...link }): ChangedFile => link),
    ];
    for (const file of entries) {
      const known = out.get(file.path);
      if (known === undefined) out.set(file.path, file);
      // An entry first listed for itself keeps its kind of change and gains the pattern it stands for (a
      // path the snapshot deleted that holds a symlink now was changed, not deleted).
      else if (known.protectedBy === undefined && file.protectedBy !== undefined) {
        out.set(file.path, { ...known, protectedBy: file.protectedBy, ...(file.symlink !== undefined && { symlink: file.symlink, change: known.change === 'deleted' ? 'modified' : known.change }) });
      }
    }
    return [...out.values()];
  });
}

/** What git listed (see {@link listChangedFiles}). */
interface Findings {
  /** Changed files, tracked or untracked and not ignored. */
  changed: ChangedFile[];
  /** Untracked files (nested repositories as `dir/`) that count unless the base commit's rules ignore them. */
  untracked: string[];
  /** Paths the snapshot added or changed that changed type or were deleted after it (`symlinks.ts`). */
  changedAfter: Set<string>;
}

/** The work tree against the base commit, through the index's stat data (read-only queries, run together). */
async function changesInWorkTree(baseSha: string, untrackedSpecs: readonly string[], reachSpecs: readonly string[], own: GitQueryOptions): Promise<Findings> {
  // Three read-only queries against the same index (GIT_OPTIONAL_LOCKS=0: none rewrites it): run them together.
  const [diffOut, untrackedOut, ignoredOut] = await Promise.all([
    gitQuery(['diff', '--name-status', '-z', '--no-renames', ...DIFF_OPTIONS, baseSha, '--'], own),
    gitQuery(['ls-files', '-z', '--others', '--exclude-standard'], own),
    // Under protected paths, a file counts unless the base commit's own ignore rules ignore it: rules the
    // agent added (a new .gitignore) cannot hide a new conftest.py or test file (nor a symlink below them).
    untrackedSpecs.length === 0 ? Promise.resolve('') : gitQuery(['ls-files', '-z', '--others', '--ignored', '--exclude-standard', '--', ...untrackedSpecs, ...reachSpecs], own),
  ]);
  const untracked = splitNul(untrackedOut).map((file): ChangedFile => ({ path: file, change: 'added' }));
  return { changed: [...parseNameStatus(diffOut).map(({ path, change }) => ({ path, change })), ...untracked], untracked: splitNul(ignoredOut), changedAfter: new Set() };
}

/**
 * The snapshot against the base commit, tree to tree; the work tree only below the protected patterns.
 * The snapshot holds every tracked and non-ignored file of the work tree at the time it was taken, so
 * what it cannot show is (1) an edit or deletion made after it, which a diff of the snapshot against the
 * work tree limited to the protected patterns finds (through the run's index: stat data, no re-reading),
 * and (2) files it never held: ignored ones, whatever rules the agent wrote, and nested repositories. With
 * no ignore rules at all, `ls-files --others` lists both, and the base commit's rules decide. Both also
 * look below `reachSpecs`, for symlinks.
 */
async function changesInSnapshot(
  baseSha: string,
  snapshotCommit: string,
  pathspecs: readonly string[],
  untrackedSpecs: readonly string[],
  reachSpecs: readonly string[],
  own: GitQueryOptions,
  changesFromBase?: readonly ChangedFile[],
): Promise<Findings> {
  const sinceSpecs = [...pathspecs, ...reachSpecs];
  const [treeChanges, sinceOut, untrackedOut] = await Promise.all([
    changesFromBase ?? gitQuery(['diff-tree', '-r', '-z', '--name-status', '--no-renames', ...DIFF_OPTIONS, baseSha, snapshotCommit, '--'], own).then(parseNameStatus),
    sinceSpecs.length === 0 ? Promise.resolve('') : gitQuery(['diff', '--name-status', '-z', '--no-renames', ...DIFF_OPTIONS, snapshotCommit, '--', ...sinceSpecs], own),
    untrackedSpecs.length === 0 ? Promise.resolve('') : gitQuery(['ls-files', '-z', '--others', '--', ...untrackedSpecs, ...reachSpecs], own),
  ]);
  const since = parseNameStatus(sinceOut);
  // T (type changed) or D since the snapshot: the work tree no longer shows what the snapshot holds there.
  const gone = new Set(since.filter((file) => file.status.startsWith('T') || file.change === 'deleted').map((file) => file.path));
  const changedAfter = new Set(treeChanges.filter((file) => file.change !== 'deleted' && gone.has(file.path)).map((file) => file.path));
  // A path the snapshot did not change has the same kind of change against the snapshot as against the
  // base; a path it did change is already listed (first entry wins), so the kinds stay relative to the base.
  const changed = [...treeChanges, ...since].map(({ path, change }): ChangedFile => ({ path, change }));
  return { changed, untracked: splitNul(untrackedOut), changedAfter };
}

/** Parses `--name-status -z --no-renames` output (`<status>\0<path>\0` per file). */
function parseNameStatus(output: string): Array<ChangedFile & { status: string }> {
  const fields = splitNul(output);
  const out: Array<ChangedFile & { status: string }> = [];
  for (let i = 0; i + 1 < fields.length; i += 2) {
    const status = fields[i] ?? '';
    out.push({ path: fields[i + 1] ?? '', status, change: status.startsWith('A') ? 'added' : status.startsWith('D') ? 'deleted' : 'modified' });
  }
  return out;
}

/**
 * Which of `candidates` the base commit's `.gitignore` files (plus the user's default excludes file)
 * ignore, evaluated in a scratch directory holding only those rules — the worktree's rules may be the
 * agent's.
 */
async function ignoredByBaseRules(baseSha: string, candidates: readonly string[], git: GitQueryOptions): Promise<Set<string>> {
  if (candidates.length === 0) return new Set();
  const scratch = await mkdtemp(path.join(tmpdir(), 'agentgate-rules-'));
  try {
    const rules = path.join(scratch, 'rules');
    await mkdir(rules);
    const plain: GitQueryOptions = { cwd: scratch, signal: git.signal, ...(git.clock === undefined ? {} : { clock: git.clock }) };
    await gitQuery(['init', '-q', '--template=', rules], plain);
    const files = splitNul(await gitQuery(['ls-tree', '-r', '-z', '--name-only', baseSha], git)).filter((f) => path.posix.basename(f) === '.gitignore');
    for (const file of files) {
      const target = resolveInside(rules, file);
      await mkdir(path.dirname(target), { recursive: true });
      await writeFile(target, await gitQuery(['cat-file', 'blob', `${baseSha}:${file}`], git));
    }
    const out = await gitQuery(['check-ignore', '--no-index', '-z', '--stdin'], { ...plain, cwd: rules, stdin: `${candidates.join('\0')}\0`, okExitCodes: [0, 1] });
    return new Set(splitNul(out));
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}
