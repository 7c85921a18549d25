/**
 * The two repositories of a run, and the hardened environment of every git call AgentGate makes on a run
 * (SPEC 8: "AgentGate's own git commands never honour configuration, attributes, filters or hooks that the
 * agent could have written").
 *
 * ```
 * $AGENTGATE_HOME/worktrees/<runId>/        the workspace: files + the agent's own repository (.git/)
 * $AGENTGATE_HOME/runs/<runId>/git/         AgentGate's git directory of the run (never the agent's)
 * ```
 *
 * Both repositories borrow the source repository's objects read-only through `objects/info/alternates`,
 * so creating them copies no object. The agent's `.git` gets a minimal config of its own and nothing of
 * the user's repository (no config, hooks, info/, other refs); the agent may commit, branch or rewrite it
 * at will, and nothing AgentGate decides ever reads it.
 *
 * AgentGate's git directory holds the run branch `refs/heads/<branch>` (base commit, then one commit per
 * snapshot), its own index, a config written here and an `info/attributes` that resets every
 * content-changing attribute (`filter`, `diff`, `merge`, `text`/`eol`/`crlf`, `ident`,
 * `working-tree-encoding`) for every path. `info/attributes` has the highest precedence of all attribute
 * sources, so a `.gitattributes` the agent writes in the work tree can name a filter or a textconv driver
 * but can neither select one (none is defined in this config) nor change bytes (CRLF or encoding
 * conversion): what is stored is exactly what is in the files. See https://git-scm.com/docs/gitattributes.
 *
 * A `.gitmodules` in the work tree is the agent's too, and git reads it wherever the work tree is set, even
 * for tree-to-tree diffs: every diff takes {@link DIFF_OPTIONS}, so `submodule.<name>.ignore` hides no
 * gitlink, and no git command AgentGate runs looks inside a submodule's directory.
 */
import { execFile } from 'node:child_process';
import { chmod, copyFile, lstat, mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import path from 'node:path';
import { AgentGateError } from '../errors.js';
import { HomeDir, RUN_GIT_DIR_NAME } from './paths.js';

const execFileAsync = promisify(execFile);

/** What an isolated git call reads and writes: AgentGate's git directory, its index and the workspace. */
export interface IsolatedGit {
  /** AgentGate's git directory (`$AGENTGATE_HOME/runs/<runId>/git`, or a scratch directory). */
  readonly gitDir: string;
  /** The index of that git directory. */
  readonly indexFile: string;
  /** The workspace whose files are read (and, on creation, written). */
  readonly workTree: string;
}

/**
 * `-c` settings of every isolated call. Command-line configuration beats every file; together with the
 * config written into the git directory and `GIT_CONFIG_NOSYSTEM`/`GIT_CONFIG_GLOBAL=/dev/null` nothing
 * outside AgentGate's control can configure these calls.
 */
export const ISOLATED_GIT_CONFIG: readonly string[] = [
  'core.attributesFile=/dev/null',
  'core.hooksPath=/dev/null',
  'core.fsmonitor=false',
  'core.autocrlf=false',
  'core.safecrlf=false',
  'core.splitIndex=false',
  'gc.auto=0',
  'maintenance.auto=false',
  'submodule.recurse=false',
];

/**
 * Options of every diff AgentGate makes on a run (snapshot stats and patch, tamper detection): no external
 * diff program, no textconv driver, and a submodule (gitlink) reported whenever its commit differs.
 *
 * `--ignore-submodules=dirty` on the command line is the one setting that beats both a `.gitmodules` the
 * agent writes (`submodule.<name>.ignore = all` hides a gitlink that moved from `diff`, `diff-tree` and
 * `status`, tree-to-tree comparisons included, and `-c diff.ignoreSubmodules=none` does not override it)
 * and any `submodule.<name>.ignore` in a config. `dirty` rather than `none`: with `none` git decides whether
 * a submodule whose commit did not move is "dirty" by running `git status` inside it — inside a repository
 * the agent made, with its config, whose clean filter then runs as AgentGate, outside the sandbox. With
 * `dirty` git only reads which commit the submodule's HEAD names. What lies in a submodule's directory is
 * checked without git (`tree-walk.ts`).
 */
export const DIFF_OPTIONS: readonly string[] = ['--no-ext-diff', '--no-textconv', '--ignore-submodules=dirty'];

/** Resets, for every path, each attribute that could run a program or change content. */
export const NEUTRAL_ATTRIBUTES = '* -text !eol !crlf !filter !diff !merge !ident !working-tree-encoding !export-subst\n';

/** How a repository names its objects: SHA-1 (40 hex digits) or SHA-256 (64). */
export type ObjectFormat = 'sha1' | 'sha256';

/** The object format of a full object id (40 or 64 hex digits, as `rev-parse` prints them). */
export function objectFormatOf(id: string): ObjectFormat {
  if (/^[0-9a-f]{40}$/.test(id)) return 'sha1';
  if (/^[0-9a-f]{64}$/.test(id)) return 'sha256';
  throw new AgentGateError('AG_ERR_WORKSPACE_SETUP', `Not a full object id: ${JSON.stringify(id)}`);
}

/**
 * The `[core]` lines every config here starts with, and for SHA-256 the extension git requires
 * (format version 1): a git directory borrowing a SHA-256 repository's objects must say so, or git reads
 * every id as SHA-1 and finds no object. Also the start of a remote's cache config (`git-remote.ts`).
 */
export function formatLines(format: ObjectFormat): string[] {
  return format === 'sha1'
    ? ['[core]', '\trepositoryformatversion = 0']
    : ['[extensions]', '\tobjectFormat = sha256', '[core]', '\trepositoryformatversion = 1'];
}

/** The whole config of AgentGate's git directory. */
function ownConfig(format: ObjectFormat): string {
  return [
    ...formatLines(format),
    '\tfilemode = true',
    '\tbare = false',
    '\tlogallrefupdates = false',
    '\tautocrlf = false',
    '\tfsmonitor = false',
    '\thooksPath = /dev/null',
    '\tattributesFile = /dev/null',
    '[gc]',
    '\tauto = 0',
    '[maintenance]',
    '\tauto = false',
    '',
  ].join('\n');
}

/** The config the agent's repository starts with: nothing copied from the user's repository. */
function agentConfig(format: ObjectFormat): string {
  return [...formatLines(format), '\tfilemode = true', '\tbare = false', '\tlogallrefupdates = true', ''].join('\n');
}

/**
 * File in AgentGate's git directory listing the base commit's gitlink (submodule) paths, NUL-separated:
 * files written below them are not captured by a snapshot, which reports them.
 */
export const BASE_GITLINKS_FILE = 'AGENTGATE_GITLINKS';

/** File in AgentGate's git directory naming the workspace it belongs to (see {@link findRunGit}). */
const WORKTREE_MARKER = 'AGENTGATE_WORKTREE';

/**
 * The environment of an isolated call: every inherited `GIT_*` variable removed (so neither
 * `GIT_CONFIG_PARAMETERS`, `GIT_EXTERNAL_DIFF`, `GIT_CONFIG_COUNT` nor a parent's `GIT_DIR` applies),
 * system and global configuration off, replace refs off, and — when `git` is given — the run's git
 * directory, index and work tree.
 */
export function isolatedGitEnv(base: Readonly<Record<string, string>>, git: IsolatedGit | undefined): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [key, value] of Object.entries(base)) if (!key.startsWith('GIT_')) env[key] = value;
  env['GIT_CONFIG_NOSYSTEM'] = '1';
  env['GIT_CONFIG_GLOBAL'] = '/dev/null';
  env['GIT_ATTR_NOSYSTEM'] = '1';
  env['GIT_NO_REPLACE_OBJECTS'] = '1';
  env['GIT_TERMINAL_PROMPT'] = '0';
  if (git !== undefined) {
    env['GIT_DIR'] = git.gitDir;
    env['GIT_WORK_TREE'] = git.workTree;
    env['GIT_INDEX_FILE'] = git.indexFile;
  }
  return env;
}

/** `-c` arguments for {@link ISOLATED_GIT_CONFIG}. */
export function isolatedConfigArgs(): string[] {
  return ISOLATED_GIT_CONFIG.flatMap((entry) => ['-c', entry]);
}

export interface RunRepositories {
  /** AgentGate's git directory of the run. */
  gitDir: string;
  /** The workspace (its `.git` becomes the agent's repository). */
  workTree: string;
  /** The source repository's object directory, borrowed read-only by both repositories. */
  objectsDir: string;
  branch: string;
  baseSha: string;
}

function refusePathWithNewline(value: string, what: string): void {
  // objects/info/alternates is line-based: a newline would add an object directory of someone else's choice.
  if (value.includes('\n') || value.includes('\r')) {
    throw new AgentGateError('AG_ERR_WORKSPACE_SETUP', `The ${what} path contains a line break: ${JSON.stringify(value)}`);
  }
}

/** Writes a minimal repository (HEAD on `branch` at `baseSha`, alternates, config) into `gitDir`. */
async function writeRepository(gitDir: string, config: string, objectsDir: string, branch: string, baseSha: string): Promise<void> {
  const ref = path.join(gitDir, 'refs', 'heads', ...branch.split('/'));
  await Promise.all([
    mkdir(path.join(gitDir, 'objects', 'info'), { recursive: true }),
    mkdir(path.dirname(ref), { recursive: true }),
    mkdir(path.join(gitDir, 'refs', 'tags'), { recursive: true }),
  ]);
  await Promise.all([
    writeFile(path.join(gitDir, 'HEAD'), `ref: refs/heads/${branch}\n`),
    writeFile(path.join(gitDir, 'config'), config),
    writeFile(path.join(gitDir, 'objects', 'info', 'alternates'), `${objectsDir}\n`),
    writeFile(ref, `${baseSha}\n`),
  ]);
}

/**
 * Creates AgentGate's git directory and the agent's repository of a run by writing their few files
 * directly (no `git init`, no template hooks, no copied objects). The work tree itself is filled by the
 * caller with `read-tree -u` through the returned {@link IsolatedGit}, after which
 * {@link shareIndexWithAgent} gives the agent an index that matches it.
 */
export async function createRunRepositories(layout: RunRepositories): Promise<IsolatedGit> {
  const { gitDir, workTree, objectsDir, branch, baseSha } = layout;
  refusePathWithNewline(objectsDir, 'object directory');
  const format = objectFormatOf(baseSha);
  await Promise.all([
    writeRepository(gitDir, ownConfig(format), objectsDir, branch, baseSha).then(async () => {
      await mkdir(path.join(gitDir, 'info'), { recursive: true });
      await Promise.all([writeFile(path.join(gitDir, 'info', 'attributes'), NEUTRAL_ATTRIBUTES), writeFile(path.join(gitDir, WORKTREE_MARKER), `${path.resolve(workTree)}\n`)]);
    }),
    writeRepository(path.join(workTree, '.git'), agentConfig(format), objectsDir, branch, baseSha),
  ]);
  return { gitDir, workTree, indexFile: path.join(gitDir, 'index') };
}

/**
 * A git directory of AgentGate's with no run behind it (same config and attributes as a run's), borrowing
 * `objectsDir` (a repository of object format `format`); for checks of a directory that is not a run workspace (tests, tools). Its index is empty
 * until the caller reads a tree into it.
 */
export async function createScratchGitDir(gitDir: string, workTree: string, objectsDir: string, format: ObjectFormat): Promise<IsolatedGit> {
  refusePathWithNewline(objectsDir, 'object directory');
  await mkdir(path.join(gitDir, 'refs', 'heads'), { recursive: true });
  await Promise.all([
    mkdir(path.join(gitDir, 'objects', 'info'), { recursive: true }).then(() => writeFile(path.join(gitDir, 'objects', 'info', 'alternates'), `${objectsDir}\n`)),
    mkdir(path.join(gitDir, 'info'), { recursive: true }).then(() => writeFile(path.join(gitDir, 'info', 'attributes'), NEUTRAL_ATTRIBUTES)),
    writeFile(path.join(gitDir, 'HEAD'), 'ref: refs/heads/scratch\n'),
    writeFile(path.join(gitDir, 'config'), ownConfig(format)),
  ]);
  return { gitDir, workTree, indexFile: path.join(gitDir, 'index') };
}

/**
 * Copies AgentGate's freshly checked-out index to the agent's repository, so `git status` there starts
 * clean. A copy: the agent's index is never read back.
 */
export async function shareIndexWithAgent(git: IsolatedGit): Promise<void> {
  await copyFile(git.indexFile, path.join(git.workTree, '.git', 'index'));
}

/**
 * The `paths` (as git's output, read as UTF-8, names them) that do not exist below `workTree` under that
 * name: a name that was not valid UTF-8 comes back with U+FFFD in place of its bytes, so no pathspec made from
 * it names the entry. One that holds U+FFFD and exists under that name is a real one (one that cannot be
 * looked at is not confirmed, and counts as unnamable).
 */
export async function unnamablePaths(workTree: string, paths: readonly string[]): Promise<string[]> {
  const suspects = paths.filter((entry) => entry.includes('\uFFFD'));
  const named = await Promise.all(suspects.map((entry) => lstat(path.join(workTree, entry)).then(() => true, () => false)));
  return suspects.filter((_, index) => named[index] !== true);
}

/**
 * Records the gitlinks of a freshly read index (`git ls-files -z --stage` output) in {@link BASE_GITLINKS_FILE}.
 * Refuses a submodule whose name is not valid UTF-8: git's output is read as UTF-8, so the name comes back
 * with U+FFFD in place of its bytes, and no pathspec made from it would keep `git add` (and the `git status`
 * it runs inside a submodule, in a repository the agent could make there) out of that directory. One whose
 * name holds U+FFFD and exists under that name (the checkout made its directory) is a real one.
 *
 * @throws AG_ERR_WORKSPACE_UNSUPPORTED.
 */
export async function recordBaseGitlinks(git: IsolatedGit, lsFilesStage: string): Promise<void> {
  const gitlinks = lsFilesStage
    .split('\0')
    .filter((entry) => entry.startsWith('160000 '))
    .map((entry) => entry.slice(entry.indexOf('\t') + 1));
  const unnamable = await unnamablePaths(git.workTree, gitlinks);
  if (unnamable.length > 0) {
    throw new AgentGateError('AG_ERR_WORKSPACE_UNSUPPORTED', `The base commit has submodules whose names are not valid UTF-8 (${unnamable.join(', ')}); AgentGate cannot name them to git to keep git out of them`, {
      retryable: false,
      details: { submodules: unnamable },
    });
  }
  await writeFile(path.join(git.gitDir, BASE_GITLINKS_FILE), gitlinks.map((entry) => `${entry}\0`).join(''));
}

/**
 * Gitlink (submodule) paths of the base commit, as {@link recordBaseGitlinks} recorded them when the run's
 * workspace was created; undefined for a git directory that has no such record (a scratch one).
 */
export async function readBaseGitlinks(gitDir: string): Promise<string[] | undefined> {
  const text = await readFile(path.join(gitDir, BASE_GITLINKS_FILE), 'utf8').catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return undefined;
    throw error;
  });
  return text?.split('\0').filter((entry) => entry.length > 0);
}

/**
 * AgentGate's git state of the workspace at `worktreePath` (`<home>/worktrees/<runId>`), found at
 * `<home>/runs/<runId>/git` and confirmed by the marker file naming this workspace; undefined for any
 * other directory. Lets callers that only know the workspace path (the gates) use the run's own state.
 */
export async function findRunGit(worktreePath: string): Promise<IsolatedGit | undefined> {
  const workTree = path.resolve(worktreePath);
  const worktrees = path.dirname(workTree);
  if (path.basename(worktrees) !== HomeDir.Worktrees) return undefined;
  const gitDir = path.join(path.dirname(worktrees), HomeDir.Runs, path.basename(workTree), RUN_GIT_DIR_NAME);
  const marker = await readFile(path.join(gitDir, WORKTREE_MARKER), 'utf8').catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT' || error.code === 'ENOTDIR') return undefined;
    throw error;
  });
  if (marker?.trim() !== workTree) return undefined;
  return { gitDir, workTree, indexFile: path.join(gitDir, 'index') };
}

/**
 * Deletes `dir` recursively even when the agent made parts of it read-only (`chmod -R a-w`, a
 * directory with mode 000): on EACCES/EPERM every directory below is made writable by its owner again —
 * symlinks are never followed — and the removal is retried. Missing `dir` is fine.
 */
export async function removeTree(dir: string): Promise<void> {
  try {
    await rm(dir, { recursive: true, force: true });
    return;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    // Node's rm walks by absolute path: a tree deeper than PATH_MAX (an agent can nest directories
    // thousands deep) cannot be removed that way. GNU rm walks relative to open directories.
    if (code === 'ENAMETOOLONG') return removeDeepTree(dir, error);
    if (code !== 'EACCES' && code !== 'EPERM' && code !== 'ENOTEMPTY') throw error;
  }
  await makeWritable(dir);
  await rm(dir, { recursive: true, force: true });
}

async function removeDeepTree(dir: string, cause: unknown): Promise<void> {
  try {
    // --one-file-system: never descend into something mounted inside the tree.
    await execFileAsync('rm', ['-rf', '--one-file-system', '--', dir], { timeout: 600_000 });
  } catch (error) {
    const detail = error instanceof Error ? error.message : String(error);
    throw new AgentGateError('AG_ERR_WORKSPACE_CLEANUP', `Could not delete ${dir}, a tree deeper than PATH_MAX: ${detail}`, { details: { path: dir }, cause: cause instanceof Error ? cause : error });
  }
}

async function makeWritable(dir: string): Promise<void> {
  const info = await lstat(dir).catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return undefined;
    throw error;
  });
  if (info === undefined || !info.isDirectory()) return;
  await chmod(dir, 0o700);
  const entries = await readdir(dir, { withFileTypes: true });
  for (const entry of entries) if (entry.isDirectory()) await makeWritable(path.join(dir, entry.name));
}
