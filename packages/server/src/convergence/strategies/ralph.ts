import type { ConvergenceInput, ConvergenceStrategy, Decision, RalphConfig } from '../types.js';

/** SPEC 5 defaults. */
export const RALPH_DEFAULTS: Readonly<RalphConfig> = { windowSize: 3, similarityThreshold: 0.95, minIterations: 1 };

/**
 * Lines an agent prints, alone on a line, to say it considers the task finished. Matched case-sensitively
 * after trimming the line, so prose such as "I am not done yet" never matches. `<promise>COMPLETE</promise>`
 * is the convention of the Ralph Wiggum loop this strategy is named after.
 */
export const COMPLETION_SIGNALS = ['TASK_COMPLETE', 'TASK_COMPLETED', 'DONE', '<promise>COMPLETE</promise>'] as const;

const SIGNALS: ReadonlySet<string> = new Set(COMPLETION_SIGNALS);

/** Tokens are runs of letters, digits and underscores in any script; everything else separates. */
const TOKEN_SEPARATOR = /[^\p{L}\p{N}_]+/u;

function tokenSet(text: string): Set<string> {
  return new Set(text.toLowerCase().split(TOKEN_SEPARATOR).filter((t) => t.length > 0));
}

/**
 * Token Jaccard similarity |A ∩ B| / |A ∪ B| of two texts, 0..1. Texts are lowercased and split on
 * non-word characters, so whitespace, punctuation and case do not matter; order and repetition do not
 * either. Two texts without any token are identical (1).
 */
export function jaccardSimilarity(a: string, b: string): number {
  const left = tokenSet(a);
  const right = tokenSet(b);
  if (left.size === 0 && right.size === 0) return 1;
  let shared = 0;
  for (const token of left) if (right.has(token)) shared += 1;
  return shared / (left.size + right.size - shared);
}

/** The completion signal on a line of its own in `output`, or null. */
export function findCompletionSignal(output: string): string | null {
  for (const line of output.split(/\r?\n/)) {
    const trimmed = line.trim();
    if (SIGNALS.has(trimmed)) return trimmed;
  }
  return null;
}

/**
 * `ralph`: keep feeding the agent until it says it is done, or until it keeps saying the same thing.
 * Stops (from iteration `minIterations` on) when the latest output carries a completion signal, or when
 * every pair among the last `windowSize` outputs has a token Jaccard similarity ≥ `similarityThreshold`
 * — an agent repeating itself will not converge by being asked again.
 *
 * `history` must end with the iteration being decided; anything else is a caller bug and throws.
 */
export class RalphStrategy implements ConvergenceStrategy {
  readonly name = 'ralph' as const;

  constructor(readonly config: Readonly<RalphConfig>) {}

  decide(input: ConvergenceInput): Decision {
    const { windowSize, similarityThreshold, minIterations } = this.config;
    const last = input.history.at(-1);
    if (last === undefined || last.iteration !== input.iteration) {
      throw new Error(`ralph strategy needs the observation of iteration ${input.iteration} as the last history entry`);
    }
    if (input.iteration < minIterations) {
      return { action: 'continue', reason: `iteration ${input.iteration} is before minIterations ${minIterations}; continuing` };
    }

    const signal = findCompletionSignal(last.agentOutput);
    if (signal !== null) {
      return { action: 'stop', reason: `the agent signalled completion with ${signal}` };
    }

    const window = input.history.slice(-windowSize).map((o) => o.agentOutput);
    if (window.length < windowSize) {
      return {
        action: 'continue',
        reason: `no completion signal; ${window.length} of ${windowSize} outputs needed to compare`,
      };
    }
    const lowest = lowestPairwiseSimilarity(window);
    if (lowest >= similarityThreshold) {
      return {
        action: 'stop',
        reason: `the last ${windowSize} agent outputs are nearly identical (similarity ${lowest.toFixed(3)} ≥ ${similarityThreshold})`,
      };
    }
    return {
      action: 'continue',
      reason: `no completion signal; agent output still changing (similarity ${lowest.toFixed(3)} < ${similarityThreshold})`,
    };
  }
}

function lowestPairwiseSimilarity(outputs: readonly string[]): number {
  let lowest = 1;
  for (let i = 0; i < outputs.length; i += 1) {
    for (let j = i + 1; j < outputs.length; j += 1) {
      lowest = Math.min(lowest, jaccardSimilarity(outputs[i] ?? '', outputs[j] ?? ''));
    }
  }
  return lowest;
}
