import type { ConvergenceInput, ConvergenceStrategy, Decision } from '../types.js';

/**
 * `manual`: never gives up on its own. For supervised runs where a person watches the stream and cancels
 * when they have seen enough; the hard limits (maxIterations, wall clock, budgets) still apply.
 */
export class ManualStrategy implements ConvergenceStrategy {
  readonly name = 'manual' as const;

  decide(input: ConvergenceInput): Decision {
    return {
      action: 'continue',
      reason: `iteration ${input.iteration} failed; manual strategy continues until a person cancels or a limit is hit`,
    };
  }
}
