/**
 * The one place AgentGate runs git and the boundary where git failures become
 * `AgentGateError`s. Callers say what they were doing and which code a failure of that step means;
 * nothing ever matches on git's message text.
 *
 * Every command:
 * - takes an `AbortSignal` (the child is killed when it fires);
 * - fails on any non-zero exit;
 * - runs with hooks disabled and signing off, so a user's `pre-commit`, `post-checkout` or
 *   `commit.gpgsign` can neither block a snapshot nor execute code on behalf of AgentGate;
 * - commits as the fixed AgentGate identity, also overriding `GIT_AUTHOR_*` from the environment;
 * - never prompts for credentials and never sees AgentGate's own secrets in its environment;
 * - ignores `GIT_DIR`/`GIT_WORK_TREE`/`GIT_INDEX_FILE` inherited from a parent git process, which would
 *   otherwise redirect AgentGate's commands into the user's repository and index.
 */
import { abortError } from '../util/abort.js';
import { execFile } from 'node:child_process';
import { AgentGateError, reportsDiskFull, toAgentGateError, type ErrorCode } from '../errors.js';
import { REPOSITORY_ENV, SERVER_SECRET_ENV, redact, withoutVars } from '../util/secrets.js';
import { isolatedConfigArgs, isolatedGitEnv, type IsolatedGit } from './isolated-git.js';
import type { KeyedMutex } from './keyed-mutex.js';

/**
 * Largest stdout a git call may return (patches are written by git itself with --output). Git is run
 * with node:child_process rather than simple-git because simple-git waits a fixed 50 ms after every
 * command that prints nothing (add, commit, worktree add/remove): measured, that tripled the cost of
 * a snapshot (see scripts/bench/engine-overhead.ts and docs/architecture.md).
 */
const MAX_GIT_OUTPUT = 256 * 1024 * 1024;

/** The identity of snapshot commits (SPEC section 4). Fixed so no global git config is needed. */
export const AGENTGATE_GIT_IDENTITY = { name: 'AgentGate', email: 'agentgate@localhost' } as const;

/** Per-command configuration passed as `-c` to every git call. */
const BASE_CONFIG: readonly string[] = [
  `user.name=${AGENTGATE_GIT_IDENTITY.name}`,
  `user.email=${AGENTGATE_GIT_IDENTITY.email}`,
  'core.hooksPath=/dev/null',
  'core.fsmonitor=false',
  'commit.gpgSign=false',
  'tag.gpgSign=false',
  // Only real transports: `ext::` (and anything else) would run a command chosen by repository config,
  // which an agent can write through its worktree. Command-line `-c` beats any config file.
  'protocol.allow=never',
  'protocol.https.allow=always',
  'protocol.http.allow=always',
  'protocol.ssh.allow=always',
  'protocol.git.allow=always',
  'protocol.file.allow=always',
];


/** Interactive helpers a non-interactive git never needs . */
const INTERACTIVE_ENV = ['EDITOR', 'VISUAL', 'GIT_EDITOR', 'GIT_SEQUENCE_EDITOR', 'PAGER', 'GIT_PAGER'];

/** Configuration passed to git through the environment (`GIT_CONFIG_KEY_n`), never through argv or files. */
export interface GitEnvConfig {
  readonly key: string;
  readonly value: string;
}

export interface GitCall {
  /** Directory git runs in (`-C`); must exist. */
  readonly cwd: string;
  readonly args: readonly string[];
  readonly signal: AbortSignal;
  /** The code a failure of this step means (for example AG_ERR_WORKSPACE_REF_NOT_FOUND for a ref lookup). */
  readonly failAs: ErrorCode;
  /** What the step does, for the error message: "create the run worktree". */
  readonly what: string;
  /** Secret configuration (auth headers) for this call only. */
  readonly envConfig?: readonly GitEnvConfig[];
  /** Values to scrub from error messages (tokens, URL passwords). */
  readonly secrets?: readonly string[];
  /**
   * Run against AgentGate's own git state of a run (`GIT_DIR`, `GIT_WORK_TREE`, `GIT_INDEX_FILE`) with the
   * hardened environment of `isolated-git.ts`; `cwd` should be the work tree.
   */
  readonly isolated?: IsolatedGit;
  /**
   * The hardened environment without a git directory of AgentGate's (for calls in the user's repository
   * whose own config is the user's): no inherited `GIT_*`, no system or global config, the isolation `-c`
   * settings. Implied by `isolated`.
   */
  readonly hardened?: boolean;
}

/** A git process that exited non-zero. Internal: it never leaves this module except as a `cause`. */
class GitExitError extends Error {
  override readonly name = 'GitExitError';
  constructor(
    readonly exitCode: number,
    output: string,
  ) {
    super(output.trim() === '' ? `git exited with code ${exitCode}` : output.trim());
  }
}

function gitEnvironment(envConfig: readonly GitEnvConfig[], isolation: { git: IsolatedGit | undefined } | undefined): Record<string, string> {
  const inherited = withoutVars(process.env, [...SERVER_SECRET_ENV, ...REPOSITORY_ENV, ...INTERACTIVE_ENV]);
  const env = isolation === undefined ? inherited : isolatedGitEnv(inherited, isolation.git);
  env['GIT_TERMINAL_PROMPT'] = '0';
  // Messages in English whatever the user's locale: a full disk is recognised from git's stderr.
  env['LC_ALL'] = 'C';
  // Replace refs live in the shared repository, where an agent can create them.
  env['GIT_NO_REPLACE_OBJECTS'] = '1';
  env['GIT_AUTHOR_NAME'] = AGENTGATE_GIT_IDENTITY.name;
  env['GIT_AUTHOR_EMAIL'] = AGENTGATE_GIT_IDENTITY.email;
  env['GIT_COMMITTER_NAME'] = AGENTGATE_GIT_IDENTITY.name;
  env['GIT_COMMITTER_EMAIL'] = AGENTGATE_GIT_IDENTITY.email;
  if (envConfig.length > 0) {
    const inherited = Number.parseInt(env['GIT_CONFIG_COUNT'] ?? '0', 10);
    const start = Number.isSafeInteger(inherited) && inherited > 0 ? inherited : 0;
    envConfig.forEach((entry, index) => {
      env[`GIT_CONFIG_KEY_${start + index}`] = entry.key;
      env[`GIT_CONFIG_VALUE_${start + index}`] = entry.value;
    });
    env['GIT_CONFIG_COUNT'] = String(start + envConfig.length);
  }
  return env;
}

/**
 * Runs one git command and returns its stdout (untrimmed).
 *
 * @throws AgentGateError with `call.failAs` when git fails; the signal's reason (or AG_ERR_RUN_CANCELED)
 *   when the call was aborted — a canceled step reports canceled, never failed.
 */
export async function runGit(call: GitCall): Promise<string> {
  if (call.signal.aborted) throw canceledError(call.signal, call.what);
  const isolation = call.isolated !== undefined ? { git: call.isolated } : call.hardened === true ? { git: undefined } : undefined;
  const env = gitEnvironment(call.envConfig ?? [], isolation);
  const config = [...BASE_CONFIG.flatMap((entry) => ['-c', entry]), ...(isolation === undefined ? [] : isolatedConfigArgs())];
  try {
    return await new Promise<string>((resolve, reject) => {
      execFile('git', [...config, ...call.args], { cwd: call.cwd, env, signal: call.signal, maxBuffer: MAX_GIT_OUTPUT, encoding: 'utf8' }, (error, stdout, stderr) => {
        if (error === null) return resolve(stdout);
        // A non-zero exit carries its numeric code; spawn failures (ENOENT, abort) carry a string code.
        if (typeof error.code === 'number') return reject(new GitExitError(error.code, `${stderr}${stdout}`));
        return reject(error);
      });
    });
  } catch (error) {
    throw translateGitError(error, call);
  }
}

/** Runs git and returns stdout without the trailing newline. */
export async function runGitTrimmed(call: GitCall): Promise<string> {
  return (await runGit(call)).trim();
}

/** Translates a git failure into the catalogue. Exported for callers that run git themselves. */
export function translateGitError(error: unknown, call: Pick<GitCall, 'signal' | 'failAs' | 'what' | 'secrets' | 'args'>): AgentGateError {
  if (call.signal.aborted) return canceledError(call.signal, call.what);
  if (error instanceof AgentGateError) return error;
  const secrets = call.secrets ?? [];
  const raw = error instanceof Error ? error.message : String(error);
  const excerpt = redact(raw, secrets).split('\n').slice(0, 6).join('\n').slice(0, 1000);
  // The cause keeps git's full output for logs, scrubbed the same way as the message.
  const cause = new Error(redact(raw, secrets));
  cause.name = error instanceof Error ? error.name : 'GitError';
  // git reports a full disk only as text (strerror under LC_ALL=C): it is its own class all the same.
  const code = reportsDiskFull(raw) ? 'AG_ERR_DISK_FULL' : call.failAs;
  return new AgentGateError(code, `Could not ${call.what}: ${excerpt}`, {
    cause,
    details: {
      command: `git ${call.args.find((arg) => !arg.startsWith('-')) ?? ''}`.trim(),
      ...(error instanceof GitExitError ? { exitCode: error.exitCode } : {}),
    },
  });
}

/**
 * The error a canceled step reports: the abort reason when it is already classified (cancel and
 * timeout abort with a typed AgentGateError), AG_ERR_RUN_CANCELED otherwise.
 */
export function canceledError(signal: AbortSignal, what: string): AgentGateError {
  return abortError(signal, what);
}

/** A signal that never aborts, for cleanup that must finish even when the run was canceled. */
export function neverAborted(): AbortSignal {
  return new AbortController().signal;
}

/**
 * The error to throw when cleanup after a failure fails too: the first failure keeps its code (it is
 * what the run failed of), and the message and details say that cleanup failed as well.
 */
export function withCleanupFailure(primary: unknown, cleanup: unknown, what: string): unknown {
  if (cleanup === undefined) return primary;
  const first = primary instanceof AgentGateError ? primary : toAgentGateError(primary, 'AG_ERR_INTERNAL');
  const detail = cleanup instanceof Error ? cleanup.message : String(cleanup);
  return new AgentGateError(first.code, `${first.message} (${what} also failed: ${detail})`, {
    cause: first,
    retryable: first.retryable,
    details: { ...first.details, cleanupError: detail },
  });
}

/**
 * Runs `fn` holding `mutex` for `key`; a wait that is aborted reports the run's cancellation like any
 * other canceled git step.
 */
export async function withRepositoryLock<T>(mutex: KeyedMutex, key: string, signal: AbortSignal, fn: () => Promise<T>): Promise<T> {
  try {
    return await mutex.runExclusive(key, signal, fn);
  } catch (error) {
    if (signal.aborted && error === signal.reason) throw canceledError(signal, `wait for the lock on ${key}`);
    throw error;
  }
}
