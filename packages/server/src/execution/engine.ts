/**
 * ExecutionEngine: the one execution path (SPEC 2–4). It takes a ResolvedTaskSpec through the state
 * machine to a terminal state: acquires the workspace, loops build → snapshot → verify → feedback via
 * the PhaseOrchestrator, consults the ConvergenceController after a failed verification, and always
 * releases the workspace. Every transition is persisted through the store (run row + its
 * `run_state_changed` event in one transaction) before it is published.
 *
 * The engine is the only place that changes a run's state. Cancel and the wall clock abort one
 * AbortSignal per run whose reason says which of the two happened.
 */
import { randomUUID } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { AgentGateError, toAgentGateError } from '../errors.js';
import { ConvergenceController } from '../convergence/controller.js';
import type { ConvergenceStrategy, StrategyName } from '../convergence/types.js';
import { isTerminalState, createRun, type RunEvent, type RunResult, type RunState } from '../orchestrator/state-machine.js';
import type { ErrorPayload, UsageTotals } from '../observability/events.js';
import type { AgentSummary } from '../agents/types.js';
import type { ProgressEmitter } from '../observability/progress-emitter.js';
import type { ResolvedTaskSpec } from '../schemas/resolve.js';
import type { StoredRun, WorkOrderSource } from '../store/types.js';
import type { WorkspaceManager } from '../workspace/manager.js';
import type { Workspace } from '../workspace/types.js';
import { PhaseOrchestrator, type PhaseHandlers } from './phase-orchestrator.js';
import { agentOptionsOf } from './agent-options.js';
import type { AbortReason, ExecutionContext, ExecutionServices, RunProgress } from './context.js';
import { redact, secretValues } from '../util/secrets.js';
import { DEFAULT_LEASE_TTL_MS, LeaseKeeper, defaultLeaseOwner } from '../workspace/lease.js';
import { stripUrlCredentials } from '../workspace/paths.js';
import { runLeaseKey } from './reconcile.js';

export interface EngineServices extends ExecutionServices {
  workspaces: WorkspaceManager;
  emitter: ProgressEmitter;
  /** Custom convergence strategies by name; they replace the built-in one of the same name. */
  strategies?: Partial<Record<StrategyName, (config: ResolvedTaskSpec['convergence']['config']) => ConvergenceStrategy>>;
}

export interface StartOptions {
  /** Attach the run to an existing work order; otherwise one is created for it. */
  workOrderId?: string;
  runId?: string;
  source?: WorkOrderSource;
  /** The request as the client sent it (stored with a new work order). */
  request?: object;
  /** Aborting it cancels the run (reason `canceled`). */
  signal?: AbortSignal;
}

export interface RunOutcome {
  runId: string;
  workOrderId: string;
  state: RunState;
  result: RunResult | null;
  iterations: number;
  branch: string;
  error: ErrorPayload | null;
  unverified: boolean;
  usage: UsageTotals;
  durationMs: number;
}

export interface StartedRun {
  runId: string;
  workOrderId: string;
  done: Promise<RunOutcome>;
}

interface ActiveRun {
  controller: AbortController;
}

/** Aborting with a reason the engine understands. */
function abortWith(controller: AbortController, reason: AbortReason): void {
  if (!controller.signal.aborted) controller.abort(reason);
}

function abortReasonOf(signal: AbortSignal): AbortReason {
  const reason: unknown = signal.reason;
  if (typeof reason === 'object' && reason !== null && 'kind' in reason && (reason.kind === 'timeout' || reason.kind === 'canceled' || reason.kind === 'lease_lost')) {
    return reason as AbortReason;
  }
  return { kind: 'canceled', reason: 'aborted' };
}

export class ExecutionEngine {
  private readonly active = new Map<string, ActiveRun>();
  private readonly orchestrator: PhaseOrchestrator;

  /** Owner id of this engine's run leases (one per process instance). */
  private readonly owner = defaultLeaseOwner();
  /** Secret values of the base environment, redacted from every stored error message. */
  private readonly secrets: string[];

  constructor(
    private readonly services: EngineServices,
    handlers?: PhaseHandlers,
  ) {
    this.orchestrator = new PhaseOrchestrator(services, handlers);
    this.secrets = secretValues(services.baseEnv);
  }

  /** Runs a task to a terminal state. Never rejects for run failures: they are in the outcome. */
  async run(spec: ResolvedTaskSpec, options: StartOptions = {}): Promise<RunOutcome> {
    return this.start(spec, options).done;
  }

  /** Creates the run records synchronously and starts executing; the ids are known at once. */
  start(spec: ResolvedTaskSpec, options: StartOptions = {}): StartedRun {
    const { store, clock } = this.services;
    // Bad input is rejected before anything is stored (unknown driver, missing agent command).
    this.services.agents.validate(spec.agent.driver, agentOptionsOf(spec.agent));
    const runId = options.runId ?? randomUUID();
    const workOrderId = options.workOrderId ?? randomUUID();
    const createdAt = new Date(clock.now()).toISOString();
    store.runInTransaction(() => {
      if (store.getWorkOrder(workOrderId) === null) {
        store.createWorkOrder({ id: workOrderId, source: options.source ?? spec.source, spec: storableSpec(spec), request: options.request ?? null, createdAt });
        store.appendWorkOrderEvent(workOrderId, 'work_order_created', { status: 'queued' }, createdAt);
      }
      store.insertRun(createRun({ id: runId, workOrderId, maxIterations: spec.convergence.limits.maxIterations, createdAt }), {
        branch: `${spec.delivery.branchPrefix}${runId}`,
      });
      // Leased in the same transaction: no moment exists in which another process could take the new
      // run for an orphan (see execution/reconcile.ts).
      store.acquireLease({ key: runLeaseKey(runId), owner: this.owner, runId, ttlMs: DEFAULT_LEASE_TTL_MS, now: new Date(clock.now()) });
    });
    const controller = new AbortController();
    this.active.set(runId, { controller });
    const external = options.signal;
    const onExternalAbort = (): void => abortWith(controller, { kind: 'canceled', reason: 'canceled by caller' });
    if (external?.aborted) onExternalAbort();
    external?.addEventListener('abort', onExternalAbort, { once: true });
    const done = this.execute(runId, workOrderId, spec, controller).finally(() => {
      external?.removeEventListener('abort', onExternalAbort);
      this.active.delete(runId);
    });
    return { runId, workOrderId, done };
  }

  /** Requests cancellation; the run reaches `canceled` once its current process group is killed. */
  cancel(runId: string, reason = 'canceled by user'): boolean {
    const active = this.active.get(runId);
    if (!active) return false;
    abortWith(active.controller, { kind: 'canceled', reason });
    return true;
  }

  status(runId: string): StoredRun | null {
    return this.services.store.getRun(runId);
  }

  activeCount(): number {
    return this.active.size;
  }

  private transition(runId: string, event: RunEvent, error?: ErrorPayload): StoredRun {
    const { store, emitter, clock } = this.services;
    const outcome = store.transition(runId, event, {
      at: new Date(clock.now()).toISOString(),
      ...(error !== undefined && { error }),
    });
    emitter.publish(outcome.event);
    return outcome.run;
  }

  private async execute(runId: string, workOrderId: string, spec: ResolvedTaskSpec, controller: AbortController): Promise<RunOutcome> {
    const { store, emitter, clock, logger: rootLogger } = this.services;
    const logger = rootLogger.child({ runId, workOrderId });
    const signal = controller.signal;
    const startedAt = clock.now();
    const limits = spec.convergence.limits;
    const deadline = startedAt + limits.maxWallClockMs;
    const emit = emitter.forRun(runId);
    const branch = `${spec.delivery.branchPrefix}${runId}`;
    const progress: RunProgress = {
      iteration: 1,
      sessionId: undefined,
      feedback: '',
      usage: { inputTokens: 0, outputTokens: 0, costUsd: 0 },
      history: [],
      unverified: false,
      lastReport: undefined,
      plan: undefined,
    };
    // The run's own lease is its owner's heartbeat: reconciliation leaves a run alone while it is live.
    const runLease = new LeaseKeeper({ store, key: runLeaseKey(runId), owner: this.owner, runId, clock });
    let wallClock: ReturnType<typeof setTimeout> | undefined;
    const workspace: { current?: Workspace } = {};

    // Everything, including the first writes, is inside the try: whatever throws, the run still ends
    // terminal, the timer is cleared and the workspace released.
    try {
      wallClock = setTimeout(() => abortWith(controller, { kind: 'timeout', limitMs: limits.maxWallClockMs }), limits.maxWallClockMs);
      await runLease.acquire(signal);
      runLease.lost.addEventListener('abort', () => abortWith(controller, { kind: 'lease_lost' }), { once: true });
      store.updateWorkOrderStatus(workOrderId, 'running');
      store.appendWorkOrderEvent(workOrderId, 'work_order_updated', { status: 'running', runId });
      emit('run_started', {
        maxIterations: limits.maxIterations,
        strategy: spec.convergence.strategy,
        agent: spec.agent.driver,
        workspace: describeWorkspace(spec),
        branch,
        warnings: [],
      });
      logger.info({ agent: spec.agent.driver, strategy: spec.convergence.strategy }, 'run started');

      await this.acquireWorkspace(runId, spec, signal, emit, workspace);
      const acquired = workspace.current;
      if (acquired !== undefined) {
        store.updateRunMeta(runId, { workspacePath: acquired.path, warnings: acquired.warnings });
        const lost = this.services.workspaces.leaseLost(runId);
        if (lost?.aborted) abortWith(controller, { kind: 'lease_lost' });
        lost?.addEventListener('abort', () => abortWith(controller, { kind: 'lease_lost' }), { once: true });
      }
      if (acquired === undefined || signal.aborted) {
        this.finishAborted(runId, signal);
      } else {
        this.transition(runId, 'workspace_acquired');
        const artifactsDir = join(this.services.home, 'runs', runId);
        await mkdir(artifactsDir, { recursive: true });
        const ctx: ExecutionContext = { runId, workOrderId, spec, workspace: acquired, artifactsDir, signal, startedAt, deadline, emit, logger, progress };
        if (await this.preflight(ctx)) {
          this.transition(runId, 'build_started');
          await this.loop(ctx);
        }
      }
    } catch (error) {
      const classified = toAgentGateError(error);
      logger.error({ err: classified, code: classified.code }, 'run failed unexpectedly');
      if (signal.aborted) this.closeIfOpen(() => this.finishAborted(runId, signal), logger);
      else this.closeIfOpen(() => this.failIfOpen(runId, classified, progress.iteration), logger);
    } finally {
      clearTimeout(wallClock);
      if (workspace.current !== undefined) await this.releaseWorkspace(workspace.current, logger);
      await runLease.release().catch((error: unknown) => logger.error({ err: toAgentGateError(error, 'AG_ERR_STORE_WRITE') }, 'run lease release failed'));
    }
    return this.complete(runId, workOrderId, branch, startedAt, progress);
  }

  /** The error as stored and emitted: its message redacted before it reaches the store. */
  private errorPayload(error: AgentGateError, phase: string | undefined, iteration: number): ErrorPayload {
    return { code: error.code, message: redact(error.message, this.secrets), ...(phase !== undefined && { phase }), iteration };
  }

  /** Runs a closing transition; when even that fails (the store is down) it is logged, not thrown. */
  private closeIfOpen(close: () => void, logger: ExecutionContext['logger']): void {
    try {
      close();
    } catch (error) {
      const classified = toAgentGateError(error, 'AG_ERR_STORE_WRITE');
      logger.error({ err: classified, code: classified.code }, 'could not close the run; reconciliation will');
    }
  }

  /** The iteration loop; returns when the run is terminal. */
  private async loop(ctx: ExecutionContext): Promise<void> {
    const { spec } = ctx;
    const custom = this.services.strategies?.[spec.convergence.strategy];
    const controller = new ConvergenceController({
      strategy: custom ? custom(spec.convergence.config) : spec.convergence.strategy,
      config: spec.convergence.config,
      limits: spec.convergence.limits,
      clock: this.services.clock,
      startedAt: ctx.startedAt,
    });
    while (await this.iterate(ctx, controller)) ctx.progress.iteration += 1;
  }

  /**
   * One build → snapshot → verify (→ feedback) pass. Returns true when the run goes on to another
   * iteration; otherwise the run is terminal when it returns.
   */
  private async iterate(ctx: ExecutionContext, controller: ConvergenceController): Promise<boolean> {
    const { runId, progress, spec, signal, emit } = ctx;
    const iteration = progress.iteration;
    const iterationStarted = this.services.clock.now();
    const record: Record<string, unknown> = {};
    let ended = false;
    emit('iteration_started', { iteration });
    const build = await this.orchestrator.run('build', ctx);
    const agentSummary = build.ok ? build.value.agent : asAgentSummary(build.record?.['agent']);
    /** Records the iteration and emits iteration_completed exactly once, however the iteration ends. */
    const save = (passed = false): void => {
      this.services.store.saveIteration(runId, iteration, record, new Date(iterationStarted).toISOString(), new Date(this.services.clock.now()).toISOString());
      if (ended) return;
      ended = true;
      const usage = agentSummary?.usage;
      emit('iteration_completed', {
        iteration,
        passed,
        durationMs: this.services.clock.now() - iterationStarted,
        ...(agentSummary !== undefined && {
          agent: { inputTokens: usage?.inputTokens ?? 0, outputTokens: usage?.outputTokens ?? 0, costUsd: usage?.costUsd ?? 0, turns: agentSummary.turns ?? 0 },
        }),
      });
    };
    /** Ends the run after a failed step: canceled/timeout when the signal fired, else `event`. */
    const fail = (failure: { error: AgentGateError; cancelled?: boolean }, event: RunEvent, phase: string): false => {
      record['error'] = failure.error.toJSON();
      save();
      if (failure.cancelled === true || signal.aborted) this.finishAborted(runId, signal);
      else this.transition(runId, event, this.errorPayload(failure.error, phase, iteration));
      return false;
    };
    /** Between steps: a fired signal ends the run before the next transition. */
    const aborted = (): boolean => {
      if (!signal.aborted) return false;
      save();
      this.finishAborted(runId, signal);
      return true;
    };

    // A failed build's usage was paid for too: it counts against the budgets.
    this.addUsage(ctx, agentSummary?.usage);
    record['agent'] = agentSummary;
    if (!build.ok) return fail(build, 'build_failed', 'build');
    progress.sessionId = build.value.agent.sessionId ?? progress.sessionId;
    if (aborted()) return false;
    this.transition(runId, 'build_completed');

    const snapshot = await this.orchestrator.run('snapshot', ctx);
    if (!snapshot.ok) return fail(snapshot, 'snapshot_failed', 'snapshot');
    record['snapshot'] = snapshot.value.snapshot;
    if (aborted()) return false;
    this.transition(runId, 'snapshot_completed');

    const verify = await this.orchestrator.run('verify', ctx);
    if (!verify.ok) return fail(verify, 'system_error', 'verify');
    const report = verify.value.report;
    record['verification'] = report;
    progress.lastReport = report;
    if (report.unverified && !progress.unverified) {
      progress.unverified = true;
      this.services.store.updateRunMeta(runId, { unverified: true });
    }
    progress.history.push({
      iteration,
      passRatio: report.passRatio,
      snapshotSha: snapshot.value.snapshot.sha,
      treeSha: snapshot.value.snapshot.treeSha,
      agentOutput: build.value.agent.output,
    });
    save(report.passed);
    if (aborted()) return false;
    if (report.passed) {
      this.transition(runId, 'verify_passed');
      return false;
    }

    const decided = controller.decide({ iteration, history: progress.history, usage: progress.usage });
    if (!decided.ok) return fail(decided, 'system_error', 'convergence');
    const decision = decided.decision;
    record['decision'] = decision;
    save();
    emit('convergence_decision', { iteration, strategy: spec.convergence.strategy, decision: decision.action, reason: decision.reason });
    if (decision.action === 'stop') {
      if (decision.limit === 'wall_clock') {
        this.transition(runId, 'timeout', { code: 'AG_ERR_RUN_TIMEOUT', message: decision.reason, iteration });
      } else {
        const code = decision.limit === 'tokens' || decision.limit === 'cost' ? 'AG_ERR_RUN_BUDGET_EXCEEDED' : 'AG_ERR_VERIFY_FAILED';
        this.transition(runId, 'verify_failed_terminal', { code, message: `verification failed: ${decision.reason}`, phase: 'verify', iteration });
      }
      return false;
    }
    this.transition(runId, 'verify_failed_retryable');

    const feedback = await this.orchestrator.run('feedback', ctx);
    if (!feedback.ok) return fail(feedback, 'system_error', 'feedback');
    record['feedback'] = { text: feedback.value.text, truncated: feedback.value.truncated };
    save();
    progress.feedback = feedback.value.text;
    if (aborted()) return false;
    this.transition(runId, 'feedback_generated');
    return true;
  }

  /**
   * Loads the gate plan before the agent runs, so a broken verify.yaml fails the run at once as a
   * configuration error instead of after a paid agent iteration. Returns false when the run ended.
   */
  private async preflight(ctx: ExecutionContext): Promise<boolean> {
    try {
      ctx.progress.plan = await this.services.verifier.loadPlan({
        worktreePath: ctx.workspace.path,
        baseSha: ctx.workspace.baseSha,
        signal: ctx.signal,
        clock: this.services.clock,
        ...(ctx.spec.verify !== undefined && { inline: ctx.spec.verify }),
      });
      return true;
    } catch (error) {
      if (ctx.signal.aborted) {
        this.finishAborted(ctx.runId, ctx.signal);
      } else {
        this.transition(ctx.runId, 'system_error', this.errorPayload(toAgentGateError(error, 'AG_ERR_PHASE_VERIFY'), 'verify', 1));
      }
      return false;
    }
  }

  /** Acquires the workspace into `into.current` first, so it is released even if what follows throws. */
  private async acquireWorkspace(
    runId: string,
    spec: ResolvedTaskSpec,
    signal: AbortSignal,
    emit: ExecutionContext['emit'],
    into: { current?: Workspace },
  ): Promise<void> {
    const started = this.services.clock.now();
    emit('phase_started', { iteration: 1, phase: 'workspace' });
    try {
      into.current = await this.services.workspaces.acquire(spec.workspace, { runId, branchPrefix: spec.delivery.branchPrefix, signal });
    } catch (error) {
      const payload = this.errorPayload(toAgentGateError(error, 'AG_ERR_WORKSPACE_SETUP'), 'workspace', 1);
      emit('phase_completed', { iteration: 1, phase: 'workspace', ok: false, durationMs: this.services.clock.now() - started, error: payload });
      if (!signal.aborted) this.transition(runId, 'system_error', payload);
      return;
    }
    emit('phase_completed', { iteration: 1, phase: 'workspace', ok: true, durationMs: this.services.clock.now() - started });
  }

  private async releaseWorkspace(workspace: Workspace, logger: ExecutionContext['logger']): Promise<void> {
    try {
      // Cleanup must finish even when the run was canceled: it gets its own, unaborted signal.
      await this.services.workspaces.release(workspace, { signal: new AbortController().signal });
    } catch (error) {
      const classified = toAgentGateError(error, 'AG_ERR_WORKSPACE_CLEANUP');
      logger.error({ err: classified, code: classified.code, path: workspace.path }, 'workspace cleanup failed');
    }
  }

  private addUsage(ctx: ExecutionContext, usage: { inputTokens: number; outputTokens: number; costUsd: number } | undefined): void {
    if (!usage) return;
    const total = ctx.progress.usage;
    total.inputTokens += usage.inputTokens;
    total.outputTokens += usage.outputTokens;
    total.costUsd += usage.costUsd;
    this.services.store.updateRunMeta(ctx.runId, { usage: { ...total } });
  }

  /** Moves an aborted run to `canceled` or `failed_timeout`, depending on why its signal fired. */
  private finishAborted(runId: string, signal: AbortSignal): void {
    const run = this.services.store.getRun(runId);
    if (run === null || isTerminalState(run.state)) return;
    const reason = abortReasonOf(signal);
    if (reason.kind === 'timeout') {
      this.transition(runId, 'timeout', { code: 'AG_ERR_RUN_TIMEOUT', message: `run exceeded its wall clock of ${Math.round(reason.limitMs / 1000)} s`, iteration: run.iteration });
    } else if (reason.kind === 'lease_lost') {
      this.transition(runId, 'system_error', { code: 'AG_ERR_LEASE_LOST', message: 'the run lost its workspace lease (expired or taken over)', iteration: run.iteration });
    } else {
      this.transition(runId, 'user_canceled', { code: 'AG_ERR_RUN_CANCELED', message: reason.reason, iteration: run.iteration });
    }
  }

  private failIfOpen(runId: string, error: AgentGateError, iteration: number): void {
    const run = this.services.store.getRun(runId);
    if (run === null || isTerminalState(run.state)) return;
    this.transition(runId, 'system_error', this.errorPayload(error, undefined, iteration));
  }

  private complete(runId: string, workOrderId: string, branch: string, startedAt: number, progress: RunProgress): RunOutcome {
    const { store, emitter } = this.services;
    let run = store.getRun(runId);
    if (run === null) throw new AgentGateError('AG_ERR_RUN_NOT_FOUND', `run ${runId} disappeared from the store`);
    if (!isTerminalState(run.state)) {
      // Defensive: the loop always ends in a terminal state; if it did not, the run must not stay open.
      run = this.transition(runId, 'system_error', { code: 'AG_ERR_INTERNAL', message: `run left in state ${run.state}` });
    }
    const durationMs = this.services.clock.now() - startedAt;
    const iterations = store.listIterations(runId).length;
    const usage = { ...progress.usage };
    const error = run.error;
    if (run.state === 'succeeded') {
      emitter.emit(runId, 'run_completed', { result: 'passed', iterations, branch, durationMs, unverified: progress.unverified, usage });
    } else if (run.state === 'canceled') {
      emitter.emit(runId, 'run_canceled', { iterations, branch, durationMs, reason: error?.message ?? 'canceled' });
    } else {
      emitter.emit(runId, 'run_failed', { result: run.result ?? 'failed_error', iterations, branch, durationMs, error, usage });
    }
    const status = run.state === 'succeeded' ? 'succeeded' : run.state === 'canceled' ? 'canceled' : 'failed';
    store.updateWorkOrderStatus(workOrderId, status);
    store.appendWorkOrderEvent(workOrderId, 'work_order_updated', { status, runId });
    this.services.logger.info({ runId, state: run.state, result: run.result, iterations, durationMs }, 'run finished');
    return { runId, workOrderId, state: run.state, result: run.result, iterations, branch, error, unverified: progress.unverified, usage, durationMs };
  }
}

/**
 * The spec as persisted: values of `agent.env` (typically model credentials) are not written to the
 * store; a run that needs them again gets them from its submitter.
 */
function storableSpec(spec: ResolvedTaskSpec): ResolvedTaskSpec {
  const env = Object.fromEntries(Object.keys(spec.agent.env).map((key) => [key, '[REDACTED]']));
  return { ...spec, agent: { ...spec.agent, env } };
}

function asAgentSummary(value: unknown): AgentSummary | undefined {
  return typeof value === 'object' && value !== null && 'durationMs' in value && 'output' in value ? (value as AgentSummary) : undefined;
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
