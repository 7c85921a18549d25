import type { ConvergenceInput, ConvergenceStrategy, Decision, FixedConfig } from '../types.js';

/**
 * `fixed`: retry a set number of times. The simplest strategy, for teams that want a predictable cost:
 * every failed iteration is followed by another until `iterations` have run. Without `iterations` it
 * continues until a hard limit (maxIterations, wall clock, budget) stops the run.
 */
export class FixedStrategy implements ConvergenceStrategy {
  readonly name = 'fixed' as const;

  constructor(readonly config: Readonly<FixedConfig>) {}

  decide(input: ConvergenceInput): Decision {
    const { iterations } = this.config;
    if (iterations === undefined) {
      return { action: 'continue', reason: `iteration ${input.iteration} failed; continuing until a hard limit` };
    }
    if (input.iteration < iterations) {
      return { action: 'continue', reason: `iteration ${input.iteration} of ${iterations} failed; continuing` };
    }
    return { action: 'stop', reason: `all ${iterations} fixed iterations used` };
  }
}
