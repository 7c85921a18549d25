/**
 * The step table's types. A step is the work done in one non-terminal state; it returns the event that
 * leaves that state. `StepOutcome<S>` only admits events legal from `S` (`TransitionMap[S]` of the
 * state machine), so a build step that returned `verify_passed` would not compile.
 */
import type { Logger } from 'pino';
import type { ConvergenceController } from '../../convergence/controller.js';
import { AgentGateError } from '../../errors.js';
import type { Verifier } from '../../gates/verifier.js';
import type { EmitFn } from '../../observability/events.js';
import type { NonTerminalState, RunErrorInfo, TransitionMap } from '../../orchestrator/state-machine.js';
import type { ResolvedTaskSpec } from '../../schemas/resolve.js';
import type { RunMeta } from '../../store/types.js';
import type { RunAbort } from '../../util/abort.js';
import type { TimerClock } from '../../util/clock.js';
import type { PreparedSource, WorkspaceManager } from '../../workspace/manager.js';
import type { Workspace } from '../../workspace/types.js';
import type { DeliveryStepServices } from './delivery.js';
import type { ExecutionContext, RunProgress } from '../context.js';
import type { IterationTracker } from '../iteration-tracker.js';
import type { PhaseOrchestrator } from '../phase-orchestrator.js';

export interface StepOutcome<S extends NonTerminalState> {
  readonly event: TransitionMap[S];
  /** Stored as the run's error (failed steps). */
  readonly error?: RunErrorInfo;
}

export interface StepServices extends DeliveryStepServices {
  readonly orchestrator: PhaseOrchestrator;
  readonly workspaces: WorkspaceManager;
  readonly verifier: Verifier;
  readonly convergence: ConvergenceController;
}

/** What a step sees of its run. */
export interface RunContext {
  readonly runId: string;
  readonly workOrderId: string;
  readonly spec: ResolvedTaskSpec;
  readonly branch: string;
  readonly artifactsDir: string;
  readonly startedAt: number;
  readonly deadline: number;
  readonly signal: AbortSignal;
  readonly logger: Logger;
  readonly emit: EmitFn;
  readonly clock: TimerClock;
  readonly progress: RunProgress;
  readonly iterations: IterationTracker;
  readonly services: StepServices;
  /** The spec's workspace as the caller already resolved it (the workspace step resolves it otherwise). */
  readonly workspaceSource: PreparedSource | undefined;
  /** Whether the run's worktree may return to the worktree pool (a sandboxed run; `AcquireWorkspaceOptions.reusable`). */
  readonly reusableWorkspace: boolean;
  /** Set by the workspace step. */
  workspace: Workspace | undefined;
  /** Merges into the run's stored metadata (a fenced write). */
  updateMeta(patch: Partial<RunMeta>): Promise<void>;
  /** The stored error of a failed step: classified, message redacted, phase and iteration named. */
  failure(error: AgentGateError, phase: string): RunErrorInfo;
  /** Aborts the run's scope with a typed reason. */
  abort(reason: RunAbort): void;
}

export type Step<S extends NonTerminalState> = (run: RunContext) => Promise<StepOutcome<S>>;

/** One step per non-terminal state: the phase order of a run. */
export type StepTable = { readonly [S in NonTerminalState]: Step<S> };

/** The phases' view of the run (requires the workspace). */
export function phaseContext(run: RunContext): ExecutionContext {
  const workspace = run.workspace;
  if (workspace === undefined) throw new AgentGateError('AG_ERR_INTERNAL', `run ${run.runId} reached a phase without a workspace`);
  return {
    runId: run.runId,
    workOrderId: run.workOrderId,
    spec: run.spec,
    workspace,
    artifactsDir: run.artifactsDir,
    signal: run.signal,
    startedAt: run.startedAt,
    deadline: run.deadline,
    emit: run.emit,
    logger: run.logger,
    progress: run.progress,
  };
}
