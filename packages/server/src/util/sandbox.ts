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
import { AsyncLocalStorage } from 'node:async_hooks';
import { spawnSync } from 'node:child_process';
import { accessSync, constants, existsSync, lstatSync, mkdirSync, readFileSync, realpathSync, statSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { AgentGateError } from '../errors.js';

export const SANDBOX_MODES = ['auto', 'bwrap', 'none'] as const;
/** `auto`: bubblewrap when it works here, else the fallback with a warning; `bwrap`: required; `none`: off. */
export type SandboxMode = (typeof SANDBOX_MODES)[number];

/** What a task (or the configuration) asks for. */
export interface SandboxPolicy {
  mode: SandboxMode;
  /** `false` gives the sandbox its own network namespace (`--unshare-net`): not even loopback of the host. */
  network: boolean;
}

export const DEFAULT_SANDBOX_POLICY: Readonly<SandboxPolicy> = { mode: 'auto', network: true };

/** Configuration variable of the default mode (`auto | bwrap | none`). */
export const SANDBOX_ENV = 'AGENTGATE_SANDBOX';
/** Path of the bwrap binary; default: `bwrap` on `PATH`. Pointing it at nothing disables `auto`. */
export const BWRAP_PATH_ENV = 'AGENTGATE_BWRAP';

export function isSandboxMode(value: unknown): value is SandboxMode {
  return typeof value === 'string' && (SANDBOX_MODES as readonly string[]).includes(value);
}

/** One sandboxed process: the bwrap binary and what is visible and writable inside. */
export interface SandboxSpec {
  bwrapPath: string;
  network: boolean;
  /** Bound read-write at the same path (created by {@link prepareRunSandbox}). */
  writable: readonly string[];
  /** Bound read-only again below a hidden directory (applied after {@link hidden}). */
  readable: readonly string[];
  /** Replaced by an empty tmpfs. */
  hidden: readonly string[];
  /** Host sockets (files) covered with /dev/null, e.g. `SSH_AUTH_SOCK`. */
  masked: readonly string[];
  /** HOME inside; XDG directories live below it. */
  home: string;
  /** TMPDIR inside. */
  tmp: string;
}

export interface SandboxedCommand {
  file: string;
  args: string[];
  env: Record<string, string>;
}

/**
 * The bwrap invocation running `argv` with `env` in `cwd` inside `spec`.
 *
 * The environment is handed to bwrap itself, which passes it on; it is never put on bwrap's command line
 * (`--setenv`), where other users of the host could read model keys through `ps`. bwrap's own environment
 * is therefore exactly the one computed for the agent or gate: AgentGate's secrets were removed before.
 * No `--new-session`: the processes stay in the group runProcess signals (a SIGTERM reaches the agent,
 * not only bwrap); they have no controlling terminal anyway (runProcess starts a new session with pipes)
 * and the minimal /dev has no host terminal, so TIOCSTI injection has nothing to reach.
 */
export function sandboxCommand(spec: SandboxSpec, argv: readonly string[], env: Record<string, string>, cwd: string): SandboxedCommand {
  const args = ['--ro-bind', '/', '/', '--dev', '/dev', '--proc', '/proc', '--tmpfs', '/dev/shm'];
  for (const dir of spec.hidden) args.push('--tmpfs', dir);
  for (const socket of spec.masked) args.push('--ro-bind', '/dev/null', socket);
  for (const dir of spec.readable) args.push('--ro-bind', dir, dir);
  for (const dir of spec.writable) args.push('--bind', dir, dir);
  // The hiding tmpfs itself stays read-only; the binds below it are mounts of their own and keep their mode.
  for (const dir of spec.hidden) args.push('--remount-ro', dir);
  args.push('--unshare-pid', '--unshare-ipc', '--unshare-uts', '--unshare-cgroup-try');
  if (!spec.network) args.push('--unshare-net');
  args.push('--die-with-parent', '--cap-drop', 'ALL', '--chdir', cwd, '--', ...argv);
  const inside: Record<string, string> = {
    ...env,
    HOME: spec.home,
    TMPDIR: spec.tmp,
    TMP: spec.tmp,
    TEMP: spec.tmp,
    XDG_CONFIG_HOME: path.join(spec.home, '.config'),
    XDG_CACHE_HOME: path.join(spec.home, '.cache'),
    XDG_DATA_HOME: path.join(spec.home, '.local', 'share'),
    XDG_STATE_HOME: path.join(spec.home, '.local', 'state'),
  };
  // Host session resources that are hidden or masked inside.
  for (const name of ['XDG_RUNTIME_DIR', 'DBUS_SESSION_BUS_ADDRESS', 'SSH_AUTH_SOCK']) delete inside[name];
  return { file: spec.bwrapPath, args, env: inside };
}

// ---------------------------------------------------------------------------------------------------
// Availability: probed once per process and bwrap path.

export type BwrapProbe = { available: true; path: string } | { available: false; reason: string };

const probes = new Map<string, BwrapProbe>();

/** Finds `bwrap`: `$AGENTGATE_BWRAP` when set, else the first executable `bwrap` on `PATH`. */
export function locateBwrap(env: Readonly<Record<string, string | undefined>> = process.env): string | undefined {
  const configured = env[BWRAP_PATH_ENV]?.trim();
  if (configured !== undefined && configured !== '') return isExecutable(configured) ? configured : undefined;
  for (const dir of (env['PATH'] ?? '').split(path.delimiter)) {
    if (dir === '') continue;
    const candidate = path.join(dir, 'bwrap');
    if (isExecutable(candidate)) return candidate;
  }
  return undefined;
}

function isExecutable(file: string): boolean {
  try {
    accessSync(file, constants.X_OK);
    return statSync(file).isFile();
  } catch {
    // Missing or not executable: not usable, which is the answer.
    return false;
  }
}

/**
 * Whether bubblewrap works here with the flags {@link sandboxCommand} uses (it may be installed but
 * refused: no user namespaces for an unprivileged user, a seccomp profile of a container). Runs
 * `bwrap … -- true` once per process and bwrap path; the answer is cached.
 */
export function probeBwrap(env: Readonly<Record<string, string | undefined>> = process.env): BwrapProbe {
  const bwrap = locateBwrap(env);
  const key = bwrap ?? '';
  const cached = probes.get(key);
  if (cached !== undefined) return cached;
  let probe: BwrapProbe;
  if (bwrap === undefined) {
    const configured = env[BWRAP_PATH_ENV]?.trim();
    probe = { available: false, reason: configured ? `${BWRAP_PATH_ENV}=${configured} is not an executable` : 'bwrap (bubblewrap) is not installed (not found on PATH)' };
  } else {
    const spec: SandboxSpec = { bwrapPath: bwrap, network: true, writable: [], readable: [], hidden: [], masked: [], home: '/', tmp: '/tmp' };
    const command = sandboxCommand(spec, ['true'], { PATH: '/usr/local/bin:/usr/bin:/bin' }, '/');
    const result = spawnSync(command.file, command.args, { env: command.env, encoding: 'utf8', timeout: 10_000, stdio: ['ignore', 'ignore', 'pipe'] });
    probe =
      result.status === 0
        ? { available: true, path: bwrap }
        : { available: false, reason: `${bwrap} does not work here: ${(result.stderr ?? '').trim() || result.error?.message || `exit ${String(result.status)}`}` };
  }
  probes.set(key, probe);
  return probe;
}

/** Forgets cached probes (tests that change `PATH` or `AGENTGATE_BWRAP`). */
export function resetBwrapProbe(): void {
  probes.clear();
}

/** What a policy means on this host: the bwrap binary, or no sandbox (and why). */
export type EffectiveSandbox = { kind: 'bwrap'; bwrapPath: string; network: boolean } | { kind: 'none'; requested: SandboxMode; reason?: string };

/**
 * Resolves `policy` against this host.
 *
 * @throws AgentGateError `AG_ERR_CONFIG_INVALID` when `bwrap` was required but does not work here.
 */
export function effectiveSandbox(policy: SandboxPolicy, env: Readonly<Record<string, string | undefined>> = process.env): EffectiveSandbox {
  if (policy.mode === 'none') return { kind: 'none', requested: 'none' };
  const probe = probeBwrap(env);
  if (probe.available) return { kind: 'bwrap', bwrapPath: probe.path, network: policy.network };
  if (policy.mode === 'bwrap') {
    throw new AgentGateError('AG_ERR_CONFIG_INVALID', `sandbox mode "bwrap" was requested but ${probe.reason}; install bubblewrap or use --sandbox auto|none`, {
      details: { option: 'sandbox', reason: probe.reason },
    });
  }
  return { kind: 'none', requested: policy.mode, reason: probe.reason };
}

/**
 * Checks at submission that `policy` can be honoured here (exit 2 / HTTP 400 otherwise).
 *
 * @throws AgentGateError `AG_ERR_CONFIG_INVALID` when `bwrap` is required but unavailable.
 */
export function assertSandboxAvailable(policy: SandboxPolicy, env: Readonly<Record<string, string | undefined>> = process.env): void {
  effectiveSandbox(policy, env);
}

/**
 * The run warnings `policy` gives on this host: one when `auto` fell back to running without bubblewrap,
 * none otherwise (`none` was asked for; `bwrap` is checked at submission). Shown with the run's other
 * warnings (`run_started.warnings`) on every run, so an unsandboxed host never goes unnoticed.
 */
export function sandboxWarnings(policy: SandboxPolicy, env: Readonly<Record<string, string | undefined>> = process.env): string[] {
  if (policy.mode !== 'auto') return [];
  const effective = effectiveSandbox(policy, env);
  if (effective.kind === 'bwrap') return [];
  return [
    `sandbox: ${effective.reason ?? 'bubblewrap is unavailable'}; agents and gates run unsandboxed as this user (process groups and a sweep of tagged processes only). Install bubblewrap, or set --sandbox none to silence this.`,
  ];
}

// ---------------------------------------------------------------------------------------------------
// Which policy applies: the run's (an async scope), else the process default, else AGENTGATE_SANDBOX.
// The scope lets the engine give each run its own policy without threading it through every phase.

const scope = new AsyncLocalStorage<SandboxPolicy>();
let processDefault: SandboxPolicy | undefined;

/** Runs `fn` (a run's execution) with `policy`: every agent and gate it starts uses it. */
export function runWithSandboxPolicy<T>(policy: SandboxPolicy, fn: () => T): T {
  return scope.run({ ...policy }, fn);
}

/** Sets the policy of runs started outside {@link runWithSandboxPolicy} (the CLI: one run per process). */
export function setDefaultSandboxPolicy(policy: SandboxPolicy | undefined): void {
  processDefault = policy === undefined ? undefined : { ...policy };
}

/**
 * The policy for a process started now: the run's ({@link runWithSandboxPolicy}), else the process
 * default ({@link setDefaultSandboxPolicy}), else `AGENTGATE_SANDBOX` when set. `undefined` outside any
 * run — a driver or gate called directly (unit tests, library use) is not sandboxed unless asked; every
 * run resolves a policy from its TaskSpec, whose default is `auto`.
 */
export function currentSandboxPolicy(env: Readonly<Record<string, string | undefined>> = process.env): SandboxPolicy | undefined {
  const scoped = scope.getStore() ?? processDefault;
  if (scoped !== undefined) return scoped;
  const configured = env[SANDBOX_ENV]?.trim();
  return isSandboxMode(configured) ? { ...DEFAULT_SANDBOX_POLICY, mode: configured } : undefined;
}

// ---------------------------------------------------------------------------------------------------
// The sandbox of one run's agent or gate process.

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
  const readable = [artifacts, ...gitReadablePaths(workspace), ...resolvConfTarget()].filter((p) => existsSync(p) && underHidden(p));
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
 * What git in the workspace reads outside it: the git directory a `.git` file points to, its common
 * directory, and the object stores listed in `objects/info/alternates` (the run's repository borrows the
 * source's objects). Read-only: the agent can commit into its own `.git`, never into those.
 */
function gitReadablePaths(workspace: string): string[] {
  const out: string[] = [];
  const dotGit = path.join(workspace, '.git');
  let gitDir = dotGit;
  try {
    if (statSync(dotGit).isFile()) {
      const match = /^gitdir:\s*(.+)$/m.exec(readFileSync(dotGit, 'utf8'));
      if (match?.[1] === undefined) return out;
      gitDir = path.resolve(workspace, match[1].trim());
      out.push(gitDir);
    }
  } catch {
    return out;
  }
  const dirs = [gitDir];
  const common = readText(path.join(gitDir, 'commondir'));
  if (common !== undefined) {
    const commonDir = path.resolve(gitDir, common.trim());
    out.push(commonDir);
    dirs.push(commonDir);
  }
  for (const dir of dirs) {
    const alternates = readText(path.join(dir, 'objects', 'info', 'alternates'));
    for (const line of (alternates ?? '').split('\n')) {
      const entry = line.trim();
      if (entry !== '' && !entry.startsWith('#')) out.push(path.resolve(path.join(dir, 'objects'), entry));
    }
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
