/**
 * The ConvergenceController answers one question after a failed verification (or a CI failure): run
 * another iteration or stop? It only decides — the engine owns the loop, applies the transition and
 * records the decision (SPEC 2, 5). Hard limits are checked first and cannot be overridden by any
 * strategy; a strategy that throws fails the run instead of silently continuing or stopping.
 */
import { AgentGateError } from '../errors.js';
import type { Clock } from '../util/clock.js';
import { FixedStrategy } from './strategies/fixed.js';
import { HYBRID_DEFAULTS, HybridStrategy } from './strategies/hybrid.js';
import { ManualStrategy } from './strategies/manual.js';
import { RALPH_DEFAULTS, RalphStrategy } from './strategies/ralph.js';
import {
  STRATEGY_NAMES,
  type ConvergenceDecision,
  type ConvergenceLimits,
  type ConvergenceStrategy,
  type ConvergenceUsage,
  type Decision,
  type IterationObservation,
  type LimitName,
  type StrategyConfigInput,
  type StrategyName,
} from './types.js';

export interface ConvergenceControllerOptions {
  /** A strategy name, or a ready strategy instance (custom strategies, tests). */
  strategy: StrategyName | ConvergenceStrategy;
  /** Options of the named strategy; ignored when `strategy` is an instance. */
  config?: StrategyConfigInput;
  limits: ConvergenceLimits;
  clock: Clock;
  /** When the run started (epoch ms): the wall-clock limit counts from here. */
  startedAt: number;
}

export interface DecideInput {
  /** The iteration that just failed (1-based). */
  iteration: number;
  /** Observations oldest first; the last one is `iteration`'s. */
  history: readonly IterationObservation[];
  /** Usage summed over the run so far. */
  usage: ConvergenceUsage;
}

export type DecideResult = { ok: true; decision: ConvergenceDecision } | { ok: false; error: AgentGateError };

export function isStrategyName(value: string): value is StrategyName {
  return (STRATEGY_NAMES as readonly string[]).includes(value);
}

/**
 * Builds the named strategy with its options validated and defaults applied (SPEC 5). Throws
 * `AG_ERR_CONVERGENCE_UNKNOWN_STRATEGY` for an unknown name and `AG_ERR_CONFIG_INVALID` for a bad
 * option, so a misconfigured run fails before its first iteration rather than at its first decision.
 */
export function createStrategy(name: string, config: StrategyConfigInput = {}): ConvergenceStrategy {
  if (!isStrategyName(name)) {
    throw new AgentGateError(
      'AG_ERR_CONVERGENCE_UNKNOWN_STRATEGY',
      `Unknown convergence strategy "${name}"; expected one of ${STRATEGY_NAMES.join(', ')}`,
      { details: { strategy: name } },
    );
  }
  switch (name) {
    case 'fixed':
      return new FixedStrategy(
        config.iterations === undefined ? {} : { iterations: integerAtLeast('fixed.iterations', config.iterations, 1) },
      );
    case 'hybrid':
      return new HybridStrategy({
        baseIterations: integerAtLeast('hybrid.baseIterations', config.baseIterations ?? HYBRID_DEFAULTS.baseIterations, 1),
        bonusIterations: integerAtLeast('hybrid.bonusIterations', config.bonusIterations ?? HYBRID_DEFAULTS.bonusIterations, 0),
        progressThreshold: fraction('hybrid.progressThreshold', config.progressThreshold ?? HYBRID_DEFAULTS.progressThreshold, true),
      });
    case 'ralph':
      return new RalphStrategy({
        windowSize: integerAtLeast('ralph.windowSize', config.windowSize ?? RALPH_DEFAULTS.windowSize, 2),
        similarityThreshold: fraction('ralph.similarityThreshold', config.similarityThreshold ?? RALPH_DEFAULTS.similarityThreshold, false),
        minIterations: integerAtLeast('ralph.minIterations', config.minIterations ?? RALPH_DEFAULTS.minIterations, 1),
      });
    case 'manual':
      return new ManualStrategy();
    default:
      return assertNever(name);
  }
}

/**
 * One controller per run. `decide()` is called after every failed verification or CI failure;
 * `checkBudget()` after every build so a run that blew its token or cost budget stops before verifying.
 * Neither throws: failures come back as `{ ok: false, error }` for the engine to fail the run with.
 */
export class ConvergenceController {
  readonly strategyName: StrategyName;
  readonly limits: Readonly<ConvergenceLimits>;
  private readonly strategy: ConvergenceStrategy;
  private readonly clock: Clock;
  private readonly startedAt: number;

  /** Throws `AG_ERR_CONVERGENCE_UNKNOWN_STRATEGY` or `AG_ERR_CONFIG_INVALID` for bad options (fail fast). */
  constructor(options: ConvergenceControllerOptions) {
    this.limits = validateLimits(options.limits);
    if (!Number.isFinite(options.startedAt)) {
      throw new AgentGateError('AG_ERR_CONFIG_INVALID', `Convergence startedAt must be epoch milliseconds (got ${options.startedAt})`);
    }
    this.startedAt = options.startedAt;
    this.clock = options.clock;
    if (typeof options.strategy === 'string') {
      const config: StrategyConfigInput = { ...options.config };
      // `fixed` without `iterations` runs up to the run's maxIterations (SPEC 5).
      if (options.strategy === 'fixed' && config.iterations === undefined) config.iterations = this.limits.maxIterations;
      this.strategy = createStrategy(options.strategy, config);
    } else {
      this.strategy = options.strategy;
    }
    this.strategyName = this.strategy.name;
  }

  /** Epoch ms at which the wall-clock limit expires; the engine arms its run deadline with it. */
  get deadline(): number {
    return this.startedAt + this.limits.maxWallClockMs;
  }

  /** Milliseconds left on the wall clock (never negative). */
  remainingMs(): number {
    return Math.max(0, this.deadline - this.clock.now());
  }

  /**
   * Continue or stop after `iteration` failed. Hard limits in order — max_iterations, wall_clock,
   * tokens, cost — then the strategy. A `wall_clock` stop is a timeout for the engine; the others fail
   * the run as a verification failure with the decision's reason.
   */
  decide(input: DecideInput): DecideResult {
    if (!Number.isInteger(input.iteration) || input.iteration < 1) {
      return { ok: false, error: new AgentGateError('AG_ERR_INTERNAL', `Convergence asked about invalid iteration ${input.iteration}`) };
    }
    const usageError = invalidUsage(input.usage);
    if (usageError !== null) return { ok: false, error: usageError };

    const limited = this.iterationLimit(input.iteration) ?? this.wallClockLimit() ?? this.budgetLimit(input.usage);
    if (limited !== null) return { ok: true, decision: limited };

    let decision: Decision;
    try {
      decision = this.strategy.decide({ iteration: input.iteration, history: input.history });
    } catch (cause) {
      const message = cause instanceof Error ? cause.message : String(cause);
      return {
        ok: false,
        error: new AgentGateError(
          'AG_ERR_CONVERGENCE_STRATEGY',
          `Convergence strategy "${this.strategyName}" failed at iteration ${input.iteration}: ${message}`,
          { cause, details: { strategy: this.strategyName, iteration: input.iteration } },
        ),
      };
    }
    if ((decision.action !== 'continue' && decision.action !== 'stop') || typeof decision.reason !== 'string' || decision.reason === '') {
      return {
        ok: false,
        error: new AgentGateError(
          'AG_ERR_CONVERGENCE_STRATEGY',
          `Convergence strategy "${this.strategyName}" returned an invalid decision at iteration ${input.iteration}`,
          { details: { strategy: this.strategyName, iteration: input.iteration, decision } },
        ),
      };
    }
    return { ok: true, decision: { action: decision.action, reason: decision.reason, limit: null, strategy: this.strategyName } };
  }

  /**
   * The token and cost budgets only, for the engine to call after each build: `stop` with limit
   * `tokens` or `cost` once usage reaches a budget, else `continue`.
   */
  checkBudget(usage: ConvergenceUsage): DecideResult {
    const usageError = invalidUsage(usage);
    if (usageError !== null) return { ok: false, error: usageError };
    const limited = this.budgetLimit(usage);
    if (limited !== null) return { ok: true, decision: limited };
    return { ok: true, decision: { action: 'continue', reason: this.budgetSummary(usage), limit: null, strategy: this.strategyName } };
  }

  private iterationLimit(iteration: number): ConvergenceDecision | null {
    const { maxIterations } = this.limits;
    if (iteration < maxIterations) return null;
    return this.stop('max_iterations', `max_iterations: ${iteration} of ${maxIterations} iterations used`);
  }

  private wallClockLimit(): ConvergenceDecision | null {
    const elapsed = this.clock.now() - this.startedAt;
    if (elapsed < this.limits.maxWallClockMs) return null;
    return this.stop('wall_clock', `wall_clock: ${seconds(elapsed)} elapsed of ${seconds(this.limits.maxWallClockMs)} allowed`);
  }

  private budgetLimit(usage: ConvergenceUsage): ConvergenceDecision | null {
    const { maxTokens, maxCostUsd } = this.limits;
    const tokens = usage.inputTokens + usage.outputTokens;
    if (maxTokens !== undefined && tokens >= maxTokens) {
      return this.stop('tokens', `tokens: ${tokens} of ${maxTokens} tokens used`);
    }
    if (maxCostUsd !== undefined && usage.costUsd >= maxCostUsd) {
      return this.stop('cost', `cost: ${usd(usage.costUsd)} of ${usd(maxCostUsd)} budget used`);
    }
    return null;
  }

  private budgetSummary(usage: ConvergenceUsage): string {
    const { maxTokens, maxCostUsd } = this.limits;
    const parts: string[] = [];
    if (maxTokens !== undefined) parts.push(`${usage.inputTokens + usage.outputTokens} of ${maxTokens} tokens`);
    if (maxCostUsd !== undefined) parts.push(`${usd(usage.costUsd)} of ${usd(maxCostUsd)}`);
    return parts.length === 0 ? 'no token or cost budget set' : `within budget: ${parts.join(', ')} used`;
  }

  private stop(limit: LimitName, reason: string): ConvergenceDecision {
    return { action: 'stop', reason, limit, strategy: this.strategyName };
  }
}

function validateLimits(limits: ConvergenceLimits): ConvergenceLimits {
  const out: ConvergenceLimits = {
    maxIterations: integerAtLeast('limits.maxIterations', limits.maxIterations, 1),
    maxWallClockMs: positive('limits.maxWallClockMs', limits.maxWallClockMs),
  };
  if (limits.maxTokens !== undefined) out.maxTokens = integerAtLeast('limits.maxTokens', limits.maxTokens, 1);
  if (limits.maxCostUsd !== undefined) out.maxCostUsd = positive('limits.maxCostUsd', limits.maxCostUsd);
  return out;
}

function invalidUsage(usage: ConvergenceUsage): AgentGateError | null {
  for (const key of ['inputTokens', 'outputTokens', 'costUsd'] as const) {
    const value = usage[key];
    if (!Number.isFinite(value) || value < 0) {
      // A NaN budget comparison is always false: without this check a budget would silently never hold.
      return new AgentGateError('AG_ERR_INTERNAL', `Convergence got invalid usage ${key}=${value}`, { details: { [key]: value } });
    }
  }
  return null;
}

function configError(field: string, expected: string, value: number): AgentGateError {
  return new AgentGateError('AG_ERR_CONFIG_INVALID', `Invalid convergence option ${field}: expected ${expected}, got ${value}`, {
    details: { field, value },
  });
}

function integerAtLeast(field: string, value: number, min: number): number {
  if (!Number.isInteger(value) || value < min) throw configError(field, `an integer ≥ ${min}`, value);
  return value;
}

function positive(field: string, value: number): number {
  if (!Number.isFinite(value) || value <= 0) throw configError(field, 'a number > 0', value);
  return value;
}

/** A share in [0, 1] (`allowZero`) or (0, 1]. */
function fraction(field: string, value: number, allowZero: boolean): number {
  const ok = Number.isFinite(value) && value <= 1 && (allowZero ? value >= 0 : value > 0);
  if (!ok) throw configError(field, allowZero ? 'a number in [0, 1]' : 'a number in (0, 1]', value);
  return value;
}

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)}s`;
}

/** Dollars with 2 to 4 decimals: $5.00, $0.123, $0.0042. */
function usd(value: number): string {
  return `$${value.toFixed(4).replace(/0{1,2}$/, '')}`;
}

function assertNever(value: never): never {
  throw new AgentGateError('AG_ERR_INTERNAL', `Unhandled convergence strategy ${String(value)}`);
}
