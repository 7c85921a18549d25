import { describe, expect, it } from 'vitest';
import {
  ConvergenceController,
  type ConvergenceControllerOptions,
  type ConvergenceLimits,
  type ConvergenceStrategy,
  type ConvergenceUsage,
  type DecideResult,
  type IterationObservation,
} from '../../src/convergence/index.js';
import { AgentGateError } from '../../src/errors.js';

const START = 1_700_000_000_000;
const HOUR = 3_600_000;

/** A clock the test moves by hand. */
class FakeClock {
  constructor(public t = START) {}
  now = (): number => this.t;
}

const noUsage: ConvergenceUsage = { inputTokens: 0, outputTokens: 0, costUsd: 0 };

function observations(n: number, treeSha?: string): IterationObservation[] {
  return Array.from({ length: n }, (_, i) => ({
    iteration: i + 1,
    passRatio: 0,
    snapshotSha: `c${i + 1}`,
    treeSha: treeSha ?? `t${i + 1}`,
    agentOutput: `attempt ${i + 1} ${'x'.repeat(i + 1)}`,
  }));
}

type Overrides = Partial<Omit<ConvergenceControllerOptions, 'limits'>> & { limits?: Partial<ConvergenceLimits> };

function controller(overrides: Overrides = {}, clock = new FakeClock()): ConvergenceController {
  return new ConvergenceController({
    strategy: 'manual',
    clock,
    startedAt: START,
    ...overrides,
    limits: { maxIterations: 3, maxWallClockMs: HOUR, ...overrides.limits },
  });
}

function decision(result: DecideResult) {
  if (!result.ok) throw new Error(`expected a decision, got ${result.error.code}: ${result.error.message}`);
  return result.decision;
}

/** A strategy that fails the test if it is consulted. */
const mustNotBeAsked: ConvergenceStrategy = {
  name: 'manual',
  decide: () => {
    throw new Error('the strategy was consulted although a hard limit applies');
  },
};

describe('ConvergenceController', () => {
  describe('hard limits', () => {
    it('stops at maxIterations with a reason naming the limit', () => {
      const d = decision(controller().decide({ iteration: 3, history: observations(3), usage: noUsage }));
      expect(d).toEqual({ action: 'stop', reason: 'max_iterations: 3 of 3 iterations used', limit: 'max_iterations', strategy: 'manual' });
    });

    it('stops when the wall clock is used up, with limit wall_clock', () => {
      const clock = new FakeClock(START + HOUR);
      const d = decision(controller({}, clock).decide({ iteration: 1, history: observations(1), usage: noUsage }));
      expect(d).toMatchObject({ action: 'stop', limit: 'wall_clock', reason: 'wall_clock: 3600.0s elapsed of 3600.0s allowed' });
    });

    it('asks the strategy one millisecond before the wall clock runs out', () => {
      const clock = new FakeClock(START + HOUR - 1);
      const d = decision(controller({}, clock).decide({ iteration: 1, history: observations(1), usage: noUsage }));
      expect(d).toMatchObject({ action: 'continue', limit: null });
    });

    it('stops when input + output tokens reach maxTokens', () => {
      const c = controller({ limits: { maxTokens: 1000 } });
      expect(decision(c.decide({ iteration: 1, history: observations(1), usage: { inputTokens: 600, outputTokens: 399, costUsd: 0 } })).action).toBe('continue');
      expect(decision(c.decide({ iteration: 1, history: observations(1), usage: { inputTokens: 600, outputTokens: 400, costUsd: 0 } }))).toMatchObject({
        action: 'stop',
        limit: 'tokens',
        reason: 'tokens: 1000 of 1000 tokens used',
      });
    });

    it('stops when the cost reaches maxCostUsd', () => {
      const c = controller({ limits: { maxCostUsd: 5 } });
      expect(decision(c.decide({ iteration: 1, history: observations(1), usage: { ...noUsage, costUsd: 5.0123 } }))).toMatchObject({
        action: 'stop',
        limit: 'cost',
        reason: 'cost: $5.0123 of $5.00 budget used',
      });
    });

    type Case = { name: string; iteration: number; elapsed: number; usage: ConvergenceUsage; limit: string };
    const precedence: Case[] = [
      { name: 'max_iterations before every other limit', iteration: 3, elapsed: HOUR, usage: { inputTokens: 900, outputTokens: 900, costUsd: 9 }, limit: 'max_iterations' },
      { name: 'wall_clock before the budgets', iteration: 1, elapsed: HOUR, usage: { inputTokens: 900, outputTokens: 900, costUsd: 9 }, limit: 'wall_clock' },
      { name: 'tokens before cost', iteration: 1, elapsed: 0, usage: { inputTokens: 900, outputTokens: 900, costUsd: 9 }, limit: 'tokens' },
      { name: 'cost alone', iteration: 1, elapsed: 0, usage: { inputTokens: 1, outputTokens: 1, costUsd: 9 }, limit: 'cost' },
    ];
    it.each(precedence)('reports $name, without consulting the strategy', ({ iteration, elapsed, usage, limit }) => {
      const c = controller({ strategy: mustNotBeAsked, limits: { maxTokens: 1000, maxCostUsd: 1 } }, new FakeClock(START + elapsed));
      expect(decision(c.decide({ iteration, history: observations(iteration), usage }))).toMatchObject({ action: 'stop', limit });
    });

    it('overrides a strategy that would continue forever', () => {
      const c = controller({ strategy: 'manual', limits: { maxIterations: 2 } });
      expect(decision(c.decide({ iteration: 1, history: observations(1), usage: noUsage })).action).toBe('continue');
      expect(decision(c.decide({ iteration: 2, history: observations(2), usage: noUsage })).limit).toBe('max_iterations');
    });
  });

  describe('checkBudget', () => {
    it('says continue within the budget and names what is used', () => {
      const d = decision(controller({ limits: { maxTokens: 100, maxCostUsd: 2 } }).checkBudget({ inputTokens: 10, outputTokens: 5, costUsd: 0.12 }));
      expect(d).toEqual({ action: 'continue', reason: 'within budget: 15 of 100 tokens, $0.12 of $2.00 used', limit: null, strategy: 'manual' });
    });

    it('says continue when no budget is set, however large the usage', () => {
      const d = decision(controller().checkBudget({ inputTokens: 1e9, outputTokens: 1e9, costUsd: 1e6 }));
      expect(d).toMatchObject({ action: 'continue', reason: 'no token or cost budget set' });
    });

    it('stops on tokens and on cost, ignoring iterations and the wall clock', () => {
      const c = controller({ limits: { maxTokens: 100, maxCostUsd: 2, maxIterations: 1 } }, new FakeClock(START + 2 * HOUR));
      expect(decision(c.checkBudget({ inputTokens: 100, outputTokens: 0, costUsd: 0 })).limit).toBe('tokens');
      expect(decision(c.checkBudget({ inputTokens: 0, outputTokens: 0, costUsd: 2 })).limit).toBe('cost');
      expect(decision(c.checkBudget(noUsage)).action).toBe('continue');
    });

    it('refuses usage that is not a finite non-negative number instead of never stopping', () => {
      const result = controller({ limits: { maxTokens: 100 } }).checkBudget({ inputTokens: Number.NaN, outputTokens: 0, costUsd: 0 });
      expect(result.ok).toBe(false);
      if (!result.ok) expect(result.error.code).toBe('AG_ERR_INTERNAL');
    });
  });

  describe('strategies', () => {
    it('lets fixed run up to maxIterations when it has no iteration count', () => {
      const c = controller({ strategy: 'fixed', limits: { maxIterations: 5 } });
      expect(decision(c.decide({ iteration: 4, history: observations(4), usage: noUsage }))).toMatchObject({ action: 'continue', strategy: 'fixed', limit: null });
      expect(decision(c.decide({ iteration: 5, history: observations(5), usage: noUsage })).limit).toBe('max_iterations');
    });

    it('lets fixed stop before maxIterations when configured so, with no limit named', () => {
      const c = controller({ strategy: 'fixed', config: { iterations: 2 }, limits: { maxIterations: 5 } });
      expect(decision(c.decide({ iteration: 2, history: observations(2), usage: noUsage }))).toEqual({
        action: 'stop',
        reason: 'all 2 fixed iterations used',
        limit: null,
        strategy: 'fixed',
      });
    });

    it('passes the history to hybrid, which stops on identical snapshots', () => {
      const c = controller({ strategy: 'hybrid', limits: { maxIterations: 10 } });
      const d = decision(c.decide({ iteration: 3, history: observations(3, 'same-tree'), usage: noUsage }));
      expect(d).toMatchObject({ action: 'stop', limit: null, strategy: 'hybrid', reason: expect.stringMatching(/identical/) });
    });

    it('passes the history to ralph, which stops on a completion signal', () => {
      const history = observations(1).map((o) => ({ ...o, agentOutput: 'all done\nTASK_COMPLETE' }));
      const d = decision(controller({ strategy: 'ralph' }).decide({ iteration: 1, history, usage: noUsage }));
      expect(d).toMatchObject({ action: 'stop', strategy: 'ralph', reason: expect.stringMatching(/TASK_COMPLETE/) });
    });

    it('applies strategy options from config', () => {
      const c = controller({ strategy: 'hybrid', config: { baseIterations: 1, bonusIterations: 0 }, limits: { maxIterations: 10 } });
      expect(decision(c.decide({ iteration: 1, history: observations(1), usage: noUsage })).action).toBe('stop');
    });
  });

  describe('when the strategy fails', () => {
    it('returns AG_ERR_CONVERGENCE_STRATEGY with the thrown error as cause', () => {
      const boom = new Error('boom');
      const c = controller({ strategy: { name: 'ralph', decide: () => { throw boom; } } });
      const result = c.decide({ iteration: 1, history: observations(1), usage: noUsage });
      expect(result.ok).toBe(false);
      if (result.ok) return;
      expect(result.error).toBeInstanceOf(AgentGateError);
      expect(result.error).toMatchObject({ code: 'AG_ERR_CONVERGENCE_STRATEGY', cause: boom, details: { strategy: 'ralph', iteration: 1 } });
      expect(result.error.message).toMatch(/"ralph" failed at iteration 1: boom/);
    });

    it('returns an error, not a decision, when a built-in strategy gets a history without the current iteration', () => {
      const result = controller({ strategy: 'hybrid' }).decide({ iteration: 2, history: observations(1), usage: noUsage });
      expect(result.ok ? result.decision : result.error.code).toBe('AG_ERR_CONVERGENCE_STRATEGY');
    });

    it('returns an error when a strategy returns something that is not a decision', () => {
      const broken: ConvergenceStrategy = { name: 'manual', decide: () => ({ action: 'continue', reason: '' }) };
      const result = controller({ strategy: broken }).decide({ iteration: 1, history: observations(1), usage: noUsage });
      expect(result.ok ? result.decision : result.error.code).toBe('AG_ERR_CONVERGENCE_STRATEGY');
    });

    it('returns an error for an iteration that is not a positive integer', () => {
      const result = controller().decide({ iteration: 0, history: [], usage: noUsage });
      expect(result.ok ? result.decision : result.error.code).toBe('AG_ERR_INTERNAL');
    });
  });

  describe('construction', () => {
    it('rejects an unknown strategy name', () => {
      const name: string = 'yolo';
      expect(() => new ConvergenceController({ strategy: name as 'manual', limits: { maxIterations: 3, maxWallClockMs: HOUR }, clock: new FakeClock(), startedAt: START })).toThrow(
        expect.objectContaining({ code: 'AG_ERR_CONVERGENCE_UNKNOWN_STRATEGY' }),
      );
    });

    const badLimits: Array<Partial<ConvergenceLimits>> = [{ maxIterations: 0 }, { maxIterations: 2.5 }, { maxWallClockMs: 0 }, { maxTokens: -1 }, { maxCostUsd: Number.NaN }];
    it.each(badLimits)('rejects limits %j with AG_ERR_CONFIG_INVALID', (limits) => {
      expect(() => controller({ limits })).toThrow(expect.objectContaining({ code: 'AG_ERR_CONFIG_INVALID' }));
    });

    it('exposes the deadline and the wall-clock time left', () => {
      const clock = new FakeClock(START + HOUR - 250);
      const c = controller({}, clock);
      expect(c.deadline).toBe(START + HOUR);
      expect(c.remainingMs()).toBe(250);
      clock.t = START + 2 * HOUR;
      expect(c.remainingMs()).toBe(0);
    });
  });
});
