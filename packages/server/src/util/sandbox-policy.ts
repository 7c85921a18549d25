/**
 * Which sandbox a run gets: the modes (`auto | bwrap | none`), whether bubblewrap works on this host
 * (probed once per process), the warning of `auto` without it, and the run's policy as an async scope
 * set by the engine (`runWithSandboxPolicy`).
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { spawnSync } from 'node:child_process';
import { accessSync, constants, statSync } from 'node:fs';
import path from 'node:path';
import { AgentGateError } from '../errors.js';
import { sandboxCommand, type SandboxSpec } from './sandbox-command.js';

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
