import { describe, expect, it } from 'vitest';
import {
  COMPLETION_SIGNALS,
  FixedStrategy,
  HybridStrategy,
  ManualStrategy,
  RalphStrategy,
  createStrategy,
  findCompletionSignal,
  jaccardSimilarity,
  type HybridConfig,
  type IterationObservation,
  type RalphConfig,
} from '../../src/convergence/index.js';

interface Obs {
  passRatio?: number;
  treeSha?: string;
  agentOutput?: string;
}

/** History of observations 1..n; each iteration gets its own tree unless the case says otherwise. */
function history(items: readonly Obs[]): IterationObservation[] {
  return items.map((o, i) => ({
    iteration: i + 1,
    passRatio: o.passRatio ?? 0,
    snapshotSha: `commit${i + 1}`,
    treeSha: o.treeSha ?? `tree${i + 1}`,
    agentOutput: o.agentOutput ?? `output of iteration ${i + 1} with distinct words ${'w'.repeat(i + 1)}`,
  }));
}

describe('FixedStrategy', () => {
  const cases: Array<[iterations: number, iteration: number, action: 'continue' | 'stop']> = [
    [3, 1, 'continue'],
    [3, 2, 'continue'],
    [3, 3, 'stop'],
    [3, 4, 'stop'],
    [1, 1, 'stop'],
  ];
  it.each(cases)('with %i iterations decides after iteration %i to %s', (iterations, iteration, action) => {
    const decision = new FixedStrategy({ iterations }).decide({ iteration, history: [] });
    expect(decision.action).toBe(action);
    expect(decision.reason).not.toBe('');
  });

  it('continues until a hard limit when no iteration count is given', () => {
    expect(new FixedStrategy({}).decide({ iteration: 99, history: [] }).action).toBe('continue');
  });
});

describe('HybridStrategy', () => {
  const defaults: HybridConfig = { baseIterations: 3, bonusIterations: 2, progressThreshold: 0.1 };
  const cases: Array<{ name: string; config?: Partial<HybridConfig>; steps: Obs[]; action: 'continue' | 'stop'; reason: RegExp }> = [
    { name: 'continues within the base iterations', steps: [{ passRatio: 0 }], action: 'continue', reason: /1 of 3 base/ },
    { name: 'continues within the base even without progress', steps: [{ passRatio: 0.5 }, { passRatio: 0.2 }], action: 'continue', reason: /2 of 3 base/ },
    {
      name: 'grants a bonus iteration when the pass ratio improved by the threshold',
      steps: [{ passRatio: 0.2 }, { passRatio: 0.4 }, { passRatio: 0.6 }],
      action: 'continue',
      reason: /0\.40 → 0\.60 \(\+0\.20\).*bonus iteration 1 of 2/,
    },
    {
      name: 'counts an improvement of exactly the threshold despite floating point (0.5 → 0.6)',
      steps: [{ passRatio: 0.4 }, { passRatio: 0.5 }, { passRatio: 0.6 }],
      action: 'continue',
      reason: /bonus iteration 1 of 2/,
    },
    {
      name: 'refuses a bonus iteration when the pass ratio improved by less than the threshold',
      steps: [{ passRatio: 0.2 }, { passRatio: 0.5 }, { passRatio: 0.55 }],
      action: 'stop',
      reason: /0\.50 → 0\.55.*less than 0\.10; no bonus/,
    },
    {
      name: 'refuses a bonus iteration when the pass ratio fell',
      steps: [{ passRatio: 0.2 }, { passRatio: 0.6 }, { passRatio: 0.4 }],
      action: 'stop',
      reason: /no bonus/,
    },
    {
      name: 'grants the second bonus iteration while progress continues',
      steps: [{ passRatio: 0.1 }, { passRatio: 0.2 }, { passRatio: 0.4 }, { passRatio: 0.6 }],
      action: 'continue',
      reason: /bonus iteration 2 of 2/,
    },
    {
      name: 'stops once base and bonus iterations are used, whatever the progress',
      steps: [{ passRatio: 0 }, { passRatio: 0.2 }, { passRatio: 0.4 }, { passRatio: 0.6 }, { passRatio: 0.8 }],
      action: 'stop',
      reason: /base \(3\) and bonus \(2\) iterations used/,
    },
    {
      name: 'stops with no bonus configured after the base',
      config: { bonusIterations: 0 },
      steps: [{ passRatio: 0 }, { passRatio: 0.5 }, { passRatio: 1 }],
      action: 'stop',
      reason: /bonus \(0\)/,
    },
    {
      name: 'stops on three identical snapshots even within the base',
      config: { baseIterations: 10 },
      steps: [{ treeSha: 'same' }, { treeSha: 'same' }, { treeSha: 'same' }],
      action: 'stop',
      reason: /no progress: the last 3 snapshots are identical/,
    },
    {
      name: 'stops on three identical snapshots even when the pass ratio improved',
      steps: [{ treeSha: 't', passRatio: 0 }, { treeSha: 't', passRatio: 0.3 }, { treeSha: 't', passRatio: 0.6 }],
      action: 'stop',
      reason: /no progress/,
    },
    {
      name: 'keeps going with two identical snapshots',
      config: { baseIterations: 10 },
      steps: [{ treeSha: 'a' }, { treeSha: 'same' }, { treeSha: 'same' }],
      action: 'continue',
      reason: /3 of 10 base/,
    },
  ];

  it.each(cases)('$name', ({ config, steps, action, reason }) => {
    const strategy = new HybridStrategy({ ...defaults, ...config });
    const decision = strategy.decide({ iteration: steps.length, history: history(steps) });
    expect(decision.action).toBe(action);
    expect(decision.reason).toMatch(reason);
  });

  it('throws when the history does not end with the iteration being decided', () => {
    const strategy = new HybridStrategy(defaults);
    expect(() => strategy.decide({ iteration: 2, history: [] })).toThrow(/iteration 2/);
    expect(() => strategy.decide({ iteration: 3, history: history([{}, {}]) })).toThrow(/last history entry/);
  });
});

describe('RalphStrategy', () => {
  const defaults: RalphConfig = { windowSize: 3, similarityThreshold: 0.95, minIterations: 1 };
  const same = 'I changed src/a.ts and ran the tests; two still fail.';
  const cases: Array<{ name: string; config?: Partial<RalphConfig>; outputs: string[]; action: 'continue' | 'stop'; reason: RegExp }> = [
    { name: 'stops when the agent prints TASK_COMPLETE on a line of its own', outputs: ['work\nTASK_COMPLETE\n'], action: 'stop', reason: /TASK_COMPLETE/ },
    { name: 'accepts a signal surrounded by whitespace', outputs: ['summary\n   DONE  \n'], action: 'stop', reason: /DONE/ },
    { name: 'accepts the Ralph promise tag', outputs: ['<promise>COMPLETE</promise>'], action: 'stop', reason: /promise/ },
    { name: 'ignores a signal inside a sentence', outputs: ['I will print TASK_COMPLETE when done'], action: 'continue', reason: /no completion signal/ },
    { name: 'matches signals case-sensitively', outputs: ['task_complete\ndone'], action: 'continue', reason: /no completion signal/ },
    {
      name: 'ignores a signal before minIterations',
      config: { minIterations: 2 },
      outputs: ['TASK_COMPLETE'],
      action: 'continue',
      reason: /before minIterations 2/,
    },
    {
      name: 'honours the signal from minIterations on',
      config: { minIterations: 2 },
      outputs: ['first try', 'TASK_COMPLETED'],
      action: 'stop',
      reason: /TASK_COMPLETED/,
    },
    {
      name: 'only reads the signal of the latest output',
      outputs: ['TASK_COMPLETE', 'had to reopen: tests failing'],
      action: 'continue',
      reason: /no completion signal/,
    },
    { name: 'waits until the window is full', outputs: [same, same], action: 'continue', reason: /2 of 3 outputs/ },
    {
      name: 'stops when the last windowSize outputs are nearly identical',
      outputs: ['something else entirely', same, same.toUpperCase(), `${same}  `],
      action: 'stop',
      reason: /last 3 agent outputs are nearly identical \(similarity 1\.000/,
    },
    {
      name: 'continues when one output in the window differs',
      outputs: [same, same, 'Rewrote the parser; now only the lint gate fails.'],
      action: 'continue',
      reason: /still changing/,
    },
    {
      name: 'uses the configured window and threshold',
      config: { windowSize: 2, similarityThreshold: 0.5 },
      outputs: ['alpha beta gamma', 'alpha beta delta'],
      action: 'stop',
      reason: /0\.500 ≥ 0\.5/,
    },
  ];

  it.each(cases)('$name', ({ config, outputs, action, reason }) => {
    const strategy = new RalphStrategy({ ...defaults, ...config });
    const decision = strategy.decide({ iteration: outputs.length, history: history(outputs.map((agentOutput) => ({ agentOutput }))) });
    expect(decision.action).toBe(action);
    expect(decision.reason).toMatch(reason);
  });

  it('documents a small, fixed set of completion signals', () => {
    expect(COMPLETION_SIGNALS).toEqual(['TASK_COMPLETE', 'TASK_COMPLETED', 'DONE', '<promise>COMPLETE</promise>']);
    expect(findCompletionSignal('a\r\nDONE\r\n')).toBe('DONE');
    expect(findCompletionSignal('DONE.')).toBeNull();
  });

  it('throws when the history does not end with the iteration being decided', () => {
    expect(() => new RalphStrategy(defaults).decide({ iteration: 1, history: [] })).toThrow(/last history entry/);
  });
});

describe('jaccardSimilarity', () => {
  const cases: Array<[a: string, b: string, expected: number]> = [
    ['the same words', 'the same words', 1],
    ['Case, punctuation... and   spacing!', 'case punctuation and spacing', 1],
    ['alpha beta', 'gamma delta', 0],
    ['alpha beta', 'beta gamma', 1 / 3],
    ['repeat repeat repeat', 'repeat', 1],
    ['', '', 1],
    ['   ...', '', 1],
    ['word', '', 0],
    ['größe straße', 'GRÖSSE straße', 1 / 3],
  ];
  it.each(cases)('of %j and %j is %d', (a, b, expected) => {
    expect(jaccardSimilarity(a, b)).toBeCloseTo(expected, 10);
    expect(jaccardSimilarity(b, a)).toBeCloseTo(expected, 10);
  });
});

describe('ManualStrategy', () => {
  it.each([1, 2, 50])('continues after iteration %i', (iteration) => {
    const decision = new ManualStrategy().decide({ iteration, history: [] });
    expect(decision).toEqual({ action: 'continue', reason: expect.stringMatching(/person cancels or a limit/) });
  });
});

describe('createStrategy', () => {
  it.each(['fixed', 'hybrid', 'ralph', 'manual'] as const)('builds the %s strategy with its defaults', (name) => {
    expect(createStrategy(name).name).toBe(name);
  });

  it('applies the SPEC defaults to hybrid and ralph', () => {
    expect(createStrategy('hybrid')).toMatchObject({ config: { baseIterations: 3, bonusIterations: 2, progressThreshold: 0.1 } });
    expect(createStrategy('ralph')).toMatchObject({ config: { windowSize: 3, similarityThreshold: 0.95, minIterations: 1 } });
    expect(createStrategy('hybrid', { baseIterations: 1 })).toMatchObject({ config: { baseIterations: 1, bonusIterations: 2 } });
  });

  it('rejects an unknown strategy name with AG_ERR_CONVERGENCE_UNKNOWN_STRATEGY', () => {
    expect(() => createStrategy('yolo')).toThrow(expect.objectContaining({ code: 'AG_ERR_CONVERGENCE_UNKNOWN_STRATEGY', status: 400 }));
  });

  const invalid: Array<[name: string, config: Record<string, number>, field: string]> = [
    ['fixed', { iterations: 0 }, 'fixed.iterations'],
    ['hybrid', { baseIterations: 1.5 }, 'hybrid.baseIterations'],
    ['hybrid', { bonusIterations: -1 }, 'hybrid.bonusIterations'],
    ['hybrid', { progressThreshold: 1.5 }, 'hybrid.progressThreshold'],
    ['ralph', { windowSize: 1 }, 'ralph.windowSize'],
    ['ralph', { similarityThreshold: 0 }, 'ralph.similarityThreshold'],
    ['ralph', { minIterations: 0 }, 'ralph.minIterations'],
  ];
  it.each(invalid)('rejects %s option %j with AG_ERR_CONFIG_INVALID naming %s', (name, config, field) => {
    expect(() => createStrategy(name, config)).toThrow(expect.objectContaining({ code: 'AG_ERR_CONFIG_INVALID', message: expect.stringContaining(field) }));
  });
});
