/**
 * The Verifier: runs a run's gate plan in its worktree (SPEC 4 Verify, SPEC 6).
 *
 * Results follow one rule: a gate that fails is a normal outcome — `{ ok: true, report }` with
 * `report.passed === false` — and only being unable to run the gates (unreadable base commit, invalid
 * verify.yaml, a command that cannot be spawned, an unwritable log) is `{ ok: false }`. A cancelled
 * verification says `cancelled: true`, never "failed".
 *
 * Order and policy:
 * 1. L0 contracts (required files, forbidden files, tamper detection). If any L0 gate fails, the L1 and L2
 *    gates are listed as skipped (failed): testing a tree whose tests were tampered with proves nothing.
 * 2. L1 tests, in order, **all of them** even after a failure, so the feedback to the agent covers every
 *    broken gate at once instead of revealing them one iteration at a time.
 * 3. L2 black-box checks, all of them.
 * `policy.maxRuntimeSeconds` bounds L1 + L2 together: the running gate is stopped when it is reached and
 * the remaining gates are listed as skipped.
 *
 * The Verifier holds no per-run state, so one instance serves every run; without `ctx.plan` the plan is
 * re-read from the base commit for each call, which is cheap and can never pick up the agent's edits.
 */
import { abortError } from '../util/abort.js';
import path, { posix } from 'node:path';
import { AgentGateError, toAgentGateError } from '../errors.js';
import type { EmitFn, ProgressEvents } from '../observability/events.js';
import type { VerifyConfig } from '../schemas/verify-config.js';
import { VERIFY_CONFIG_FILE_NAMES } from '../schemas/verify-config.js';
import type { Clock } from '../util/clock.js';
import { runSandboxRoot, sandboxOption } from '../util/sandbox.js';
import type { Env } from '../util/secrets.js';
import { runBlackboxGate } from './blackbox.js';
import { buildGateEnv, runCommandGate, safeFileName } from './command-gate.js';
import type { CommandEnvironment } from './command-gate.js';
import { checkContracts, type SnapshotRef } from './contracts.js';
import { cacheability, EnvCache, environmentKey, findDependencyDirs, HOME_CACHE_DIRS } from './env-cache.js';
import type { EnvCacheEntryMeta, EnvCacheOutcome } from './env-cache.js';
import { loadGatePlan } from './loader.js';
import type { GatePlan } from './loader.js';
import { pythonGateEnvironment, setupPythonEnvironment } from './python-env.js';
import { needsPythonEnvironment } from './python-plan.js';
import type { GateLevel, GateResult, VerificationReport } from './types.js';

/** What one verification (or setup) of one run needs; built by the verify phase. */
export interface GateContext {
  worktreePath: string;
  /** The commit the run started from: the gate plan is read from it, and tampering is measured against it. */
  baseSha: string;
  /** 1-based iteration, used in log file names and events. */
  iteration: number;
  /** Where full gate logs are written (`$AGENTGATE_HOME/runs/<runId>`). */
  artifactsDir: string;
  signal: AbortSignal;
  clock: Clock;
  /** Receives one `gate_checked` event per gate, as soon as the gate is decided. */
  emit?: EmitFn;
  /**
   * The plan, when the caller already loaded it for this run (it cannot change: it is read from the base
   * commit). Saves reading it again on every verification.
   */
  plan?: GatePlan;
  /**
   * The snapshot of the worktree this verification checks (the verify phase passes the one the snapshot
   * phase just committed): tamper detection then compares the base and snapshot trees instead of reading
   * the worktree (contracts.ts).
   */
  snapshot?: SnapshotRef;
  /** The TaskSpec's inline plan; it replaces the repository's verify.yaml. */
  inline?: VerifyConfig;
  /** The environment gates start from, before secrets are removed (default: `process.env`). */
  env?: Env;
}

export type VerifyResult = { ok: true; report: VerificationReport } | { ok: false; error: AgentGateError; cancelled: boolean };

/** `cache` says whether the environment cache restored the setup (`hit`: no setup command ran) or stored it. */
export type SetupResult =
  | { ok: true; results: GateResult[]; cache?: EnvCacheOutcome }
  | { ok: false; error: AgentGateError; cancelled: boolean; results: GateResult[]; cache?: EnvCacheOutcome };

export interface VerifierOptions {
  /** Time between SIGTERM and SIGKILL for a stopped gate (default: runProcess's 2 s). */
  killGraceMs?: number;
  /** Upper bound on diagnostics per gate. */
  maxDiagnostics?: number;
  /**
   * The environment cache of setups (env-cache.ts). Default: `$AGENTGATE_HOME/env-cache` when the
   * artifacts directory is `$AGENTGATE_HOME/runs/<runId>`, else none; `false` turns it off.
   */
  envCache?: EnvCache | false;
}

/** Set to `off` in the gates' base environment to run every setup from scratch. */
export const ENV_CACHE_ENV = 'AGENTGATE_ENV_CACHE';


/** The error a cancelled verification reports: the engine's typed abort reason is kept as cause. */
function cancellation(signal: AbortSignal): AgentGateError {
  return abortError(signal, 'verify');
}

/** Classifies anything that escaped: a cancellation when the signal aborted, else AG_ERR_PHASE_VERIFY (kept codes pass through). */
function failure(error: unknown, signal: AbortSignal): { error: AgentGateError; cancelled: boolean } {
  if (signal.aborted) return { error: cancellation(signal), cancelled: true };
  return { error: toAgentGateError(error, 'AG_ERR_PHASE_VERIFY'), cancelled: false };
}

/**
 * The gates' sandbox home of the run (`$AGENTGATE_HOME/sandbox/<runId>/gate/home`) when the gates run in a
 * sandbox and corepack keeps its downloads below it (no `COREPACK_HOME` of the user's naming another
 * place): where the environment cache keeps and restores {@link HOME_CACHE_DIRS}. Without a sandbox the
 * gates use the user's own home, whose caches last from run to run anyway, and nothing is kept from it.
 */
function gateSandboxHome(ctx: Pick<GateContext, 'worktreePath' | 'artifactsDir' | 'env'>): string | undefined {
  if ((buildGateEnv(ctx.env ?? process.env)['COREPACK_HOME'] ?? '').trim() !== '') return undefined;
  return sandboxOption({ role: 'gate', workspacePath: ctx.worktreePath, artifactsDir: ctx.artifactsDir, env: {} }).sandbox?.home;
}

/** Chooses unique, path-safe log file names within one verification. */
class LogNames {
  private readonly used = new Set<string>();
  constructor(private readonly prefix: string) {}

  next(name: string): string {
    const base = `${this.prefix}${safeFileName(name)}`;
    let candidate = `${base}.log`;
    for (let n = 2; this.used.has(candidate); n += 1) candidate = `${base}-${n}.log`;
    this.used.add(candidate);
    return candidate;
  }
}

interface PlannedGate {
  name: string;
  level: GateLevel;
  command: string;
  run: (logs: LogNames, env: CommandEnvironment) => Promise<{ cancelled: true } | { cancelled: false; result: GateResult }>;
}

export class Verifier {
  constructor(private readonly options: VerifierOptions = {}) {}

  /** Loads the plan the way {@link verify} does (for the agent's gate summary and the run record). */
  loadPlan(ctx: Pick<GateContext, 'worktreePath' | 'baseSha' | 'signal' | 'clock' | 'inline'> & { objectStore?: string }): Promise<GatePlan> {
    return loadGatePlan({
      worktreePath: ctx.worktreePath,
      baseSha: ctx.baseSha,
      signal: ctx.signal,
      clock: ctx.clock,
      ...(ctx.inline === undefined ? {} : { inline: ctx.inline }),
      ...(ctx.objectStore === undefined ? {} : { objectStore: ctx.objectStore }),
    });
  }

  /**
   * Runs `environment.setup` of the plan, in order, stopping at the first failing step. The caller runs
   * it once per run, before the first verification. A failing step is `AG_ERR_GATE_SETUP_FAILED`: without
   * its dependencies no gate result would mean anything.
   */
  async setup(ctx: GateContext): Promise<SetupResult> {
    const results: GateResult[] = [];
    let cache: EnvCacheOutcome | undefined;
    try {
      const plan = ctx.plan ?? (await this.loadPlan(ctx));
      if (plan.source === 'none') return { ok: true, results };
      const steps = plan.config.environment.setup;
      const envCache = this.envCacheFor(ctx);
      // Python installs and Python gates run in the run's own virtualenv, never the user's (python-env.ts).
      if (needsPythonEnvironment({ setup: steps, gates: [...plan.config.tests, ...plan.config.blackbox] }, ctx.worktreePath)) {
        const logs = new LogNames('setup-');
        const python = await setupPythonEnvironment({
          steps,
          worktreePath: ctx.worktreePath,
          baseSha: ctx.baseSha,
          artifactsDir: ctx.artifactsDir,
          signal: ctx.signal,
          clock: ctx.clock,
          env: ctx.env ?? process.env,
          envCache,
          runStep: (step, env) => runCommandGate(step, 'setup', logs.next(step.name), this.commandEnvironment({ ...ctx, env }, undefined, undefined)),
          emit: (result) => this.emit(ctx, result),
        });
        if (python !== undefined) return python;
      }
      let pending: { key: string; repository: string; lockfiles: string[] } | undefined;
      if (steps.length > 0 && envCache !== undefined) {
        const cacheable = await cacheability(steps, ctx.worktreePath);
        if (!cacheable.cacheable) {
          cache = { status: 'bypass', kind: 'node', reason: cacheable.reason };
        } else {
          const { key, repository } = await environmentKey({ worktreePath: ctx.worktreePath, baseSha: ctx.baseSha, steps, signal: ctx.signal, clock: ctx.clock });
          const entry = await envCache.get(key);
          if (entry !== undefined && entry.kind === 'node') {
            const started = ctx.clock.now();
            await envCache.materialize(entry, ctx.worktreePath);
            const home = await this.restoreHome(envCache, entry, ctx);
            const materializeMs = ctx.clock.now() - started;
            const restored = [...entry.dirs, ...(home.homeDirs ?? []).map((dir) => `~/${dir}`)];
            const unrestored = home.homeError === undefined ? '' : `; ${home.homeError}`;
            cache = { status: 'hit', kind: 'node', key, materializeMs, mode: envCache.mode, dirs: entry.dirs, ...home };
            steps.forEach((step, index) => {
              const result: GateResult = {
                name: step.name,
                level: 'setup',
                passed: true,
                durationMs: index === 0 ? materializeMs : 0,
                command: step.command,
                message: `restored from the environment cache (${key.slice(0, 12)}, ${restored.join(', ')}); not run${unrestored}`,
                diagnostics: [],
              };
              results.push(result);
              this.emit(ctx, result);
            });
            return { ok: true, results, cache };
          }
          pending = { key, repository, lockfiles: cacheable.lockfiles };
        }
      }
      const logs = new LogNames('setup-');
      const env = this.commandEnvironment(ctx, undefined, undefined);
      for (const step of steps) {
        if (ctx.signal.aborted) return { ok: false, error: cancellation(ctx.signal), cancelled: true, results, ...(cache && { cache }) };
        const outcome = await runCommandGate(step, 'setup', logs.next(step.name), env);
        if (outcome.cancelled) return { ok: false, error: cancellation(ctx.signal), cancelled: true, results, ...(cache && { cache }) };
        results.push(outcome.result);
        this.emit(ctx, outcome.result);
        if (!outcome.result.passed) {
          const { result } = outcome;
          return {
            ok: false,
            cancelled: false,
            results,
            ...(cache && { cache }),
            error: new AgentGateError('AG_ERR_GATE_SETUP_FAILED', `setup step ${step.name} failed: ${result.message ?? 'failed'} (log: ${result.logPath ?? 'none'})`, {
              details: { step: step.name, command: step.command, exitCode: result.exitCode, timedOut: result.timedOut === true, logPath: result.logPath, outputTail: result.outputTail },
            }),
          };
        }
      }
      if (pending !== undefined && envCache !== undefined) cache = await this.storeEnvironment(envCache, ctx, steps, pending);
      return { ok: true, results, ...(cache && { cache }) };
    } catch (error) {
      return { ok: false, ...failure(error, ctx.signal), results, ...(cache && { cache }) };
    }
  }

  /**
   * Keeps what a successful, cacheable setup installed. A failure to store costs the next run an install,
   * never this run its setup: it is reported in the outcome instead.
   */
  private async storeEnvironment(
    envCache: EnvCache,
    ctx: GateContext,
    steps: readonly { name: string; command: string }[],
    pending: { key: string; repository: string; lockfiles: string[] },
  ): Promise<EnvCacheOutcome> {
    try {
      const dirs = await findDependencyDirs(ctx.worktreePath);
      if (dirs.length === 0) return { status: 'miss', kind: 'node', key: pending.key, stored: false, reason: 'the setup installed no node_modules directory' };
      const started = ctx.clock.now();
      const home = gateSandboxHome(ctx);
      const { key, repository, lockfiles } = pending;
      const kept = { key, repository, commands: steps.map((s) => s.command), lockfiles, dirs, worktreePath: ctx.worktreePath };
      const { evicted } = await envCache.store({ ...kept, ...(home === undefined ? {} : { home: { path: home, dirs: HOME_CACHE_DIRS } }) });
      return { status: 'miss', kind: 'node', key: pending.key, stored: true, storeMs: ctx.clock.now() - started, dirs, evicted };
    } catch (error) {
      return { status: 'miss', kind: 'node', key: pending.key, stored: false, reason: `storing failed: ${error instanceof Error ? error.message : String(error)}` };
    }
  }

  /** Puts the entry's home directories into the gates' sandbox home; only saves a download, so a failure is reported, not fatal. */
  private async restoreHome(envCache: EnvCache, entry: EnvCacheEntryMeta, ctx: GateContext): Promise<{ homeDirs?: string[]; homeError?: string }> {
    if ((entry.homeDirs ?? []).length === 0) return {};
    const home = gateSandboxHome(ctx);
    if (home === undefined) return {};
    try {
      const homeDirs = await envCache.restoreHome(entry, home);
      return homeDirs.length === 0 ? {} : { homeDirs };
    } catch (error) {
      return { homeError: `${(entry.homeDirs ?? []).map((dir) => `~/${dir}`).join(', ')} not restored (${error instanceof Error ? error.message : String(error)}): fetched again when needed` };
    }
  }

  /** The cache of this verification, if any (see {@link VerifierOptions.envCache}). */
  private envCacheFor(ctx: GateContext): EnvCache | undefined {
    if (this.options.envCache === false) return undefined;
    if ((ctx.env ?? process.env)[ENV_CACHE_ENV]?.trim().toLowerCase() === 'off') return undefined;
    if (this.options.envCache !== undefined) return this.options.envCache;
    const { agentGateHome } = runSandboxRoot(ctx.artifactsDir, 'gate');
    if (agentGateHome === undefined) return undefined;
    return new EnvCache({ root: path.join(agentGateHome, 'env-cache'), clock: ctx.clock });
  }

  /** Runs the gate plan once (see the module comment for order and policy). Never throws. */
  async verify(ctx: GateContext): Promise<VerifyResult> {
    const started = ctx.clock.now();
    try {
      const plan = ctx.plan ?? (await this.loadPlan(ctx));
      if (plan.source === 'none') {
        // Nothing to check: the run goes on, but every surface must show that it was not verified.
        return { ok: true, report: { passed: true, unverified: true, source: 'none', gates: [], passRatio: 1, durationMs: ctx.clock.now() - started, notes: plan.notes } };
      }
      // A run whose setup made a Python environment runs its gates in it (python-env.ts).
      const gates = await this.runPlan(plan, { ...ctx, env: await pythonGateEnvironment(ctx.artifactsDir, ctx.env ?? process.env) });
      if (gates === undefined) return { ok: false, error: cancellation(ctx.signal), cancelled: true };
      const passedCount = gates.filter((g) => g.passed).length;
      const report: VerificationReport = {
        passed: passedCount === gates.length,
        unverified: false,
        source: plan.source,
        gates,
        passRatio: gates.length === 0 ? 1 : passedCount / gates.length,
        durationMs: ctx.clock.now() - started,
      };
      if (plan.source === 'detected') report.notes = [`detected from ${plan.detectedFrom.join(', ')}`, ...plan.notes];
      return { ok: true, report };
    } catch (error) {
      return { ok: false, ...failure(error, ctx.signal) };
    }
  }

  /** Runs L0, L1, L2; undefined when cancelled. */
  private async runPlan(plan: Exclude<GatePlan, { source: 'none' }>, ctx: GateContext): Promise<GateResult[] | undefined> {
    const { config } = plan;
    const alwaysProtected = [
      ...VERIFY_CONFIG_FILE_NAMES.map((path) => ({ path, reason: 'the gate plan is always protected' })),
      ...config.blackbox.flatMap((b) => (b.stdinFile === undefined ? [] : [{ path: posix.normalize(b.stdinFile), reason: `stdin fixture of black-box gate ${b.name}` }])),
      // A detected plan runs commands defined in these files (package.json scripts, workflows): editing
      // them would change the gates themselves.
      ...(plan.source === 'detected' ? plan.detectedFrom.map((path) => ({ path, reason: 'the detected gate commands come from it' })) : []),
    ];
    const gates: GateResult[] = [];
    const snapshot = ctx.snapshot === undefined ? {} : { snapshot: ctx.snapshot };
    for (const result of await checkContracts({ worktreePath: ctx.worktreePath, baseSha: ctx.baseSha, contracts: config.contracts, alwaysProtected, signal: ctx.signal, clock: ctx.clock, ...snapshot })) {
      gates.push(result);
      this.emit(ctx, result);
    }

    const planned: PlannedGate[] = [
      ...config.tests.map((test): PlannedGate => ({ name: test.name, level: 'L1', command: test.command, run: (logs, env) => runCommandGate(test, 'L1', logs.next(test.name), env) })),
      ...config.blackbox.map((check): PlannedGate => ({ name: check.name, level: 'L2', command: check.command, run: (logs, env) => runBlackboxGate(check, logs.next(check.name), env) })),
    ];
    const contractsFailed = gates.some((g) => !g.passed);
    const maxRuntime = config.policy.maxRuntimeSeconds;
    const deadline = maxRuntime === undefined ? undefined : ctx.clock.now() + maxRuntime * 1000;
    const env = this.commandEnvironment(ctx, deadline, maxRuntime);
    const logs = new LogNames(`iteration-${ctx.iteration}-gate-`);

    for (const gate of planned) {
      if (ctx.signal.aborted) return undefined;
      let skip: string | undefined;
      if (contractsFailed) skip = 'not run: the L0 contracts failed';
      else if (deadline !== undefined && ctx.clock.now() >= deadline) skip = `not run: the verification reached policy.maxRuntimeSeconds (${maxRuntime ?? 0}s)`;
      if (skip !== undefined) {
        const result: GateResult = { name: gate.name, level: gate.level, passed: false, skipped: true, durationMs: 0, command: gate.command, message: skip, diagnostics: [] };
        gates.push(result);
        this.emit(ctx, result);
        continue;
      }
      const outcome = await gate.run(logs, env);
      if (outcome.cancelled) return undefined;
      gates.push(outcome.result);
      this.emit(ctx, outcome.result);
    }
    return gates;
  }

  private commandEnvironment(ctx: GateContext, deadline: number | undefined, maxRuntimeSeconds: number | undefined): CommandEnvironment {
    const env: CommandEnvironment = {
      worktreePath: ctx.worktreePath,
      artifactsDir: ctx.artifactsDir,
      signal: ctx.signal,
      clock: ctx.clock,
      baseEnv: ctx.env ?? process.env,
    };
    if (deadline !== undefined) env.deadline = deadline;
    if (maxRuntimeSeconds !== undefined) env.maxRuntimeSeconds = maxRuntimeSeconds;
    if (this.options.killGraceMs !== undefined) env.killGraceMs = this.options.killGraceMs;
    if (this.options.maxDiagnostics !== undefined) env.maxDiagnostics = this.options.maxDiagnostics;
    return env;
  }

  private emit(ctx: GateContext, result: GateResult): void {
    if (ctx.emit === undefined) return;
    const data: ProgressEvents['gate_checked'] = {
      iteration: ctx.iteration,
      gate: result.name,
      level: result.level,
      passed: result.passed,
      durationMs: result.durationMs,
    };
    if (result.exitCode !== undefined) data.exitCode = result.exitCode;
    if (result.message !== undefined) data.message = result.message;
    ctx.emit('gate_checked', data);
  }
}
