/**
 * The few read-only git queries the gates need (reading the gate plan from the base commit, listing
 * changed and untracked files). They run through {@link runProcess} rather than simple-git so they share
 * its guarantees: an AbortSignal, a timeout and no orphaned child.
 *
 * Every query runs with the hardened environment of `workspace/isolated-git.ts` (no inherited `GIT_*`,
 * no system or global config, hooks, attributes file and fsmonitor off), and — given `isolated` — against
 * AgentGate's own git directory and index of the run rather than anything in the workspace's `.git`.
 */
import { abortError } from '../util/abort.js';
import { AgentGateError, reportsDiskFull } from '../errors.js';
import type { Clock } from '../util/clock.js';
import { runProcess } from '../util/process.js';
import { gateEnv } from '../util/secrets.js';
import { isolatedConfigArgs, isolatedGitEnv, type IsolatedGit } from '../workspace/isolated-git.js';

/** A git query that takes longer than this on a local worktree is stuck (a lock, a hung filter). */
const GIT_TIMEOUT_MS = 60_000;

/** Listings of a 20,000-file repository fit comfortably; anything larger is cut rather than buffered. */
const GIT_OUTPUT_BYTES = 16 * 1024 * 1024;

export interface GitQueryOptions {
  cwd: string;
  signal: AbortSignal;
  clock?: Clock;
  /** Extra environment for this query. */
  env?: Record<string, string>;
  /** Query AgentGate's own git state of the run (git directory, index, work tree) instead of `cwd`'s repository. */
  isolated?: IsolatedGit;
  /** Written to git's stdin. */
  stdin?: string;
  /** Exit codes that mean success for this query (default: only 0; `check-ignore` exits 1 for "none"). */
  okExitCodes?: readonly number[];
}

/**
 * Runs `git <args>` in `cwd` and returns stdout, or throws a classified error: `AG_ERR_RUN_CANCELED` when
 * `signal` aborted it, `AG_ERR_PHASE_VERIFY` for anything else (the gates cannot be evaluated).
 *
 * `GIT_OPTIONAL_LOCKS=0` keeps the queries from refreshing the index, so they never race the snapshot
 * phase's own git commands for `index.lock`.
 */
export async function gitQuery(args: readonly string[], options: GitQueryOptions): Promise<string> {
  // Replace refs, an fsmonitor, hooks, attributes and config are state the agent can write; the gates trust none.
  const env = { ...isolatedGitEnv(gateEnv(process.env), options.isolated), GIT_OPTIONAL_LOCKS: '0', LC_ALL: 'C', ...options.env };
  const result = await runProcess({
    command: 'git',
    args: [...isolatedConfigArgs(), ...args],
    cwd: options.isolated?.workTree ?? options.cwd,
    env,
    signal: options.signal,
    timeoutMs: GIT_TIMEOUT_MS,
    tailBytes: GIT_OUTPUT_BYTES,
    ...(options.stdin === undefined ? {} : { stdin: options.stdin }),
    ...(options.clock === undefined ? {} : { clock: options.clock }),
  });
  const what = `git ${args.join(' ')}`;
  switch (result.outcome) {
    case 'exited':
      if (result.exitCode !== null && (options.okExitCodes ?? [0]).includes(result.exitCode)) {
        if (result.stdout.length >= GIT_OUTPUT_BYTES) throw new AgentGateError('AG_ERR_PHASE_VERIFY', `${what} produced more output than the gates can inspect`);
        return result.stdout;
      }
      throw new AgentGateError(reportsDiskFull(result.stderr) ? 'AG_ERR_DISK_FULL' : 'AG_ERR_PHASE_VERIFY', `${what} failed with exit code ${String(result.exitCode)}: ${result.stderr.trim().slice(-500)}`, {
        details: { args: [...args], exitCode: result.exitCode },
      });
    case 'aborted':
      throw abortError(options.signal, what);
    case 'timeout':
    case 'idle_timeout':
      throw new AgentGateError('AG_ERR_PHASE_VERIFY', `${what} timed out after ${GIT_TIMEOUT_MS / 1000}s`);
    case 'spawn_error':
      throw new AgentGateError('AG_ERR_PHASE_VERIFY', `${what} could not start: ${result.error?.message ?? 'unknown error'}`, { cause: result.error });
    default: {
      const unreachable: never = result.outcome;
      throw new AgentGateError('AG_ERR_INTERNAL', `unknown process outcome ${String(unreachable)}`);
    }
  }
}

/** Splits NUL-separated git output (`-z`) into its non-empty entries. */
export function splitNul(text: string): string[] {
  return text.split('\0').filter((entry) => entry.length > 0);
}

/** One entry of `git ls-tree`: mode, object type and path. */
export interface TreeEntry {
  mode: string;
  type: string;
  path: string;
}

/** Parses `git ls-tree -z` output (`<mode> <type> <object>\t<path>` entries). */
export function parseLsTree(stdout: string): TreeEntry[] {
  return splitNul(stdout).flatMap((entry) => {
    const tab = entry.indexOf('\t');
    const [mode, type] = entry.slice(0, tab).split(' ');
    return tab === -1 || mode === undefined || type === undefined ? [] : [{ mode, type, path: entry.slice(tab + 1) }];
  });
}

/**
 * Every regular file (and symlink) of `sha`, recursively, as repository-relative paths. Used to read the
 * gate plan and detect commands from the run's base commit rather than from the agent's working tree.
 */
export async function listCommitFiles(sha: string, options: GitQueryOptions): Promise<TreeEntry[]> {
  return parseLsTree(await gitQuery(['ls-tree', '-r', '-z', '--full-tree', sha], options)).filter((e) => e.type === 'blob');
}

/** The content of `path` at `sha` (`git cat-file blob`, so no textconv or filters run). */
export async function readCommitFile(sha: string, filePath: string, options: GitQueryOptions): Promise<string> {
  return gitQuery(['cat-file', 'blob', `${sha}:${filePath}`], options);
}
