/** Convergence decisions (SPEC 5). Strategies decide; the engine owns the loop. */

export type StrategyName = 'fixed' | 'hybrid' | 'ralph' | 'manual';

export interface IterationObservation {
  iteration: number;
  /** Share of gates that passed in this iteration's verification (0..1). */
  passRatio: number;
  /** Commit sha of the iteration's snapshot; identical shas or trees mean no progress. */
  snapshotSha: string;
  /** Tree hash of the snapshot (identical trees = identical snapshots). */
  treeSha: string;
  /** The agent's final output text of the iteration. */
  agentOutput: string;
}

export interface ConvergenceInput {
  /** The iteration that just failed verification (1-based). */
  iteration: number;
  history: readonly IterationObservation[];
}

export interface Decision {
  action: 'continue' | 'stop';
  reason: string;
}

export interface ConvergenceStrategy {
  readonly name: StrategyName;
  decide(input: ConvergenceInput): Decision;
}

/** Every strategy name, in the order the docs list them. */
export const STRATEGY_NAMES = ['fixed', 'hybrid', 'ralph', 'manual'] as const satisfies readonly StrategyName[];

/** `fixed`: continue until `iterations` (default: the run's maxIterations). */
export interface FixedConfig {
  iterations?: number;
}

/** `hybrid`: base iterations, then bonus iterations only while the gate pass ratio improves. */
export interface HybridConfig {
  baseIterations: number;
  bonusIterations: number;
  /** Minimum rise of the pass ratio (0..1) over the previous iteration that earns a bonus iteration. */
  progressThreshold: number;
}

/** `ralph`: loop until the agent says it is done or keeps saying the same thing. */
export interface RalphConfig {
  /** How many of the latest agent outputs must be nearly identical to stop (≥ 2). */
  windowSize: number;
  /** Token Jaccard similarity (0..1] at or above which two outputs count as nearly identical. */
  similarityThreshold: number;
  /** Ralph never stops on its own before this iteration. */
  minIterations: number;
}

/** `manual` has no options: a person cancels, or a hard limit stops the run. */
export type ManualConfig = Record<string, never>;

export interface StrategyConfigMap {
  fixed: FixedConfig;
  hybrid: HybridConfig;
  ralph: RalphConfig;
  manual: ManualConfig;
}

/**
 * Strategy options as they arrive from a TaskSpec: one flat bag; each strategy reads its own keys and
 * ignores the others, and missing keys take the documented defaults.
 */
export type StrategyConfigInput = Partial<FixedConfig & HybridConfig & RalphConfig>;

/** The hard limits the controller enforces before any strategy is asked. */
export type LimitName = 'max_iterations' | 'wall_clock' | 'tokens' | 'cost';

export interface ConvergenceLimits {
  /** Iterations a run may use (SPEC default 3). */
  maxIterations: number;
  /** Wall-clock budget of the whole run in ms (SPEC default 1 h). */
  maxWallClockMs: number;
  /** Budget on input + output tokens summed over all iterations. */
  maxTokens?: number;
  /** Budget on the agent's reported cost in USD summed over all iterations. */
  maxCostUsd?: number;
}

/** Usage summed over the run so far. */
export interface ConvergenceUsage {
  inputTokens: number;
  outputTokens: number;
  costUsd: number;
}

/** A recorded decision: what, why, which hard limit (null when the strategy decided), which strategy. */
export interface ConvergenceDecision extends Decision {
  limit: LimitName | null;
  strategy: StrategyName;
}
