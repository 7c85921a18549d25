/**
 * Executing one run: the run actor driven through the step table. Sets up what the run holds (the
 * run lease's heartbeat, the wall clock, the iteration tracker, the convergence controller), loops
 * `state → step → commit` until the run is terminal or this process lost it, and always cleans up
 * outside the abortable scope with its own time limit.
 */
import { join } from 'node:path';
import type { AgentDriverRegistry } from '../agents/registry.js';
import { ConvergenceController } from '../convergence/controller.js';
import type { ConvergenceStrategy, StrategyName } from '../convergence/types.js';
import type { DeliveryManager } from '../delivery/manager.js';
import { AgentGateError, isAgentGateError, toAgentGateError } from '../errors.js';
import type { Verifier } from '../gates/verifier.js';
import type { ErrorPayload, UsageTotals } from '../observability/events.js';
import type { NonTerminalState, RunErrorInfo, RunEvent, RunResult, RunState } from '../orchestrator/state-machine.js';
import type { ResolvedTaskSpec } from '../schemas/resolve.js';
import { abortOutcome, leaseLost, runTimedOut } from '../util/abort.js';
import { killRunProcesses } from '../util/reap.js';
import { removeRunSandbox, sandboxWarnings } from '../util/sandbox.js';
import { effectiveSandbox } from '../util/sandbox-policy.js';
import { LeaseKeeper } from '../workspace/lease.js';
import type { PreparedSource, WorkspaceManager } from '../workspace/manager.js';
import { stripUrlCredentials } from '../workspace/paths.js';
import type { RunProgress } from './context.js';
import type { IterationTracker } from './iteration-tracker.js';
import type { PhaseOrchestrator } from './phase-orchestrator.js';
import type { RunActor, RunActorServices } from './run-actor.js';
import { pushWorkInProgress, workInProgressResult } from './steps/delivery.js';
import { settleSnapshot } from './steps/snapshot.js';
import { STEPS, type RunContext } from './steps/index.js';
import type { TimerClock } from '../util/clock.js';

/** Upper bound of the work-in-progress push before a failed or canceled run closes. */
const WIP_PUSH_LIMIT_MS = 30_000;

/** Runs `work` with a signal of its own that aborts after `limitMs` on `clock` (not the run's signal). */
async function withTimeLimit(clock: TimerClock, limitMs: number, work: (signal: AbortSignal) => Promise<void>): Promise<void> {
  const limit = new AbortController();
  const timer = clock.setTimeout(() => limit.abort(new AgentGateError('AG_ERR_DELIVERY_PUSH', `the work-in-progress push did not finish within ${limitMs} ms`)), limitMs);
  try {
    await work(limit.signal);
  } finally {
    clock.clearTimeout(timer);
  }
}

export interface RunExecutionServices extends RunActorServices {
  agents: AgentDriverRegistry;
  verifier: Verifier;
  workspaces: WorkspaceManager;
  orchestrator: PhaseOrchestrator;
  /** `$AGENTGATE_HOME`: run artifacts live below it. */
  home: string;
  /** The environment agents and gates start from (sandbox availability is probed with it). */
  baseEnv: Record<string, string | undefined>;
  /** Custom convergence strategies by name; they replace the built-in one of the same name. */
  strategies?: Partial<Record<StrategyName, (config: ResolvedTaskSpec['convergence']['config']) => ConvergenceStrategy>>;
  leaseOwner: string;
  leaseTtlMs: number;
  /** Time limit of the cleanup after the run (workspace removal, delivery finalize, lease release). */
  cleanupTimeoutMs: number;
}

export interface RunOutcome {
  runId: string;
  workOrderId: string;
  state: RunState;
  result: RunResult | null;
  iterations: number;
  branch: string;
  prUrl?: string;
  error: ErrorPayload | null;
  unverified: boolean;
  usage: UsageTotals;
  durationMs: number;
}

export function newProgress(): RunProgress {
  return {
    iteration: 1,
    sessionId: undefined,
    feedback: '',
    usage: { inputTokens: 0, outputTokens: 0, costUsd: 0 },
    history: [],
    unverified: false,
    lastReport: undefined,
    plan: undefined,
    planLoad: undefined,
    snapshot: undefined,
    delivery: {},
    ciFeedback: undefined,
    uncaptured: [],
    branchPublished: false,
    snapshotSettling: undefined,
  };
}

/**
 * Runs `actor`'s run to a terminal state (or until this process loses it). Never rejects. `workspaceSource`:
 * the spec's workspace already resolved by the caller (`StartOptions.workspaceSource`).
 */
export async function executeRun(
  actor: RunActor,
  spec: ResolvedTaskSpec,
  delivery: DeliveryManager,
  services: RunExecutionServices,
  progress: RunProgress,
  iterations: IterationTracker,
  workspaceSource?: PreparedSource,
): Promise<RunOutcome> {
  const { clock } = services;
  const startedAt = clock.now();
  const limits = spec.convergence.limits;
  const custom = services.strategies?.[spec.convergence.strategy];
  const convergence = new ConvergenceController({
    strategy: custom ? custom(spec.convergence.config) : spec.convergence.strategy,
    config: spec.convergence.config,
    limits,
    clock,
    startedAt,
  });
  const run: RunContext = {
    runId: actor.runId,
    workOrderId: actor.workOrderId,
    spec,
    branch: actor.run.branch ?? `${spec.delivery.branchPrefix}${actor.runId}`,
    artifactsDir: join(services.home, 'runs', actor.runId),
    startedAt,
    deadline: startedAt + limits.maxWallClockMs,
    signal: actor.signal,
    logger: actor.logger,
    emit: actor.emit,
    clock,
    progress,
    iterations,
    services: { orchestrator: services.orchestrator, workspaces: services.workspaces, verifier: services.verifier, convergence, delivery },
    workspaceSource,
    reusableWorkspace: poolableRun(spec, services.baseEnv),
    workspace: undefined,
    updateMeta: (patch) => actor.updateMeta(patch),
    failure: (error, phase) => ({ code: error.code, message: error.message, phase, iteration: progress.iteration }),
    abort: (reason) => actor.abort(reason),
  };
  // The event about to be committed: a closing one may call for a work-in-progress push (steps/delivery.ts).
  let committing: RunEvent | undefined;
  actor.onBeforeTerminal(async () => {
    // A publication still running (the run stopped between its snapshot and verification) ends first: the
    // closing event names the branch only if it reached the repository, and a work-in-progress push reads it.
    await settleSnapshot(run);
    await iterations.closeOpen();
    const wip = committing === undefined ? undefined : workInProgressResult(committing);
    if (wip !== undefined) await withTimeLimit(clock, Math.min(services.cleanupTimeoutMs, WIP_PUSH_LIMIT_MS), (signal) => pushWorkInProgress(run, wip, signal));
  });
  const wallClock = clock.setTimeout(() => actor.abort(runTimedOut(limits.maxWallClockMs)), limits.maxWallClockMs);
  let failure: unknown;
  const keeper = new LeaseKeeper({ store: services.repos.leases, key: actor.fence.leaseKey, owner: actor.fence.owner, runId: actor.runId, clock, ttlMs: services.leaseTtlMs });
  try {
    await keeper.acquire(actor.signal);
    keeper.lost.addEventListener('abort', () => actor.abort(leaseLost()), { once: true });
    await services.workOrders.runStarted(actor.workOrderId, actor.runId);
    actor.emit('run_started', {
      maxIterations: limits.maxIterations,
      strategy: spec.convergence.strategy,
      agent: spec.agent.driver,
      workspace: describeWorkspace(spec),
      branch: run.branch,
      warnings: sandboxWarnings(spec.sandbox, services.baseEnv),
    });
    actor.logger.info({ agent: spec.agent.driver, strategy: spec.convergence.strategy }, 'run started');
    for (let state = actor.nonTerminalState(); state !== undefined && actor.ownershipLost === undefined; state = actor.nonTerminalState()) {
      const outcome = await runStep(state, run);
      const { event, error } = actor.signal.aborted ? abortOutcome(actor.abortReason(), progress.iteration) : outcome;
      committing = event;
      await actor.commit(event, error);
      progress.iteration = actor.run.iteration;
    }
  } catch (error) {
    failure = error;
    await closeAfterThrow(actor, error, progress.iteration);
  } finally {
    clock.clearTimeout(wallClock);
    await cleanUp(actor, run, keeper, services, failure);
  }
  return finish(actor, run, services, startedAt);
}

async function runStep(state: NonTerminalState, run: RunContext): Promise<{ event: RunEvent; error?: RunErrorInfo }> {
  try {
    return await STEPS[state](run);
  } catch (error) {
    // The one boundary where an unexpected throw of a step becomes a classified failure.
    return { event: 'system_error', error: run.failure(toAgentGateError(error), state) };
  }
}

/** Something outside the steps threw (store down, lease refused): the run must still end terminal. */
async function closeAfterThrow(actor: RunActor, thrown: unknown, iteration: number): Promise<void> {
  const classified = toAgentGateError(thrown);
  actor.logger.error({ err: classified, code: classified.code }, 'run failed unexpectedly');
  if (actor.nonTerminalState() === undefined || actor.ownershipLost !== undefined) return;
  const { event, error } = actor.signal.aborted
    ? abortOutcome(actor.abortReason(), iteration)
    : { event: 'system_error' as const, error: { code: classified.code, message: classified.message, iteration } };
  try {
    await actor.commit(event, error);
  } catch (failure) {
    const again = toAgentGateError(failure, 'AG_ERR_STORE_WRITE');
    actor.logger.error({ err: again, code: again.code }, 'could not close the run; reconciliation will');
  }
}

/**
 * Cleanup outside the run's scope (it must run after a cancel) but with its own time limit: delivery
 * finalize, workspace release, then — if closing the run failed (a full disk, a store hiccup) — one more
 * closing attempt while the run lease is still held (the workspace release may have freed the space the
 * store needed), and last the run lease.
 */
async function cleanUp(actor: RunActor, run: RunContext, keeper: LeaseKeeper, services: RunExecutionServices, failure: unknown): Promise<void> {
  const { clock } = services;
  const limit = new AbortController();
  const timer = clock.setTimeout(
    () => limit.abort(new AgentGateError('AG_ERR_WORKSPACE_CLEANUP', `cleanup did not finish within ${services.cleanupTimeoutMs} ms`)),
    services.cleanupTimeoutMs,
  );
  const attempt = async (what: string, work: () => Promise<unknown>): Promise<void> => {
    try {
      await bounded(work(), limit.signal);
    } catch (error) {
      const classified = toAgentGateError(error, 'AG_ERR_WORKSPACE_CLEANUP');
      actor.logger.error({ err: classified, code: classified.code, what }, 'run cleanup step failed');
    }
  };
  try {
    // A snapshot's publication still running (a run that lost its lease before closing; every other way
    // out settles it before the terminal commit): it ends before delivery and the workspace release touch
    // the branch and the workspace's objects. Its failure is recorded on the iteration, not thrown.
    await attempt('snapshot publication', () => settleSnapshot(run));
    await actor.flush();
    const workspace = run.workspace;
    const target = run.progress.delivery.target;
    if (workspace !== undefined && target !== undefined) {
      const delivery = run.services.delivery;
      const result = actor.run.result ?? 'failed_error';
      const change = run.progress.delivery.change;
      const delivered = run.progress.delivery.delivered;
      await attempt('delivery finalize', () =>
        delivery.finalize(
          { runId: run.runId, workOrderId: run.workOrderId, spec: run.spec, workspace, branch: workspace.branch, signal: limit.signal, clock, logger: run.logger, emit: run.emit, target },
          { result, ...(change !== undefined && { change }), ...(delivered !== undefined && { lastIteration: delivered }) },
        ),
      );
    }
    // Without a sandbox, a `setsid` or double-forked process of the run outlives its process group;
    // its run tag still finds it (util/run-scope.ts). Inside bubblewrap the PID namespace already ended.
    await attempt('sweep of the run processes', async () => {
      const survivors = await killRunProcesses(run.runId);
      if (survivors.length > 0) throw new AgentGateError('AG_ERR_INTERNAL', `processes of the run survived SIGKILL: ${survivors.join(', ')}`);
    });
    // Only a sandboxed run's worktree is reused: nothing of the run survives its PID namespace.
    if (workspace !== undefined) {
      await attempt('workspace release', () => services.workspaces.release(workspace, { signal: limit.signal, reusable: sandboxedRun(run.spec, services.baseEnv) }));
    }
    if (actor.nonTerminalState() !== undefined && actor.ownershipLost === undefined) {
      await closeAfterThrow(actor, failure ?? new AgentGateError('AG_ERR_INTERNAL', `run left in state ${actor.state}`), run.progress.iteration);
    }
    await attempt('sandbox removal', () => removeRunSandbox(run.artifactsDir));
    await attempt('run lease release', () => keeper.release());
  } finally {
    clock.clearTimeout(timer);
  }
}

function bounded<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(error);
      },
    );
  });
}

async function finish(actor: RunActor, run: RunContext, services: RunExecutionServices, startedAt: number): Promise<RunOutcome> {
  const stored = actor.run;
  const lost = actor.ownershipLost;
  if (lost === undefined && actor.nonTerminalState() === undefined) {
    try {
      await services.workOrders.runFinished(actor.workOrderId, actor.runId, stored.state);
    } catch (error) {
      const classified = toAgentGateError(error, 'AG_ERR_STORE_WRITE');
      actor.logger.error({ err: classified, code: classified.code }, 'could not record the end of the run on its work order');
    }
  }
  const durationMs = services.clock.now() - startedAt;
  const error: ErrorPayload | null = lost !== undefined ? { code: 'AG_ERR_LEASE_LOST', message: lost.message } : stored.error;
  actor.logger.info({ state: stored.state, result: stored.result, iterations: run.iterations.count, durationMs }, 'run finished');
  const prUrl = run.progress.delivery.change?.url;
  return {
    runId: actor.runId,
    workOrderId: actor.workOrderId,
    state: stored.state,
    result: stored.result,
    iterations: run.iterations.count,
    // Empty when the run has no branch: no snapshot commit ever reached the repository.
    branch: run.progress.branchPublished ? run.branch : '',
    ...(prUrl !== undefined && { prUrl }),
    error,
    unverified: run.progress.unverified,
    usage: { ...run.progress.usage },
    durationMs,
  };
}

function describeWorkspace(spec: ResolvedTaskSpec): string {
  const ws = spec.workspace;
  switch (ws.source) {
    case 'local':
      return ws.path;
    case 'git':
      return stripUrlCredentials(ws.url);
    case 'github':
      return `github:${ws.repo}`;
    case 'gitlab':
      return `gitlab:${ws.project}`;
  }
}

/**
 * Whether the run's worktree may be made with the worktree pool: only a sandboxed run's can return to it.
 * Asked when the workspace is made, so an unsandboxed run pays nothing for the pool; the release asks again
 * ({@link sandboxedRun}) and a worktree is pooled only when both say yes, so an error here only means no:
 * the same question at the release, inside its reported `attempt`, raises it again and reports it.
 */
function poolableRun(spec: ResolvedTaskSpec, env: Record<string, string | undefined>): boolean {
  try {
    return sandboxedRun(spec, env);
  } catch {
    return false;
  }
}

/** Whether the run's processes ran in bubblewrap (the policy resolved on this host, as at admission). */
function sandboxedRun(spec: ResolvedTaskSpec, env: Record<string, string | undefined>): boolean {
  try {
    return effectiveSandbox(spec.sandbox, env).kind !== 'none';
  } catch (error) {
    // A required sandbox that is no longer available here: do not reuse what the run left.
    if (isAgentGateError(error) && error.code === 'AG_ERR_CONFIG_INVALID') return false;
    throw error;
  }
}
