/**
 * Typed contexts of the execution path (SPEC 2). Phases receive a narrow {@link PhaseContext}: the
 * run's identity, workspace, signal, logger, emit and the services they need — never the engine and
 * never a list of callbacks.
 */
import type { Logger } from 'pino';
import type { AgentDriverRegistry } from '../agents/registry.js';
import type { AgentGateError } from '../errors.js';
import type { Verifier } from '../gates/verifier.js';
import type { EmitFn, PhaseName, UsageTotals } from '../observability/events.js';
import type { ResolvedTaskSpec } from '../schemas/resolve.js';
import type { Clock, TimerClock } from '../util/clock.js';
import type { Snapshotter } from '../workspace/snapshotter.js';
import type { Workspace } from '../workspace/types.js';
import type { IterationObservation } from '../convergence/types.js';
import type { AgentResult, AgentSummary } from '../agents/types.js';
import type { SnapshotResult, TreeChange } from '../workspace/types.js';
import type { VerificationReport } from '../gates/types.js';
import type { GatePlan } from '../gates/loader.js';
import type { DeliveryProgress } from './steps/delivery.js';

/** Long-lived services shared by all runs of one engine. */
export interface ExecutionServices {
  agents: AgentDriverRegistry;
  snapshotter: Snapshotter;
  verifier: Verifier;
  clock: TimerClock;
  logger: Logger;
  /** `$AGENTGATE_HOME`: worktrees, cached clones and run artifacts live below it. */
  home: string;
  /** The environment agents and gates start from (before secrets are removed). */
  baseEnv: Record<string, string | undefined>;
}

/** Mutable per-run state carried from one iteration to the next; owned by the engine. */
export interface RunProgress {
  iteration: number;
  sessionId: string | undefined;
  feedback: string;
  usage: UsageTotals;
  history: IterationObservation[];
  unverified: boolean;
  /** The gate plan, loaded once from the base commit before the first build. */
  plan: GatePlan | undefined;
  /** The plan as read alongside the worktree creation, until the `leased` step judges it. */
  planLoad: { ok: true; plan: GatePlan } | { ok: false; error: AgentGateError } | undefined;
  /** The last verification report (input of the feedback phase). */
  lastReport: VerificationReport | undefined;
  /** Delivery target, change request and last delivered snapshot. */
  delivery: DeliveryProgress;
  /** Paths the last snapshot could not capture (nested repositories, submodule paths). */
  uncaptured: string[];
  /**
   * The snapshot of the iteration being verified: its commit, and its changes from the base when the
   * snapshot phase reported them (tamper detection then does not diff the two trees again).
   */
  snapshot: { iteration: number; sha: string; changesFromBase?: TreeChange[] } | undefined;
  /** Whether a snapshot commit reached the repository, creating the run branch there. */
  branchPublished: boolean;
  /**
   * The last snapshot's patch file and branch publication, still running while its iteration verifies
   * (`SnapshotRequest.background`): the verify step awaits it before the iteration is recorded, and the
   * run's cleanup before the workspace goes. Resolves to the error that failed them; never rejects.
   */
  snapshotSettling: Promise<AgentGateError | undefined> | undefined;
  /** Feedback from a failed CI run, consumed by the feedback step. */
  ciFeedback: string | undefined;
}

/** Everything one run needs; built by the engine when the workspace is acquired. */
export interface ExecutionContext {
  runId: string;
  workOrderId: string;
  spec: ResolvedTaskSpec;
  workspace: Workspace;
  artifactsDir: string;
  signal: AbortSignal;
  startedAt: number;
  deadline: number;
  emit: EmitFn;
  logger: Logger;
  progress: RunProgress;
}

/** What a phase handler receives. */
export interface PhaseContext {
  readonly runId: string;
  readonly workOrderId: string;
  readonly iteration: number;
  readonly phase: PhaseName;
  readonly spec: ResolvedTaskSpec;
  readonly workspace: Workspace;
  readonly artifactsDir: string;
  readonly signal: AbortSignal;
  readonly deadline: number;
  readonly logger: Logger;
  readonly emit: EmitFn;
  readonly clock: Clock;
  readonly services: Pick<ExecutionServices, 'agents' | 'snapshotter' | 'verifier' | 'baseEnv'>;
  /** Read-only view of the run's progress (session id, feedback, usage, history). */
  readonly progress: Readonly<RunProgress>;
}

/** Handlers never throw outward: they return one of these. */
export type PhaseResult<T> =
  | { ok: true; value: T }
  | {
      ok: false;
      error: AgentGateError;
      cancelled: boolean;
      /** The agent's summary when a build failed after the agent ran (its usage was paid for). */
      agent?: AgentSummary;
    };

export interface BuildOutput {
  agent: AgentResult & { ok: true };
}
export interface SnapshotOutput {
  snapshot: SnapshotResult;
  /** Every change from the base commit's tree to the snapshot's (`SnapshotOutcome`); kept for the verify phase. */
  changesFromBase?: TreeChange[];
  /** When the snapshot's patch file and branch publication, which run on during verification, end; never rejects. */
  settled?: Promise<AgentGateError | undefined>;
}
export interface VerifyOutput {
  report: VerificationReport;
}
export interface FeedbackOutput {
  text: string;
  truncated: boolean;
}

export interface PhaseOutputs {
  build: BuildOutput;
  snapshot: SnapshotOutput;
  verify: VerifyOutput;
  feedback: FeedbackOutput;
}

export type IterationPhase = keyof PhaseOutputs;

export interface PhaseHandler<P extends IterationPhase> {
  readonly name: P;
  execute(ctx: PhaseContext): Promise<PhaseResult<PhaseOutputs[P]>>;
}
