import type { ConvergenceInput, ConvergenceStrategy, Decision, HybridConfig, IterationObservation } from '../types.js';

/** SPEC 5 defaults. */
export const HYBRID_DEFAULTS: Readonly<HybridConfig> = { baseIterations: 3, bonusIterations: 2, progressThreshold: 0.1 };

/** This many identical snapshots in a row mean the agent is going round in circles (SPEC 5). */
export const NO_PROGRESS_WINDOW = 3;

/**
 * Pass ratios are fractions like 3/5; `0.6 - 0.5` is 0.0999…, which must still count as an improvement
 * of 0.1. Ratios of gate counts differ by far more than this when they differ at all.
 */
const RATIO_EPSILON = 1e-9;

/**
 * `hybrid`: a fixed base budget, then more iterations only while they pay off. After `baseIterations`
 * the agent earns each of up to `bonusIterations` extra iterations by raising the gate pass ratio by at
 * least `progressThreshold` over the previous iteration. Independently of the budget, three identical
 * snapshots in a row (same tree) stop the run: the agent is no longer changing anything.
 *
 * `history` must end with the iteration being decided; an empty or mismatched history is a caller bug
 * and throws (the controller turns the throw into a failed run, never into a silent continue).
 */
export class HybridStrategy implements ConvergenceStrategy {
  readonly name = 'hybrid' as const;

  constructor(readonly config: Readonly<HybridConfig>) {}

  decide(input: ConvergenceInput): Decision {
    const { baseIterations, bonusIterations, progressThreshold } = this.config;
    const current = currentObservation(input);

    const recent = input.history.slice(-NO_PROGRESS_WINDOW);
    if (recent.length === NO_PROGRESS_WINDOW && recent.every((o) => o.treeSha === current.treeSha)) {
      return {
        action: 'stop',
        reason: `no progress: the last ${NO_PROGRESS_WINDOW} snapshots are identical (tree ${current.treeSha.slice(0, 12)})`,
      };
    }

    if (input.iteration < baseIterations) {
      return { action: 'continue', reason: `iteration ${input.iteration} of ${baseIterations} base iterations failed; continuing` };
    }

    const bonusUsed = input.iteration - baseIterations;
    if (bonusUsed >= bonusIterations) {
      return { action: 'stop', reason: `base (${baseIterations}) and bonus (${bonusIterations}) iterations used` };
    }

    const previous = input.history.at(-2);
    if (previous === undefined) {
      return { action: 'stop', reason: 'base iterations used and no previous iteration to measure progress against' };
    }
    const gain = current.passRatio - previous.passRatio;
    const change = `pass ratio ${ratio(previous.passRatio)} → ${ratio(current.passRatio)} (${signed(gain)})`;
    if (gain + RATIO_EPSILON >= progressThreshold) {
      return {
        action: 'continue',
        reason: `${change} improved by at least ${ratio(progressThreshold)}; bonus iteration ${bonusUsed + 1} of ${bonusIterations}`,
      };
    }
    return { action: 'stop', reason: `${change} improved by less than ${ratio(progressThreshold)}; no bonus iteration` };
  }
}

function currentObservation(input: ConvergenceInput): IterationObservation {
  const last = input.history.at(-1);
  if (last === undefined || last.iteration !== input.iteration) {
    throw new Error(`hybrid strategy needs the observation of iteration ${input.iteration} as the last history entry`);
  }
  if (!Number.isFinite(last.passRatio)) {
    throw new Error(`hybrid strategy got a non-finite pass ratio for iteration ${input.iteration}`);
  }
  return last;
}

function ratio(value: number): string {
  return value.toFixed(2);
}

function signed(value: number): string {
  const rounded = Math.round(value * 100) / 100;
  return `${rounded >= 0 ? '+' : ''}${rounded.toFixed(2)}`;
}
