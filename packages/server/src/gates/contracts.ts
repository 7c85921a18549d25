/**
 * L0 gates: the contracts of verify.yaml (SPEC 6), checked before any command runs.
 *
 * - `required-files`: every entry exists in the worktree (a glob entry needs at least one match).
 * - `forbidden-patterns`: no tracked or untracked, non-ignored file matches a pattern (`**\/.env`).
 * - `protected-paths`: tamper detection. Every file the agent changed relative to the base commit —
 *   modified, added (tracked or untracked), deleted, renamed (seen as delete + add) — is matched against
 *   `protectedPaths` and against the always-protected files (both verify.yaml locations and the black-box
 *   stdin fixtures). An agent that "fixes" a failing test by editing the test, or loosens verify.yaml,
 *   fails here with the file named, however green its tests are.
 *
 * Globs use picomatch with `dot: true`, so `**\/.env` matches `.env` and `config/.env`. Files ignored by
 * `.gitignore` are not considered (build output and node_modules would otherwise dominate); protect
 * `.gitignore` itself if an agent hiding files from the check is a concern.
 *
 * Every query goes through AgentGate's own git state of the run (`workspace/isolated-git.ts`): its git
 * directory, its index (the last snapshot's, so unchanged files are not re-read) and a hardened
 * environment, with the workspace as the work tree only. Nothing in the agent's `.git` — its index and
 * skip-worktree bits, `info/exclude`, replace refs, config, filters, attributes — is consulted, and the
 * attributes of the work tree cannot select a filter or change bytes. A directory that is not a run
 * workspace (tests, tools) gets a scratch git directory of the same kind. Submodules (gitlinks): every diff
 * reports one whose commit moved, whatever a `.gitmodules` the agent wrote says (`ignore = all` would hide
 * it otherwise), and a protected submodule directory that holds anything counts as modified; git never
 * runs inside a submodule. Below a submodule path or a nested repository, where git lists nothing, the
 * files are listed without git and matched against the protected patterns (`hidden-files.ts`).
 *
 * Cost. Given the iteration's snapshot commit ({@link SnapshotRef}; the verify phase passes it), the
 * tamper check compares the base commit's tree with the snapshot's tree — no file of the work tree is
 * read for that, and no git process runs for it when the snapshot phase already listed those changes
 * (`SnapshotRef.changesFromBase`) — and looks at the work tree only below the protected patterns (edits made after the
 * snapshot, and files the snapshot left out: ignored ones, nested repositories). Without a snapshot the
 * work tree is compared with the base commit through an index: the run's own index has the stat data of
 * its last snapshot, so only changed files are read; a scratch index (a directory that is not a run
 * workspace) has none — nothing trustworthy could supply it, the repository's own index being the
 * agent's — so git reads every file once. Callers that know a commit of the tree pass it.
 */
import { lstat, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import picomatch from 'picomatch';
import { AgentGateError } from '../errors.js';
import type { VerifyConfig } from '../schemas/verify-config.js';
import type { Clock } from '../util/clock.js';
import { createScratchGitDir, DIFF_OPTIONS, findRunGit, type IsolatedGit } from '../workspace/isolated-git.js';
import { gitQuery, splitNul } from './git.js';
import type { GitQueryOptions } from './git.js';
import { hiddenFiles, nestedRepositoryPathspecs, protectedMatcher } from './hidden-files.js';
import type { Diagnostic, GateResult } from './types.js';

/** How many offending files a gate message lists before "and N more" (all of them go to diagnostics). */
const FILES_IN_MESSAGE = 5;

export interface ContractsInput {
  worktreePath: string;
  baseSha: string;
  contracts: VerifyConfig['contracts'];
  /** Exact repository-relative paths that are protected whatever the config says, with the reason shown. */
  alwaysProtected: ReadonlyArray<{ path: string; reason: string }>;
  /**
   * The snapshot of the tree being checked, when there is one: the tamper check then compares trees
   * (see the module comment). Without it the work tree is compared with the base commit file by file.
   */
  snapshot?: SnapshotRef;
  signal: AbortSignal;
  clock: Clock;
}

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

/** The L0 gate names, stable for events, reports and feedback. */
export const CONTRACT_GATES = {
  requiredFiles: 'required-files',
  forbiddenPatterns: 'forbidden-patterns',
  protectedPaths: 'protected-paths',
} as const;

export type ChangeKind = 'modified' | 'added' | 'deleted';

export interface ChangedFile {
  path: string;
  change: ChangeKind;
  /**
   * The protected pattern this entry is reported for when its path cannot match one: a submodule directory
   * or nested repository too large or deep to list, below which the pattern could match (`hidden-files.ts`).
   */
  protectedBy?: string;
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

async function exists(file: string): Promise<boolean> {
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
  const commonDir = (await gitQuery(['rev-parse', '--path-format=absolute', '--git-common-dir'], options)).trim();
  const scratch = await mkdtemp(path.join(tmpdir(), 'agentgate-git-'));
  try {
    const isolated = await createScratchGitDir(path.join(scratch, 'git'), path.resolve(options.cwd), path.join(commonDir, 'objects'));
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
 * found without git (`hidden-files.ts`).
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
  return withIsolatedGit(git, snapshotCommit ?? baseSha, async (own) => {
    const found = snapshotCommit === undefined ? await changesInWorkTree(baseSha, untrackedSpecs, own) : await changesInSnapshot(baseSha, snapshotCommit, pathspecs, untrackedSpecs, own, changesFromBase);
    const nested = [...found.changed.filter((file) => file.change === 'added').map((file) => file.path), ...found.candidates].filter((entry) => entry.endsWith('/'));
    const hidden = await hiddenFiles(baseSha, patterns, nested, own);
    const nestedUnlisted = hidden.unlisted.filter((dir) => dir.change === 'added');
    // Untracked files count unless the base commit's ignore rules ignore them: those git listed, those found
    // below submodule directories and nested repositories, and a nested repository too large to list.
    const ignored = await ignoredByBaseRules(baseSha, [...found.candidates, ...hidden.files, ...nestedUnlisted.map((dir) => dir.path)], own);
    const counted = (file: string): boolean => !ignored.has(file);
    const out = new Map<string, ChangedFile>();
    for (const file of [
      ...found.changed,
      ...[...found.candidates, ...hidden.files].filter(counted).map((file): ChangedFile => ({ path: file, change: 'added' })),
      ...hidden.submodules,
      ...hidden.unlisted.filter((dir) => dir.change !== 'added' || counted(dir.path)),
    ]) {
      const known = out.get(file.path);
      if (known === undefined) out.set(file.path, file);
      // An entry first listed for itself keeps its kind of change and gains the pattern it stands for.
      else if (known.protectedBy === undefined && file.protectedBy !== undefined) out.set(file.path, { ...known, protectedBy: file.protectedBy });
    }
    return [...out.values()];
  });
}

/** Changed files found by git, and untracked files (nested repositories as `dir/`) that count unless the base commit's rules ignore them. */
interface Findings {
  changed: ChangedFile[];
  candidates: string[];
}

/** The work tree against the base commit, through the index's stat data (read-only queries, run together). */
async function changesInWorkTree(baseSha: string, untrackedSpecs: readonly string[], own: GitQueryOptions): Promise<Findings> {
  // Three read-only queries against the same index (GIT_OPTIONAL_LOCKS=0: none rewrites it): run them together.
  const [diffOut, untrackedOut, ignoredOut] = await Promise.all([
    gitQuery(['diff', '--name-status', '-z', '--no-renames', ...DIFF_OPTIONS, baseSha, '--'], own),
    gitQuery(['ls-files', '-z', '--others', '--exclude-standard'], own),
    // Under protected paths, a file counts unless the base commit's own ignore rules ignore it: rules the
    // agent added (a new .gitignore) cannot hide a new conftest.py or test file.
    untrackedSpecs.length === 0 ? Promise.resolve('') : gitQuery(['ls-files', '-z', '--others', '--ignored', '--exclude-standard', '--', ...untrackedSpecs], own),
  ]);
  const untracked = splitNul(untrackedOut).map((file): ChangedFile => ({ path: file, change: 'added' }));
  return { changed: [...parseNameStatus(diffOut), ...untracked], candidates: splitNul(ignoredOut) };
}

/**
 * The snapshot against the base commit, tree to tree; the work tree only below the protected patterns.
 * The snapshot holds every tracked and non-ignored file of the work tree at the time it was taken, so
 * what it cannot show is (1) an edit or deletion made after it, which a diff of the snapshot against the
 * work tree limited to the protected patterns finds (through the run's index: stat data, no re-reading),
 * and (2) files it never held: ignored ones, whatever rules the agent wrote, and nested repositories. With
 * no ignore rules at all, `ls-files --others` lists both, and the base commit's rules decide.
 */
async function changesInSnapshot(baseSha: string, snapshotCommit: string, pathspecs: readonly string[], untrackedSpecs: readonly string[], own: GitQueryOptions, changesFromBase?: readonly ChangedFile[]): Promise<Findings> {
  const [treeChanges, sinceOut, untrackedOut] = await Promise.all([
    changesFromBase ?? gitQuery(['diff-tree', '-r', '-z', '--name-status', '--no-renames', ...DIFF_OPTIONS, baseSha, snapshotCommit, '--'], own).then(parseNameStatus),
    pathspecs.length === 0 ? Promise.resolve('') : gitQuery(['diff', '--name-status', '-z', '--no-renames', ...DIFF_OPTIONS, snapshotCommit, '--', ...pathspecs], own),
    untrackedSpecs.length === 0 ? Promise.resolve('') : gitQuery(['ls-files', '-z', '--others', '--', ...untrackedSpecs], own),
  ]);
  // A path the snapshot did not change has the same kind of change against the snapshot as against the
  // base; a path it did change is already listed (first entry wins), so the kinds stay relative to the base.
  return { changed: [...treeChanges, ...parseNameStatus(sinceOut)], candidates: splitNul(untrackedOut) };
}

/** Parses `--name-status -z --no-renames` output (`<status>\0<path>\0` per file). */
function parseNameStatus(output: string): ChangedFile[] {
  const fields = splitNul(output);
  const out: ChangedFile[] = [];
  for (let i = 0; i + 1 < fields.length; i += 2) {
    const status = fields[i] ?? '';
    out.push({ path: fields[i + 1] ?? '', change: status.startsWith('A') ? 'added' : status.startsWith('D') ? 'deleted' : 'modified' });
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

function summarise(items: readonly string[]): string {
  const shown = items.slice(0, FILES_IN_MESSAGE).join(', ');
  return items.length > FILES_IN_MESSAGE ? `${shown} and ${items.length - FILES_IN_MESSAGE} more` : shown;
}

function result(name: string, started: number, clock: Clock, failure: { message: string; diagnostics: Diagnostic[] } | undefined): GateResult {
  const base = { name, level: 'L0' as const, durationMs: clock.now() - started };
  return failure === undefined ? { ...base, passed: true, diagnostics: [] } : { ...base, passed: false, message: failure.message, diagnostics: failure.diagnostics };
}

async function requiredFiles(input: ContractsInput, files: () => Promise<string[]>): Promise<GateResult> {
  const started = input.clock.now();
  const missing: string[] = [];
  for (const entry of input.contracts.requiredFiles) {
    if (picomatch.scan(entry).isGlob) {
      const match = picomatch(entry, { dot: true });
      if (!(await files()).some((file) => match(file))) missing.push(entry);
    } else if (!(await exists(resolveInside(input.worktreePath, entry)))) {
      missing.push(entry);
    }
  }
  if (missing.length === 0) return result(CONTRACT_GATES.requiredFiles, started, input.clock, undefined);
  return result(CONTRACT_GATES.requiredFiles, started, input.clock, {
    message: `missing required file${missing.length === 1 ? '' : 's'}: ${summarise(missing)}`,
    diagnostics: missing.map((file) => ({ tool: 'generic', file, message: 'required file is missing (contracts.requiredFiles)' })),
  });
}

async function forbiddenPatterns(input: ContractsInput, files: () => Promise<string[]>): Promise<GateResult> {
  const started = input.clock.now();
  const patterns = input.contracts.forbiddenPatterns;
  const found: Array<{ file: string; pattern: string }> = [];
  const matchers = patterns.map((pattern) => ({ pattern, match: picomatch(pattern, { dot: true }) }));
  for (const file of await files()) {
    const hit = matchers.find((m) => m.match(file));
    // The index can still list a file the working tree no longer has; only files that exist count.
    if (hit !== undefined && (await exists(resolveInside(input.worktreePath, file)))) found.push({ file, pattern: hit.pattern });
  }
  if (found.length === 0) return result(CONTRACT_GATES.forbiddenPatterns, started, input.clock, undefined);
  return result(CONTRACT_GATES.forbiddenPatterns, started, input.clock, {
    message: `forbidden file${found.length === 1 ? '' : 's'} present: ${summarise(found.map((f) => `${f.file} (${f.pattern})`))}`,
    diagnostics: found.map((f) => ({ tool: 'generic', file: f.file, message: `file matches forbidden pattern ${f.pattern} (contracts.forbiddenPatterns); remove it` })),
  });
}

async function protectedPaths(input: ContractsInput, git: GitQueryOptions): Promise<GateResult> {
  const started = input.clock.now();
  const matchers = input.contracts.protectedPaths.map((pattern) => ({ pattern, match: protectedMatcher(pattern) }));
  const violations: Array<{ file: ChangedFile; why: string }> = [];
  const patterns = [...input.contracts.protectedPaths, ...input.alwaysProtected.map((p) => p.path)];
  for (const file of await listChangedFiles(input.baseSha, git, patterns, input.snapshot?.commit, input.snapshot?.changesFromBase)) {
    const fixed = input.alwaysProtected.find((p) => p.path === file.path);
    const hit = fixed === undefined ? matchers.find((m) => m.match(file.path)) : undefined;
    if (fixed !== undefined) violations.push({ file, why: fixed.reason });
    else if (hit !== undefined) violations.push({ file, why: `protectedPaths: ${hit.pattern}` });
    else if (file.protectedBy !== undefined) {
      // A directory git lists nothing below, too large, deep or unreadable to list here: the pattern may match files in it.
      const by = input.alwaysProtected.find((p) => p.path === file.protectedBy)?.reason ?? `protectedPaths: ${file.protectedBy}`;
      violations.push({ file, why: `${by}, which may match files in this directory: it could not be listed whole` });
    }
  }
  if (violations.length === 0) return result(CONTRACT_GATES.protectedPaths, started, input.clock, undefined);
  const [first] = violations;
  const more = violations.length > 1 ? ` and ${violations.length - 1} more` : '';
  return result(CONTRACT_GATES.protectedPaths, started, input.clock, {
    message: first === undefined ? 'tamper' : `tamper: the agent ${first.file.change} protected file ${first.file.path} (${first.why})${more}`,
    diagnostics: violations.map((v) => ({ tool: 'generic', file: v.file.path, message: `protected file ${v.file.change} (${v.why}); restore it to the base commit's version` })),
  });
}

/**
 * Runs the L0 gates. `required-files` and `forbidden-patterns` appear only when configured;
 * `protected-paths` always runs, because verify.yaml is protected even without `protectedPaths`.
 *
 * @throws AgentGateError `AG_ERR_PHASE_VERIFY` when git cannot answer, `AG_ERR_RUN_CANCELED` on abort,
 *   `AG_ERR_WORKSPACE_PATH_ESCAPE` for a required file outside the worktree.
 */
export async function checkContracts(input: ContractsInput): Promise<GateResult[]> {
  const { snapshot } = input;
  const options: GitQueryOptions = { cwd: input.worktreePath, signal: input.signal, clock: input.clock, ...(snapshot?.git !== undefined && { isolated: snapshot.git }) };
  return withIsolatedGit(options, snapshot?.commit ?? input.baseSha, async (git) => {
    let listing: Promise<string[]> | undefined;
    const files = (): Promise<string[]> => (listing ??= listWorktreeFiles(git));
    const out: GateResult[] = [];
    if (input.contracts.requiredFiles.length > 0) out.push(await requiredFiles(input, files));
    if (input.contracts.forbiddenPatterns.length > 0) out.push(await forbiddenPatterns(input, files));
    out.push(await protectedPaths(input, git));
    return out;
  });
}
