/**
 * The on-disk layout of `$AGENTGATE_HOME` and the path-safety rules of SPEC section 14.
 *
 * ```
 * $AGENTGATE_HOME/
 *   worktrees/<runId>/     the run's workspace: its own repository, owned by the agent (removed or pooled when the run ends)
 *   worktrees/.pool/       idle worktrees kept for reuse (`worktree-pool.ts`); never a run id (run ids start with a letter or digit)
 *   repos/<sha256>.git/    one cached bare repository per remote URL
 *   runs/<runId>/          artifacts of a run: transcripts, patches, gate logs
 *   runs/<runId>/git/      AgentGate's own git directory of the run (removed when the run ends)
 * ```
 *
 * Every path built from data that came from outside (run ids, iteration numbers, artifact names) goes
 * through {@link safeJoin}, so a crafted value such as `../../etc` can never make AgentGate write or
 * delete outside these roots. The check is lexical (no symlinks are resolved): AgentGate itself creates
 * every directory below the home, so a symlink there would have been planted by someone who can already
 * write to the home.
 */
import { createHash } from 'node:crypto';
import { homedir } from 'node:os';
import path from 'node:path';
import { AgentGateError } from '../errors.js';

/** Directory names below the home. Fixed: other tools (reaper, CLI) rely on them. */
export const HomeDir = {
  Worktrees: 'worktrees',
  Repos: 'repos',
  Runs: 'runs',
} as const;

/**
 * The default branch prefix: run branches are `agentgate/<runId>` (SPEC section 8). A prefix is
 * concatenated as is (`<prefix><runId>`), the same way the TaskSpec's `delivery.git.branchPrefix` is.
 */
export const DEFAULT_BRANCH_PREFIX = 'agentgate/';

/**
 * `$AGENTGATE_HOME`, or `~/.agentgate` when unset (SPEC section 12). Relative values are resolved
 * against the current directory once, here, so later `process.chdir` calls cannot move the home.
 */
export function resolveAgentGateHome(env: Record<string, string | undefined> = process.env): string {
  const configured = env['AGENTGATE_HOME'];
  return path.resolve(configured !== undefined && configured.trim() !== '' ? configured : path.join(homedir(), '.agentgate'));
}

/**
 * Joins `parts` below `root` and guarantees the result stays inside `root` (or is `root` itself).
 *
 * @throws AG_ERR_WORKSPACE_PATH_ESCAPE when a part is absolute, contains a NUL byte, or `..` segments
 *   lead outside `root`.
 */
export function safeJoin(root: string, ...parts: string[]): string {
  const base = path.resolve(root);
  for (const part of parts) {
    if (part.includes('\0')) {
      throw new AgentGateError('AG_ERR_WORKSPACE_PATH_ESCAPE', 'A path segment contains a NUL byte', { details: { root: base } });
    }
    if (path.isAbsolute(part)) {
      throw new AgentGateError('AG_ERR_WORKSPACE_PATH_ESCAPE', `Absolute path segment "${part}" is not allowed below ${base}`, {
        details: { root: base, part },
      });
    }
  }
  const joined = path.resolve(base, ...parts);
  if (!isInside(base, joined)) {
    throw new AgentGateError('AG_ERR_WORKSPACE_PATH_ESCAPE', `Path "${parts.join('/')}" escapes ${base}`, {
      details: { root: base, parts },
    });
  }
  return joined;
}

/** Whether `candidate` is `root` or lies below it (lexically, after resolving `.` and `..`). */
export function isInside(root: string, candidate: string): boolean {
  const relative = path.relative(path.resolve(root), path.resolve(candidate));
  return relative === '' || (!relative.startsWith(`..${path.sep}`) && relative !== '..' && !path.isAbsolute(relative));
}

const RUN_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/**
 * A run id becomes a directory name and a branch-name component, so it must be safe as both: letters,
 * digits, `.`, `_`, `-`, starting with a letter or digit, at most 128 characters, no `..`, not ending
 * in `.` or `.lock` (both rejected by git ref rules).
 *
 * @throws AG_ERR_WORKSPACE_PATH_ESCAPE for anything else (a slash, `..`, an empty id …).
 */
export function validateRunId(runId: string): string {
  if (!RUN_ID.test(runId) || runId.includes('..') || runId.endsWith('.') || runId.endsWith('.lock')) {
    throw new AgentGateError('AG_ERR_WORKSPACE_PATH_ESCAPE', `Invalid run id "${runId}": use letters, digits, ".", "_" and "-" only`, {
      details: { runId },
    });
  }
  return runId;
}

/**
 * Checks a branch name against git's ref-format rules (`git check-ref-format --branch`), without
 * spawning git, so a bad prefix is rejected before any repository is touched.
 * See https://git-scm.com/docs/git-check-ref-format.
 */
export function isValidBranchName(branch: string): boolean {
  if (branch.length === 0 || branch.length > 255) return false;
  if (branch === '@' || branch.startsWith('-') || branch.startsWith('/') || branch.endsWith('/')) return false;
  if (branch.endsWith('.') || branch.includes('..') || branch.includes('//') || branch.includes('@{')) return false;
  // Control characters, space and the characters git reserves for revision syntax.
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u0020\u007f~^:?*[\\]/.test(branch)) return false;
  return branch.split('/').every((component) => component.length > 0 && !component.startsWith('.') && !component.endsWith('.lock'));
}

/**
 * The run branch `<prefix><runId>` (`agentgate/<runId>` by default).
 *
 * @throws AG_ERR_CONFIG_INVALID when the prefix makes an invalid branch name;
 *   AG_ERR_WORKSPACE_PATH_ESCAPE when the run id is invalid.
 */
export function runBranchName(runId: string, branchPrefix: string = DEFAULT_BRANCH_PREFIX): string {
  validateRunId(runId);
  const branch = `${branchPrefix}${runId}`;
  if (!isValidBranchName(branch)) {
    throw new AgentGateError('AG_ERR_CONFIG_INVALID', `Branch prefix "${branchPrefix}" does not make a valid git branch name`, {
      details: { branchPrefix },
    });
  }
  return branch;
}

/** `$AGENTGATE_HOME/worktrees`. */
export function worktreesRoot(home: string): string {
  return safeJoin(home, HomeDir.Worktrees);
}

/** `$AGENTGATE_HOME/worktrees/<runId>`: where the agent and the gates of one run work. */
export function worktreePath(home: string, runId: string): string {
  return safeJoin(home, HomeDir.Worktrees, validateRunId(runId));
}

/**
 * The directory name of the worktree pool inside `worktrees/`. It starts with a dot, so it can never be a
 * run id ({@link validateRunId}) and never collides with a run's workspace.
 */
export const WORKTREE_POOL_DIR_NAME = '.pool';

/** `$AGENTGATE_HOME/worktrees/.pool`: idle worktrees kept for reuse (see `worktree-pool.ts`). */
export function worktreePoolRoot(home: string): string {
  return safeJoin(home, HomeDir.Worktrees, WORKTREE_POOL_DIR_NAME);
}

/** `$AGENTGATE_HOME/runs`. */
export function runsRoot(home: string): string {
  return safeJoin(home, HomeDir.Runs);
}

/**
 * `$AGENTGATE_HOME/runs/<runId>/git`: AgentGate's own git directory of a run (snapshots, tamper checks),
 * outside the workspace so the agent's `.git` is never consulted. See `isolated-git.ts`.
 */
export function runGitDir(home: string, runId: string): string {
  return safeJoin(home, HomeDir.Runs, validateRunId(runId), RUN_GIT_DIR_NAME);
}

/** The name of a run's own git directory inside `runs/<runId>/`. */
export const RUN_GIT_DIR_NAME = 'git';

/** `$AGENTGATE_HOME/repos`. */
export function reposRoot(home: string): string {
  return safeJoin(home, HomeDir.Repos);
}

/**
 * The cache key of a remote: sha256 of its URL as given (credentials removed), so every run against the
 * same remote shares one bare clone and the directory name reveals nothing about the URL.
 */
export function repoCacheKey(url: string): string {
  return createHash('sha256').update(stripUrlCredentials(url)).digest('hex');
}

/** `$AGENTGATE_HOME/repos/<sha256(url)>.git`. */
export function repoCachePath(home: string, url: string): string {
  return safeJoin(home, HomeDir.Repos, `${repoCacheKey(url)}.git`);
}

/** `$AGENTGATE_HOME/runs/<runId>`: the run's artifacts (SPEC section 4). */
export function runArtifactsDir(home: string, runId: string): string {
  return safeJoin(home, HomeDir.Runs, validateRunId(runId));
}

/**
 * A URL with any `user:password@` part removed, for display and for cache keys. Strings that are not
 * URLs (scp-like `git@host:path`, local paths) are returned unchanged: they carry no password.
 */
export function stripUrlCredentials(url: string): string {
  if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(url)) return url;
  try {
    const parsed = new URL(url);
    if (parsed.username === '' && parsed.password === '') return url;
    parsed.username = '';
    parsed.password = '';
    return parsed.toString();
  } catch (error) {
    // Not parseable by WHATWG URL: redact everything between the scheme and the last `@` of the authority.
    if (error instanceof TypeError) return url.replace(/^([a-z][a-z0-9+.-]*:\/\/)[^/]*@/i, '$1');
    throw error;
  }
}

/** The credentials embedded in a URL (decoded), so error messages can be scrubbed of them. */
export function urlSecrets(url: string): string[] {
  if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(url)) return [];
  try {
    const parsed = new URL(url);
    // A token is often passed as the user name alone (`https://<token>@host/…`), so both parts count.
    const values = [parsed.password, decodeURIComponent(parsed.password), parsed.username, decodeURIComponent(parsed.username)];
    return [...new Set(values.filter((value) => value.length > 0))];
  } catch (error) {
    if (error instanceof TypeError || error instanceof URIError) return [];
    throw error;
  }
}
