/** Convergence (SPEC 5): the controller, the four strategies and their types. */
export {
  ConvergenceController,
  createStrategy,
  isStrategyName,
  type ConvergenceControllerOptions,
  type DecideInput,
  type DecideResult,
} from './controller.js';
export { FixedStrategy } from './strategies/fixed.js';
export { HYBRID_DEFAULTS, HybridStrategy, NO_PROGRESS_WINDOW } from './strategies/hybrid.js';
export { ManualStrategy } from './strategies/manual.js';
export { COMPLETION_SIGNALS, RALPH_DEFAULTS, RalphStrategy, findCompletionSignal, jaccardSimilarity } from './strategies/ralph.js';
export {
  STRATEGY_NAMES,
  type ConvergenceDecision,
  type ConvergenceInput,
  type ConvergenceLimits,
  type ConvergenceStrategy,
  type ConvergenceUsage,
  type Decision,
  type FixedConfig,
  type HybridConfig,
  type IterationObservation,
  type LimitName,
  type ManualConfig,
  type RalphConfig,
  type StrategyConfigInput,
  type StrategyConfigMap,
  type StrategyName,
} from './types.js';
