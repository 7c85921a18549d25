/**
 * The bubblewrap sandbox agents and gates run in (SPEC 8 "Isolation", docs/security.md).
 *
 * One wrapper for every agent and gate process: {@link sandboxCommand} turns an argv into a `bwrap`
 * invocation, and `runProcess({ sandbox })` (util/process.ts) spawns that instead, so process groups,
 * timeouts, the idle watchdog and the kill logic stay exactly as they are. Killing bwrap's process group
 * kills the whole sandbox: the processes inside share the group, and when bwrap dies its PID 1 inside
 * gets SIGKILL (`--die-with-parent`), and the kernel kills every process of a PID namespace whose init
 * died — including those that called `setsid` or double-forked.
 *
 * What the sandbox sees: the host read-only (`--ro-bind / /`), a minimal `/dev`, a fresh `/proc` of its
 * own PID namespace (AgentGate's `/proc/<pid>/environ` does not exist in there), `$AGENTGATE_HOME` and
 * `/run` replaced by empty tmpfs (other runs, the store, logs and host sockets such as docker's are not
 * reachable), and writable only: the workspace, a per-run home and tmp, and — for agents — the config
 * directories named by `CLAUDE_CONFIG_DIR` / `CODEX_HOME`. Network stays on unless the policy cuts it.
 * https://github.com/containers/bubblewrap/blob/main/bwrap.xml documents every flag used here.
 */
import { existsSync, lstatSync, mkdirSync, readFileSync, realpathSync, statSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import type { SandboxSpec } from './sandbox-command.js';
import { currentSandboxPolicy, effectiveSandbox, type SandboxPolicy } from './sandbox-policy.js';

// The sandbox's parts, importable from here: the bwrap command, and the policy of a run.
export { sandboxCommand } from './sandbox-command.js';
export type { SandboxedCommand, SandboxSpec } from './sandbox-command.js';
export {
  BWRAP_PATH_ENV,
  DEFAULT_SANDBOX_POLICY,
  SANDBOX_ENV,
  SANDBOX_MODES,
  assertSandboxAvailable,
  currentSandboxPolicy,
  effectiveSandbox,
  isSandboxMode,
  locateBwrap,
  probeBwrap,
  resetBwrapProbe,
  runWithSandboxPolicy,
  sandboxWarnings,
  setDefaultSandboxPolicy,
} from './sandbox-policy.js';
export type { BwrapProbe, EffectiveSandbox, SandboxMode, SandboxPolicy } from './sandbox-policy.js';

export type SandboxRole = 'agent' | 'gate';

export interface RunSandboxInput {
  policy: SandboxPolicy;
  role: SandboxRole;
  /** The run's workspace: the agent's and the gates' working directory, writable. */
  workspacePath: string;
  /** The run's artifacts (`$AGENTGATE_HOME/runs/<runId>`): readable (prompt and feedback files). */
  artifactsDir: string;
  /** The environment the process gets; for agents, `CLAUDE_CONFIG_DIR` / `CODEX_HOME` stay writable. */
  env: Readonly<Record<string, string>>;
  /** AgentGate's environment (default `process.env`), for `SSH_AUTH_SOCK` and the bwrap lookup. */
  hostEnv?: Readonly<Record<string, string | undefined>>;
}

/** Agent state directories an operator points the CLIs at; kept (and writable) inside the sandbox. */
export const AGENT_STATE_DIR_ENV = ['CLAUDE_CONFIG_DIR', 'CODEX_HOME'] as const;

/**
 * Where a run's sandbox homes live: `$AGENTGATE_HOME/sandbox/<runId>/<role>/{home,tmp}` — outside the
 * artifacts, because an agent's home holds whatever the agent wrote (its session logs may quote model
 * keys), and the artifacts are what AgentGate shows and keeps secret-free. For an artifacts directory
 * that is not `<home>/runs/<runId>` (tests), `<artifactsDir>/sandbox/<role>`.
 */
export function runSandboxRoot(artifactsDir: string, role: SandboxRole): { root: string; agentGateHome: string | undefined } {
  const runs = path.dirname(artifactsDir);
  if (path.basename(runs) === 'runs') {
    const home = path.dirname(runs);
    return { root: path.join(home, 'sandbox', path.basename(artifactsDir), role), agentGateHome: home };
  }
  return { root: path.join(artifactsDir, 'sandbox', role), agentGateHome: undefined };
}

/**
 * Removes the sandbox homes of the run whose artifacts are `artifactsDir` (`$AGENTGATE_HOME/sandbox/<runId>`):
 * for the run's clean-up, next to the workspace release. Idempotent.
 */
export async function removeRunSandbox(artifactsDir: string): Promise<void> {
  await rm(path.dirname(runSandboxRoot(path.resolve(artifactsDir), 'agent').root), { recursive: true, force: true });
}

/**
 * The sandbox of one agent or gate process of a run, its directories created; `undefined` when the
 * policy resolves to no sandbox (`none`, or `auto` without a working bwrap: see {@link sandboxWarnings}).
 *
 * @throws AgentGateError `AG_ERR_CONFIG_INVALID` when `bwrap` is required but unavailable.
 */
export function prepareRunSandbox(input: RunSandboxInput): SandboxSpec | undefined {
  const hostEnv = input.hostEnv ?? process.env;
  const effective = effectiveSandbox(input.policy, hostEnv);
  if (effective.kind === 'none') return undefined;
  const workspace = path.resolve(input.workspacePath);
  const artifacts = path.resolve(input.artifactsDir);
  const { root, agentGateHome } = runSandboxRoot(artifacts, input.role);
  const home = path.join(root, 'home');
  const tmp = path.join(root, 'tmp');
  for (const dir of [home, tmp]) mkdirSync(dir, { recursive: true, mode: 0o700 });
  const stateDirs: string[] = [];
  if (input.role === 'agent') {
    for (const name of AGENT_STATE_DIR_ENV) {
      const dir = input.env[name];
      if (dir === undefined || dir.trim() === '' || !path.isAbsolute(dir)) continue;
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      stateDirs.push(path.resolve(dir));
    }
  }
  const hidden = [...(agentGateHome === undefined ? [] : [agentGateHome]), ...hostRuntimeDirs()].filter((dir) => isDirectory(dir) && !isInsideOrSame(dir, workspace) && !isInsideOrSame(dir, artifacts));
  const underHidden = (p: string): boolean => hidden.some((dir) => isInsideOrSame(p, dir));
  const readable = [artifacts, ...trustedObjectDirs(artifacts), ...resolvConfTarget()].filter((p) => existsSync(p) && underHidden(p));
  const masked = socketPath(hostEnv['SSH_AUTH_SOCK']).filter((p) => !underHidden(p));
  return {
    bwrapPath: effective.bwrapPath,
    network: effective.network,
    writable: unique([workspace, ...stateDirs, home, tmp]),
    readable: unique(readable),
    hidden: unique(hidden),
    masked,
    home,
    tmp,
  };
}

/** `/run` (and `/var/run` when it is a directory of its own): host daemons' sockets (docker, dbus…). */
function hostRuntimeDirs(): string[] {
  const dirs = ['/run'];
  try {
    if (!lstatSync('/var/run').isSymbolicLink()) dirs.push('/var/run');
  } catch {
    // No /var/run: nothing to hide.
  }
  return dirs;
}

/** `/etc/resolv.conf` usually links into `/run` (systemd-resolved): keep name resolution working. */
function resolvConfTarget(): string[] {
  try {
    const target = realpathSync('/etc/resolv.conf');
    return target === '/etc/resolv.conf' ? [] : [target];
  } catch {
    return [];
  }
}

/**
 * The object directory the run's repositories borrow (`objects/info/alternates`), read from AgentGate's
 * own git directory of the run (`<artifactsDir>/git`, written by `workspace/isolated-git.ts`) — never from
 * the agent's `.git`, which the agent can rewrite: an alternates line or a `gitdir:` it wrote naming
 * `$AGENTGATE_HOME` would otherwise re-expose the whole home to the next sandboxed process. For a remote
 * source this is the cache clone under `$AGENTGATE_HOME/repos/`, which the agent's and the gates' git need.
 */
function trustedObjectDirs(artifactsDir: string): string[] {
  const ownGit = path.join(artifactsDir, 'git');
  const alternates = readText(path.join(ownGit, 'objects', 'info', 'alternates'));
  const out: string[] = [];
  for (const line of (alternates ?? '').split('\n')) {
    const entry = line.trim();
    if (entry !== '' && !entry.startsWith('#')) out.push(path.resolve(path.join(ownGit, 'objects'), entry));
  }
  return out;
}

function socketPath(value: string | undefined): string[] {
  if (value === undefined || !path.isAbsolute(value)) return [];
  try {
    return lstatSync(value).isSocket() ? [value] : [];
  } catch {
    return [];
  }
}

function readText(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
}

function isDirectory(dir: string): boolean {
  try {
    return statSync(dir).isDirectory();
  } catch {
    return false;
  }
}

function isInsideOrSame(candidate: string, root: string): boolean {
  const relative = path.relative(root, candidate);
  return relative === '' || (!relative.startsWith('..') && !path.isAbsolute(relative));
}

function unique(paths: string[]): string[] {
  return [...new Set(paths)];
}

/**
 * `{ sandbox }` for runProcess options, or `{}` without one: the one call agent drivers and gates make,
 * with the policy of the current run ({@link currentSandboxPolicy}) unless one is given.
 */
export function sandboxOption(input: Omit<RunSandboxInput, 'policy'> & { policy?: SandboxPolicy }): { sandbox?: SandboxSpec } {
  const policy = input.policy ?? currentSandboxPolicy(input.hostEnv);
  if (policy === undefined) return {};
  const sandbox = prepareRunSandbox({ ...input, policy });
  return sandbox === undefined ? {} : { sandbox };
}
